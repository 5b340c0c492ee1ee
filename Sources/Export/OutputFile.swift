import CScaleneSys
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// Why a file could not be written, by kind: each kind is reported once, not at every snapshot.
public struct WriteFailure: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// ENOSPC, EDQUOT.
        case diskFull
        /// EFBIG: over the file-size limit (RLIMIT_FSIZE) or the filesystem's.
        case fileTooLarge
        /// The folder is gone (ENOENT, ENOTDIR).
        case folderMissing
        /// EACCES, EPERM, EROFS.
        case notPermitted
        case other(errno: Int32)
    }

    public var kind: Kind
    public var path: String
    /// The system's words for it ("No space left on device").
    public var reason: String

    init(errno code: Int32, path: String) {
        switch code {
        case ENOSPC, EDQUOT: kind = .diskFull
        case EFBIG: kind = .fileTooLarge
        case ENOENT, ENOTDIR: kind = .folderMissing
        case EACCES, EPERM, EROFS: kind = .notPermitted
        default: kind = .other(errno: code)
        }
        self.path = path
        reason = String(cString: strerror(code))
    }

    public var description: String { "cannot write \(path): \(reason)" }
}

/// One output file (`--output`, `--json`, `--html`), written atomically: into a temporary file in
/// the same folder, flushed to disk, then renamed over the target, so a reader never sees a
/// half-written profile and a failed write (disk full, file-size limit) leaves no partial file
/// (the temporary one is removed). With `keep`, snapshots are timestamped files beside it
/// (`NAME.20261201T153000.123Z.EXT`), the oldest removed beyond `keep`.
///
/// The folder is held open between writes, as a log file would be: when it is renamed (log
/// rotation), snapshots follow it until `reopen()` (SIGHUP) opens the path again. A folder that
/// was deleted is looked up by its path again at the next write.
///
/// A path that is not a regular file (`/dev/null`, a FIFO, `/dev/stdout`) is written in place:
/// renaming over it would replace the device with a file. Not thread-safe: one writer thread.
public final class OutputFile {
    public let path: String
    public let keep: Int?
    let folder: String
    let name: String
    /// `NAME` and `.EXT` of the timestamped files ("profile" and ".pb.gz" for profile.pb.gz).
    let stem: String
    let suffix: String
    private var folderFD: Int32 = -1
    private var temporaryCount = 0
    private var lastStamp = ""
    private var stampRepeats = 0

    /// The path of one process's file when several processes are recorded: `dir/name.ext` →
    /// `dir/name.PID.ext` (`dir/name` → `dir/name.PID`; a leading dot is part of the name).
    public static func path(_ path: String, withPID pid: Int32) -> String {
        let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        let name = path[slash...]
        guard let dot = name.dropFirst().firstIndex(of: ".") else { return "\(path).\(pid)" }
        return "\(path[..<dot]).\(pid)\(path[dot...])"
    }

    public init(path: String, keep: Int? = nil) {
        self.path = path
        self.keep = keep
        // Absolute (against the current folder now), as a file URL made it before.
        let absolute = Path.absolute(path)
        folder = Path.directory(of: absolute)
        name = Path.lastComponent(of: absolute)
        (stem, suffix) = Self.split(name)
    }

    deinit { if folderFD >= 0 { close(folderFD) } }

    /// "profile.pb.gz" → ("profile", ".pb.gz"); "out.json" → ("out", ".json"); "table" → ("table", "").
    static func split(_ name: String) -> (String, String) {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count > 1, !parts[0].isEmpty else { return (name, "") }
        var suffix = "." + parts.removeLast()
        if suffix == ".gz" && parts.count > 1 { suffix = "." + parts.removeLast() + suffix }
        return (parts.joined(separator: "."), suffix)
    }

    /// Closes the folder; the next write opens the path again (SIGHUP).
    public func reopen() {
        if folderFD >= 0 { close(folderFD) }
        folderFD = -1
    }

    /// Writes a snapshot: a new timestamped file with `keep` (the oldest beyond `keep` removed),
    /// else the file itself. Returns the name written.
    @discardableResult
    public func writeSnapshot(_ data: [UInt8], atNanoseconds time: UInt64 = scalene_realtime_ns()) throws(WriteFailure) -> String {
        // A device (`/dev/null`, a FIFO) is written in place: no timestamped files beside it.
        guard let keep, !isDevice else {
            try write(data, as: name)
            return path
        }
        let stamped = "\(stem).\(timestamp(nanoseconds: time))\(suffix)"
        try write(data, as: stamped)
        rotate(keeping: keep)
        return Path.join(folder, stamped)
    }

    /// Whether the path exists and is not a regular file or a folder.
    var isDevice: Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        let type = info.st_mode & S_IFMT
        return type != S_IFREG && type != S_IFDIR
    }

    /// Replaces the file itself (the final report).
    public func write(_ data: [UInt8]) throws(WriteFailure) {
        try write(data, as: name)
    }

    /// The timestamped snapshot files now in the folder, oldest first.
    public func snapshots() -> [String] {
        guard let fd = try? openFolder() else { return [] }
        return entries(fd).filter(isSnapshot).sorted { stampKey($0) < stampKey($1) }.map { Path.join(folder, $0) }
    }

    // MARK: - Writing

    private func write(_ data: [UInt8], as file: String) throws(WriteFailure) {
        let target = Path.join(folder, file)
        var info = stat()
        if stat(target, &info) == 0 && (info.st_mode & S_IFMT) != S_IFREG {
            try writeInPlace(data, target)
            return
        }
        let fd: Int32
        do { fd = try openFolder() } catch {
            throw error
        }
        temporaryCount += 1
        let temporary = ".\(file).tmp-\(getpid())-\(temporaryCount)"
        let out = openat(fd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard out >= 0 else {
            let code = errno
            if code == ENOENT { reopen() } // the folder was deleted: look it up again next time
            throw WriteFailure(errno: code, path: target)
        }
        var failure: Int32 = 0
        if !Self.writeAll(out, data) { failure = errno }
        // Flushed before the rename, so that after a crash the file is the old one or the new one.
        if failure == 0 && fdatasync(out) != 0 && errno != EINVAL { failure = errno }
        if close(out) != 0 && failure == 0 { failure = errno }
        if failure == 0 && renameat(fd, temporary, fd, file) != 0 { failure = errno }
        if failure != 0 {
            unlinkat(fd, temporary, 0)
            throw WriteFailure(errno: failure, path: target)
        }
    }

    private func writeInPlace(_ data: [UInt8], _ target: String) throws(WriteFailure) {
        let out = open(target, O_WRONLY | O_CLOEXEC)
        guard out >= 0 else { throw WriteFailure(errno: errno, path: target) }
        defer { close(out) }
        if !Self.writeAll(out, data) { throw WriteFailure(errno: errno, path: target) }
    }

    /// Writes all of `data` to `fd` (partial writes and EINTR retried); false with errno set on failure.
    public static func writeAll(_ fd: Int32, _ data: [UInt8]) -> Bool {
        data.withUnsafeBytes { buffer in
            guard var pointer = buffer.baseAddress else { return true }
            var remaining = buffer.count
            while remaining > 0 {
                let written = Glibc.write(fd, pointer, remaining)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                if written == 0 {
                    errno = EIO
                    return false
                }
                pointer += written
                remaining -= written
            }
            return true
        }
    }

    private func openFolder() throws(WriteFailure) -> Int32 {
        if folderFD >= 0 { return folderFD }
        let fd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw WriteFailure(errno: errno, path: path) }
        folderFD = fd
        return fd
    }

    // MARK: - Rotation

    /// UTC, to the millisecond, so names sort in time order ("20261201T153000.123Z"); a second
    /// snapshot in the same millisecond gets "-1", "-2"...
    func timestamp(nanoseconds: UInt64) -> String {
        let milliseconds = Int64(nanoseconds / 1_000_000)
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var stamp = String(printf: "%04d%02d%02dT%02d%02d%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                           Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec),
                           Int(milliseconds % 1000))
        if stamp == lastStamp {
            stampRepeats += 1
            stamp += "-\(stampRepeats)"
        } else {
            lastStamp = stamp
            stampRepeats = 0
        }
        return stamp
    }

    /// Whether a folder entry is one of our timestamped snapshots: `STEM.` + a stamp + `SUFFIX`,
    /// nothing else (no other file is ever removed).
    func isSnapshot(_ entry: String) -> Bool {
        guard entry.hasPrefix(stem + "."), entry.hasSuffix(suffix) else { return false }
        let middle = entry.dropFirst(stem.count + 1).dropLast(suffix.count)
        let stamp = Array(middle.utf8)
        guard stamp.count >= 20 else { return false }
        func digits(_ range: Range<Int>) -> Bool { range.allSatisfy { stamp[$0] >= 48 && stamp[$0] <= 57 } }
        guard digits(0..<8), stamp[8] == UInt8(ascii: "T"), digits(9..<15), stamp[15] == UInt8(ascii: "."),
              digits(16..<19), stamp[19] == UInt8(ascii: "Z") else { return false }
        if stamp.count == 20 { return true }
        return stamp[20] == UInt8(ascii: "-") && stamp.count > 21 && digits(21..<stamp.count)
    }

    private func rotate(keeping count: Int) {
        guard let fd = try? openFolder() else { return }
        let existing = entries(fd).filter(isSnapshot).sorted { stampKey($0) < stampKey($1) }
        for old in existing.dropLast(max(0, count)) { unlinkat(fd, old, 0) }
    }

    /// Chronological order of snapshot names: by stamp, then by repeat number ("-2" before "-10").
    func stampKey(_ entry: String) -> StampKey {
        let middle = entry.dropFirst(stem.count + 1).dropLast(suffix.count)
        return StampKey(stamp: String(middle.prefix(20)), repeat: Int(middle.dropFirst(21)) ?? 0)
    }

    struct StampKey: Comparable {
        var stamp: String
        var `repeat`: Int
        static func < (a: StampKey, b: StampKey) -> Bool { (a.stamp, a.repeat) < (b.stamp, b.repeat) }
    }

    private func entries(_ fd: Int32) -> [String] {
        let copy = dup(fd)
        guard copy >= 0, let directory = fdopendir(copy) else { return [] }
        defer { closedir(directory) }
        rewinddir(directory)
        var names = [String]()
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
