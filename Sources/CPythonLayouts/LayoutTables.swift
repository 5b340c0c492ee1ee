/// The per-version layout data generated from installed CPython headers (`Generated/Layouts.swift`,
/// written by `fixtures/generators/generate_layouts.py`), and how a version finds its entry.
public enum LayoutTables {
    /// What the generator learnt from one installed interpreter.
    public struct GeneratedLayout: Sendable, Equatable {
        /// The exact version of the interpreter the values came from.
        public var version: PythonVersion
        /// The install prefix it came from (e.g. `/root/.pyenv/versions/3.11.7`, `/usr`).
        public var prefix: String
        /// The whole layout (3.8–3.12). Nil for 3.13+, whose interpreter part a reader takes from
        /// the target's own `_Py_DebugOffsets` (see `DebugOffsets.layout()`).
        public var layout: PythonLayout?
        /// Object internals (str, bytes, int, dict, type): `_Py_DebugOffsets` lacks most of these.
        public var objects: ObjectOffsets
        /// pymalloc constants.
        public var allocator: AllocatorConstants
        /// Where the GIL's mutex and condition variable are.
        public var gil: GILOffsets
        /// `FRAME_OWNED_BY_CSTACK` (3.12–3.14): the owner value of the interpreter's C-stack shim frames.
        public var frameOwnerCStack: Int?
        /// `FRAME_OWNED_BY_INTERPRETER` (3.14+): the owner value of entry, sentinel and base frames.
        public var frameOwnerInterpreter: Int?
        /// `Py_TAG_BITS` (3.14+): tag bits of `f_executable`; 0 before.
        public var frameCodeTagBits: Int
        /// `_PyStackChunk` (3.11+): `_Py_DebugOffsets` has the thread's chunk pointer, not the header.
        public var stackChunk: StackChunkOffsets?
        /// `sizeof(_Py_DebugOffsets)` (3.13+) in this interpreter's headers.
        public var debugOffsetsSize: Int?
        /// 3.13+: `offsetof(_PyRuntimeState, interpreters.main) - offsetof(…, interpreters.head)`.
        /// `_Py_DebugOffsets` has `interpreters.head` but not `interpreters.main`; both live in the
        /// same small nested struct, so the distance holds even if fields before it move.
        public var interpretersMainFromHead: Int?

        public init(version: PythonVersion, prefix: String, layout: PythonLayout?, objects: ObjectOffsets,
                    allocator: AllocatorConstants, gil: GILOffsets, frameOwnerCStack: Int?,
                    frameOwnerInterpreter: Int? = nil, frameCodeTagBits: Int = 0, stackChunk: StackChunkOffsets? = nil,
                    debugOffsetsSize: Int?, interpretersMainFromHead: Int?) {
            self.version = version
            self.prefix = prefix
            self.layout = layout
            self.objects = objects
            self.allocator = allocator
            self.gil = gil
            self.frameOwnerCStack = frameOwnerCStack
            self.frameOwnerInterpreter = frameOwnerInterpreter
            self.frameCodeTagBits = frameCodeTagBits
            self.stackChunk = stackChunk
            self.debugOffsetsSize = debugOffsetsSize
            self.interpretersMainFromHead = interpretersMainFromHead
        }
    }

    /// Every generated entry, oldest version first.
    public static var all: [GeneratedLayout] { generated }

    /// The entry for `version`: the exact micro version if one was generated, else the highest
    /// micro version of the same minor version (a patch release rarely moves a field; the
    /// generator's in-process checks are what to rerun when one does). Nil for an unknown minor.
    public static func entry(for version: PythonVersion) -> GeneratedLayout? {
        let sameMinor = generated.filter { $0.version.major == version.major && $0.version.minor == version.minor }
        if let exact = sameMinor.first(where: { $0.version.micro == version.micro }) { return exact }
        return sameMinor.max { $0.version.micro < $1.version.micro }
    }

    /// The full layout of a 3.8–3.12 interpreter. Nil for unsupported versions and for 3.13+ (whose
    /// layout comes from `DebugOffsets`).
    public static func layout(for version: PythonVersion) -> PythonLayout? {
        guard let layout = entry(for: version)?.layout else { return nil }
        // The entry may be another micro version of the same minor: report the one asked for.
        var result = layout
        result.version = version
        return result
    }

    /// Object internals of `version`, nil for unsupported versions.
    public static func objects(for version: PythonVersion) -> ObjectOffsets? {
        entry(for: version)?.objects
    }

    /// pymalloc constants of `version`, nil for unsupported versions.
    public static func allocator(for version: PythonVersion) -> AllocatorConstants? {
        entry(for: version)?.allocator
    }

    /// The GIL's layout for `version`, nil for unsupported versions.
    public static func gil(for version: PythonVersion) -> GILOffsets? {
        entry(for: version)?.gil
    }

    /// `FRAME_OWNED_BY_CSTACK` of `version`; nil before 3.12 (no such owner) and for unsupported versions.
    public static func frameOwnerCStack(for version: PythonVersion) -> Int? {
        entry(for: version)?.frameOwnerCStack
    }

    /// The minor versions with a generated entry (micro 0), oldest first.
    public static var supportedMinorVersions: [PythonVersion] {
        var result = [PythonVersion]()
        for entry in generated {
            let minor = PythonVersion(major: entry.version.major, minor: entry.version.minor)
            if !result.contains(minor) { result.append(minor) }
        }
        return result.sorted()
    }
}

/// `struct _gil_runtime_state`: enough to tell a thread blocked on the GIL. A thread waiting for the
/// GIL sleeps in a futex on `cond` (timed waits of the switch interval) or on `mutex`.
public struct GILOffsets: Sendable, Equatable {
    /// Before 3.12: offset of `ceval.gil` (embedded) in `_PyRuntimeState`; nil from 3.12, where
    /// `interp->ceval.gil` points at it.
    public var runtimeOffset: Int?
    /// `sizeof(struct _gil_runtime_state)`.
    public var size: Int
    public var locked: Int
    public var mutex: Int
    public var cond: Int

    /// `switch_number`, the count of GIL hand-offs: in every version the struct begins `interval,
    /// last_holder, locked, switch_number, cond`, so it is the 8-byte field between `locked` (an
    /// int, padded) and `cond`; nil if a layout ever says otherwise.
    public var switchNumber: Int? { cond == locked + 16 ? locked + 8 : nil }
    /// `last_holder`, the thread state that took the GIL last: the pointer before `locked`.
    public var lastHolder: Int? { cond == locked + 16 && locked >= 8 ? locked - 8 : nil }

    public init(runtimeOffset: Int?, size: Int, locked: Int, mutex: Int, cond: Int) {
        self.runtimeOffset = runtimeOffset
        self.size = size
        self.locked = locked
        self.mutex = mutex
        self.cond = cond
    }
}
