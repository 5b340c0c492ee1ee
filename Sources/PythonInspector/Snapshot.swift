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
    /// Kernel thread id as we see it (nil if it could not be determined).
    public var tid: Int32?
    /// The id the target's own PID namespace knows the thread by, when it differs (a container).
    public var namespaceTID: Int32?
    /// The target stores an id for the thread that matches none of its kernel threads.
    public var unmapped = false
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
    /// Parallel to `frames`: the outermost frame of its call of the evaluation function.
    public var entries: [Bool]
    /// The walk hit the depth bound or a cycle.
    public var truncated: Bool
    /// A frame could not be read (the thread changed under us); the stack may be incomplete.
    public var incomplete: Bool
}

public struct ProcessSnapshot: Sendable {
    public var pid: Int32
    public var version: PythonVersion
    public var threads: [ThreadSnapshot]
    /// The process's pid in its own PID namespace, when it runs in one below ours.
    public var namespacePID: Int32?
}

/// Takes snapshots of every thread's stack. Discovery is done once (in `PythonTarget`); each
/// snapshot reads the live structures again.
public final class StackDumper {
    public let target: PythonTarget
    public let observer: InterpreterObserver<RemoteMemory>
    public let names: ThreadNameReader<RemoteMemory>
    /// Kernel thread ids, translated when the target runs in its own PID namespace.
    public let threadIDs: ThreadIDTracker

    public init(target: PythonTarget, maximumDepth: Int = 2048) {
        self.threadIDs = ThreadIDTracker(pid: target.pid)
        self.target = target
        self.observer = InterpreterObserver(memory: target.memory, layout: target.layout, opcodes: target.opcodes,
                                            runtimeAddress: target.runtimeAddress, codeType: target.codeTypeAddress,
                                            maximumDepth: maximumDepth)
        self.names = ThreadNameReader(memory: target.memory, layout: target.layout)
    }

    /// Reads every thread. With `blocking`, the process is stopped for the read (and always
    /// resumed); otherwise it keeps running and a read that tears is retried. `whileStopped` (only
    /// with `blocking`) runs with every thread stopped, given their ids: the moment to copy what
    /// else must match the Python stacks (native registers and stacks).
    public func snapshot(blocking: Bool = false, whileStopped: ([Int32]) -> Void = { _ in }) throws(InspectError) -> ProcessSnapshot {
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
            whileStopped(s.stoppedThreads)
        }
        defer { stopper?.resumeAll() }

        var lastError: MemoryReadError = .processGone
        for _ in 0..<5 {
            do {
                return try read(states: states)
            } catch {
                lastError = error
                if !target.process.isAlive { throw .exited(pid: pid) }
                if case .permissionDenied = error { throw .permissionDenied(pid: pid) }
            }
        }
        throw .failed(pid: pid, detail: "the interpreter's thread list kept changing while being read (\(lastError))")
    }

    private func read(states: [Int32: Character]) throws(MemoryReadError) -> ProcessSnapshot {
        let observations = try observer.observe(threadIDs: threadIDs)
        // `threading._active` changes whenever a thread starts or ends; retry a torn read.
        let interpreter = try observer.mainInterpreter()
        var threadNames = [UInt64: String]()
        // A read that missed entries is merged with the next, until one reads every entry.
        for _ in 0..<5 {
            guard let found = names.read(interpreter: interpreter) else { continue }
            threadNames.merge(found.names) { _, fresh in fresh }
            if found.unreadable == 0 { break }
        }
        var threads = observations.map { observation in
            ThreadSnapshot(tid: observation.tid, namespaceTID: observation.namespaceTID, unmapped: observation.unmapped,
                           pthreadID: observation.pthreadID,
                           name: observation.isStarting ? nil : threadNames[observation.pthreadID], state: observation.tid.flatMap { states[$0] },
                           holdsGIL: observation.holdsGIL, opcode: observation.opcode,
                           opcodeName: observation.opcode.flatMap { op in
                               target.opcodes.flatMap { $0.name(of: $0.base(of: op)) } },
                           instructionClass: observation.instructionClass,
                           frames: observation.frames.map {
                               FrameDescription(function: $0.code.name, qualname: $0.code.qualname,
                                                file: $0.code.filename, line: $0.line) },
                           entries: observation.frames.map(\.isEntry),
                           truncated: observation.walk.truncated, incomplete: observation.walk.incomplete)
        }
        threads.sort { ($0.tid ?? .max) < ($1.tid ?? .max) }
        let namespacePID = threadIDs.map.isNamespaced ? ThreadIDMap.namespaceLevels(pid: target.pid, tid: target.pid)?.last : nil
        return ProcessSnapshot(pid: target.pid, version: target.version, threads: threads, namespacePID: namespacePID)
    }
}
