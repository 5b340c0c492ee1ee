import Profiler

/// What the view shows per row.
public enum TopMode: String, Sendable, CaseIterable {
    case lines, functions
}

/// Row order, hottest first.
public enum TopSort: String, Sendable, CaseIterable {
    case total, python, native, system, memory, copy

    /// The column title the key sorts by.
    var title: String {
        switch self {
        case .total: return "total"
        case .python: return "Python"
        case .native: return "native"
        case .system: return "system"
        case .memory: return "alloc MB/s"
        case .copy: return "copy MB/s"
        }
    }
}

/// Over which time the figures are summed.
public enum TopWindow: Sendable, Equatable {
    /// Since attach.
    case total
    /// The last `seconds` (as close as the refresh history allows).
    case recent(seconds: Double)
}

/// The aggregated figures of one row: a line or a function, over the view's window.
public struct TopRow: Sendable, Equatable {
    public var file: String
    public var line: Int
    /// Function name (functions mode) or source text (lines mode), filled in by the view.
    public var text: String
    public var time: TimeSplit
    public var allocatedMB: Double
    public var copiedMB: Double

    public init(file: String, line: Int, text: String = "", time: TimeSplit = .zero, allocatedMB: Double = 0,
                copiedMB: Double = 0) {
        self.file = file
        self.line = line
        self.text = text
        self.time = time
        self.allocatedMB = allocatedMB
        self.copiedMB = copiedMB
    }
}

/// One thread as the filter lists it.
public struct TopThread: Sendable, Equatable {
    public var tid: Int32?
    public var name: String?
    public var time: TimeSplit
}

/// The cumulative figures of one refresh: what a window is the difference of.
public struct TopSample: Sendable {
    /// Seconds since the start.
    public var elapsed: Double
    /// Per thread (by tid): per-line and per-function time, and everything the thread spent.
    public var lines: [Int32: [SourceLine: TimeSplit]]
    public var functions: [Int32: [FunctionID: TimeSplit]]
    public var totals: [Int32: TimeSplit]
    public var names: [Int32: String]
    /// Process-wide memory per line and function (the agent does not tell threads apart).
    public var memoryLines: [SourceLine: MemoryLine]
    public var memoryFunctions: [FunctionID: MemoryLine]
    public var hasMemory: Bool
    public var footprintMB: Double
    public var peakFootprintMB: Double
    public var totalAllocatedMB: Double
    public var totalCopiedMB: Double
    public var droppedSamples: Int
    public var status: Status

    /// The recording status figures, as the status line of `profile` shows them.
    public struct Status: Sendable, Equatable {
        public var elapsed: Double
        public var samples: Int
        public var effectiveRate: Double
        public var lateTicks: Int
        public var unreadableSamples: Int
    }

    /// Reduces a profile to what the view needs. Threads left out as idle (see
    /// `Profile.reportedThreads`) are left out here too.
    public init(profile: Profile) {
        elapsed = profile.elapsed
        var lines = [Int32: [SourceLine: TimeSplit]]()
        var functions = [Int32: [FunctionID: TimeSplit]]()
        var totals = [Int32: TimeSplit]()
        var names = [Int32: String]()
        for thread in profile.reportedThreads {
            // Retired threads may share a tid with a later one; they are summed under it.
            let tid = thread.tid ?? -1
            for (key, value) in thread.lines { lines[tid, default: [:]][key, default: .zero] += value.time }
            for (key, value) in thread.functions { functions[tid, default: [:]][key, default: .zero] += value }
            totals[tid, default: .zero] += thread.total
            if let name = thread.name { names[tid] = name }
        }
        self.lines = lines
        self.functions = functions
        self.totals = totals
        self.names = names
        let memory = profile.memory
        hasMemory = memory != nil
        memoryLines = memory?.lines ?? [:]
        memoryFunctions = memory?.functions ?? [:]
        footprintMB = memory?.currentFootprintMB ?? 0
        peakFootprintMB = memory?.peakFootprintMB ?? 0
        totalAllocatedMB = memory?.totalAllocatedMB ?? 0
        totalCopiedMB = memory?.copiedMB ?? 0
        droppedSamples = memory?.agent.droppedSamples ?? 0
        let stats = profile.statistics
        status = Status(elapsed: profile.elapsed, samples: stats.ticks,
                        effectiveRate: profile.elapsed > 0 ? Double(stats.ticks) / profile.elapsed : 0,
                        lateTicks: stats.lateTicks, unreadableSamples: stats.failedTicks)
    }
}

/// Rows and totals for one mode, thread and window: `current` minus `base` (nil: since attach).
public struct TopFigures: Sendable, Equatable {
    public var rows: [TopRow]
    /// All time of the selected threads in the window: the denominator of every percentage.
    public var total: TimeSplit
    public var seconds: Double
    public var allocatedMB: Double
    public var copiedMB: Double

    public init(current: TopSample, base: TopSample?, mode: TopMode, thread: Int32?) {
        let tids = thread.map { [$0] } ?? Array(current.totals.keys)
        var total = TimeSplit.zero
        for tid in tids {
            total += current.totals[tid] ?? .zero
            if let base { total += Self.negated(base.totals[tid] ?? .zero) }
        }
        self.total = Self.clamped(total)
        seconds = max(0, current.elapsed - (base?.elapsed ?? 0))
        allocatedMB = max(0, current.totalAllocatedMB - (base?.totalAllocatedMB ?? 0))
        copiedMB = max(0, current.totalCopiedMB - (base?.totalCopiedMB ?? 0))
        var rows = [String: TopRow]()
        func key(_ file: String, _ line: Int, _ name: String) -> String { "\(file)\u{0}\(line)\u{0}\(name)" }
        switch mode {
        case .lines:
            for tid in tids {
                for (line, time) in current.lines[tid] ?? [:] {
                    rows[key(line.file, line.line, ""), default: TopRow(file: line.file, line: line.line)].time += time
                }
                for (line, time) in base?.lines[tid] ?? [:] {
                    rows[key(line.file, line.line, ""), default: TopRow(file: line.file, line: line.line)].time
                        += Self.negated(time)
                }
            }
            // Memory is process-wide: shown only when every thread is.
            if thread == nil {
                for (line, memory) in current.memoryLines {
                    let old = base?.memoryLines[line]
                    rows[key(line.file, line.line, ""), default: TopRow(file: line.file, line: line.line)].allocatedMB
                        += memory.allocatedMB - (old?.allocatedMB ?? 0)
                    rows[key(line.file, line.line, ""), default: TopRow(file: line.file, line: line.line)].copiedMB
                        += memory.copiedMB - (old?.copiedMB ?? 0)
                }
            }
        case .functions:
            for tid in tids {
                for (function, time) in current.functions[tid] ?? [:] {
                    rows[key(function.file, function.firstLine, function.name),
                         default: TopRow(file: function.file, line: function.firstLine, text: function.name)].time += time
                }
                for (function, time) in base?.functions[tid] ?? [:] {
                    rows[key(function.file, function.firstLine, function.name),
                         default: TopRow(file: function.file, line: function.firstLine, text: function.name)].time
                        += Self.negated(time)
                }
            }
            if thread == nil {
                for (function, memory) in current.memoryFunctions {
                    let old = base?.memoryFunctions[function]
                    let k = key(function.file, function.firstLine, function.name)
                    rows[k, default: TopRow(file: function.file, line: function.firstLine, text: function.name)].allocatedMB
                        += memory.allocatedMB - (old?.allocatedMB ?? 0)
                    rows[k, default: TopRow(file: function.file, line: function.firstLine, text: function.name)].copiedMB
                        += memory.copiedMB - (old?.copiedMB ?? 0)
                }
            }
        }
        self.rows = rows.values.map { row in
            var row = row
            row.time = Self.clamped(row.time)
            row.allocatedMB = max(0, row.allocatedMB)
            row.copiedMB = max(0, row.copiedMB)
            return row
        }.filter { $0.time.total > 1e-9 || $0.allocatedMB > 1e-9 || $0.copiedMB > 1e-9 }
    }

    /// Rows hottest first by `sort`, ties in source order (a stable display).
    public func sorted(by sort: TopSort) -> [TopRow] {
        func value(_ row: TopRow) -> Double {
            switch sort {
            case .total: return row.time.total
            case .python: return row.time.python
            case .native: return row.time.native
            case .system: return row.time.system
            case .memory: return row.allocatedMB
            case .copy: return row.copiedMB
            }
        }
        return rows.sorted { a, b in
            let (va, vb) = (value(a), value(b))
            if va != vb { return va > vb }
            if a.time.total != b.time.total { return a.time.total > b.time.total }
            return (a.file, a.line, a.text) < (b.file, b.line, b.text)
        }
    }

    static func negated(_ time: TimeSplit) -> TimeSplit {
        TimeSplit(python: -time.python, native: -time.native, system: -time.system)
    }

    /// Differences of cumulative sums are never really negative: a tiny negative is rounding.
    static func clamped(_ time: TimeSplit) -> TimeSplit {
        TimeSplit(python: max(0, time.python), native: max(0, time.native), system: max(0, time.system))
    }
}
