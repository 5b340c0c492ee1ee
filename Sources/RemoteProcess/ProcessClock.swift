#if canImport(Glibc)
import Glibc
#endif

/// The CPU time of a whole process (all its threads, live and ended), in nanoseconds, read with
/// one `clock_gettime` on its CPU clock: no file, no text, and current to the nanosecond (the
/// kernel adds a running thread's time not yet folded into its schedstat).
///
/// The sampler compares it with the CPU its threads were seen to use: when they account for all
/// of it, no thread it did not read can have run.
public struct ProcessClock: Sendable {
    private let clock: clockid_t

    /// Nil when the process is gone (or the kernel refuses its clock).
    public init?(pid: Int32) {
        // The clock id is the pid shifted left by three bits in 32: a pid beyond the kernel's
        // largest (2^22) would wrap around to another clock (Int32.max gives our own process's).
        guard pid > 0, pid <= 1 << 22 else { return nil }
        var clock = clockid_t()
        guard clock_getcpuclockid(pid, &clock) == 0 else { return nil }
        self.clock = clock
        guard read() != nil else { return nil }
    }

    public func read() -> UInt64? {
        var now = timespec()
        guard clock_gettime(clock, &now) == 0, now.tv_sec >= 0, now.tv_nsec >= 0 else { return nil }
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
