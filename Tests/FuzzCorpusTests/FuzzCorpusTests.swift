import Foundation
import FuzzTargets
import RemoteProcess
import Testing

/// Every committed fuzz input (seeds recorded from real interpreters, and every input a fuzzer once
/// crashed on) runs through its target on every test run: a reader that traps on one of them fails
/// here, without libFuzzer.
@Suite("fuzz corpus replay")
struct FuzzCorpusTests {
    static let corpusRoot = FuzzLayouts.packageRoot + "/fixtures/fuzz"

    /// The committed inputs of a target (seeds and regression inputs).
    static func inputs(of target: FuzzTarget) -> [String] {
        target.corpusFolders.flatMap { name -> [String] in
            let folder = corpusRoot + "/" + name
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            return names.filter { !$0.hasPrefix(".") }.sorted().map { folder + "/" + $0 }
        }
    }

    @Test("each target has a committed corpus", arguments: FuzzTarget.allCases)
    func corpusExists(_ target: FuzzTarget) {
        #expect(!Self.inputs(of: target).isEmpty, "no committed inputs for \(target.rawValue): run make fuzz-seeds")
    }

    @Test("every committed input runs through its target", arguments: FuzzTarget.allCases)
    func replay(_ target: FuzzTarget) throws {
        for path in Self.inputs(of: target) {
            let data = try #require(FileManager.default.contents(atPath: path))
            target.run(Array(data))
        }
    }

    @Test("recorded seeds are real: the stack walker finds threads and frames in them")
    func seedsAreReal() throws {
        let seeds = Self.inputs(of: .stacks).filter { $0.contains("/python-") }
        #expect(!seeds.isEmpty)
        for path in seeds {
            let image = MemoryImage(decoding: Array(try #require(FileManager.default.contents(atPath: path))))
            #expect(image.regions.count > 5, "\(path)")
            #expect(MemoryImage(decoding: image.encoded()) == image, "encoding round-trips")
        }
    }

    @Test("images decode from any bytes, even truncated ones")
    func imageDecoding() {
        let whole = MemoryImage(layout: 3, codeType: 0x1234, root: 0x5678,
                                regions: [LocalMemory.Region(address: 0x1000, bytes: [1, 2, 3]),
                                          LocalMemory.Region(address: .max - 3, bytes: [9, 9, 9])])
        let bytes = whole.encoded()
        #expect(MemoryImage(decoding: bytes) == whole)
        for cut in 0..<bytes.count { _ = MemoryImage(decoding: Array(bytes[0..<cut])) }
        // Reads at the top of the address space fail, they do not trap.
        #expect((try? whole.memory.bytes(at: .max - 3, count: 2)) == [9, 9])
        #expect((try? whole.memory.bytes(at: .max - 2, count: 3)) == nil)
    }
}
