/// Why raw `_Py_DebugOffsets` bytes were rejected.
public enum DebugOffsetsError: Error, Equatable, Sendable {
    /// The bytes do not start with "xdebugpy": not a 3.13+ runtime, or not `_PyRuntime` at all.
    case badCookie
    /// Fewer bytes than the version's struct needs.
    case truncated
    /// A version whose struct layout this decoder does not know (the struct changes every minor
    /// version), or a pre-release.
    case unsupportedVersion(PythonVersion)
    /// A free-threaded (no-GIL) build: different structures, unsupported.
    case freeThreaded
    /// An offset that cannot be right (too large, or outside the structure it belongs to): torn or
    /// corrupted data.
    case implausibleOffset(field: String, value: UInt64)
}

/// The `_Py_DebugOffsets` table CPython 3.13+ keeps at the start of `_PyRuntime` for out-of-process
/// tools: the version, then offsets of the fields a debugger needs.
///
/// The struct is only stable within a minor version (3.14 adds fields), so decoding goes by the
/// minor version read first. Layout for 3.13: `Include/internal/pycore_runtime.h`, initialised by
/// `_PyRuntimeState_INIT` in `pycore_runtime_init.h`. Values are byte offsets within the named
/// structure unless noted.
public struct DebugOffsets: Sendable, Equatable {
    /// "xdebugpy".
    public static let cookie: [UInt8] = Array("xdebugpy".utf8)

    /// Largest offset or size accepted: every real structure is far smaller.
    static let maximumOffset: UInt64 = 1 << 24

    /// Bytes of `_Py_DebugOffsets` in a minor version whose layout is known, nil for others.
    public static func minimumSize(forMinor minor: Int) -> Int? {
        switch minor {
        case 13: return 24 + 8 * fieldCount313
        default: return nil
        }
    }

    /// uint64 fields after cookie, version and free_threaded in 3.13.
    static let fieldCount313 = 3 + 13 + 9 + 6 + 10 + 2 + 4 + 3 + 3 + 3 + 2 + 3 + 3 + 4 + 2

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
    }

    public struct InterpreterFrame: Sendable, Equatable {
        public var size: Int
        public var previous: Int
        public var executable: Int
        public var instrPtr: Int
        public var localsplus: Int
        public var owner: Int
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
    }

    public struct GCState: Sendable, Equatable {
        public var size: Int
        public var collecting: Int
    }

    /// `PY_VERSION_HEX` of the target.
    public var versionHex: UInt64
    public var version: PythonVersion
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
    /// Checks, in order: the cookie, that the version is a final release of a minor version whose
    /// struct layout is known (3.13), that the build is not free-threaded, that enough bytes are
    /// there, and that no offset is absurdly large.
    public static func decode(_ bytes: [UInt8]) throws(DebugOffsetsError) -> DebugOffsets {
        guard bytes.count >= cookie.count else { throw .truncated }
        guard Array(bytes[0..<cookie.count]) == cookie else { throw .badCookie }
        var reader = FieldReader(bytes: bytes, position: cookie.count)
        let versionHex = try reader.rawNext()
        let version = PythonVersion(hex: versionHex)
        // Pre-releases may have another layout: only final releases (release level 0xF).
        guard version.major == 3, let size = minimumSize(forMinor: version.minor), (versionHex >> 4) & 0xf == 0xf else {
            throw .unsupportedVersion(version)
        }
        guard try reader.rawNext() == 0 else { throw .freeThreaded }
        guard bytes.count >= size else { throw .truncated }
        return try decode313(&reader, versionHex: versionHex, version: version)
    }

    private static func decode313(_ r: inout FieldReader, versionHex: UInt64, version: PythonVersion)
        throws(DebugOffsetsError) -> DebugOffsets
    {
        let runtime = RuntimeState(
            size: try r.next("runtime_state.size"),
            finalizing: try r.next("runtime_state.finalizing"),
            interpretersHead: try r.next("runtime_state.interpreters_head"))
        let interpreter = InterpreterState(
            size: try r.next("interpreter_state.size"),
            id: try r.next("interpreter_state.id"),
            next: try r.next("interpreter_state.next"),
            threadsHead: try r.next("interpreter_state.threads_head"),
            gc: try r.next("interpreter_state.gc"),
            importsModules: try r.next("interpreter_state.imports_modules"),
            sysdict: try r.next("interpreter_state.sysdict"),
            builtins: try r.next("interpreter_state.builtins"),
            cevalGIL: try r.next("interpreter_state.ceval_gil"),
            gilRuntimeState: try r.next("interpreter_state.gil_runtime_state"),
            gilRuntimeStateEnabled: try r.next("interpreter_state.gil_runtime_state_enabled"),
            gilRuntimeStateLocked: try r.next("interpreter_state.gil_runtime_state_locked"),
            gilRuntimeStateHolder: try r.next("interpreter_state.gil_runtime_state_holder"))
        let thread = ThreadState(
            size: try r.next("thread_state.size"),
            prev: try r.next("thread_state.prev"),
            next: try r.next("thread_state.next"),
            interp: try r.next("thread_state.interp"),
            currentFrame: try r.next("thread_state.current_frame"),
            threadID: try r.next("thread_state.thread_id"),
            nativeThreadID: try r.next("thread_state.native_thread_id"),
            datastackChunk: try r.next("thread_state.datastack_chunk"),
            status: try r.next("thread_state.status"))
        let frame = InterpreterFrame(
            size: try r.next("interpreter_frame.size"),
            previous: try r.next("interpreter_frame.previous"),
            executable: try r.next("interpreter_frame.executable"),
            instrPtr: try r.next("interpreter_frame.instr_ptr"),
            localsplus: try r.next("interpreter_frame.localsplus"),
            owner: try r.next("interpreter_frame.owner"))
        let code = CodeObject(
            size: try r.next("code_object.size"),
            filename: try r.next("code_object.filename"),
            name: try r.next("code_object.name"),
            qualname: try r.next("code_object.qualname"),
            linetable: try r.next("code_object.linetable"),
            firstlineno: try r.next("code_object.firstlineno"),
            argcount: try r.next("code_object.argcount"),
            localsplusnames: try r.next("code_object.localsplusnames"),
            localspluskinds: try r.next("code_object.localspluskinds"),
            coCodeAdaptive: try r.next("code_object.co_code_adaptive"))
        let object = PyObjectOffsets(size: try r.next("pyobject.size"), obType: try r.next("pyobject.ob_type"))
        let type = TypeObject(
            size: try r.next("type_object.size"),
            tpName: try r.next("type_object.tp_name"),
            tpRepr: try r.next("type_object.tp_repr"),
            tpFlags: try r.next("type_object.tp_flags"))
        let tuple = SequenceObject(
            size: try r.next("tuple_object.size"),
            obItem: try r.next("tuple_object.ob_item"),
            obSize: try r.next("tuple_object.ob_size"))
        let list = SequenceObject(
            size: try r.next("list_object.size"),
            obItem: try r.next("list_object.ob_item"),
            obSize: try r.next("list_object.ob_size"))
        let dict = DictObject(
            size: try r.next("dict_object.size"),
            maKeys: try r.next("dict_object.ma_keys"),
            maValues: try r.next("dict_object.ma_values"))
        let float = FloatObject(size: try r.next("float_object.size"), obFval: try r.next("float_object.ob_fval"))
        let long = LongObject(
            size: try r.next("long_object.size"),
            lvTag: try r.next("long_object.lv_tag"),
            obDigit: try r.next("long_object.ob_digit"))
        let bytes = BytesObject(
            size: try r.next("bytes_object.size"),
            obSize: try r.next("bytes_object.ob_size"),
            obSval: try r.next("bytes_object.ob_sval"))
        let unicode = UnicodeObject(
            size: try r.next("unicode_object.size"),
            state: try r.next("unicode_object.state"),
            length: try r.next("unicode_object.length"),
            asciiobjectSize: try r.next("unicode_object.asciiobject_size"))
        let gc = GCState(size: try r.next("gc.size"), collecting: try r.next("gc.collecting"))
        return DebugOffsets(
            versionHex: versionHex, version: version, runtimeState: runtime, interpreterState: interpreter,
            threadState: thread, interpreterFrame: frame, codeObject: code, pyObject: object, typeObject: type,
            tupleObject: tuple, listObject: list, dictObject: dict, floatObject: float, longObject: long,
            bytesObject: bytes, unicodeObject: unicode, gc: gc)
    }

    /// The full layout of the target: these offsets, plus what they lack from the generated table of
    /// the same minor version (object internals, `FRAME_OWNED_BY_CSTACK`, `interpreters.main`) and
    /// the version's semantic choices (instruction pointer, PEP 657 location table, inline bytecode).
    ///
    /// Throws `.implausibleOffset` when a field the reader uses lies outside its structure, and
    /// `.unsupportedVersion` when no generated table covers the minor version.
    public func layout() throws(DebugOffsetsError) -> PythonLayout {
        guard let entry = LayoutTables.entry(for: version), version.minor == 13 else {
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
        let gilStateSize = s.size - s.gilRuntimeState
        let gilLocked = s.gilRuntimeStateLocked - s.gilRuntimeState
        let gilHolder = s.gilRuntimeStateHolder - s.gilRuntimeState
        try Self.require(gilLocked, pointerIn: gilStateSize, "interpreter_state.gil_runtime_state_locked")
        try Self.require(gilHolder, pointerIn: gilStateSize, "interpreter_state.gil_runtime_state_holder")
        for (field, value) in [("next", t.next), ("interp", t.interp), ("current_frame", t.currentFrame),
                               ("thread_id", t.threadID), ("native_thread_id", t.nativeThreadID)] {
            try Self.require(value, pointerIn: t.size, "thread_state." + field)
        }
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
        try Self.require(size: f.size, atMost: 1024, "interpreter_frame.size")
        try Self.require(size: c.size, atMost: 4096, "code_object.size")
        try Self.require(size: t.size, atMost: 1 << 16, "thread_state.size")
        try validateObjectOffsets()

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
                next: s.next, id: s.id, threadsHead: s.threadsHead, modules: s.importsModules,
                cevalGIL: s.cevalGIL, gilLastHolder: gilHolder, gilLocked: gilLocked, size: s.size),
            thread: ThreadOffsets(
                next: t.next, interp: t.interp, frame: t.currentFrame, cframeCurrentFrame: nil,
                threadID: t.threadID, nativeThreadID: t.nativeThreadID, size: t.size,
                datastackChunk: t.datastackChunk > 0 && t.datastackChunk + 8 <= t.size ? t.datastackChunk : nil,
                stackChunk: entry.stackChunk),
            frame: FrameOffsets(
                previous: f.previous, code: f.executable, instruction: f.instrPtr,
                instructionField: .instructionPointer, isEntry: nil, owner: f.owner,
                ownerCStack: entry.frameOwnerCStack, size: f.size),
            code: CodeOffsets(
                filename: c.filename, name: c.name, qualname: c.qualname, firstLineNumber: c.firstlineno,
                lineTable: c.linetable, lineTableFormat: .locationTable, codeBytes: .inline(offset: c.coCodeAdaptive),
                size: c.size),
            objects: objects(overriding: entry.objects))
    }

    /// The generated object internals, with every field the target itself reports taken from it.
    private func objects(overriding generated: ObjectOffsets) -> ObjectOffsets {
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
        return objects
    }

    /// The object fields taken from the target (see `objects(overriding:)`) must lie inside their
    /// (small) object structs.
    private func validateObjectOffsets() throws(DebugOffsetsError) {
        let objectLimit = 4096
        let fields: [(String, Int, Int)] = [
            ("pyobject.ob_type", pyObject.obType, pyObject.size),
            ("tuple_object.ob_size", tupleObject.obSize, tupleObject.size),
            ("bytes_object.ob_size", bytesObject.obSize, bytesObject.size),
            ("unicode_object.length", unicodeObject.length, unicodeObject.size),
            ("unicode_object.state", unicodeObject.state, unicodeObject.size),
            ("long_object.lv_tag", longObject.lvTag, longObject.size),
            ("dict_object.ma_keys", dictObject.maKeys, dictObject.size),
            ("dict_object.ma_values", dictObject.maValues, dictObject.size),
            ("type_object.tp_flags", typeObject.tpFlags, typeObject.size),
        ]
        for (field, offset, size) in fields {
            try Self.require(size: size, atMost: objectLimit, field)
            try Self.require(offset, pointerIn: size, field)
        }
        // Inline data starts at the end of the fixed part: at most the struct size.
        for (field, offset, size) in [("bytes_object.ob_sval", bytesObject.obSval, bytesObject.size),
                                      ("long_object.ob_digit", longObject.obDigit, longObject.size),
                                      ("unicode_object.asciiobject_size", unicodeObject.asciiobjectSize, objectLimit)] {
            guard offset > 0, offset <= size else { throw .implausibleOffset(field: field, value: UInt64(clamping: offset)) }
        }
    }

    private static func require(size: Int, atMost limit: Int, _ field: String) throws(DebugOffsetsError) {
        guard size > 0, size <= limit else { throw .implausibleOffset(field: field, value: UInt64(clamping: size)) }
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
