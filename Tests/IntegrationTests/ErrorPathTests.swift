import Foundation
import PythonInspector
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Each failure a user can hit prints one line on stderr with its own exit code, and never stops or
/// harms the target.
@Suite("errors: one line, distinct exit code, target untouched")
struct ErrorPathTests {
    /// A pid that is certainly unused: a child that has exited and been reaped.
    func deadPID() throws -> Int32 {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        return child.processIdentifier
    }

    func expectOneLine(_ result: ToolResult, status: Int32, containing text: String) {
        #expect(result.status == status, "stderr: \(result.stderr)")
        #expect(result.stderr.contains(text), "stderr: \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump"))
    }

    @Test("no such process → 2")
    func noSuchProcess() throws {
        let result = try runTool(["dump", "--pid", String(try deadPID())])
        expectOneLine(result, status: 2, containing: "no process with pid")
    }

    @Test("not a Python process → 3")
    func notPython() throws {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try sleeper.run()
        defer { kill(sleeper.processIdentifier, SIGKILL); sleeper.waitUntilExit() }
        let result = try runTool(["dump", "--pid", String(sleeper.processIdentifier)])
        expectOneLine(result, status: 3, containing: "is not a Python process")
        #expect(sleeper.isRunning)
    }

    @Test("permission denied → 4, with what to do")
    func permissionDenied() throws {
        guard getuid() == 0 else {
            print("permission test needs root to run the tool as another user; skipped")
            return
        }
        let python = try #require(Interpreters.installed.last)
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("dump/named_threads.py"))
        defer { fixture.kill() }
        // The tool run as an unprivileged user against a root process is refused by the kernel.
        let result = try runTool(["--reuid=65534", "--regid=65534", "--clear-groups", Package.tool, "dump", "--pid",
                                  String(fixture.pid)], executable: "/usr/bin/setpriv")
        expectOneLine(result, status: 4, containing: "permission denied")
        #expect(result.stderr.contains("CAP_SYS_PTRACE") && result.stderr.contains("ptrace_scope"))
        #expect(fixture.isRunningUnstopped)
    }

    @Test("unsupported Python version → 5")
    func unsupportedVersion() throws {
        let root = ProcessInfo.processInfo.environment["PYENV_ROOT"] ?? NSHomeDirectory() + "/.pyenv"
        let old = ((try? FileManager.default.contentsOfDirectory(atPath: root + "/versions")) ?? [])
            .filter { $0.hasPrefix("3.7.") || $0.hasPrefix("3.6.") }.sorted().last
        guard let old else {
            print("no CPython older than 3.8 installed; unsupported-version test skipped")
            return
        }
        let fixture = try FixtureProcess(python: "\(root)/versions/\(old)/bin/python3",
                                         script: Package.fixture("dump/named_threads.py"))
        defer { fixture.kill() }
        let result = try runTool(["dump", "--pid", String(fixture.pid)])
        expectOneLine(result, status: 5, containing: "Python \(old)")
        #expect(result.stderr.contains("not supported"))
        #expect(fixture.isRunningUnstopped)
    }

    /// A real interpreter whose `_Py_DebugOffsets` says something else: a copy of the provisioned
    /// static 3.15 executable with its initialised `_PyRuntime` (in the file's .PyRuntime section)
    /// rewritten. CPython never reads these fields itself, so it runs normally; scalene-attach must
    /// refuse it without reading anything with a guessed layout.
    func interpreterClaiming(version: UInt64? = nil, freeThreaded: Bool = false, in directory: TemporaryDirectory)
        throws -> (path: String, home: String)?
    {
        guard let python = Interpreters.provisioned(minor: 15, shared: false) else { return nil }
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: python.path)))
        let hex = try #require(try runPython(python.path, "import sys; print(sys.hexversion)").flatMap { UInt64($0) })
        let needle = Array("xdebugpy".utf8) + (0..<8).map { UInt8(truncatingIfNeeded: hex >> (8 * UInt64($0))) }
        let starts = (0...(bytes.count - needle.count)).filter { bytes[$0] == needle[0] && Array(bytes[$0..<($0 + needle.count)]) == needle }
        try #require(starts.count == 1, "one initialised _Py_DebugOffsets in \(python.path): \(starts.count)")
        if let version {
            for index in 0..<8 { bytes[starts[0] + 8 + index] = UInt8(truncatingIfNeeded: version >> (8 * UInt64(index))) }
        }
        if freeThreaded { bytes[starts[0] + 16] = 1 }
        let copy = directory.file("python3.15")
        try Data(bytes).write(to: URL(fileURLWithPath: copy))
        chmod(copy, 0o755)
        // The copy is outside its prefix: point it at the standard library.
        let home = URL(fileURLWithPath: python.path).deletingLastPathComponent().deletingLastPathComponent().path
        return (copy, home)
    }

    func runPython(_ python: String, _ code: String) throws -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", code]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("a minor version newer than this build knows, a pre-release, a free-threaded build → 5, nothing read",
          arguments: [("3.16.0", UInt64(0x0310_00F0), false, "newer than this build"),
                      ("3.15.0b2", UInt64(0x030F_00B2), false, "pre-releases are not supported"),
                      ("3.15.2 (free-threaded)", nil, true, "free-threaded builds")])
    func unknownLayouts(claim: String, version: UInt64?, freeThreaded: Bool, reason: String) throws {
        let directory = try TemporaryDirectory()
        guard let copy = try interpreterClaiming(version: version, freeThreaded: freeThreaded, in: directory) else {
            print("skipped: no provisioned 3.15 (\(Interpreters.provisioningFailures["3.15"] ?? "not installed"))")
            return
        }
        let fixture = try FixtureProcess(python: copy.path, script: Package.fixture("dump/named_threads.py"),
                                         environment: ["PYTHONHOME": copy.home])
        defer { fixture.kill() }
        let result = try runTool(["dump", "--pid", String(fixture.pid)])
        expectOneLine(result, status: 5, containing: "Python \(claim)")
        #expect(result.stderr.contains(reason), "\(result.stderr)")
        if !freeThreaded { #expect(result.stderr.contains("supported versions are 3.8–3.15"), "\(result.stderr)") }
        // Profiling refuses it the same way, and the target is left alone.
        let profile = try runTool(["--pid", String(fixture.pid), "--duration", "0.5", "--quiet"])
        #expect(profile.status == 5, "\(profile.stderr)")
        #expect(fixture.isRunningUnstopped)
    }

    @Test("a process that has exited → 6")
    func exitedProcess() throws {
        let python = try #require(Interpreters.installed.last)
        // Spawned directly (not through Foundation, which reaps its children at once) so that, once
        // killed, it stays a zombie: it exists, but its memory is gone.
        var pid: pid_t = 0
        let argv = [python.path, "-c", "import time; time.sleep(60)"]
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        #expect(posix_spawn(&pid, python.path, nil, nil, cArgs, environ) == 0)
        usleep(300_000)
        kill(pid, SIGKILL)
        usleep(100_000)
        let result = try runTool(["dump", "--pid", String(pid)])
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        expectOneLine(result, status: 6, containing: "exited")
    }

    @Test("a process exiting between discovery and the read is reported as exited")
    func exitsMidRead() throws {
        let python = try #require(Interpreters.installed.last)
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("dump/named_threads.py"))
        let target = try PythonTarget(pid: fixture.pid)
        let dumper = StackDumper(target: target)
        fixture.kill()
        #expect(throws: InspectError.exited(pid: fixture.pid)) { try dumper.snapshot() }
    }

    @Test("bad arguments are a usage error (64), not a trap")
    func usage() throws {
        let result = try runTool(["dump", "--pid", "not-a-number"])
        #expect(result.status == 64)
        let missing = try runTool(["dump"])
        #expect(missing.status == 64)
    }
}
