import CPythonLayouts
import NativeStacks

/// A place in the source: where time and memory land.
public struct SourceLine: Hashable, Sendable, Comparable {
    public var file: String
    public var line: Int

    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    public static func < (a: SourceLine, b: SourceLine) -> Bool { (a.file, a.line) < (b.file, b.line) }
}

/// A function, identified as Python identifies it.
public struct FunctionID: Hashable, Sendable, Comparable {
    public var file: String
    /// Qualified name where the version has one (3.11+), else the plain name.
    public var name: String
    public var firstLine: Int

    public init(file: String, name: String, firstLine: Int) {
        self.file = file
        self.name = name
        self.firstLine = firstLine
    }

    public static func < (a: FunctionID, b: FunctionID) -> Bool {
        (a.file, a.firstLine, a.name) < (b.file, b.firstLine, b.name)
    }
}

/// One frame of a sampled stack (for flame graphs).
public struct StackFrame: Hashable, Sendable {
    /// The source file, or for a native frame the object (`libz.so.1`).
    public var file: String
    public var function: String
    /// 0 for native frames.
    public var line: Int
    /// A frame of compiled code (from `--native` stacks).
    public var isNative: Bool

    public init(file: String, function: String, line: Int, isNative: Bool = false) {
        self.file = file
        self.function = function
        self.line = line
        self.isNative = isNative
    }
}

/// Time in one flame-graph stack.
public struct StackTime: Sendable, Equatable {
    public var time = TimeSplit.zero
    public var samples = 0

    public init() {}

    public static func += (lhs: inout StackTime, rhs: StackTime) {
        lhs.time += rhs.time
        lhs.samples += rhs.samples
    }
}

/// Time on one line, for one thread or summed.
public struct LineTime: Sendable, Equatable {
    public var time: TimeSplit = .zero
    /// CPU seconds (user + kernel) on the line: with `time.total`, the core utilisation.
    public var cpu: Double = 0
    public var samples: Int = 0
    /// Seconds since the start at which samples landed here (a bounded, evenly thinned record).
    public var sampleTimes: [Double] = []
    /// The function the line belongs to (its innermost profiled frame's code object).
    public var function: FunctionID?
    /// Native stack samples on this line whose CPU was outside the interpreter, by the function the
    /// CPU was in (at most `NativeTally.capacity` functions; the rest are counted in `otherNative`).
    public var nativeFunctions: [NativeFunction: Int] = [:]
    public var otherNative = 0

    public init() {}

    /// Native samples on the line outside the interpreter.
    public var nativeSamples: Int { nativeFunctions.values.reduce(otherNative, +) }

    /// The functions with the most native samples, with their share of the line's native samples.
    public func hottestNative(_ count: Int) -> [(function: NativeFunction, share: Double)] {
        let total = Double(max(1, nativeSamples))
        return nativeFunctions.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .prefix(count).map { ($0.key, Double($0.value) / total) }
    }

    mutating func recordNative(_ function: NativeFunction) {
        if nativeFunctions[function] != nil || nativeFunctions.count < NativeTally.capacity {
            nativeFunctions[function, default: 0] += 1
        } else {
            otherNative += 1
        }
    }

    /// Adds one attributed share of a sample taken at `time` (seconds since the start).
    mutating func record(_ share: Attribution.Share, at time: Double) {
        self.time += share.split
        cpu += share.cpu
        samples += 1
        Reservoir.add(time, to: &sampleTimes, count: samples)
    }

    mutating func merge(_ other: LineTime) {
        time += other.time
        cpu += other.cpu
        samples += other.samples
        sampleTimes = Reservoir.merged(sampleTimes, other.sampleTimes)
        if function == nil { function = other.function }
        otherNative += other.otherNative
        for (function, count) in other.nativeFunctions {
            if nativeFunctions[function] != nil || nativeFunctions.count < NativeTally.capacity {
                nativeFunctions[function, default: 0] += count
            } else {
                otherNative += count
            }
        }
    }
}

/// Bounds of the per-line native function tallies.
public enum NativeTally {
    public static let capacity = 32
}

/// How a profile told Python from native time.
public enum CPUClassification: Sendable, Equatable {
    /// The innermost frame at a call instruction, or running without the GIL (Scalene's rule).
    case opcodeAndGIL
    /// Where the sampled instruction pointer was (native stack samples), by this method; the
    /// opcode/GIL rule only for intervals no sample tells about.
    case instructionPointer(NativeMethod)
}

/// What the native sampler contributed to a profile.
public struct NativeSummary: Sendable, Equatable {
    public var method: NativeMethod
    public var statistics: NativeStatistics
    /// Sampling intervals (thread × tick with user CPU) classified by native samples, by a sample
    /// carried from the previous interval at the same line, and by the opcode/GIL rule.
    public var sampledIntervals = 0
    public var carriedIntervals = 0
    public var opcodeRuleIntervals = 0
    /// Intervals much longer than the sampling period, whose samples were not used (see the README).
    public var lateIntervals = 0
    /// Why the perf sampler could not be used, when the ptrace fallback was.
    public var fallbackReason: String?

    public init(method: NativeMethod, statistics: NativeStatistics) {
        self.method = method
        self.statistics = statistics
    }
}

/// Keeps a bounded, time-ordered record of sample times by thinning evenly.
enum Reservoir {
    static let capacity = 100

    static func add(_ value: Double, to list: inout [Double], count: Int) {
        // Keep every k-th sample, k doubling whenever the list fills: an even spread over the run.
        let stride = max(1, count / capacity + 1)
        if count % stride == 0 {
            list.append(value)
            if list.count > capacity { list = list.enumerated().filter { $0.offset % 2 == 0 }.map(\.element) }
        }
    }

    static func merged(_ a: [Double], _ b: [Double]) -> [Double] {
        var all = (a + b).sorted()
        while all.count > capacity { all = all.enumerated().filter { $0.offset % 2 == 0 }.map(\.element) }
        return all
    }
}

/// Everything recorded for one thread.
public struct ThreadProfile: Sendable {
    /// Kernel thread id as we see it.
    public var tid: Int32?
    /// The id in the target's own PID namespace, when it differs (a container).
    public var namespaceTID: Int32?
    public var name: String?
    public var samples = 0
    /// Samples at which the thread was running (state R).
    public var runningSamples = 0
    /// Samples at which the thread held the GIL.
    public var gilSamples = 0
    public var wallSeconds = 0.0
    public var cpuSeconds = 0.0
    public var lines: [SourceLine: LineTime] = [:]
    public var functions: [FunctionID: TimeSplit] = [:]
    /// Time whose innermost frames were all outside profiled files (or had no Python frame).
    public var outside = TimeSplit.zero
    /// Flame-graph stacks (outermost first) with the time spent in them.
    public var stacks: [[StackFrame]: StackTime] = [:]
    /// Speedscope's sampled timeline: stack index into `stackOrder` and seconds per sample.
    public var timeline: [(stack: Int, weight: Double)] = []
    public var stackOrder: [[StackFrame]] = []
    /// How many finished threads were summed into this one (beyond `RecordingBounds.retiredThreads`,
    /// the oldest are summed into one bucket); 0 for a thread of its own.
    public var summedThreads = 0

    public init(tid: Int32?, name: String?) {
        self.tid = tid
        self.name = name
    }

    /// Blocked for the whole run: never seen running and (almost) no CPU time.
    public var isIdle: Bool { runningSamples == 0 && cpuSeconds < max(0.001, 0.001 * wallSeconds) }

    public var total: TimeSplit {
        lines.values.reduce(outside) { $0 + $1.time }
    }
}

/// Why recording stopped.
public enum ProfileEnd: Sendable, Equatable {
    case interrupted(signal: Int32)
    case durationElapsed
    case targetExited
}

/// Counters describing the sampler's own behaviour.
public struct SamplerStatistics: Sendable, Equatable {
    public var requestedRate: Double = 0
    public var ticks = 0
    public var lateTicks = 0
    /// Ticks at which the thread list could not be read (torn or changing); nothing was attributed.
    public var failedTicks = 0
    /// One per thread per tick: every stack the sampler tried to read.
    public var threadSamples = 0
    /// Thread samples whose stack could not be read completely, even on a second try (a frame or
    /// code object changed or vanished while it was read). Their time still lands on the innermost
    /// frames that were read.
    public var unreadableSamples = 0
    /// Thread samples whose first read tore and whose second read succeeded.
    public var retriedSamples = 0
    /// Thread samples of threads whose id (as the target stores it) matched none of its kernel
    /// threads: nothing could be measured for them.
    public var unmappedThreadSamples = 0
    /// Thread samples of threads that had not run since their previous sample: only their run time
    /// was read (their stack cannot have changed).
    public var idleThreadSamples = 0
    /// The share of thread samples that could not be read, 0–1.
    public var unreadableShare: Double { threadSamples > 0 ? Double(unreadableSamples) / Double(threadSamples) : 0 }
    /// Seconds the sampler itself spent on a CPU (getrusage of its own thread).
    public var samplerCPUSeconds = 0.0

    public init() {}
}

/// A finished (or in-progress) profile: data only. Report writers are functions of it.
public struct Profile: Sendable {
    public var pid: Int32
    public var pythonVersion: PythonVersion
    /// argv of the target (from /proc/PID/cmdline).
    public var arguments: [String]
    /// The profiled program's main script, when it can be told from argv.
    public var program: String?
    /// Epoch seconds and CLOCK_MONOTONIC seconds at the start.
    public var startEpoch: Double
    public var startMonotonic: Double
    public var elapsed: Double
    public var threads: [ThreadProfile]
    public var filter: FileFilter
    public var includeIdle: Bool
    public var statistics: SamplerStatistics
    public var end: ProfileEnd
    public var memory: MemoryProfile?
    public var classification: CPUClassification = .opcodeAndGIL
    /// Set with `--native`.
    public var native: NativeSummary?
    /// Whether GIL waits could be told from outside (the GIL's address is known for the version).
    public var gilWaitMeasured = false
    /// How many processes were summed into this profile (`--subprocesses --merge`).
    public var processCount = 1

    public init(pid: Int32, pythonVersion: PythonVersion, arguments: [String], program: String?, startEpoch: Double,
                startMonotonic: Double, elapsed: Double, threads: [ThreadProfile], filter: FileFilter,
                includeIdle: Bool, statistics: SamplerStatistics, end: ProfileEnd, memory: MemoryProfile? = nil) {
        self.pid = pid
        self.pythonVersion = pythonVersion
        self.arguments = arguments
        self.program = program
        self.startEpoch = startEpoch
        self.startMonotonic = startMonotonic
        self.elapsed = elapsed
        self.threads = threads
        self.filter = filter
        self.includeIdle = includeIdle
        self.statistics = statistics
        self.end = end
        self.memory = memory
    }

    /// The threads reports include: all but the idle ones unless `includeIdle`.
    public var reportedThreads: [ThreadProfile] {
        includeIdle ? threads : threads.filter { !$0.isIdle }
    }

    /// Threads left out as idle.
    public var idleThreads: [ThreadProfile] {
        includeIdle ? [] : threads.filter(\.isIdle)
    }

    /// Time of every reported thread: the denominator of every percentage.
    public var totalTime: TimeSplit {
        reportedThreads.reduce(TimeSplit.zero) { $0 + $1.total }
    }

    /// Per-line time summed over reported threads.
    public var lines: [SourceLine: LineTime] {
        var result = [SourceLine: LineTime]()
        for thread in reportedThreads {
            for (key, value) in thread.lines { result[key, default: LineTime()].merge(value) }
        }
        return result
    }

    /// Per-function time summed over reported threads.
    public var functions: [FunctionID: TimeSplit] {
        var result = [FunctionID: TimeSplit]()
        for thread in reportedThreads {
            for (key, value) in thread.functions { result[key, default: .zero] += value }
        }
        return result
    }

    /// Time outside profiled files, summed over reported threads.
    public var outside: TimeSplit {
        reportedThreads.reduce(TimeSplit.zero) { $0 + $1.outside }
    }

    /// Flame-graph stacks summed over reported threads.
    public var stacks: [[StackFrame]: StackTime] {
        var result = [[StackFrame]: StackTime]()
        for thread in reportedThreads {
            for (key, value) in thread.stacks { result[key, default: StackTime()] += value }
        }
        return result
    }

    /// Why nothing was attributed, when nothing was: a profile without a single sampled second
    /// must never look like a real, empty one. Nil when something was attributed.
    public var emptyReason: String? {
        let total = threads.reduce(0.0) { $0 + $1.total.total }
        guard total == 0 && (memory?.lines.isEmpty ?? true) else { return nil }
        let stats = statistics
        if stats.unmappedThreadSamples > 0 {
            return "none of the \(stats.unmappedThreadSamples) thread samples could be matched to a kernel thread of the "
                + "process (the ids CPython stores are not those /proc knows it by; is it in a PID namespace this kernel "
                + "does not report in /proc/PID/status NSpid?)"
        }
        if stats.ticks == 0 { return "no sample was taken (the run ended before the first tick)" }
        if stats.threadSamples == 0 {
            return stats.failedTicks > 0 ? "the interpreter's thread list could not be read at any of \(stats.failedTicks) tick(s)"
                : "the interpreter had no Python thread at any tick"
        }
        if threads.allSatisfy({ $0.samples == 0 }) {
            return "every thread was seen only once (threads shorter-lived than one sampling interval)"
        }
        return nil
    }

    /// Every profiled file with data, sorted.
    public var files: [String] {
        var set = Set(lines.keys.map(\.file))
        if let memory { set.formUnion(memory.lines.keys.map(\.file)) }
        return set.sorted()
    }
}
