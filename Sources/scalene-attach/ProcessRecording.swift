import CScaleneSys
import Injector
import NativeStacks
import Profiler
import PythonInspector

/// One process being recorded: its sampler, its memory agent (unless --cpu-only) and the
/// successive snapshots of its profile. `profile` records one of these; `--subprocesses` one per
/// process of the family, each on a thread of its own.
final class ProcessRecording {
    let session: ProfileSession
    let sampler: Sampler
    let memory: MemorySession?
    private var snapshots: SnapshotSeries

    /// Starts the native stack sampler (--native) and the memory agent. `warningPrefix` names the
    /// process in warnings when several are recorded; with `intervals` (--push) every snapshot
    /// carries the interval since the previous one.
    init(session: ProfileSession, intervals: Bool = false, warningPrefix: String = "") {
        self.session = session
        let native = session.startNativeSampler(warningPrefix: warningPrefix)
        sampler = Sampler(target: session.target, options: session.options.samplerOptions, native: native?.source,
                          nativeFallbackReason: native?.fallbackReason)
        memory = session.startMemorySession(sampler: sampler, warningPrefix: warningPrefix)
        snapshots = SnapshotSeries(mode: session.options.snapshotMode, intervals: intervals, sampler: sampler, memory: memory)
    }

    deinit { memory?.detach() }

    /// Samples until `stop` gives a reason; a snapshot is taken after any tick at which
    /// `snapshotDue` says so, and handed to `deliver` (on this thread: it must not wait).
    func run(stop: (UInt64) -> ProfileEnd?, snapshotDue: (UInt64) -> Bool, deliver: (SnapshotJob) -> Void,
             status: (SamplerStatus) -> Void = { _ in }) -> ProfileEnd {
        sampler.run(
            stop: stop,
            everyTick: { now in
                if snapshotDue(now) { deliver(snapshots.take(end: .durationElapsed, now: now)) }
            },
            housekeeping: { memory?.poll() },
            status: status)
    }

    /// Detaches the agent (the target is restored before any report is made) and takes the last
    /// snapshot: the whole recording, and with delta snapshots its last interval.
    func finish(end: ProfileEnd) -> SnapshotJob {
        memory?.detach()
        return snapshots.take(end: end, now: scalene_monotonic_ns())
    }
}
