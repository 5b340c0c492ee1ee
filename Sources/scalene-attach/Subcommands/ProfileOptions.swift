import ArgumentParser
import Profiler
import Push
import Reports
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// Output formats of the main report.
enum ReportFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, collapsed, speedscope, pprof
}

/// What a periodic snapshot of --output holds.
enum SnapshotMode: String, ExpressibleByArgument, CaseIterable {
    /// Everything since the start (each snapshot replaces the previous one's content).
    case cumulative
    /// Only the interval since the previous snapshot (what continuous-profiling servers expect).
    case delta
}

/// How `--native` takes native stacks.
enum NativeMethodOption: String, ExpressibleByArgument, CaseIterable {
    case auto, perf, ptrace
}

/// Options shared by `scalene-attach --pid` and `scalene-attach run`.
struct ProfileOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Samples per second (1–100000).", valueName: "hz"))
    var rate: Double = 100

    @Option(help: ArgumentHelp("Stop after this many seconds (default: until Ctrl-C or the process ends).",
                               valueName: "seconds"))
    var duration: Double?

    @Option(help: ArgumentHelp("Also write the profile in Scalene's JSON format here (open it with `scalene view`).",
                               valueName: "file"))
    var json: String?

    @Option(help: ArgumentHelp("Write the main report to this file instead of stdout.", valueName: "file"))
    var output: String?

    @Option(help: ArgumentHelp("Main report format: table (Scalene-style), json (Scalene's JSON), collapsed (folded stacks for flame graphs), speedscope, pprof (gzip-compressed profile.proto for go tool pprof, Pyroscope, Parca).",
                               valueName: "format"))
    var format: ReportFormat = .table

    @Option(help: ArgumentHelp("Also write a self-contained HTML report here (flame graph, line tables, memory over time; opens offline).",
                               valueName: "file"))
    var html: String?

    @Flag(help: "Table: only lines with at least 1% of the time or 1 MB of memory (JSON: only lines with data).")
    var reduced = false

    @Flag(help: "Table: every line of every profiled file (default: lines with data and one line around each).")
    var full = false

    @Flag(help: "Add a per-thread breakdown (time split, GIL share).")
    var threads = false

    @Flag(help: "No live status line while recording.")
    var quiet = false

    @Flag(help: "Profile every file, including the standard library and installed packages.")
    var profileAll = false

    @Option(help: ArgumentHelp("Profile only files whose path contains one of these comma-separated strings.",
                               valueName: "a,b"))
    var profileOnly: String = ""

    @Option(help: ArgumentHelp("Do not profile files whose path contains one of these comma-separated strings.",
                               valueName: "a,b"))
    var profileExclude: String = ""

    @Flag(help: "Keep threads that were blocked for the whole run (idle pool workers) in the report.")
    var includeIdle = false

    @Flag(help: "Profile CPU time only: do not inject the memory and copy agent into the process.")
    var cpuOnly = false

    @Option(help: ArgumentHelp("Mean bytes allocated between two allocation samples (each call is sampled with a probability that grows with its size, and weighted so that the estimate is unbiased); suffixes K, M, G (default 256K).",
                               valueName: "bytes"))
    var memoryWindow: String = "256K"

    @Option(help: ArgumentHelp("Mean bytes copied (memcpy/memmove) between two copy samples; suffixes K, M, G (default 512K).",
                               valueName: "bytes"))
    var copyWindow: String = "512K"

    @Flag(help: "Sample native stacks too: classify user CPU time by where the instruction pointer really is, and show the native functions under each line and in flame graphs.")
    var native = false

    @Option(help: ArgumentHelp("With --native: perf (perf_event_open, never stops the process), ptrace (stops each running thread for a moment per sample), or auto (perf, else ptrace).",
                               valueName: "method"))
    var nativeMethod: NativeMethodOption = .auto

    @Option(help: ArgumentHelp("Rewrite --output, --json and --html every this many seconds while recording (atomically); SIGUSR1 also writes one, SIGHUP reopens the output folders.",
                               valueName: "seconds"))
    var snapshotInterval: Double?

    @Option(help: ArgumentHelp("What each snapshot of --output holds: cumulative (everything since the start) or delta (only the interval since the previous snapshot; --json and --html stay cumulative).",
                               valueName: "mode"))
    var snapshotMode: SnapshotMode = .cumulative

    @Option(help: ArgumentHelp("Write every snapshot (and the final report) of each output as a timestamped file beside it, NAME.20261201T153000.123Z.EXT, keeping the newest N.",
                               valueName: "n"))
    var snapshotKeep: Int?

    @Flag(help: "Also record every Python process descended from the process, and those it starts while recorded (pre-fork servers, multiprocessing and process pools): each with its own sampler and agent; one report per process, its files named NAME.PID.EXT.")
    var subprocesses = false

    @Flag(help: "With --subprocesses: one report, the sum of every process (the same file and line add up).")
    var merge = false
    @Option(help: ArgumentHelp("Push each snapshot interval (pprof) to this Pyroscope server, or Grafana Alloy's pyroscope.receive_http (POST URL/ingest); a snapshot every 10 s unless --snapshot-interval; auth from PYROSCOPE_AUTH_TOKEN or PYROSCOPE_BASIC_AUTH_USER/_PASSWORD.",
                               valueName: "url"))
    var push: String?

    @Option(help: ArgumentHelp("--push: the application name (default: the target's script or executable name, else python).",
                               valueName: "name"))
    var pushApp: String?

    @Option(help: ArgumentHelp("--push: a label added to service_name, host and pid (repeatable).", valueName: "key=value"))
    var pushLabel: [String] = []

    @Option(help: ArgumentHelp("--push: the tenant, sent as X-Scope-OrgID.", valueName: "id"))
    var pushTenant: String?

    @Option(help: ArgumentHelp("--push: seconds a request may take (connecting: at most 5).", valueName: "seconds"))
    var pushTimeout: Double = 15

    @Option(help: ArgumentHelp("--push: where snapshots wait while the server cannot take them (default: a private folder under $XDG_RUNTIME_DIR, else /var/tmp/scalene-attach-spool-PID).",
                               valueName: "dir"))
    var pushSpool: String?

    @Option(help: ArgumentHelp("--push: the spool's bound; beyond it the oldest snapshots are dropped (suffixes K, M, G).",
                               valueName: "bytes"))
    var pushSpoolMax: String = "64M"

    /// How often snapshots are taken: --snapshot-interval, else every 10 s with --push (as
    /// Pyroscope's own clients upload).
    var effectiveSnapshotInterval: Double? { snapshotInterval ?? (push != nil ? 10 : nil) }

    /// The --push-label labels, checked.
    var pushLabels: [PushLabel] { (try? pushLabel.map { label throws(PushError) in try PushLabel.parse(label) }) ?? [] }

    /// --push-spool-max in bytes.
    var pushSpoolMaxBytes: UInt64 { Self.byteCount(pushSpoolMax) ?? 64 << 20 }

    /// The checks `profile`, `run` and `top` share: the rate and the two sampling windows.
    static func validateSampling(rate: Double, memoryWindow: String, copyWindow: String) throws {
        guard rate >= 1 && rate <= 100_000 else { throw ValidationError("--rate must be between 1 and 100000 Hz") }
        for (name, value) in [("--memory-window", memoryWindow), ("--copy-window", copyWindow)] {
            guard let bytes = byteCount(value), bytes >= 4096 else {
                throw ValidationError("\(name) must be a size of at least 4K, like 512K or 2M (got '\(value)')")
            }
        }
    }

    func validate() throws {
        try Self.validateSampling(rate: rate, memoryWindow: memoryWindow, copyWindow: copyWindow)
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        if let snapshotInterval, snapshotInterval < 0.1 { throw ValidationError("--snapshot-interval must be at least 0.1 s") }
        if snapshotInterval != nil && output == nil && json == nil && html == nil && push == nil {
            throw ValidationError("--snapshot-interval needs --output, --json, --html or --push to write to")
        }
        try validatePush()
        if let snapshotKeep {
            guard snapshotKeep >= 1 else { throw ValidationError("--snapshot-keep must be at least 1") }
            if output == nil && json == nil && html == nil {
                throw ValidationError("--snapshot-keep needs --output, --json or --html to write to")
            }
        }
        if snapshotMode == .delta && (snapshotInterval == nil || output == nil) {
            throw ValidationError("--snapshot-mode delta needs --snapshot-interval and --output (the intervals go there)")
        }
        if format == .pprof && output == nil && isatty(1) != 0 {
            throw ValidationError("--format pprof is binary: give --output FILE or redirect stdout")
        }
        if reduced && full { throw ValidationError("--reduced and --full are opposites; give one") }
        if merge && !subprocesses { throw ValidationError("--merge sums the processes of --subprocesses; give both") }
        if subprocesses && push != nil && !merge {
            throw ValidationError("--push with --subprocesses needs --merge: the family is pushed as one series, "
                                  + "labelled with the given process's pid")
        }
        if subprocesses && !merge && output == nil && format != .table {
            throw ValidationError("--subprocesses writes one \(format.rawValue) report per process: give --output FILE "
                                  + "(each process's is FILE with its pid before the extension) or --merge")
        }
    }

    func validatePush() throws {
        guard let push else {
            let given = [("--push-app", pushApp != nil), ("--push-label", !pushLabel.isEmpty), ("--push-tenant", pushTenant != nil),
                         ("--push-spool", pushSpool != nil)].filter(\.1).map(\.0)
            if let first = given.first { throw ValidationError("\(first) needs --push URL") }
            return
        }
        do throws(PushError) {
            _ = try IngestTarget.validateServer(push)
            for label in pushLabel { _ = try PushLabel.parse(label) }
        } catch {
            throw ValidationError(error.description)
        }
        if let pushApp, pushApp.isEmpty || IngestTarget.sanitisedApplication(pushApp) != pushApp {
            throw ValidationError("--push-app must be letters, digits, _, - or . (got '\(pushApp)')")
        }
        if let pushTenant, pushTenant.isEmpty || pushTenant.contains(where: { $0.isNewline || $0 == "\r" }) {
            throw ValidationError("--push-tenant must be a non-empty single line")
        }
        guard pushTimeout >= 0.1 && pushTimeout <= 600 else { throw ValidationError("--push-timeout must be between 0.1 and 600 seconds") }
        guard let bytes = Self.byteCount(pushSpoolMax), bytes >= 1024 else {
            throw ValidationError("--push-spool-max must be a size of at least 1K, like 16M (got '\(pushSpoolMax)')")
        }
    }

    /// "1M" → 1048576; plain numbers are bytes.
    static func byteCount(_ text: String) -> UInt64? {
        let trimmed = text.trimmingWhitespace().uppercased()
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let last = trimmed.last, let unit = units[last] {
            return Double(trimmed.dropLast()).flatMap { $0 > 0 ? UInt64($0 * Double(unit)) : nil }
        }
        return UInt64(trimmed)
    }

    var filter: FileFilter {
        FileFilter(profileAll: profileAll, only: profileOnly.split(separator: ",").map(String.init),
                   exclude: profileExclude.split(separator: ",").map(String.init))
    }

    var tableDetail: TableReport.Detail { reduced ? .reduced : full ? .full : .withData }

    var samplerOptions: SamplerOptions {
        var options = SamplerOptions()
        options.rate = rate
        options.filter = filter
        options.includeIdle = includeIdle
        options.recordTimeline = format == .speedscope
        return options
    }
}
