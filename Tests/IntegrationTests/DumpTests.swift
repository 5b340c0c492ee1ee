import Foundation
import Testing

/// `scalene-attach dump` against fixtures of our own, on every installed CPython. Expected lines
/// come from `# MARK:` comments in the fixtures.
@Suite("dump on every installed CPython")
struct DumpTests {
    @Test("report which interpreters run")
    func coverage() {
        print(Interpreters.coverageReport)
        #expect(!Interpreters.installed.isEmpty)
    }

    @Test("deep recursion: exact depth and lines", arguments: Interpreters.installed)
    func deepRecursion(python: Interpreter) throws {
        let script = Package.fixture("dump/deep_recursion.py")
        let marks = try markers(in: script)
        let depth = 60
        let fixture = try FixtureProcess(python: python.path, script: script, arguments: [String(depth)])
        defer { fixture.kill() }
        let output = try dump(pid: fixture.pid) { $0.threads.first?.frames.first?.line == marks["deepest"] }
        #expect(output.pid == Int(fixture.pid))
        #expect(output.python_version.hasPrefix("3.\(python.minor)."))
        let main = try #require(output.threads.first { $0.tid == Int(fixture.pid) })
        let frames = main.frames
        #expect(frames.count == depth + 2, "stack: \(frames.map { "\($0.function):\($0.line)" })")
        guard frames.count == depth + 2 else { return }
        #expect(frames[0].function == "recurse" && frames[0].line == marks["deepest"])
        for frame in frames[1..<depth] {
            #expect(frame.function == "recurse" && frame.line == marks["recursive-call"])
        }
        #expect(frames[depth].function == "main" && frames[depth].line == marks["main-call"])
        #expect(frames[depth + 1].function == "<module>" && frames[depth + 1].line == marks["module-call"])
        #expect(frames.allSatisfy { $0.file == script })
        #expect(main.state == "sleeping")
        #expect(main.opcode_class == "call", "time.sleep is a call; got \(main.opcode ?? "nil")")
        #expect(fixture.isRunningUnstopped)
    }

    @Test("named threads in different functions, sleeping main thread", arguments: Interpreters.installed)
    func namedThreads(python: Interpreter) throws {
        let script = Package.fixture("dump/named_threads.py")
        let marks = try markers(in: script)
        let fixture = try FixtureProcess(python: python.path, script: script)
        defer { fixture.kill() }
        // READY is printed when the barrier opens; on a busy machine a worker may still be on its
        // way from the barrier to its sleep: wait (bounded) until every thread is asleep.
        let output = try dump(pid: fixture.pid) { $0.threads.allSatisfy { $0.state == "sleeping" } }
        #expect(output.threads.count == 4)
        let tids = output.threads.compactMap(\.tid)
        #expect(Set(tids).count == 4, "every thread has its own OS thread id: \(tids)")
        let taskIDs = Set(((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(fixture.pid)/task")) ?? []).compactMap { Int($0) })
        #expect(Set(tids).isSubset(of: taskIDs))

        let main = try #require(output.threads.first { $0.tid == Int(fixture.pid) })
        #expect(main.name == "MainThread")
        #expect(main.frames.first?.line == marks["main-sleep"] && main.frames.first?.function == "<module>")

        let alpha = try #require(output.thread(running: "alpha_worker"))
        #expect(alpha.name == "worker-alpha")
        #expect(alpha.frames.first?.line == marks["alpha"])
        #expect(alpha.frames.last?.file.hasSuffix("threading.py") == true)

        let beta = try #require(output.thread(running: "beta_worker"))
        #expect(beta.name == "worker-beta")
        #expect(beta.frames.first { $0.function == "beta_worker" }?.line == marks["beta"])
        #expect(beta.frames.first?.file.hasSuffix("threading.py") == true, "Event.wait is Python code in threading.py")

        let gamma = try #require(output.thread(running: "run_forever"))
        #expect(gamma.name == "worker-gamma")
        let gammaFrame = try #require(gamma.frames.first)
        #expect(gammaFrame.line == marks["gamma"])
        #expect(gammaFrame.qualname == (python.minor >= 11 ? "Gamma.run_forever" : "run_forever"))

        for thread in output.threads {
            #expect(thread.state == "sleeping", "\(thread.name ?? "?") is \(thread.state ?? "?")")
            #expect(!thread.holds_gil, "every thread is asleep, so none holds the GIL")
        }
        #expect(fixture.isRunningUnstopped)
    }

    @Test("busy threads: innermost line, Python instruction, GIL holder", arguments: Interpreters.installed)
    func busyLoop(python: Interpreter) throws {
        let script = Package.fixture("dump/busy_loop.py")
        let marks = try markers(in: script)
        let fixture = try FixtureProcess(python: python.path, script: script)
        defer { fixture.kill() }
        // READY is printed before the main thread calls spin, and the spinner may not have reached
        // it yet on a busy machine: wait (bounded) until both threads are in spin.
        _ = try dump(pid: fixture.pid) {
            $0.threads.count == 2 && $0.threads.allSatisfy { $0.frames.first?.function == "spin" }
        }
        // A blocking dump sees a consistent stack on the first try.
        let stopped = try dump(pid: fixture.pid, blocking: true)
        try checkBusy(stopped, marks: marks, pid: fixture.pid)
        #expect(fixture.isRunningUnstopped, "--blocking must resume the process")
        // Without stopping, a stack can tear; most reads must still be exact.
        var exact = 0
        var sawHolder = false
        for _ in 0..<10 {
            let output = try dump(pid: fixture.pid)
            if (try? checkBusy(output, marks: marks, pid: fixture.pid)) != nil { exact += 1 }
            if output.threads.contains(where: \.holds_gil) { sawHolder = true }
            #expect(output.threads.filter(\.holds_gil).count <= 1)
        }
        #expect(exact >= 8, "exact non-blocking dumps: \(exact)/10")
        #expect(sawHolder, "one of two spinning threads holds the GIL")
        #expect(fixture.isRunningUnstopped)
    }

    private func checkBusy(_ output: DumpOutput, marks: [String: Int], pid: Int32) throws {
        #expect(output.threads.count == 2)
        for thread in output.threads {
            let top = try #require(thread.frames.first)
            #expect(top.function == "spin" && top.line == marks["spin"], "\(top.function):\(top.line)")
            #expect(thread.opcode_class == "python", "the spin line makes no calls; got \(thread.opcode ?? "nil")")
        }
        let main = try #require(output.threads.first { $0.tid == Int(pid) })
        #expect(main.frames.count == 2 && main.frames[1].line == marks["main-call"])
        let spinner = try #require(output.threads.first { $0.name == "spinner" })
        #expect(spinner.frames.contains { $0.function == "helper" && $0.line == marks["helper-call"] })
    }

    @Test("non-ASCII file, function and thread names", arguments: Interpreters.installed)
    func unicodeNames(python: Interpreter) throws {
        let script = Package.fixture("dump/ünïcödé_名前.py")
        let marks = try markers(in: script)
        let fixture = try FixtureProcess(python: python.path, script: script)
        defer { fixture.kill() }
        let output = try dump(pid: fixture.pid) { $0.threads.first?.frames.first?.line == marks["unicode-sleep"] }
        let main = try #require(output.threads.first)
        #expect(main.name == "главный-поток")
        let top = try #require(main.frames.first)
        #expect(top.function == "grüße_αβγ")
        #expect(top.file == script)
        #expect(top.line == marks["unicode-sleep"])
        #expect(main.frames.last?.line == marks["unicode-call"])
    }

    @Test("a line far below its function's first line", arguments: Interpreters.installed)
    func farLines(python: Interpreter) throws {
        let script = Package.fixture("dump/far_lines.py")
        let marks = try markers(in: script)
        let fixture = try FixtureProcess(python: python.path, script: script)
        defer { fixture.kill() }
        let output = try dump(pid: fixture.pid) { $0.threads.first?.frames.first?.line == marks["far-sleep"] }
        let frames = try #require(output.threads.first?.frames)
        #expect(frames.first?.function == "far_away")
        #expect(frames.first?.line == marks["far-sleep"])
        #expect(frames.last?.line == marks["far-call"])
    }

    @Test("threads created and destroyed while dumping", arguments: Interpreters.installed)
    func threadChurn(python: Interpreter) throws {
        let script = Package.fixture("dump/thread_churn.py")
        let marks = try markers(in: script)
        let fixture = try FixtureProcess(python: python.path, script: script)
        defer { fixture.kill() }
        _ = try dump(pid: fixture.pid) {
            $0.threads.first { $0.tid == Int(fixture.pid) }?.frames.first?.line == marks["churn-main"]
        }
        for round in 0..<20 {
            let output = try dump(pid: fixture.pid, blocking: round % 4 == 3)
            let main = try #require(output.threads.first { $0.tid == Int(fixture.pid) })
            #expect(main.frames.first?.line == marks["churn-main"])
            // The churner is always there (its stack changes constantly, so a read while it runs may
            // be incomplete); the short-lived threads come and go, and one being created or torn down
            // may have no OS thread yet or any more.
            let churner = try #require(output.threads.first { $0.name == "churner" })
            #expect(churner.tid != nil)
            if round % 4 == 3 {
                #expect(churner.frames.contains { $0.function == "churn" },
                        "a blocking dump sees the whole stack: \(churner.frames.map { "\($0.function):\($0.line)" })")
            }
        }
        #expect(fixture.isRunningUnstopped)
    }
}
