import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// Why a /proc file could not be read.
public enum ProcFileError: Error, Equatable, Sendable {
    case notFound(path: String)
    case permissionDenied(path: String)
    case failed(path: String, errno: Int32)
}

/// Reads small files (mostly under /proc), through `FileSystem` (read until end of file: /proc
/// files report size 0), with the errors a reader of a process tells apart.
public enum ProcFiles {
    /// The whole file as bytes; a file longer than `limit` bytes is an error (EFBIG).
    public static func read(_ path: String, limit: Int = 16 << 20) throws(ProcFileError) -> [UInt8] {
        do { return try FileSystem.readFile(path, limit: limit) } catch { throw self.error(error.errno, path) }
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
        do { return try FileSystem.entries(of: path) } catch { throw self.error(error.errno, path) }
    }

    static func error(_ code: Int32, _ path: String) -> ProcFileError {
        switch code {
        case ENOENT, ESRCH, ENOTDIR: return .notFound(path: path)
        case EACCES, EPERM: return .permissionDenied(path: path)
        default: return .failed(path: path, errno: code)
        }
    }
}
