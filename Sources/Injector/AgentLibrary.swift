import RemoteProcess
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// The agent library, read once from a file we have checked: whoever can change that file, or the
/// folder it is in, can run code in every process it is injected into. So it must be a regular
/// file owned by root or by the user running us, and neither it nor its folder may be writable by
/// anyone else. Its bytes are read from the same descriptor that was checked and are what goes
/// into the target (through a memfd there), so the file cannot change between check and use.
public struct AgentLibrary: Sendable {
    /// The file, symbolic links resolved.
    public let path: String
    public let bytes: [UInt8]

    /// Largest library accepted (ours is well under a megabyte).
    static let maximumSize = 16 << 20

    public static func load(_ requested: String) throws(InjectError) -> AgentLibrary {
        guard let resolved = realpath(requested, nil) else {
            throw .agentNotFound(searched: [requested])
        }
        let path = String(cString: resolved)
        free(resolved)
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .agentUnsafe(path: path, reason: "cannot open it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var file = stat()
        guard fstat(fd, &file) == 0 else { throw .agentUnsafe(path: path, reason: "cannot stat it") }
        guard file.st_mode & S_IFMT == S_IFREG else { throw .agentUnsafe(path: path, reason: "it is not a regular file") }
        try check(owner: file.st_uid, mode: file.st_mode, what: "it", path: path)
        let folder = path.lastIndex(of: "/").map { String(path[..<$0]) }.flatMap { $0.isEmpty ? "/" : $0 } ?? "."
        var directory = stat()
        guard stat(folder, &directory) == 0 else { throw .agentUnsafe(path: path, reason: "cannot stat its folder \(folder)") }
        try check(owner: directory.st_uid, mode: directory.st_mode, what: "its folder \(folder)", path: path)
        guard file.st_size > 0, file.st_size <= maximumSize else {
            throw .agentUnsafe(path: path, reason: "its size (\(file.st_size) bytes) is not that of the agent")
        }
        var bytes = [UInt8](repeating: 0, count: Int(file.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .agentUnsafe(path: path, reason: "it could not be read") }
            done += n
        }
        guard bytes.starts(with: [0x7f, 0x45, 0x4c, 0x46]) else { throw .agentUnsafe(path: path, reason: "it is not an ELF file") }
        return AgentLibrary(path: path, bytes: bytes)
    }

    /// Owned by root or by us, and not writable by group or others.
    private static func check(owner: uid_t, mode: mode_t, what: String, path: String) throws(InjectError) {
        let me = geteuid()
        guard owner == 0 || owner == me else {
            // In a user namespace an owner from outside it shows as the overflow uid (65534).
            let outside = owner == overflowUID
                ? " (an owner outside this user namespace shows as \(owner): use a copy owned by this namespace's root, "
                    + "e.g. in a folder of your own named by SCALENE_ATTACH_AGENT)" : ""
            throw .agentUnsafe(path: path, reason: "\(what) is owned by uid \(owner), neither root nor us (uid \(me))" + outside)
        }
        guard mode & 0o022 == 0 else {
            throw .agentUnsafe(path: path, reason: "\(what) can be written by \(mode & 0o002 != 0 ? "anyone" : "its group") "
                               + "(mode \(String(mode & 0o7777, radix: 8))): fix with chmod go-w")
        }
    }

    /// The uid that owners from outside our user namespace show as.
    static var overflowUID: uid_t {
        (try? ProcFiles.text("/proc/sys/kernel/overflowuid")).flatMap { uid_t($0.trimmingWhitespace()) } ?? 65534
    }

    /// The first page: the ELF headers, never relocated. A mapping of a loaded library that starts
    /// with the same bytes is this build of the agent.
    public var headerPage: ArraySlice<UInt8> { bytes.prefix(4096) }
}
