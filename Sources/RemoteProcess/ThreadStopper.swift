import CScaleneSys
#if canImport(Glibc)
import Glibc
#endif

/// Why the threads of a process could not be stopped or resumed.
public enum TraceError: Error, Equatable, Sendable {
    case permissionDenied(pid: Int32)
    case exited(pid: Int32)
    /// A thread did not reach a stop in time (e.g. uninterruptible sleep); everything was resumed.
    case timedOut(pid: Int32, tid: Int32)
    case failed(pid: Int32, detail: String)
}

/// Stops every thread of a process with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT) and always resumes
/// them: on `resumeAll()`, on error, and in `deinit`. If this process dies while the target is
/// stopped, the kernel detaches and resumes the target itself (seized tracees are not left in a
/// group stop).
///
/// Stop signals (Ctrl-C, SIGTERM, SIGHUP) are blocked for the calling thread while the target is
/// stopped, so the window closes before we react to them.
public final class ThreadStopper {
    public let pid: Int32
    /// Threads currently seized, with a signal that arrived for them while stopped (re-delivered on
    /// resume so the target does not lose it).
    private var seized: [Int32: Int32] = [:]
    private var signalsBlocked = false

    public init(pid: Int32) {
        self.pid = pid
    }

    deinit {
        resumeAll()
    }

    public var stoppedThreads: [Int32] { seized.keys.sorted() }

    /// Stops every thread, including threads created while we stop the others. Throws with every
    /// thread resumed if any step fails.
    public func stopAll(timeoutNanoseconds: UInt64 = 2_000_000_000) throws(TraceError) {
        if !signalsBlocked {
            scalene_block_stop_signals(1)
            signalsBlocked = true
        }
        do throws(TraceError) {
            try stopEveryThread(timeoutNanoseconds: timeoutNanoseconds)
        } catch {
            resumeAll()
            throw error
        }
    }

    /// Stops one thread (for a moment: `release(_:)` resumes it). Throws with the thread resumed if
    /// it does not reach the stop in time.
    public func stop(_ tid: Int32, timeoutNanoseconds: UInt64) throws(TraceError) {
        if !signalsBlocked {
            scalene_block_stop_signals(1)
            signalsBlocked = true
        }
        do throws(TraceError) {
            try seize(tid, timeoutNanoseconds: timeoutNanoseconds)
        } catch {
            // Seized but not yet stopped (uninterruptible sleep): PTRACE_DETACH needs a stopped
            // tracee, so wait for the pending interrupt before letting go.
            if case .timedOut = error { try? waitForStop(tid, timeoutNanoseconds: 1_000_000_000) }
            release(tid)
            if seized.isEmpty && signalsBlocked {
                scalene_block_stop_signals(0)
                signalsBlocked = false
            }
            throw error
        }
    }

    /// Whether `tid` is seized and stopped by this stopper.
    public func isStopped(_ tid: Int32) -> Bool { seized[tid] != nil }

    private func stopEveryThread(timeoutNanoseconds: UInt64) throws(TraceError) {
        // A thread can be created between listing and stopping; list again until nothing is new.
        for _ in 0..<100 {
            guard let tids = try? ProcFiles.directoryEntries("/proc/\(pid)/task").compactMap({ Int32($0) }) else {
                throw .exited(pid: pid)
            }
            let fresh = tids.filter { seized[$0] == nil }
            if fresh.isEmpty { return }
            for tid in fresh { try seize(tid, timeoutNanoseconds: timeoutNanoseconds) }
        }
        throw .failed(pid: pid, detail: "threads kept appearing while stopping the process")
    }

    /// Whether a thread is gone or a zombie (exited, not yet reaped).
    static func hasExited(pid: Int32, tid: Int32) -> Bool {
        guard let bytes = try? ProcFiles.read("/proc/\(pid)/task/\(tid)/stat"), let stat = ThreadStat(parsing: bytes) else {
            return true
        }
        return stat.state == "Z" || stat.state == "X"
    }

    private func seize(_ tid: Int32, timeoutNanoseconds: UInt64) throws(TraceError) {
        if scalene_ptrace_seize(tid, 0) != 0 {
            let code = errno
            if code == ESRCH { return } // the thread exited meanwhile
            // The kernel also refuses (EPERM) a thread that is exiting: listed, but already dead.
            if code == EPERM, Self.hasExited(pid: pid, tid: tid) { return }
            if code == EPERM || code == EACCES { throw .permissionDenied(pid: pid) }
            throw .failed(pid: pid, detail: "PTRACE_SEIZE \(tid): \(String(cString: strerror(code)))")
        }
        seized[tid] = 0
        if scalene_ptrace_interrupt(tid) != 0 {
            if errno == ESRCH { seized[tid] = nil; return }
        }
        try waitForStop(tid, timeoutNanoseconds: timeoutNanoseconds)
    }

    /// Waits until `tid` reports a ptrace stop. A signal-delivery stop is remembered and the wait goes
    /// on (PTRACE_INTERRUPT's own stop still follows).
    public func waitForStop(_ tid: Int32, timeoutNanoseconds: UInt64) throws(TraceError) {
        let deadline = scalene_monotonic_ns() + timeoutNanoseconds
        var status: Int32 = 0
        while true {
            let rc = scalene_waitpid(tid, &status, 1)
            if rc == tid {
                if scalene_wifexited(status) != 0 || scalene_wifsignaled(status) != 0 {
                    seized[tid] = nil
                    if tid == pid { throw .exited(pid: pid) }
                    return
                }
                if scalene_wifstopped(status) != 0 {
                    let signal = scalene_wstopsig(status)
                    let event = scalene_wptrace_event(status)
                    if event == scalene_ptrace_event_stop || signal == SIGTRAP { return }
                    // A real signal arrived for the target: keep it for later and let the interrupt
                    // stop come.
                    seized[tid] = signal
                    _ = scalene_ptrace_cont(tid, 0)
                    _ = scalene_ptrace_interrupt(tid)
                    continue
                }
            } else if rc < 0 {
                if errno == ECHILD { seized[tid] = nil; return }
                throw .failed(pid: pid, detail: "waitpid \(tid): \(String(cString: strerror(errno)))")
            }
            if scalene_monotonic_ns() > deadline { throw .timedOut(pid: pid, tid: tid) }
            usleep(50)
        }
    }

    /// Resumes one thread and stops tracing it, re-delivering a signal that arrived while it was
    /// stopped. The thread must be in a ptrace stop.
    public func release(_ tid: Int32) {
        guard let signal = seized[tid] else { return }
        if scalene_ptrace_detach(tid, signal) != 0 && errno != ESRCH {
            _ = scalene_ptrace_interrupt(tid)
            try? waitForStop(tid, timeoutNanoseconds: 500_000_000)
            _ = scalene_ptrace_detach(tid, seized[tid] ?? signal)
        }
        seized[tid] = nil
        if seized.isEmpty && signalsBlocked {
            scalene_block_stop_signals(0)
            signalsBlocked = false
        }
    }

    /// Resumes every seized thread, re-delivering signals that arrived while it was stopped.
    public func resumeAll() {
        for (tid, signal) in seized {
            if scalene_ptrace_detach(tid, signal) != 0 && errno != ESRCH {
                // Not in a ptrace stop (still running towards the interrupt): stop it, then detach.
                _ = scalene_ptrace_interrupt(tid)
                try? waitForStop(tid, timeoutNanoseconds: 500_000_000)
                _ = scalene_ptrace_detach(tid, seized[tid] ?? signal)
            }
        }
        seized.removeAll()
        if signalsBlocked {
            scalene_block_stop_signals(0)
            signalsBlocked = false
        }
    }
}
