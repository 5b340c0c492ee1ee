import Profiler
import Testing

/// The aggregation of per-call samples: weights per line, line footprints followed through frees
/// and moves, the process's footprint, and leaks over the run up to the exit.
@Suite("Memory aggregation of per-call samples")
struct MemoryAggregatorTests {
    static let function = FunctionID(file: "a.py", name: "f", firstLine: 1)
    static func at(_ line: Int) -> MemoryLocation { .line(SourceLine(file: "a.py", line: line), function) }
    static let megabyte: UInt64 = 1 << 20

    static func malloc(_ line: Int, _ pointer: UInt64, megabytes: UInt64 = 1, python: Bool = true, at offset: UInt64 = 0,
                       finalizing: Bool = false) -> MemoryEvent {
        MemoryEvent(kind: .malloc, offset: offset, bytes: 4096, weight: megabytes * megabyte, pointer: pointer,
                    python: python, finalizing: finalizing, location: at(line))
    }

    static func free(_ pointer: UInt64, at offset: UInt64 = 0, finalizing: Bool = false) -> MemoryEvent {
        MemoryEvent(kind: .sampledFree, offset: offset, bytes: 0, weight: 0, pointer: pointer, finalizing: finalizing,
                    location: .outside)
    }

    @Test("a line's volume, Python share and copies are the weights of its own samples")
    func weights() {
        var aggregator = MemoryAggregator()
        aggregator.add(Self.malloc(1, 0x1000, megabytes: 3, python: true))
        aggregator.add(Self.malloc(1, 0x2000, megabytes: 1, python: false))
        aggregator.add(Self.malloc(2, 0x3000, megabytes: 2, python: false))
        aggregator.add(MemoryEvent(kind: .copy, offset: 0, bytes: 100, weight: 5 * Self.megabyte, pointer: 0,
                                   location: Self.at(2)))
        let profile = aggregator.profile(elapsed: 1, window: 1, copyWindow: 1, agent: AgentStatistics())
        let one = profile.lines[SourceLine(file: "a.py", line: 1)]!, two = profile.lines[SourceLine(file: "a.py", line: 2)]!
        #expect(one.allocatedMB == 4 && one.pythonFraction == 0.75 && one.mallocSamples == 2)
        #expect(two.allocatedMB == 2 && two.pythonFraction == 0 && two.copiedMB == 5 && one.copiedMB == 0)
        #expect(profile.totalAllocatedMB == 6 && profile.copiedMB == 5)
    }

    @Test("a block followed through realloc's move leaves its line when freed; churn counts, holds nothing")
    func footprintOfLines() {
        var aggregator = MemoryAggregator()
        aggregator.add(Self.malloc(1, 0x1000, megabytes: 2))
        aggregator.add(MemoryEvent(kind: .sampledMove, offset: 1, bytes: 0, weight: 0, pointer: 0x1000, movedTo: 0x9000,
                                   location: .outside))
        aggregator.add(Self.free(0x1000, at: 2)) // the old address: nothing of ours any more
        var line = aggregator.profile(elapsed: 1, window: 1, copyWindow: 1, agent: AgentStatistics())
            .lines[SourceLine(file: "a.py", line: 1)]!
        #expect(line.currentMB == 2)
        var grown = Self.malloc(1, 0x9000, megabytes: 3)
        grown.growth = true // realloc grew the tracked block in place: the same block, heavier
        aggregator.add(grown)
        line = aggregator.profile(elapsed: 1, window: 1, copyWindow: 1, agent: AgentStatistics())
            .lines[SourceLine(file: "a.py", line: 1)]!
        #expect(line.currentMB == 5 && line.allocatedMB == 5 && line.trackedAllocations == 1)
        aggregator.add(Self.free(0x9000, at: 3))
        for round in 0..<10 { // churn on line 2
            aggregator.add(Self.malloc(2, 0x5000, at: UInt64(10 + round)))
            aggregator.add(Self.free(0x5000, at: UInt64(10 + round)))
        }
        let profile = aggregator.profile(elapsed: 1, window: 1, copyWindow: 1, agent: AgentStatistics())
        line = profile.lines[SourceLine(file: "a.py", line: 1)]!
        #expect(line.currentMB == 0 && line.peakMB == 5 && line.trackedFrees == 1)
        let churn = profile.lines[SourceLine(file: "a.py", line: 2)]!
        #expect(churn.allocatedMB == 10 && churn.peakMB == 1 && churn.currentMB == 0)
        #expect(profile.leaks.isEmpty)
    }

    @Test("the process footprint is the allocator's figure, never negative, its peak at least every reading")
    func processFootprint() {
        var aggregator = MemoryAggregator()
        aggregator.footprint(offset: 0, bytes: 50 * Self.megabyte, peakBytes: 50 * Self.megabyte)
        aggregator.add(Self.malloc(1, 0x1000, megabytes: 8))
        aggregator.footprint(offset: 1, bytes: 58 * Self.megabyte, peakBytes: 60 * Self.megabyte)
        aggregator.add(Self.free(0x1000, at: 2))
        aggregator.footprint(offset: 2, bytes: 20 * Self.megabyte, peakBytes: 60 * Self.megabyte)
        let profile = aggregator.profile(elapsed: 1, window: 1, copyWindow: 1, agent: AgentStatistics())
        #expect(profile.currentFootprintMB == 20 && profile.footprintChangeMB == -30 && profile.peakFootprintMB == 60)
        #expect(profile.peakLine == SourceLine(file: "a.py", line: 1))
        #expect(profile.footprint.map(\.megabytes) == [50, 58, 20])
        // A process that began exiting: what it held then, not during its teardown.
        aggregator.noteFinalizing(at: 1)
        let exited = aggregator.profile(elapsed: 1, window: 1, copyWindow: 1, agent: AgentStatistics())
        #expect(exited.currentFootprintMB == 58 && exited.exitedAfterSeconds == 1e-9)
    }

    @Test("leaks: frees once the process exits do not clear a line; the same line flagged either way, no other")
    func leaksOverTheRun() {
        func run(exiting: Bool) -> MemoryProfile {
            var aggregator = MemoryAggregator()
            for index in 0..<40 {
                let offset = UInt64(index) * 1_000_000
                aggregator.add(Self.malloc(1, 0x10_0000 + UInt64(index) * 64, at: offset)) // leaks
                aggregator.add(Self.malloc(2, 0x20_0000, at: offset)) // freed each round
                aggregator.add(Self.free(0x20_0000, at: offset))
            }
            aggregator.add(Self.malloc(3, 0x30_0000, megabytes: 4)) // held, but one sample: no evidence
            if exiting { // the teardown frees everything
                for index in 0..<40 { aggregator.add(Self.free(0x10_0000 + UInt64(index) * 64, at: 50_000_000, finalizing: true)) }
                aggregator.add(Self.free(0x30_0000, at: 50_000_000, finalizing: true))
            }
            return aggregator.profile(elapsed: 2, window: 1, copyWindow: 1, agent: AgentStatistics())
        }
        for exiting in [false, true] {
            let profile = run(exiting: exiting)
            #expect(profile.leaks.map(\.line) == [SourceLine(file: "a.py", line: 1)], "exiting: \(exiting)")
            #expect(abs((profile.leaks.first?.velocityMBPerSecond ?? 0) - 40 / (exiting ? 0.05 : 2)) < 1e-9)
            #expect((profile.exitedAfterSeconds != nil) == exiting)
        }
    }
}
