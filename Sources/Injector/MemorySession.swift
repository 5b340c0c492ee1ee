import CAgentProtocol
import CScaleneSys
import Profiler
import PythonInspector
import RemoteProcess
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// Memory and copy profiling of a live process: creates the channel, injects the agent, waits for
/// it to arm, turns its samples into a memory profile while the sampler runs, and detaches it
/// (every hook restored) at the end.
public final class MemorySession {
    public struct Options: Sendable {
        /// Mean bytes allocated between two allocation samples (each thread draws the distance to
        /// its next sample from an exponential distribution with this mean). 256 KiB: a line that
        /// allocates 100 MB in calls smaller than that is estimated within ±5% (one standard error;
        /// calls of a window or more are nearly exact), for about 4,000 samples a second at 1 GB/s.
        public var window: UInt64 = 256 << 10
        /// Mean bytes copied between two copy samples. 512 KiB: copies are fewer and larger than
        /// allocations (a line copying 200 MB in small copies is estimated within ±5%).
        public var copyWindow: UInt64 = 512 << 10
        public var agentPath: String

        public init(agentPath: String) {
            self.agentPath = agentPath
        }
    }

    public let options: Options
    let channel: Channel
    let sampler: Sampler
    private var aggregator = MemoryAggregator()
    private var pending = [AgentSample]()
    private var statistics = AgentStatistics()
    private var detached = false
    public let agentThread: Int32
    public let outcome: AgentInjector.Outcome

    /// Injects the agent and waits until it has armed. Throws with the target untouched if any step
    /// fails. `cancelled` is polled while waiting (Ctrl-C): the agent is then told to leave.
    public init(target: PythonTarget, sampler: Sampler, options: Options, cancelled: () -> Bool = { false })
        throws(InjectError)
    {
        self.options = options
        self.sampler = sampler
        let library = try AgentLibrary.load(options.agentPath)
        let config = try Self.configuration(target: target, options: options)
        let started = scalene_monotonic_ns()
        var injected: AgentInjector.Outcome?
        var created: Channel?
        while injected == nil {
            do {
                injected = try AgentInjector(target: target, library: library).inject { (fd: Int32) throws(InjectError) in
                    created = try Channel(targetPID: target.pid, targetFD: fd, config: config)
                }
            } catch .agentStartBusy where scalene_monotonic_ns() - started < 3_000_000_000 {
                // The agent of a previous session is still finishing its detach.
                usleep(100_000)
            }
        }
        guard let created, let injected else { throw .failed(detail: "the channel was not created") }
        channel = created
        outcome = injected
        statistics.injectionSeconds = Double(scalene_monotonic_ns() - started) / 1e9
        statistics.safePoint = outcome.safePoint
        // The agent needs the GIL to arm; a thread may hold it for a while in a long C call. An
        // agent that cannot open the channel stays silent: it must at least say it started.
        let deadline = scalene_monotonic_ns() + 10_000_000_000
        let openDeadline = scalene_monotonic_ns() + 3_000_000_000
        while true {
            channel.beat()
            let state = channel.state
            if state == SCALENE_AGENT_ARMED { break }
            if state == SCALENE_AGENT_FAILED || state == SCALENE_AGENT_DETACHED || state == SCALENE_AGENT_ORPHANED {
                throw .agentFailed(message: channel.message.isEmpty ? "the agent stopped" : channel.message)
            }
            if !target.process.isAlive { throw .exited(pid: target.pid) }
            if cancelled() {
                channel.requestDetach()
                throw .agentFailed(message: "interrupted before the agent armed; it will remove itself")
            }
            if state == SCALENE_AGENT_NONE && scalene_monotonic_ns() > openDeadline {
                channel.requestDetach()
                throw .agentFailed(message: "the agent did not map its channel within 3 s")
            }
            if scalene_monotonic_ns() > deadline {
                channel.requestDetach()
                throw .agentFailed(message: "the agent did not arm within 10 s (it waits for the GIL); it will remove itself")
            }
            usleep(2000)
        }
        statistics.armedSeconds = Double(scalene_monotonic_ns() - started) / 1e9
        agentThread = channel.agentThread
        recordHookCounts()
        // The agent reports its id as its own PID namespace sees it.
        sampler.options.excludedThreads.insert(sampler.threadIDs.host(agentThread) ?? agentThread)
    }

    static func configuration(target: PythonTarget, options: Options) throws(InjectError) -> scalene_agent_config {
        guard let allocator = target.allocator else {
            throw .failed(detail: "no allocator constants for Python \(target.version)")
        }
        let layout = target.layout
        var frames = scalene_frame_layout()
        frames.tstate_frame = Int32(layout.thread.frame)
        frames.cframe_current_frame = Int32(layout.thread.cframeCurrentFrame ?? -1)
        frames.frame_previous = Int32(layout.frame.previous)
        frames.frame_code = Int32(layout.frame.code)
        frames.frame_instr = Int32(layout.frame.instruction)
        switch layout.frame.instructionField {
        case .lastiBytes, .lastiCodeUnits: frames.frame_instr_size = 4
        case .previousInstructionPointer, .instructionPointer: frames.frame_instr_size = 8
        }
        frames.frame_owner = Int32(layout.frame.owner ?? -1)
        frames.owner_cstack = Int32(layout.frame.ownerCStack ?? -1)
        frames.owner_interpreter = Int32(layout.frame.ownerInterpreter ?? -1)
        frames.code_tag_bits = Int32(layout.frame.codeTagBits)
        frames.tstate_thread_id = Int32(layout.thread.threadID)
        var config = scalene_agent_config()
        config.runtime_address = target.runtimeAddress
        config.memory_window = options.window
        config.copy_window = options.copyWindow
        config.python_hex_version = target.version.hex
        config.pymalloc_pool_size = UInt32(allocator.poolSize)
        config.pymalloc_max_small = UInt32(allocator.smallRequestThreshold)
        config.pymalloc_alignment = UInt32(allocator.alignment)
        // The agent disarms itself when our heartbeat has not changed for this long (we beat at
        // least every 50 ms); hooks must be gone within 2 s of our death.
        config.heartbeat_timeout_ms = 750
        config.runtime_finalizing = UInt32(clamping: layout.runtime.finalizing ?? 0)
        config.frames = frames
        return config
    }

    /// The agent's hook counts while armed (they drop to zero once it has restored everything).
    private func recordHookCounts() {
        statistics.hookedSlots = max(statistics.hookedSlots, Int(clamping: channel.hookedSlots))
        statistics.hookedObjects = max(statistics.hookedObjects, Int(clamping: channel.hookedObjects))
        statistics.pythonAllocatorHooked = statistics.pythonAllocatorHooked || channel.pythonHooks
    }

    /// Beats the heartbeat and folds in the agent's new samples. Call often (every sampler tick).
    public func poll() {
        guard !detached else { return }
        let state = channel.state
        if state == SCALENE_AGENT_ARMED { recordHookCounts() }
        if state == SCALENE_AGENT_ORPHANED || state == SCALENE_AGENT_DETACHED {
            // The agent removed itself (we were stalled past the heartbeat timeout, e.g. stopped
            // with Ctrl-Z): memory recording ends here; what was collected stays.
            channel.drain(into: &pending)
            fold()
            statistics.endedEarly = channel.message
            detached = true
            return
        }
        channel.beat()
        channel.drain(into: &pending)
        fold()
    }

    private func fold() {
        let start = sampler.startMonotonic
        func offset(_ timestamp: UInt64) -> UInt64 { timestamp > start ? timestamp - start : 0 }
        for sample in pending {
            aggregator.add(Self.event(sample, offset: offset(sample.timestamp)) { frames in
                sampler.memoryLocation(of: frames.map { RawFrame(code: $0.code, instruction: $0.instruction) })
            })
        }
        pending.removeAll(keepingCapacity: true)
        if let since = channel.finalizingSince { aggregator.noteFinalizing(at: offset(since)) }
        if let reading = channel.footprint {
            statistics.footprintReadings = Int(clamping: reading.readings)
            aggregator.footprint(offset: offset(reading.timestamp), bytes: reading.bytes, peakBytes: reading.peakBytes)
        }
    }

    /// A sample as the aggregator takes it; `locate` resolves the frames of an allocation or copy.
    public static func event(_ sample: AgentSample, offset: UInt64,
                             locate: ([(code: UInt64, instruction: UInt64)]) -> MemoryLocation) -> MemoryEvent {
        let finalizing = sample.flags & UInt32(SCALENE_SAMPLE_FINALIZING) != 0
        let kind: MemoryEvent.Kind
        switch sample.kind {
        case .malloc: kind = .malloc
        case .copy: kind = .copy
        case .sampledFree: kind = .sampledFree
        case .sampledMove: kind = .sampledMove
        }
        // No frames are read once the interpreter finalizes: such a sample is on no line, and not
        // from a native thread either.
        let location: MemoryLocation = kind == .sampledFree || kind == .sampledMove || finalizing ? .outside
            : locate(sample.frames)
        return MemoryEvent(kind: kind, offset: offset, bytes: sample.bytes, weight: sample.weight, pointer: sample.pointer,
                           movedTo: sample.movedTo, python: sample.origin == .python,
                           tracked: sample.flags & UInt32(SCALENE_SAMPLE_UNTRACKED) == 0, finalizing: finalizing,
                           growth: sample.flags & UInt32(SCALENE_SAMPLE_GROWTH) != 0, location: location)
    }

    /// Asks the agent to restore every hook and waits until it has (at most `timeout` seconds).
    public func detach(timeout: Double = 3) {
        guard !detached else { return }
        let started = scalene_monotonic_ns()
        channel.requestDetach()
        let deadline = started + UInt64(timeout * 1e9)
        while scalene_monotonic_ns() < deadline {
            channel.beat()
            channel.drain(into: &pending)
            let state = channel.state
            if state == SCALENE_AGENT_DETACHED || state == SCALENE_AGENT_ORPHANED || state == SCALENE_AGENT_FAILED { break }
            if !sampler.target.process.isAlive { break }
            usleep(1000)
        }
        channel.drain(into: &pending)
        fold()
        statistics.detachSeconds = Double(scalene_monotonic_ns() - started) / 1e9
        statistics.detachedCleanly = channel.state == SCALENE_AGENT_DETACHED
        detached = true
    }

    /// The memory profile so far.
    public func profile(elapsed: Double) -> MemoryProfile {
        var stats = statistics
        stats.droppedSamples = Int(clamping: channel.dropped) &+ channel.abandonedSlots
        stats.untrackedAllocations = Int(clamping: channel.untrackedAllocations)
        stats.untrackedPools = Int(clamping: channel.untrackedPools)
        stats.unsizedReallocs = Int(clamping: channel.unsizedReallocs)
        return aggregator.profile(elapsed: elapsed, window: options.window, copyWindow: options.copyWindow, agent: stats)
    }

    /// Where the agent library is: $SCALENE_ATTACH_AGENT, next to our executable, or in
    /// ../lib/scalene-attach/ beside it.
    public static func locateAgent() -> (path: String?, searched: [String]) {
        var candidates = [String]()
        if let explicit = Environment.value("SCALENE_ATTACH_AGENT") { candidates.append(explicit) }
        if let executable = try? ProcFiles.linkTarget("/proc/self/exe") {
            let directory = Path.directory(of: executable)
            candidates.append(directory + "/libscalene_agent.so")
            candidates.append(Path.join(Path.directory(of: directory), "lib/scalene-attach/libscalene_agent.so"))
        }
        return (candidates.first { FileSystem.isReadable($0) }, candidates)
    }
}
