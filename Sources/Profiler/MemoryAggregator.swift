/// Where a memory sample lands.
public enum MemoryLocation: Sendable, Equatable {
    /// The innermost frame in a profiled file.
    case line(SourceLine, FunctionID)
    /// Python frames, none of them in a profiled file.
    case outside
    /// A thread with no Python frames at all (a native thread): Scalene's native bucket.
    case native
}

/// One agent sample, resolved.
public struct MemoryEvent: Sendable {
    public enum Kind: Sendable { case malloc, free, copy, sampledFree }

    public var kind: Kind
    /// Nanoseconds since the profile started.
    public var offset: UInt64
    public var bytes: UInt64
    public var pythonBytes: UInt64
    public var nativeBytes: UInt64
    public var pointer: UInt64
    public var location: MemoryLocation

    public init(kind: Kind, offset: UInt64, bytes: UInt64, pythonBytes: UInt64, nativeBytes: UInt64, pointer: UInt64,
                location: MemoryLocation) {
        self.kind = kind
        self.offset = offset
        self.bytes = bytes
        self.pythonBytes = pythonBytes
        self.nativeBytes = nativeBytes
        self.pointer = pointer
        self.location = location
    }
}

/// Turns the agent's threshold samples into per-line memory, the footprint timeline, copy volume
/// and leak suspects.
///
/// Each MALLOC sample says "net allocation on this thread crossed the window here": its bytes are
/// charged to the line, split Python/native by the allocations since the thread's previous sample.
/// FREE samples lower the global footprint, which is the net change since attach. A line's own
/// footprint (its peak and timeline) counts the MALLOC samples taken there whose allocation has not
/// been freed yet: the agent reports when the allocation that triggered a sample is freed, and that
/// sample's bytes then leave the line. This keeps memory allocated on one line and freed on another
/// from piling up on the first. A line is a leak
/// suspect when the footprint grew over the run and, of the allocations sampled on the line, too
/// few were ever freed: by Laplace's rule of succession the chance that the next one is never freed
/// is 1 - (frees + 1) / (allocations - frees + 2) (Scalene's rule), reported at 95% or more.
public struct MemoryAggregator: Sendable {
    static let megabyte = 1024.0 * 1024.0
    static let leakThreshold = 0.95
    /// Growth (percent of everything allocated) below which no line is called a leak.
    static let growthThreshold = 1.0

    private var lines: [SourceLine: MemoryLine] = [:]
    private var footprint = 0.0
    private var footprintTimeline: [TimelinePoint] = []
    private var peak = 0.0
    private var peakLine: SourceLine?
    private var peakPythonFraction = 0.0
    private var allocated = 0.0
    private var allocatedPython = 0.0
    private var nativeBucket = 0.0
    private var copied = 0.0
    private var counts = (malloc: 0, free: 0, copy: 0)
    /// Sampled allocations still live: pointer → the line and MB of their sample.
    private var tracked: [UInt64: (line: SourceLine?, megabytes: Double)] = [:]

    public init() {}

    public mutating func add(_ event: MemoryEvent) {
        let megabytes = Double(event.bytes) / Self.megabyte
        var key: SourceLine?
        if case .line(let line, let function) = event.location {
            key = line
            if lines[line] == nil {
                var fresh = MemoryLine()
                fresh.function = function
                lines[line] = fresh
            }
        }
        switch event.kind {
        case .malloc:
            counts.malloc += 1
            // Counters from the target's side of the channel: add them as doubles, never trap.
            let total = Double(event.pythonBytes) + Double(event.nativeBytes)
            let pythonShare = total > 0 ? Double(event.pythonBytes) / total : 0
            allocated += megabytes
            allocatedPython += megabytes * pythonShare
            footprint += megabytes
            if event.location == .native { nativeBucket += megabytes }
            if let key {
                lines[key]!.allocatedMB += megabytes
                lines[key]!.pythonMB += megabytes * pythonShare
                lines[key]!.mallocSamples += 1
                lines[key]!.currentMB += megabytes
                lines[key]!.peakMB = max(lines[key]!.peakMB, lines[key]!.currentMB)
                lines[key]!.timeline.append(TimelinePoint(nanoseconds: event.offset, megabytes: lines[key]!.currentMB))
                Self.bound(&lines[key]!.timeline, RecordingBounds.lineTimelinePoints)
                lines[key]!.trackedAllocations += 1
            }
            if event.pointer != 0 {
                // Bounded (RecordingBounds.trackedAllocations): when full, one entry (any) is forgotten.
                if tracked.count >= RecordingBounds.trackedAllocations, tracked[event.pointer] == nil {
                    tracked.remove(at: tracked.startIndex)
                }
                tracked[event.pointer] = (key, megabytes)
            }
            if footprint > peak {
                peak = footprint
                peakLine = key
                peakPythonFraction = allocated > 0 ? allocatedPython / allocated : 0
            }
        case .free:
            counts.free += 1
            footprint -= megabytes
            if let key { lines[key]!.freedMB += megabytes }
        case .copy:
            counts.copy += 1
            copied += megabytes
            if let key { lines[key]!.copiedMB += megabytes }
        case .sampledFree:
            if let entry = tracked.removeValue(forKey: event.pointer), let line = entry.line, lines[line] != nil {
                lines[line]!.trackedFrees += 1
                lines[line]!.currentMB = max(0, lines[line]!.currentMB - entry.megabytes)
                lines[line]!.timeline.append(TimelinePoint(nanoseconds: event.offset, megabytes: lines[line]!.currentMB))
                Self.bound(&lines[line]!.timeline, RecordingBounds.lineTimelinePoints)
            }
        }
        if event.kind == .malloc || event.kind == .free {
            footprintTimeline.append(TimelinePoint(nanoseconds: event.offset, megabytes: footprint))
            Self.bound(&footprintTimeline, RecordingBounds.footprintPoints)
        }
    }

    /// Thins a timeline to `count` points once it has twice as many (the highest point stays).
    static func bound(_ points: inout [TimelinePoint], _ count: Int) {
        if points.count > 2 * count { points = thin(points, to: count) }
    }

    /// The memory profile so far.
    public func profile(elapsed: Double, window: UInt64, copyWindow: UInt64, agent: AgentStatistics) -> MemoryProfile {
        var result = MemoryProfile()
        result.lines = lines.mapValues { line in
            var thinned = line
            thinned.timeline = Self.thin(line.timeline, to: 100)
            return thinned
        }
        result.footprint = Self.thin(footprintTimeline, to: 100)
        result.peakFootprintMB = max(0, peak)
        result.peakLine = peakLine
        result.peakPythonFraction = peakPythonFraction
        result.currentFootprintMB = footprint
        result.totalAllocatedMB = allocated
        result.nativeBucketMB = nativeBucket
        result.copiedMB = copied
        result.mallocSamples = counts.malloc
        result.freeSamples = counts.free
        result.copySamples = counts.copy
        result.growthRate = allocated > 0 ? 100 * footprint / allocated : 0
        result.window = window
        result.copyWindow = copyWindow
        result.agent = agent
        if result.growthRate >= Self.growthThreshold {
            for (line, memory) in lines where memory.trackedAllocations > 0 {
                let allocations = Double(memory.trackedAllocations)
                let frees = Double(memory.trackedFrees)
                let likelihood = 1 - (frees + 1) / (allocations - frees + 2)
                guard likelihood >= Self.leakThreshold else { continue }
                let retained = (allocations - frees) * memory.averageMB
                result.leaks.append(LeakSuspect(line: line, likelihood: likelihood,
                                                velocityMBPerSecond: elapsed > 0 ? retained / elapsed : 0))
            }
            result.leaks.sort { $0.likelihood > $1.likelihood || ($0.likelihood == $1.likelihood && $0.line < $1.line) }
        }
        return result
    }

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
