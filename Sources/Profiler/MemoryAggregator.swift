/// Where a memory sample lands.
public enum MemoryLocation: Sendable, Equatable {
    /// The innermost frame in a profiled file.
    case line(SourceLine, FunctionID)
    /// Python frames, none of them in a profiled file (or no frames could be read: the interpreter
    /// was finalizing).
    case outside
    /// A thread with no Python frames at all (a native thread): Scalene's native bucket.
    case native
}

/// One agent sample, resolved.
public struct MemoryEvent: Sendable {
    public enum Kind: Sendable {
        /// A sampled allocation.
        case malloc
        /// A sampled copy.
        case copy
        /// A tracked (sampled) allocation was freed.
        case sampledFree
        /// realloc moved a tracked allocation from `pointer` to `movedTo`.
        case sampledMove
    }

    public var kind: Kind
    /// Nanoseconds since the profile started.
    public var offset: UInt64
    /// The sampled call's own size (a realloc: what it grew by).
    public var bytes: UInt64
    /// The bytes the sample stands for: an unbiased estimate of the call's size (see the README,
    /// "How memory is sampled").
    public var weight: UInt64
    public var pointer: UInt64
    public var movedTo: UInt64
    /// malloc: made through Python's allocator (else by native code).
    public var python: Bool
    /// malloc: the agent tracks the block (a sampledFree follows when it is freed).
    public var tracked: Bool
    /// Taken once the interpreter had begun finalizing (the process is exiting).
    public var finalizing: Bool
    /// malloc: a realloc grew a block (the sample is the growth); the block may already be tracked.
    public var growth: Bool
    public var location: MemoryLocation

    public init(kind: Kind, offset: UInt64, bytes: UInt64, weight: UInt64, pointer: UInt64, movedTo: UInt64 = 0,
                python: Bool = false, tracked: Bool = true, finalizing: Bool = false, growth: Bool = false,
                location: MemoryLocation) {
        self.kind = kind
        self.offset = offset
        self.bytes = bytes
        self.weight = weight
        self.pointer = pointer
        self.movedTo = movedTo
        self.python = python
        self.tracked = tracked
        self.finalizing = finalizing
        self.growth = growth
        self.location = location
    }
}

/// Turns the agent's per-call samples into per-line memory and copy volume, line footprints, the
/// process's footprint and leak suspects.
///
/// Every sample stands for `weight` bytes of its own call (unbiased per call site), so a line's
/// allocated MB, Python share and copy MB are sums of its samples' weights: a line gets what it
/// allocated however its calls interleave with other lines', and churn (allocate, free, repeat)
/// counts in full. A line's own footprint (its peak and timeline) is the weight of its sampled
/// allocations not freed yet: the agent tracks every sampled block and reports its free (or its
/// move by realloc). The process's footprint is not summed from samples: it is what the target's
/// allocators hold (see `footprint(offset:bytes:peakBytes:)`), so memory allocated before attach
/// counts and the figure is never negative.
///
/// A line is a leak suspect when its sampled allocations stay live: by Laplace's rule of succession
/// the chance that its next allocation is never freed is 1 - (frees + 1) / (allocations - frees + 2)
/// (Scalene's rule), reported at 95% or more, for lines still holding some of it. Once the process
/// begins exiting, its teardown frees everything: frees from then on do not count.
///
/// Bounded: per line a few counters and a timeline; the tracked blocks at most `trackedLimit`
/// (the agent's own table holds 65,536); the footprint timeline one point per change of the
/// published figure (the agent publishes every 50 ms).
public struct MemoryAggregator: Sendable {
    static let megabyte = 1024.0 * 1024.0
    static let leakThreshold = 0.95
    static let trackedLimit = RecordingBounds.trackedAllocations

    private var lines: [SourceLine: MemoryLine] = [:]
    private var footprintTimeline: [TimelinePoint] = []
    private var footprint: Double?
    private var firstFootprint: Double?
    private var peak = 0.0
    private var peakLine: SourceLine?
    private var peakPythonFraction = 0.0
    private var allocated = 0.0
    private var allocatedPython = 0.0
    private var nativeBucket = 0.0
    private var copied = 0.0
    private var counts = (malloc: 0, free: 0, copy: 0, untracked: 0)
    private var finalizingOffset: UInt64?
    /// Sampled allocations still live: pointer → the line and MB of their sample, and whether they
    /// count for leaks (taken before the process began exiting).
    private var tracked: [UInt64: (line: SourceLine?, megabytes: Double)] = [:]

    public init() {}

    public mutating func add(_ event: MemoryEvent) {
        let megabytes = Double(event.weight) / Self.megabyte
        var key: SourceLine?
        if case .line(let line, let function) = event.location {
            key = line
            if lines[line] == nil {
                var fresh = MemoryLine()
                fresh.function = function
                lines[line] = fresh
            }
        }
        if event.finalizing { noteFinalizing(at: event.offset) }
        switch event.kind {
        case .malloc:
            counts.malloc += 1
            allocated += megabytes
            if event.python { allocatedPython += megabytes }
            if event.location == .native { nativeBucket += megabytes }
            if let key {
                lines[key]!.allocatedMB += megabytes
                if event.python { lines[key]!.pythonMB += megabytes }
                lines[key]!.mallocSamples += 1
            }
            guard event.tracked, event.pointer != 0 else {
                counts.untracked += 1
                break
            }
            if event.growth, let entry = tracked[event.pointer] {
                // A tracked block grown by realloc: the same block, heavier (on its own line).
                tracked[event.pointer] = (entry.line, entry.megabytes + megabytes)
                if let line = entry.line, lines[line] != nil {
                    lines[line]!.currentMB += megabytes
                    lines[line]!.peakMB = max(lines[line]!.peakMB, lines[line]!.currentMB)
                    if finalizingOffset == nil { lines[line]!.retainedMB += megabytes }
                }
                break
            }
            // A block at an address we still hold was freed without our hearing of it (a sample
            // lost): the new one replaces it.
            if let stale = tracked.removeValue(forKey: event.pointer) { release(stale, at: event.offset, countsAsFree: false) }
            guard tracked.count < Self.trackedLimit else {
                counts.untracked += 1
                break
            }
            tracked[event.pointer] = (key, megabytes)
            if let key {
                lines[key]!.currentMB += megabytes
                lines[key]!.peakMB = max(lines[key]!.peakMB, lines[key]!.currentMB)
                lines[key]!.timeline.append(TimelinePoint(nanoseconds: event.offset, megabytes: lines[key]!.currentMB))
                Self.bound(&lines[key]!.timeline, RecordingBounds.lineTimelinePoints)
                if finalizingOffset == nil {
                    lines[key]!.trackedAllocations += 1
                    lines[key]!.retainedMB += megabytes
                }
            }
        case .copy:
            counts.copy += 1
            copied += megabytes
            if let key { lines[key]!.copiedMB += megabytes }
        case .sampledFree:
            counts.free += 1
            if let entry = tracked.removeValue(forKey: event.pointer) {
                release(entry, at: event.offset, countsAsFree: finalizingOffset == nil)
            }
        case .sampledMove:
            if event.movedTo != 0, let entry = tracked.removeValue(forKey: event.pointer) {
                tracked[event.movedTo] = entry
            }
        }
    }

    private mutating func release(_ entry: (line: SourceLine?, megabytes: Double), at offset: UInt64, countsAsFree: Bool) {
        guard let line = entry.line, lines[line] != nil else { return }
        lines[line]!.freedMB += entry.megabytes
        lines[line]!.currentMB = max(0, lines[line]!.currentMB - entry.megabytes)
        lines[line]!.timeline.append(TimelinePoint(nanoseconds: offset, megabytes: lines[line]!.currentMB))
        Self.bound(&lines[line]!.timeline, RecordingBounds.lineTimelinePoints)
        if countsAsFree {
            lines[line]!.trackedFrees += 1
            lines[line]!.retainedMB = max(0, lines[line]!.retainedMB - entry.megabytes)
        }
    }

    /// The process began exiting at `offset`: what its teardown frees is not evidence against leaks.
    public mutating func noteFinalizing(at offset: UInt64) {
        if finalizingOffset == nil || offset < finalizingOffset! { finalizingOffset = offset }
    }

    /// What the process holds (the agent's reading of its allocators) at `offset`, and the highest
    /// it held since the agent armed.
    public mutating func footprint(offset: UInt64, bytes: UInt64, peakBytes: UInt64) {
        let megabytes = Double(bytes) / Self.megabyte
        let highest = max(megabytes, Double(peakBytes) / Self.megabyte)
        if firstFootprint == nil { firstFootprint = megabytes }
        if footprint != megabytes || footprintTimeline.isEmpty {
            footprintTimeline.append(TimelinePoint(nanoseconds: offset, megabytes: megabytes))
            Self.bound(&footprintTimeline, RecordingBounds.footprintPoints)
        }
        footprint = megabytes
        if highest > peak {
            peak = highest
            // The line holding the most of its sampled allocations when the process held the most.
            peakLine = lines.max { $0.value.currentMB < $1.value.currentMB || ($0.value.currentMB == $1.value.currentMB && $0.key > $1.key) }
                .flatMap { $0.value.currentMB > 0 ? $0.key : nil } ?? peakLine
            peakPythonFraction = allocated > 0 ? allocatedPython / allocated : 0
        }
    }

    /// The memory profile so far. `elapsed`: seconds since the profile started.
    public func profile(elapsed: Double, window: UInt64, copyWindow: UInt64, agent: AgentStatistics) -> MemoryProfile {
        var result = MemoryProfile()
        result.lines = lines.mapValues { line in
            var thinned = line
            thinned.timeline = Self.thin(line.timeline, to: 100)
            return thinned
        }
        result.footprint = Self.thin(footprintTimeline, to: 100)
        result.peakFootprintMB = peak
        result.peakLine = peakLine
        result.peakPythonFraction = peakPythonFraction
        // A process that began exiting: what it held then (its teardown frees everything, and
        // the counts between two readings of its allocator are least exact while it does).
        var current = footprint ?? 0
        if let exit = finalizingOffset, let before = footprintTimeline.last(where: { $0.nanoseconds <= exit }) {
            current = before.megabytes
        }
        result.currentFootprintMB = current
        result.footprintChangeMB = current - (firstFootprint ?? 0)
        result.totalAllocatedMB = allocated
        result.nativeBucketMB = nativeBucket
        result.copiedMB = copied
        result.mallocSamples = counts.malloc
        result.freeSamples = counts.free
        result.copySamples = counts.copy
        result.untrackedSamples = counts.untracked
        result.growthRate = allocated > 0 ? 100 * result.footprintChangeMB / allocated : 0
        result.window = window
        result.copyWindow = copyWindow
        result.agent = agent
        result.exitedAfterSeconds = finalizingOffset.map { Double($0) / 1e9 }
        // Leaks over the run up to its end, or up to the exit if the process began exiting.
        let observed = min(elapsed, result.exitedAfterSeconds ?? elapsed)
        for (line, memory) in lines where memory.trackedAllocations > 0 && memory.retainedMB > 0 {
            let allocations = Double(memory.trackedAllocations)
            let frees = Double(memory.trackedFrees)
            let likelihood = 1 - (frees + 1) / (allocations - frees + 2)
            guard likelihood >= Self.leakThreshold else { continue }
            result.leaks.append(LeakSuspect(line: line, likelihood: likelihood,
                                            velocityMBPerSecond: observed > 0 ? memory.retainedMB / observed : 0))
        }
        result.leaks.sort { $0.likelihood > $1.likelihood || ($0.likelihood == $1.likelihood && $0.line < $1.line) }
        return result
    }

    /// Keeps a timeline bounded: once it has twice `count` points, the older ones are thinned to
    /// `count` (the highest kept); the most recent `recentPoints` stay as they are, since the
    /// report reads the last reading before the process began exiting, which is always recent.
    static func bound(_ points: inout [TimelinePoint], _ count: Int) {
        guard points.count > 2 * count, count > recentPoints else { return }
        let recent = points.suffix(recentPoints)
        points = thin(Array(points.dropLast(recentPoints)), to: count - recentPoints) + recent
    }

    static let recentPoints = 64

    /// At most `count` points, evenly spread, always keeping the highest one.
    static func thin(_ points: [TimelinePoint], to count: Int) -> [TimelinePoint] {
        guard points.count > count, count > 1 else { return points }
        var result = (0..<count).map { points[$0 * (points.count - 1) / (count - 1)] }
        if let highest = points.max(by: { $0.megabytes < $1.megabytes }), !result.contains(highest) {
            let index = result.firstIndex { $0.nanoseconds > highest.nanoseconds } ?? result.count
            result.insert(highest, at: index)
            result.remove(at: index == 0 ? 1 : index - 1)
        }
        return result
    }
}
