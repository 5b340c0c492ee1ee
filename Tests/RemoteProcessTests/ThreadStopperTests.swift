import RemoteProcess
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// ThreadStopper against real child processes. The tests are synchronous on purpose: the thread that
/// seizes a tracee must be the one that waits for it and detaches it.
@Suite("ThreadStopper")
struct ThreadStopperTests {
    @Test("stopAll stops every thread (state t), resumeAll lets every one run again")
    func stopAndResume() throws {
        let child = try startPythonWithThreads()
        defer { child.stop() }
        let tids = threadStates(of: child.pid).keys.sorted()
        #expect(tids.count == 4)

        let stopper = ThreadStopper(pid: child.pid)
        #expect(stopper.stoppedThreads.isEmpty)
        try stopper.stopAll()
        #expect(stopper.stoppedThreads == tids)
        let stopped = threadStates(of: child.pid)
        #expect(stopped.count == 4)
        #expect(stopped.values.allSatisfy { $0 == "t" }, "\(stopped)")

        // Stopped means stopped: the spinning thread gets no CPU time.
        let cpuStopped = cpuNanoseconds(of: child.pid)
        usleep(150_000)
        #expect(cpuNanoseconds(of: child.pid) == cpuStopped)

        // A second stopAll while stopped is harmless.
        try stopper.stopAll()
        #expect(stopper.stoppedThreads == tids)

        stopper.resumeAll()
        #expect(stopper.stoppedThreads.isEmpty)
        var resumed = [Int32: Character]()
        #expect(eventually { resumed = threadStates(of: child.pid); return resumed.count == 4 && !resumed.values.contains("t") },
                "\(resumed)")
        // And running means running: the spinner burns CPU again.
        let cpuResumed = cpuNanoseconds(of: child.pid)
        #expect(eventually { cpuNanoseconds(of: child.pid) > cpuResumed + 20_000_000 })
        #expect(TargetProcess.isAlive(child.pid))

        // The same stopper can stop the process again.
        try stopper.stopAll()
        #expect(threadStates(of: child.pid).values.allSatisfy { $0 == "t" })
        stopper.resumeAll()
        #expect(eventually { !threadStates(of: child.pid).values.contains("t") })
    }

    @Test("release resumes one thread while the others stay stopped; stop signals are blocked meanwhile")
    func releaseOne() throws {
        let child = try startPythonWithThreads()
        defer { child.stop() }
        let mask = signalBit(SIGHUP) | signalBit(SIGINT) | signalBit(SIGTERM)
        try withThreadSignals(unblock: [SIGHUP, SIGINT, SIGTERM]) {
            #expect(try #require(blockedSignals()) & mask == 0)
            let stopper = ThreadStopper(pid: child.pid)
            try stopper.stopAll()
            #expect(try #require(blockedSignals()) & mask == mask, "blocked while the target is held")
            let tids = stopper.stoppedThreads
            #expect(tids.count == 4)
            let released = try #require(tids.last { $0 != child.pid })
            stopper.release(released)
            #expect(stopper.stoppedThreads == tids.filter { $0 != released })
            var states = [Int32: Character]()
            #expect(eventually { states = threadStates(of: child.pid); return states[released] != "t" }, "\(states)")
            states = threadStates(of: child.pid)
            #expect(tids.filter { $0 != released }.allSatisfy { states[$0] == "t" }, "\(states)")
            #expect(try #require(blockedSignals()) & mask == mask, "still holding three threads")
            stopper.release(released) // not held any more: nothing happens
            #expect(stopper.stoppedThreads.count == 3)

            for tid in tids where tid != released { stopper.release(tid) }
            #expect(stopper.stoppedThreads.isEmpty)
            #expect(eventually { !threadStates(of: child.pid).values.contains("t") })
            #expect(try #require(blockedSignals()) & mask == 0, "unblocked once nothing is held")
        }
    }

    @Test("resumeAll leaves a stop signal the caller had blocked itself blocked")
    func callerMaskRestored() throws {
        let child = try ChildProcess("/bin/sleep", ["30"])
        defer { child.stop() }
        #expect(eventually { threadStates(of: child.pid)[child.pid] == "S" })
        try withThreadSignals(block: [SIGHUP], unblock: [SIGINT, SIGTERM]) {
            let stopper = ThreadStopper(pid: child.pid)
            try stopper.stopAll()
            stopper.resumeAll()
            let blocked = try #require(blockedSignals())
            #expect(blocked & signalBit(SIGINT) == 0, "SIGINT was unblocked before and is again")
            #expect(blocked & signalBit(SIGHUP) != 0, "SIGHUP was blocked by the caller before stopAll")
        }
    }

    @Test("deinit resumes a stopped process")
    func deinitResumes() throws {
        let child = try startPythonWithThreads()
        defer { child.stop() }
        do {
            let stopper = ThreadStopper(pid: child.pid)
            try stopper.stopAll()
            withExtendedLifetime(stopper) {
                let states = threadStates(of: child.pid)
                #expect(states.count == 4 && states.values.allSatisfy { $0 == "t" }, "\(states)")
            }
        }
        var states = [Int32: Character]()
        #expect(eventually { states = threadStates(of: child.pid); return states.count == 4 && !states.values.contains("t") },
                "\(states)")
        #expect(TargetProcess.isAlive(child.pid))
    }

    @Test("a single-threaded child (/bin/sleep) stops and resumes")
    func singleThreaded() throws {
        let child = try ChildProcess("/bin/sleep", ["30"])
        defer { child.stop() }
        #expect(eventually { threadStates(of: child.pid)[child.pid] == "S" })
        let stopper = ThreadStopper(pid: child.pid)
        try stopper.stopAll()
        #expect(stopper.stoppedThreads == [child.pid])
        #expect(threadStates(of: child.pid) == [child.pid: "t"])
        stopper.resumeAll()
        #expect(eventually { threadStates(of: child.pid) == [child.pid: "S"] })
    }

    @Test("a process that does not exist throws .exited")
    func missingProcess() {
        let stopper = ThreadStopper(pid: Int32.max - 1)
        #expect(throws: TraceError.exited(pid: Int32.max - 1)) { try stopper.stopAll() }
        #expect(stopper.stoppedThreads.isEmpty)
    }
}
