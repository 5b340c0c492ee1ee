import CAgentProtocol
import CScaleneSys
import Foundation
import Profiler
import PythonInspector
import RemoteProcess

/// Memory and copy profiling of a live process: creates the channel, injects the agent, waits for
/// it to arm, turns its samples into a memory profile while the sampler runs, and detaches it
/// (every hook restored) at the end.
public final class MemorySession {
    public struct Options: Sendable {
        /// Net bytes allocated (or freed) per memory sample.
        public var window: UInt64 = 1 << 20
        /// Bytes copied per copy sample.
        public var copyWindow: UInt64 = 7 << 20
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
        guard FileManager.default.isReadableFile(atPath: options.agentPath) else {
            throw .agentNotFound(searched: [options.agentPath])
        }
        let config = try Self.configuration(target: target, options: options)
        let owner = target.process.userID().map { (uid: $0, gid: target.process.groupID() ?? $0) }
        channel = try Channel(targetPID: target.pid, config: config, owner: owner)
        let started = scalene_monotonic_ns()
        var injected: AgentInjector.Outcome?
        while injected == nil {
            do {
                injected = try AgentInjector(target: target, agentPath: options.agentPath).inject(channelPath: channel.path)
            } catch .agentStartBusy where scalene_monotonic_ns() - started < 3_000_000_000 {
                // The agent of a previous session is still finishing its detach.
                usleep(100_000)
            }
        }
        outcome = injected!
        statistics.injectionSeconds = Double(scalene_monotonic_ns() - started) / 1e9
        statistics.safePoint = outcome.safePoint
        // The agent needs the GIL to arm; a thread may hold it for a while in a long C call. An
        // agent that cannot open the channel stays silent: it must at least say it started.
        let deadline = scalene_monotonic_ns() + 10_000_000_000
        let openDeadline = scalene_monotonic_ns() + 3_000_000_000
        while true {
            channel.beat()
            let state = channel.state
            if state.rawValue >= SCALENE_AGENT_STARTING.rawValue { channel.removeFile() }
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
                throw .agentFailed(message: "the agent did not open the channel \(channel.path) within 3 s")
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
        sampler.options.excludedThreads.insert(agentThread)
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
        for sample in pending {
            let kind: MemoryEvent.Kind
            switch sample.kind {
            case .malloc: kind = .malloc
            case .free: kind = .free
            case .copy: kind = .copy
            case .sampledFree: kind = .sampledFree
            }
            let location = kind == .sampledFree ? MemoryLocation.outside
                : sampler.memoryLocation(of: sample.frames.map { RawFrame(code: $0.code, instruction: $0.instruction) })
            aggregator.add(MemoryEvent(kind: kind, offset: sample.timestamp > start ? sample.timestamp - start : 0,
                                       bytes: sample.bytes, pythonBytes: sample.pythonBytes,
                                       nativeBytes: sample.nativeBytes, pointer: sample.pointer, location: location))
        }
        pending.removeAll(keepingCapacity: true)
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
        stats.untrackedFrees = Int(clamping: channel.untrackedFrees)
        return aggregator.profile(elapsed: elapsed, window: options.window, copyWindow: options.copyWindow, agent: stats)
    }

    /// Where the agent library is: $SCALENE_ATTACH_AGENT, next to our executable, or in
    /// ../lib/scalene-attach/ beside it.
    public static func locateAgent() -> (path: String?, searched: [String]) {
        var candidates = [String]()
        if let explicit = ProcessInfo.processInfo.environment["SCALENE_ATTACH_AGENT"] { candidates.append(explicit) }
        if let executable = try? ProcFiles.linkTarget("/proc/self/exe") {
            let directory = (executable as NSString).deletingLastPathComponent
            candidates.append(directory + "/libscalene_agent.so")
            candidates.append(((directory as NSString).deletingLastPathComponent as NSString)
                .appendingPathComponent("lib/scalene-attach/libscalene_agent.so"))
        }
        return (candidates.first { FileManager.default.isReadableFile(atPath: $0) }, candidates)
    }
}
