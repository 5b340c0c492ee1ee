import CScaleneSys
import RemoteProcess
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("ProcessClock")
struct ProcessClockTests {
    /// A busy child's clock advances by about the CPU it burns; a sleeping one's does not.
    @Test func followsAnotherProcessCPU() throws {
        let busy = try ChildProcess("/bin/sh", ["-c", "echo READY; while :; do :; done"])
        defer { busy.stop() }
        _ = try busy.waitForLine(prefix: "READY")
        let clock = try #require(ProcessClock(pid: busy.pid))
        let before = try #require(clock.read())
        let wallStart = scalene_monotonic_ns()
        usleep(300_000)
        let after = try #require(clock.read())
        let wall = scalene_monotonic_ns() - wallStart
        // At most the wall time that passed (one thread); at least some of it even on a loaded machine.
        #expect(after > before)
        #expect(after - before <= wall + 20_000_000)
        #expect(after - before >= 20_000_000, "busy child used only \(after - before) ns in \(wall) ns")

        let idle = try ChildProcess("/bin/sh", ["-c", "echo READY; exec sleep 30"])
        defer { idle.stop() }
        _ = try idle.waitForLine(prefix: "READY")
        usleep(100_000)
        let idleClock = try #require(ProcessClock(pid: idle.pid))
        let first = try #require(idleClock.read())
        usleep(200_000)
        #expect(idleClock.read() == first)
    }

    /// Kernel time: a child that only makes system calls shows some; one that only computes shows
    /// (almost) none.
    @Test func kernelTime() throws {
        let syscalls = try ChildProcess("/bin/sh", ["-c", "echo READY; exec dd if=/dev/zero of=/dev/null bs=1 count=100000000"])
        defer { syscalls.stop() }
        _ = try syscalls.waitForLine(prefix: "READY")
        let clock = try #require(ProcessClock(pid: syscalls.pid))
        let before = try #require(clock.kernel())
        let cpuBefore = try #require(clock.read())
        usleep(400_000)
        let kernel = try #require(clock.kernel()) - before
        let cpu = try #require(clock.read()) - cpuBefore
        #expect(kernel > 0 && kernel <= cpu + 20_000_000, "kernel \(kernel) ns of \(cpu) ns")

        let busy = try ChildProcess("/bin/sh", ["-c", "echo READY; while :; do :; done"])
        defer { busy.stop() }
        _ = try busy.waitForLine(prefix: "READY")
        let busyClock = try #require(ProcessClock(pid: busy.pid))
        let busyBefore = try #require(busyClock.kernel())
        usleep(300_000)
        #expect(try #require(busyClock.kernel()) - busyBefore <= 40_000_000)
    }

    @Test func noClockForAMissingProcess() throws {
        // Int32.max once wrapped around to our own process's clock.
        #expect(ProcessClock(pid: Int32.max) == nil)
        #expect(ProcessClock(pid: -1) == nil)
        let child = try ChildProcess("/bin/sh", ["-c", "exit 0"])
        child.stop()
        #expect(ProcessClock(pid: child.pid) == nil)
    }
}
