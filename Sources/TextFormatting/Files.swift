#if canImport(Glibc)
import Glibc
#endif

/// Why a file or folder could not be read: the path and the system's error number.
public struct FileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var errno: Int32

    public init(path: String, errno: Int32) {
        self.path = path
        self.errno = errno
    }

    /// The system's words for it ("No such file or directory").
    public var reason: String { String(cString: strerror(errno)) }

    public var description: String { "\(path): \(reason)" }
}

/// The few file-system calls the tool makes, on Glibc directly: what Foundation's `Data`,
/// `String(contentsOfFile:)` and `FileManager` did here, without linking Foundation.
public enum FileSystem {
    /// The whole content of a file (read until end of file, so /proc files whose size says 0 read
    /// whole). A file larger than `limit` bytes (a device such as /dev/zero never ends) is refused
    /// with EFBIG.
    public static func readFile(_ path: String, limit: Int = 1 << 30) throws(FileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        let sizeHint = fstat(fd, &info) == 0 && info.st_size > 0 ? Int(clamping: info.st_size) : 0
        var bytes = [UInt8](repeating: 0, count: min(limit, max(4096, sizeHint + 1)))
        var count = 0
        while true {
            if count == bytes.count {
                guard bytes.count < limit else { throw FileError(path: path, errno: EFBIG) }
                bytes.append(contentsOf: repeatElement(0, count: min(limit - bytes.count, bytes.count)))
            }
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, errno: errno)
            }
            if n == 0 { break }
            count += n
        }
        bytes.removeSubrange(count...)
        return bytes
    }

    /// A text file as UTF-8 (a leading byte-order mark dropped); nil when it cannot be read or is
    /// not valid UTF-8.
    public static func readText(_ path: String) -> String? {
        guard var bytes = try? readFile(path) else { return nil }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        return String(validating: bytes, as: UTF8.self)
    }

    /// The names in a folder, without "." and "..", in the order the system lists them.
    public static func entries(of folder: String) throws(FileError) -> [String] {
        guard let directory = opendir(folder) else { throw FileError(path: folder, errno: errno) }
        defer { closedir(directory) }
        var names = [String]()
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Whether we may read the file (access(2) with R_OK).
    public static func isReadable(_ path: String) -> Bool { access(path, R_OK) == 0 }

    /// Whether we may execute the file (access(2) with X_OK; a folder counts, as with
    /// `FileManager.isExecutableFile`).
    public static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }
}
