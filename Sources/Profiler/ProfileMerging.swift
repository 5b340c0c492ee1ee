/// Profiles added together: the successive intervals of one process (`--snapshot-mode delta`
/// keeps the whole run as the sum of its intervals).
/// Same lines (file and line), same functions and same stacks add up; a thread (process and
/// thread id) seen in several profiles is one thread.
extension Profile {
    /// The sum of `profiles`, described as the first one (its pid, Python and command line), over
    /// the time from the earliest start to the latest end. `end` defaults to the last profile's.
    public static func merged(_ profiles: [Profile], end: ProfileEnd? = nil) -> Profile? {
        guard let first = profiles.first else { return nil }
        if profiles.count == 1 { return first }
        let start = profiles.map(\.startMonotonic).min() ?? first.startMonotonic
        let finish = profiles.map { $0.startMonotonic + $0.elapsed }.max() ?? start
        let startEpoch = first.startEpoch - (first.startMonotonic - start)

        var threads = [ThreadKey: ThreadProfile]()
        var order = [ThreadKey]()
        var statistics = SamplerStatistics()
        statistics.requestedRate = first.statistics.requestedRate
        var native: NativeSummary?
        var memories = [(MemoryProfile, UInt64)]()
        for profile in profiles {
            let offset = profile.startMonotonic - start
            for var thread in profile.threads {
                thread.shiftSampleTimes(by: offset)
                let key = ThreadKey(pid: profile.pid, tid: thread.tid, bucket: thread.tid == nil ? (thread.isIdle ? 2 : 1) : 0)
                if threads[key] == nil {
                    order.append(key)
                    threads[key] = thread
                } else {
                    threads[key]!.absorb(thread)
                }
            }
            statistics.add(profile.statistics)
            if let summary = profile.native {
                if native == nil { native = summary } else { native!.add(summary) }
            }
            if let memory = profile.memory { memories.append((memory, UInt64(max(0, offset) * 1e9))) }
        }
        var list = order.compactMap { threads[$0] }
        ThreadProfile.consolidate(&list, keeping: 2 * RecordingBounds.retiredThreads)
        var result = Profile(pid: first.pid, pythonVersion: first.pythonVersion, arguments: first.arguments,
                             program: first.program, startEpoch: startEpoch, startMonotonic: start,
                             elapsed: finish - start, threads: list, filter: first.filter,
                             includeIdle: first.includeIdle, statistics: statistics,
                             end: end ?? profiles.last?.end ?? first.end)
        result.memory = memories.isEmpty ? nil : MemoryProfile.merged(memories)
        result.classification = first.classification
        result.native = native
        result.gilWaitMeasured = profiles.contains { $0.gilWaitMeasured }
        // Intervals of one process count once; different processes add up.
        result.processCount = Dictionary(profiles.map { ($0.pid, $0.processCount) }, uniquingKeysWith: max).values.reduce(0, +)
        return result
    }

    /// Two consecutive intervals of one recording as one interval (a snapshot that waited absorbs
    /// the next): time and counters summed; memory sums (allocated, copied) summed while states
    /// (in-use bytes, footprint) are the later interval's.
    public static func consecutive(_ earlier: Profile, _ later: Profile) -> Profile {
        var result = merged([earlier, later], end: later.end) ?? later
        if var memory = later.memory, let before = earlier.memory {
            for (key, line) in before.lines {
                var sum = memory.lines[key] ?? MemoryLine()
                if memory.lines[key] == nil {
                    sum.function = line.function
                    sum.currentMB = line.currentMB
                    sum.peakMB = line.peakMB
                }
                sum.addVolumes(of: line)
                memory.lines[key] = sum
            }
            memory.totalAllocatedMB += before.totalAllocatedMB
            memory.nativeBucketMB += before.nativeBucketMB
            memory.copiedMB += before.copiedMB
            memory.mallocSamples += before.mallocSamples
            memory.freeSamples += before.freeSamples
            memory.copySamples += before.copySamples
            memory.untrackedSamples += before.untrackedSamples
            result.memory = memory
        } else {
            result.memory = later.memory ?? earlier.memory
        }
        return result
    }

    struct ThreadKey: Hashable {
        var pid: Int32
        var tid: Int32?
        /// 0: a thread of its own; 1 and 2: the buckets of finished threads (not idle, idle).
        var bucket: Int
    }
}

extension ThreadProfile {
    /// Adds another profile of the same thread (a later interval), or of a finished thread summed
    /// into a bucket. CPU seconds of idle threads are not added to a bucket: each is below the idle
    /// threshold, and their sum must not make a bucket of idle threads look busy.
    mutating func absorb(_ other: ThreadProfile, countCPU: Bool = true, keepTimeline: Bool = true) {
        samples += other.samples
        runningSamples += other.runningSamples
        gilSamples += other.gilSamples
        wallSeconds += other.wallSeconds
        if countCPU { cpuSeconds += other.cpuSeconds }
        if name == nil { name = other.name }
        if namespaceTID == nil { namespaceTID = other.namespaceTID }
        summedThreads += other.summedThreads
        for (line, time) in other.lines { lines[line, default: LineTime()].merge(time) }
        for (function, time) in other.functions { functions[function, default: .zero] += time }
        outside += other.outside
        for (stack, time) in other.stacks { stacks[stack, default: StackTime()] += time }
        if keepTimeline && !other.timeline.isEmpty {
            var index = Dictionary(stackOrder.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
            for entry in other.timeline where entry.stack < other.stackOrder.count {
                let stack = other.stackOrder[entry.stack]
                let local: Int
                if let known = index[stack] {
                    local = known
                } else {
                    local = stackOrder.count
                    stackOrder.append(stack)
                    index[stack] = local
                }
                TimelineLog.append(local, weight: entry.weight, to: &timeline)
            }
        }
    }

    /// Moves the sample times of every line (seconds since the profile's start) later by `seconds`.
    mutating func shiftSampleTimes(by seconds: Double) {
        guard seconds != 0 else { return }
        for key in Array(lines.keys) {
            lines[key]!.sampleTimes = lines[key]!.sampleTimes.map { $0 + seconds }
        }
    }

    /// Keeps the last `keeping` threads of their own and sums the older ones into two buckets
    /// (not idle, idle), which stay at the front; existing buckets are reused.
    static func consolidate(_ threads: inout [ThreadProfile], keeping: Int) {
        let own = threads.filter { $0.summedThreads == 0 }
        guard own.count > keeping else { return }
        var busy = threads.first { $0.summedThreads > 0 && !$0.isIdle } ?? ThreadProfile(tid: nil, name: nil)
        var idle = threads.first { $0.summedThreads > 0 && $0.isIdle } ?? ThreadProfile(tid: nil, name: nil)
        let old = own.count - keeping
        for thread in own.prefix(old) {
            var member = thread
            member.summedThreads = 1
            if thread.isIdle {
                idle.absorb(member, countCPU: false, keepTimeline: false)
            } else {
                busy.absorb(member, keepTimeline: false)
            }
        }
        busy.name = "\(busy.summedThreads) finished threads"
        idle.name = "\(idle.summedThreads) finished idle threads"
        busy.timeline = []
        busy.stackOrder = []
        idle.timeline = []
        idle.stackOrder = []
        threads = [busy, idle].filter { $0.summedThreads > 0 } + own.suffix(keeping)
    }
}

extension SamplerStatistics {
    /// Counters added (a merged profile's).
    mutating func add(_ other: SamplerStatistics) {
        ticks += other.ticks
        lateTicks += other.lateTicks
        failedTicks += other.failedTicks
        threadSamples += other.threadSamples
        unreadableSamples += other.unreadableSamples
        retriedSamples += other.retriedSamples
        unmappedThreadSamples += other.unmappedThreadSamples
        idleThreadSamples += other.idleThreadSamples
        samplerCPUSeconds += other.samplerCPUSeconds
    }

    /// The counters gathered since `base` (an earlier copy of the same counters).
    func since(_ base: SamplerStatistics) -> SamplerStatistics {
        var result = self
        result.ticks = max(0, ticks - base.ticks)
        result.lateTicks = max(0, lateTicks - base.lateTicks)
        result.failedTicks = max(0, failedTicks - base.failedTicks)
        result.threadSamples = max(0, threadSamples - base.threadSamples)
        result.unreadableSamples = max(0, unreadableSamples - base.unreadableSamples)
        result.retriedSamples = max(0, retriedSamples - base.retriedSamples)
        result.unmappedThreadSamples = max(0, unmappedThreadSamples - base.unmappedThreadSamples)
        result.idleThreadSamples = max(0, idleThreadSamples - base.idleThreadSamples)
        result.samplerCPUSeconds = max(0, samplerCPUSeconds - base.samplerCPUSeconds)
        return result
    }
}

extension NativeSummary {
    mutating func add(_ other: NativeSummary) {
        sampledIntervals += other.sampledIntervals
        carriedIntervals += other.carriedIntervals
        opcodeRuleIntervals += other.opcodeRuleIntervals
        lateIntervals += other.lateIntervals
        statistics.samples += other.statistics.samples
        statistics.lost += other.statistics.lost
        statistics.frames += other.statistics.frames
        statistics.failedThreads += other.statistics.failedThreads
        statistics.stoppedSeconds += other.statistics.stoppedSeconds
    }
}

extension MemoryProfile {
    /// What was recorded after `earlier`, an earlier profile of the same session: sums (allocated,
    /// copied, samples) become differences; states (in-use bytes per line, footprint, peaks, leaks)
    /// are those of now. Timelines keep the points after `offset` (nanoseconds since the start,
    /// where the interval begins), moved to start there.
    public func since(_ earlier: MemoryProfile, offset: UInt64) -> MemoryProfile {
        var result = self
        for (key, line) in lines {
            guard let before = earlier.lines[key] else { continue }
            var interval = line
            interval.allocatedMB = max(0, line.allocatedMB - before.allocatedMB)
            interval.pythonMB = max(0, line.pythonMB - before.pythonMB)
            interval.mallocSamples = max(0, line.mallocSamples - before.mallocSamples)
            interval.freedMB = max(0, line.freedMB - before.freedMB)
            interval.copiedMB = max(0, line.copiedMB - before.copiedMB)
            interval.trackedAllocations = max(0, line.trackedAllocations - before.trackedAllocations)
            interval.trackedFrees = max(0, line.trackedFrees - before.trackedFrees)
            interval.timeline = Self.after(line.timeline, offset)
            result.lines[key] = interval
        }
        result.footprint = Self.after(footprint, offset)
        result.totalAllocatedMB = max(0, totalAllocatedMB - earlier.totalAllocatedMB)
        result.nativeBucketMB = max(0, nativeBucketMB - earlier.nativeBucketMB)
        result.copiedMB = max(0, copiedMB - earlier.copiedMB)
        result.mallocSamples = max(0, mallocSamples - earlier.mallocSamples)
        result.freeSamples = max(0, freeSamples - earlier.freeSamples)
        result.copySamples = max(0, copySamples - earlier.copySamples)
        result.untrackedSamples = max(0, untrackedSamples - earlier.untrackedSamples)
        return result
    }

    static func after(_ points: [TimelinePoint], _ offset: UInt64) -> [TimelinePoint] {
        points.filter { $0.nanoseconds >= offset }.map { TimelinePoint(nanoseconds: $0.nanoseconds - offset, megabytes: $0.megabytes) }
    }

    /// Several processes' memory summed, each with the offset of its start from the earliest
    /// (nanoseconds). Footprints and in-use bytes add up (the processes hold them at once); the
    /// peak is the highest point of the summed footprint.
    public static func merged(_ parts: [(MemoryProfile, UInt64)]) -> MemoryProfile {
        guard let first = parts.first?.0 else { return MemoryProfile() }
        if parts.count == 1 && parts[0].1 == 0 { return first }
        var result = MemoryProfile()
        result.window = first.window
        result.copyWindow = first.copyWindow
        result.agent = first.agent
        var lineTimelines = [SourceLine: [[TimelinePoint]]]()
        var footprints = [[TimelinePoint]]()
        var leaks = [SourceLine: LeakSuspect]()
        var highest = 0.0
        for (position, (memory, offset)) in parts.enumerated() {
            func shifted(_ points: [TimelinePoint]) -> [TimelinePoint] {
                points.map { TimelinePoint(nanoseconds: $0.nanoseconds &+ offset, megabytes: $0.megabytes) }
            }
            for (key, line) in memory.lines {
                var sum = result.lines[key] ?? MemoryLine()
                if sum.function == nil { sum.function = line.function }
                sum.addVolumes(of: line)
                sum.currentMB += line.currentMB
                sum.peakMB += line.peakMB
                sum.retainedMB += line.retainedMB
                result.lines[key] = sum
                lineTimelines[key, default: []].append(shifted(line.timeline))
            }
            footprints.append(shifted(memory.footprint))
            if memory.peakFootprintMB > highest {
                highest = memory.peakFootprintMB
                result.peakLine = memory.peakLine
                result.peakPythonFraction = memory.peakPythonFraction
            }
            result.currentFootprintMB += memory.currentFootprintMB
            result.footprintChangeMB += memory.footprintChangeMB
            result.untrackedSamples += memory.untrackedSamples
            result.totalAllocatedMB += memory.totalAllocatedMB
            result.nativeBucketMB += memory.nativeBucketMB
            result.copiedMB += memory.copiedMB
            result.mallocSamples += memory.mallocSamples
            result.freeSamples += memory.freeSamples
            result.copySamples += memory.copySamples
            if position > 0 {
                result.agent.droppedSamples += memory.agent.droppedSamples
                result.agent.untrackedAllocations += memory.agent.untrackedAllocations
                result.agent.untrackedPools += memory.agent.untrackedPools
                result.agent.unsizedReallocs += memory.agent.unsizedReallocs
                result.agent.footprintReadings += memory.agent.footprintReadings
            }
            for leak in memory.leaks {
                if var known = leaks[leak.line] {
                    known.likelihood = max(known.likelihood, leak.likelihood)
                    known.velocityMBPerSecond += leak.velocityMBPerSecond
                    leaks[leak.line] = known
                } else {
                    leaks[leak.line] = leak
                }
            }
        }
        for (key, timelines) in lineTimelines { result.lines[key]?.timeline = summed(timelines, limit: 100) }
        result.footprint = summed(footprints, limit: 100)
        result.peakFootprintMB = max(highest, result.footprint.map(\.megabytes).max() ?? 0)
        result.growthRate = result.totalAllocatedMB > 0 ? 100 * result.currentFootprintMB / result.totalAllocatedMB : 0
        result.leaks = leaks.values.sorted { $0.likelihood > $1.likelihood || ($0.likelihood == $1.likelihood && $0.line < $1.line) }
        return result
    }

    /// Step functions added: at each point of any series, the sum of every series' latest value.
    static func summed(_ series: [[TimelinePoint]], limit: Int) -> [TimelinePoint] {
        let times = Set(series.flatMap { $0.map(\.nanoseconds) }).sorted()
        var cursors = [Int](repeating: 0, count: series.count)
        var result = [TimelinePoint]()
        result.reserveCapacity(times.count)
        for time in times {
            var sum = 0.0
            for (index, points) in series.enumerated() {
                while cursors[index] < points.count && points[cursors[index]].nanoseconds <= time { cursors[index] += 1 }
                if cursors[index] > 0 { sum += points[cursors[index] - 1].megabytes }
            }
            result.append(TimelinePoint(nanoseconds: time, megabytes: sum))
        }
        return MemoryAggregator.thin(result, to: limit)
    }
}
