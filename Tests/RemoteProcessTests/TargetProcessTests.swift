import CScaleneSys
import RemoteProcess
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("TargetProcess and ProcFiles")
struct TargetProcessTests {
    @Test("our own process: threads, executable, command line, user")
    func ownProcess() throws {
        let process = try TargetProcess(pid: getpid())
        #expect(process.isAlive)
        #expect(try process.threadIDs().contains(scalene_gettid()))
        #expect(try process.threadIDs() == process.threadIDs().sorted())
        #expect(try process.executablePath() == ProcFiles.linkTarget("/proc/self/exe"))
        #expect(process.commandLine() == CommandLine.arguments)
        #expect(process.userID() == getuid())
        #expect(process.groupID() == getgid())
        #expect(process.threadStat(scalene_gettid())?.state == "R")
        #expect(process.threadStat(Int32.max - 1) == nil)
        #expect(process.hostPath("/usr/lib/libpython3.so") == "/proc/\(getpid())/root/usr/lib/libpython3.so")
        #expect(process.hostPath("relative") == "/proc/\(getpid())/root/relative")
        #expect(try process.memoryMap().mappings.count > 5)
    }

    @Test("missing pids, pid 0 and a zombie are rejected with the right error")
    func rejected() throws {
        #expect(throws: ProcessAccessError.noSuchProcess(pid: 0)) { try TargetProcess(pid: 0) }
        #expect(throws: ProcessAccessError.noSuchProcess(pid: -5)) { try TargetProcess(pid: -5) }
        #expect(throws: ProcessAccessError.noSuchProcess(pid: Int32.max - 1)) { try TargetProcess(pid: Int32.max - 1) }

        let child = try ChildProcess("/bin/true", [])
        defer { child.stop() }
        // Not reaped yet: a zombie.
        #expect(eventually { threadStates(of: child.pid)[child.pid] == "Z" })
        #expect(!TargetProcess.isAlive(child.pid))
        #expect(throws: ProcessAccessError.exited(pid: child.pid)) { try TargetProcess(pid: child.pid) }
    }

    @Test("ProcFiles reports missing files, directories and links precisely")
    func procFiles() throws {
        #expect(throws: ProcFileError.notFound(path: "/proc/self/no-such-file")) {
            try ProcFiles.read("/proc/self/no-such-file")
        }
        #expect(throws: ProcFileError.failed(path: "/proc/self/task", errno: EISDIR)) {
            try ProcFiles.read("/proc/self/task")
        }
        let status = try ProcFiles.text("/proc/self/status")
        #expect(status.contains("Pid:\t\(getpid())\n"))
        #expect(try ProcFiles.linkTarget("/proc/self/cwd") == currentDirectory())
        let tasks = try ProcFiles.directoryEntries("/proc/self/task")
        #expect(tasks.contains(String(scalene_gettid())))
        #expect(!tasks.contains(".") && !tasks.contains(".."))
    }
}
