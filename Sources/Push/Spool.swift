import TextFormatting
import Threads
#if canImport(Glibc)
import Glibc
#endif

/// Snapshots kept on disk while the server cannot take them, oldest first, within a bound.
///
/// Each snapshot is one file, `MILLIS-FROM-UNTIL-SEQ.pprof` (MILLIS, the interval's start, orders
/// them), written to a temporary name and renamed, so a crash never leaves a partial one. Before a
/// file is written, the oldest are deleted until it fits: the folder never holds more than
/// `maxBytes`, temporary file included. Files left by an earlier run with the same folder are
/// kept and sent first. Safe to use from several threads.
public final class Spool: @unchecked Sendable {
    public let directory: String
    public let maxBytes: UInt64
    private let lock = ConditionLock()
    /// Spooled files, oldest first, with their sizes.
    private var entries: [(name: String, size: UInt64)] = []
    private var bytes: UInt64 = 0
    private var sequence = 0
    /// Snapshots deleted (or never written) to keep within the bound.
    private var droppedCount = 0

    /// Makes the folder (0700) if needed, refusing a symlink or a folder of another user, and
    /// lists the snapshots already in it.
    public init(directory: String, maxBytes: UInt64) throws(PushError) {
        self.directory = directory
        self.maxBytes = maxBytes
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw .spool(path: directory, reason: String(cString: strerror(errno)))
        }
        var info = stat()
        guard lstat(directory, &info) == 0 else { throw .spool(path: directory, reason: String(cString: strerror(errno))) }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { throw .spool(path: directory, reason: "not a folder (or a symbolic link)") }
        guard info.st_uid == geteuid() else { throw .spool(path: directory, reason: "owned by another user") }
        if (info.st_mode & 0o077) != 0 && chmod(directory, 0o700) != 0 {
            throw .spool(path: directory, reason: "cannot make it private: \(String(cString: strerror(errno)))")
        }
        let names = (try? FileSystem.entries(of: directory)) ?? []
        for name in names.sorted() {
            let path = directory + "/" + name
            if name.hasPrefix(".tmp-") { unlink(path); continue }
            guard Self.parse(name) != nil, stat(path, &info) == 0 else { continue }
            entries.append((name, UInt64(info.st_size)))
            bytes += UInt64(info.st_size)
        }
    }

    public var count: Int { locked { entries.count } }
    public var totalBytes: UInt64 { locked { bytes } }
    public var dropped: Int { locked { droppedCount } }
    public var isEmpty: Bool { count == 0 }

    /// Stores a snapshot. Returns how many snapshots were dropped for it (the oldest, or this one
    /// when it alone is larger than the bound).
    @discardableResult
    public func store(_ snapshot: PushSnapshot) throws(PushError) -> Int {
        lock.lock()
        defer { lock.unlock() }
        let size = UInt64(snapshot.profile.count)
        guard size <= maxBytes else {
            droppedCount += 1
            return 1
        }
        var dropped = 0
        while bytes + size > maxBytes, !entries.isEmpty {
            let oldest = entries.removeFirst()
            unlink(directory + "/" + oldest.name)
            bytes -= oldest.size
            dropped += 1
        }
        droppedCount += dropped
        sequence += 1
        let name = String(printf: "%015lld-%d-%d-%06d.pprof", snapshot.startMilliseconds, snapshot.from, snapshot.until,
                          sequence % 1_000_000)
        let temporary = directory + "/.tmp-" + name
        let final = directory + "/" + name
        do throws(PushError) {
            try Self.write(snapshot.profile, to: temporary)
            guard rename(temporary, final) == 0 else { throw .spool(path: directory, reason: String(cString: strerror(errno))) }
        } catch {
            unlink(temporary)
            droppedCount += 1
            throw error
        }
        // Keep the list ordered by name (a snapshot that failed late may be older than spooled ones).
        let index = entries.firstIndex { $0.name > name } ?? entries.endIndex
        entries.insert((name, size), at: index)
        bytes += size
        return dropped
    }

    /// The oldest spooled snapshot, read back (nil when the spool is empty). A file that cannot be
    /// read is forgotten and the next one returned.
    public func oldest() -> (name: String, snapshot: PushSnapshot)? {
        lock.lock()
        defer { lock.unlock() }
        while let first = entries.first {
            let path = directory + "/" + first.name
            if let data = try? FileSystem.readFile(path), let parsed = Self.parse(first.name) {
                return (first.name, PushSnapshot(from: parsed.from, until: parsed.until, startMilliseconds: parsed.millis, profile: data))
            }
            entries.removeFirst()
            bytes -= first.size
            unlink(path)
        }
        return nil
    }

    /// Deletes a snapshot once the server has it (or refused it for good).
    public func remove(_ name: String) {
        lock.lock()
        defer { lock.unlock() }
        guard let index = entries.firstIndex(where: { $0.name == name }) else { return }
        unlink(directory + "/" + name)
        bytes -= entries[index].size
        entries.remove(at: index)
    }

    static func parse(_ name: String) -> (millis: Int64, from: Int, until: Int)? {
        guard name.hasSuffix(".pprof") else { return nil }
        let parts = name.dropLast(6).split(separator: "-")
        guard parts.count == 4, let millis = Int64(parts[0]), let from = Int(parts[1]), let until = Int(parts[2]) else { return nil }
        return (millis, from, until)
    }

    private static func write(_ data: [UInt8], to path: String) throws(PushError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .spool(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        let failure: Int32? = data.withUnsafeBytes { raw -> Int32? in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += written
            }
            return nil
        }
        if let failure { throw .spool(path: path, reason: String(cString: strerror(failure))) }
    }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}
