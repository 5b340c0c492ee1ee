import Profiler

/// What the person chose: mode, order, thread, window, pause, scroll.
public struct TopState: Sendable, Equatable {
    public var mode: TopMode = .lines
    public var sort: TopSort = .total
    /// Only this thread (by tid); nil: every reported thread.
    public var thread: Int32?
    public var window: TopWindow = .total
    /// The display is frozen (sampling goes on).
    public var paused = false
    /// First row shown.
    public var scroll = 0
    public var showHelp = false

    public init() {}

    /// Seconds of the recent window.
    public static let recentSeconds = 5.0
}

/// What a key asks the loop to do.
public enum TopAction: Sendable, Equatable {
    case none, redraw, quit
}

/// The live view's state machine: keeps the refresh history, applies keys, and turns the shown
/// refresh into a frame. No I/O: the command feeds it samples and keys and draws its frames.
public final class TopController {
    /// Who is watched, for the title line.
    public struct Target: Sendable, Equatable {
        public var pid: Int32
        public var pythonVersion: String
        public var commandLine: String

        public init(pid: Int32, pythonVersion: String, commandLine: String) {
            self.pid = pid
            self.pythonVersion = pythonVersion
            self.commandLine = commandLine
        }
    }

    public let target: Target
    public private(set) var state = TopState()
    /// Refreshes, oldest first (bounded: the recent window's base and a little more).
    public private(set) var history: [TopSample] = []
    /// The refresh on screen (the latest, unless paused).
    public private(set) var shown: TopSample?
    /// A note for the status area (memory profiling unavailable, ...).
    public var notice: String?
    /// Source text of a line (lines mode shows it).
    let sourceLine: (String, Int) -> String

    public init(target: Target, notice: String? = nil, sourceLine: @escaping (String, Int) -> String) {
        self.target = target
        self.notice = notice
        self.sourceLine = sourceLine
    }

    /// A new refresh. Shown at once unless paused.
    public func record(_ sample: TopSample) {
        history.append(sample)
        if !state.paused { shown = sample }
        // Keep what the recent window of the shown refresh needs, and a few seconds more.
        let keepFrom = (shown?.elapsed ?? sample.elapsed) - TopState.recentSeconds - 5
        if let cut = history.firstIndex(where: { $0.elapsed >= keepFrom }), cut > 1 {
            history.removeFirst(cut - 1)
        }
    }

    /// Threads the filter cycles through, by tid.
    public var threads: [TopThread] {
        guard let shown else { return [] }
        return shown.totals.keys.sorted().map { TopThread(tid: $0, name: shown.names[$0], time: shown.totals[$0] ?? .zero) }
    }

    /// The refresh a window's figures are measured from (nil: since attach).
    func base(for sample: TopSample) -> TopSample? {
        guard case .recent(let seconds) = state.window else { return nil }
        return history.last { $0.elapsed <= sample.elapsed - seconds } ?? history.first.flatMap {
            $0.elapsed < sample.elapsed ? $0 : nil
        }
    }

    /// The figures on screen.
    public var figures: TopFigures? {
        guard let shown else { return nil }
        return TopFigures(current: shown, base: base(for: shown), mode: state.mode, thread: state.thread)
    }

    public func handle(_ key: Key) -> TopAction {
        switch key {
        case .character("q"), .character("Q"):
            return .quit
        case .character("f"), .character("F"):
            state.mode = state.mode == .lines ? .functions : .lines
            state.scroll = 0
        case .character("s"):
            state.sort = Self.next(state.sort, in: TopSort.allCases, by: 1)
        case .character("S"):
            state.sort = Self.next(state.sort, in: TopSort.allCases, by: -1)
        case .character(let digit) where ("1"..."6").contains(digit):
            state.sort = TopSort.allCases[Int(String(digit))! - 1]
        case .character("t"), .character("T"):
            let tids: [Int32?] = [nil] + threads.map(\.tid)
            let index = tids.firstIndex(of: state.thread) ?? 0
            state.thread = tids[(index + (key == .character("T") ? tids.count - 1 : 1)) % tids.count]
            state.scroll = 0
        case .character("w"), .character("W"):
            state.window = state.window == .total ? .recent(seconds: TopState.recentSeconds) : .total
        case .character(" "), .character("p"), .character("P"):
            state.paused.toggle()
            if !state.paused { shown = history.last }
        case .character("h"), .character("?"):
            state.showHelp.toggle()
        case .escape:
            guard state.showHelp else { return .none }
            state.showHelp = false
        case .down: state.scroll += 1
        case .up: state.scroll = max(0, state.scroll - 1)
        case .pageDown: state.scroll += 10
        case .pageUp: state.scroll = max(0, state.scroll - 10)
        case .home: state.scroll = 0
        default:
            return .none
        }
        return .redraw
    }

    static func next<T: Equatable>(_ value: T, in all: [T], by step: Int) -> T {
        let index = all.firstIndex(of: value) ?? 0
        return all[(index + step + all.count) % all.count]
    }

    /// The screen for a terminal of `size`.
    public func frame(size: Terminal.Size) -> [String] {
        var figures = self.figures
        if state.mode == .lines, var current = figures {
            current.rows = current.rows.map { row in
                var row = row
                row.text = sourceLine(row.file, row.line)
                return row
            }
            figures = current
        }
        return TopScreen(target: target, sample: shown, figures: figures, state: state, threads: threads,
                         notice: notice).render(size: size)
    }
}
