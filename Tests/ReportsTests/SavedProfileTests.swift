import Foundation
import Profiler
import Reports
import Testing

@Suite("a saved profile read back")
struct SavedProfileTests {
    func message(_ text: String) -> String? {
        do {
            _ = try SavedProfile.decode(Array(text.utf8))
            return nil
        } catch {
            return error.description
        }
    }

    @Test("what is missing or of the wrong type is named by its path, as JSONDecoder named it")
    func messages() {
        #expect(message("hello") == "not JSON")
        #expect(message("{\"files\": {}} x") == "not JSON")
        #expect(message("{\"files\": {}}") == "not a Scalene JSON profile: no \"elapsedTimeSec\"")
        #expect(message("{\"files\": 3, \"elapsed_time_sec\": 1}") == "not a Scalene JSON profile: unexpected value at \"files\"")
        #expect(message("[1]") == "not a Scalene JSON profile: unexpected value at \"\"")
        #expect(message(#"{"elapsed_time_sec": 1, "files": {"a_b.py": {"functions": [], "lines": [{"line": "x"}], "percent_cpu_time": 1}}}"#)
            == "not a Scalene JSON profile: no \"files.a_b.py.lines.0.lineno\"")
        #expect(message(#"{"elapsed_time_sec": null, "files": {}}"#) == "not a Scalene JSON profile: unexpected value at \"elapsedTimeSec\"")
        #expect(message(#"{"elapsed_time_sec": 1, "files": {}, "max_footprint_lineno": 1.5}"#)
            == "not a Scalene JSON profile: unexpected value at \"maxFootprintLineno\"")
        #expect(message(#"{"elapsed_time_sec": 1, "files": {}, "stacks": [[["a b:1;"]]]}"#)
            == "not a Scalene JSON profile: unexpected value at \"stacks.0\"")
        #expect(message(#"{"elapsed_time_sec": 1, "files": {}, "scalene_attach": {"threads": [{"tid": 1}]}}"#)
            == "not a Scalene JSON profile: no \"scaleneAttach.threads.0.pythonSeconds\"")
    }

    @Test("optional members may be missing or null; numbers of either kind read as Double; whole doubles as Int")
    func optionalMembers() throws {
        let saved = try SavedProfile.decode(Array(#"""
            {"elapsed_time_sec": 2, "files": {"app.py": {"functions": [], "percent_cpu_time": 50.5, "leaks": null,
             "lines": [{"line": "x = 1", "lineno": 3.0, "n_cpu_percent_python": 1, "n_cpu_percent_c": 0.5, "n_sys_percent": 0,
                        "n_malloc_mb": null, "memory_samples": [[1, 2.5]], "unknown": {"ignored": [1]}}]}},
             "stacks": [[["app.py f:3;"], {"count": 4, "python_time": 0.5}]], "memory": true, "program": "app.py",
             "scalene_attach": {"pid": 12, "sampler": {"ticks": 10}, "memory": {"agent": {"safe_point": "eval"}}}}
            """#.utf8))
        #expect(saved.elapsedTimeSec == 2 && saved.memory == true && saved.program == "app.py")
        let line = try #require(saved.files["app.py"]?.lines.first)
        #expect(line.lineno == 3 && line.nCpuPercentC == 0.5 && line.nMallocMb == nil && line.memorySamples == [[1, 2.5]])
        #expect(saved.files["app.py"]?.leaks == nil && saved.files["app.py"]?.percentCpuTime == 50.5)
        let stack = try #require(saved.stacks?.first)
        #expect(stack.frames == [.init(file: "app.py", function: "f", line: 3)] && stack.count == 4 && stack.python == 0.5
                && stack.native == 0)
        #expect(saved.scaleneAttach?.pid == 12 && saved.scaleneAttach?.sampler?.ticks == 10)
        #expect(saved.scaleneAttach?.memory?.agent?.safePoint == "eval")
    }

    @Test("our own JSON of a large profile reads back; mutations of it are errors or profiles, never traps")
    func hostileMutations() throws {
        var thread = ThreadProfile(tid: 1, name: "MainThread")
        // Seen running: an idle thread is left out of every report.
        (thread.samples, thread.runningSamples, thread.wallSeconds, thread.cpuSeconds) = (10, 10, 1, 1)
        for line in 1...30 {
            let function = FunctionID(file: "/srv/app.py", name: "f\(line / 10)", firstLine: line / 10 * 10 + 1)
            thread.lines[SourceLine(file: "/srv/app.py", line: line)] = ProfileFixtures.line(0.01 * Double(line), 0.001, function: function)
            thread.functions[function, default: .zero] += TimeSplit(python: 0.01)
            var stack = StackTime()
            stack.time = TimeSplit(python: 0.01)
            stack.samples = 1
            thread.stacks[[StackFrame(file: "/srv/app.py", function: "f", line: line)]] = stack
        }
        var profile = ProfileFixtures.profile(file: "/srv/app.py", lines: [:])
        profile.threads = [thread]
        let document = ScaleneJSONReport(profile: profile, sources: SourceFiles(pid: nil)).render()
        let saved = try SavedProfile.decode(document)
        #expect(saved.files["/srv/app.py"]?.lines.isEmpty == false && saved.stacks?.count == 30)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<300 {
            var mutated = document
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let index = Int.random(in: 0..<mutated.count, using: &generator)
                switch round % 3 {
                case 0: mutated[index] = UInt8.random(in: 0...255, using: &generator)
                case 1: mutated.remove(at: index)
                default: mutated.insert(Array("[]{}\":,0e-".utf8).randomElement(using: &generator)!, at: index)
                }
            }
            _ = try? SavedProfile.decode(mutated)
        }
        for cut in stride(from: 0, to: document.count, by: max(1, document.count / 200)) {
            #expect(throws: SavedProfile.Invalid.self) { try SavedProfile.decode(Array(document[0..<cut])) }
        }
    }
}
