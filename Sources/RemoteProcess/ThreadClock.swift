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
    private let pid: Int32
    /// /proc/PID/task/TID/syscall, opened on first use (-1: not yet; -2: cannot be read).
    private var syscallFD: Int32 = -1

    /// One reading.
    public struct Reading: Sendable, Equatable {
        /// Nanoseconds on a CPU since the thread started (schedstat).
        public var cpuNanoseconds: UInt64
        /// Kernel-mode CPU time, in nanoseconds of whole clock ticks (stat).
        public var systemNanoseconds: UInt64
        /// Scheduler state letter.
        public var state: UInt8

        public var isRunning: Bool { state == UInt8(ascii: "R") }

        public init(cpuNanoseconds: UInt64, systemNanoseconds: UInt64, state: UInt8) {
            self.cpuNanoseconds = cpuNanoseconds
            self.systemNanoseconds = systemNanoseconds
            self.state = state
        }
    }

    /// Opens the thread's files; nil if the thread is gone or unreadable.
    public init?(pid: Int32, tid: Int32) {
        self.tid = tid
        self.pid = pid
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
        if syscallFD >= 0 { close(syscallFD) }
    }

    /// The futex word a blocked thread waits on: the first argument of the system call it is blocked
    /// in (/proc/PID/task/TID/syscall), when that call is futex. Nil when the thread runs, is in
    /// another call, or the file cannot be read (it needs ptrace access, like every read here).
    public func blockedFutex() -> UInt64? {
        if syscallFD == -1 {
            let fd = open("/proc/\(pid)/task/\(tid)/syscall", O_RDONLY | O_CLOEXEC)
            syscallFD = fd >= 0 ? fd : -2
        }
        guard syscallFD >= 0 else { return nil }
        return buffer.withUnsafeMutableBytes { raw -> UInt64? in
            guard let base = raw.baseAddress else { return nil }
            let n = scalene_pread(syscallFD, base, min(raw.count, 128), 0)
            guard n > 0 else { return nil }
            return Self.futexAddress(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
        }
    }

    /// SYS_futex on x86_64.
    static let futexSyscall: UInt64 = 202

    /// The futex address of a syscall line "202 0x7f12... 0x189 ..." (number, then arguments in hex).
    public static func futexAddress(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard let number = UInt64(decimal: bytes.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              number == futexSyscall else { return nil }
        guard let space = bytes.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        var index = space + 1
        guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "0"), bytes[index + 1] == UInt8(ascii: "x") else { return nil }
        index += 2
        var value: UInt64 = 0
        var digits = 0
        while index < bytes.count, digits < 16 {
            let c = bytes[index]
            let nibble: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = c - UInt8(ascii: "a") + 10
            default: return digits > 0 ? value : nil
            }
            value = value << 4 | UInt64(nibble)
            digits += 1
            index += 1
        }
        return digits > 0 ? value : nil
    }

    /// Reads both files; nil when the thread has exited.
    public func read() -> Reading? {
        guard let cpu = runTime() else { return nil }
        return buffer.withUnsafeMutableBytes { raw -> Reading? in
            guard let base = raw.baseAddress else { return nil }
            let m = scalene_pread(statFD, base, raw.count, 0)
            guard m > 0, let (state, system) = Self.stateAndSystemTicks(UnsafeRawBufferPointer(rebasing: raw[0..<m])) else {
                return nil
            }
            return Reading(cpuNanoseconds: cpu, systemNanoseconds: system &* Self.nanosecondsPerTick, state: state)
        }
    }

    /// Nanoseconds on a CPU only (one read of schedstat): enough to tell that a thread has not run.
    public func runTime() -> UInt64? {
        buffer.withUnsafeMutableBytes { raw -> UInt64? in
            guard let base = raw.baseAddress else { return nil }
            let n = scalene_pread(schedstatFD, base, raw.count, 0)
            guard n > 0 else { return nil }
            return Self.firstNumber(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
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
