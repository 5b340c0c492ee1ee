import Foundation
import Testing

/// Runs `python3 fixtures/cpu/accuracy.py` on a profile and a fixture's truth log.
struct AccuracyReport: Decodable {
    struct Line: Decodable {
        var line: Int
        var truth: [String: Double]
        var measured: [String: Double]
        var error: [String: Double]
    }

    var lines: [String: Line]
    var max_error: Double
    /// Ticks per second of the profile compared (set by CPUAccuracyTests, not by accuracy.py).
    var rate_reached: Double?

    /// `source`: where to read the fixture's text when `fixture` (its path as the profile names it)
    /// does not exist here (inside a container).
    static func compute(profile: String, log: String, fixture: String, threads: Int, source: String? = nil) throws
        -> AccuracyReport
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Package.fixture("cpu/accuracy.py"), profile, log, fixture, String(threads)]
            + (source.map { [$0] } ?? [])
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return try JSONDecoder().decode(AccuracyReport.self, from: data)
    }

    var summary: String {
        lines.sorted { $0.value.line < $1.value.line }.map { name, line in
            "\(name): " + ["python", "native", "system"].map {
                String(format: "%@ %+.1f", $0, line.error[$0] ?? 0)
            }.joined(separator: " ")
        }.joined(separator: "; ")
    }
}

/// A temporary directory removed at the end of a test.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "scalene-attach-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// The CPU profiler against fixtures that measure their own truth, on every installed CPython.
/// Serialized: concurrent profiles would compete for the machine's two cores.
@Suite("CPU profile accuracy", .serialized)
struct CPUAccuracyTests {
    static let bound = 10.0

    /// Profiles the fixture for 3 s at `rate` (the tool killed after `timeout` s) and compares each
    /// marked line with the fixture's truth; the report carries the rate reached.
    func profileAndCompare(python: Interpreter, fixture name: String, threads: Int, rate: Int = 200,
                           timeout: TimeInterval = 60, arguments: [String] = []) throws -> AccuracyReport {
        let directory = try TemporaryDirectory()
        let script = Package.fixture("cpu/\(name)")
        let log = directory.file("truth.log")
        let json = directory.file("profile.json")
        let fixture = try FixtureProcess(python: python.path, script: script, arguments: [log] + arguments)
        defer { fixture.kill() }
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "3", "--rate", String(rate), "--json", json,
                                  "--quiet", "--threads"], timeout: timeout)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        // The fixture flushes its truth at the end of each cycle (well under half a second).
        usleep(600_000)
        #expect(fixture.isRunningUnstopped)
        var report = try AccuracyReport.compute(profile: json, log: log, fixture: script, threads: threads)
        let profile = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        let ticks = ((profile?["scalene_attach"] as? [String: Any])?["sampler"] as? [String: Any])?["ticks"] as? Double
        if let ticks, let elapsed = profile?["elapsed_time_sec"] as? Double, elapsed > 0 {
            report.rate_reached = ticks / elapsed
        }
        print("\(python) \(name) at \(rate) Hz asked, \(String(format: "%.0f", report.rate_reached ?? 0)) Hz reached: "
              + "max error \(String(format: "%.2f", report.max_error)) points; \(report.summary)")
        return report
    }

    @Test("one thread: three Python lines, a native call, a sleep", arguments: Interpreters.installed)
    func phases(python: Interpreter) throws {
        let report = try profileAndCompare(python: python, fixture: "phases.py", threads: 1)
        #expect(report.lines.count == 5)
        #expect(report.max_error <= Self.bound, "\(report.summary)")
        // Each line's main kind of time is really there (the comparison above is only meaningful if
        // the fixture did its work), and the profiler found most of it.
        for (name, kind) in [("python-a", "python"), ("python-b", "python"), ("python-c", "python"),
                             ("native", "native"), ("sleep", "system")] {
            let truth = report.lines[name]?.truth[kind] ?? 0
            let measured = report.lines[name]?.measured[kind] ?? 0
            #expect(truth > 1 && measured > truth / 2, "\(name): \(kind) \(measured) vs truth \(truth)")
        }
    }

    /// Issue 12: the line-level attribution holds at high rates. One run at 20 kHz on one interpreter
    /// (3.11 from pyenv), bounded in time: 3 s of profile, the tool killed after 10 s. The rate
    /// reached is printed, never asserted (a loaded machine lowers it; make bench measures it).
    @Test("at 20 kHz the lines are as accurate as at 200 Hz (3.11)")
    func highRate() throws {
        guard let python = Interpreters.installed.first(where: { $0.minor == 11 && $0.label.contains("pyenv") }) else {
            print("20 kHz accuracy: skipped, no CPython 3.11 from pyenv (installed: "
                  + Interpreters.installed.map(\.label).joined(separator: ", ") + ")")
            return
        }
        let started = Date()
        let report = try profileAndCompare(python: python, fixture: "phases.py", threads: 1, rate: 20000, timeout: 10)
        print(String(format: "20 kHz accuracy on %@: %.0f Hz reached, largest error %.2f points (bound %.0f), %.1f s",
                     python.label, report.rate_reached ?? 0, report.max_error, Self.bound, Date().timeIntervalSince(started)))
        #expect(report.lines.count == 5)
        #expect(report.max_error <= Self.bound, "\(report.summary)")
    }

    /// A thread the interpreter does not know (started from C: no thread state, never the GIL)
    /// spins on a CPU all along. The process's CPU clock counts it, so the lone Python thread's
    /// time cannot simply be read off that clock: the sampler checks the thread's own files and
    /// stops using the process's clock, and the spinner's CPU lands on no line.
    @Test("a native thread without Python state lends no CPU to the Python thread's lines",
          arguments: Interpreters.oneOfEachFamily)
    func hiddenSpinner(python: Interpreter) throws {
        let report = try profileAndCompare(python: python, fixture: "hidden_spinner.py", threads: 1,
                                           arguments: [Package.root + "/build/fixtures/libspinner.so"])
        #expect(report.lines.count == 2)
        #expect(report.max_error <= Self.bound, "\(report.summary)")
        let sleepCPU = (report.lines["sleep"]?.measured["python"] ?? 0) + (report.lines["sleep"]?.measured["native"] ?? 0)
        #expect(sleepCPU <= 3, "the sleep line has \(sleepCPU) points of CPU time")
    }

    @Test("three threads: Python-bound, native-bound, sleeping; idle main thread left out",
          arguments: Interpreters.installed)
    func threads(python: Interpreter) throws {
        let report = try profileAndCompare(python: python, fixture: "threads.py", threads: 3)
        #expect(report.lines.count == 3)
        #expect(report.max_error <= Self.bound, "\(report.summary)")
    }
}

/// Command-line behaviour of profiling: run mode, a target that exits, report formats.
@Suite("profile command")
struct ProfileCommandTests {
    var python: Interpreter { Interpreters.installed.first { $0.minor == 12 } ?? Interpreters.installed[0] }

    @Test("run: launch a program and profile it to its exit")
    func runMode() throws {
        let directory = try TemporaryDirectory()
        let json = directory.file("run.json")
        let script = Package.fixture("cpu/short_program.py")
        let result = try runTool(["run", "--json", json, "--quiet", "--", python.path, script, "1.5"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("READY"), "the program's own output goes through")
        let marks = try markers(in: script)
        #expect(result.stdout.contains(String(format: "%5d │", marks["short-work"]!)), "\(result.stdout)")
        let profile = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        let files = profile?["files"] as? [String: Any]
        #expect(files?[script] != nil, "profile has the script: \(files?.keys.sorted() ?? [])")
    }

    @Test("a target that exits mid-profile: report what was collected, say so, exit 6")
    func targetExits() throws {
        let directory = try TemporaryDirectory()
        let json = directory.file("exit.json")
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("cpu/short_program.py"),
                                         arguments: ["1.0"])
        defer { fixture.kill() }
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "10", "--json", json, "--quiet"])
        #expect(result.status == 6)
        #expect(result.stderr.contains("exited") && result.stderr.contains("reported what was collected"))
        #expect(result.stdout.contains("the process exited"))
        #expect(FileManager.default.fileExists(atPath: json))
    }

    @Test("collapsed stacks and speedscope are well-formed")
    func flameGraphFormats() throws {
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("dump/busy_loop.py"))
        defer { fixture.kill() }
        let collapsed = directory.file("stacks.txt")
        let speedscope = directory.file("profile.speedscope.json")
        let first = try runTool(["--pid", String(fixture.pid), "--duration", "1", "--format", "collapsed", "--output",
                                 collapsed, "--quiet"])
        #expect(first.status == 0, "\(first.stderr)")
        let text = try String(contentsOfFile: collapsed, encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let parts = line.split(separator: " ")
            #expect(parts.count == 2 && Int(parts[1]) != nil, "\(line)")
            #expect(parts[0].split(separator: ";").allSatisfy { $0.split(separator: ":").count >= 3 })
        }
        #expect(text.contains("busy_loop.py:spin:"))
        let second = try runTool(["--pid", String(fixture.pid), "--duration", "1", "--format", "speedscope", "--output",
                                  speedscope, "--quiet"])
        #expect(second.status == 0)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: speedscope)))
            as? [String: Any])
        let frames = try #require((document["shared"] as? [String: Any])?["frames"] as? [[String: Any]])
        let profiles = try #require(document["profiles"] as? [[String: Any]])
        #expect(profiles.count == 2, "one sampled profile per busy thread")
        for profile in profiles {
            #expect(profile["type"] as? String == "sampled")
            let samples = try #require(profile["samples"] as? [[Int]])
            let weights = try #require(profile["weights"] as? [Double])
            #expect(samples.count == weights.count && !samples.isEmpty)
            #expect(samples.allSatisfy { $0.allSatisfy { $0 >= 0 && $0 < frames.count } })
        }
    }

    @Test("periodic snapshots are written while recording")
    func snapshots() throws {
        let directory = try TemporaryDirectory()
        let json = directory.file("snap.json")
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("dump/busy_loop.py"))
        defer { fixture.kill() }
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: Package.tool)
        tool.arguments = ["--pid", String(fixture.pid), "--json", json, "--snapshot-interval", "0.5", "--quiet",
                          "--output", directory.file("table.txt")]
        try tool.run()
        defer { if tool.isRunning { kill(tool.processIdentifier, SIGKILL) } }
        usleep(1_500_000)
        #expect(FileManager.default.fileExists(atPath: json), "a snapshot exists before the run ends")
        let early = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        #expect((early?["elapsed_time_sec"] as? Double ?? 0) > 0.3)
        kill(tool.processIdentifier, SIGINT)
        tool.waitUntilExit()
        #expect(tool.terminationStatus == 0)
        let final = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        #expect((final?["elapsed_time_sec"] as? Double ?? 0) >= (early?["elapsed_time_sec"] as? Double ?? 0))
        #expect(fixture.isRunningUnstopped, "Ctrl-C ends profiling, never the target")
    }
}
