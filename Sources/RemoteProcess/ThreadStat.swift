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

    /// Parses the text of a stat file. The command is in parentheses and may itself contain spaces
    /// and parentheses, so fields are counted from the last ')'.
    public init?(parsing bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        guard let open = array.firstIndex(of: UInt8(ascii: "(")),
              let close = array.lastIndex(of: UInt8(ascii: ")")), close > open else { return nil }
        command = String(decoding: array[(open + 1)..<close], as: UTF8.self)
        var fields = [ArraySlice<UInt8>]()
        fields.reserveCapacity(16)
        var index = close + 1
        while index < array.count && fields.count < 13 {
            while index < array.count && array[index] == UInt8(ascii: " ") { index += 1 }
            let start = index
            while index < array.count && array[index] != UInt8(ascii: " ") && array[index] != UInt8(ascii: "\n") {
                index += 1
            }
            if start < index { fields.append(array[start..<index]) } else { break }
        }
        // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        guard fields.count >= 13, let letter = fields[0].first,
              let user = UInt64(decimal: fields[11]), let system = UInt64(decimal: fields[12]) else { return nil }
        state = Character(Unicode.Scalar(letter))
        userTicks = user
        systemTicks = system
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
