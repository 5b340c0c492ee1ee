#if canImport(Glibc)
import Glibc
#endif

/// The CPU time of a whole process (all its threads, live and ended), in nanoseconds, read with
/// `clock_gettime` on its CPU clocks: no file, no text, one cheap system call each.
///
/// The sampler compares it with the CPU its threads were seen to use: when they account for all
/// of it, no thread it did not read can have run. And when only one thread can have run since the
/// last sample, the process's clocks are that thread's: its run time and kernel time then need no
/// read of its /proc files.
public struct ProcessClock: Sendable {
    /// CPUCLOCK_SCHED: time on a CPU (the scheduler's runtime, as schedstat counts it).
    private let clock: clockid_t
    /// CPUCLOCK_PROF (user and kernel) and CPUCLOCK_VIRT (user only): the tick-sampled times that
    /// stat's utime and stime count.
    private let profClock: clockid_t
    private let virtClock: clockid_t

    /// Nil when the process is gone (or the kernel refuses its clock).
    public init?(pid: Int32) {
        // The clock id is the pid shifted left by three bits in 32: a pid beyond the kernel's
        // largest (2^22) would wrap around to another clock (Int32.max gives our own process's).
        guard pid > 0, pid <= 1 << 22 else { return nil }
        var clock = clockid_t()
        guard clock_getcpuclockid(pid, &clock) == 0 else { return nil }
        self.clock = clock
        // The kernel's encoding of process CPU clocks: ~pid << 3, then the clock's kind in the low
        // two bits (PROF 0, VIRT 1, SCHED 2). clock_getcpuclockid gives SCHED; the other two are
        // its siblings (checked: if SCHED is not where the encoding puts it, neither is used).
        let base = clockid_t(~pid) << 3
        if clock == base | 2 {
            profClock = base
            virtClock = base | 1
        } else {
            profClock = -1
            virtClock = -1
        }
        guard read() != nil else { return nil }
    }

    /// Nanoseconds on a CPU.
    public func read() -> UInt64? { Self.nanoseconds(clock) }

    /// Nanoseconds in kernel mode, as the scheduler tick samples them (PROF − VIRT); nil where the
    /// clocks cannot be read.
    public func kernel() -> UInt64? {
        guard profClock != -1, let prof = Self.nanoseconds(profClock), let virt = Self.nanoseconds(virtClock) else {
            return nil
        }
        return prof >= virt ? prof - virt : 0
    }

    private static func nanoseconds(_ clock: clockid_t) -> UInt64? {
        var now = timespec()
        guard clock_gettime(clock, &now) == 0, now.tv_sec >= 0, now.tv_nsec >= 0 else { return nil }
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
