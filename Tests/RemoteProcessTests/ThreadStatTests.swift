import CScaleneSys
import RemoteProcess
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("ThreadStat, SchedStat and ThreadClock")
struct ThreadStatTests {
    @Test("a command with spaces and ')' is cut at the last ')'; utime and stime are fields 14 and 15")
    func commandWithParentheses() throws {
        let line = statLine(command: "a) b (c)", state: "S", utime: 1717, stime: 42)
        #expect(line.split(separator: " ").count == 54, "52 fields, the command itself holding two spaces")
        let stat = try #require(ThreadStat(parsing: Array(line.utf8)))
        #expect(stat == ThreadStat(state: "S", userTicks: 1717, systemTicks: 42, command: "a) b (c)"))
        #expect(!stat.isRunning)

        let tricky = statLine(pid: 9, command: ") R 1 2 3 4 5 6 7 8 9 10 11 12 13 (", state: "t", utime: 5, stime: 6)
        #expect(ThreadStat(parsing: Array(tricky.utf8))
                == ThreadStat(state: "t", userTicks: 5, systemTicks: 6, command: ") R 1 2 3 4 5 6 7 8 9 10 11 12 13 ("))

        let running = try #require(ThreadStat(parsing: Array(statLine(command: "python3", state: "R", utime: 0, stime: 0).utf8)))
        #expect(running.isRunning)
        #expect(running.command == "python3")
        #expect(ThreadStat(parsing: Array(statLine(command: "", state: "D", utime: 3, stime: 4).utf8))
                == ThreadStat(state: "D", userTicks: 3, systemTicks: 4, command: ""))
    }

    @Test("ThreadClock's stat scan agrees on state and stime")
    func clockScan() {
        let line = Array(statLine(command: "a) b (c)", state: "S", utime: 1717, stime: 42).utf8)
        let parsed = line.withUnsafeBytes { ThreadClock.stateAndSystemTicks($0) }
        #expect(parsed?.0 == UInt8(ascii: "S"))
        #expect(parsed?.1 == 42)
        let truncated = Array("1 (x) R 1 2 3 4 5 6 7 8 9 10\n".utf8)
        #expect(truncated.withUnsafeBytes { ThreadClock.stateAndSystemTicks($0) } == nil)
        #expect(Array("no parenthesis".utf8).withUnsafeBytes { ThreadClock.stateAndSystemTicks($0) } == nil)
        #expect(Array("123 456 7\n".utf8).withUnsafeBytes { ThreadClock.firstNumber($0) } == 123)
        #expect(Array("x1".utf8).withUnsafeBytes { ThreadClock.firstNumber($0) } == nil)
    }

    @Test("malformed stat lines give nil")
    func malformedStat() {
        #expect(ThreadStat(parsing: Array("".utf8)) == nil)
        #expect(ThreadStat(parsing: Array("123 no parentheses S 1 2".utf8)) == nil)
        #expect(ThreadStat(parsing: Array("123 )backwards( S 1 2 3 4 5 6 7 8 9 10 11 12".utf8)) == nil)
        #expect(ThreadStat(parsing: Array("123 (short) S 1 2 3 4 5 6 7 8 9 10 11\n".utf8)) == nil, "no stime")
        #expect(ThreadStat(parsing: Array("123 (x) S 1 2 3 4 5 6 7 8 9 10 1x 12\n".utf8)) == nil, "utime not a number")
        #expect(ThreadStat(parsing: Array("123 (x) S 1 2 3 4 5 6 7 8 9 10 11 -12\n".utf8)) == nil, "negative stime")
    }

    @Test("SchedStat: run and wait nanoseconds")
    func schedStat() {
        #expect(SchedStat(parsing: Array("123456789012 98765 42\n".utf8))
                == SchedStat(runNanoseconds: 123_456_789_012, waitNanoseconds: 98765))
        #expect(SchedStat(parsing: Array("0 0 0".utf8)) == SchedStat(runNanoseconds: 0, waitNanoseconds: 0))
        #expect(SchedStat(parsing: Array("5\n".utf8)) == nil)
        #expect(SchedStat(parsing: Array("".utf8)) == nil)
        #expect(SchedStat(parsing: Array("12 x4 1".utf8)) == nil)
        #expect(SchedStat(parsing: Array("99999999999999999999 1 1".utf8)) == nil, "overflow is rejected, not wrapped")
    }

    @Test("our own thread's real stat and schedstat parse")
    func ownThread() throws {
        let tid = scalene_gettid()
        let stat = try #require(ThreadStat(parsing: try ProcFiles.read("/proc/self/task/\(tid)/stat")))
        #expect(stat.state == "R", "a thread reading its own stat is running")
        let comm = try ProcFiles.text("/proc/self/task/\(tid)/comm")
        #expect(stat.command + "\n" == comm)
        let sched = try #require(SchedStat(parsing: try ProcFiles.read("/proc/self/task/\(tid)/schedstat")))
        #expect(sched.runNanoseconds > 0)
    }

    @Test("ThreadClock on our own thread: running, and CPU time grows with a busy loop")
    func threadClock() throws {
        let tid = scalene_gettid()
        let clock = try #require(ThreadClock(pid: getpid(), tid: tid))
        #expect(clock.tid == tid)
        let before = try #require(clock.read())
        #expect(before.state == UInt8(ascii: "R"))
        #expect(before.isRunning)
        spin(cpuNanoseconds: 60_000_000)
        let after = try #require(clock.read())
        #expect(after.isRunning)
        // schedstat can lag the running thread by up to a scheduler tick.
        #expect(after.cpuNanoseconds >= before.cpuNanoseconds + 40_000_000,
                "before \(before.cpuNanoseconds) after \(after.cpuNanoseconds)")
        #expect(after.cpuNanoseconds < before.cpuNanoseconds + 60_000_000_000)
        #expect(after.systemNanoseconds >= before.systemNanoseconds)
        #expect(after.systemNanoseconds % ThreadClock.nanosecondsPerTick == 0, "stat counts whole ticks")
        #expect(ThreadClock.nanosecondsPerTick == 1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK))))
    }

    @Test("ThreadClock of a thread that does not exist is nil; of an exited thread reads nil")
    func goneThread() throws {
        #expect(ThreadClock(pid: getpid(), tid: Int32.max - 1) == nil)
        let child = try ChildProcess("/bin/sleep", ["30"])
        // Right after the spawn it may still be exec'ing (R or D); wait for its sleep.
        #expect(eventually { threadStates(of: child.pid)[child.pid] == "S" })
        let clock = try #require(ThreadClock(pid: child.pid, tid: child.pid))
        let reading = try #require(clock.read())
        #expect(reading.state == UInt8(ascii: "S"))
        #expect(!reading.isRunning)
        child.stop()
        #expect(clock.read() == nil, "the files stay open, but a reaped thread's files read nothing")
    }
}

@Suite("ThreadClock: the futex a blocked thread waits on")
struct BlockedFutexTests {
    func parse(_ text: String) -> UInt64? {
        Array(text.utf8).withUnsafeBytes { ThreadClock.futexAddress($0) }
    }

    @Test("the first argument of a futex call; nothing for other calls or a running thread")
    func syscallLines() {
        #expect(parse("202 0x7f7229b4e6f4 0x89 0x0 0x7ffc 0x0 0xffffffff 0x7ffd 0x7f72\n") == 0x7f7229b4e6f4)
        #expect(parse("202 0x0 0x80 0x2 0x0 0x0 0x0 0x7ffd 0x7f72\n") == 0)
        #expect(parse("61 0xffffffff 0x7ffcf6c57660 0x0 0x0 0x1 0x8 0x7ffc 0x7fe5\n") == nil, "wait4 is no futex")
        #expect(parse("running\n") == nil)
        #expect(parse("2020 0x10 0x0\n") == nil)
        #expect(parse("202 garbage\n") == nil)
        #expect(parse("") == nil)
    }

    @Test("a thread of this process blocked on a futex reports that futex's address")
    func liveThread() throws {
        // A thread waiting on a condition variable sleeps in futex on a word inside it.
        final class Box: @unchecked Sendable {
            var mutex = pthread_mutex_t()
            var cond = pthread_cond_t()
            var tid: Int32 = 0
            var done = false
        }
        let box = Box()
        pthread_mutex_init(&box.mutex, nil)
        pthread_cond_init(&box.cond, nil)
        var thread = pthread_t()
        let pointer = Unmanaged.passRetained(box).toOpaque()
        pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            pthread_mutex_lock(&box.mutex)
            box.tid = scalene_gettid()
            while !box.done { pthread_cond_wait(&box.cond, &box.mutex) }
            pthread_mutex_unlock(&box.mutex)
            return nil
        }, pointer)
        defer {
            pthread_mutex_lock(&box.mutex)
            box.done = true
            pthread_cond_signal(&box.cond)
            pthread_mutex_unlock(&box.mutex)
            pthread_join(thread, nil)
        }
        var address: UInt64?
        for _ in 0..<200 {
            usleep(5_000)
            pthread_mutex_lock(&box.mutex)
            let tid = box.tid
            pthread_mutex_unlock(&box.mutex)
            guard tid != 0, let clock = ThreadClock(pid: getpid(), tid: tid) else { continue }
            if let found = clock.blockedFutex() { address = found; break }
        }
        let start = withUnsafePointer(to: &box.cond) { UInt64(UInt(bitPattern: $0)) }
        let found = try #require(address, "the waiting thread is seen in a futex")
        #expect(found >= start && found < start + UInt64(MemoryLayout<pthread_cond_t>.size), "inside the condition variable")
    }
}
