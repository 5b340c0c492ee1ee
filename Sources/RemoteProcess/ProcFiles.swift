#if canImport(Glibc)
import Glibc
#endif

/// Why a /proc file could not be read.
public enum ProcFileError: Error, Equatable, Sendable {
    case notFound(path: String)
    case permissionDenied(path: String)
    case failed(path: String, errno: Int32)
}

/// Reads small files (mostly under /proc) with plain system calls: /proc files report size 0, so
/// they are read until end of file, and the sampler must not pay for Foundation on its hot path.
public enum ProcFiles {
    /// The whole file as bytes.
    public static func read(_ path: String, limit: Int = 16 << 20) throws(ProcFileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw error(errno, path) }
        defer { close(fd) }
        var result = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw error(errno, path)
            }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
        }
        return result
    }

    /// The whole file as UTF-8 text (invalid bytes repaired).
    public static func text(_ path: String) throws(ProcFileError) -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    /// The target of a symbolic link (e.g. /proc/PID/exe).
    public static func linkTarget(_ path: String) throws(ProcFileError) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        if n < 0 { throw error(errno, path) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Names in a directory (without "." and "..").
    public static func directoryEntries(_ path: String) throws(ProcFileError) -> [String] {
        guard let dir = opendir(path) else { throw error(errno, path) }
        defer { closedir(dir) }
        var names = [String]()
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func error(_ code: Int32, _ path: String) -> ProcFileError {
        switch code {
        case ENOENT, ESRCH, ENOTDIR: return .notFound(path: path)
        case EACCES, EPERM: return .permissionDenied(path: path)
        default: return .failed(path: path, errno: code)
        }
    }
}
