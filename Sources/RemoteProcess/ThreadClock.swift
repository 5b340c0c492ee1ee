import CScaleneSys
#if canImport(Glibc)
import Glibc
#endif

/// CPU time and scheduler state of one thread, read cheaply again and again: the stat and schedstat
/// files stay open and are re-read with pread (procfs regenerates them at offset 0).
public final class ThreadClock {
    public let tid: Int32
    private let statFD: Int32
    private let schedstatFD: Int32
    private var buffer = [UInt8](repeating: 0, count: 1024)

    /// One reading.
    public struct Reading: Sendable, Equatable {
        /// Nanoseconds on a CPU since the thread started (schedstat).
        public var cpuNanoseconds: UInt64
        /// Kernel-mode CPU time in clock ticks (stat).
        public var systemTicks: UInt64
        /// Scheduler state letter.
        public var state: UInt8

        public var isRunning: Bool { state == UInt8(ascii: "R") }
    }

    /// Opens the thread's files; nil if the thread is gone or unreadable.
    public init?(pid: Int32, tid: Int32) {
        self.tid = tid
        statFD = open("/proc/\(pid)/task/\(tid)/stat", O_RDONLY | O_CLOEXEC)
        schedstatFD = open("/proc/\(pid)/task/\(tid)/schedstat", O_RDONLY | O_CLOEXEC)
        if statFD < 0 || schedstatFD < 0 {
            if statFD >= 0 { close(statFD) }
            if schedstatFD >= 0 { close(schedstatFD) }
            return nil
        }
    }

    deinit {
        close(statFD)
        close(schedstatFD)
    }

    /// Reads both files; nil when the thread has exited.
    public func read() -> Reading? {
        buffer.withUnsafeMutableBytes { raw -> Reading? in
            guard let base = raw.baseAddress else { return nil }
            let n = scalene_pread(schedstatFD, base, raw.count, 0)
            guard n > 0, let cpu = Self.firstNumber(UnsafeRawBufferPointer(rebasing: raw[0..<n])) else { return nil }
            let m = scalene_pread(statFD, base, raw.count, 0)
            guard m > 0, let (state, system) = Self.stateAndSystemTicks(UnsafeRawBufferPointer(rebasing: raw[0..<m])) else {
                return nil
            }
            return Reading(cpuNanoseconds: cpu, systemTicks: system, state: state)
        }
    }

    /// The leading decimal number of `bytes` (schedstat's first field).
    public static func firstNumber(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        UInt64(decimal: bytes.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
    }

    /// State (field 3) and stime (field 15) of a stat line.
    public static func stateAndSystemTicks(_ bytes: UnsafeRawBufferPointer) -> (UInt8, UInt64)? {
        ThreadStat.times(bytes).map { ($0.state, $0.system) }
    }

    /// Nanoseconds per stat clock tick.
    public static let nanosecondsPerTick: UInt64 = {
        let hz = scalene_clock_ticks_per_second()
        return hz > 0 ? 1_000_000_000 / UInt64(hz) : 10_000_000
    }()
}
