import CPythonLayouts
import PythonInspector
import RemoteProcess
import Testing

/// ThreadReader and InterpreterObserver on a fake runtime, interpreter and thread list.
@Suite("ThreadReader and InterpreterObserver on fake interpreter memory")
struct InterpreterObserverTests {
    static let versions = StackReaderTests.versions

    /// Main (tid 500, the three-frame stack, holds the GIL unless told otherwise), a worker (tid 501,
    /// one frame) and an idle thread (tid 502, no frame), newest first: idle, worker, main.
    struct Process {
        var stack: FakeStack
        var interpreter: FakeHeap.Interpreter
        var pthreads: [UInt64]
        var layout: PythonLayout { stack.layout }

        init(_ version: String, gilHolder: Int? = 2) throws {
            var stack = try FakeStack(version)
            let workerFrame = stack.heap.frame(code: stack.outer, unit: 1, layout: stack.layout)
            var pthreads = [UInt64]()
            for tid: Int32 in [502, 501, 500] { pthreads.append(stack.heap.pthread(tid: tid)) }
            let native = stack.layout.thread.nativeThreadID != nil
            interpreter = stack.heap.interpreter(threads: [
                .init(pthread: pthreads[0], native: native ? 502 : nil, frame: 0),
                .init(pthread: pthreads[1], native: native ? 501 : nil, frame: workerFrame),
                .init(pthread: pthreads[2], native: native ? 500 : nil, frame: stack.frames[0]),
            ], gilHolder: gilHolder, layout: stack.layout)
            self.stack = stack
            self.pthreads = pthreads
        }

        func observer() -> InterpreterObserver<LocalMemory> {
            InterpreterObserver(memory: stack.heap.memory, layout: layout, opcodes: nil,
                                runtimeAddress: interpreter.runtime, codeType: FakeHeap.codeType)
        }

        func threadReader() -> ThreadReader<LocalMemory> {
            ThreadReader(memory: stack.heap.memory, layout: layout, runtimeAddress: interpreter.runtime)
        }
    }

    @Test("every thread with its tid, GIL flag and resolved stack", arguments: versions)
    func observe(_ version: String) throws {
        let process = try Process(version)
        let observations = try process.observer().observe(taskIDs: [500, 501, 502, 503])
        #expect(observations.map(\.threadState) == process.interpreter.threadStates)
        #expect(observations.map(\.pthreadID) == process.pthreads)
        #expect(observations.map(\.tid) == [502, 501, 500])
        #expect(observations.map(\.holdsGIL) == [false, false, true])
        #expect(observations.map(\.isStarting) == [false, false, false])
        #expect(observations[0].frames.isEmpty && observations[0].walk.frames.isEmpty)
        #expect(observations[1].frames.map(\.code.name) == ["<module>"])
        #expect(observations[1].frames.map(\.line) == [1])
        #expect(observations[2].frames.map(\.code.name) == ["inner", "名前", "<module>"])
        #expect(observations[2].frames.map(\.line) == [15, 43, 30])
        #expect(observations[2].frames.map(\.code.filename) == ["/srv/app/main.py", "/srv/app/ünïcödé.py", "/srv/app/main.py"])
        #expect(observations.allSatisfy { !$0.walk.truncated && !$0.walk.incomplete })
        #expect(observations.allSatisfy { $0.opcode == nil }, "no opcode table given")
    }

    @Test("nobody holds the GIL", arguments: versions)
    func gilReleased(_ version: String) throws {
        let process = try Process(version, gilHolder: nil)
        let reader = process.threadReader()
        #expect(reader.gilHolder(interpreter: process.interpreter.interpreter) == nil)
        let observations = try process.observer().observe(taskIDs: [500, 501, 502])
        #expect(observations.map(\.holdsGIL) == [false, false, false])
        let holding = try Process(version, gilHolder: 1)
        #expect(holding.threadReader().gilHolder(interpreter: holding.interpreter.interpreter)
                == holding.interpreter.threadStates[1])
    }

    @Test("thread list: back-pointers checked, cycles stopped, the main interpreter found by id",
          arguments: versions)
    func threadList(_ version: String) throws {
        var process = try Process(version)
        let t = process.layout.thread
        let states = process.interpreter.threadStates
        let reader = process.threadReader()
        #expect(try reader.mainInterpreter() == process.interpreter.interpreter)
        #expect(try reader.threads(of: process.interpreter.interpreter).map(\.address) == states)

        // A cycle back to the head ends the list.
        process.stack.heap.write(states[0], at: states[2] + UInt64(t.next))
        #expect(try process.threadReader().threads(of: process.interpreter.interpreter).map(\.address) == states)

        // A state that points at another interpreter was freed and reused under us: a torn read.
        process.stack.heap.write(UInt64(0x5555_1234_0000), at: states[1] + UInt64(t.interp))
        #expect(throws: MemoryReadError.unmapped(address: states[1], length: 0)) {
            try process.threadReader().threads(of: process.interpreter.interpreter)
        }
        #expect(throws: MemoryReadError.unmapped(address: states[1], length: 0)) {
            try process.observer().observe(taskIDs: [500, 501, 502])
        }
    }

    @Test("without interpreters.main, the interpreter with id 0 is found in the list", arguments: versions)
    func mainByID(_ version: String) throws {
        var process = try Process(version)
        let r = process.layout.runtime, i = process.layout.interpreter
        let main = try #require(r.interpretersMain)
        // A subinterpreter (id 1) became the head; interpreters.main is not set.
        let sub = process.stack.heap.allocate(max(i.next, i.id) + 8)
        process.stack.heap.write(Int64(1), at: sub + UInt64(i.id))
        process.stack.heap.write(process.interpreter.interpreter, at: sub + UInt64(i.next))
        process.stack.heap.write(sub, at: process.interpreter.runtime + UInt64(r.interpretersHead))
        process.stack.heap.write(UInt64(0), at: process.interpreter.runtime + UInt64(main))
        #expect(try process.threadReader().mainInterpreter() == process.interpreter.interpreter)
    }

    @Test("3.8–3.10: a thread being started shares its creator's pthread_t until it runs",
          arguments: ["3.8", "3.9", "3.10"])
    func threadBeingStarted(_ version: String) throws {
        // Newest first: the starting thread's state (no frames, the main thread's pthread), a
        // worker, the main thread.
        var stack = try FakeStack(version)
        let main = stack.heap.pthread(tid: 500), worker = stack.heap.pthread(tid: 501)
        let workerFrame = stack.heap.frame(code: stack.outer, unit: 1, layout: stack.layout)
        let interpreter = stack.heap.interpreter(threads: [
            .init(pthread: main, frame: 0), .init(pthread: worker, frame: workerFrame),
            .init(pthread: main, frame: stack.frames[0]),
        ], gilHolder: 2, layout: stack.layout)
        let observer = InterpreterObserver(memory: stack.heap.memory, layout: stack.layout, opcodes: nil,
                                           runtimeAddress: interpreter.runtime, codeType: FakeHeap.codeType)
        let observations = try observer.observe(taskIDs: [500, 501])
        #expect(observations.map(\.isStarting) == [true, false, false])
        #expect(observations.map(\.tid) == [nil, 501, 500])
        #expect(observations[2].frames.count == 3)
    }

    @Test("3.8–3.10: the main thread starting the first thread keeps its tid",
          arguments: ["3.8", "3.9", "3.10"])
    func firstThreadBeingStarted(_ version: String) throws {
        var stack = try FakeStack(version)
        let main = stack.heap.pthread(tid: 500)
        let interpreter = stack.heap.interpreter(threads: [
            .init(pthread: main, frame: 0), .init(pthread: main, frame: stack.frames[0]),
        ], gilHolder: 1, layout: stack.layout)
        let observer = InterpreterObserver(memory: stack.heap.memory, layout: stack.layout, opcodes: nil,
                                           runtimeAddress: interpreter.runtime, codeType: FakeHeap.codeType)
        let observations = try observer.observe(taskIDs: [500])
        #expect(observations.map(\.isStarting) == [true, false])
        #expect(observations[0].tid == nil)
        #expect(observations[1].tid == 500)
    }
}

/// Memory whose bytes the test changes between reads, counting the calls made to read it.
final class ChangingMemory: ProcessMemory, @unchecked Sendable {
    var memory: LocalMemory
    private(set) var batches = 0
    private(set) var singleReads = 0
    /// Every address a read started at.
    private(set) var addresses: [UInt64] = []

    init(_ memory: LocalMemory) { self.memory = memory }

    func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(MemoryReadError) {
        singleReads += 1
        addresses.append(address)
        try memory.read(into: buffer, at: address)
    }

    func read(_ batch: inout ReadBatch) {
        batches += 1
        batch.fill { _, address, buffer in
            addresses.append(address)
            do throws(MemoryReadError) { try memory.read(into: buffer, at: address) } catch { return false }
            return true
        }
    }

    func resetCounts() {
        batches = 0
        singleReads = 0
        addresses = []
    }
}

@Suite("InterpreterObserver reads again what it found last time")
struct RepeatedReadTests {
    static let versions = StackReaderTests.versions

    struct Setup {
        var process: InterpreterObserverTests.Process
        var memory: ChangingMemory
        var observer: InterpreterObserver<ChangingMemory>
        let ids = FixedThreadIDs(ThreadIDMap(identity: [500, 501, 502, 503]))

        init(_ version: String) throws {
            process = try InterpreterObserverTests.Process(version)
            memory = ChangingMemory(process.stack.heap.memory)
            observer = InterpreterObserver(memory: memory, layout: process.layout, opcodes: nil,
                                           runtimeAddress: process.interpreter.runtime, codeType: FakeHeap.codeType)
        }

        /// Lays out the heap again after the test changed it.
        mutating func update() { memory.memory = process.stack.heap.memory }
    }

    static func stacks(_ read: InterpreterRead) -> [[String]] {
        read.threads.map { $0.frames.map { "\($0.code.name):\($0.line)" } }
    }

    @Test("nothing moved: the second read is one batch, and sees what the first saw", arguments: versions)
    func secondReadIsOneBatch(_ version: String) throws {
        let setup = try Setup(version)
        let first = try setup.observer.read(threadIDs: setup.ids)
        setup.memory.resetCounts()
        let second = try setup.observer.read(threadIDs: setup.ids, wholeList: false)
        #expect(setup.memory.batches == 1)
        #expect(setup.memory.singleReads == 0, "no read beyond the batch")
        #expect(Self.stacks(second) == Self.stacks(first))
        #expect(second.threads.map(\.tid) == [502, 501, 500])
        #expect(second.threads.map(\.holdsGIL) == first.threads.map(\.holdsGIL))
        #expect(!second.wholeList)
    }

    @Test("resting threads are neither read nor reported", arguments: versions)
    func restingThreads(_ version: String) throws {
        let setup = try Setup(version)
        _ = try setup.observer.read(threadIDs: setup.ids)
        let states = setup.process.interpreter.threadStates
        setup.memory.resetCounts()
        let read = try setup.observer.read(threadIDs: setup.ids, resting: [states[1]], wholeList: false)
        #expect(read.threads.map(\.threadState) == [states[0], states[2]])
        #expect(!setup.memory.addresses.contains(states[1]), "the resting thread's state is not read")
        #expect(Self.stacks(read) == [[], ["inner:15", "名前:43", "<module>:30"]])
        // Read whole, the list still names it.
        let whole = try setup.observer.read(threadIDs: setup.ids, resting: [states[1]], wholeList: true)
        #expect(whole.wholeList && whole.listed == states)
        #expect(whole.threads.map(\.threadState) == [states[0], states[2]])
    }

    @Test("a stack that moved is read where it is now", arguments: versions)
    func movedStack(_ version: String) throws {
        var setup = try Setup(version)
        _ = try setup.observer.read(threadIDs: setup.ids)
        // The worker (one frame, outer at unit 1) calls middle: a new innermost frame elsewhere.
        let states = setup.process.interpreter.threadStates
        let layout = setup.process.layout
        let oldTop = try frameAddress(of: states[1], setup: setup)
        let callee = setup.process.stack.heap.frame(code: setup.process.stack.middle, unit: 2, previous: oldTop,
                                                    layout: layout)
        setFrame(of: states[1], to: callee, setup: &setup)
        setup.update()
        let read = try setup.observer.read(threadIDs: setup.ids, wholeList: false)
        #expect(Self.stacks(read)[1] == ["名前:41", "<module>:1"])
        #expect(Self.stacks(read)[2] == ["inner:15", "名前:43", "<module>:30"])
    }

    @Test("a new thread at the head, or another thread's state at a known address, reads the whole list",
          arguments: versions)
    func listChanges(_ version: String) throws {
        var setup = try Setup(version)
        _ = try setup.observer.read(threadIDs: setup.ids)
        let states = setup.process.interpreter.threadStates
        let t = setup.process.layout.thread
        // Another thread's state where the worker's was (pthread id changed).
        let other = setup.process.stack.heap.pthread(tid: 503)
        setup.process.stack.heap.write(other, at: states[1] + UInt64(t.threadID))
        if let native = t.nativeThreadID { setup.process.stack.heap.write(UInt64(503), at: states[1] + UInt64(native)) }
        setup.update()
        let reused = try setup.observer.read(threadIDs: setup.ids, wholeList: false)
        #expect(reused.wholeList)
        #expect(reused.threads.map(\.tid) == [502, 503, 500])

        // A new thread state linked in at the head.
        let fresh = setup.process.stack.heap.allocate(t.size)
        setup.process.stack.heap.write(states[0], at: fresh + UInt64(t.next))
        setup.process.stack.heap.write(setup.process.interpreter.interpreter, at: fresh + UInt64(t.interp))
        setup.process.stack.heap.write(setup.process.stack.heap.pthread(tid: 504), at: fresh + UInt64(t.threadID))
        if let native = t.nativeThreadID { setup.process.stack.heap.write(UInt64(504), at: fresh + UInt64(native)) }
        setup.process.stack.heap.write(fresh, at: setup.process.interpreter.interpreter
                                       + UInt64(setup.process.layout.interpreter.threadsHead))
        setup.update()
        let grown = try setup.observer.read(threadIDs: FixedThreadIDs(ThreadIDMap(identity: [500, 501, 502, 503, 504])),
                                            wholeList: false)
        #expect(grown.wholeList && grown.listed == [fresh] + states)
        #expect(grown.threads.map(\.tid) == [504, 502, 503, 500])
    }

    /// The innermost frame a thread state points at (through `_PyCFrame` for 3.11–3.12).
    func frameAddress(of state: UInt64, setup: Setup) throws -> UInt64 {
        let t = setup.process.layout.thread
        let pointer = try setup.memory.memory.pointer(at: state + UInt64(t.frame))
        guard let current = t.cframeCurrentFrame else { return pointer }
        return try setup.memory.memory.pointer(at: pointer + UInt64(current))
    }

    func setFrame(of state: UInt64, to frame: UInt64, setup: inout Setup) {
        let t = setup.process.layout.thread
        if let current = t.cframeCurrentFrame, let cframe = try? setup.memory.memory.pointer(at: state + UInt64(t.frame)) {
            setup.process.stack.heap.write(frame, at: cframe + UInt64(current))
        } else {
            setup.process.stack.heap.write(frame, at: state + UInt64(t.frame))
        }
    }
}
