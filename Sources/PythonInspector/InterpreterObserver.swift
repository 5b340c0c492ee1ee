import CPythonLayouts
import RemoteProcess

/// One thread at one instant: its kernel id, whether it holds the GIL, and its resolved stack.
public struct ThreadObservation {
    public var threadState: UInt64
    public var pthreadID: UInt64
    /// Kernel thread id as we see it (what /proc here knows it by), nil if it could not be determined.
    public var tid: Int32?
    /// The thread's id in the target's own PID namespace, when that differs from ours (a container).
    public var namespaceTID: Int32?
    /// The target stores an id for this thread that matches none of its kernel threads: the thread
    /// cannot be measured (its CPU time and state are read by our id).
    public var unmapped = false
    public var holdsGIL: Bool
    /// Innermost first; frames whose code object could not be read are left out (`walk.incomplete`).
    public var frames: [ResolvedFrame]
    public var walk: FrameWalk
    /// The innermost frame's instruction, when it could be located.
    public var opcode: UInt8?
    public var instructionClass: InstructionClass?
    /// The first walk was incomplete and the stack was read a second time.
    public var retried = false
    /// A thread state created for a thread that has not started yet: until the new thread runs,
    /// it carries the pthread id of the thread that created it, so it has no tid or name of its own.
    public var isStarting = false
    /// The caller said this thread has not run since its last observation: its stack was not read
    /// (`frames` is empty; the caller keeps the previous ones).
    public var unchanged = false
}

/// Reads every thread of the main interpreter with its stack: the work shared by `dump` and the
/// sampler. Not thread-safe (it owns caches).
public final class InterpreterObserver<Memory: ProcessMemory> {
    public let layout: PythonLayout
    public let memory: Memory
    public let stacks: StackReader<Memory>
    public let threads: ThreadReader<Memory>
    private var tidResolver = PthreadTIDResolver()
    private var tidsByPthread: [UInt64: Int32] = [:]
    private var interpreter: UInt64?
    /// The thread states found last time: usually still the list, read in one go.
    private var lastThreadStates: [UInt64] = []

    public init(memory: Memory, layout: PythonLayout, opcodes: OpcodeTable?, runtimeAddress: UInt64,
                codeType: UInt64?, maximumDepth: Int = 2048) {
        self.layout = layout
        self.memory = memory
        self.stacks = StackReader(memory: memory, layout: layout, opcodes: opcodes, codeType: codeType,
                                  maximumDepth: maximumDepth)
        self.threads = ThreadReader(memory: memory, layout: layout, runtimeAddress: runtimeAddress)
    }

    /// The main interpreter's address (read once; the main interpreter never moves).
    public func mainInterpreter() throws(MemoryReadError) -> UInt64 {
        if let interpreter { return interpreter }
        let found = try threads.mainInterpreter()
        if found != 0 { interpreter = found }
        return found
    }

    /// Walks a chain and resolves its code objects; a frame whose code object cannot be read makes
    /// the walk incomplete.
    private func walkAndResolve(from start: WalkStart) -> (FrameWalk, [ResolvedFrame]) {
        var walk = stacks.walk(from: start)
        var frames = [ResolvedFrame]()
        frames.reserveCapacity(walk.frames.count)
        for (index, raw) in walk.frames.enumerated() {
            if var resolved = stacks.resolve(raw) {
                resolved.isEntry = index < walk.entries.count && walk.entries[index]
                frames.append(resolved)
            } else { walk.incomplete = true }
        }
        return (walk, frames)
    }

    /// Further reads of a stack that tore, before it is counted as unreadable.
    static var retries: Int { 3 }

    /// The thread states, read again when the list tore (a thread state freed while it was walked).
    private func threadList(of interp: UInt64) throws(MemoryReadError) -> [ThreadRecord] {
        var attempt = 0
        while true {
            do {
                return try threads.threads(of: interp, expected: attempt == 0 ? lastThreadStates : [])
            } catch {
                attempt += 1
                if case .unmapped = error, attempt <= Self.retries { continue }
                throw error
            }
        }
    }

    /// Observes every thread, with kernel ids of threads in our own PID namespace (tests).
    public func observe(taskIDs: Set<Int32>) throws(MemoryReadError) -> [ThreadObservation] {
        try observe(threadIDs: FixedThreadIDs(ThreadIDMap(identity: Array(taskIDs))))
    }

    /// Observes every thread. Kernel ids come from `threadIDs`: the target stores them as its own
    /// PID namespace sees them (`native_thread_id`, or the tid in glibc's `struct pthread` for
    /// versions without it), and each is translated to ours.
    /// `unchanged` names threads (by our tid) known not to have run since they were last observed:
    /// their thread states are read (the list and the GIL need them) but not their stacks, which a
    /// thread that has not run cannot have changed.
    public func observe(threadIDs: ThreadIDSource,
                        unchanged: (Int32) -> Bool = { _ in false }) throws(MemoryReadError) -> [ThreadObservation] {
        let interp = try mainInterpreter()
        let records = try threadList(of: interp)
        lastThreadStates = records.map(\.address)
        // 3.15+: each thread state says whether it holds the GIL (read with the states, no extra
        // read). A read that tore across a GIL hand-off can show two holders: then ask the GIL.
        let flags = records.compactMap(\.holdsGIL)
        let holder: UInt64?
        if flags.count == records.count && flags.filter({ $0 }).count <= 1 {
            holder = records.first { $0.holdsGIL == true }?.address
        } else {
            holder = threads.gilHolder(interpreter: interp)
        }
        if layout.thread.nativeThreadID == nil, records.contains(where: { $0.pthreadID != 0 && tidsByPthread[$0.pthreadID] == nil }) {
            // pthread ids are reused after a thread ends, so the whole map is rebuilt.
            tidsByPthread = tidResolver.resolve(records.map(\.pthreadID), tids: threadIDs.refresh().namespaceIDs,
                                                memory: memory)
        }
        let namespaced = threadIDs.map.isNamespaced
        var result = [ThreadObservation]()
        result.reserveCapacity(records.count)
        let ownIDs = records.map { $0.nativeThreadID ?? tidsByPthread[$0.pthreadID] }
        let hostIDs = ownIDs.map { $0.flatMap { threadIDs.host($0) } }
        let skipped = hostIDs.map { $0.map(unchanged) ?? false }
        // Only the stacks of threads that may have moved are read (one batch for all of them).
        var starts: [WalkStart?]
        if skipped.contains(true) {
            let walked = records.indices.filter { !skipped[$0] }
            starts = [WalkStart?](repeating: nil, count: records.count)
            for (index, start) in zip(walked, stacks.walkStarts(threadStates: walked.map { records[$0].bytes })) {
                starts[index] = start
            }
        } else {
            starts = stacks.walkStarts(threadStates: records.map(\.bytes))
        }
        for (index, record) in records.enumerated() {
            let ownID = ownIDs[index]
            let hostID = hostIDs[index]
            var observation = ThreadObservation(threadState: record.address, pthreadID: record.pthreadID,
                                                tid: hostID, holdsGIL: holder == record.address, frames: [],
                                                walk: FrameWalk())
            observation.unchanged = skipped[index]
            if namespaced || threadIDs.map.isNamespaced { observation.namespaceTID = ownID }
            // A thread the target knows (a pthread, an id) that we cannot find among its kernel threads.
            observation.unmapped = hostID == nil && (ownID != nil || record.pthreadID != 0)
            if let start = starts[index] {
                (observation.walk, observation.frames) = walkAndResolve(from: start)
                // A frame changed under us (popped, or its memory reused): the thread has moved on,
                // so a fresh read of its chain usually succeeds.
                for _ in 0..<Self.retries where observation.walk.incomplete {
                    guard let bytes = try? memory.remoteBytes(at: record.address, count: threads.readSize) else { break }
                    observation.retried = true
                    guard let again = stacks.walkStart(threadState: bytes) else {
                        // The thread has no Python frame any more (it was finishing): that, read
                        // consistently, is the observation.
                        (observation.walk, observation.frames) = (FrameWalk(), [])
                        break
                    }
                    (observation.walk, observation.frames) = walkAndResolve(from: again)
                }
                if let top = observation.frames.first, observation.walk.frames.first?.code == top.code.address,
                   let instruction = stacks.instruction(of: top) {
                    observation.opcode = instruction.opcode
                    observation.instructionClass = instruction.kind
                }
            }
            result.append(observation)
        }
        // Counted only when some thread has no frame (most ticks none has, and with many threads
        // the count is most of a tick's work).
        guard result.contains(where: { $0.frames.isEmpty && !$0.unchanged }) else { return result }
        var pthreadCounts = [UInt64: Int](minimumCapacity: result.count)
        for observation in result { pthreadCounts[observation.pthreadID, default: 0] += 1 }
        for index in result.indices where pthreadCounts[result[index].pthreadID, default: 0] > 1 && result[index].frames.isEmpty
            && !result[index].unchanged {
            result[index].isStarting = true
            result[index].tid = nil
            result[index].namespaceTID = nil
            result[index].unmapped = false
        }
        return result
    }
}
