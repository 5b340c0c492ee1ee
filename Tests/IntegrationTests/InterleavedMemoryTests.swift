import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Memory and copy volume on the right line when lines of very different sizes interleave in one
/// loop (fixtures/memory/interleaved.py records what each line allocates and copies), at the
/// default windows, and the leak found over the run whether the target exits while profiled or is
/// detached from while it runs.
@Suite("interleaved memory and copy accuracy", .serialized)
struct InterleavedMemoryTests {
    struct Truth: Decodable {
        var alloc: [String: Double]
        var copied: [String: Double]
        var rounds: Int
        var seconds: Double
    }

    static let allocating = ["small", "kept", "big", "native", "churn", "leak"]
    static let copying = ["copy8", "copy2", "copy32k"]
    static let megabyte = 1024.0 * 1024.0

    /// The profile's lines of the fixture, by line number, and the leaks it reports.
    static func lines(_ profile: [String: Any], script: String) throws -> (lines: [Int: [String: Any]], leaks: Set<String>) {
        let file = try #require((profile["files"] as? [String: Any])?[script] as? [String: Any])
        let lines = (file["lines"] as? [[String: Any]] ?? []).reduce(into: [Int: [String: Any]]()) {
            $0[$1["lineno"] as? Int ?? 0] = $1
        }
        return (lines, Set(((file["leaks"] as? [String: Any]) ?? [:]).keys))
    }

    @Test("per-line MB, copy MB/s and class within 10% over 8 s; the leak flagged though the target exits",
          arguments: Interpreters.installed)
    func targetExits(python: Interpreter) throws {
        let directory = try TemporaryDirectory()
        let script = Package.fixture("memory/interleaved.py")
        let marks = try markers(in: script)
        let truthPath = directory.file("truth.json")
        let json = directory.file("memory.json")
        let fixture = try FixtureProcess(python: python.path, script: script, arguments: [truthPath, nativeAllocLibrary, "8"])
        defer { fixture.kill() }
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: Package.tool)
        tool.arguments = ["--pid", String(fixture.pid), "--json", json, "--quiet", "--output", directory.file("table.txt")]
        try tool.run()
        defer { if tool.isRunning { kill(tool.processIdentifier, SIGKILL); tool.waitUntilExit() } }
        #expect(AgentProbe.wait(seconds: 10) { AgentProbe.hookPointers(pid: fixture.pid) > 0 }, "the agent armed")
        usleep(200_000)
        fixture.send("go")
        // The fixture exits by itself after 8 s; the tool reports what it collected and ends.
        let deadline = Date().addingTimeInterval(60)
        while tool.isRunning && Date() < deadline { usleep(20_000) }
        try #require(!tool.isRunning, "the tool ended after the target exited")
        let truth = try JSONDecoder().decode(Truth.self, from: Data(contentsOf: URL(fileURLWithPath: truthPath)))
        let profile = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
            as? [String: Any])
        let (lines, leaks) = try Self.lines(profile, script: script)
        let elapsed = profile["elapsed_time_sec"] as? Double ?? 0
        func value(_ mark: String, _ key: String) -> Double { lines[marks[mark] ?? -1]?[key] as? Double ?? 0 }

        var report = [String]()
        for name in Self.allocating {
            let measured = value(name, "n_malloc_mb"), expected = (truth.alloc[name] ?? 0) / Self.megabyte
            let error = expected > 0 ? measured / expected - 1 : .infinity
            report.append(String(format: "%@ %.0f/%.0f MB (%+.1f%%, py %.2f)", name, measured, expected, 100 * error,
                                 value(name, "n_python_fraction")))
            #expect(abs(error) <= 0.10, "\(python.label) \(name): \(measured) MB allocated, truth \(expected) MB")
            let share = value(name, "n_python_fraction")
            if name == "native" {
                #expect(share <= 0.05, "\(python.label): memory malloc'd by C code is native (\(share))")
            } else {
                #expect(share >= 0.95, "\(python.label) \(name): Python objects are Python memory (\(share))")
            }
        }
        for name in Self.copying {
            // MB/s over the profile against the bytes the fixture copied over the same profile.
            let rate = value(name, "n_copy_mb_s"), expected = (truth.copied[name] ?? 0) / Self.megabyte / elapsed
            let error = expected > 0 ? rate / expected - 1 : .infinity
            report.append(String(format: "%@ %.1f/%.1f MB/s (%+.1f%%)", name, rate, expected, 100 * error))
            #expect(abs(error) <= 0.10, "\(python.label) \(name): \(rate) MB/s copied, truth \(expected) MB/s")
        }
        // Churn: allocated in full, held for an instant.
        #expect(value("churn", "n_peak_mb") < 0.1 * value("churn", "n_malloc_mb"), "churn holds nothing")
        // What the process holds, memory allocated before the attach included (the copy sources:
        // 10 MiB), never a net change since attach.
        let memory = (profile["scalene_attach"] as? [String: Any])?["memory"] as? [String: Any] ?? [:]
        let peak = profile["max_footprint_mb"] as? Double ?? 0
        let held = ((truth.alloc["leak"] ?? 0) + 32 * 300 * 1024 + 10 * Self.megabyte) / Self.megabyte
        #expect(peak >= 0.9 * held, "\(python.label): peak \(peak) MB below what the fixture held (\(held) MB)")
        #expect((memory["current_footprint_mb"] as? Double ?? -1) > 0)
        #expect(memory["exited_after_seconds"] as? Double != nil, "the profile says the process exited")
        #expect(leaks == [String(marks["leak"]!)], "\(python.label): only the leaking line is flagged: \(leaks.sorted())")
        print("\(python.label): \(truth.rounds) rounds in \(String(format: "%.1f", truth.seconds)) s; "
              + report.joined(separator: ", ") + String(format: "; peak %.1f MB; leaks %@", peak, leaks.sorted().joined(separator: ",")))
    }

    @Test("the leak flagged when the target is detached from while it runs", arguments: Interpreters.installed)
    func detachWhileRunning(python: Interpreter) throws {
        let directory = try TemporaryDirectory()
        let script = Package.fixture("memory/interleaved.py")
        let marks = try markers(in: script)
        let json = directory.file("memory.json")
        let fixture = try FixtureProcess(python: python.path, script: script,
                                         arguments: [directory.file("truth.json"), nativeAllocLibrary, "0"])
        defer { fixture.kill() }
        fixture.send("go")
        usleep(300_000)
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "5", "--json", json, "--quiet",
                                  "--output", "/dev/null"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(AgentProbe.hookPointers(pid: fixture.pid) == 0, "every hook restored after detach")
        #expect(fixture.isRunningUnstopped, "the target runs on")
        let profile = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
            as? [String: Any])
        let (_, leaks) = try Self.lines(profile, script: script)
        let memory = (profile["scalene_attach"] as? [String: Any])?["memory"] as? [String: Any] ?? [:]
        #expect(memory["exited_after_seconds"] is NSNull, "the process did not exit")
        #expect(leaks == [String(marks["leak"]!)], "\(python.label): only the leaking line is flagged: \(leaks.sorted())")
        print("\(python.label): detached while running; leaks \(leaks.sorted())")
    }
}
