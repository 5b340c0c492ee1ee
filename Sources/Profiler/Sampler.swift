import CPythonLayouts
import CScaleneSys
import NativeStacks
import PythonInspector
import RemoteProcess
#if canImport(Glibc)
import Glibc
#endif

/// What to record.
public struct SamplerOptions: Sendable {
    /// Samples per second.
    public var rate: Double = 100
    public var filter = FileFilter()
    /// Keep threads that were blocked for the whole run.
    public var includeIdle = false
    /// Keep a per-sample timeline of stacks (speedscope) besides the aggregated stacks.
    public var recordTimeline = false
    /// Kernel thread ids never profiled (the agent's own thread).
    public var excludedThreads: Set<Int32> = []

    public init() {}
}

/// Live figures for a status line.
public struct SamplerStatus: Sendable {
    public var elapsed: Double
    public var ticks: Int
    public var effectiveRate: Double
    public var lateTicks: Int
    public var failedTicks: Int
    public var threadSamples: Int
    public var unreadableSamples: Int
}

/// Samples a running interpreter on a jittered schedule and attributes every interval of every
/// thread as Python, native or system time on the innermost line of a profiled file. Never stops
/// the target. Not thread-safe: one sampler per thread.
public final class Sampler {
    public let target: PythonTarget
    public var options: SamplerOptions
    private let observer: InterpreterObserver<RemoteMemory>
    private let names: ThreadNameReader<RemoteMemory>
    let table: LocationTable
    /// Kernel thread ids, translated from the target's PID namespace to ours.
    public let threadIDs: ThreadIDTracker
    private var tracks: [Int32: ThreadTrack] = [:]
    /// The tracks read every tick (not resting), by tid, and the resting ones, by thread state.
    private var activeTracks: [Int32: ThreadTrack] = [:]
    private var restingTracks: [UInt64: ThreadTrack] = [:]
    /// Every track in one of `idleRecheckTicks` buckets (by tid): the resting ones of one bucket
    /// have their run time read at each tick.
    private var recheckBuckets = [[ThreadTrack]](repeating: [], count: Sampler.idleRecheckTicks)
    private var finished: [ThreadProfile] = []
    private var statistics = SamplerStatistics()
    private var threadNames: [UInt64: String] = [:]
    private var namesMemo = ThreadNameReader<RemoteMemory>.Memo()
    private var lastNameRead: UInt64 = 0
    /// The tick of the last successful read of thread names.
    private var namesTick = -1
    private var lastRevalidation: UInt64 = 0
    private var schedule: SamplingSchedule
    public let startMonotonic: UInt64
    public let startEpoch: Double
    private var lastTick: UInt64
    private var samplerCPUStart: Double
    /// Native stack samples (`--native`): where the CPU was, and the native frames under each line.
    private let native: NativeStackSource?
    var nativeSummary: NativeSummary?
    /// The GIL at the last tick.
    private var lastGIL: GILReading?
    /// The GIL changed hands at the last tick: run times are read before the stacks.
    private var handOffExpected = false
    /// When every thread state was last read (threads that ended are found then).
    private var lastWholeList: UInt64 = 0
    /// How often every thread state is read, at least (nanoseconds). A thread that starts is
    /// found at once (it is linked in at the head); one that ends takes the GIL first, which wakes
    /// the resting threads, so this is a safety net.
    static let wholeListInterval: UInt64 = 1_000_000_000
    /// At most this many ticks pass between two reads of an idle thread's run time, when the
    /// target's process CPU clock cannot be read; with it, at least this many pass between two
    /// checks of all idle threads that it calls for.
    static let idleCheckTicks = 8
    /// With the process CPU clock, an idle thread's run time is read at least this often all the
    /// same (a safety net: the clock already tells when any thread not read has run).
    static let idleRecheckTicks = 128
    /// The target's CPU clock (all threads): CPU it used that the threads read did not show means
    /// that a thread taken for idle ran (native code without the GIL, or a thread with no Python
    /// state). Nil where it cannot be read.
    private let processClock: ProcessClock?
    private var lastProcessCPU: UInt64?
    /// The process's kernel time at the last tick that read it (nanoseconds).
    private var lastProcessKernel: UInt64?
    /// Ticks before which the process clocks are not taken for a lone thread's (they showed CPU
    /// of threads that were taken for resting).
    private var loneClockBackoffUntil = 0
    /// How many ticks may pass between two reads of a lone running thread's own files: they check
    /// that the process clocks showed only its time (and give its exact state).
    static let loneThreadCheckTicks = 16
    /// CPU seen this tick in the threads read (nanoseconds).
    private var seenCPU: UInt64 = 0
    /// CPU the process used beyond what its threads were seen to use, since the last full check
    /// of idle threads (floored at zero: schedstat lags a running thread by up to a scheduler tick).
    private var unaccountedCPU: UInt64 = 0
    /// What `unaccountedCPU` may reach before idle threads are checked: a scheduler tick (10 ms at
    /// most) of lag per running thread, and one more for the time between the reads.
    private var unaccountedAllowance: UInt64 = 10_000_000
    private var lastFullIdleCheck = 0
    /// The target's argv, read at the start: /proc/PID/cmdline is gone once the target has exited
    /// (run mode reports after the program's exit).
    private let startArguments: [String]

    /// Per-thread state between ticks.
    final class ThreadTrack {
        let clock: ThreadClock
        var profile: ThreadProfile
        var lastTime: UInt64
        var lastCPU: UInt64
        /// Kernel time at the last sample (nanoseconds).
        var lastSystem: UInt64
        /// Kernel seconds reported by stat but not yet charged (stat counts whole ticks).
        var kernelDebt: Double = 0
        /// CPU seconds reported by schedstat but not yet charged: the kernel folds a running
        /// thread's time into schedstat only at scheduler ticks, so one interval can show more CPU
        /// than wall time and the next one less. Carrying the excess keeps the total exact.
        var cpuDebt: Double = 0
        var last: Endpoint
        var lastStack: Int?
        /// The Python frames of the last observation (merged with native samples that land there).
        var lastFrames: [ResolvedFrame] = []
        /// What native samples said about this thread's user time at each place (location index,
        /// -1 outside profiled files; a moving average): carried to intervals no sample tells about.
        var nativeFractionAt: [Int: Double] = [:]
        var lastSeenTick: Int
        /// The last tick its run time was read at (from its own files).
        var lastClockTick: Int
        /// Its run time at that reading, and the CPU the process clocks gave it since.
        var lastOwnCPU: UInt64
        var loneCPU: UInt64 = 0
        /// It held the GIL at its last sample.
        var lastHeldGIL = false
        /// Its thread state's address at its last sample.
        var threadState: UInt64 = 0
        /// It rests: it has not run since its last sample, and is not read (see `tick`).
        var isResting = false
        /// The first tick of its rest not yet charged, -1 if none.
        var restStart = -1
        var tid: Int32 { clock.tid }
        /// The tick the thread was first seen at: only names read since then are its own.
        let firstTick: Int
        var pthreadID: UInt64
        /// Per-location accumulation (indices into the location table), folded into `profile` on demand.
        var lineTime: [Int: LineTime] = [:]
        var stackTime: [Int: StackTime] = [:]

        init(clock: ThreadClock, profile: ThreadProfile, time: UInt64, reading: ThreadClock.Reading, endpoint: Endpoint,
             stack: Int?, tick: Int, pthreadID: UInt64) {
            self.clock = clock
            self.profile = profile
            lastTime = time
            lastCPU = reading.cpuNanoseconds
            lastSystem = reading.systemNanoseconds
            last = endpoint
            lastStack = stack
            lastSeenTick = tick
            lastClockTick = tick
            lastOwnCPU = reading.cpuNanoseconds
            firstTick = tick
            self.pthreadID = pthreadID
        }
    }

    /// - Parameter native: a native stack sampler (`--native`); without one, user time is split by
    ///   the opcode/GIL rule alone.
    public init(target: PythonTarget, options: SamplerOptions, native: NativeStackSource? = nil,
                nativeFallbackReason: String? = nil) {
        self.target = target
        self.options = options
        self.native = native
        if let native {
            nativeSummary = NativeSummary(method: native.method, statistics: native.statistics)
            nativeSummary?.fallbackReason = nativeFallbackReason
        }
        observer = InterpreterObserver(memory: target.memory, layout: target.layout, opcodes: target.opcodes,
                                       runtimeAddress: target.runtimeAddress, codeType: target.codeTypeAddress,
                                       maximumDepth: 512)
        names = ThreadNameReader(memory: target.memory, layout: target.layout)
        threadIDs = ThreadIDTracker(pid: target.pid)
        table = LocationTable(filter: options.filter,
                              workingDirectory: try? ProcFiles.linkTarget("/proc/\(target.pid)/cwd"))
        startMonotonic = scalene_monotonic_ns()
        startEpoch = Double(scalene_realtime_ns()) / 1e9
        lastTick = startMonotonic
        schedule = SamplingSchedule(rateHz: options.rate, start: startMonotonic, seed: startMonotonic ^ 0x5ca1e)
        samplerCPUStart = Self.threadCPUSeconds()
        processClock = ProcessClock(pid: target.pid)
        statistics.requestedRate = options.rate
        startArguments = target.process.commandLine()
    }

    /// The stack reader's code objects resolved (for the memory side, which resolves the agent's
    /// raw frames with the same cache).
    public var stackReader: StackReader<RemoteMemory> { observer.stacks }

    /// Samples until `stop` returns a reason. `everyTick` runs after each sample; `housekeeping`
    /// at least every 50 ms whatever the rate (the agent's heartbeat and channel); `status` about
    /// twice a second.
    public func run(stop: (UInt64) -> ProfileEnd?, everyTick: (UInt64) -> Void = { _ in },
                    housekeeping: () -> Void = {}, status: (SamplerStatus) -> Void = { _ in }) -> ProfileEnd {
        _ = scalene_set_timer_slack_ns(1000)
        var lastStatus: UInt64 = 0
        var deadline = scalene_monotonic_ns()
        while true {
            let now = scalene_monotonic_ns()
            if let end = stop(now) { return end }
            if !tick(now: now) {
                if !target.process.isAlive { return .targetExited }
            }
            everyTick(now)
            housekeeping()
            if now - lastStatus > 500_000_000 {
                lastStatus = now
                status(currentStatus(now: now))
            }
            deadline = schedule.next(after: scalene_monotonic_ns())
            while true {
                let current = scalene_monotonic_ns()
                if current >= deadline { break }
                // A deadline closer than a wake-up takes is waited for on the CPU: sleeping would
                // cost about as much and wake late (rates of tens of kHz).
                if deadline - current < Self.spinBelow { continue }
                let rc = scalene_sleep_until(min(deadline, current + 50_000_000))
                if rc == EINTR, stop(scalene_monotonic_ns()) != nil { break }
                if rc != EINTR && rc != 0 { break }
                if scalene_monotonic_ns() < deadline { housekeeping() }
            }
        }
    }

    /// Deadlines closer than this (nanoseconds) are waited for without sleeping.
    static let spinBelow: UInt64 = 60_000

    func currentStatus(now: UInt64) -> SamplerStatus {
        let elapsed = Double(now - startMonotonic) / 1e9
        return SamplerStatus(elapsed: elapsed, ticks: statistics.ticks,
                             effectiveRate: elapsed > 0 ? Double(statistics.ticks) / elapsed : 0,
                             lateTicks: schedule.lateTicks, failedTicks: statistics.failedTicks,
                             threadSamples: statistics.threadSamples, unreadableSamples: statistics.unreadableSamples)
    }

    /// Where the agent's raw frames (innermost first) land: resolved with the same code-object cache
    /// and file filter as the CPU samples.
    public func memoryLocation(of frames: [RawFrame]) -> MemoryLocation {
        guard !frames.isEmpty else { return .native }
        var resolved = [ResolvedFrame]()
        for raw in frames {
            if let frame = observer.stacks.resolve(raw) { resolved.append(frame) }
        }
        guard let location = table.innermostProfiled(resolved) else { return .outside }
        return .line(table.lines[location], table.lineFunctions[location])
    }

    /// Takes one sample of every thread. Returns false when nothing could be read.
    ///
    /// A thread that was off the CPU at its last sample and has used no CPU since has not moved:
    /// it rests, and neither its state nor its stack is read, nor is it touched at all while it
    /// rests (most threads of a server are blocked most of the time): its time off the CPU is
    /// charged in one piece when it next moves. That it has used no CPU is told, cheapest first, by:
    /// - the GIL: with no hand-off since the last tick, a thread that was off the CPU without the
    ///   GIL has run no Python code (read in the same batch as the stacks: resting is assumed, and
    ///   checked after the read);
    /// - the process CPU clock: native code that runs without the GIL moves no hand-off count, but
    ///   its CPU shows in the process's clock and not in the threads read; when it does, every
    ///   resting thread's run time is read (at most every `idleCheckTicks` ticks);
    /// - its run time (schedstat), read every `idleRecheckTicks` ticks in any case (a few resting
    ///   threads at each tick).
    @discardableResult
    public func tick(now: UInt64) -> Bool {
        statistics.ticks += 1
        let previousTick = lastTick
        lastTick = now
        let processCPU = processClock?.read()
        let clocked = processCPU != nil && lastProcessCPU != nil
        // Every resting thread's run time is read when the GIL cannot tell (the version does not
        // publish its hand-offs, or they happen at every tick), when the process clock shows CPU
        // that the threads read did not use, and, without a process clock, every few ticks.
        let due = statistics.ticks - lastFullIdleCheck >= Self.idleCheckTicks
        let unaccounted = clocked && unaccountedCPU > unaccountedAllowance && due
        let checkAll = lastGIL == nil || handOffExpected || unaccounted || (!clocked && due)
        if unaccounted || (!clocked && due) {
            lastFullIdleCheck = statistics.ticks
            unaccountedCPU = 0
        }
        // Threads that went off the CPU start resting: without a read when the GIL says they
        // cannot have run (the last holder of the GIL may have taken it again without the count
        // moving: its run time is read, now and at every tick while it rests).
        var stopped = [ThreadTrack]()
        for track in activeTracks.values where !track.last.running {
            if !checkAll && !track.lastHeldGIL && track.threadState != lastGIL?.lastHolder {
                stopped.append(track)
            } else if let runTime = track.clock.runTime(), runTime == track.lastCPU {
                track.lastClockTick = statistics.ticks
                stopped.append(track)
            }
        }
        for track in stopped { startResting(track) }
        // Resting threads whose run time is read now: all of them when something says one may have
        // run, else the few whose turn it is, and the last holder of the GIL, which can take it
        // again without the hand-off count moving (a lone thread waking from a sleep does).
        if checkAll {
            wakeMoved(Array(restingTracks.values))
        } else if !restingTracks.isEmpty {
            var due = recheckBuckets[statistics.ticks % recheckBuckets.count].filter { $0.isResting }
            if let holder = lastGIL?.lastHolder, let track = restingTracks[holder], !due.contains(where: { $0 === track }) {
                due.append(track)
            }
            wakeMoved(due)
        }
        // With at most one thread not resting, the process's clocks are that thread's: read its
        // kernel time with its run time (two more clock reads instead of two /proc files).
        let processKernel = processCPU != nil && activeTracks.count <= 1 ? processClock?.kernel() : nil
        let wholeList = now &- lastWholeList >= Self.wholeListInterval || restingTracks.isEmpty
        var read: InterpreterRead
        do {
            // The resting states matter only to a read of the whole list: otherwise only the active
            // ones are read.
            read = try observer.read(threadIDs: threadIDs, resting: wholeList ? Set(restingTracks.keys) : [],
                                     wholeList: wholeList, active: activeTracks.values.map(\.threadState))
            // The GIL changed hands since the last tick: a thread taken for resting may have run.
            if let gil = read.gil, gil.switches != lastGIL?.switches, !restingTracks.isEmpty, !checkAll {
                let moved = wakeMoved(Array(restingTracks.values))
                if !moved.isEmpty {
                    let more = try observer.read(threadIDs: threadIDs, wholeList: false,
                                                 active: moved.map(\.threadState))
                    let seen = Set(read.threads.map(\.threadState))
                    read.threads += more.threads.filter { !seen.contains($0.threadState) }
                }
            }
        } catch {
            if case .processGone = error { return false }
            // Every thread of this tick is lost: count them all as unreadable samples.
            statistics.failedTicks += 1
            let lost = max(1, tracks.count)
            statistics.threadSamples += lost
            statistics.unreadableSamples += lost
            return false
        }
        // With hand-offs at one tick, the next is likely to have some too (threads taking turns):
        // then run times are read before the stacks, sparing a second read of the interpreter.
        handOffExpected = read.gil != nil && lastGIL != nil && read.gil?.switches != lastGIL?.switches
        lastGIL = read.gil
        if read.wholeList { lastWholeList = now }
        readNames(read.threads, now: now)
        if now - lastRevalidation > 1_000_000_000 {
            lastRevalidation = now
            observer.stacks.revalidateCache()
        }
        let sinceStart = Double(now - startMonotonic) / 1e9
        var nativeStacks = [Int32: [NativeStack]]()
        if let native {
            for stack in native.collect(now: now, running: Array(tracks.keys)) { nativeStacks[stack.tid, default: []].append(stack) }
        }
        seenCPU = 0
        var running = 0
        var tracked = 0
        for observation in read.threads where observation.tid.map({ !options.excludedThreads.contains($0) }) ?? false {
            tracked += 1
        }
        let loneClocks = tracked == 1 && !checkAll && statistics.ticks >= loneClockBackoffUntil
            ? processCPU.flatMap { cpu in processKernel.map { (cpu, $0) } } : nil
        statistics.threadSamples += restingTracks.count
        statistics.idleThreadSamples += restingTracks.count
        for observation in read.threads {
            if observation.unmapped { statistics.unmappedThreadSamples += 1 }
            guard let tid = observation.tid, !options.excludedThreads.contains(tid) else { continue }
            statistics.threadSamples += 1
            if observation.walk.incomplete { statistics.unreadableSamples += 1 }
            if observation.retried && !observation.walk.incomplete { statistics.retriedSamples += 1 }
            let known = tracks[tid].flatMap { $0.pthreadID == observation.pthreadID && !$0.isResting ? $0 : nil }
            let location: Int?
            let stack: Int?
            if let known, Self.sameLines(known.lastFrames, observation.frames) {
                // Where it was at its last sample (the usual case: only the instruction moved).
                (location, stack) = (known.last.location, known.lastStack)
            } else {
                location = table.innermostProfiled(observation.frames)
                stack = observation.frames.isEmpty ? nil : table.stack(observation.frames)
            }
            if let track = known {
                guard let reading = clockReading(track, observation: observation, loneClocks: loneClocks) else { continue }
                // It rested until the previous tick: that time is charged where it sat.
                if track.restStart >= 0 { rest(track, until: previousTick, through: statistics.ticks - 1) }
                let endpoint = Endpoint(location: location, running: reading.isRunning,
                                        native: Self.isNative(observation, running: reading.isRunning),
                                        waitingForGIL: waitsForGIL(track.clock, running: reading.isRunning))
                attribute(track, reading: reading, endpoint: endpoint, stack: stack, now: now, sinceStart: sinceStart,
                          observation: observation, nativeStacks: nativeStacks[tid] ?? [])
                if namesTick >= track.firstTick, let name = threadNames[observation.pthreadID] { track.profile.name = name }
                if reading.isRunning { running += 1 }
            } else if tracks[tid]?.isResting != true {
                // Its stack was not read: it is measured from the next tick on.
                if tracks[tid] != nil { removeTrack(tid) }
                guard let clock = ThreadClock(pid: target.pid, tid: tid), let reading = clock.read() else { continue }
                let endpoint = Endpoint(location: location, running: reading.isRunning,
                                        native: Self.isNative(observation, running: reading.isRunning),
                                        waitingForGIL: waitsForGIL(clock, running: reading.isRunning))
                let name = namesTick >= statistics.ticks ? threadNames[observation.pthreadID] : nil
                var profile = ThreadProfile(tid: tid, name: name)
                profile.namespaceTID = observation.namespaceTID
                let track = ThreadTrack(clock: clock, profile: profile,
                                        time: now, reading: reading, endpoint: endpoint, stack: stack,
                                        tick: statistics.ticks, pthreadID: observation.pthreadID)
                track.lastFrames = observation.frames
                track.threadState = observation.threadState
                addTrack(track)
            }
        }
        // Threads gone from the interpreter's list have ended; so have threads not read for a few
        // ticks that were not resting.
        if read.wholeList {
            let listed = Set(read.listed)
            for (tid, track) in tracks where !listed.contains(track.threadState)
                && (track.isResting || statistics.ticks - track.lastSeenTick > 3) {
                removeTrack(tid)
            }
        }
        for (tid, track) in activeTracks where statistics.ticks - track.lastSeenTick > 3 { removeTrack(tid) }
        if let processCPU {
            if let last = lastProcessCPU, processCPU >= last {
                let used = processCPU - last
                unaccountedCPU = used > seenCPU ? unaccountedCPU &+ (used - seenCPU)
                                                : unaccountedCPU - min(unaccountedCPU, seenCPU - used)
            }
            lastProcessCPU = processCPU
            lastProcessKernel = processKernel
            unaccountedAllowance = 10_000_000 * UInt64(running + 1)
        }
        return true
    }

    /// A thread starts resting at this tick.
    private func startResting(_ track: ThreadTrack) {
        track.isResting = true
        track.restStart = statistics.ticks
        activeTracks[track.tid] = nil
        restingTracks[track.threadState] = track
    }

    /// Reads the run time of each of `tracks` (resting): those that have used CPU since their last
    /// sample, or are gone, are read again from this tick on. Returns them.
    @discardableResult
    private func wakeMoved(_ tracks: [ThreadTrack]) -> [ThreadTrack] {
        var moved = [ThreadTrack]()
        for track in tracks {
            // Read already at this tick (it has just started resting).
            if track.lastClockTick == statistics.ticks { continue }
            if let runTime = track.clock.runTime(), runTime == track.lastCPU {
                track.lastClockTick = statistics.ticks
                continue
            }
            track.isResting = false
            restingTracks[track.threadState] = nil
            activeTracks[track.tid] = track
            moved.append(track)
        }
        return moved
    }

    private func addTrack(_ track: ThreadTrack) {
        tracks[track.tid] = track
        activeTracks[track.tid] = track
        recheckBuckets[Int(UInt32(bitPattern: track.tid)) % recheckBuckets.count].append(track)
    }

    /// Retires a thread's track: it has ended, or its id now belongs to another thread.
    private func removeTrack(_ tid: Int32) {
        guard let track = tracks[tid] else { return }
        retire(track)
        tracks[tid] = nil
        activeTracks[tid] = nil
        if track.isResting { restingTracks[track.threadState] = nil }
        let bucket = Int(UInt32(bitPattern: tid)) % recheckBuckets.count
        recheckBuckets[bucket].removeAll { $0 === track }
    }

    /// Reads thread names when some thread read is new. Names are keyed by pthread id, which a new
    /// thread may reuse from one that ended: a name read before a thread was first seen may be its
    /// predecessor's, so a new thread waits for a read made after it appeared (at most ten a
    /// second; every 2 s in any case, for renames).
    private func readNames(_ observations: [ThreadObservation], now: UInt64) {
        var unnamed = Set<UInt64>()
        for observation in observations {
            guard let tid = observation.tid, tracks[tid].map({ $0.firstTick > namesTick }) ?? true else { continue }
            unnamed.insert(observation.pthreadID)
        }
        guard now - lastNameRead > 2_000_000_000 || (!unnamed.isEmpty && now - lastNameRead > 100_000_000) else { return }
        lastNameRead = now
        if let interpreter = try? observer.mainInterpreter(),
           let fresh = names.read(interpreter: interpreter, memo: &namesMemo, reread: unnamed) {
            threadNames = fresh.names
            namesTick = statistics.ticks
        }
    }

    /// Charges a resting thread's time off the CPU, up to `until` (the time of tick `lastTick`),
    /// in one piece where it sat; the ticks it rested are its samples.
    private func rest(_ track: ThreadTrack, until: UInt64, through lastTick: Int) {
        let samples = max(0, lastTick - track.restStart + 1)
        track.restStart = track.isResting ? lastTick + 1 : -1
        guard until > track.lastTime else { return }
        let wall = Double(until - track.lastTime) / 1e9
        let shares = Attribution.split(earlier: track.last, later: track.last, wall: wall, cpu: 0, kernel: 0, native: nil)
        record(shares, track: track, nativeSplit: nil, stack: track.lastStack,
               sinceStart: Double(until &- startMonotonic) / 1e9, wall: wall, samples: samples)
        track.profile.samples += samples
        track.profile.wallSeconds += wall
        track.lastTime = until
    }

    /// Whether two stacks are the same code objects at the same lines.
    static func sameLines(_ a: [ResolvedFrame], _ b: [ResolvedFrame]) -> Bool {
        guard a.count == b.count else { return false }
        for index in a.indices {
            let x = a[index], y = b[index]
            guard x.line == y.line, x.code.address == y.code.address, x.code.fingerprint == y.code.fingerprint else {
                return false
            }
        }
        return true
    }

    /// A thread's run time, kernel time and state now: from its /proc files, or, when it is the only
    /// thread that can have run since the last tick and it held the GIL then and now, from the
    /// process's clocks (`loneClocks`: run time and kernel time), which are then its own. Its own
    /// files are read every `loneThreadCheckTicks` ticks all the same: if the process clocks ran
    /// ahead of them, another thread ran unseen (native code without the GIL), and the process
    /// clocks are not used for a while (and the resting threads are checked).
    private func clockReading(_ track: ThreadTrack, observation: ThreadObservation,
                              loneClocks: (cpu: UInt64, kernel: UInt64)?) -> ThreadClock.Reading? {
        if let loneClocks, let lastCPU = lastProcessCPU, let lastKernel = lastProcessKernel,
           loneClocks.cpu >= lastCPU, loneClocks.kernel >= lastKernel,
           observation.holdsGIL, track.lastHeldGIL, track.last.running,
           statistics.ticks - track.lastClockTick < Self.loneThreadCheckTicks {
            track.loneCPU &+= loneClocks.cpu - lastCPU
            return ThreadClock.Reading(cpuNanoseconds: track.lastCPU &+ (loneClocks.cpu - lastCPU),
                                       systemNanoseconds: track.lastSystem &+ (loneClocks.kernel - lastKernel),
                                       state: UInt8(ascii: "R"))
        }
        guard let reading = track.clock.read() else { return nil }
        if track.loneCPU > 0 {
            // The process clocks stood for this thread since its last own reading: they may run
            // ahead of its run time by a scheduler tick of lag (10 ms at most), no more.
            let own = reading.cpuNanoseconds >= track.lastOwnCPU ? reading.cpuNanoseconds - track.lastOwnCPU : 0
            if track.loneCPU > own &+ 10_000_000 {
                // What it was given beyond its own time, not yet charged, is not charged.
                let excess = track.loneCPU - own
                track.cpuDebt = max(0, track.cpuDebt - Double(excess) / 1e9)
                unaccountedCPU &+= excess
                loneClockBackoffUntil = statistics.ticks + Self.idleRecheckTicks
            }
            track.loneCPU = 0
        }
        track.lastOwnCPU = reading.cpuNanoseconds
        track.lastClockTick = statistics.ticks
        return reading
    }

    /// Whether a thread that is not running is blocked in a futex on the GIL's own mutex or
    /// condition variable. (A runnable thread without the GIL may be about to take it, or running
    /// native code that released it, numpy under BINARY_OP for one: it is not counted.)
    func waitsForGIL(_ clock: ThreadClock, running: Bool) -> Bool {
        guard !running, let range = observer.gilState(), let futex = clock.blockedFutex() else { return false }
        return range.contains(futex)
    }

    /// User time at this observation counts as native when the innermost frame is inside a call,
    /// or when the thread runs without holding the GIL.
    static func isNative(_ observation: ThreadObservation, running: Bool) -> Bool {
        if observation.instructionClass == .call { return true }
        return running && !observation.holdsGIL
    }

    private func attribute(_ track: ThreadTrack, reading: ThreadClock.Reading, endpoint: Endpoint, stack: Int?,
                           now: UInt64, sinceStart: Double, observation: ThreadObservation, nativeStacks: [NativeStack]) {
        let wall = Double(now &- track.lastTime) / 1e9
        let cpuNanoseconds = reading.cpuNanoseconds >= track.lastCPU ? reading.cpuNanoseconds - track.lastCPU : 0
        seenCPU &+= cpuNanoseconds
        track.cpuDebt += Double(cpuNanoseconds) / 1e9
        let cpu = min(track.cpuDebt, wall)
        track.cpuDebt -= cpu
        if reading.systemNanoseconds > track.lastSystem {
            track.kernelDebt += Double(reading.systemNanoseconds - track.lastSystem) / 1e9
        }
        let kernel = min(track.kernelDebt, cpu)
        track.kernelDebt -= kernel
        var nativeSplit: NativeSplit?
        if native != nil {
            nativeSplit = splitNative(nativeStacks, track: track, later: endpoint, laterFrames: observation.frames, now: now,
                                      hasUserTime: cpu > kernel)
        }
        let shares = Attribution.split(earlier: track.last, later: endpoint, wall: wall, cpu: cpu, kernel: kernel,
                                       native: nativeSplit?.fractions)
        record(shares, track: track, nativeSplit: nativeSplit, stack: stack, sinceStart: sinceStart, wall: wall, samples: 1)
        track.profile.samples += 1
        if reading.isRunning { track.profile.runningSamples += 1 }
        if observation.holdsGIL { track.profile.gilSamples += 1 }
        track.profile.wallSeconds += wall
        track.profile.cpuSeconds += cpu
        track.lastTime = now
        track.lastCPU = reading.cpuNanoseconds
        track.lastSystem = reading.systemNanoseconds
        track.last = endpoint
        track.lastStack = stack
        track.lastFrames = observation.frames
        track.lastSeenTick = statistics.ticks
        track.lastHeldGIL = observation.holdsGIL
        track.threadState = observation.threadState
    }

    /// Adds an interval's shares to the thread's lines, stacks and timeline.
    private func record(_ shares: [Attribution.Share], track: ThreadTrack, nativeSplit: NativeSplit?, stack: Int?,
                        sinceStart: Double, wall: Double, samples: Int) {
        for share in shares {
            let time = share.fromEarlier ? sinceStart - wall : sinceStart
            if let location = share.location {
                // Mutated in place: a copy out and back would copy the sample-time list every tick.
                track.lineTime[location, default: LineTime()].record(share, at: time)
            } else {
                track.profile.outside += share.split
            }
            // With native samples in this share, its time is spread over their merged stacks.
            let merged = (share.fromEarlier ? nativeSplit?.earlierStacks : nativeSplit?.laterStacks) ?? []
            let weighted: [(Int, TimeSplit)]
            if !merged.isEmpty {
                var part = share.split
                let scale = 1 / Double(merged.count)
                part.python *= scale; part.native *= scale; part.system *= scale; part.gilWait *= scale
                weighted = merged.map { ($0, part) }
            } else if let stackIndex = share.fromEarlier ? track.lastStack : stack {
                weighted = [(stackIndex, share.split)]
            } else {
                weighted = []
            }
            for (stackIndex, part) in weighted {
                track.stackTime[stackIndex, default: StackTime()].time += part
                track.stackTime[stackIndex, default: StackTime()].samples += samples
                if options.recordTimeline { TimelineLog.append(stackIndex, weight: part.total, to: &track.profile.timeline) }
            }
        }
    }

    private func retire(_ track: ThreadTrack) {
        var profile = fold(track)
        TimelineLog.thin(&profile.timeline, to: RecordingBounds.retiredTimelineEntries)
        finished.append(profile)
        ThreadProfile.consolidate(&finished, keeping: RecordingBounds.retiredThreads)
    }

    /// The thread's accumulated data with location indices turned into source lines.
    private func fold(_ track: ThreadTrack) -> ThreadProfile {
        if track.restStart >= 0 { rest(track, until: lastTick, through: statistics.ticks) }
        var profile = track.profile
        for (location, time) in track.lineTime {
            var line = time
            line.function = table.lineFunctions[location]
            profile.lines[table.lines[location], default: LineTime()].merge(line)
            profile.functions[table.lineFunctions[location], default: .zero] += time.time
        }
        for (index, time) in track.stackTime {
            profile.stacks[table.stacks[index], default: StackTime()] += time
        }
        // Only the stacks the timeline uses, renumbered: a reference to the whole table would pin
        // a copy of it in every finished thread once the table grows.
        if !profile.timeline.isEmpty {
            var renumbered = [Int: Int]()
            var order = [[StackFrame]]()
            profile.timeline = profile.timeline.map { entry in
                if let local = renumbered[entry.stack] { return (local, entry.weight) }
                let local = order.count
                order.append(table.stacks[entry.stack])
                renumbered[entry.stack] = local
                return (local, entry.weight)
            }
            profile.stackOrder = order
        }
        return profile
    }

    // MARK: - Intervals (--snapshot-mode delta, --push)

    /// Where the current interval began: the sampler's clock, and its counters then.
    private var intervalStart: UInt64?
    private var intervalBase = SamplerStatistics()

    /// Everything recorded since the previous call (or the start) as a profile of its own, and
    /// starts the next interval. Thread clocks, places and carried CPU go on, so every sampled
    /// second lands in exactly one interval; threads that ended in it are reported in it.
    public func takeInterval(end: ProfileEnd, now: UInt64 = scalene_monotonic_ns()) -> Profile {
        let begin = intervalStart ?? startMonotonic
        var interval = profile(end: end, now: now)
        let offset = Double(begin - startMonotonic) / 1e9
        interval.startMonotonic = Double(begin) / 1e9
        interval.startEpoch = startEpoch + offset
        interval.elapsed = Double(max(now, lastTick) - begin) / 1e9
        interval.statistics = interval.statistics.since(intervalBase)
        for index in interval.threads.indices { interval.threads[index].shiftSampleTimes(by: -offset) }
        // Start the next interval.
        intervalStart = max(now, lastTick)
        intervalBase = statistics
        intervalBase.lateTicks = schedule.lateTicks
        intervalBase.samplerCPUSeconds = Self.threadCPUSeconds() - samplerCPUStart
        finished = []
        for track in tracks.values {
            track.lineTime = [:]
            track.stackTime = [:]
            var fresh = ThreadProfile(tid: track.profile.tid, name: track.profile.name)
            fresh.namespaceTID = track.profile.namespaceTID
            track.profile = fresh
        }
        return interval
    }

    /// Everything recorded so far.
    public func profile(end: ProfileEnd, now: UInt64 = scalene_monotonic_ns()) -> Profile {
        var stats = statistics
        stats.lateTicks = schedule.lateTicks
        stats.samplerCPUSeconds = Self.threadCPUSeconds() - samplerCPUStart
        let threads = finished + tracks.values.sorted { ($0.profile.tid ?? 0) < ($1.profile.tid ?? 0) }.map(fold)
        let arguments = startArguments.isEmpty ? target.process.commandLine() : startArguments
        var program = Self.program(from: arguments)
        if let relative = program, relative.hasSuffix(".py"), !relative.hasPrefix("/"), let cwd = table.workingDirectory {
            program = cwd + "/" + relative
        }
        var profile = Profile(pid: target.pid, pythonVersion: target.version, arguments: arguments,
                              program: program, startEpoch: startEpoch,
                              startMonotonic: Double(startMonotonic) / 1e9, elapsed: Double(max(now, lastTick) - startMonotonic) / 1e9,
                              threads: threads, filter: options.filter, includeIdle: options.includeIdle, statistics: stats,
                              end: end)
        if let native, var summary = nativeSummary {
            summary.statistics = native.statistics
            profile.native = summary
            profile.classification = .instructionPointer(native.method)
        }
        profile.gilWaitMeasured = observer.gilState() != nil
        return profile
    }

    /// The script in a Python command line: the first argument after the interpreter that is not an option.
    static func program(from arguments: [String]) -> String? {
        var index = 1
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "-c" { return nil }
            if argument == "-m" { return index + 1 < arguments.count ? arguments[index + 1] : nil }
            if argument.hasPrefix("-") { index += 1; continue }
            return argument
        }
        return nil
    }

    static func threadCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
