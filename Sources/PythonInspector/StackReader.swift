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
}

/// The result of walking one thread's frame chain.
public struct FrameWalk: Sendable {
    /// Innermost first.
    public var frames: [RawFrame] = []
    /// The walk stopped at the depth bound or at a cycle.
    public var truncated = false
    /// A frame could not be read (torn or stale pointer): the stack may be incomplete.
    public var incomplete = false
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
        return try? memory.pointer(at: pointer &+ UInt64(current))
    }

    /// Walks from `frame` outwards.
    public func walk(from frame: UInt64) -> FrameWalk {
        var walk = FrameWalk()
        var address = frame
        let f = layout.frame
        visited.removeAll(keepingCapacity: true)
        while address != 0 {
            guard walk.frames.count < maximumDepth, visited.insert(address).inserted else {
                walk.truncated = true
                break
            }
            guard let bytes = try? memory.remoteBytes(at: address, count: frameReadSize),
                  let code = bytes.pointer(at: f.code), let previous = bytes.pointer(at: f.previous) else {
                walk.incomplete = true
                break
            }
            let isShim = f.owner.flatMap { bytes.uint8(at: $0) }.map { Int($0) == f.ownerCStack } ?? false
            if !isShim && code != 0 {
                let instruction: UInt64
                switch f.instructionField {
                case .lastiBytes, .lastiCodeUnits:
                    instruction = UInt64(bitPattern: Int64(bytes.int32(at: f.instruction) ?? -1))
                case .previousInstructionPointer, .instructionPointer:
                    instruction = bytes.pointer(at: f.instruction) ?? 0
                }
                walk.frames.append(RawFrame(code: code, instruction: instruction))
            }
            address = previous
        }
        return walk
    }

    /// The cached or freshly read code object at `address`.
    public func codeInfo(at address: UInt64) -> CodeInfo? {
        if let cached = cache[address] { return cached }
        guard let info = codeReader.read(at: address) else { return nil }
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
        guard let opcodes, frame.codeUnit >= 0,
              let located = opcodes.instructionStart(containing: frame.codeUnit, in: frame.code.bytecode) else { return nil }
        return (located.opcode, opcodes.name(of: opcodes.base(of: located.opcode)), opcodes.instructionClass(of: located.opcode))
    }
}
