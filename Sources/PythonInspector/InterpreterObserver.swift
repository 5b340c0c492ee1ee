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
}

/// What one read of the interpreter saw (see `InterpreterObserver.read`).
public struct InterpreterRead {
    /// The threads read, with their stacks: every thread, or every one the caller did not say was
    /// resting.
    public var threads: [ThreadObservation]
    /// Every thread state was read: a thread state missing from `listed` has left the list.
    public var wholeList: Bool
    /// The thread states of the list, newest first, when `wholeList`.
    public var listed: [UInt64]
    /// The GIL's hand-off count and holder, where the version's GIL layout is known.
    public var gil: GILReading?
}

/// Reads every thread of the main interpreter with its stack: the work shared by `dump` and the
/// sampler. Not thread-safe (it owns caches).
///
/// A sampler reads the same structures again and again, and they move little between two reads:
/// the thread states are the same, and each stack is still in the memory its last walk found it
/// in. So each read starts with one batch of reads made from what the last one found (the list
/// head, the GIL, each thread state, and the windows each thread's last walk used); only what that
/// batch shows to have moved is read again. Every value is validated as if nothing were known.
public final class InterpreterObserver<Memory: ProcessMemory> {
    public let layout: PythonLayout
    public let memory: Memory
    public let stacks: StackReader<Memory>
    public let threads: ThreadReader<Memory>
    private var tidResolver = PthreadTIDResolver()
    private var tidsByPthread: [UInt64: Int32] = [:]
    private var interpreter: UInt64?
    /// Where the GIL is (found once: it never moves); .some(nil) where it cannot be found.
    private var gil: Range<UInt64>??
    /// The thread states found last time, newest first: usually still the list.
    private var lastThreadStates: [UInt64] = []
    /// What the last read learnt of each thread state.
    private var known: [UInt64: KnownThread] = [:]

    /// Kept between reads (so that a read allocates little): the batches and what they hold.
    private var batch = ReadBatch()
    private var followUp = ReadBatch()
    private var asked: [UInt64] = []
    /// Per thread state asked for: where its speculative ranges are in `batch`.
    private var speculative: [Range<Int>] = []
    private var records: [ThreadRecord] = []

    /// What is remembered of one thread state between reads.
    private final class KnownThread {
        var pthreadID: UInt64
        /// 3.11–3.12: the `_PyCFrame` the thread state pointed at; its `current_frame` is read
        /// with the thread state.
        var cframe: UInt64 = 0
        /// The windows its last walk found frames in, read again with the thread state.
        var windows: [WindowRange] = []
        /// This read's work (kept to spare allocations): the innermost frame, where its
        /// `_PyCFrame` hop and first window are in the follow-up batches, and the windows the batch
        /// read again.
        var frame: UInt64?
        var hopSlot: Int?
        var windowSlot: (slot: Int, isChunk: Bool)?
        var knownWindows: [FrameWindow] = []

        init(pthreadID: UInt64) { self.pthreadID = pthreadID }
    }

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

    /// The memory of the interpreter's GIL (`struct _gil_runtime_state`), found once.
    public func gilState() -> Range<UInt64>? {
        if let gil { return gil }
        guard let interp = try? mainInterpreter() else { return nil }
        let range = threads.gilState(interpreter: interp)
        gil = .some(range)
        return range
    }

    /// Walks a chain and resolves its code objects; a frame whose code object cannot be read makes
    /// the walk incomplete.
    private func walkAndResolve(from start: WalkStart, known: [FrameWindow] = []) -> (FrameWalk, [ResolvedFrame]) {
        var walk = stacks.walk(from: start, known: known)
        var frames = [ResolvedFrame]()
        frames.reserveCapacity(walk.frames.count)
        // Index loops here and below: this class is generic, and generic sequence adapters (zip,
        // enumerated) are not specialised in it.
        for index in walk.frames.indices {
            if var resolved = stacks.resolve(walk.frames[index]) {
                resolved.isEntry = index < walk.entries.count && walk.entries[index]
                frames.append(resolved)
            } else { walk.incomplete = true }
        }
        return (walk, frames)
    }

    /// Further reads of a stack that tore, before it is counted as unreadable.
    static var retries: Int { 3 }

    /// The thread states, walked one by one (and again when the list tore: a thread state freed
    /// while it was walked).
    private func walkList(of interp: UInt64) throws(MemoryReadError) -> [ThreadRecord] {
        var attempt = 0
        while true {
            do {
                return try threads.threads(of: interp)
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
    public func observe(threadIDs: ThreadIDSource) throws(MemoryReadError) -> [ThreadObservation] {
        try read(threadIDs: threadIDs).threads
    }

    /// Reads the threads and their stacks.
    /// - Parameters:
    ///   - resting: thread states the caller knows have not run since their last read (by the GIL
    ///     and their run times): a thread that has not run cannot have moved, so neither its state
    ///     nor its stack is read, and it is not in the result.
    ///   - wholeList: read every thread state, to learn of threads that ended. Otherwise only the
    ///     list's head (a new thread is linked in there) and the states of threads not resting are
    ///     read, each checked to be the same thread as before; anything unexpected reads the whole
    ///     list after all.
    ///   - active: without `wholeList`, the thread states not resting, when the caller keeps them
    ///     (so that a read costs nothing per resting thread); nil: every listed state not resting.
    public func read(threadIDs: ThreadIDSource, resting: Set<UInt64> = [], wholeList: Bool = true,
                     active: [UInt64]? = nil) throws(MemoryReadError) -> InterpreterRead {
        let interp = try mainInterpreter()
        let gilAddress = gilState()?.lowerBound
        // Last time's records hold slices of the batch's storage: dropped before it is refilled.
        records.removeAll(keepingCapacity: true)

        // One batch: what the last read found, read again.
        batch.removeAll()
        let head = batch.append(interp.field(layout.interpreter.threadsHead), count: 8)
        let main = wholeList ? layout.interpreter.threadsMain.map { batch.append(interp.field($0), count: 8) } : nil
        let gilFields = gilAddress.flatMap { threads.gilFields(gil: $0) }.map { batch.append($0.address, count: $0.count) }
        let current = layout.runtime.gilstateTstateCurrent.map { batch.append(threads.runtimeAddress.field($0), count: 8) }
        let expected = lastThreadStates
        asked.removeAll(keepingCapacity: true)
        if !wholeList, let active {
            asked.append(contentsOf: active)
        } else {
            for address in expected where wholeList || !resting.contains(address) { asked.append(address) }
        }
        let stateStart = batch.count
        for address in asked { batch.append(address, count: threads.readSize) }
        // Per thread state asked for (not resting): where its speculative reads start and end.
        speculative.removeAll(keepingCapacity: true)
        for address in asked {
            let start = batch.count
            if !resting.contains(address), let thread = known[address] {
                if let current = layout.thread.cframeCurrentFrame, thread.cframe != 0 {
                    batch.append(thread.cframe.field(current), count: 8)
                }
                for window in thread.windows { batch.append(window.address, count: window.count) }
            }
            speculative.append(start..<batch.count)
        }
        memory.read(&batch)
        guard let headBytes = batch.bytes(head) else { throw firstReadError(interp: interp) }

        // The list as the batch saw it, if it is the expected one.
        var listed = expected
        var whole = wholeList
        var batchHolds = !expected.isEmpty && headBytes.pointer(at: 0) == expected[0]
        if batchHolds {
            for index in asked.indices {
                let address = asked[index]
                guard let bytes = batch.bytes(stateStart + index), bytes.pointer(at: layout.thread.interp) == interp else {
                    batchHolds = false
                    break
                }
                let record = threads.record(at: address, bytes: bytes)
                if wholeList {
                    // The chain of `next` pointers must be the expected list.
                    let next = index + 1 < expected.count ? expected[index + 1] : 0
                    guard bytes.pointer(at: layout.thread.next) == next else { batchHolds = false; break }
                } else if let thread = known[address], thread.pthreadID != record.pthreadID {
                    // Another thread's state at the address of one that ended.
                    batchHolds = false
                    break
                }
                records.append(record)
            }
            if batchHolds, let main {
                // 3.14+: the main thread's state is always in the list.
                guard let state = batch.bytes(main)?.pointer(at: 0), state == 0 || expected.contains(state) else {
                    throw MemoryReadError.unmapped(address: interp, length: 0)
                }
            }
        }
        if !batchHolds {
            // Something moved (a thread started or ended, or a read tore): walk the list.
            records = try walkList(of: interp)
            listed = records.map(\.address)
            whole = true
            speculative.removeAll(keepingCapacity: true)
        }
        lastThreadStates = listed
        // Entries of states that left the list, dropped once they could outnumber the list.
        if whole, known.count > listed.count {
            let present = Set(listed)
            known = known.filter { present.contains($0.key) }
        }

        let gilReading = gilFields.flatMap { batch.bytes($0) }.flatMap { threads.gilReading($0) }
        let holder = gilHolder(records: records, reading: gilReading,
                               current: current.flatMap { batch.bytes($0) }?.pointer(at: 0), interp: interp)
        if layout.thread.nativeThreadID == nil, records.contains(where: { $0.pthreadID != 0 && tidsByPthread[$0.pthreadID] == nil }) {
            // pthread ids are reused after a thread ends, so the whole map is rebuilt.
            tidsByPthread = tidResolver.resolve(records.map(\.pthreadID), tids: threadIDs.refresh().namespaceIDs,
                                                memory: memory)
        }

        // The stacks of the threads not resting.
        let walked = records.indices.filter { !resting.contains(records[$0].address) }
        let starts = walkStarts(walked, speculated: batchHolds)

        let namespaced = threadIDs.map.isNamespaced
        var result = [ThreadObservation]()
        result.reserveCapacity(walked.count)
        for position in walked.indices {
            let record = records[walked[position]]
            let ownID = record.nativeThreadID ?? tidsByPthread[record.pthreadID]
            let hostID = ownID.flatMap { threadIDs.host($0) }
            var observation = ThreadObservation(threadState: record.address, pthreadID: record.pthreadID,
                                                tid: hostID, holdsGIL: holder == record.address, frames: [],
                                                walk: FrameWalk())
            if namespaced || threadIDs.map.isNamespaced { observation.namespaceTID = ownID }
            // A thread the target knows (a pthread, an id) that we cannot find among its kernel threads.
            observation.unmapped = hostID == nil && (ownID != nil || record.pthreadID != 0)
            let thread = starts[position].thread
            thread.pthreadID = record.pthreadID
            thread.cframe = cframe(of: record.bytes)
            // Read again next time: where a complete walk found the frames.
            thread.windows = []
            if let start = starts[position].start {
                (observation.walk, observation.frames) = walkAndResolve(from: start, known: thread.knownWindows)
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
                    thread.cframe = cframe(of: bytes)
                }
                if let top = observation.frames.first, observation.walk.frames.first?.code == top.code.address,
                   let instruction = stacks.instruction(of: top) {
                    observation.opcode = instruction.opcode
                    observation.instructionClass = instruction.kind
                }
                if !observation.walk.incomplete { thread.windows = observation.walk.windows }
            }
            thread.knownWindows.removeAll(keepingCapacity: true)
            known[record.address] = thread
            result.append(observation)
        }
        markStarting(&result, among: records)
        return InterpreterRead(threads: result, wholeList: whole, listed: listed, gil: gilReading)
    }

    /// The error of a read whose list head could not be read: the process is gone, access is
    /// refused, or the interpreter is not where it was.
    private func firstReadError(interp: UInt64) -> MemoryReadError {
        do { _ = try memory.pointer(at: interp.field(layout.interpreter.threadsHead)) } catch { return error }
        return .unmapped(address: interp, length: 8)
    }

    /// The thread state holding the GIL: 3.15+ each state says so (read with the states; a read
    /// that tore across a hand-off can show two holders: then the GIL is asked); 3.8–3.11 the
    /// runtime's `gilstate.tstate_current`; otherwise the GIL's `last_holder` while it is locked.
    private func gilHolder(records: [ThreadRecord], reading: GILReading?, current: UInt64?, interp: UInt64) -> UInt64? {
        if layout.thread.holdsGIL != nil {
            var holders = 0
            var holder: UInt64?
            for record in records where record.holdsGIL == true {
                holders += 1
                holder = record.address
            }
            if holders <= 1 { return holder }
        }
        if layout.runtime.gilstateTstateCurrent != nil {
            guard let current else { return threads.gilHolder(interpreter: interp) }
            return current == 0 ? nil : current
        }
        if let reading { return reading.locked && reading.lastHolder != 0 ? reading.lastHolder : nil }
        return threads.gilHolder(interpreter: interp)
    }

    /// 3.11–3.12: the `_PyCFrame` a thread state points at.
    private func cframe(of state: RemoteBytes) -> UInt64 {
        layout.thread.cframeCurrentFrame == nil ? 0 : state.pointer(at: layout.thread.frame) ?? 0
    }

    /// Where each walked thread's walk starts (`walked`: indices into `records`), from its state
    /// and, when the batch held (`speculated`), what the batch read for it: for 3.11–3.12 its
    /// `_PyCFrame`'s `current_frame` first, then its windows (left in the thread's `knownWindows`).
    /// What the batch did not hold is read in at most two more batches, one for the `_PyCFrame`
    /// hops and one for the first windows.
    private func walkStarts(_ walked: [Int], speculated: Bool) -> [(thread: KnownThread, start: WalkStart?)] {
        let hopField = layout.thread.cframeCurrentFrame
        var threads = [KnownThread]()
        threads.reserveCapacity(walked.count)
        followUp.removeAll()
        for index in walked {
            let record = records[index]
            let thread = known[record.address] ?? KnownThread(pthreadID: record.pthreadID)
            threads.append(thread)
            thread.frame = nil
            thread.hopSlot = nil
            thread.windowSlot = nil
            thread.knownWindows.removeAll(keepingCapacity: true)
            // What the batch read for this thread; nothing from another thread at this address.
            var guess = speculated && index < speculative.count && thread.pthreadID == record.pthreadID
                ? speculative[index] : 0..<0
            guard let pointer = record.bytes.pointer(at: layout.thread.frame) else { continue }
            if let hopField {
                // The guessed hop is the first guess when the thread had a `_PyCFrame` last time.
                var guessedHop: RemoteBytes?
                if thread.cframe != 0, !guess.isEmpty {
                    guessedHop = batch.bytes(guess.lowerBound)
                    guess = (guess.lowerBound + 1)..<guess.upperBound
                }
                if pointer == 0 {
                    thread.frame = 0
                } else if pointer == thread.cframe, let frame = guessedHop?.pointer(at: 0) {
                    thread.frame = frame
                } else {
                    thread.hopSlot = followUp.append(pointer.field(hopField), count: 8)
                }
            } else {
                thread.frame = pointer
            }
            var slot = guess.lowerBound
            for window in thread.windows where slot < guess.upperBound {
                if let bytes = batch.bytes(slot) { thread.knownWindows.append(FrameWindow(bytes: bytes, isChunk: window.isChunk)) }
                slot += 1
            }
        }
        if followUp.count > 0 {
            memory.read(&followUp)
            for thread in threads {
                if let slot = thread.hopSlot { thread.frame = followUp.bytes(slot)?.pointer(at: 0) }
            }
        }
        // The first window of each thread whose innermost frame the known windows do not hold.
        followUp.removeAll()
        let size = stacks.frameReadSize
        for position in threads.indices {
            let thread = threads[position], index = walked[position]
            guard let frame = thread.frame, frame != 0,
                  !thread.knownWindows.contains(where: { $0.bytes.view(at: frame, count: size) != nil }),
                  let request = stacks.startRange(frame: frame, threadState: records[index].bytes) else { continue }
            thread.windowSlot = (followUp.append(request.range.address, count: request.range.count), request.isChunk)
        }
        if followUp.count > 0 { memory.read(&followUp) }
        var result = [(thread: KnownThread, start: WalkStart?)]()
        result.reserveCapacity(walked.count)
        for position in threads.indices {
            let thread = threads[position], index = walked[position]
            guard let frame = thread.frame, frame != 0 else { result.append((thread, nil)); continue }
            var window: FrameWindow?
            if let read = thread.windowSlot, let bytes = followUp.bytes(read.slot) {
                window = FrameWindow(bytes: bytes, isChunk: read.isChunk)
            }
            result.append((thread, WalkStart(frame: frame, window: window, baseFrame: stacks.baseFrame(threadState: records[index].bytes))))
        }
        return result
    }

    /// A thread state created for a thread that has not started yet carries its creator's pthread
    /// id and has no frame: it has no tid of its own. Counted only when some thread has no frame
    /// (most reads none has, and with many threads the count is most of a read's work).
    private func markStarting(_ result: inout [ThreadObservation], among records: [ThreadRecord]) {
        guard result.contains(where: { $0.frames.isEmpty }) else { return }
        var pthreadCounts = [UInt64: Int](minimumCapacity: records.count)
        for record in records { pthreadCounts[record.pthreadID, default: 0] += 1 }
        for index in result.indices where pthreadCounts[result[index].pthreadID, default: 0] > 1 && result[index].frames.isEmpty {
            result[index].isStarting = true
            result[index].tid = nil
            result[index].namespaceTID = nil
            result[index].unmapped = false
        }
    }
}
