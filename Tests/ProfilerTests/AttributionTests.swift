import Profiler
import Testing

/// The attribution rule with native stack samples and GIL waits.
@Suite("Attribution: native fractions and GIL wait")
struct AttributionTests {
    @Test("a native fraction splits user time and replaces the opcode rule")
    func nativeFraction() {
        let here = Endpoint(location: 1, running: true, native: false)
        let shares = Attribution.split(earlier: here, later: here, wall: 0.01, cpu: 0.008, kernel: 0.002,
                                       native: .init(earlier: nil, later: 0.25))
        #expect(shares.count == 1)
        let split = shares[0].split
        #expect(abs(split.native - 0.0015) < 1e-12 && abs(split.python - 0.0045) < 1e-12)
        #expect(abs(split.system - 0.004) < 1e-12, "kernel 2 ms + off-CPU 2 ms")
        #expect(split.gilWait == 0)
    }

    @Test("without a fraction an end keeps the opcode rule; the opcode flag no longer splits the interval")
    func fallbackPerEnd() {
        let earlier = Endpoint(location: 1, running: true, native: true)
        let later = Endpoint(location: 1, running: true, native: false)
        // Without native samples the differing flags split the interval in two halves.
        #expect(Attribution.split(earlier: earlier, later: later, wall: 0.01, cpu: 0.01, kernel: 0).count == 2)
        // With them, same place and state: one share, at the later end, by its (absent) fraction's rule.
        let shares = Attribution.split(earlier: earlier, later: later, wall: 0.01, cpu: 0.01, kernel: 0,
                                       native: .init(earlier: nil, later: nil))
        #expect(shares.count == 1 && shares[0].split.python == 0.01)
    }

    @Test("off-CPU time at an end blocked on the GIL is GIL wait, a part of system")
    func gilWait() {
        let running = Endpoint(location: 1, running: true, native: false)
        let waiting = Endpoint(location: 2, running: false, native: false, waitingForGIL: true)
        let shares = Attribution.split(earlier: running, later: waiting, wall: 0.01, cpu: 0.004, kernel: 0)
        let atWait = shares.first { $0.location == 2 }
        let atRun = shares.first { $0.location == 1 }
        #expect(atWait.map { abs($0.split.gilWait - 0.006) < 1e-12 && abs($0.split.system - 0.006) < 1e-12 } == true)
        #expect(atRun.map { $0.split.gilWait == 0 && abs($0.split.python - 0.004) < 1e-12 } == true)
        var total = TimeSplit.zero
        for share in shares { total += share.split }
        #expect(abs(total.total - 0.01) < 1e-12, "GIL wait is not counted twice")
    }
}
