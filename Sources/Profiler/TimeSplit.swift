/// Seconds split the way Scalene splits them.
public struct TimeSplit: Sendable, Equatable {
    /// On a CPU in user mode, running bytecode.
    public var python: Double
    /// On a CPU in user mode, inside a call into compiled code (or running without the GIL).
    public var native: Double
    /// On a CPU in kernel mode, or off the CPU (blocked, sleeping, waiting for I/O or a lock).
    public var system: Double

    public init(python: Double = 0, native: Double = 0, system: Double = 0) {
        self.python = python
        self.native = native
        self.system = system
    }

    public static let zero = TimeSplit()

    public var total: Double { python + native + system }

    public static func += (lhs: inout TimeSplit, rhs: TimeSplit) {
        lhs.python += rhs.python
        lhs.native += rhs.native
        lhs.system += rhs.system
    }

    public static func + (lhs: TimeSplit, rhs: TimeSplit) -> TimeSplit {
        var sum = lhs
        sum += rhs
        return sum
    }
}

/// What a thread was doing at one observation (one end of a sampling interval).
public struct Endpoint: Sendable, Equatable {
    /// Where time lands (an index into the sampler's location table), nil: outside profiled code.
    public var location: Int?
    /// The scheduler said running (R).
    public var running: Bool
    /// User time here counts as native rather than Python.
    public var native: Bool

    public init(location: Int?, running: Bool, native: Bool) {
        self.location = location
        self.running = running
        self.native = native
    }
}

/// How one sampling interval of one thread is split and where each part lands.
///
/// The interval's CPU time (from schedstat) and kernel time (from stat) were consumed somewhere
/// between two observations. CPU time lands where the thread was seen running: the earlier
/// observation if only it saw the thread running, the later one if only the later did. Off-CPU time
/// lands where the thread was seen not running, by the same rule. When both observations agree on
/// the state but not on the place, the change happened somewhere in the interval, on average in its
/// middle, so the time is split evenly between them. Charging everything to one end instead would
/// move half an interval per phase change from one line to the next.
public enum Attribution {
    public struct Share: Sendable, Equatable {
        public var location: Int?
        public var split: TimeSplit
        /// Of `split`, the seconds on a CPU (user and kernel).
        public var cpu: Double
        /// Which observation it came from (for per-line sample timestamps).
        public var fromEarlier: Bool
    }

    /// - Parameters:
    ///   - wall: seconds between the observations.
    ///   - cpu: seconds on a CPU in the interval (clamped to `wall`).
    ///   - kernel: of those, seconds in kernel mode (clamped to `cpu`).
    public static func split(earlier: Endpoint, later: Endpoint, wall: Double, cpu: Double, kernel: Double) -> [Share] {
        let wall = max(0, wall)
        let cpu = min(max(0, cpu), wall)
        let kernel = min(max(0, kernel), cpu)
        let off = wall - cpu
        // Weight of the earlier observation for CPU time and for off-CPU time.
        let sameState = earlier.running == later.running
        let sameWork = earlier.location == later.location && earlier.native == later.native
        let cpuWeight = sameState ? (sameWork ? 0 : 0.5) : (earlier.running ? 1 : 0)
        let offWeight = sameState ? (sameWork ? 0 : 0.5) : (earlier.running ? 0 : 1)
        var shares = [Share]()
        for (endpoint, fromEarlier) in [(earlier, true), (later, false)] {
            let cpuPart = cpu * (fromEarlier ? cpuWeight : 1 - cpuWeight)
            let offPart = off * (fromEarlier ? offWeight : 1 - offWeight)
            guard cpuPart > 0 || offPart > 0 || (!fromEarlier && shares.isEmpty) else { continue }
            let kernelPart = cpu > 0 ? kernel * cpuPart / cpu : 0
            var split = TimeSplit(system: kernelPart + offPart)
            if endpoint.native { split.native = cpuPart - kernelPart } else { split.python = cpuPart - kernelPart }
            shares.append(Share(location: endpoint.location, split: split, cpu: cpuPart, fromEarlier: fromEarlier))
        }
        return shares
    }
}
