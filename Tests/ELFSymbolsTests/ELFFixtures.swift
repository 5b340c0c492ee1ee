import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// fixtures/elf/symbols.c compiled once per test process into a temporary directory (removed at
/// exit): a shared library, a non-PIE and a PIE executable, stripped copies, and files that are not ELF.
struct ELFFixtures: Sendable {
    let directory: String
    /// `cc -shared -fPIC`
    let library: String
    let strippedLibrary: String
    /// `cc -no-pie -DFIXTURE_MAIN`
    let executable: String
    let strippedExecutable: String
    /// `cc -pie -fPIE -DFIXTURE_MAIN`
    let pieExecutable: String
    let textFile: String
    let emptyFile: String

    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let source = packageRoot + "/fixtures/elf/symbols.c"

    private static let built: Result<ELFFixtures, HarnessError> = {
        do { return .success(try build()) } catch let error as HarnessError { return .failure(error) } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()

    /// The fixtures, built on first use.
    static func get() throws -> ELFFixtures { try built.get() }

    private static func build() throws -> ELFFixtures {
        var template = Array("/tmp/scalene-elf-fixtures-XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp: errno \(errno)")
        }
        let directory = String(cString: created)
        createdDirectory.withLock { $0 = directory }
        atexit {
            if let directory = ELFFixtures.createdDirectory.withLock({ $0 }) {
                try? FileManager.default.removeItem(atPath: directory)
            }
        }
        let fixtures = ELFFixtures(
            directory: directory, library: directory + "/libfixture.so",
            strippedLibrary: directory + "/libfixture-stripped.so", executable: directory + "/fixture",
            strippedExecutable: directory + "/fixture-stripped", pieExecutable: directory + "/fixture-pie",
            textFile: directory + "/not-elf.txt", emptyFile: directory + "/empty")
        try run("cc", ["-shared", "-fPIC", "-O1", "-o", fixtures.library, source])
        try run("cc", ["-no-pie", "-O1", "-DFIXTURE_MAIN", "-o", fixtures.executable, source])
        try run("cc", ["-pie", "-fPIE", "-O1", "-DFIXTURE_MAIN", "-o", fixtures.pieExecutable, source])
        try run("strip", ["-o", fixtures.strippedLibrary, fixtures.library])
        try run("strip", ["-o", fixtures.strippedExecutable, fixtures.executable])
        try Data("#!/bin/sh\necho this is not an ELF file\n".utf8).write(to: URL(fileURLWithPath: fixtures.textFile))
        try Data().write(to: URL(fileURLWithPath: fixtures.emptyFile))
        return fixtures
    }

    private static let createdDirectory = Mutex<String?>(nil)

    /// Runs a tool found on PATH; returns its stdout, throws with its stderr on failure.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HarnessError("\(tool) \(arguments.joined(separator: " ")) failed: \(String(decoding: err, as: UTF8.self))")
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `nm -S --defined-only`: name → (value, size) of every symbol that has a size.
    static func nmSymbols(_ path: String) throws -> [String: (value: UInt64, size: UInt64)] {
        var result = [String: (value: UInt64, size: UInt64)]()
        for line in try run("nm", ["-S", "--defined-only", path]).split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 4, let value = UInt64(parts[0], radix: 16), let size = UInt64(parts[1], radix: 16) else {
                continue
            }
            result[String(parts[3])] = (value, size)
        }
        return result
    }
}

/// `readelf -SW`: (name, address, file offset, size, is NOBITS) of every section after the null one.
func readelfSections(_ path: String) throws -> [(name: String, address: UInt64, offset: UInt64, size: UInt64, noBits: Bool)] {
    try ELFFixtures.run("readelf", ["-SW", path]).split(separator: "\n").compactMap { line in
        guard line.hasPrefix("  ["), !line.hasPrefix("  [ 0]"), let close = line.firstIndex(of: "]") else { return nil }
        let fields = line[line.index(after: close)...].split(separator: " ")
        guard fields.count >= 5, let address = UInt64(fields[2], radix: 16),
              let offset = UInt64(fields[3], radix: 16), let size = UInt64(fields[4], radix: 16) else { return nil }
        return (String(fields[0]), address, offset, size, fields[1] == "NOBITS")
    }
}

/// (start, file offset, permissions) of each mapping of `path` in /proc/`pid`/maps.
func mappings(of path: String, pid: Int32) throws -> [(start: UInt64, end: UInt64, offset: UInt64, perms: String)] {
    // Not String(contentsOfFile:): Foundation stops after the first 4 KiB of a /proc file.
    guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/maps"), let data = try handle.readToEnd() else {
        throw HarnessError("cannot read /proc/\(pid)/maps")
    }
    let text = String(decoding: data, as: UTF8.self)
    return text.split(separator: "\n").compactMap { line in
        let parts = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        guard parts.count == 6, parts[5].trimmingCharacters(in: .whitespaces) == path else { return nil }
        let range = parts[0].split(separator: "-")
        guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16),
              let offset = UInt64(parts[2], radix: 16) else { return nil }
        return (start, end, offset, String(parts[1]))
    }
}

/// The canonical path of a file, as /proc/PID/maps shows it.
func canonicalPath(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// A fixture executable started with its stdout on a pipe; killed by pid when done.
final class RunningFixture {
    let process = Process()
    private let output = Pipe()

    init(_ path: String) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    deinit { stop() }

    var pid: Int32 { process.processIdentifier }

    /// The first line the program prints, within `seconds`.
    func firstLine(timeoutSeconds seconds: Int32 = 20) throws -> String {
        var line = [UInt8]()
        let fd = output.fileHandleForReading.fileDescriptor
        var waited: Int32 = 0
        while true {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 100)
            if ready <= 0 {
                waited += 100
                if waited > seconds * 1000 { throw HarnessError("pid \(pid) printed nothing in time") }
                continue
            }
            var byte: UInt8 = 0
            guard Glibc.read(fd, &byte, 1) == 1 else { throw HarnessError("pid \(pid) closed stdout") }
            if byte == 10 { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// "0x4040a0" → 0x4040a0
func hexAddress(_ text: Substring) -> UInt64? {
    UInt64(text.hasPrefix("0x") ? text.dropFirst(2) : text, radix: 16)
}
