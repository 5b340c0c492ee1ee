/// Seconds split the way Scalene splits them.
public struct TimeSplit: Sendable, Equatable {
    /// On a CPU in user mode, running bytecode.
    public var python: Double
    /// On a CPU in user mode, inside a call into compiled code (or running without the GIL).
    public var native: Double
    /// On a CPU in kernel mode, or off the CPU (blocked, sleeping, waiting for I/O or a lock).
    public var system: Double
    /// Of `system`, the seconds off the CPU waiting for the GIL (not added again in `total`).
    public var gilWait: Double

    public init(python: Double = 0, native: Double = 0, system: Double = 0, gilWait: Double = 0) {
        self.python = python
        self.native = native
        self.system = system
        self.gilWait = gilWait
    }

    public static let zero = TimeSplit()

    public var total: Double { python + native + system }

    public static func += (lhs: inout TimeSplit, rhs: TimeSplit) {
        lhs.python += rhs.python
        lhs.native += rhs.native
        lhs.system += rhs.system
        lhs.gilWait += rhs.gilWait
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
    /// User time here counts as native rather than Python (the opcode/GIL rule).
    public var native: Bool
    /// Off the CPU, blocked on the GIL's own mutex or condition variable.
    public var waitingForGIL: Bool

    public init(location: Int?, running: Bool, native: Bool, waitingForGIL: Bool = false) {
        self.location = location
        self.running = running
        self.native = native
        self.waitingForGIL = waitingForGIL
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

    /// What native stack samples say about the user time at each end of an interval: the share of
    /// it outside the interpreter's code, nil where no sample tells (the endpoint's opcode/GIL rule).
    public struct NativeFractions: Sendable, Equatable {
        public var earlier: Double?
        public var later: Double?

        public init(earlier: Double?, later: Double?) {
            self.earlier = earlier
            self.later = later
        }
    }

    /// The earlier observation's weight for the interval's CPU time (see `split`).
    public static func cpuWeight(earlier: Endpoint, later: Endpoint, sampled: Bool) -> Double {
        let sameState = earlier.running == later.running
        return sameState ? (sameWork(earlier, later, sampled: sampled) ? 0 : 0.5) : (earlier.running ? 1 : 0)
    }

    /// With native samples, the opcode flag no longer tells work apart: only the place and the state do.
    static func sameWork(_ earlier: Endpoint, _ later: Endpoint, sampled: Bool) -> Bool {
        earlier.location == later.location && earlier.waitingForGIL == later.waitingForGIL
            && (sampled || earlier.native == later.native)
    }

    /// - Parameters:
    ///   - wall: seconds between the observations.
    ///   - cpu: seconds on a CPU in the interval (clamped to `wall`).
    ///   - kernel: of those, seconds in kernel mode (clamped to `cpu`).
    ///   - native: with native stack sampling, per endpoint the share of its user time that samples
    ///     found outside the interpreter's code; it replaces that endpoint's opcode/GIL rule.
    ///     Off-CPU time at an endpoint waiting for the GIL is GIL wait.
    public static func split(earlier: Endpoint, later: Endpoint, wall: Double, cpu: Double, kernel: Double,
                             native: NativeFractions? = nil) -> [Share] {
        let wall = max(0, wall)
        let cpu = min(max(0, cpu), wall)
        let kernel = min(max(0, kernel), cpu)
        let off = wall - cpu
        // Weight of the earlier observation for CPU time and for off-CPU time.
        let sameState = earlier.running == later.running
        let sameWork = sameWork(earlier, later, sampled: native != nil)
        let cpuWeight = sameState ? (sameWork ? 0 : 0.5) : (earlier.running ? 1 : 0)
        let offWeight = sameState ? (sameWork ? 0 : 0.5) : (earlier.running ? 0 : 1)
        var shares = [Share]()
        for (endpoint, fromEarlier) in [(earlier, true), (later, false)] {
            let cpuPart = cpu * (fromEarlier ? cpuWeight : 1 - cpuWeight)
            let offPart = off * (fromEarlier ? offWeight : 1 - offWeight)
            guard cpuPart > 0 || offPart > 0 || (!fromEarlier && shares.isEmpty) else { continue }
            let kernelPart = cpu > 0 ? kernel * cpuPart / cpu : 0
            var split = TimeSplit(system: kernelPart + offPart, gilWait: endpoint.waitingForGIL ? offPart : 0)
            let user = cpuPart - kernelPart
            if let fraction = fromEarlier ? native?.earlier : native?.later {
                let fraction = min(1, max(0, fraction))
                split.native = user * fraction
                split.python = user - split.native
            } else if endpoint.native { split.native = user } else { split.python = user }
            shares.append(Share(location: endpoint.location, split: split, cpu: cpuPart, fromEarlier: fromEarlier))
        }
        return shares
    }
}
