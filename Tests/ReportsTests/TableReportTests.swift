import Foundation
import Profiler
import Reports
import Testing

@Suite("table report: which lines, how wide, the header")
struct TableReportTests {
    func rows(_ text: String) -> [String] {
        text.split(separator: "\n").map(String.init).filter { $0.contains(" │ ") && !$0.contains("Line │") }
    }

    @Test("by default only lines with data and one line around them; --full prints all; --reduced only significant ones")
    func lineSelection() throws {
        let file = try ProfileFixtures.sourceFile(lines: 200)
        defer { try? FileManager.default.removeItem(atPath: (file as NSString).deletingLastPathComponent) }
        let lines = [50: ProfileFixtures.line(5), 120: ProfileFixtures.line(0.01)]
        let profile = ProfileFixtures.profile(file: file, lines: lines)
        let sources = SourceFiles(pid: nil)
        let normal = TableReport(profile: profile, sources: sources).render()
        let numbers = rows(normal).compactMap { Int($0.split(separator: "│")[0].trimmingCharacters(in: .whitespaces)) }
        #expect(numbers == [49, 50, 51, 119, 120, 121], "\(numbers)")
        #expect(normal.contains("  ...\n"), "gaps are marked")
        let full = TableReport(profile: profile, sources: sources, detail: .full).render()
        #expect(rows(full).count >= 200)
        let reduced = TableReport(profile: profile, sources: sources, detail: .reduced).render()
        let reducedNumbers = rows(reduced).compactMap { Int($0.split(separator: "│")[0].trimmingCharacters(in: .whitespaces)) }
        #expect(reducedNumbers == [50], "the 0.2% line is not significant: \(reducedNumbers)")
    }

    @Test("rows fit the width; the source column gets what the fixed columns leave")
    func width() throws {
        let file = try ProfileFixtures.sourceFile(lines: 10, name: "名前.py")
        defer { try? FileManager.default.removeItem(atPath: (file as NSString).deletingLastPathComponent) }
        let profile = ProfileFixtures.profile(file: file, lines: [3: ProfileFixtures.line(2, 1, 1)])
        for width in [80, 120, 200] {
            let text = TableReport(profile: profile, sources: SourceFiles(pid: nil), width: width).render()
            for line in text.split(separator: "\n") {
                #expect(TextWidth.of(String(line)) <= width, "\(width): \(line)")
            }
            let row = try #require(rows(text).first { $0.hasPrefix("    3 ") })
            let source = "x3 = 3  # some text to make the line long enough to be cut somewhere"
            if width >= 120 { #expect(row.hasSuffix(source), "\(width): \(row)") } else { #expect(row.hasSuffix("…")) }
        }
    }

    @Test("the header shows the command line, quoted where needed")
    func header() {
        let profile = ProfileFixtures.profile(file: "/nonexistent/app.py", lines: [:],
                                              arguments: ["/root/.pyenv/versions/3.11.7/bin/python3", "app.py", "--name", "a b"])
        let text = TableReport(profile: profile, sources: SourceFiles(pid: nil)).render()
        #expect(text.hasPrefix("scalene-attach: pid 4242 · Python 3.11.7 · python3 app.py --name 'a b'\n"), "\(text)")
        let unknown = ProfileFixtures.profile(file: "/x/app.py", lines: [:], arguments: [])
        #expect(TableReport.commandLine(unknown) == "/x/app.py")
    }

    @Test("memory: what the process holds, never negative, with its signed change and the exit")
    func memoryLine() {
        var memory = MemoryProfile()
        memory.peakFootprintMB = 100.4
        memory.totalAllocatedMB = 100.4
        memory.currentFootprintMB = 40.2
        memory.footprintChangeMB = -2.1
        memory.exitedAfterSeconds = 3.25
        let exited = TableReport.memorySummary(memory, targetExited: true)
        #expect(exited.contains("peak 100.4 MB") && exited.contains("holds 40.2 MB (−2.1 MB while profiled)"), "\(exited)")
        #expect(exited.contains("began exiting at 3.2 s") || exited.contains("began exiting at 3.3 s"), "\(exited)")
        #expect(!exited.contains("growth"))
        memory.exitedAfterSeconds = nil
        memory.currentFootprintMB = 46.5
        memory.footprintChangeMB = 6.3
        let running = TableReport.memorySummary(memory)
        #expect(running.contains("holds 46.5 MB (+6.3 MB while profiled)") && !running.contains("exiting"), "\(running)")
    }
}
