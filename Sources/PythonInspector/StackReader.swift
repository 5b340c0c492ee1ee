import CPythonLayouts
import RemoteProcess

/// One frame as found in the target: the code object and the raw instruction field, before any
/// lookup. The injected agent records frames in this same form.
public struct RawFrame: Sendable, Hashable {
    public var code: UInt64
    /// `f_lasti` (sign-extended) or the instruction pointer, as stored in the frame.
    public var instruction: UInt64

    public init(code: UInt64, instruction: UInt64) {
        self.code = code
        self.instruction = instruction
    }
}

/// A frame with its code object resolved.
public struct ResolvedFrame: Sendable {
    public var code: CodeInfo
    /// Index of the code unit the frame is at (-1: not started).
    public var codeUnit: Int
    /// The source line, 0 when the table has none for this instruction.
    public var line: Int
    /// The outermost frame of one run of the C evaluation function (see `FrameWalk.entries`).
    public var isEntry = false
}

/// The result of walking one thread's frame chain.
public struct FrameWalk: Sendable {
    /// Innermost first.
    public var frames: [RawFrame] = []
    /// Parallel to `frames`: the frame is the outermost one run by its call of the C evaluation
    /// function (`_PyEval_EvalFrameDefault`). Before 3.11 every Python frame has its own call; from
    /// 3.11 one call runs a frame and the Python frames it calls, and a frame entered from C is
    /// marked (`is_entry` in 3.11, a C-stack shim frame just outside it from 3.12).
    public var entries: [Bool] = []
    /// The walk stopped at the depth bound or at a cycle.
    public var truncated = false
    /// A frame could not be read (torn or stale pointer), or (3.15+) the chain did not end at the
    /// thread's base frame: the stack may be incomplete.
    public var incomplete = false
    /// The memory the frames were found in, innermost first: what to read again, in one batch with
    /// the thread state, the next time this thread is walked (a stack moves little between samples).
    public var windows: [WindowRange] = []
}

/// A range of the target's memory a walk found frames in.
public struct WindowRange: Sendable, Equatable {
    public var address: UInt64
    public var count: Int
    /// A data-stack chunk, read from its header (3.11+), rather than a page or a single frame.
    public var isChunk: Bool

    public init(address: UInt64, count: Int, isChunk: Bool) {
        self.address = address
        self.count = count
        self.isChunk = isChunk
    }
}

/// Where a walk starts: the innermost frame, and the memory already read around it.
public struct WalkStart: Sendable {
    public var frame: UInt64
    public var window: FrameWindow?
    /// Where a complete chain of this thread ends (3.15+: the thread state's `base_frame`).
    public var baseFrame: UInt64?
}

/// Memory copied for a walk: a whole data-stack chunk (3.11+: the frames of ordinary calls, as they
/// were at one moment), or the page around one frame.
public struct FrameWindow: Sendable {
    public var bytes: RemoteBytes
    public var isChunk: Bool

    public init(bytes: RemoteBytes, isChunk: Bool) {
        self.bytes = bytes
        self.isChunk = isChunk
    }
}

/// Bounds on what one walk copies.
enum WalkLimits {
    /// Largest data-stack range copied in one read. A chunk is 16 KiB unless a frame needed more.
    static let maximumChunkWindow = 256 << 10
    /// Chunks one walk copies at most (the depth bound ends a walk long before in practice).
    static let maximumChunks = 64
    /// Windows read again for the next walk of a thread, at most, and their bytes at most.
    static let maximumSpeculativeWindows = 128
    static let maximumSpeculativeBytes = 512 << 10
    /// Room left above the innermost frame when its chunk is read again: a call or two deeper
    /// next time still lands in the same read.
    static let speculativeMargin = 2048
}

/// Walks frame chains and resolves code objects, caching what it learns per code object. One reader
/// per sampling thread; not thread-safe.
public final class StackReader<Memory: ProcessMemory> {
    public let memory: Memory
    public let layout: PythonLayout
    public let codeReader: CodeReader<Memory>
    public let opcodes: OpcodeTable?
    /// Frames beyond this depth are not walked.
    public var maximumDepth: Int
    private var cache: [UInt64: CodeInfo] = [:]
    private var cacheLimit = 65536
    /// Bytes read per frame: every field the walk uses.
    let frameReadSize: Int
    private var visited = Set<UInt64>()
    /// The windows array of the last walk, emptied, for the next one.
    private var recycledWindows: [WindowSet.Entry] = []

    public init(memory: Memory, layout: PythonLayout, opcodes: OpcodeTable?, codeType: UInt64?, maximumDepth: Int = 2048) {
        self.memory = memory
        self.layout = layout
        self.opcodes = opcodes
        self.maximumDepth = maximumDepth
        self.codeReader = CodeReader(objects: ObjectReader(memory: memory, objects: layout.objects), code: layout.code,
                                     codeType: codeType)
        let f = layout.frame
        frameReadSize = max(f.size, f.previous + 8, f.code + 8, f.instruction + 8, (f.owner ?? 0) + 1, (f.isEntry ?? 0) + 1)
    }

    /// The address of the innermost frame of a thread, given the thread state's bytes.
    public func innermostFrame(threadState: RemoteBytes) -> UInt64? {
        guard let pointer = threadState.pointer(at: layout.thread.frame) else { return nil }
        guard let current = layout.thread.cframeCurrentFrame else { return pointer }
        guard pointer != 0 else { return 0 }
        return try? memory.pointer(at: pointer.field(current))
    }

    /// The start of a walk for one thread state (a second try after a torn walk); nil when the
    /// thread has no frame.
    public func walkStart(threadState: RemoteBytes) -> WalkStart? {
        guard let frame = innermostFrame(threadState: threadState), frame != 0 else { return nil }
        let base = baseFrame(threadState: threadState)
        guard let request = startRange(frame: frame, threadState: threadState) else {
            return WalkStart(frame: frame, window: nil, baseFrame: base)
        }
        let copy = try? memory.remoteBytes(at: request.range.address, count: request.range.count)
        return WalkStart(frame: frame, window: copy.map { FrameWindow(bytes: $0, isChunk: request.isChunk) }, baseFrame: base)
    }

    /// The thread state's `base_frame` (3.15+), nil where the version has none.
    func baseFrame(threadState: RemoteBytes) -> UInt64? {
        layout.thread.baseFrame.flatMap { threadState.pointer(at: $0) }
    }

    /// The first range a walk reads: the thread's current data-stack chunk from its header up to
    /// the end of the innermost frame when the frame lies in it, else the frame's page.
    func startRange(frame: UInt64, threadState: RemoteBytes) -> (range: (address: UInt64, count: Int), isChunk: Bool)? {
        if let field = layout.thread.datastackChunk, let chunk = threadState.pointer(at: field), chunk != 0,
           let range = chunkRange(chunk: chunk, through: frame) {
            return (range, true)
        }
        return window(for: frame).map { ($0, false) }
    }

    /// `[chunk, frame + frame size)` when `frame` can lie in the data-stack chunk at `chunk`.
    private func chunkRange(chunk: UInt64, through frame: UInt64) -> (address: UInt64, count: Int)? {
        guard let header = layout.thread.stackChunk, let dataStart = RemoteArithmetic.end(of: chunk, count: header.data),
              frame >= dataStart, let end = RemoteArithmetic.end(of: frame, count: frameReadSize),
              end - chunk <= UInt64(WalkLimits.maximumChunkWindow) else { return nil }
        // end > frame ≥ chunk, and the difference is bounded above.
        return (chunk, Int(end - chunk))
    }

    /// The page-bounded range read for a frame: from the start of its page to its end, for the
    /// interpreter-frame layouts whose callers sit below it; nil where that does not apply.
    private func window(for address: UInt64) -> (address: UInt64, count: Int)? {
        let pageStart = address & ~UInt64(4095)
        guard layout.frame.instructionField == .previousInstructionPointer || layout.frame.instructionField == .instructionPointer,
              let end = RemoteArithmetic.end(of: address, count: frameReadSize), end - pageStart <= 4096 else { return nil }
        // end ≥ address ≥ pageStart, and the difference is at most a page.
        return (pageStart, Int(end - pageStart))
    }

    /// Walks from `start` outwards; `known` holds memory already read this time (the windows of the
    /// thread's previous walk, read again), looked in before anything is read.
    public func walk(from start: WalkStart, known: [FrameWindow] = []) -> FrameWalk {
        walk(from: start.frame, window: start.window, baseFrame: start.baseFrame, known: known)
    }

    /// Walks from `frame` outwards. `window`, if given, already holds the memory around `frame`;
    /// `known` holds more memory read this time. `baseFrame` (3.15+: the thread state's
    /// `base_frame`) is where every complete chain ends.
    public func walk(from frame: UInt64, window initial: FrameWindow? = nil, baseFrame: UInt64? = nil,
                     known: [FrameWindow] = []) -> FrameWalk {
        var walk = FrameWalk()
        var address = frame
        let f = layout.frame
        visited.removeAll(keepingCapacity: true)
        var windows = WindowSet(initial, known: known, reusing: recycledWindows)
        recycledWindows = []
        defer { recycledWindows = windows.emptied() }
        while address != 0 {
            guard walk.frames.count < maximumDepth, visited.insert(address).inserted else {
                walk.truncated = true
                break
            }
            guard let bytes = frameBytes(at: address, windows: &windows),
                  let codeWord = bytes.pointer(at: f.code), let previous = bytes.pointer(at: f.previous) else {
                walk.incomplete = true
                break
            }
            // The interpreter's own frames (C-stack shims, 3.14+ entry and base frames) hold no code
            // object; 3.14+ tags the low bits of f_executable.
            let isShim = f.owner.flatMap { bytes.uint8(at: $0) }.map { f.isInterpreterOwned($0) } ?? false
            let code = f.codeAddress(codeWord)
            if previous == 0, let baseFrame, baseFrame != 0, address != baseFrame { walk.incomplete = true }
            if isShim, !walk.entries.isEmpty { walk.entries[walk.entries.count - 1] = true }
            if !isShim && code != 0 {
                let instruction: UInt64
                switch f.instructionField {
                case .lastiBytes, .lastiCodeUnits:
                    instruction = UInt64(bitPattern: Int64(bytes.int32(at: f.instruction) ?? -1))
                case .previousInstructionPointer, .instructionPointer:
                    instruction = bytes.pointer(at: f.instruction) ?? 0
                }
                walk.frames.append(RawFrame(code: code, instruction: instruction))
                let entry: Bool
                if let isEntry = f.isEntry { entry = (bytes.uint8(at: isEntry) ?? 0) != 0 }
                else { entry = f.owner == nil } // before 3.11: one C call per Python frame
                walk.entries.append(entry)
            }
            address = previous
        }
        // The outermost frame a walk reaches was entered from C, whatever its flags say.
        if !walk.truncated && !walk.incomplete, !walk.entries.isEmpty { walk.entries[walk.entries.count - 1] = true }
        walk.windows = speculation(after: windows.used, innermost: windows.firstUsed)
        return walk
    }

    /// The memory a walk can find frames in: what it was given and what it has read, and which of
    /// it held a frame.
    private struct WindowSet {
        struct Entry {
            var window: FrameWindow
            var used = false
        }
        /// An array the reader keeps from one walk to the next (`emptied`), so a walk allocates none.
        private(set) var entries: [Entry]
        /// Windows that held a frame, in the order the walk first found one in them.
        private(set) var used: [WindowRange] = []
        /// The bytes of the first window that held a frame (the innermost frame's).
        private(set) var firstUsed: RemoteBytes?
        /// The chunk the walk is in (3.11+): an older frame not read yet is in the chunk before it.
        private(set) var currentChunk: RemoteBytes?
        private(set) var chunksRead = 0
        /// Where the last frame was found: the next one is usually in the same window or the next.
        private var hint = 0

        init(_ initial: FrameWindow?, known: [FrameWindow], reusing entries: [Entry]) {
            self.entries = entries
            if let initial { self.entries.append(Entry(window: initial)) }
            for window in known { self.entries.append(Entry(window: window)) }
        }

        /// The entries, emptied (no bytes kept), for the next walk.
        mutating func emptied() -> [Entry] {
            entries.removeAll(keepingCapacity: true)
            return entries
        }

        mutating func addRead(_ window: FrameWindow) {
            entries.append(Entry(window: window))
            if window.isChunk { chunksRead += 1 }
        }

        /// The bytes of `[address, address + count)` from the first window that holds them all.
        mutating func view(at address: UInt64, count: Int) -> RemoteBytes? {
            for step in 0..<entries.count {
                let index = (hint + step) % entries.count
                let window = entries[index].window
                guard let bytes = window.bytes.view(at: address, count: count) else { continue }
                if !entries[index].used {
                    entries[index].used = true
                    if used.isEmpty { firstUsed = window.bytes }
                    used.append(WindowRange(address: window.bytes.address, count: window.bytes.count, isChunk: window.isChunk))
                }
                if window.isChunk { currentChunk = window.bytes }
                hint = index
                return bytes
            }
            return nil
        }
    }

    /// The bytes of the frame at `address`. Frames of a thread's data stack (3.11+) sit next to each
    /// other, callers below callees: a frame outside the chunks read so far is usually in the
    /// previous (older) chunk, which is then read whole; otherwise the frame's page is read, which
    /// brings in the frames below it on that page too.
    private func frameBytes(at address: UInt64, windows: inout WindowSet) -> RemoteBytes? {
        if let bytes = windows.view(at: address, count: frameReadSize) { return bytes }
        if let header = layout.thread.stackChunk, windows.chunksRead < WalkLimits.maximumChunks,
           let previous = windows.currentChunk?.pointer(at: header.previous), previous != 0,
           let range = chunkRange(chunk: previous, through: address),
           let chunk = try? memory.remoteBytes(at: range.address, count: range.count) {
            windows.addRead(FrameWindow(bytes: chunk, isChunk: true))
            if let bytes = windows.view(at: address, count: frameReadSize) { return bytes }
        }
        let range = self.window(for: address) ?? (address, frameReadSize)
        guard let read = try? memory.remoteBytes(at: range.address, count: range.count) else { return nil }
        windows.addRead(FrameWindow(bytes: read, isChunk: false))
        return windows.view(at: address, count: frameReadSize)
    }

    /// The ranges to read again, with the thread state, for the next walk of a thread whose last
    /// walk found its frames in `windows`: the same ranges, the innermost chunk with room for a
    /// deeper call (up to the chunk's own size), within the speculative bounds.
    private func speculation(after windows: [WindowRange], innermost: RemoteBytes?) -> [WindowRange] {
        var result = [WindowRange]()
        var bytes = 0
        for index in windows.indices {
            let window = windows[index]
            guard result.count < WalkLimits.maximumSpeculativeWindows else { break }
            var range = window
            if index == 0, window.isChunk, let header = layout.thread.stackChunk {
                // The chunk's size (header included) bounds the read; a torn size is ignored.
                let size = innermost.flatMap { $0.pointer(at: header.size) }
                    .flatMap { RemoteArithmetic.count($0, atMost: WalkLimits.maximumChunkWindow) } ?? window.count
                range.count = max(window.count, min(window.count + WalkLimits.speculativeMargin, size))
            }
            guard bytes + range.count <= WalkLimits.maximumSpeculativeBytes else { break }
            bytes += range.count
            result.append(range)
        }
        return result
    }

    /// The cached or freshly read code object at `address`.
    public func codeInfo(at address: UInt64) -> CodeInfo? {
        if let cached = cache[address] { return cached }
        guard let info = codeReader.read(at: address, opcodes: opcodes) else { return nil }
        if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[address] = info
        return info
    }

    /// Drops cache entries whose code object has been replaced (freed and its address reused).
    /// Cheap enough to run every second or so during a long profile.
    public func revalidateCache() {
        for (address, info) in cache where !codeReader.isCurrent(info) {
            cache[address] = nil
        }
    }

    public var cachedCodeObjects: Int { cache.count }

    /// The code unit a raw instruction field designates, for a code object.
    public func codeUnit(of raw: RawFrame, in code: CodeInfo) -> Int {
        switch layout.frame.instructionField {
        case .lastiBytes:
            let lasti = Int64(bitPattern: raw.instruction)
            return lasti < 0 ? -1 : Int(lasti / 2)
        case .lastiCodeUnits:
            let lasti = Int64(bitPattern: raw.instruction)
            return lasti < 0 ? -1 : Int(clamping: lasti)
        case .previousInstructionPointer, .instructionPointer:
            guard code.bytecodeAddress != 0 else { return -1 }
            let delta = Int64(bitPattern: raw.instruction &- code.bytecodeAddress)
            guard delta >= -2, delta < Int64(code.bytecode.count) + 2 else { return -1 }
            return delta < 0 ? -1 : Int(delta / 2)
        }
    }

    /// Resolves a raw frame to code object, code unit and line.
    public func resolve(_ raw: RawFrame) -> ResolvedFrame? {
        guard let info = codeInfo(at: raw.code) else { return nil }
        let unit = codeUnit(of: raw, in: info)
        return ResolvedFrame(code: info, codeUnit: unit, line: info.lineTable.line(atCodeUnit: unit) ?? 0)
    }

    /// The instruction a frame is executing: its opcode (as stored, possibly specialised) and class.
    public func instruction(of frame: ResolvedFrame) -> (opcode: UInt8, name: String?, kind: InstructionClass)? {
        guard let opcodes, frame.codeUnit >= 0, frame.codeUnit < frame.code.instructionStarts.count else { return nil }
        let start = Int(frame.code.instructionStarts[frame.codeUnit])
        guard start >= 0, start * 2 < frame.code.bytecode.count else { return nil }
        let opcode = frame.code.bytecode[start * 2]
        return (opcode, opcodes.name(of: opcodes.base(of: opcode)), opcodes.instructionClass(of: opcode))
    }
}
