import CPythonLayouts
import RemoteProcess

/// A frame as a user reads it.
public struct FrameDescription: Sendable, Equatable {
    public var function: String
    public var qualname: String
    public var file: String
    /// 0 when the line is unknown.
    public var line: Int

    public init(function: String, qualname: String, file: String, line: Int) {
        self.function = function
        self.qualname = qualname
        self.file = file
        self.line = line
    }
}

/// One thread at the moment of a snapshot.
public struct ThreadSnapshot: Sendable {
    /// Kernel thread id (nil if it could not be determined).
    public var tid: Int32?
    public var pthreadID: UInt64
    /// The Python thread name (`threading.Thread.name`), if Python has one.
    public var name: String?
    /// Scheduler state letter from /proc, read before anything was stopped.
    public var state: Character?
    public var holdsGIL: Bool
    /// The innermost frame's instruction: opcode as stored (possibly specialised), base name, class.
    public var opcode: UInt8?
    public var opcodeName: String?
    public var instructionClass: InstructionClass?
    /// Innermost first.
    public var frames: [FrameDescription]
    /// The walk hit the depth bound or a cycle.
    public var truncated: Bool
    /// A frame could not be read (the thread changed under us); the stack may be incomplete.
    public var incomplete: Bool
}

public struct ProcessSnapshot: Sendable {
    public var pid: Int32
    public var version: PythonVersion
    public var threads: [ThreadSnapshot]
}

/// Takes snapshots of every thread's stack. Discovery is done once (in `PythonTarget`); each
/// snapshot reads the live structures again.
public final class StackDumper {
    public let target: PythonTarget
    public let stacks: StackReader<RemoteMemory>
    public let threadReader: ThreadReader<RemoteMemory>
    public let names: ThreadNameReader<RemoteMemory>
    private var tidResolver = PthreadTIDResolver()

    public init(target: PythonTarget, maximumDepth: Int = 2048) {
        self.target = target
        self.stacks = StackReader(memory: target.memory, layout: target.layout, opcodes: target.opcodes,
                                  codeType: target.codeTypeAddress, maximumDepth: maximumDepth)
        self.threadReader = ThreadReader(memory: target.memory, layout: target.layout, runtimeAddress: target.runtimeAddress)
        self.names = ThreadNameReader(memory: target.memory, layout: target.layout)
    }

    /// Reads every thread. With `blocking`, the process is stopped for the read (and always
    /// resumed); otherwise it keeps running and a read that tears is retried.
    public func snapshot(blocking: Bool = false) throws(InspectError) -> ProcessSnapshot {
        let pid = target.pid
        // Run states first: stopping the process would turn every thread into 't'.
        var states = [Int32: Character]()
        let tids: [Int32]
        do { tids = try target.process.threadIDs() } catch { throw InspectError(error) }
        for tid in tids { states[tid] = target.process.threadStat(tid)?.state }

        var stopper: ThreadStopper?
        if blocking {
            let s = ThreadStopper(pid: pid)
            do { try s.stopAll() } catch {
                switch error {
                case .permissionDenied: throw .permissionDenied(pid: pid)
                case .exited: throw .exited(pid: pid)
                default: throw .failed(pid: pid, detail: "cannot stop the process: \(error)")
                }
            }
            stopper = s
        }
        defer { stopper?.resumeAll() }

        var lastError: MemoryReadError = .processGone
        for _ in 0..<5 {
            do {
                return try read(states: states, tids: Set(tids))
            } catch {
                lastError = error
                if !target.process.isAlive { throw .exited(pid: pid) }
                if case .permissionDenied = error { throw .permissionDenied(pid: pid) }
            }
        }
        throw .failed(pid: pid, detail: "the interpreter's thread list kept changing while being read (\(lastError))")
    }

    private func read(states: [Int32: Character], tids: Set<Int32>) throws(MemoryReadError) -> ProcessSnapshot {
        let interpreter = try threadReader.mainInterpreter()
        let records = try threadReader.threads(of: interpreter)
        let holder = threadReader.gilHolder(interpreter: interpreter)
        let threadNames = names.names(interpreter: interpreter)
        var nativeIDs = [UInt64: Int32]()
        if target.layout.thread.nativeThreadID == nil {
            nativeIDs = tidResolver.resolve(records.map(\.pthreadID), tids: tids, memory: target.memory)
        }
        var threads = [ThreadSnapshot]()
        for record in records {
            let tid = record.nativeThreadID ?? nativeIDs[record.pthreadID]
            var thread = ThreadSnapshot(tid: tid, pthreadID: record.pthreadID, name: threadNames[record.pthreadID],
                                        state: tid.flatMap { states[$0] }, holdsGIL: holder == record.address,
                                        opcode: nil, opcodeName: nil, instructionClass: nil, frames: [],
                                        truncated: false, incomplete: false)
            if let first = stacks.innermostFrame(threadState: record.bytes) {
                let walk = stacks.walk(from: first)
                thread.truncated = walk.truncated
                thread.incomplete = walk.incomplete
                for (index, raw) in walk.frames.enumerated() {
                    guard let frame = stacks.resolve(raw) else {
                        thread.incomplete = true
                        continue
                    }
                    if index == 0, let instruction = stacks.instruction(of: frame) {
                        thread.opcode = instruction.opcode
                        thread.opcodeName = instruction.name
                        thread.instructionClass = instruction.kind
                    }
                    thread.frames.append(FrameDescription(function: frame.code.name, qualname: frame.code.qualname,
                                                          file: frame.code.filename, line: frame.line))
                }
            }
            threads.append(thread)
        }
        threads.sort { ($0.tid ?? .max) < ($1.tid ?? .max) }
        return ProcessSnapshot(pid: target.pid, version: target.version, threads: threads)
    }
}
