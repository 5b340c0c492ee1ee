import Profiler
import Reports
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// One frame of the live view, as a pure function of the shown refresh and the view state: a list
/// of lines, each exactly `size.columns` wide (escape sequences aside), at most `size.rows` of them.
///
///     scalene-attach top · pid 4242 · Python 3.11.7 · python3 app.py
///     12.0 s · 1200 samples · 100.0 Hz · 0 late · 0 unreadable
///     memory: holds 41.0 MB (peak 49.0 MB) · alloc 3.20 MB/s · copy 1.10 MB/s
///     lines · all threads (2) · sort: total · since attach
///     time: Python 61.0% · native 30.2% · system 8.8% of 24.0 thread-seconds
///      total │ Python │ native │ system │ alloc/s │  copy/s │ where          │ source
///      41.0% │  41.0% │        │        │         │         │ app.py:12      │ for i in range(n): ...
///     q quit · f lines/functions · s/1-6 sort · t thread · w window · space pause · h help
///
/// At 120 columns or more a bar of the row's Python (█), native (▒) and system (░) time is added.
public struct TopScreen {
    public var target: TopController.Target
    public var sample: TopSample?
    public var figures: TopFigures?
    public var state: TopState
    public var threads: [TopThread]
    public var notice: String?

    public init(target: TopController.Target, sample: TopSample?, figures: TopFigures?, state: TopState,
                threads: [TopThread], notice: String?) {
        self.target = target
        self.sample = sample
        self.figures = figures
        self.state = state
        self.threads = threads
        self.notice = notice
    }

    static let reverse = "\u{1b}[7m"
    static let bold = "\u{1b}[1m"
    static let plain = "\u{1b}[0m"

    public func render(size: Terminal.Size) -> [String] {
        let width = max(20, size.columns)
        let height = max(6, size.rows)
        func line(_ text: String) -> String { TextWidth.fit(text, width) }
        var out = [String]()
        out.append(Self.reverse + line(" scalene-attach top · pid \(target.pid) · Python \(target.pythonVersion) · \(target.commandLine)") + Self.plain)
        guard let sample, let figures else {
            out.append(line(" attaching…"))
            if let notice { out.append(line(" " + notice)) }
            return out + Array(repeating: line(""), count: max(0, height - out.count - 1)) + [footer(width)]
        }
        let status = sample.status
        out.append(line(String(printf: " %.1f s · %d samples · %.1f Hz · %d late · %d unreadable", status.elapsed,
                               status.samples, status.effectiveRate, status.lateTicks, status.unreadableSamples)))
        out.append(line(" " + memoryLine(sample, figures)))
        var view = " \(state.mode.rawValue) · " + threadLabel() + " · sort: \(state.sort.title) · "
        switch state.window {
        case .total: view += "since attach"
        case .recent(let seconds): view += String(printf: "last %.0f s", seconds)
        }
        out.append(line(view + (state.paused ? " · PAUSED (space resumes)" : "")))
        let total = figures.total
        out.append(line(" time: Python " + Self.share(total.python, total.total, blank: false)
                        + " · native " + Self.share(total.native, total.total, blank: false)
                        + " · system " + Self.share(total.system, total.total, blank: false)
                        + String(printf: " of %.1f thread-seconds", total.total)))
        if state.showHelp {
            for text in Self.help { out.append(line(text)) }
            return Array(out.prefix(height - 1)) + Array(repeating: line(""), count: max(0, height - 1 - out.count))
                + [footer(width)]
        }
        let rows = figures.sorted(by: state.sort)
        let room = max(0, height - out.count - 2)
        let first = max(0, min(state.scroll, rows.count - room))
        let visible = rows.dropFirst(first).prefix(room)
        let columns = Columns(width: width, memory: sample.hasMemory && state.thread == nil, mode: state.mode,
                              locations: visible.map { TextWidth.of(Columns.location($0)) }.max() ?? 10)
        out.append(Self.reverse + line(columns.header(sort: state.sort)) + Self.plain)
        if rows.isEmpty {
            out.append(line(sample.status.samples < 2 ? " (collecting…)" : " (nothing sampled in profiled files yet)"))
        }
        let top = rows.first.map { max($0.time.total, 1e-12) } ?? 1
        for row in visible {
            out.append(line(columns.row(row, total: total.total, seconds: figures.seconds, scale: top)))
        }
        while out.count < height - 1 { out.append(line("")) }
        let more = rows.count > room ? " · rows \(first + 1)–\(first + visible.count) of \(rows.count) (↑↓)" : ""
        return Array(out.prefix(height - 1)) + [footer(width, more: more)]
    }

    func threadLabel() -> String {
        guard let tid = state.thread else { return "all threads (\(threads.count))" }
        let name = threads.first { $0.tid == tid }?.name.map { " \"\($0)\"" } ?? ""
        return "thread \(tid)\(name)"
    }

    func memoryLine(_ sample: TopSample, _ figures: TopFigures) -> String {
        guard sample.hasMemory else { return notice ?? "memory: not profiled (--cpu-only)" }
        let seconds = max(figures.seconds, 1e-9)
        // What the process holds (its allocators' own figures), never a net change.
        var text = "memory: holds "
            + String(printf: "%.1f MB (peak %.1f MB) · alloc %.2f MB/s · copy %.2f MB/s", max(0, sample.footprintMB),
                     sample.peakFootprintMB, figures.allocatedMB / seconds, figures.copiedMB / seconds)
        if sample.droppedSamples > 0 { text += " · \(sample.droppedSamples) dropped" }
        if state.thread != nil { text += " (all threads)" }
        if let notice { text += " · " + notice }
        return text
    }

    func footer(_ width: Int, more: String = "") -> String {
        Self.reverse + TextWidth.fit(" q quit · f lines/functions · s/1-6 sort · t thread · w window · space pause · h help" + more,
                                     width) + Self.plain
    }

    static let help = [
        "",
        " q, Ctrl-C   detach and quit (the process keeps running, every hook removed)",
        " f           lines ↔ functions",
        " s / S       next / previous sort key; 1 total, 2 Python, 3 native, 4 system, 5 alloc, 6 copy",
        " t / T       next / previous thread (memory is process-wide: shown for all threads only)",
        " w           window: since attach ↔ last 5 s",
        " space, p    pause the display (sampling goes on)",
        " ↑ ↓ PgUp PgDn Home   scroll",
        " h, ?, Esc   this help",
    ]

    /// "41.0%", or blank for nothing (so hot rows stand out).
    static func share(_ value: Double, _ total: Double, blank: Bool = true) -> String {
        guard total > 0 else { return blank ? "" : "0.0%" }
        let percent = 100 * value / total
        if blank && percent < 0.05 { return "" }
        return String(printf: "%.1f%%", percent)
    }

    /// The column layout for a width: fixed numeric columns, a bar when wide, and the location and
    /// text sharing the rest.
    struct Columns {
        var width: Int
        var memory: Bool
        var mode: TopMode
        /// Columns of the widest location shown ("file.py:123").
        var locations: Int
        var bar: Int { width >= 120 ? min(40, (width - 60) / 4) : 0 }
        var numeric: Int { 4 * 7 + (memory ? 2 * 8 : 0) }
        var location: Int { max(10, min(locations, 40, (width - numeric - bar) / 2)) }
        var text: Int { max(0, width - numeric - bar - location - 6 - (bar > 0 ? 2 : 0)) }

        static func location(_ row: TopRow) -> String {
            (row.file.split(separator: "/").last.map(String.init) ?? row.file) + ":\(row.line)"
        }

        func header(sort: TopSort) -> String {
            func title(_ name: String, _ key: TopSort, _ width: Int) -> String {
                TextWidth.padLeft((sort == key ? "▼" : "") + name, width)
            }
            var out = title("total", .total, 7) + title("Python", .python, 7) + title("native", .native, 7)
                + title("system", .system, 7)
            if memory { out += title("alloc/s", .memory, 8) + title("copy/s", .copy, 8) }
            if bar > 0 { out += "  " + TextWidth.padRight("█ Python ▒ native ░ system", bar) }
            out += " │ " + TextWidth.padRight(mode == .lines ? "where" : "defined at", location) + " │ "
            out += mode == .lines ? "source" : "function"
            return out
        }

        func row(_ row: TopRow, total: Double, seconds: Double, scale: Double) -> String {
            var out = TextWidth.padLeft(share(row.time.total, total), 7)
                + TextWidth.padLeft(share(row.time.python, total), 7)
                + TextWidth.padLeft(share(row.time.native, total), 7)
                + TextWidth.padLeft(share(row.time.system, total), 7)
            if memory {
                func rate(_ megabytes: Double) -> String {
                    let perSecond = seconds > 0 ? megabytes / seconds : 0
                    return perSecond >= 0.005 ? (perSecond >= 100 ? String(printf: "%.0fM", perSecond) : String(printf: "%.2fM", perSecond)) : ""
                }
                out += TextWidth.padLeft(rate(row.allocatedMB), 8) + TextWidth.padLeft(rate(row.copiedMB), 8)
            }
            if bar > 0 { out += "  " + Self.bar(row.time, width: bar, scale: scale) }
            out += " │ " + TextWidth.fit(Self.location(row), location) + " │ "
            out += TextWidth.clip(TextWidth.printable(row.text).trimmingWhitespace(), to: text)
            return out
        }

        /// The row's time as a bar scaled to the hottest row: Python, then native, then system.
        static func bar(_ time: TimeSplit, width: Int, scale: Double) -> String {
            let cells = Double(width) / max(scale, 1e-12)
            let python = Int((time.python * cells).rounded())
            let native = Int(((time.python + time.native) * cells).rounded()) - python
            let system = min(width, Int((time.total * cells).rounded())) - python - native
            let used = max(0, python) + max(0, native) + max(0, system)
            return String(repeating: "█", count: max(0, python)) + String(repeating: "▒", count: max(0, native))
                + String(repeating: "░", count: max(0, system)) + String(repeating: " ", count: max(0, width - used))
        }

        func share(_ value: Double, _ total: Double) -> String { TopScreen.share(value, total) }
    }
}
