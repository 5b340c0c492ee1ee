/// Where the fields an out-of-process reader needs live in one CPython version's structures.
///
/// Offsets are in bytes from the start of the named C structure, x86_64 Linux, default (GIL) build.
/// For 3.8–3.12 every value comes from `Generated/Layouts.swift`, written by
/// `fixtures/generators/generate_layouts.py`, which compiles `offsetof` against each installed
/// interpreter's own internal headers. For 3.13+ the interpreter part is decoded from the target's
/// `_Py_DebugOffsets` (see `DebugOffsets`), and only the object-internals part comes from a table.
public struct PythonLayout: Sendable, Equatable {
    public var version: PythonVersion
    public var runtime: RuntimeOffsets
    public var interpreter: InterpreterOffsets
    public var thread: ThreadOffsets
    public var frame: FrameOffsets
    public var code: CodeOffsets
    public var objects: ObjectOffsets

    public init(version: PythonVersion, runtime: RuntimeOffsets, interpreter: InterpreterOffsets,
                thread: ThreadOffsets, frame: FrameOffsets, code: CodeOffsets, objects: ObjectOffsets) {
        self.version = version
        self.runtime = runtime
        self.interpreter = interpreter
        self.thread = thread
        self.frame = frame
        self.code = code
        self.objects = objects
    }
}

/// `_PyRuntimeState`.
public struct RuntimeOffsets: Sendable, Equatable {
    /// `interpreters.head`: the most recently created interpreter.
    public var interpretersHead: Int
    /// `interpreters.main` (nil where the version has no such field or it is not known).
    public var interpretersMain: Int?
    /// `gilstate.tstate_current` (3.8–3.11): the thread state holding the GIL, or NULL.
    public var gilstateTstateCurrent: Int?
    /// `sizeof(_PyRuntimeState)`: how much a reader may copy in one go.
    public var size: Int
    /// `_finalizing` (3.9+; `finalizing` in 3.8): the thread state running `Py_Finalize`, NULL until
    /// the interpreter begins to shut down.
    public var finalizing: Int?

    public init(interpretersHead: Int, interpretersMain: Int?, gilstateTstateCurrent: Int?, size: Int,
                finalizing: Int? = nil) {
        self.interpretersHead = interpretersHead
        self.interpretersMain = interpretersMain
        self.gilstateTstateCurrent = gilstateTstateCurrent
        self.size = size
        self.finalizing = finalizing
    }
}

/// `PyInterpreterState` and, for 3.12+, the GIL it owns.
public struct InterpreterOffsets: Sendable, Equatable {
    public var next: Int
    public var id: Int
    /// `tstate_head` (3.8–3.10) / `threads.head` (3.11+).
    public var threadsHead: Int
    /// `modules` (3.8–3.11) / `imports.modules` (3.12+): `sys.modules`.
    public var modules: Int
    /// `ceval.gil` (3.12+): pointer to the `_gil_runtime_state` this interpreter uses.
    public var cevalGIL: Int?
    /// `_gil_runtime_state.last_holder` (3.12+): the last thread state to take the GIL.
    public var gilLastHolder: Int?
    /// `_gil_runtime_state.locked` (3.12+): nonzero while some thread holds the GIL.
    public var gilLocked: Int?
    public var size: Int

    public init(next: Int, id: Int, threadsHead: Int, modules: Int, cevalGIL: Int?, gilLastHolder: Int?,
                gilLocked: Int?, size: Int) {
        self.next = next
        self.id = id
        self.threadsHead = threadsHead
        self.modules = modules
        self.cevalGIL = cevalGIL
        self.gilLastHolder = gilLastHolder
        self.gilLocked = gilLocked
        self.size = size
    }
}

/// `PyThreadState`.
public struct ThreadOffsets: Sendable, Equatable {
    public var next: Int
    public var interp: Int
    /// `frame` (3.8–3.10, a `PyFrameObject *`), `cframe` (3.11–3.12, a `_PyCFrame *`), or
    /// `current_frame` (3.13+, a `_PyInterpreterFrame *`).
    public var frame: Int
    /// `_PyCFrame.current_frame` (3.11–3.12); nil when `frame` points at the frame itself.
    public var cframeCurrentFrame: Int?
    /// `thread_id`: the `pthread_t` (also the key of `threading._active`).
    public var threadID: Int
    /// `native_thread_id` (3.11+): the kernel thread id.
    public var nativeThreadID: Int?
    public var size: Int
    /// `datastack_chunk` (3.11+): the chunk of the thread's data stack that holds its newest frames.
    public var datastackChunk: Int?
    /// The chunk header (3.11+).
    public var stackChunk: StackChunkOffsets?

    public init(next: Int, interp: Int, frame: Int, cframeCurrentFrame: Int?, threadID: Int, nativeThreadID: Int?,
                size: Int, datastackChunk: Int? = nil, stackChunk: StackChunkOffsets? = nil) {
        self.next = next
        self.interp = interp
        self.frame = frame
        self.cframeCurrentFrame = cframeCurrentFrame
        self.threadID = threadID
        self.nativeThreadID = nativeThreadID
        self.size = size
        self.datastackChunk = datastackChunk
        self.stackChunk = stackChunk
    }
}

/// `_PyStackChunk` (3.11+): one chunk of a thread's data stack. Frames of ordinary calls are pushed
/// one after another into the newest chunk, callers below callees, so a reader that copies a chunk
/// in one read sees all its frames as they were at one moment.
public struct StackChunkOffsets: Sendable, Equatable {
    /// `previous`: the older chunk.
    public var previous: Int
    /// `size`: bytes in the chunk, header included.
    public var size: Int
    /// `data`: where frames start.
    public var data: Int

    public init(previous: Int, size: Int, data: Int) {
        self.previous = previous
        self.size = size
        self.data = data
    }
}

/// How the frame records the instruction it is executing.
public enum InstructionField: Sendable, Equatable {
    /// `int f_lasti`, a byte offset into `co_code` (3.8–3.9); -1 before the first instruction.
    case lastiBytes
    /// `int f_lasti`, an index in 2-byte code units (3.10); -1 before the first instruction.
    case lastiCodeUnits
    /// `_Py_CODEUNIT *prev_instr` (3.11–3.12): the last instruction started. A frame that called
    /// another Python frame points at the last inline-cache unit of its CALL.
    case previousInstructionPointer
    /// `_Py_CODEUNIT *instr_ptr` (3.13+): the instruction being executed.
    case instructionPointer
}

/// `PyFrameObject` (3.8–3.10) or `_PyInterpreterFrame` (3.11+).
public struct FrameOffsets: Sendable, Equatable {
    /// `f_back` / `previous`.
    public var previous: Int
    /// `f_code` / `f_executable`.
    public var code: Int
    /// `f_lasti` / `prev_instr` / `instr_ptr`.
    public var instruction: Int
    public var instructionField: InstructionField
    /// `is_entry` (3.11): a bool marking the first frame of an evaluation-loop call.
    public var isEntry: Int?
    /// `owner` (3.11+): who owns the frame (a `char`).
    public var owner: Int?
    /// `FRAME_OWNED_BY_CSTACK` (3.12+): owner of the interpreter's C-stack shim frames, which
    /// readers skip.
    public var ownerCStack: Int?
    /// Bytes a reader copies to see every field above.
    public var size: Int

    public init(previous: Int, code: Int, instruction: Int, instructionField: InstructionField, isEntry: Int?,
                owner: Int?, ownerCStack: Int?, size: Int) {
        self.previous = previous
        self.code = code
        self.instruction = instruction
        self.instructionField = instructionField
        self.isEntry = isEntry
        self.owner = owner
        self.ownerCStack = ownerCStack
        self.size = size
    }
}

/// The line table format of `PyCodeObject`.
public enum LineTableFormat: Sendable, Equatable {
    /// `co_lnotab` (3.8–3.9): (byte increment, signed line increment) pairs.
    case lnotab
    /// `co_linetable` (3.10): (byte delta, signed line delta) pairs, -128 for "no line".
    case lineTable310
    /// `co_linetable` (3.11+): PEP 657 location entries.
    case locationTable
}

/// Where the bytecode is.
public enum CodeBytesPlacement: Sendable, Equatable {
    /// `co_code` is a `bytes` object at this offset (3.8–3.10).
    case bytesObject(offset: Int)
    /// `co_code_adaptive` is inline in the code object at this offset (3.11+); its length in code
    /// units is the object's `ob_size`.
    case inline(offset: Int)
}

/// `PyCodeObject`.
public struct CodeOffsets: Sendable, Equatable {
    public var filename: Int
    public var name: Int
    /// `co_qualname` (3.11+).
    public var qualname: Int?
    public var firstLineNumber: Int
    /// `co_lnotab` (3.8–3.9) / `co_linetable` (3.10+), a `bytes` object.
    public var lineTable: Int
    public var lineTableFormat: LineTableFormat
    public var codeBytes: CodeBytesPlacement
    /// Bytes a reader copies to see every field above (the fixed part of the object).
    public var size: Int

    public init(filename: Int, name: Int, qualname: Int?, firstLineNumber: Int, lineTable: Int,
                lineTableFormat: LineTableFormat, codeBytes: CodeBytesPlacement, size: Int) {
        self.filename = filename
        self.name = name
        self.qualname = qualname
        self.firstLineNumber = firstLineNumber
        self.lineTable = lineTable
        self.lineTableFormat = lineTableFormat
        self.codeBytes = codeBytes
        self.size = size
    }
}

/// The object internals needed to read names: strings, ints, dicts, types, modules.
public struct ObjectOffsets: Sendable, Equatable {
    /// `PyObject.ob_type`.
    public var objectType: Int
    /// `PyVarObject.ob_size`.
    public var varSize: Int
    public var bytes: BytesOffsets
    public var unicode: UnicodeOffsets
    public var long: LongOffsets
    public var dict: DictOffsets
    public var type: TypeOffsets

    public init(objectType: Int, varSize: Int, bytes: BytesOffsets, unicode: UnicodeOffsets, long: LongOffsets,
                dict: DictOffsets, type: TypeOffsets) {
        self.objectType = objectType
        self.varSize = varSize
        self.bytes = bytes
        self.unicode = unicode
        self.long = long
        self.dict = dict
        self.type = type
    }
}

/// `PyBytesObject`.
public struct BytesOffsets: Sendable, Equatable {
    public var size: Int   // ob_size
    public var data: Int   // ob_sval

    public init(size: Int, data: Int) {
        self.size = size
        self.data = data
    }
}

/// `PyASCIIObject` / `PyCompactUnicodeObject` and the bit fields of `state`.
public struct UnicodeOffsets: Sendable, Equatable {
    public var length: Int
    /// Offset of the `state` bit field word (a 32-bit unsigned int).
    public var state: Int
    /// `sizeof(PyASCIIObject)`: compact ASCII data starts here.
    public var asciiSize: Int
    /// `sizeof(PyCompactUnicodeObject)`: compact non-ASCII data starts here.
    public var compactSize: Int
    /// Bit position and width of `state.kind` (1, 2 or 4 bytes per character).
    public var kindShift: Int
    public var kindBits: Int
    /// Bit positions of `state.compact` and `state.ascii`.
    public var compactShift: Int
    public var asciiShift: Int

    public init(length: Int, state: Int, asciiSize: Int, compactSize: Int, kindShift: Int, kindBits: Int,
                compactShift: Int, asciiShift: Int) {
        self.length = length
        self.state = state
        self.asciiSize = asciiSize
        self.compactSize = compactSize
        self.kindShift = kindShift
        self.kindBits = kindBits
        self.compactShift = compactShift
        self.asciiShift = asciiShift
    }
}

/// `PyLongObject`.
public struct LongOffsets: Sendable, Equatable {
    /// `ob_size` (3.8–3.11, signed digit count) or `long_value.lv_tag` (3.12+).
    public var sizeOrTag: Int
    /// 3.12+: digits = lv_tag >> tagDigitShift, sign = lv_tag & tagSignMask (0 +, 1 zero, 2 -).
    public var usesTag: Bool
    public var tagDigitShift: Int
    public var digits: Int
    /// `PyLong_SHIFT`: bits per digit.
    public var digitBits: Int
    /// `sizeof(digit)`.
    public var digitSize: Int

    public init(sizeOrTag: Int, usesTag: Bool, tagDigitShift: Int, digits: Int, digitBits: Int, digitSize: Int) {
        self.sizeOrTag = sizeOrTag
        self.usesTag = usesTag
        self.tagDigitShift = tagDigitShift
        self.digits = digits
        self.digitBits = digitBits
        self.digitSize = digitSize
    }
}

/// `PyDictObject`, `PyDictKeysObject`, the entry types and `PyDictValues`.
public struct DictOffsets: Sendable, Equatable {
    public var used: Int        // ma_used
    public var keys: Int        // ma_keys
    public var values: Int      // ma_values (split tables)
    /// 3.8–3.10: `dk_size` (entries, a Py_ssize_t); 3.11+: `dk_log2_size` (a uint8).
    public var keysSize: Int
    public var keysSizeIsLog2: Bool
    /// 3.11+: `dk_log2_index_bytes` (uint8); nil before, where index width follows from dk_size.
    public var keysLog2IndexBytes: Int?
    /// 3.11+: `dk_kind` (uint8: 0 general, 1 unicode, 2 split); nil before.
    public var keysKind: Int?
    public var keysNEntries: Int   // dk_nentries
    public var keysIndices: Int    // dk_indices
    /// sizeof(PyDictKeyEntry) and its field offsets.
    public var entrySize: Int
    public var entryKey: Int
    public var entryValue: Int
    /// sizeof(PyDictUnicodeEntry) (3.11+) and its field offsets; nil before.
    public var unicodeEntrySize: Int?
    public var unicodeEntryKey: Int?
    public var unicodeEntryValue: Int?
    /// Offset of the value array inside `PyDictValues` (3.11+: `values`); 0 before (a plain array).
    public var valuesArray: Int

    public init(used: Int, keys: Int, values: Int, keysSize: Int, keysSizeIsLog2: Bool, keysLog2IndexBytes: Int?,
                keysKind: Int?, keysNEntries: Int, keysIndices: Int, entrySize: Int, entryKey: Int, entryValue: Int,
                unicodeEntrySize: Int?, unicodeEntryKey: Int?, unicodeEntryValue: Int?, valuesArray: Int) {
        self.used = used
        self.keys = keys
        self.values = values
        self.keysSize = keysSize
        self.keysSizeIsLog2 = keysSizeIsLog2
        self.keysLog2IndexBytes = keysLog2IndexBytes
        self.keysKind = keysKind
        self.keysNEntries = keysNEntries
        self.keysIndices = keysIndices
        self.entrySize = entrySize
        self.entryKey = entryKey
        self.entryValue = entryValue
        self.unicodeEntrySize = unicodeEntrySize
        self.unicodeEntryKey = unicodeEntryKey
        self.unicodeEntryValue = unicodeEntryValue
        self.valuesArray = valuesArray
    }
}

/// How an instance finds its `__dict__`.
public enum InstanceDictPlacement: Sendable, Equatable {
    /// At `tp_dictoffset` (3.8–3.10, and types without managed dicts).
    case typeDictOffset
    /// 3.11: with `Py_TPFLAGS_MANAGED_DICT`, the dict pointer is at `dictPointer` and the split
    /// values pointer at `valuesPointer`, both negative offsets from the object.
    case managed311(dictPointer: Int, valuesPointer: Int)
    /// 3.12: with `Py_TPFLAGS_MANAGED_DICT`, a tagged dict-or-values word at a negative offset;
    /// low bit set means values, stored as `values - 1`, so the values pointer is word + 1
    /// (`_PyDictOrValues_SetValues` / `_PyDictOrValues_GetValues` in pycore_object.h).
    case managedTagged312(word: Int)
    /// 3.13+: with `Py_TPFLAGS_INLINE_VALUES`, values inline at `tp_basicsize` (valid while the
    /// values' `valid` byte is set), else the dict pointer at a negative offset.
    case inlineValues313(dictPointer: Int, validByte: Int)
}

/// `PyTypeObject` and `PyHeapTypeObject`.
public struct TypeOffsets: Sendable, Equatable {
    public var flags: Int          // tp_flags (unsigned long)
    public var basicSize: Int      // tp_basicsize
    public var dictOffset: Int     // tp_dictoffset
    public var heapCachedKeys: Int // PyHeapTypeObject.ht_cached_keys
    /// `Py_TPFLAGS_MANAGED_DICT` (3.11+), 0 before.
    public var managedDictFlag: UInt64
    /// `Py_TPFLAGS_INLINE_VALUES` (3.13+), 0 before.
    public var inlineValuesFlag: UInt64
    public var instanceDict: InstanceDictPlacement

    public init(flags: Int, basicSize: Int, dictOffset: Int, heapCachedKeys: Int, managedDictFlag: UInt64,
                inlineValuesFlag: UInt64, instanceDict: InstanceDictPlacement) {
        self.flags = flags
        self.basicSize = basicSize
        self.dictOffset = dictOffset
        self.heapCachedKeys = heapCachedKeys
        self.managedDictFlag = managedDictFlag
        self.inlineValuesFlag = inlineValuesFlag
        self.instanceDict = instanceDict
    }
}

/// Constants of the small-object allocator the agent needs (pymalloc).
public struct AllocatorConstants: Sendable, Equatable {
    public var poolSize: Int
    public var arenaSize: Int
    public var smallRequestThreshold: Int
    public var alignment: Int

    public init(poolSize: Int, arenaSize: Int, smallRequestThreshold: Int, alignment: Int) {
        self.poolSize = poolSize
        self.arenaSize = arenaSize
        self.smallRequestThreshold = smallRequestThreshold
        self.alignment = alignment
    }
}
