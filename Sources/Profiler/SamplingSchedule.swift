/// Sampling deadlines on an absolute grid with random jitter.
///
/// Tick k is due at start + k·period + u·period with u uniform in [-½, ½): the mean rate is exact,
/// time spent sampling does not accumulate as drift, and the jitter keeps the sampler from locking
/// onto the target's own periodic work (aliasing). A tick that is late by more than a period is
/// counted and the schedule skips ahead instead of bursting.
public struct SamplingSchedule: Sendable {
    public let period: UInt64
    public let start: UInt64
    private var index: UInt64 = 0
    private var random: SplitMix64
    /// Grid slots skipped because the sampler fell behind.
    public private(set) var lateTicks = 0

    public init(rateHz: Double, start: UInt64, seed: UInt64) {
        period = max(1, UInt64(1_000_000_000 / max(rateHz, 0.001)))
        self.start = start
        random = SplitMix64(seed: seed)
    }

    /// The next deadline (nanoseconds, CLOCK_MONOTONIC), given the current time.
    public mutating func next(after now: UInt64) -> UInt64 {
        index += 1
        let slot = start &+ index &* period
        if now > slot &+ period {
            // Fell behind: skip the missed slots.
            let missed = (now - slot) / period
            lateTicks += Int(missed)
            index += missed
        }
        let jitter = Int64(random.nextUnit() * Double(period)) - Int64(period / 2)
        let base = start &+ index &* period
        return UInt64(max(Int64(now), Int64(base) + jitter))
    }
}

/// A small, fast pseudo-random generator (SplitMix64); jitter needs no cryptographic quality and
/// must not cost a system call per tick.
struct SplitMix64: Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
