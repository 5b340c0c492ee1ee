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
