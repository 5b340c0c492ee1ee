import CNativeStacks
import CScaleneSys
import RemoteProcess
#if canImport(Glibc)
import Glibc
#endif

/// The fallback where perf events are not allowed: each thread seen running is stopped for a moment
/// (PTRACE_SEIZE + PTRACE_INTERRUPT), its registers and the top 8 KiB of its stack are copied, and
/// it is resumed at once; the unwind happens after, from the copy. A thread is never left stopped:
/// it is released before the next one is touched, and if this process dies the kernel detaches it.
public final class PtraceStackSampler: NativeStackSource {
    public let method = NativeMethod.ptrace
    public private(set) var statistics = NativeStatistics()
    let pid: Int32
    let unwinder: NativeUnwinder
    let stackBytes: Int
    private let stopper: ThreadStopper

    public init(pid: Int32, unwinder: NativeUnwinder, stackBytes: Int = 8192) {
        self.pid = pid
        self.unwinder = unwinder
        self.stackBytes = stackBytes
        stopper = ThreadStopper(pid: pid)
    }

    /// Whether ptrace may stop this process's threads (one seize of the main thread, released at once).
    public static func probe(pid: Int32) throws(NativeSamplingError) {
        let stopper = ThreadStopper(pid: pid)
        do { try stopper.stop(pid, timeoutNanoseconds: 1_000_000_000) } catch {
            if case .permissionDenied = error { throw .ptraceNotPermitted(pid: pid) }
            throw .failed(detail: "cannot stop thread \(pid): \(error)")
        }
        stopper.release(pid)
    }

    /// Stops only the threads that are on a CPU now (a blocked thread's registers say where it
    /// waits, not where CPU time went).
    public func collect(now: UInt64, running: [Int32]) -> [NativeStack] {
        running.compactMap { tid in
            guard let bytes = try? ProcFiles.read("/proc/\(pid)/task/\(tid)/stat"),
                  ThreadStat(parsing: bytes)?.state == "R" else { return nil }
            return sample(tid, now: now)
        }
    }

    /// One thread's stack, taken while it is stopped. Nil if it could not be stopped (it exited, or
    /// did not stop in time).
    public func sample(_ tid: Int32, now: UInt64 = scalene_monotonic_ns()) -> NativeStack? {
        let started = scalene_monotonic_ns()
        do { try stopper.stop(tid, timeoutNanoseconds: 50_000_000) } catch {
            statistics.failedThreads += 1
            return nil
        }
        let copy = StoppedThreadCopy(pid: pid, tid: tid, stackBytes: stackBytes)
        stopper.release(tid)
        statistics.stoppedSeconds += Double(scalene_monotonic_ns() &- started) / 1e9
        guard let copy else { statistics.lost += 1; return nil }
        let stack = copy.unwind(with: unwinder, now: now)
        statistics.samples += 1
        statistics.frames += stack.frames.count
        return stack
    }
}

/// The registers and top of the stack of a thread that is in a ptrace stop (ours), copied so the
/// thread can be resumed before the unwind.
public struct StoppedThreadCopy: Sendable {
    public var tid: Int32
    public var time: UInt64
    var registers: [UInt64]
    var stack: [UInt8]

    /// Nil when the registers cannot be read (the thread is not in a ptrace stop of ours).
    public init?(pid: Int32, tid: Int32, stackBytes: Int = 8192) {
        var registers = [UInt64](repeating: 0, count: Int(SCALENE_NATIVE_REGS))
        guard registers.withUnsafeMutableBufferPointer({ scalene_ptrace_user_regs(tid, $0.baseAddress!) == 0 }) else { return nil }
        let sp = registers[Int(SCALENE_REG_SP)]
        var stack = [UInt8](repeating: 0, count: stackBytes)
        var copied = 0
        // The stack may end less than 8 KiB above the stack pointer: fall back to smaller copies.
        for size in [stackBytes, 4096, 1024, 256] where size <= stackBytes {
            if stack.withUnsafeMutableBytes({ scalene_vm_read(pid, $0.baseAddress!, size, sp) }) == size {
                copied = size
                break
            }
        }
        stack.removeLast(stackBytes - copied)
        self.tid = tid
        self.time = scalene_monotonic_ns()
        self.registers = registers
        self.stack = stack
    }

    public func unwind(with unwinder: NativeUnwinder, now: UInt64 = scalene_monotonic_ns()) -> NativeStack {
        let addresses = registers.withUnsafeBufferPointer { regs in
            stack.withUnsafeBytes { unwinder.unwind(registers: regs.baseAddress!, stack: $0, now: now) }
        }
        return unwinder.stack(tid: tid, time: time, addresses: addresses)
    }
}
