import CPythonLayouts
import Foundation
import PythonInspector
import RemoteProcess

/// Builds CPython objects byte by byte in one `LocalMemory` region, at the offsets a `PythonLayout`
/// gives, so the readers can be run on memory whose every field the test chose.
struct FakeHeap {
    let base: UInt64
    private(set) var bytes: [UInt8] = []

    /// Fake type objects: only their addresses matter (they are compared, never read).
    static let strType: UInt64 = 0x7a00_0000_0100
    static let bytesType: UInt64 = 0x7a00_0000_0200
    static let intType: UInt64 = 0x7a00_0000_0300
    static let dictType: UInt64 = 0x7a00_0000_0400
    static let codeType: UInt64 = 0x7a00_0000_0500
    static let otherType: UInt64 = 0x7a00_0000_0600
    /// An address no region maps.
    static let unmapped: UInt64 = 0x6bad_0000_0000

    init(base: UInt64 = 0x5500_0000_0000) {
        self.base = base
    }

    var memory: LocalMemory { LocalMemory(regions: [.init(address: base, bytes: bytes)]) }
    var end: UInt64 { base + UInt64(bytes.count) }

    /// `size` zeroed bytes, 16-byte aligned.
    mutating func allocate(_ size: Int) -> UInt64 {
        bytes += [UInt8](repeating: 0, count: (16 - bytes.count % 16) % 16 + size)
        return end - UInt64(size)
    }

    mutating func write<T: FixedWidthInteger>(_ value: T, at address: UInt64) {
        let start = Int(address - base)
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (index, byte) in raw.enumerated() { bytes[start + index] = byte }
        }
    }

    mutating func write(_ data: [UInt8], at address: UInt64) {
        let start = Int(address - base)
        bytes.replaceSubrange(start..<(start + data.count), with: data)
    }

    /// `ob_refcnt` 1 and `ob_type`.
    mutating func writeHeader(at object: UInt64, type: UInt64, objects: ObjectOffsets) {
        write(UInt64(1), at: object)
        write(type, at: object + UInt64(objects.objectType))
    }

    // MARK: objects

    /// A compact `str` (ASCII, Latin-1, UCS-2 or UCS-4 by its widest character) with its NUL.
    /// `exactSize` allocates only the object itself, with no slack after it.
    @discardableResult
    mutating func str(_ text: String, objects o: ObjectOffsets, exactSize: Bool = false) -> UInt64 {
        let u = o.unicode
        let scalars = text.unicodeScalars.map(\.value)
        let widest = scalars.max() ?? 0
        let kind = widest < 0x100 ? 1 : widest < 0x10000 ? 2 : 4
        let ascii = widest < 0x80
        let dataOffset = ascii ? u.asciiSize : u.compactSize
        let objectSize = dataOffset + (scalars.count + 1) * kind
        let object = allocate(exactSize ? objectSize : max(objectSize, u.compactSize) + 16)
        writeHeader(at: object, type: Self.strType, objects: o)
        write(Int64(scalars.count), at: object + UInt64(u.length))
        write(Int64(-1), at: object + UInt64(u.length) + 8) // hash not computed
        var state = UInt32(kind) << UInt32(u.kindShift) | 1 << UInt32(u.compactShift)
        if ascii { state |= 1 << UInt32(u.asciiShift) }
        write(state, at: object + UInt64(u.state))
        for (index, scalar) in scalars.enumerated() {
            let at = object + UInt64(dataOffset + index * kind)
            switch kind {
            case 1: write(UInt8(scalar), at: at)
            case 2: write(UInt16(scalar), at: at)
            default: write(scalar, at: at)
            }
        }
        return object
    }

    /// A `bytes` object.
    mutating func bytesObject(_ data: [UInt8], objects o: ObjectOffsets) -> UInt64 {
        let object = allocate(o.bytes.data + data.count + 1)
        writeHeader(at: object, type: Self.bytesType, objects: o)
        write(Int64(data.count), at: object + UInt64(o.bytes.size))
        write(Int64(-1), at: object + UInt64(o.bytes.size) + 8)
        write(data, at: object + UInt64(o.bytes.data))
        return object
    }

    /// An `int` from its 30-bit digits, least significant first, in the version's encoding: signed
    /// digit count in `ob_size` (3.8–3.11) or `lv_tag` = count << 3 | sign (3.12+: 0 +, 1 zero, 2 −).
    mutating func int(digits: [UInt32], negative: Bool = false, objects o: ObjectOffsets) -> UInt64 {
        let l = o.long
        let object = allocate(l.digits + max(digits.count, 1) * l.digitSize)
        writeHeader(at: object, type: Self.intType, objects: o)
        if l.usesTag {
            let sign: Int64 = digits.isEmpty ? 1 : negative ? 2 : 0
            write(Int64(digits.count) << Int64(l.tagDigitShift) | sign, at: object + UInt64(l.sizeOrTag))
        } else {
            write(negative ? -Int64(digits.count) : Int64(digits.count), at: object + UInt64(l.sizeOrTag))
        }
        for (index, digit) in digits.enumerated() {
            write(digit, at: object + UInt64(l.digits + index * l.digitSize))
        }
        return object
    }

    /// The 30-bit digits of `value`, least significant first.
    static func digits(of value: UInt64) -> [UInt32] {
        var result = [UInt32]()
        var rest = value
        while rest != 0 {
            result.append(UInt32(rest & 0x3fff_ffff))
            rest >>= 30
        }
        return result
    }

    /// A dict whose keys object is laid out as the version does it: 3.8–3.10 with `dk_size` and
    /// index width following from it; 3.11+ with log2 sizes, and unicode entries (key, value) when
    /// `unicodeKeys`, general entries (hash, key, value) otherwise. A nil item is a deleted entry.
    /// With `splitValues`, values go to a separate `ma_values` array and the entries hold none.
    mutating func dict(_ items: [(key: UInt64, value: UInt64)?], size: Int, objects o: ObjectOffsets,
                       unicodeKeys: Bool = true, splitValues: Bool = false) -> UInt64 {
        let d = o.dict
        precondition(size.nonzeroBitCount == 1 && size >= items.count)
        let useUnicodeEntries = d.keysKind != nil && (unicodeKeys || splitValues)
        let entrySize = useUnicodeEntries ? d.unicodeEntrySize! : d.entrySize
        let keyOffset = useUnicodeEntries ? d.unicodeEntryKey! : d.entryKey
        let valueOffset = useUnicodeEntries ? d.unicodeEntryValue! : d.entryValue
        let indexWidth = size <= 0xff ? 1 : size <= 0xffff ? 2 : 4
        let indexBytes = size * indexWidth
        let keys = allocate(d.keysIndices + indexBytes + items.count * entrySize)
        write(Int64(1), at: keys) // dk_refcnt
        if d.keysSizeIsLog2 {
            write(UInt8(size.trailingZeroBitCount), at: keys + UInt64(d.keysSize))
            write(UInt8(indexBytes.trailingZeroBitCount), at: keys + UInt64(d.keysLog2IndexBytes!))
            write(UInt8(splitValues ? 2 : unicodeKeys ? 1 : 0), at: keys + UInt64(d.keysKind!))
        } else {
            write(Int64(size), at: keys + UInt64(d.keysSize))
        }
        write(Int64(items.count), at: keys + UInt64(d.keysNEntries))
        // Index slots: entry i at slot i (the reader walks entries, not the hash table), rest empty (-1).
        for slot in 0..<size {
            let value: Int64 = slot < items.count ? Int64(slot) : -1
            let at = keys + UInt64(d.keysIndices + slot * indexWidth)
            switch indexWidth {
            case 1: write(Int8(truncatingIfNeeded: value), at: at)
            case 2: write(Int16(truncatingIfNeeded: value), at: at)
            default: write(Int32(truncatingIfNeeded: value), at: at)
            }
        }
        let entries = keys + UInt64(d.keysIndices + indexBytes)
        for (index, item) in items.enumerated() {
            let entry = entries + UInt64(index * entrySize)
            if !useUnicodeEntries { write(Int64(0x1234_5678 + index), at: entry) } // me_hash
            if let item {
                write(item.key, at: entry + UInt64(keyOffset))
                if !splitValues { write(item.value, at: entry + UInt64(valueOffset)) }
            } else if !useUnicodeEntries {
                write(UInt64(0x7a00_dead_0000), at: entry + UInt64(keyOffset)) // <dummy> key, NULL value
            }
        }
        let dict = allocate(max(d.values, d.keys) + 8)
        writeHeader(at: dict, type: Self.dictType, objects: o)
        write(Int64(items.compactMap { $0 }.count), at: dict + UInt64(d.used))
        write(keys, at: dict + UInt64(d.keys))
        if splitValues {
            let values = allocate(d.valuesArray + items.count * 8)
            for (index, item) in items.enumerated() {
                write(item?.value ?? 0, at: values + UInt64(d.valuesArray + index * 8))
            }
            write(values, at: dict + UInt64(d.values))
        }
        return dict
    }

    // MARK: code and frames

    /// A code object with `units` code units of bytecode, its names as `str` objects and its line
    /// table in the version's format (see `lineTable`). `type` defaults to the fake code type.
    mutating func code(_ spec: CodeSpec, layout: PythonLayout, type: UInt64 = FakeHeap.codeType) -> FakeCode {
        let c = layout.code, o = layout.objects
        let filename = str(spec.filename, objects: o)
        let name = str(spec.name, objects: o)
        let qualname = str(spec.qualname, objects: o)
        let table = bytesObject(Self.lineTable(spec.lines, format: c.lineTableFormat, firstLine: spec.firstLine), objects: o)
        let bytecode = (0..<(spec.units * 2)).map { UInt8(truncatingIfNeeded: $0 % 2 == 0 ? 9 : $0) } // NOP-ish units
        var size = c.size
        var codeBytesObject: UInt64 = 0
        switch c.codeBytes {
        case .bytesObject:
            codeBytesObject = bytesObject(bytecode, objects: o)
        case .inline(let offset):
            size = max(size, offset + bytecode.count)
        }
        let object = allocate(size)
        writeHeader(at: object, type: type, objects: o)
        write(filename, at: object + UInt64(c.filename))
        write(name, at: object + UInt64(c.name))
        if let q = c.qualname { write(qualname, at: object + UInt64(q)) }
        write(Int32(spec.firstLine), at: object + UInt64(c.firstLineNumber))
        write(table, at: object + UInt64(c.lineTable))
        let bytecodeAddress: UInt64
        switch c.codeBytes {
        case .bytesObject(let offset):
            write(codeBytesObject, at: object + UInt64(offset))
            bytecodeAddress = codeBytesObject + UInt64(o.bytes.data)
        case .inline(let offset):
            write(Int64(spec.units), at: object + UInt64(o.varSize))
            write(bytecode, at: object + UInt64(offset))
            bytecodeAddress = object + UInt64(offset)
        }
        return FakeCode(address: object, bytecodeAddress: bytecodeAddress)
    }

    /// A frame (`PyFrameObject` or `_PyInterpreterFrame`) executing `code` at code unit `unit`
    /// (-1: not started), encoded as the version's instruction field.
    mutating func frame(code: FakeCode?, unit: Int, previous: UInt64 = 0, owner: UInt8? = nil,
                        layout: PythonLayout) -> UInt64 {
        let f = layout.frame
        let object = allocate(max(f.size, f.previous + 8, f.code + 8, f.instruction + 8, (f.owner ?? 0) + 1))
        write(previous, at: object + UInt64(f.previous))
        write(code?.address ?? 0, at: object + UInt64(f.code))
        let instruction = Self.instruction(unit: unit, code: code, layout: layout)
        switch f.instructionField {
        case .lastiBytes, .lastiCodeUnits: write(Int32(truncatingIfNeeded: Int64(bitPattern: instruction)), at: object + UInt64(f.instruction))
        case .previousInstructionPointer, .instructionPointer: write(instruction, at: object + UInt64(f.instruction))
        }
        if let owner, let at = f.owner { write(owner, at: object + UInt64(at)) }
        return object
    }

    /// The raw instruction field for code unit `unit`: f_lasti (a 32-bit int, stored sign-extended
    /// in `RawFrame`) or a pointer into the bytecode.
    static func instruction(unit: Int, code: FakeCode?, layout: PythonLayout) -> UInt64 {
        switch layout.frame.instructionField {
        case .lastiBytes: return UInt64(bitPattern: Int64(unit < 0 ? -1 : unit * 2))
        case .lastiCodeUnits: return UInt64(bitPattern: Int64(unit))
        case .previousInstructionPointer, .instructionPointer:
            return (code?.bytecodeAddress ?? 0) &+ UInt64(bitPattern: Int64(unit * 2))
        }
    }

    mutating func setPrevious(of frame: UInt64, to previous: UInt64, layout: PythonLayout) {
        write(previous, at: frame + UInt64(layout.frame.previous))
    }

    /// A line table in `format` for consecutive ranges of (code units, line), starting at
    /// `firstLine`. Small deltas only (as the tests use).
    static func lineTable(_ ranges: [(units: Int, line: Int)], format: LineTableFormat, firstLine: Int) -> [UInt8] {
        var result = [UInt8]()
        var line = firstLine
        switch format {
        case .lnotab:
            // (byte increment, line increment) pairs; the line before the first pair is firstLine.
            var pendingBytes = 0
            for range in ranges {
                if range.line != line {
                    result += [UInt8(pendingBytes), UInt8(bitPattern: Int8(range.line - line))]
                    pendingBytes = 0
                    line = range.line
                }
                pendingBytes += range.units * 2
            }
        case .lineTable310:
            // (byte length, line delta) per range.
            for range in ranges {
                result += [UInt8(range.units * 2), UInt8(bitPattern: Int8(range.line - line))]
                line = range.line
            }
        case .locationTable:
            // Form 13 (no columns): 0x80 | 13 << 3 | (units - 1), then the line delta as a signed varint.
            for range in ranges {
                precondition(range.units >= 1 && range.units <= 8)
                let delta = range.line - line
                let zigzag = delta < 0 ? (-delta) << 1 | 1 : delta << 1
                precondition(zigzag < 64)
                result += [0x80 | 13 << 3 | UInt8(range.units - 1), UInt8(zigzag)]
                line = range.line
            }
        }
        return result
    }
}

extension FakeHeap {
    /// A thread to lay out: its pthread_t, `native_thread_id` (3.11+) and innermost frame (0: none).
    struct ThreadSpec {
        var pthread: UInt64
        var native: Int32? = nil
        var frame: UInt64 = 0
    }

    struct Interpreter {
        var runtime: UInt64
        var interpreter: UInt64
        /// Thread states in list order (newest first).
        var threadStates: [UInt64]
    }

    /// `_PyRuntime` and a main interpreter (id 0) whose thread list holds `threads` in the order
    /// given. `gilHolder` indexes the thread holding the GIL: in `gilstate.tstate_current` (3.8–3.11)
    /// or as `ceval.gil`'s locked `last_holder` (3.12+; unlocked, last_holder still points at a
    /// thread, as after a release).
    mutating func interpreter(threads: [ThreadSpec], gilHolder: Int?, layout: PythonLayout) -> Interpreter {
        let r = layout.runtime, i = layout.interpreter, t = layout.thread
        let interp = allocate(max(i.next, i.id, i.threadsHead, i.modules, i.cevalGIL ?? 0) + 8)
        write(Int64(0), at: interp + UInt64(i.id))
        let states = threads.map { _ in allocate(t.size) }
        for (index, (state, thread)) in zip(states, threads).enumerated() {
            write(index + 1 < states.count ? states[index + 1] : 0, at: state + UInt64(t.next))
            write(interp, at: state + UInt64(t.interp))
            write(thread.pthread, at: state + UInt64(t.threadID))
            if let native = t.nativeThreadID { write(UInt64(UInt32(bitPattern: thread.native ?? 0)), at: state + UInt64(native)) }
            if let current = t.cframeCurrentFrame {
                let cframe = allocate(max(current + 8, 24))
                write(thread.frame, at: cframe + UInt64(current))
                write(cframe, at: state + UInt64(t.frame))
            } else {
                write(thread.frame, at: state + UInt64(t.frame))
            }
        }
        write(states.first ?? 0, at: interp + UInt64(i.threadsHead))
        let runtime = allocate(max(r.interpretersHead, r.interpretersMain ?? 0, r.gilstateTstateCurrent ?? 0) + 8)
        write(interp, at: runtime + UInt64(r.interpretersHead))
        if let main = r.interpretersMain { write(interp, at: runtime + UInt64(main)) }
        let holder = gilHolder.map { states[$0] } ?? 0
        if let current = r.gilstateTstateCurrent {
            write(holder, at: runtime + UInt64(current))
        } else if let gilField = i.cevalGIL, let locked = i.gilLocked, let last = i.gilLastHolder {
            // Up to and with `switch_number`, after `locked` (read with the thread states).
            let gil = allocate(max(locked, last) + 24)
            write(Int32(holder == 0 ? 0 : 1), at: gil + UInt64(locked))
            write(holder == 0 ? (states.first ?? 0) : holder, at: gil + UInt64(last))
            write(gil, at: interp + UInt64(gilField))
        }
        return Interpreter(runtime: runtime, interpreter: interp, threadStates: states)
    }

    /// A glibc `struct pthread` with the kernel tid at offset 720 (x86_64, glibc 2.28+); its address
    /// is the pthread_t.
    mutating func pthread(tid: Int32) -> UInt64 {
        let block = allocate(2304)
        write(block, at: block + 16) // header.self
        write(tid, at: block + 720)
        return block
    }
}

/// The stack most tests walk, in one version's layout. Three frames, innermost first: inner at
/// unit 6 (line 15), middle at unit 5 (line 43), outer at unit 3 (line 30).
struct FakeStack {
    static let innerSpec = CodeSpec(filename: "/srv/app/main.py", name: "inner", qualname: "Outer.inner", firstLine: 10,
                                    lines: [(2, 10), (3, 12), (3, 15)])
    /// A UCS-2 name and qualname, a Latin-1 (non-ASCII, one byte per character) file name.
    static let middleSpec = CodeSpec(filename: "/srv/app/ünïcödé.py", name: "名前", qualname: "クラス.名前", firstLine: 40,
                                     lines: [(4, 41), (4, 43)])
    static let outerSpec = CodeSpec(filename: "/srv/app/main.py", name: "<module>", qualname: "<module>", firstLine: 1,
                                    lines: [(2, 1), (2, 30)])

    var heap = FakeHeap()
    var layout: PythonLayout
    var inner: FakeCode, middle: FakeCode, outer: FakeCode
    var frames: [UInt64] = []

    init(_ version: String) throws {
        layout = try TestLayouts.named(version)
        inner = heap.code(FakeStack.innerSpec, layout: layout)
        middle = heap.code(FakeStack.middleSpec, layout: layout)
        outer = heap.code(FakeStack.outerSpec, layout: layout)
        let f3 = heap.frame(code: outer, unit: 3, layout: layout)
        let f2 = heap.frame(code: middle, unit: 5, previous: f3, layout: layout)
        let f1 = heap.frame(code: inner, unit: 6, previous: f2, layout: layout)
        frames = [f1, f2, f3]
    }

    func reader(maximumDepth: Int = 2048, codeType: UInt64? = FakeHeap.codeType) -> StackReader<LocalMemory> {
        StackReader(memory: heap.memory, layout: layout, opcodes: nil, codeType: codeType, maximumDepth: maximumDepth)
    }

    /// The raw instruction field for `unit`, spelled out per version (not through the builder).
    func raw(_ code: FakeCode, unit: Int) -> RawFrame {
        let instruction: UInt64
        switch layout.version.minor {
        case 8, 9: instruction = UInt64(bitPattern: Int64(unit < 0 ? -1 : 2 * unit))
        case 10: instruction = UInt64(bitPattern: Int64(unit))
        default: instruction = code.bytecodeAddress &+ UInt64(bitPattern: Int64(2 * unit))
        }
        return RawFrame(code: code.address, instruction: instruction)
    }
}

/// Keys "a", "b", "c", "d" → ints 1, 2, 3, 4, with "b"'s entry deleted.
struct FakeDictItems {
    var keys: [UInt64] = []
    var values: [UInt64] = []
    var entries: [(key: UInt64, value: UInt64)?] {
        [(keys[0], values[0]), nil, (keys[2], values[2]), (keys[3], values[3])]
    }
    var live: [[UInt64]] { [[keys[0], values[0]], [keys[2], values[2]], [keys[3], values[3]]] }

    init(_ heap: inout FakeHeap, _ o: ObjectOffsets) {
        for (index, name) in ["a", "b", "c", "d"].enumerated() {
            keys.append(heap.str(name, objects: o))
            values.append(heap.int(digits: [UInt32(index + 1)], objects: o))
        }
    }

    /// Items as comparable [key, value] pairs.
    static func pairs(_ items: [(key: UInt64, value: UInt64)]?) -> [[UInt64]]? {
        items?.map { [$0.key, $0.value] }
    }
}

/// What a fake code object holds.
struct CodeSpec {
    var filename: String
    var name: String
    var qualname: String
    var firstLine: Int
    /// Consecutive (code units, line) ranges; their units add up to `units`.
    var lines: [(units: Int, line: Int)]
    var units: Int { lines.reduce(0) { $0 + $1.units } }
}

struct FakeCode {
    var address: UInt64
    var bytecodeAddress: UInt64
}

/// The layouts the tests run on.
enum TestLayouts {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static func generated(_ minor: Int, micro: Int) throws -> PythonLayout {
        guard let layout = LayoutTables.layout(for: PythonVersion(major: 3, minor: minor, micro: micro)) else {
            throw LayoutError("no generated layout for 3.\(minor)")
        }
        return layout
    }

    /// 3.13 from the `_Py_DebugOffsets` a real 3.13.0 carried (fixtures/generators).
    static func python313() throws -> PythonLayout {
        let data = try Data(contentsOf: URL(fileURLWithPath: packageRoot + "/fixtures/generators/debug_offsets_3.13.0.bin"))
        return try DebugOffsets.decode([UInt8](data)).layout()
    }

    /// "3.8", "3.10", ... → the layout.
    static func named(_ name: String) throws -> PythonLayout {
        switch name {
        case "3.8": return try generated(8, micro: 18)
        case "3.9": return try generated(9, micro: 18)
        case "3.10": return try generated(10, micro: 13)
        case "3.11": return try generated(11, micro: 7)
        case "3.12": return try generated(12, micro: 1)
        case "3.13": return try python313()
        default: throw LayoutError("unknown version \(name)")
        }
    }

    struct LayoutError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
