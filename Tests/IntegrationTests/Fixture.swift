import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Paths of the package, found from this file's location.
enum Package {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static func fixture(_ relative: String) -> String { root + "/fixtures/" + relative }

    /// The scalene-attach binary under test: $SCALENE_ATTACH_BIN (set by `make test`), else next to
    /// the test bundle.
    static let tool: String = {
        if let path = ProcessInfo.processInfo.environment["SCALENE_ATTACH_BIN"] { return path }
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var candidate = bundleDirectory
        for _ in 0..<4 {
            let path = candidate.appendingPathComponent("scalene-attach").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
            candidate.deleteLastPathComponent()
        }
        return root + "/.build/release/scalene-attach"
    }()
}

/// Errors of the test harness itself.
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A Python program started by a test. It is killed by pid when the test is done with it; it is
/// never looked up by name.
final class FixtureProcess: @unchecked Sendable {
    let process: Process
    private let stdin: Pipe
    private let stdout: Pipe
    private let stderr: Pipe
    private var buffered = Data()

    var pid: Int32 { process.processIdentifier }

    /// Starts `python script args...` and waits until it prints a line starting with "READY".
    convenience init(python: String, script: String, arguments: [String] = [], environment: [String: String] = [:],
                     readyTimeout: TimeInterval = 20) throws {
        try self.init(executable: python, arguments: ["-u", script] + arguments, environment: environment,
                      readyTimeout: readyTimeout)
    }

    /// Starts `executable arguments...` (a launcher that runs a Python fixture, such as a container)
    /// and waits until it prints a line starting with "READY".
    init(executable: String, arguments: [String], environment: [String: String] = [:], readyTimeout: TimeInterval = 20) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for (key, value) in environment { env[key] = value }
        process.environment = env
        stdin = Pipe()
        stdout = Pipe()
        stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        do {
            _ = try waitForLine(prefix: "READY", timeout: readyTimeout)
        } catch {
            kill()
            throw error
        }
    }

    deinit { kill() }

    /// Reads stdout until a line with `prefix`, returning that line.
    func waitForLine(prefix: String, timeout: TimeInterval) throws -> String {
        let (seen, ended) = readLines(timeout: timeout) { $0.hasPrefix(prefix) }
        if let last = seen.last, last.hasPrefix(prefix) { return last }
        throw HarnessError(ended ? "fixture exited before printing \(prefix); stderr: \(errorOutput())"
                                 : "fixture did not print \(prefix) in time; stderr: \(errorOutput())")
    }

    /// The lines the fixture prints, read until one satisfies `done` or `timeout` passes (no error:
    /// the caller judges what arrived).
    func lines(timeout: TimeInterval, until done: (String) -> Bool) -> [String] {
        readLines(timeout: timeout, until: done).lines
    }

    /// The lines read until one satisfies `done`, the time is up, or the output ends (`ended`).
    private func readLines(timeout: TimeInterval, until done: (String) -> Bool) -> (lines: [String], ended: Bool) {
        var seen = [String]()
        let deadline = Date().addingTimeInterval(timeout)
        let fd = stdout.fileHandleForReading.fileDescriptor
        while true {
            if let range = buffered.firstRange(of: Data([10])) {
                let line = String(decoding: buffered[buffered.startIndex..<range.lowerBound], as: UTF8.self)
                buffered.removeSubrange(buffered.startIndex..<range.upperBound)
                seen.append(line)
                if done(line) { return (seen, false) }
                continue
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return (seen, false) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, Int32(min(remaining, 1) * 1000)) > 0 {
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { return (seen, true) }
                buffered.append(contentsOf: chunk[0..<n])
            }
        }
    }

    /// What the fixture printed after the last line read, until end of file (or a second without
    /// output: a process it started may hold the pipe open).
    func remainingOutput() -> String {
        let fd = stdout.fileHandleForReading.fileDescriptor
        var out = buffered
        buffered = Data()
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while poll(&pfd, 1, 1000) > 0 {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes a line to the fixture's stdin.
    func send(_ line: String) {
        stdin.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    /// Whatever the fixture wrote to stderr so far (non-blocking).
    func errorOutput() -> String {
        let fd = stderr.fileHandleForReading.fileDescriptor
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var out = Data()
        while poll(&pfd, 1, 0) > 0 {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    var isRunning: Bool { process.isRunning }

    /// Whether the process is alive and not stopped (state R, S or D).
    var isRunningUnstopped: Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state == "R" || state == "S" || state == "D"
    }

    /// SIGKILL by pid, then reap.
    func kill() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// The output of one run of the tool.
struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs scalene-attach with arguments and waits for it (with a timeout, after which it is killed).
func runTool(_ arguments: [String], executable: String = Package.tool, timeout: TimeInterval = 60,
             environment: [String: String] = [:]) throws -> ToolResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Drain both pipes concurrently so a large output cannot block the tool.
    let outData = LockedData()
    let errData = LockedData()
    let group = DispatchGroup()
    for (pipe, sink) in [(out, outData), (err, errData)] {
        group.enter()
        DispatchQueue.global().async {
            sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
    }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(5000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        group.wait()
        throw HarnessError("scalene-attach \(arguments.joined(separator: " ")) timed out; stderr: \(errData.string)")
    }
    process.waitUntilExit()
    group.wait()
    return ToolResult(status: process.terminationStatus, stdout: outData.string, stderr: errData.string)
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ value: Data) { lock.lock(); data = value; lock.unlock() }
    var string: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}

/// Line numbers of `# MARK: name` comments in a fixture: the expected lines come from the source
/// itself.
func markers(in path: String) throws -> [String: Int] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var result = [String: Int]()
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        guard let range = line.range(of: "# MARK: ") else { continue }
        result[String(line[range.upperBound...]).trimmingCharacters(in: .whitespaces)] = index + 1
    }
    return result
}
