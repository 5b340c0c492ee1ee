import CPythonLayouts
import ELFSymbols
import Foundation
import Injector
import Profiler
import PythonInspector
import RemoteProcess

/// The readers that take bytes from another process, driven by arbitrary input. Each target must
/// return normally on any input: a trap, an out-of-bounds access or a hang is a bug in the reader.
/// The libFuzzer driver (`scalene-fuzz`, `make fuzz`) and the corpus replay test call the same
/// functions.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Thread list, frame walk, code objects, strings and line tables, from `_PyRuntime` down
    /// (InterpreterObserver, as `dump` and the sampler use it). Input: a `MemoryImage`.
    case stacks
    /// Code objects and the object readers (str, bytes, int, dict, instance attributes, module dict)
    /// at every region of a `MemoryImage`.
    case objects
    /// Thread names from `threading._active`. Input: a `MemoryImage`.
    case threadNames = "thread-names"
    /// The three line-table formats and the instruction-start walk. Input: format and opcode-table
    /// selector (u8), first line (u32), then the table bytes.
    case lineTables = "line-tables"
    /// `_Py_DebugOffsets` decoding and the layout built from it. Input: the raw table.
    case debugOffsets = "debug-offsets"
    /// The agent's shared-memory ring (header and records as the target could leave them) and the
    /// aggregation of what it yields. Input: the mapping's bytes.
    case agentRing = "agent-ring"
    /// A symbol hash table (`.gnu.hash` or `.hash`) as an ELF file could hold it, and lookups in
    /// it. Input: flags (u8; bit 0: SysV, bit 1: 64-bit), the symbol count (u32), the section.
    case elfHash = "elf-hash"

    /// Folders of fixtures/fuzz whose files are this target's committed inputs: the shared seed
    /// images for the memory-image targets, and the target's own folder (regression inputs).
    public var corpusFolders: [String] {
        switch self {
        case .stacks, .objects, .threadNames: return ["memory-images", rawValue]
        case .lineTables, .debugOffsets, .agentRing, .elfHash: return [rawValue]
        }
    }

    /// Runs the target on one input.
    public func run(_ bytes: [UInt8]) {
        switch self {
        case .stacks: Self.stacks(bytes)
        case .objects: Self.objects(bytes)
        case .threadNames: Self.threadNames(bytes)
        case .lineTables: Self.lineTables(bytes)
        case .debugOffsets: Self.debugOffsets(bytes)
        case .agentRing: Self.agentRing(bytes)
        case .elfHash: Self.elfHash(bytes)
        }
    }

    static func stacks(_ bytes: [UInt8]) {
        let image = MemoryImage(decoding: bytes)
        let target = FuzzLayouts.layout(image.layout)
        let observer = InterpreterObserver(memory: image.memory, layout: target.layout, opcodes: target.opcodes,
                                           runtimeAddress: image.root, codeType: image.codeType == 0 ? nil : image.codeType,
                                           maximumDepth: 512)
        // Kernel thread ids for the pthread → tid search of 3.8–3.10: small numbers, as a real
        // process's are.
        guard let observations = try? observer.observe(taskIDs: Set((1...64).map { Int32($0) })) else { return }
        for observation in observations {
            for frame in observation.frames {
                _ = observer.stacks.instruction(of: frame)
                _ = frame.code.lineTable.line(atCodeUnit: frame.codeUnit)
            }
        }
        observer.stacks.revalidateCache()
    }

    static func objects(_ bytes: [UInt8]) {
        let image = MemoryImage(decoding: bytes)
        let target = FuzzLayouts.layout(image.layout)
        let memory = image.memory
        let reader = StackReader(memory: memory, layout: target.layout, opcodes: target.opcodes,
                                 codeType: image.codeType == 0 ? nil : image.codeType)
        let objects = ObjectReader(memory: memory, objects: target.layout.objects)
        for region in image.regions.prefix(64) {
            let address = region.address
            // The root doubles as an instruction pointer into (or near) the code object.
            if let frame = reader.resolve(RawFrame(code: address, instruction: image.root)) {
                _ = reader.instruction(of: frame)
            }
            _ = objects.string(at: address)
            _ = objects.byteString(at: address)
            _ = objects.unsignedInteger(at: address)
            _ = objects.dictItems(at: address)
            _ = objects.instanceAttributes(of: address)
            _ = objects.moduleDict(of: address)
        }
        reader.revalidateCache()
    }

    static func threadNames(_ bytes: [UInt8]) {
        let image = MemoryImage(decoding: bytes)
        let target = FuzzLayouts.layout(image.layout)
        let memory = image.memory
        let names = ThreadNameReader(memory: memory, layout: target.layout)
        _ = names.names(interpreter: image.root)
        let threads = ThreadReader(memory: memory, layout: target.layout, runtimeAddress: image.root)
        if let interpreter = try? threads.mainInterpreter() { _ = names.names(interpreter: interpreter) }
    }

    static func lineTables(_ bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        let selector = Int(reader.u8() ?? 0)
        let firstLine = Int(Int32(bitPattern: reader.u32() ?? 0))
        let table = reader.rest()
        let formats: [LineTableFormat] = [.lnotab, .lineTable310, .locationTable]
        let decoded = LineTable.decode(table, format: formats[selector % formats.count], firstLine: firstLine)
        for unit in -1..<min(table.count, 512) { _ = decoded.line(atCodeUnit: unit) }
        _ = decoded.line(atCodeUnit: .max)
        let opcodes = OpcodeTables.all
        if !opcodes.isEmpty {
            let starts = opcodes[selector % opcodes.count].instructionStarts(in: table)
            precondition(starts.count == table.count / OpcodeTable.codeUnitSize, "one entry per code unit")
        }
    }

    static func debugOffsets(_ bytes: [UInt8]) {
        guard let offsets = try? DebugOffsets.decode(bytes) else { return }
        _ = try? offsets.layout()
    }

    static func elfHash(_ bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        let flags = reader.u8() ?? 0
        let symbolCount = Int(reader.u32() ?? 0)
        let section = reader.rest()
        guard let table = SymbolHashTable(kind: flags & 1 == 0 ? .gnu : .sysV, bytes: section,
                                          is64Bit: flags & 2 != 0, symbolCount: symbolCount) else { return }
        // Names the tables were seeded with, one that is in no table, and bytes of the input.
        let names = ["_PyRuntime", "Py_Version", "PyCode_Type", "dlopen", "memcpy", "", "no_such_symbol"].map { Array($0.utf8) }
            + [Array(section.prefix(12))]
        for name in names {
            let candidates = table.candidates(for: name)
            precondition(candidates.allSatisfy { $0 >= 0 && $0 < symbolCount }, "a candidate outside the symbol table")
            precondition(zip(candidates, candidates.dropFirst()).allSatisfy { $0 < $1 }, "candidates in table order")
        }
    }

    /// Records in the fuzzed ring: enough for every index to wrap several times.
    static let ringCapacity = 16

    static func agentRing(_ bytes: [UInt8]) {
        let size = SampleRing.mappingSize(capacity: ringCapacity)
        let base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { base.deallocate() }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        bytes.withUnsafeBytes { raw in
            if let source = raw.baseAddress { base.copyMemory(from: source, byteCount: min(size, raw.count)) }
        }
        var ring = SampleRing(base: base, capacity: ringCapacity)
        var samples = [AgentSample]()
        // Twice, a second apart: the second pass skips slots whose writer never finished.
        ring.drain(into: &samples, now: 1_000)
        ring.drain(into: &samples, now: 2_000_001_000)
        var aggregator = MemoryAggregator()
        let locations: [MemoryLocation] = [.native, .outside,
                                           .line(SourceLine(file: "f.py", line: 1), FunctionID(file: "f.py", name: "f", firstLine: 1))]
        for (index, sample) in samples.enumerated() {
            aggregator.add(MemorySession.event(sample, offset: sample.timestamp) { _ in locations[index % locations.count] })
            if index % 7 == 0 { aggregator.footprint(offset: sample.timestamp, bytes: sample.weight, peakBytes: sample.bytes) }
        }
        _ = aggregator.profile(elapsed: 1, window: 1 << 20, copyWindow: 7 << 20, agent: AgentStatistics())
    }
}

/// The layouts fuzz inputs are read with: every generated table (3.8–3.12) and every captured
/// `_Py_DebugOffsets` blob in fixtures/generators (3.13+), each with its opcode table.
public enum FuzzLayouts {
    public struct Entry: Sendable {
        public var layout: PythonLayout
        public var opcodes: OpcodeTable?
    }

    public static let all: [Entry] = {
        var entries = LayoutTables.all.compactMap { generated in
            generated.layout.map { Entry(layout: $0, opcodes: OpcodeTables.table(for: $0.version)) }
        }
        let directory = packageRoot + "/fixtures/generators"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("debug_offsets_") && $0.hasSuffix(".bin") }.sorted()
        for name in names {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name),
                  let layout = try? DebugOffsets.decode(Array(data)).layout() else { continue }
            entries.append(Entry(layout: layout, opcodes: OpcodeTables.table(for: layout.version)))
        }
        return entries
    }()

    /// The entry an image's selector byte picks.
    public static func layout(_ selector: UInt8) -> Entry {
        all[Int(selector) % all.count]
    }

    /// The selector of the entry for `version`'s minor version, if there is one.
    public static func selector(for version: PythonVersion) -> UInt8? {
        all.firstIndex { $0.layout.version.major == version.major && $0.layout.version.minor == version.minor }
            .map { UInt8($0) }
    }

    /// The repository root, from this file's place in it (the fuzzers and the tests run from a checkout).
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
}
