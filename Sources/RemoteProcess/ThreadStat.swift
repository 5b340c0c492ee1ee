/// The scheduler's view of one thread, from /proc/PID/task/TID/stat.
public struct ThreadStat: Sendable, Equatable {
    /// The state letter: R running, S sleeping, D disk sleep, T stopped, t tracing stop, Z zombie...
    public var state: Character
    /// User and kernel CPU time in clock ticks (`sysconf(_SC_CLK_TCK)` per second).
    public var userTicks: UInt64
    public var systemTicks: UInt64
    /// The thread's name as the kernel knows it (comm, at most 15 bytes).
    public var command: String

    public init(state: Character, userTicks: UInt64, systemTicks: UInt64, command: String) {
        self.state = state
        self.userTicks = userTicks
        self.systemTicks = systemTicks
        self.command = command
    }

    public var isRunning: Bool { state == "R" }

    /// Parses the text of a stat file.
    public init?(parsing bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        guard let open = array.firstIndex(of: UInt8(ascii: "(")), let times = Self.times(array), times.close > open else {
            return nil
        }
        command = String(decoding: array[(open + 1)..<times.close], as: UTF8.self)
        state = Character(Unicode.Scalar(times.state))
        userTicks = times.user
        systemTicks = times.system
    }

    /// State (field 3), utime (field 14) and stime (field 15) of a stat line, and where the command
    /// ends. The command is in parentheses and may itself contain spaces and parentheses, so fields
    /// are counted from the last ')'. Works on raw buffers too (the sampler re-reads stat files
    /// without copying them).
    static func times<Bytes: BidirectionalCollection<UInt8>>(_ bytes: Bytes)
        -> (state: UInt8, user: UInt64, system: UInt64, close: Int)? where Bytes.Index == Int
    {
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        var field = 2
        var index = close + 1
        var state: UInt8 = 0
        var user: UInt64 = 0
        while index < bytes.endIndex {
            while index < bytes.endIndex && bytes[index] == UInt8(ascii: " ") { index += 1 }
            let start = index
            while index < bytes.endIndex && bytes[index] != UInt8(ascii: " ") && bytes[index] != UInt8(ascii: "\n") {
                index += 1
            }
            guard start < index else { return nil }
            field += 1
            switch field {
            case 3: state = bytes[start]
            case 14: guard let value = UInt64(decimal: bytes[start..<index]) else { return nil }; user = value
            case 15:
                guard let system = UInt64(decimal: bytes[start..<index]) else { return nil }
                return (state, user, system, close)
            default: break
            }
        }
        return nil
    }
}

/// Nanoseconds a thread spent on a CPU and waiting to run, from /proc/PID/task/TID/schedstat.
public struct SchedStat: Sendable, Equatable {
    public var runNanoseconds: UInt64
    public var waitNanoseconds: UInt64

    public init(runNanoseconds: UInt64, waitNanoseconds: UInt64) {
        self.runNanoseconds = runNanoseconds
        self.waitNanoseconds = waitNanoseconds
    }

    public init?(parsing bytes: some Collection<UInt8>) {
        let parts = Array(bytes).split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\n") })
        guard parts.count >= 2, let run = UInt64(decimal: parts[0]), let wait = UInt64(decimal: parts[1]) else {
            return nil
        }
        runNanoseconds = run
        waitNanoseconds = wait
    }
}

extension UInt64 {
    /// Parses ASCII decimal digits without going through String.
    init?(decimal digits: some Collection<UInt8>) {
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = sum
        }
        self = value
    }
}
