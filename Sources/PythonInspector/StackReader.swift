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
    private let frameReadSize: Int
    private var visited = Set<UInt64>()

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

    /// Where to start walking each thread, with the memory around its innermost frame read for all
    /// threads in as few reads as possible: one for the `_PyCFrame` hop of 3.11–3.12, one for the
    /// windows (each thread's current data-stack chunk up to its innermost frame, or the frame's
    /// page). Nil entries: the thread has no frame or it could not be found.
    public func walkStarts(threadStates: [RemoteBytes]) -> [WalkStart?] {
        var frames: [UInt64?] = threadStates.map { $0.pointer(at: layout.thread.frame) }
        if let current = layout.thread.cframeCurrentFrame {
            let hops = frames.compactMap { $0 }.filter { $0 != 0 }.map { (address: $0.field(current), count: 8) }
            if let read = memory.remoteBytes(batch: hops) {
                var results = read.makeIterator()
                frames = frames.map { cframe in
                    guard let cframe, cframe != 0 else { return cframe }
                    return results.next()?.pointer(at: 0)
                }
            } else {
                frames = threadStates.map { innermostFrame(threadState: $0) }
            }
        }
        let requests = zip(frames, threadStates).map { frame, state -> (range: (address: UInt64, count: Int), isChunk: Bool)? in
            guard let frame, frame != 0 else { return nil }
            return startRange(frame: frame, threadState: state)
        }
        let ranges = requests.compactMap { $0?.range }
        // One read for every window; if one of them fails, each is read on its own.
        let copies: [RemoteBytes?] = memory.remoteBytes(batch: ranges).map { $0.map(Optional.some) }
            ?? ranges.map { try? memory.remoteBytes(at: $0.address, count: $0.count) }
        var next = copies.makeIterator()
        return zip(zip(frames, requests), threadStates).map { pair, state in
            let (frame, request) = pair
            guard let frame, frame != 0 else { return nil }
            guard let request else { return WalkStart(frame: frame, window: nil, baseFrame: baseFrame(threadState: state)) }
            let copy = next.next().flatMap { $0 }
            return WalkStart(frame: frame, window: copy.map { FrameWindow(bytes: $0, isChunk: request.isChunk) },
                             baseFrame: baseFrame(threadState: state))
        }
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
    private func startRange(frame: UInt64, threadState: RemoteBytes) -> (range: (address: UInt64, count: Int), isChunk: Bool)? {
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

    /// Walks from `start` outwards.
    public func walk(from start: WalkStart) -> FrameWalk {
        walk(from: start.frame, window: start.window, baseFrame: start.baseFrame)
    }

    /// Walks from `frame` outwards. `window`, if given, already holds the memory around `frame`.
    /// `baseFrame` (3.15+: the thread state's `base_frame`) is where every complete chain ends.
    public func walk(from frame: UInt64, window initial: FrameWindow? = nil, baseFrame: UInt64? = nil) -> FrameWalk {
        var walk = FrameWalk()
        var address = frame
        let f = layout.frame
        visited.removeAll(keepingCapacity: true)
        var windows = WindowSet(initial)
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
        return walk
    }

    /// The memory a walk has copied so far: data-stack chunks, innermost first, and the last page.
    private struct WindowSet {
        var chunks: [RemoteBytes] = []
        var page: RemoteBytes?

        init(_ initial: FrameWindow?) {
            guard let initial else { return }
            if initial.isChunk { chunks.append(initial.bytes) } else { page = initial.bytes }
        }

        func view(at address: UInt64, count: Int) -> RemoteBytes? {
            for chunk in chunks { if let bytes = chunk.view(at: address, count: count) { return bytes } }
            return page?.view(at: address, count: count)
        }
    }

    /// The bytes of the frame at `address`. Frames of a thread's data stack (3.11+) sit next to each
    /// other, callers below callees: a frame outside the chunks read so far is usually in the
    /// previous (older) chunk, which is then read whole; otherwise the frame's page is read, which
    /// brings in the frames below it on that page too.
    private func frameBytes(at address: UInt64, windows: inout WindowSet) -> RemoteBytes? {
        if let bytes = windows.view(at: address, count: frameReadSize) { return bytes }
        if let header = layout.thread.stackChunk, windows.chunks.count < WalkLimits.maximumChunks,
           let previous = windows.chunks.last?.pointer(at: header.previous), previous != 0,
           let range = chunkRange(chunk: previous, through: address),
           let chunk = try? memory.remoteBytes(at: range.address, count: range.count) {
            windows.chunks.append(chunk)
            return chunk.view(at: address, count: frameReadSize)
        }
        guard let range = self.window(for: address) else { return try? memory.remoteBytes(at: address, count: frameReadSize) }
        guard let page = try? memory.remoteBytes(at: range.address, count: range.count) else { return nil }
        windows.page = page
        return page.view(at: address, count: frameReadSize)
    }

    /// The cached or freshly read code object at `address`.
    public func codeInfo(at address: UInt64) -> CodeInfo? {
        if let cached = cache[address] { return cached }
        guard var info = codeReader.read(at: address) else { return nil }
        if let opcodes { info.instructionStarts = opcodes.instructionStarts(in: info.bytecode) }
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
