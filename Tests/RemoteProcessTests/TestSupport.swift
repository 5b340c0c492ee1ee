import CScaleneSys
import RemoteProcess
#if canImport(Glibc)
import Glibc
#endif

/// Errors of the test harness itself (not of the code under test).
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A child process started with posix_spawn (no Foundation: its child monitoring must not race the
/// ptrace waits of `ThreadStopper`). Its stdout is a pipe; it is killed by pid and reaped by `stop()`
/// or on deinit, never looked up by name.
final class ChildProcess {
    let pid: pid_t
    private let output: Int32
    private var pending = [UInt8]()
    private var reaped = false

    init(_ executable: String, _ arguments: [String]) throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw HarnessError("pipe: errno \(errno)") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        // Not the test runner's stderr: a child must never keep the runner's pipes open.
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw HarnessError("posix_spawn \(executable): \(String(cString: strerror(rc)))")
        }
        pid = child
        output = fds[0]
    }

    deinit {
        stop()
        close(output)
    }

    /// Reads stdout until a line starting with `prefix` (returned without the newline).
    func waitForLine(prefix: String, timeoutSeconds: Double = 20) throws -> String {
        let deadline = scalene_monotonic_ns() + UInt64(timeoutSeconds * 1e9)
        while true {
            while let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                if line.hasPrefix(prefix) { return line }
            }
            let now = scalene_monotonic_ns()
            guard now < deadline else { throw HarnessError("no \(prefix) line from pid \(pid) in time") }
            var poller = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(output, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw HarnessError("pid \(pid) closed stdout before printing \(prefix)") }
            pending += chunk[0..<n]
        }
    }

    /// Kills the child by pid and reaps it (idempotent).
    func stop() {
        guard !reaped else { return }
        reaped = true
        _ = kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, __WALL) < 0 && errno == EINTR {}
    }
}

/// The scheduler state letter of every thread of `pid`, read straight from /proc.
func threadStates(of pid: Int32) -> [Int32: Character] {
    var states = [Int32: Character]()
    for name in (try? ProcFiles.directoryEntries("/proc/\(pid)/task")) ?? [] {
        guard let tid = Int32(name), let bytes = try? ProcFiles.read("/proc/\(pid)/task/\(tid)/stat"),
              let close = bytes.lastIndex(of: UInt8(ascii: ")")), close + 2 < bytes.count else { continue }
        states[tid] = Character(Unicode.Scalar(bytes[close + 2]))
    }
    return states
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 3, _ condition: () -> Bool) -> Bool {
    let deadline = scalene_monotonic_ns() + UInt64(seconds * 1e9)
    while true {
        if condition() { return true }
        if scalene_monotonic_ns() > deadline { return false }
        usleep(10_000)
    }
}

/// Burns CPU on the calling thread until it has run for `nanoseconds` of thread CPU time.
func spin(cpuNanoseconds nanoseconds: UInt64) {
    func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
    let start = now()
    var sink: UInt64 = 0
    while now() - start < nanoseconds {
        for i in 0..<10_000 { sink = sink &* 31 &+ UInt64(i) }
    }
    withExtendedLifetime(sink) {}
}

/// Heap memory owned by a test, with its address as the remote reader sees it.
final class LocalBuffer {
    let pointer: UnsafeMutableRawBufferPointer
    var address: UInt64 { UInt64(UInt(bitPattern: pointer.baseAddress!)) }

    init(_ bytes: [UInt8]) {
        pointer = .allocate(byteCount: max(bytes.count, 1), alignment: 16)
        pointer.copyBytes(from: bytes)
    }

    deinit { pointer.deallocate() }
}

/// Two anonymous pages: the first readable and writable, the second PROT_NONE. Reads reaching into
/// the second page fault, and no other thread can map anything there while this exists.
final class GuardedPage {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    let base: UnsafeMutableRawPointer

    init() throws {
        guard let mapped = mmap(nil, 2 * Self.pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mapped != MAP_FAILED else { throw HarnessError("mmap: errno \(errno)") }
        base = mapped
        guard mprotect(base + Self.pageSize, Self.pageSize, PROT_NONE) == 0 else {
            throw HarnessError("mprotect: errno \(errno)")
        }
    }

    deinit { munmap(base, 2 * Self.pageSize) }

    var readable: UInt64 { UInt64(UInt(bitPattern: base)) }
    var protected: UInt64 { readable + UInt64(Self.pageSize) }
}

/// A /proc/PID/task/TID/stat line with every one of the 52 fields, the command in parentheses.
func statLine(pid: Int32 = 123, command: String, state: Character, utime: UInt64, stime: UInt64) -> String {
    // Fields 3..52 (proc(5)) with realistic values for a sleeping thread.
    var fields: [String] = [
        String(state), "1", "123", "123", "34816", "-1", "4194560", "500", "0", "12", "0", // 3-13
        String(utime), String(stime),                                                       // 14-15
        "0", "0", "20", "0", "3", "0", "17", "24567808", "1234", "18446744073709551615",    // 16-25
        "94000000000000", "94000000100000", "140730000000000", "0", "0", "0", "0", "0", "0", "0", // 26-35
        "0", "0", "17", "2", "0", "0", "0",                                                 // 36-42
        "0", "0", "94000000200000", "94000000300000", "94000000400000", "140730000100000",  // 43-48
        "140730000100100", "140730000100100", "140730000200000", "0",                       // 49-52
    ]
    fields.insert("(\(command))", at: 0)
    fields.insert(String(pid), at: 0)
    return fields.joined(separator: " ") + "\n"
}

/// getcwd without Foundation.
func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buffer, buffer.count) != nil else { return "" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The calling thread's blocked-signal mask (SigBlk in /proc/self/task/TID/status).
func blockedSignals() -> UInt64? {
    guard let text = try? ProcFiles.text("/proc/self/task/\(scalene_gettid())/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("SigBlk:") {
        return UInt64(line.dropFirst("SigBlk:".count).trimmingPrefix { $0 == "\t" || $0 == " " }, radix: 16)
    }
    return nil
}

/// Mask bit of `signal` in SigBlk.
func signalBit(_ signal: Int32) -> UInt64 { 1 << UInt64(signal - 1) }

/// Runs `body` with `block` blocked and `unblock` unblocked on the calling thread, then restores
/// the thread's previous mask (pool threads are shared between tests).
func withThreadSignals<T>(block: [Int32] = [], unblock: [Int32] = [], _ body: () throws -> T) rethrows -> T {
    var old = sigset_t()
    pthread_sigmask(SIG_SETMASK, nil, &old)
    defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
    for (how, signals) in [(SIG_BLOCK, block), (SIG_UNBLOCK, unblock)] where !signals.isEmpty {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(how, &set, nil)
    }
    return try body()
}

/// A Python program with four threads: the main thread, a sleeper and a watchdog sleep, one thread
/// spins. It exits by itself when orphaned or after two minutes, so a crashed test leaves nothing
/// behind.
let pythonWithThreadsScript = """
import os, threading, time
parent = os.getppid()
def watchdog():
    deadline = time.monotonic() + 120
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.1)
    os._exit(0)
threading.Thread(target=watchdog, daemon=True).start()
def sleeper():
    while True:
        time.sleep(0.01)
def spinner():
    n = 0
    while True:
        n += 1
threading.Thread(target=sleeper, daemon=True).start()
threading.Thread(target=spinner, daemon=True).start()
print("READY", flush=True)
while True:
    time.sleep(0.01)
"""

/// Starts /usr/bin/python3 with `pythonWithThreadsScript` and waits until its four threads exist.
func startPythonWithThreads() throws -> ChildProcess {
    let child = try ChildProcess("/usr/bin/python3", ["-c", pythonWithThreadsScript])
    _ = try child.waitForLine(prefix: "READY")
    guard eventually({ threadStates(of: child.pid).count == 4 }) else {
        throw HarnessError("pid \(child.pid) does not have 4 threads: \(threadStates(of: child.pid))")
    }
    return child
}

/// Total CPU nanoseconds of every thread of `pid`, from schedstat.
func cpuNanoseconds(of pid: Int32) -> UInt64 {
    var total: UInt64 = 0
    for tid in threadStates(of: pid).keys {
        if let bytes = try? ProcFiles.read("/proc/\(pid)/task/\(tid)/schedstat"), let s = SchedStat(parsing: bytes) {
            total += s.runNanoseconds
        }
    }
    return total
}
