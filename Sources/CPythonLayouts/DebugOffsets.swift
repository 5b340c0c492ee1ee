/// Why raw `_Py_DebugOffsets` bytes were rejected.
public enum DebugOffsetsError: Error, Equatable, Sendable {
    /// The bytes do not start with "xdebugpy": not a 3.13+ runtime, or not `_PyRuntime` at all.
    case badCookie
    /// Fewer bytes than the version's struct needs.
    case truncated
    /// A version whose struct layout this decoder does not know (the struct changes every minor
    /// version): never read with a guessed layout.
    case unsupportedVersion(PythonVersion)
    /// An alpha, beta or release candidate (`PY_VERSION_HEX`): its layout may differ from the final
    /// release's.
    case preRelease(hex: UInt64)
    /// A free-threaded (no-GIL) build: different structures, unsupported.
    case freeThreaded
    /// An offset that cannot be right (too large, or outside the structure it belongs to): torn or
    /// corrupted data.
    case implausibleOffset(field: String, value: UInt64)
}

/// The `_Py_DebugOffsets` table CPython 3.13+ keeps at the start of `_PyRuntime` for out-of-process
/// tools: the version, then offsets of the fields a debugger needs.
///
/// The struct changes every minor version (3.14 and 3.15 insert sections and fields mid-struct), so
/// decoding reads `version` first and then walks the field list of that minor, which is data
/// (`generatedFields`, parsed by the generator from each version's own
/// `pycore_debug_offsets.h` / `pycore_runtime.h`): one table per minor, one decoder. Values are
/// byte offsets within the named structure unless noted; a field a minor lacks is nil.
public struct DebugOffsets: Sendable, Equatable {
    /// "xdebugpy".
    public static let cookie: [UInt8] = Array("xdebugpy".utf8)

    /// Largest offset or size accepted: every real structure is far smaller.
    static let maximumOffset: UInt64 = 1 << 24

    /// The fields after cookie, version and free_threaded, as "section.field", of a minor version
    /// whose layout is known; nil for others.
    public static func fields(forMinor minor: Int) -> [String]? { generatedFields[minor] }

    /// The minor versions (of 3.x) whose struct layout this decoder knows, oldest first.
    public static var knownMinors: [Int] { generatedFields.keys.sorted() }

    /// Bytes of `_Py_DebugOffsets` in a minor version whose layout is known, nil for others.
    public static func minimumSize(forMinor minor: Int) -> Int? {
        fields(forMinor: minor).map { 24 + 8 * $0.count }
    }

    public struct RuntimeState: Sendable, Equatable {
        public var size: Int
        public var finalizing: Int
        public var interpretersHead: Int
    }

    public struct InterpreterState: Sendable, Equatable {
        public var size: Int
        public var id: Int
        public var next: Int
        public var threadsHead: Int
        public var gc: Int
        public var importsModules: Int
        public var sysdict: Int
        public var builtins: Int
        /// `ceval.gil`: pointer to the GIL this interpreter uses.
        public var cevalGIL: Int
        /// `_gil`: the interpreter's own `_gil_runtime_state`.
        public var gilRuntimeState: Int
        /// Free-threaded builds only: `_gil_runtime_state.enabled`; 0 otherwise.
        public var gilRuntimeStateEnabled: Int
        /// `_gil.locked` and `_gil.last_holder`, from the start of the interpreter state.
        public var gilRuntimeStateLocked: Int
        public var gilRuntimeStateHolder: Int
        /// 3.14+: `threads.main`, and the counter bumped whenever code objects are replaced.
        public var threadsMain: Int?
        public var codeObjectGeneration: Int?
    }

    public struct ThreadState: Sendable, Equatable {
        public var size: Int
        public var prev: Int
        public var next: Int
        public var interp: Int
        public var currentFrame: Int
        public var threadID: Int
        public var nativeThreadID: Int
        public var datastackChunk: Int
        public var status: Int
        /// 3.15+: the frame every chain of the thread ends at, and the thread's own GIL flag.
        public var baseFrame: Int?
        public var holdsGIL: Int?
    }

    public struct InterpreterFrame: Sendable, Equatable {
        public var size: Int
        public var previous: Int
        public var executable: Int
        public var instrPtr: Int
        public var localsplus: Int
        public var owner: Int
        /// 3.14+.
        public var stackpointer: Int?
    }

    public struct CodeObject: Sendable, Equatable {
        public var size: Int
        public var filename: Int
        public var name: Int
        public var qualname: Int
        public var linetable: Int
        public var firstlineno: Int
        public var argcount: Int
        public var localsplusnames: Int
        public var localspluskinds: Int
        public var coCodeAdaptive: Int
    }

    public struct PyObjectOffsets: Sendable, Equatable {
        public var size: Int
        public var obType: Int
    }

    public struct TypeObject: Sendable, Equatable {
        public var size: Int
        public var tpName: Int
        public var tpRepr: Int
        public var tpFlags: Int
        /// 3.15+: `tp_basicsize`, `tp_dictoffset` and `PyHeapTypeObject.ht_cached_keys`.
        public var tpBasicsize: Int?
        public var tpDictoffset: Int?
        public var htCachedKeys: Int?
    }

    /// Tuple and list.
    public struct SequenceObject: Sendable, Equatable {
        public var size: Int
        public var obItem: Int
        public var obSize: Int
    }

    public struct DictObject: Sendable, Equatable {
        public var size: Int
        public var maKeys: Int
        public var maValues: Int
    }

    public struct FloatObject: Sendable, Equatable {
        public var size: Int
        public var obFval: Int
    }

    public struct LongObject: Sendable, Equatable {
        public var size: Int
        public var lvTag: Int
        public var obDigit: Int
    }

    public struct BytesObject: Sendable, Equatable {
        public var size: Int
        public var obSize: Int
        public var obSval: Int
    }

    public struct UnicodeObject: Sendable, Equatable {
        public var size: Int
        public var state: Int
        public var length: Int
        public var asciiobjectSize: Int
        /// 3.15+: `sizeof(PyCompactUnicodeObject)`.
        public var compactunicodeobjectSize: Int?
    }

    public struct GCState: Sendable, Equatable {
        public var size: Int
        public var collecting: Int
    }

    /// `PY_VERSION_HEX` of the target.
    public var versionHex: UInt64
    public var version: PythonVersion
    /// Every field the target published, by "section.field" (the typed views below are built from
    /// these).
    public var values: [String: Int]
    public var runtimeState: RuntimeState
    public var interpreterState: InterpreterState
    public var threadState: ThreadState
    public var interpreterFrame: InterpreterFrame
    public var codeObject: CodeObject
    public var pyObject: PyObjectOffsets
    public var typeObject: TypeObject
    public var tupleObject: SequenceObject
    public var listObject: SequenceObject
    public var dictObject: DictObject
    public var floatObject: FloatObject
    public var longObject: LongObject
    public var bytesObject: BytesObject
    public var unicodeObject: UnicodeObject
    public var gc: GCState

    /// Decodes the bytes at the start of `_PyRuntime`.
    ///
    /// Checks, in order: the cookie, that the version is a final release (pre-releases may have
    /// another layout) of a minor version whose struct layout is known, that the build is not
    /// free-threaded, that enough bytes are there, and that no offset is absurdly large.
    public static func decode(_ bytes: [UInt8]) throws(DebugOffsetsError) -> DebugOffsets {
        guard bytes.count >= cookie.count else { throw .truncated }
        guard Array(bytes[0..<cookie.count]) == cookie else { throw .badCookie }
        var reader = FieldReader(bytes: bytes, position: cookie.count)
        let versionHex = try reader.rawNext()
        let version = PythonVersion(hex: versionHex)
        guard version.major == 3, let names = fields(forMinor: version.minor) else { throw .unsupportedVersion(version) }
        guard (versionHex >> 4) & 0xf == 0xf else { throw .preRelease(hex: versionHex) }
        guard try reader.rawNext() == 0 else { throw .freeThreaded }
        guard bytes.count >= 24 + 8 * names.count else { throw .truncated }
        var values = [String: Int]()
        values.reserveCapacity(names.count)
        for name in names { values[name] = try reader.next(name) }
        return try DebugOffsets(versionHex: versionHex, version: version, values: values)
    }

    /// The typed views of `values`. A field every supported minor has is required (its absence
    /// means the generated table is not this decoder's); later additions are optional.
    init(versionHex: UInt64, version: PythonVersion, values: [String: Int]) throws(DebugOffsetsError) {
        func r(_ name: String) throws(DebugOffsetsError) -> Int {
            guard let value = values[name] else { throw .unsupportedVersion(version) }
            return value
        }
        func o(_ name: String) -> Int? { values[name] }
        self.versionHex = versionHex
        self.version = version
        self.values = values
        runtimeState = RuntimeState(
            size: try r("runtime_state.size"), finalizing: try r("runtime_state.finalizing"),
            interpretersHead: try r("runtime_state.interpreters_head"))
        interpreterState = InterpreterState(
            size: try r("interpreter_state.size"), id: try r("interpreter_state.id"),
            next: try r("interpreter_state.next"), threadsHead: try r("interpreter_state.threads_head"),
            gc: try r("interpreter_state.gc"), importsModules: try r("interpreter_state.imports_modules"),
            sysdict: try r("interpreter_state.sysdict"), builtins: try r("interpreter_state.builtins"),
            cevalGIL: try r("interpreter_state.ceval_gil"), gilRuntimeState: try r("interpreter_state.gil_runtime_state"),
            gilRuntimeStateEnabled: try r("interpreter_state.gil_runtime_state_enabled"),
            gilRuntimeStateLocked: try r("interpreter_state.gil_runtime_state_locked"),
            gilRuntimeStateHolder: try r("interpreter_state.gil_runtime_state_holder"),
            threadsMain: o("interpreter_state.threads_main"),
            codeObjectGeneration: o("interpreter_state.code_object_generation"))
        threadState = ThreadState(
            size: try r("thread_state.size"), prev: try r("thread_state.prev"), next: try r("thread_state.next"),
            interp: try r("thread_state.interp"), currentFrame: try r("thread_state.current_frame"),
            threadID: try r("thread_state.thread_id"), nativeThreadID: try r("thread_state.native_thread_id"),
            datastackChunk: try r("thread_state.datastack_chunk"), status: try r("thread_state.status"),
            baseFrame: o("thread_state.base_frame"), holdsGIL: o("thread_state.holds_gil"))
        interpreterFrame = InterpreterFrame(
            size: try r("interpreter_frame.size"), previous: try r("interpreter_frame.previous"),
            executable: try r("interpreter_frame.executable"), instrPtr: try r("interpreter_frame.instr_ptr"),
            localsplus: try r("interpreter_frame.localsplus"), owner: try r("interpreter_frame.owner"),
            stackpointer: o("interpreter_frame.stackpointer"))
        codeObject = CodeObject(
            size: try r("code_object.size"), filename: try r("code_object.filename"), name: try r("code_object.name"),
            qualname: try r("code_object.qualname"), linetable: try r("code_object.linetable"),
            firstlineno: try r("code_object.firstlineno"), argcount: try r("code_object.argcount"),
            localsplusnames: try r("code_object.localsplusnames"), localspluskinds: try r("code_object.localspluskinds"),
            coCodeAdaptive: try r("code_object.co_code_adaptive"))
        pyObject = PyObjectOffsets(size: try r("pyobject.size"), obType: try r("pyobject.ob_type"))
        typeObject = TypeObject(
            size: try r("type_object.size"), tpName: try r("type_object.tp_name"), tpRepr: try r("type_object.tp_repr"),
            tpFlags: try r("type_object.tp_flags"), tpBasicsize: o("type_object.tp_basicsize"),
            tpDictoffset: o("type_object.tp_dictoffset"), htCachedKeys: o("heap_type_object.ht_cached_keys"))
        tupleObject = SequenceObject(
            size: try r("tuple_object.size"), obItem: try r("tuple_object.ob_item"), obSize: try r("tuple_object.ob_size"))
        listObject = SequenceObject(
            size: try r("list_object.size"), obItem: try r("list_object.ob_item"), obSize: try r("list_object.ob_size"))
        dictObject = DictObject(
            size: try r("dict_object.size"), maKeys: try r("dict_object.ma_keys"), maValues: try r("dict_object.ma_values"))
        floatObject = FloatObject(size: try r("float_object.size"), obFval: try r("float_object.ob_fval"))
        longObject = LongObject(
            size: try r("long_object.size"), lvTag: try r("long_object.lv_tag"), obDigit: try r("long_object.ob_digit"))
        bytesObject = BytesObject(
            size: try r("bytes_object.size"), obSize: try r("bytes_object.ob_size"), obSval: try r("bytes_object.ob_sval"))
        unicodeObject = UnicodeObject(
            size: try r("unicode_object.size"), state: try r("unicode_object.state"),
            length: try r("unicode_object.length"), asciiobjectSize: try r("unicode_object.asciiobject_size"),
            compactunicodeobjectSize: o("unicode_object.compactunicodeobject_size"))
        gc = GCState(size: try r("gc.size"), collecting: try r("gc.collecting"))
    }

    /// The full layout of the target: these offsets, plus what they lack from the generated table of
    /// the same minor version (object internals, the owner values of the interpreter's own frames,
    /// the tag bits of `f_executable`, `interpreters.main`) and the version's semantic choices
    /// (instruction pointer, PEP 657 location table, inline bytecode).
    ///
    /// Throws `.implausibleOffset` when a field the reader uses lies outside its structure, and
    /// `.unsupportedVersion` when no generated table covers the minor version (or the table was
    /// generated from another `_Py_DebugOffsets` layout).
    public func layout() throws(DebugOffsetsError) -> PythonLayout {
        guard let entry = LayoutTables.entry(for: version), entry.version.minor == version.minor,
              entry.debugOffsetsSize != nil, entry.debugOffsetsSize == Self.minimumSize(forMinor: version.minor) else {
            throw .unsupportedVersion(version)
        }
        let rs = runtimeState, s = interpreterState, t = threadState, f = interpreterFrame, c = codeObject
        try Self.require(rs.interpretersHead, pointerIn: rs.size, "runtime_state.interpreters_head")
        for (field, value) in [("id", s.id), ("next", s.next), ("threads_head", s.threadsHead),
                               ("imports_modules", s.importsModules), ("ceval_gil", s.cevalGIL)] {
            try Self.require(value, pointerIn: s.size, "interpreter_state." + field)
        }
        // The GIL fields are given from the interpreter state; readers follow `ceval.gil` and need
        // them relative to `_gil_runtime_state`.
        try Self.require(s.gilRuntimeState, byteIn: s.size, "interpreter_state.gil_runtime_state")
        let gilStateSize = s.size - s.gilRuntimeState
        let gilLocked = s.gilRuntimeStateLocked - s.gilRuntimeState
        let gilHolder = s.gilRuntimeStateHolder - s.gilRuntimeState
        try Self.require(gilLocked, pointerIn: gilStateSize, "interpreter_state.gil_runtime_state_locked")
        try Self.require(gilHolder, pointerIn: gilStateSize, "interpreter_state.gil_runtime_state_holder")
        for (field, value) in [("next", t.next), ("interp", t.interp), ("current_frame", t.currentFrame),
                               ("thread_id", t.threadID), ("native_thread_id", t.nativeThreadID)] {
            try Self.require(value, pointerIn: t.size, "thread_state." + field)
        }
        // Optional fields: 0 means "absent in this build".
        let baseFrame = t.baseFrame.flatMap { $0 == 0 ? nil : $0 }
        let holdsGIL = t.holdsGIL.flatMap { $0 == 0 ? nil : $0 }
        if let baseFrame { try Self.require(baseFrame, pointerIn: t.size, "thread_state.base_frame") }
        let threadsMain = s.threadsMain.flatMap { $0 == 0 ? nil : $0 }
        if let threadsMain { try Self.require(threadsMain, pointerIn: s.size, "interpreter_state.threads_main") }
        if let holdsGIL { try Self.require(holdsGIL, intIn: t.size, "thread_state.holds_gil") }
        for (field, value) in [("previous", f.previous), ("executable", f.executable), ("instr_ptr", f.instrPtr)] {
            try Self.require(value, pointerIn: f.size, "interpreter_frame." + field)
        }
        try Self.require(f.owner, byteIn: f.size, "interpreter_frame.owner")
        for (field, value) in [("filename", c.filename), ("name", c.name), ("qualname", c.qualname),
                               ("linetable", c.linetable), ("firstlineno", c.firstlineno)] {
            try Self.require(value, pointerIn: c.size, "code_object." + field)
        }
        try Self.require(c.coCodeAdaptive, byteIn: c.size, "code_object.co_code_adaptive")
        // Readers copy whole frames, code headers and thread states per sample: sizes far beyond any
        // real struct would turn each read into megabytes.
        try Self.require(f.size, sizeAtMost: 1024, "interpreter_frame.size")
        try Self.require(c.size, sizeAtMost: 4096, "code_object.size")
        try Self.require(t.size, sizeAtMost: 1 << 16, "thread_state.size")
        let objects = try objects(overriding: entry.objects)

        let main = entry.interpretersMainFromHead.map { rs.interpretersHead + $0 }
        return PythonLayout(
            version: version,
            runtime: RuntimeOffsets(
                interpretersHead: rs.interpretersHead,
                interpretersMain: main.flatMap { $0 + 8 <= rs.size ? $0 : nil },
                gilstateTstateCurrent: nil,
                size: rs.size,
                finalizing: rs.finalizing > 0 && rs.finalizing + 8 <= rs.size ? rs.finalizing : nil),
            interpreter: InterpreterOffsets(
                next: s.next, id: s.id, threadsHead: s.threadsHead, threadsMain: threadsMain, modules: s.importsModules,
                cevalGIL: s.cevalGIL, gilLastHolder: gilHolder, gilLocked: gilLocked, size: s.size),
            thread: ThreadOffsets(
                next: t.next, interp: t.interp, frame: t.currentFrame, cframeCurrentFrame: nil,
                threadID: t.threadID, nativeThreadID: t.nativeThreadID, baseFrame: baseFrame, holdsGIL: holdsGIL,
                size: t.size,
                datastackChunk: t.datastackChunk > 0 && t.datastackChunk + 8 <= t.size ? t.datastackChunk : nil,
                stackChunk: entry.stackChunk),
            frame: FrameOffsets(
                previous: f.previous, code: f.executable, instruction: f.instrPtr,
                instructionField: .instructionPointer, isEntry: nil, owner: f.owner,
                ownerCStack: entry.frameOwnerCStack, ownerInterpreter: entry.frameOwnerInterpreter,
                codeTagBits: entry.frameCodeTagBits, size: f.size),
            code: CodeOffsets(
                filename: c.filename, name: c.name, qualname: c.qualname, firstLineNumber: c.firstlineno,
                lineTable: c.linetable, lineTableFormat: .locationTable, codeBytes: .inline(offset: c.coCodeAdaptive),
                size: c.size),
            objects: objects)
    }

    /// The generated object internals, with every field the target itself reports taken from it
    /// (each checked against the size of its structure).
    private func objects(overriding generated: ObjectOffsets) throws(DebugOffsetsError) -> ObjectOffsets {
        // Every object struct is small; a huge size would make the bounds below meaningless.
        for (field, size) in [("pyobject.size", pyObject.size), ("tuple_object.size", tupleObject.size),
                              ("bytes_object.size", bytesObject.size), ("unicode_object.size", unicodeObject.size),
                              ("long_object.size", longObject.size), ("dict_object.size", dictObject.size),
                              ("type_object.size", typeObject.size)] {
            try Self.require(size, sizeAtMost: 4096, field)
        }
        try Self.require(pyObject.obType, pointerIn: pyObject.size, "pyobject.ob_type")
        try Self.require(tupleObject.obSize, pointerIn: tupleObject.size, "tuple_object.ob_size")
        try Self.require(bytesObject.obSize, pointerIn: bytesObject.size, "bytes_object.ob_size")
        try Self.require(bytesObject.obSval, byteIn: bytesObject.size, "bytes_object.ob_sval")
        try Self.require(unicodeObject.length, pointerIn: unicodeObject.size, "unicode_object.length")
        try Self.require(unicodeObject.state, intIn: unicodeObject.size, "unicode_object.state")
        try Self.require(unicodeObject.asciiobjectSize, sizeAtMost: unicodeObject.size, "unicode_object.asciiobject_size")
        try Self.require(longObject.lvTag, pointerIn: longObject.size, "long_object.lv_tag")
        try Self.require(longObject.obDigit, byteIn: longObject.size, "long_object.ob_digit")
        try Self.require(dictObject.maKeys, pointerIn: dictObject.size, "dict_object.ma_keys")
        try Self.require(dictObject.maValues, pointerIn: dictObject.size, "dict_object.ma_values")
        try Self.require(typeObject.tpFlags, pointerIn: typeObject.size, "type_object.tp_flags")
        var objects = generated
        objects.objectType = pyObject.obType
        objects.varSize = tupleObject.obSize
        objects.bytes.size = bytesObject.obSize
        objects.bytes.data = bytesObject.obSval
        objects.unicode.length = unicodeObject.length
        objects.unicode.state = unicodeObject.state
        objects.unicode.asciiSize = unicodeObject.asciiobjectSize
        objects.long.sizeOrTag = longObject.lvTag
        objects.long.digits = longObject.obDigit
        objects.dict.keys = dictObject.maKeys
        objects.dict.values = dictObject.maValues
        objects.type.flags = typeObject.tpFlags
        if let compact = unicodeObject.compactunicodeobjectSize, compact != 0 {
            try Self.require(compact, sizeAtMost: 1 << 12, "unicode_object.compactunicodeobject_size")
            objects.unicode.compactSize = compact
        }
        if let basicSize = typeObject.tpBasicsize, basicSize != 0 {
            try Self.require(basicSize, pointerIn: typeObject.size, "type_object.tp_basicsize")
            objects.type.basicSize = basicSize
        }
        if let dictOffset = typeObject.tpDictoffset, dictOffset != 0 {
            try Self.require(dictOffset, pointerIn: typeObject.size, "type_object.tp_dictoffset")
            objects.type.dictOffset = dictOffset
        }
        if let cachedKeys = typeObject.htCachedKeys, cachedKeys != 0 {
            try Self.require(cachedKeys, pointerIn: 1 << 12, "heap_type_object.ht_cached_keys")
            objects.type.heapCachedKeys = cachedKeys
        }
        return objects
    }

    /// A 4-byte field at `offset` must lie inside a structure of `size` bytes.
    private static func require(_ offset: Int, intIn size: Int, _ field: String) throws(DebugOffsetsError) {
        guard offset >= 0, offset + 4 <= size else { throw .implausibleOffset(field: field, value: UInt64(clamping: offset)) }
    }

    /// A size (of a header a reader skips, or of a structure a reader copies) must be positive and at
    /// most `limit`.
    private static func require(_ value: Int, sizeAtMost limit: Int, _ field: String) throws(DebugOffsetsError) {
        guard value > 0, value <= limit else { throw .implausibleOffset(field: field, value: UInt64(clamping: value)) }
    }

    /// A pointer-sized field at `offset` must lie inside a structure of `size` bytes.
    private static func require(_ offset: Int, pointerIn size: Int, _ field: String) throws(DebugOffsetsError) {
        guard offset >= 0, offset + 8 <= size else { throw .implausibleOffset(field: field, value: UInt64(clamping: offset)) }
    }

    /// A byte-sized field (or the start of an inline array) must start inside the structure.
    private static func require(_ offset: Int, byteIn size: Int, _ field: String) throws(DebugOffsetsError) {
        guard offset >= 0, offset < size else { throw .implausibleOffset(field: field, value: UInt64(clamping: offset)) }
    }
}

/// Reads consecutive little-endian uint64 fields.
private struct FieldReader {
    let bytes: [UInt8]
    var position: Int

    mutating func rawNext() throws(DebugOffsetsError) -> UInt64 {
        guard position >= 0, position + 8 <= bytes.count else { throw .truncated }
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[position + index]) << (8 * UInt64(index)) }
        position += 8
        return value
    }

    /// An offset or size: at most `DebugOffsets.maximumOffset`, so it fits an Int.
    mutating func next(_ field: String) throws(DebugOffsetsError) -> Int {
        let value = try rawNext()
        guard value <= DebugOffsets.maximumOffset else { throw .implausibleOffset(field: field, value: value) }
        return Int(value)
    }
}
