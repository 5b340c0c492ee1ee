import Foundation
import LiveView
import Profiler
import Reports
#if canImport(Glibc)
import Glibc
#endif

/// Writes the reports a profile run asked for.
struct OutputWriter {
    var options: ProfileOptions

    /// The table's width: the terminal's when the table goes to one, else 120 columns.
    var tableWidth: Int {
        if options.output == nil, let size = Terminal.size(fd: 1) { return size.columns }
        return 120
    }

    /// Writes --output (or stdout) in the chosen format, --json and --html. Files are replaced
    /// atomically.
    func write(_ profile: Profile, final: Bool) throws {
        let sources = SourceFiles(pid: profile.end == .targetExited ? nil : profile.pid)
        let main: Data
        switch options.format {
        case .table:
            main = Data(TableReport(profile: profile, sources: sources, detail: options.tableDetail,
                                    perThread: options.threads, width: tableWidth).render().utf8)
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
        if let path = options.html {
            let report: HTMLReport
            do { report = try HTMLReport(profile: profile, sources: sources) } catch {
                throw Failure("cannot make the HTML report: \(error)", .internalError)
            }
            try Self.replace(path, with: report.render())
        }
    }

    /// Writes to a temporary file beside `path` and renames it over `path`, so a reader never sees
    /// a half-written profile.
    ///
    /// A path that is not a regular file (`/dev/null`, a FIFO, `/dev/stdout`) is written in place:
    /// renaming over it would replace the device with a file (run as root, `--output /dev/null`
    /// turned /dev/null into a regular file for the whole machine).
    static func replace(_ path: String, with data: Data) throws {
        var info = stat()
        if stat(path, &info) == 0 && (info.st_mode & S_IFMT) != S_IFREG {
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
