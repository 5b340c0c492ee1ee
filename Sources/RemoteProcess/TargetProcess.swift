#if canImport(Glibc)
import Glibc
#endif

/// Why a process cannot be inspected.
public enum ProcessAccessError: Error, Equatable, Sendable {
    /// No process has this pid.
    case noSuchProcess(pid: Int32)
    /// The process exists but has exited (a zombie) or exited while being read.
    case exited(pid: Int32)
    /// The kernel refuses us access to the process's memory.
    case permissionDenied(pid: Int32)
    /// Reading the process's memory (`process_vm_readv`) is refused by a seccomp filter on *our*
    /// process, although the kernel's access check passed: a container's default profile (Docker's
    /// blocks the call unless the container has CAP_SYS_PTRACE).
    case memoryReadsFiltered(pid: Int32)
    /// Anything else, with a human-readable detail.
    case failed(pid: Int32, detail: String)
}

/// A process we inspect from outside, through /proc and remote memory reads.
public struct TargetProcess: Sendable {
    public let pid: Int32
    public let memory: RemoteMemory
    /// The memory map read when the process was opened (for discovery; call `memoryMap()` for a
    /// fresh one).
    public let initialMap: MemoryMap

    /// Checks that the process exists, is alive, and that we may read its memory.
    public init(pid: Int32) throws(ProcessAccessError) {
        guard pid > 0 else { throw .noSuchProcess(pid: pid) }
        self.pid = pid
        self.memory = RemoteMemory(pid: pid)
        guard let statBytes = try? ProcFiles.read("/proc/\(pid)/stat") else { throw .noSuchProcess(pid: pid) }
        guard let stat = ThreadStat(parsing: statBytes) else {
            throw .failed(pid: pid, detail: "unreadable /proc/\(pid)/stat")
        }
        if stat.state == "Z" || stat.state == "X" { throw .exited(pid: pid) }
        // Reading the map needs the same permission as reading memory (PTRACE_MODE_READ).
        let map: MemoryMap
        do {
            map = try MemoryMap.read(pid: pid)
        } catch {
            throw Self.translate(error, pid: pid)
        }
        initialMap = map
        // Confirm memory access itself with one small read of a readable mapping.
        if let readable = map.mappings.first(where: { $0.readable && $0.path != "[vvar]" && $0.path != "[vsyscall]" }) {
            do {
                _ = try memory.integer(UInt8.self, at: readable.start)
            } catch .permissionDenied {
                // The maps were readable, so the ptrace access check passed: a refusal of the read
                // itself comes from a filter on our system calls.
                throw Self.underSeccompFilter ? .memoryReadsFiltered(pid: pid) : .permissionDenied(pid: pid)
            } catch .processGone {
                throw .exited(pid: pid)
            } catch {
                // An unreadable first mapping is not a permission problem.
            }
        }
    }

    /// Maps a /proc read failure to what it means for this process.
    public static func translate(_ error: ProcFileError, pid: Int32) -> ProcessAccessError {
        switch error {
        case .notFound:
            return isAlive(pid) ? .failed(pid: pid, detail: "\(error)") : .exited(pid: pid)
        case .permissionDenied:
            return .permissionDenied(pid: pid)
        case .failed(let path, let code):
            return .failed(pid: pid, detail: "\(path): \(String(cString: strerror(code)))")
        }
    }

    /// Maps a memory read failure to what it means for this process.
    public static func translate(_ error: MemoryReadError, pid: Int32) -> ProcessAccessError {
        switch error {
        case .processGone: return .exited(pid: pid)
        case .permissionDenied: return .permissionDenied(pid: pid)
        case .unmapped(let address, let length):
            return isAlive(pid) ? .failed(pid: pid, detail: "unmapped read of \(length) bytes at 0x\(String(address, radix: 16))")
                                : .exited(pid: pid)
        case .failed(let code): return .failed(pid: pid, detail: String(cString: strerror(code)))
        }
    }

    /// Whether this process runs under a seccomp filter (`Seccomp: 2` in /proc/self/status).
    public static var underSeccompFilter: Bool {
        guard let text = try? ProcFiles.text("/proc/self/status") else { return false }
        return text.split(separator: "\n").contains { $0.hasPrefix("Seccomp:") && $0.hasSuffix("2") }
    }

    /// Whether the process still exists and has not exited.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard let bytes = try? ProcFiles.read("/proc/\(pid)/stat"), let stat = ThreadStat(parsing: bytes) else {
            return false
        }
        return stat.state != "Z" && stat.state != "X"
    }

    public var isAlive: Bool { Self.isAlive(pid) }

    public func memoryMap() throws(ProcessAccessError) -> MemoryMap {
        do { return try MemoryMap.read(pid: pid) } catch { throw Self.translate(error, pid: pid) }
    }

    /// The path of the executable as the process sees it.
    public func executablePath() throws(ProcessAccessError) -> String {
        do { return try ProcFiles.linkTarget("/proc/\(pid)/exe") } catch { throw Self.translate(error, pid: pid) }
    }

    /// A path the process sees, as we can open it: through /proc/PID/root, so that binaries inside a
    /// container (another mount namespace) are the ones the process really mapped.
    public func hostPath(_ path: String) -> String {
        "/proc/\(pid)/root" + (path.hasPrefix("/") ? path : "/" + path)
    }

    /// Kernel thread ids of every thread, ascending.
    public func threadIDs() throws(ProcessAccessError) -> [Int32] {
        do {
            return try ProcFiles.directoryEntries("/proc/\(pid)/task").compactMap { Int32($0) }.sorted()
        } catch {
            throw Self.translate(error, pid: pid)
        }
    }

    /// The scheduler state of one thread, or nil if the thread is gone.
    public func threadStat(_ tid: Int32) -> ThreadStat? {
        guard let bytes = try? ProcFiles.read("/proc/\(pid)/task/\(tid)/stat") else { return nil }
        return ThreadStat(parsing: bytes)
    }

    /// The process's command line arguments.
    public func commandLine() -> [String] {
        guard let bytes = try? ProcFiles.read("/proc/\(pid)/cmdline") else { return [] }
        return bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            .dropLast(bytes.last == 0 ? 1 : 0).map { $0 }
    }

    /// The real user id the process runs as.
    public func userID() -> UInt32? { statusNumber("Uid:") }

    /// The real group id the process runs as.
    public func groupID() -> UInt32? { statusNumber("Gid:") }

    private func statusNumber(_ field: String) -> UInt32? {
        guard let text = try? ProcFiles.text("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { UInt32($0) }
        }
        return nil
    }
}
