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
