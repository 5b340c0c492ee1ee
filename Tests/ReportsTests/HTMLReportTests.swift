import Foundation
import Profiler
import Reports
import Testing

@Suite("HTML report: bounded, self-contained, read back from our JSON")
struct HTMLReportTests {
    /// A profile larger than the limits in every direction: 8 files of 600 lines, every line with
    /// time, memory and full sample lists, 2500 distinct deep stacks.
    func hugeProfile() -> Profile {
        var thread = ThreadProfile(tid: 1, name: "MainThread")
        thread.samples = 60_000
        thread.runningSamples = 60_000
        thread.wallSeconds = 600
        thread.cpuSeconds = 600
        var memory = MemoryProfile()
        memory.totalAllocatedMB = 1e6
        for file in 0..<8 {
            let path = "/srv/app/module\(file).py"
            for line in 1...600 {
                let key = SourceLine(file: path, line: line)
                var time = ProfileFixtures.line(0.001 * Double(line % 7 + 1), 0.0005, 0.0001,
                                                function: FunctionID(file: path, name: "f\(line / 20)", firstLine: line / 20 * 20 + 1))
                time.sampleTimes = (0..<100).map { Double($0) * 6 }
                thread.lines[key] = time
                thread.functions[time.function!, default: .zero] += time.time
                var lineMemory = MemoryLine()
                lineMemory.allocatedMB = Double(line % 13)
                lineMemory.peakMB = 1
                lineMemory.timeline = (0..<100).map { TimelinePoint(nanoseconds: UInt64($0) * 6_000_000_000, megabytes: Double($0 % 10)) }
                memory.lines[key] = lineMemory
            }
        }
        for index in 0..<2500 {
            let stack = (0..<40).map { StackFrame(file: "/srv/app/module\($0 % 8).py", function: "f\(index)_\($0)", line: $0 + 1) }
            var time = StackTime()
            time.time = TimeSplit(python: 0.01, native: Double(index % 3) * 0.01, system: 0.001)
            time.samples = 3
            thread.stacks[stack] = time
        }
        memory.footprint = (0..<100).map { TimelinePoint(nanoseconds: UInt64($0) * 6_000_000_000, megabytes: Double($0)) }
        var profile = ProfileFixtures.profile(file: "/srv/app/module0.py", lines: [:], memory: memory)
        profile.threads = [thread]
        profile.elapsed = 600
        return profile
    }

    @Test("a ten-minute-sized profile stays within a few MB and within the limits")
    func bounded() throws {
        let profile = hugeProfile()
        let report = try HTMLReport(profile: profile, sources: SourceFiles(pid: nil))
        let data = report.render()
        print(String(format: "huge synthetic profile: HTML %.2f MB", Double(data.count) / 1e6))
        #expect(data.count < 3_000_000, "\(data.count) bytes")
        let model = report.model()
        let files = try #require(model["files"] as? [[String: Any]])
        let dataRows = files.flatMap { ($0["lines"] as? [[Any]]) ?? [] }.filter { ($0.last as? Int) == 1 }
        #expect(dataRows.count == report.limits.dataLines)
        let stacks = try #require((model["stacks"] as? [String: Any])?["stacks"] as? [[Any]])
        let frames = try #require((model["stacks"] as? [String: Any])?["frames"] as? [[Any]])
        #expect(stacks.count > 100 && stacks.count <= report.limits.stacks, "\(stacks.count) stacks")
        #expect(frames.count <= report.limits.frames, "\(frames.count) frames")
        for row in dataRows.prefix(50) {
            #expect(((row[9] as? [Int]) ?? []).count <= report.limits.sparkPoints)
            #expect(((row[10] as? [Double]) ?? []).count <= report.limits.sparkPoints)
        }
    }

    @Test("the page loads nothing: a CSP that forbids every request, no external reference, data escaped")
    func selfContained() throws {
        let file = try ProfileFixtures.sourceFile(lines: 5)
        defer { try? FileManager.default.removeItem(atPath: (file as NSString).deletingLastPathComponent) }
        var profile = ProfileFixtures.profile(file: file, lines: [2: ProfileFixtures.line(1)])
        profile.arguments = ["python3", "</script><script>alert(1)</script>"]
        let html = String(decoding: try HTMLReport(profile: profile, sources: SourceFiles(pid: nil)).render(), as: UTF8.self)
        #expect(html.contains("content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\""))
        for reference in ["src=\"http", "href=\"http", "src=\"//", "url(http", "@import", "fetch(", "XMLHttpRequest", "WebSocket"] {
            #expect(!html.contains(reference), "\(reference)")
        }
        #expect(html.components(separatedBy: "</script>").count == 3, "only our two script elements end")
    }

    @Test("our JSON read back: frames with spaces in paths, the system share of stacks, source unescaped")
    func savedProfile() throws {
        let frame = SavedProfile.Stack.frame("/home/me/my project/app.py Worker.run:42;")
        #expect(frame == .init(file: "/home/me/my project/app.py", function: "Worker.run", line: 42))
        let file = try ProfileFixtures.sourceFile(lines: 3)
        defer { try? FileManager.default.removeItem(atPath: (file as NSString).deletingLastPathComponent) }
        try "if a < b and c > d & e:\n    pass\n".write(toFile: file, atomically: true, encoding: .utf8)
        var profile = ProfileFixtures.profile(file: file, lines: [1: ProfileFixtures.line(1, 0, 3)])
        var stack = StackTime()
        stack.time = TimeSplit(python: 1, system: 3)
        stack.samples = 4
        profile.threads[0].stacks[[StackFrame(file: file, function: "<module>", line: 1)]] = stack
        let json = ScaleneJSONReport(profile: profile, sources: SourceFiles(pid: nil)).render()
        let saved = try SavedProfile.decode(json)
        let stacks = try #require(saved.stacks)
        #expect(stacks.count == 1 && abs(stacks[0].system - 0.75) < 1e-9 && abs(stacks[0].python - 0.25) < 1e-9)
        #expect(saved.scaleneAttach?.commandLine == profile.arguments)
        let model = HTMLReport(profile: saved).model()
        let rows = try #require((model["files"] as? [[String: Any]])?.first?["lines"] as? [[Any]])
        #expect(rows.first?[8] as? String == "if a < b and c > d & e:")
        #expect(throws: SavedProfile.Invalid.self) { try SavedProfile.decode(Array("{\"files\": 3}".utf8)) }
        #expect(throws: SavedProfile.Invalid.self) { try SavedProfile.decode(Array("not json".utf8)) }
    }
}
