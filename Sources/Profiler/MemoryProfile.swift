/// Memory and copy volume on one line (or summed for a function), from the agent's samples.
public struct MemoryLine: Sendable, Equatable {
    /// MB allocated here (the weights of the line's allocation samples: every allocated byte
    /// counts, freed or not): Scalene's `n_malloc_mb`.
    public var allocatedMB: Double = 0
    /// Of `allocatedMB`, the MB that came through Python's allocator.
    public var pythonMB: Double = 0
    /// Number of malloc samples.
    public var mallocSamples = 0
    /// Of the MB allocated here, what was freed since (the weights of its tracked samples whose
    /// blocks were freed, wherever they were freed).
    public var freedMB: Double = 0
    /// The line's live footprint (sampled allocations made here and not freed yet), its peak, and
    /// its timeline.
    public var currentMB: Double = 0
    public var peakMB: Double = 0
    public var timeline: [TimelinePoint] = []
    /// MB copied by memcpy/memmove from this line.
    public var copiedMB: Double = 0
    /// Sampled allocations made here, and how many of them were freed later.
    /// (Both before the process began exiting: what its teardown frees does not count.)
    public var trackedAllocations = 0
    public var trackedFrees = 0
    /// MB of the line's tracked allocations still live at the end of the profile, or when the
    /// process began exiting: what a leak here has retained.
    public var retainedMB: Double = 0
    public var function: FunctionID?

    public init() {}

    /// Share of the allocation made by Python's allocator (0–1).
    /// Adds what `other` counted over its time (allocated, freed and copied bytes, samples,
    /// tracked allocations and frees); states (in-use, peak, retained) are the caller's to combine.
    mutating func addVolumes(of other: MemoryLine) {
        allocatedMB += other.allocatedMB
        pythonMB += other.pythonMB
        mallocSamples += other.mallocSamples
        freedMB += other.freedMB
        copiedMB += other.copiedMB
        trackedAllocations += other.trackedAllocations
        trackedFrees += other.trackedFrees
    }

    public var pythonFraction: Double { allocatedMB > 0 ? min(1, pythonMB / allocatedMB) : 0 }

    /// Mean MB per malloc sample.
    public var averageMB: Double { mallocSamples > 0 ? allocatedMB / Double(mallocSamples) : 0 }
}

/// A point of a memory timeline: nanoseconds since the profile started, MB.
public struct TimelinePoint: Sendable, Equatable {
    public var nanoseconds: UInt64
    public var megabytes: Double

    public init(nanoseconds: UInt64, megabytes: Double) {
        self.nanoseconds = nanoseconds
        self.megabytes = megabytes
    }
}

/// A line that allocates memory it does not free while the footprint grows.
public struct LeakSuspect: Sendable, Equatable {
    public var line: SourceLine
    /// Laplace's rule of succession over the line's sampled allocations: 1 - (frees + 1) / (allocations + 2).
    public var likelihood: Double
    /// MB per second the line's footprint grew.
    public var velocityMBPerSecond: Double

    public init(line: SourceLine, likelihood: Double, velocityMBPerSecond: Double) {
        self.line = line
        self.likelihood = likelihood
        self.velocityMBPerSecond = velocityMBPerSecond
    }
}

/// Statistics of the injected agent's session.
public struct AgentStatistics: Sendable, Equatable {
    public var hookedSlots = 0
    public var hookedObjects = 0
    public var pythonAllocatorHooked = false
    public var droppedSamples = 0
    /// Sampled allocations the agent could not track (its sampled-pointer table was full): they
    /// count in the volume, not in line footprints or leaks.
    public var untrackedAllocations = 0
    /// Small-object pools the agent could not track (its pool table was full).
    public var untrackedPools = 0
    /// Python-allocator reallocs whose old size was unknown (counted as allocations of the new size).
    public var unsizedReallocs = 0
    /// Absolute readings of the target's allocators the agent took.
    public var footprintReadings = 0
    /// From the start of injection to the agent's library being loaded and its thread started.
    public var injectionSeconds = 0.0
    /// From the start of injection to the hooks being installed.
    public var armedSeconds = 0.0
    public var detachSeconds = 0.0
    /// The agent confirmed that every hook was restored.
    public var detachedCleanly = false
    /// Why memory recording ended before the profile did (nil if it did not).
    public var endedEarly: String?
    /// The safe point used to inject ("allocator entry", "blocked in nanosleep", ...).
    public var safePoint = ""

    public init() {}
}

/// The memory side of a profile.
public struct MemoryProfile: Sendable, Equatable {
    public var lines: [SourceLine: MemoryLine] = [:]
    /// What the process holds (MB: malloc's bytes in use plus pymalloc's arenas, as the target's
    /// allocators account for them) over time, at most 100 points.
    public var footprint: [TimelinePoint] = []
    public var peakFootprintMB: Double = 0
    /// The line holding the most of its sampled allocations at the peak, and the Python share of
    /// allocation at that moment.
    public var peakLine: SourceLine?
    public var peakPythonFraction: Double = 0
    /// What the process holds at the end, or when it began exiting if it did (never negative).
    public var currentFootprintMB: Double = 0
    /// The change of the footprint from the agent's first reading to its last.
    public var footprintChangeMB: Double = 0
    /// MB allocated (malloc samples) in total, and by threads without any Python frame.
    public var totalAllocatedMB: Double = 0
    public var nativeBucketMB: Double = 0
    public var copiedMB: Double = 0
    public var mallocSamples = 0
    public var freeSamples = 0
    public var copySamples = 0
    /// Allocation samples whose blocks could not be tracked (they count in the volume only).
    public var untrackedSamples = 0
    /// Seconds into the profile when the process began exiting (its interpreter finalizing); nil
    /// if it did not. Frees from then on do not count against leak suspects.
    public var exitedAfterSeconds: Double?
    /// 100 × footprint change / total allocated (Scalene's growth_rate).
    public var growthRate: Double = 0
    public var leaks: [LeakSuspect] = []
    public var window: UInt64 = 0
    public var copyWindow: UInt64 = 0
    public var agent = AgentStatistics()

    public init() {}

    /// Per-function memory: the lines of each function summed (footprints summed too, as an upper
    /// bound of the function's own).
    public var functions: [FunctionID: MemoryLine] {
        var result = [FunctionID: MemoryLine]()
        for line in lines.values {
            guard let function = line.function else { continue }
            var sum = result[function] ?? MemoryLine()
            sum.function = function
            sum.addVolumes(of: line)
            sum.peakMB += line.peakMB
            sum.retainedMB += line.retainedMB
            result[function] = sum
        }
        return result
    }
}
