import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The native-allocation helper library `make` builds for the memory fixtures.
var nativeAllocLibrary: String { Package.root + "/build/fixtures/libnativealloc.so" }

/// Memory and copy profiling of processes started without us, against fixtures that record what
/// they allocate, hold and copy.
@Suite("memory and copy accuracy", .serialized)
struct MemoryAccuracyTests {
    struct Truth: Decodable {
        var pythonAlloc: Double
        var nativeAlloc: Double
        var copied: Double
        var peak: Double

        enum CodingKeys: String, CodingKey {
            case pythonAlloc = "python-alloc", nativeAlloc = "native-alloc", copied, peak
        }
    }

    @Test("per-line MB, Python/native split, leaks, peak growth and copy rate", arguments: Interpreters.installed)
    func allocations(python: Interpreter) throws {
        let directory = try TemporaryDirectory()
        let script = Package.fixture("memory/allocations.py")
        let marks = try markers(in: script)
        let truthPath = directory.file("truth.json")
        let json = directory.file("memory.json")
        let fixture = try FixtureProcess(python: python.path, script: script, arguments: [truthPath, nativeAllocLibrary])
        defer { fixture.kill() }
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: Package.tool)
        tool.arguments = ["--pid", String(fixture.pid), "--json", json, "--quiet", "--output", directory.file("table.txt")]
        try tool.run()
        defer { if tool.isRunning { kill(tool.processIdentifier, SIGKILL); tool.waitUntilExit() } }
        // Nothing is allocated before the agent is in: the fixture waits for a line on stdin.
        #expect(AgentProbe.wait(seconds: 10) { AgentProbe.hookPointers(pid: fixture.pid) > 0 }, "the agent armed")
        usleep(200_000)
        fixture.send("go")
        _ = try fixture.waitForLine(prefix: "DONE", timeout: 60)
        usleep(300_000)
        kill(tool.processIdentifier, SIGINT)
        tool.waitUntilExit()
        #expect(tool.terminationStatus == 0)
        #expect(AgentProbe.hookPointers(pid: fixture.pid) == 0, "every hook restored after detach")

        let truth = try JSONDecoder().decode(Truth.self, from: Data(contentsOf: URL(fileURLWithPath: truthPath)))
        let profile = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
            as? [String: Any])
        let file = try #require((profile["files"] as? [String: Any])?[script] as? [String: Any])
        let lines = (file["lines"] as? [[String: Any]] ?? []).reduce(into: [Int: [String: Any]]()) {
            $0[$1["lineno"] as? Int ?? 0] = $1
        }
        func value(_ mark: String, _ key: String) -> Double { lines[marks[mark] ?? -1]?[key] as? Double ?? 0 }
        let megabyte = 1024.0 * 1024.0
        let elapsed = profile["elapsed_time_sec"] as? Double ?? 0

        let pythonMB = value("python-alloc", "n_malloc_mb")
        let nativeMB = value("native-alloc", "n_malloc_mb")
        let copyRate = value("copy", "n_copy_mb_s")
        // The footprint is what the process holds (its allocators' own figures), the interpreter and
        // everything allocated before the attach included: the fixture allocates nothing before
        // "go", so its peak is measured from the first reading.
        let memory = (profile["scalene_attach"] as? [String: Any])?["memory"] as? [String: Any] ?? [:]
        let first = (memory["current_footprint_mb"] as? Double ?? 0) - (memory["footprint_change_mb"] as? Double ?? 0)
        #expect(first > 16, "the footprint includes the 16 MiB allocated before the attach (\(first) MB)")
        let peak = (profile["max_footprint_mb"] as? Double ?? 0) - first
        let expectedCopyRate = truth.copied / megabyte / elapsed
        print(String(format: "%@: python line %.1f MB (truth %.1f), native line %.1f MB (truth %.1f), python share %.2f / %.2f, copy %.1f MB/s (truth %.1f), peak %.1f MB (truth %.1f)",
                     python.label, pythonMB, truth.pythonAlloc / megabyte, nativeMB, truth.nativeAlloc / megabyte,
                     value("python-alloc", "n_python_fraction"), value("native-alloc", "n_python_fraction"), copyRate,
                     expectedCopyRate, peak, truth.peak / megabyte))
        #expect(abs(pythonMB / (truth.pythonAlloc / megabyte) - 1) <= 0.15)
        #expect(abs(nativeMB / (truth.nativeAlloc / megabyte) - 1) <= 0.15)
        #expect(value("python-alloc", "n_python_fraction") >= 0.9, "lists of objects are Python memory")
        #expect(value("native-alloc", "n_python_fraction") <= 0.1, "a buffer malloc'd by C code is native memory")
        #expect(abs(copyRate / expectedCopyRate - 1) <= 0.25)
        #expect(abs(peak / (truth.peak / megabyte) - 1) <= 0.15)
        let leaks = (file["leaks"] as? [String: Any]) ?? [:]
        #expect(Set(leaks.keys) == [String(marks["leak"]!)], "only the leaking line is flagged: \(leaks.keys.sorted())")
        #expect(fixture.isRunningUnstopped)
    }
}

/// Injection and detach never hurt the target.
@Suite("agent safety", .serialized)
struct AgentSafetyTests {
    @Test("attach and detach 20 times to a busy multi-threaded target", arguments: Interpreters.installed)
    func repeatedAttach(python: Interpreter) throws {
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("memory/stress.py"))
        defer { fixture.kill() }
        for round in 0..<20 {
            let result = try runTool(["--pid", String(fixture.pid), "--duration", "0.25", "--quiet", "--format", "collapsed",
                                      "--output", "/dev/null"])
            #expect(result.status == 0, "round \(round): \(result.stderr)")
            #expect(!result.stderr.contains("memory profiling unavailable"), "round \(round): \(result.stderr)")
            if round % 5 == 4 {
                #expect(AgentProbe.hookPointers(pid: fixture.pid) == 0, "round \(round): hooks left behind")
            }
            guard fixture.isRunning else { break }
        }
        fixture.send("rounds?")
        let progress = try fixture.waitForLine(prefix: "ROUNDS", timeout: 10)
        #expect((Int(progress.split(separator: " ").last ?? "") ?? 0) > 0)
        #expect(fixture.isRunningUnstopped, "no checksum mismatch, no crash: \(fixture.errorOutput())")
    }

    @Test("SIGKILL the attacher: the agent removes every hook by itself", arguments: Interpreters.installed)
    func attacherKilled(python: Interpreter) throws {
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("memory/stress.py"))
        defer { fixture.kill() }
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: Package.tool)
        tool.arguments = ["--pid", String(fixture.pid), "--quiet", "--output", "/dev/null"]
        try tool.run()
        #expect(AgentProbe.wait(seconds: 10) { AgentProbe.hookPointers(pid: fixture.pid) > 0 }, "the agent armed")
        usleep(300_000)
        #expect(AgentProbe.agentThreadRunning(pid: fixture.pid), "the agent's thread runs while armed")
        kill(tool.processIdentifier, SIGKILL)
        tool.waitUntilExit()
        let killed = Date()
        // The agent's thread ends once it has restored everything: a cheap signal to time (a scan of
        // the target's memory for hook pointers can take longer than the detach on a busy machine).
        #expect(AgentProbe.wait(seconds: 5) { !AgentProbe.agentThreadRunning(pid: fixture.pid) }, "the agent removed itself")
        let gone = Date().timeIntervalSince(killed)
        #expect(AgentProbe.hookPointers(pid: fixture.pid) == 0, "hooks removed")
        print(String(format: "%@: hooks gone %.2f s after the attacher was killed", python.label, gone))
        #expect(gone <= 2.0)
        fixture.send("rounds?")
        let first = Int(try fixture.waitForLine(prefix: "ROUNDS", timeout: 10).split(separator: " ").last ?? "") ?? 0
        usleep(500_000)
        fixture.send("rounds?")
        let second = Int(try fixture.waitForLine(prefix: "ROUNDS", timeout: 10).split(separator: " ").last ?? "") ?? 0
        #expect(second > first, "the target keeps working")
        #expect(fixture.isRunningUnstopped)
        // The library and the channel are memfds of the target: no file anywhere, and no descriptor
        // left open in it.
        #expect(AgentProbe.memfdDescriptors(pid: fixture.pid) == 0, "no descriptor of ours left in the target")
        #expect(!((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).contains { $0.hasPrefix("scalene-") },
                "nothing in /dev/shm")
    }

    func injectIntoBlocked(python: Interpreter, script: String) throws -> (FixtureProcess, [String: Any]) {
        let directory = try TemporaryDirectory()
        let json = directory.file("blocked.json")
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture(script))
        usleep(200_000)
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "0.5", "--json", json, "--quiet"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!result.stderr.contains("unavailable"), "\(result.stderr)")
        let profile = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        let agent = ((profile?["scalene_attach"] as? [String: Any])?["memory"] as? [String: Any])?["agent"] as? [String: Any]
        #expect(AgentProbe.hookPointers(pid: fixture.pid) == 0)
        return (fixture, agent ?? [:])
    }

    @Test("inject into a target asleep in time.sleep", arguments: Interpreters.installed)
    func blockedInSleep(python: Interpreter) throws {
        let (fixture, agent) = try injectIntoBlocked(python: python, script: "memory/blocked_sleep.py")
        defer { fixture.kill() }
        #expect((agent["safe_point"] as? String ?? "").hasPrefix("blocked in"), "\(agent)")
        #expect(agent["detached_cleanly"] as? Bool == true)
        #expect((agent["hooked_slots"] as? Int ?? 0) > 0)
        // The interrupted sleep goes on, and the loop with it.
        _ = try fixture.waitForLine(prefix: "TICK", timeout: 5)
        _ = try fixture.waitForLine(prefix: "TICK", timeout: 5)
    }

    @Test("inject into a target blocked in read on a pipe", arguments: Interpreters.installed)
    func blockedInRead(python: Interpreter) throws {
        let (fixture, agent) = try injectIntoBlocked(python: python, script: "memory/blocked_read.py")
        defer { fixture.kill() }
        #expect(agent["safe_point"] as? String == "blocked in read", "\(agent)")
        #expect(agent["detached_cleanly"] as? Bool == true)
        // The read resumes: the next line written is read and echoed.
        fixture.send("hello")
        let echoed = try fixture.waitForLine(prefix: "GOT", timeout: 5)
        #expect(echoed == "GOT hello")
    }
}
