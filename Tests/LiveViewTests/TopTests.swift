import Foundation
import CPythonLayouts
import LiveView
import Profiler
import Reports
import Testing

/// Profiles built in memory for the view's pure parts (inputs to formatting, not measurements:
/// the tmux test watches a real process).
enum Samples {
    static let file = "/srv/app/server.py"

    static func thread(_ tid: Int32, _ name: String, _ lines: [Int: TimeSplit]) -> ThreadProfile {
        var thread = ThreadProfile(tid: tid, name: name)
        thread.samples = 100
        thread.runningSamples = 50
        thread.cpuSeconds = 1
        for (number, time) in lines {
            var line = LineTime()
            line.time = time
            line.samples = 10
            let function = FunctionID(file: file, name: "handler\(number / 10)", firstLine: number / 10 * 10)
            line.function = function
            thread.lines[SourceLine(file: file, line: number)] = line
            thread.functions[function, default: .zero] += time
        }
        return thread
    }

    static func profile(elapsed: Double, threads: [ThreadProfile], allocated: [Int: Double] = [:]) -> Profile {
        var stats = SamplerStatistics()
        stats.ticks = Int(elapsed * 100)
        stats.lateTicks = 3
        stats.failedTicks = 1
        var memory: MemoryProfile?
        if !allocated.isEmpty {
            var m = MemoryProfile()
            for (number, megabytes) in allocated {
                var line = MemoryLine()
                line.allocatedMB = megabytes
                line.copiedMB = megabytes / 2
                m.lines[SourceLine(file: file, line: number)] = line
                m.totalAllocatedMB += megabytes
                m.copiedMB += megabytes / 2
            }
            m.currentFootprintMB = 12
            m.peakFootprintMB = 20
            memory = m
        }
        return Profile(pid: 77, pythonVersion: PythonVersion(major: 3, minor: 12, micro: 1),
                       arguments: ["python3", "server.py"], program: file, startEpoch: 0, startMonotonic: 0,
                       elapsed: elapsed, threads: threads, filter: FileFilter(), includeIdle: false, statistics: stats,
                       end: .durationElapsed, memory: memory)
    }

    /// Two threads: line 12 is hot in Python, line 31 native, line 45 system.
    static let early = profile(elapsed: 10, threads: [
        thread(1, "MainThread", [12: TimeSplit(python: 4), 31: TimeSplit(native: 1)]),
        thread(2, "worker", [45: TimeSplit(system: 2)]),
    ], allocated: [31: 50, 12: 5])
    /// Ten seconds later: since then only line 45 (system) has been busy.
    static let late = profile(elapsed: 20, threads: [
        thread(1, "MainThread", [12: TimeSplit(python: 4), 31: TimeSplit(native: 1)]),
        thread(2, "worker", [45: TimeSplit(system: 9)]),
    ], allocated: [31: 50, 12: 5])

    static func controller() -> TopController {
        TopController(target: .init(pid: 77, pythonVersion: "3.12.1", commandLine: "python3 server.py"),
                      sourceLine: { _, line in "source_of_line_\(line)()" })
    }
}

@Suite("top: keys, figures, screens")
struct TopTests {
    @Test("keys: characters, Enter, Escape and cursor sequences; unknown sequences dropped whole")
    func keys() {
        #expect(Key.parse(Array("qf1".utf8)) == [.character("q"), .character("f"), .character("1")])
        #expect(Key.parse([0x1b, 0x5b, 0x41, 0x1b, 0x5b, 0x42, 0x0d]) == [.up, .down, .enter])
        #expect(Key.parse([0x1b, 0x5b, 0x35, 0x7e, 0x1b, 0x5b, 0x36, 0x7e]) == [.pageUp, .pageDown])
        #expect(Key.parse([0x1b]) == [.escape])
        #expect(Key.parse([0x1b, 0x5b, 0x31, 0x3b, 0x35, 0x43, 0x71]) == [.character("q")], "Ctrl-Right is ignored")
        #expect(Key.parse(Array("é".utf8)) == [.character("é")])
    }

    @Test("sort keys change the order; ties keep source order")
    func sorting() {
        let figures = TopFigures(current: TopSample(profile: Samples.early), base: nil, mode: .lines, thread: nil)
        #expect(figures.sorted(by: .total).map(\.line) == [12, 45, 31])
        #expect(figures.sorted(by: .native).first?.line == 31)
        #expect(figures.sorted(by: .system).first?.line == 45)
        #expect(figures.sorted(by: .memory).first?.line == 31)
        #expect(abs(figures.total.total - 7) < 1e-9)
    }

    @Test("thread filter, functions mode and the recent window")
    func filtersAndWindow() {
        let worker = TopFigures(current: TopSample(profile: Samples.early), base: nil, mode: .lines, thread: 2)
        #expect(worker.rows.map(\.line) == [45])
        #expect(worker.rows[0].allocatedMB == 0, "memory is process-wide: not shown per thread")
        let functions = TopFigures(current: TopSample(profile: Samples.early), base: nil, mode: .functions, thread: nil)
        #expect(functions.sorted(by: .total).map(\.text) == ["handler1", "handler4", "handler3"])
        let recent = TopFigures(current: TopSample(profile: Samples.late), base: TopSample(profile: Samples.early),
                                mode: .lines, thread: nil)
        #expect(recent.rows.map(\.line) == [45], "only line 45 was busy in the last 10 s")
        #expect(abs(recent.total.system - 7) < 1e-9 && abs(recent.seconds - 10) < 1e-9)
    }

    @Test("the controller: keys change the state, pause freezes the shown refresh, q quits")
    func controller() {
        let controller = Samples.controller()
        controller.record(TopSample(profile: Samples.early))
        #expect(controller.handle(.character("3")) == .redraw)
        #expect(controller.state.sort == .native)
        #expect(controller.handle(.character("s")) == .redraw && controller.state.sort == .system)
        #expect(controller.handle(.character("t")) == .redraw && controller.state.thread == 1)
        _ = controller.handle(.character("t"))
        _ = controller.handle(.character("t"))
        #expect(controller.state.thread == nil, "t cycles back to all threads")
        _ = controller.handle(.character(" "))
        controller.record(TopSample(profile: Samples.late))
        #expect(controller.shown?.elapsed == 10, "paused: the display stays")
        _ = controller.handle(.character(" "))
        #expect(controller.shown?.elapsed == 20)
        _ = controller.handle(.character("w"))
        #expect(controller.figures?.rows.map(\.line) == [45])
        #expect(controller.handle(.character("x")) == .none)
        #expect(controller.handle(.character("q")) == .quit)
    }

    @Test("frames fit 80×24 exactly and use the width of a wide terminal", arguments: [(80, 24), (120, 40), (200, 50), (40, 10)])
    func frames(columns: Int, rows: Int) {
        let controller = Samples.controller()
        controller.record(TopSample(profile: Samples.early))
        let frame = controller.frame(size: .init(rows: rows, columns: columns))
        #expect(frame.count == rows)
        let plain = frame.map { $0.replacingOccurrences(of: "\u{1b}[7m", with: "").replacingOccurrences(of: "\u{1b}[0m", with: "") }
        for line in plain { #expect(TextWidth.of(line) == columns, "\(columns): '\(line)'") }
        let text = plain.joined(separator: "\n")
        #expect(text.contains("pid 77"))
        if columns >= 80 { #expect(text.contains("Python 3.12.1")) }
        if rows >= 24 {
            #expect(text.contains("100.0 Hz · 3 late · 1 unreadable"), "\(text)")
            #expect(text.contains("alloc ") && text.contains("copy "))
            let firstRow = plain.firstIndex { $0.contains("server.py:") }!
            #expect(plain[firstRow].contains("server.py:12") && plain[firstRow].contains("source_of_line_1"))
        }
        if columns >= 120 { #expect(text.contains("█"), "a bar in a wide terminal") }
    }

    @Test("before the first refresh, and with many rows: scrolling shows where you are")
    func emptyAndScrolling() {
        let controller = Samples.controller()
        #expect(controller.frame(size: .init(rows: 24, columns: 80)).joined().contains("attaching"))
        let many = Samples.profile(elapsed: 10, threads: [Samples.thread(1, "MainThread",
            Dictionary(uniqueKeysWithValues: (1...100).map { ($0, TimeSplit(python: Double($0))) }))])
        controller.record(TopSample(profile: many))
        for _ in 0..<5 { _ = controller.handle(.down) }
        let text = controller.frame(size: .init(rows: 24, columns: 100)).joined(separator: "\n")
        #expect(text.contains("rows 6–"), "\(text)")
    }
}
