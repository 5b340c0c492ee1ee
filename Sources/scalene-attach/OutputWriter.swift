import CScaleneSys
import Export
import LiveView
import Profiler
import Reports
#if canImport(Glibc)
import Glibc
#endif

/// The reports of one profile, rendered: the main one (--output or stdout) and --json, --html.
struct RenderedReports: Sendable {
    var main: [UInt8]
    var json: [UInt8]?
    var html: [UInt8]?
}

/// Renders the reports a profile run asked for and writes them to their files.
struct OutputWriter {
    var options: ProfileOptions

    /// The table's width: the terminal's when the table goes to one, else 120 columns.
    var tableWidth: Int {
        if options.output == nil, let size = Terminal.size(fd: 1) { return size.columns }
        return 120
    }

    /// The main report of `main` (the whole run, or an interval with --snapshot-mode delta), and
    /// --json and --html of `whole` (always the whole run: Scalene's viewer shows a run).
    func render(main: Profile, whole: Profile) throws(Failure) -> RenderedReports {
        let sources = SourceFiles(pid: whole.end == .targetExited ? nil : whole.pid)
        var reports = RenderedReports(main: [])
        switch options.format {
        case .table:
            reports.main = Array(TableReport(profile: main, sources: sources, detail: options.tableDetail,
                                             perThread: options.threads, width: tableWidth).render().utf8)
        case .json:
            reports.main = ScaleneJSONReport(profile: main, sources: sources, reduced: options.reduced).render()
        case .collapsed:
            reports.main = Array(CollapsedStacksReport(profile: main).render().utf8)
        case .speedscope:
            reports.main = SpeedscopeReport(profile: main).render()
        case .pprof:
            reports.main = PprofReport(profile: main).render()
        }
        if options.json != nil {
            reports.json = ScaleneJSONReport(profile: whole, sources: sources, reduced: options.reduced).render()
        }
        if options.html != nil {
            do { reports.html = try HTMLReport(profile: whole, sources: sources).render() } catch {
                throw Failure("cannot make the HTML report: \(error)", .internalError)
            }
        }
        return reports
    }
}

/// The output files of one recording, held open for its whole length (their folders, for
/// rotation and SIGHUP). Used by one thread at a time: the snapshot writer's, then the main one
/// for the final report.
final class OutputFiles: @unchecked Sendable {
    let output: OutputFile?
    let json: OutputFile?
    let html: OutputFile?
    /// Kinds of write failure already reported: each is reported once per run.
    private var reported: Set<WriteFailure.Kind> = []
    private var reopenGeneration: UInt = 0

    /// - Parameter pid: with several processes recorded, each one's files carry its pid before
    ///   the extension (`profile.json` → `profile.1234.json`).
    init(options: ProfileOptions, pid: Int32? = nil) {
        func file(_ path: String?) -> OutputFile? {
            path.map { path in OutputFile(path: pid.map { OutputFile.path(path, withPID: $0) } ?? path, keep: options.snapshotKeep) }
        }
        output = file(options.output)
        json = file(options.json)
        html = file(options.html)
    }

    /// Writes the reports, each file atomically (with --snapshot-keep, as a new timestamped file,
    /// the oldest beyond the limit removed). Returns the failures, one per file that failed.
    func write(_ reports: RenderedReports, reopenGeneration generation: UInt) -> [WriteFailure] {
        if generation != reopenGeneration {
            reopenGeneration = generation
            for file in [output, json, html] { file?.reopen() }
        }
        var failures = [WriteFailure]()
        for (file, data) in [(output, reports.main), (json, reports.json), (html, reports.html)] {
            guard let file, let data else { continue }
            do { try file.writeSnapshot(data) } catch { failures.append(error) }
        }
        return failures
    }

    /// Renders and writes one snapshot; a failure is reported once per kind, and never stops the
    /// recording.
    func writeReporting(_ job: SnapshotJob, writer: OutputWriter) {
        let failures: [WriteFailure]
        do throws(Failure) {
            failures = write(try writer.render(main: job.main, whole: job.whole), reopenGeneration: scalene_reopen_generation())
        } catch {
            printError("scalene-attach: warning: a snapshot failed: \(error.message)")
            return
        }
        for failure in firstOfTheirKind(failures) {
            printError("scalene-attach: warning: \(failure) (snapshots go on; further failures of this kind are not reported)")
        }
    }

    /// The failures not reported yet (one per kind), marked as reported.
    func firstOfTheirKind(_ failures: [WriteFailure]) -> [WriteFailure] {
        failures.filter { reported.insert($0.kind).inserted }
    }
}
