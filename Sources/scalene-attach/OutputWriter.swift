import Foundation
import Profiler
import Reports
#if canImport(Glibc)
import Glibc
#endif

/// Writes the reports a profile run asked for.
struct OutputWriter {
    var options: ProfileOptions

    /// Writes --output (or stdout) in the chosen format and --json. Files are replaced atomically.
    func write(_ profile: Profile, final: Bool) throws {
        let sources = SourceFiles(pid: profile.end == .targetExited ? nil : profile.pid)
        let main: Data
        switch options.format {
        case .table:
            main = Data(TableReport(profile: profile, sources: sources, reduced: options.reduced,
                                    perThread: options.threads).render().utf8)
        case .json:
            main = ScaleneJSONReport(profile: profile, sources: sources, reduced: options.reduced).render()
        case .collapsed:
            main = Data(CollapsedStacksReport(profile: profile).render().utf8)
        case .speedscope:
            main = SpeedscopeReport(profile: profile).render()
        }
        if let path = options.output {
            try Self.replace(path, with: main)
        } else if final {
            FileHandle.standardOutput.write(main)
            if options.format != .table && options.format != .collapsed { FileHandle.standardOutput.write(Data("\n".utf8)) }
        }
        if let path = options.json {
            try Self.replace(path, with: ScaleneJSONReport(profile: profile, sources: sources, reduced: options.reduced).render())
        }
    }

    /// Writes to a temporary file beside `path` and renames it over `path`, so a reader never sees
    /// a half-written profile. A path that exists and is not a regular file (`/dev/null`, a FIFO,
    /// a terminal) is written in place: renaming over it would replace the device with a file.
    static func replace(_ path: String, with data: Data) throws {
        var status = stat()
        if stat(path, &status) == 0 && (status.st_mode & S_IFMT) != S_IFREG {
            guard let handle = FileHandle(forWritingAtPath: path) else {
                throw Failure("cannot write \(path): \(String(cString: strerror(errno)))", .internalError)
            }
            defer { try? handle.close() }
            do { try handle.write(contentsOf: data) } catch {
                throw Failure("cannot write \(path): \(error.localizedDescription)", .internalError)
            }
            return
        }
        let temporary = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw Failure("cannot write \(temporary): \(String(cString: strerror(errno)))", .internalError)
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw Failure("cannot write \(path): \(reason)", .internalError)
        }
    }
}
