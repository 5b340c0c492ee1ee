import Profiler
import Push
import PythonInspector
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// `--push`: libcurl loaded at the start, the pusher made for the target, and what it tells
/// said on stderr.
enum PushSetup {
    /// Loads libcurl when `--push` is given (before any thread starts); fails with exit status 1
    /// and how to install it when it cannot be loaded. `SCALENE_ATTACH_LIBCURL` names another
    /// library file (for the tests only).
    static func loadLibrary(_ options: ProfileOptions) -> CurlLibrary? {
        guard options.push != nil else { return nil }
        let path = Environment.value("SCALENE_ATTACH_LIBCURL") ?? CurlLibrary.defaultPath
        do { return try CurlLibrary.load(path: path) } catch { fail(Failure(error.description, .internalError)) }
    }

    /// The default spool: a private folder under $XDG_RUNTIME_DIR, else /var/tmp, named by the
    /// target's pid (a later run for the same process sends what is left).
    static func defaultSpool(pid: Int32) -> String {
        var info = stat()
        if let runtime = Environment.value("XDG_RUNTIME_DIR"), !runtime.isEmpty,
           stat(runtime, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR, access(runtime, W_OK) == 0 {
            return runtime + "/scalene-attach-spool-\(pid)"
        }
        return "/var/tmp/scalene-attach-spool-\(pid)"
    }

    /// The application name for a command line: the script (without .py) or module, else the
    /// executable unless it is a Python interpreter, else "python".
    static func applicationName(arguments: [String]) -> String {
        var index = 1
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "-c" { break }
            if argument == "-m" {
                if index + 1 < arguments.count { return IngestTarget.sanitisedApplication(arguments[index + 1]) }
                break
            }
            if ["-W", "-X", "-Q"].contains(argument) { index += 2; continue }
            if argument.hasPrefix("-") { index += 1; continue }
            var name = argument.split(separator: "/").last.map(String.init) ?? argument
            if name.hasSuffix(".py") { name.removeLast(3) }
            if !name.isEmpty { return IngestTarget.sanitisedApplication(name) }
            break
        }
        if let executable = arguments.first?.split(separator: "/").last.map(String.init), !executable.hasPrefix("python") {
            return IngestTarget.sanitisedApplication(executable)
        }
        return "python"
    }

    /// Makes the spool and starts the pusher. Fails with exit status 1 when the spool folder
    /// cannot be used.
    static func start(options: ProfileOptions, library: CurlLibrary, target: PythonTarget) -> Pusher {
        start(options: options, library: library, pid: target.pid, commandLine: target.process.commandLine())
    }

    /// The same for a process named by its pid and command line (the root of `--subprocesses`,
    /// which need not be Python itself).
    static func start(options: ProfileOptions, library: CurlLibrary, pid: Int32, commandLine: [String]) -> Pusher {
        let application = options.pushApp ?? applicationName(arguments: commandLine)
        let labels = [PushLabel(key: "service_name", value: application),
                      PushLabel(key: "host", value: IngestTarget.hostName()),
                      PushLabel(key: "pid", value: String(pid))] + options.pushLabels
        let server: String
        do { server = try IngestTarget.validateServer(options.push ?? "") } catch { fail(Failure(error.description, .internalError)) }
        let ingest = IngestTarget(server: server, application: application, labels: labels, tenant: options.pushTenant,
                                  sampleRate: max(1, Int(options.rate.rounded())),
                                  auth: PushAuth.fromEnvironment(Environment.values(PushAuth.variables)))
        let directory = options.pushSpool ?? defaultSpool(pid: pid)
        let spool: Spool
        do { spool = try Spool(directory: directory, maxBytes: options.pushSpoolMaxBytes) } catch {
            fail(Failure("--push: \(error.description) (give another folder with --push-spool DIR)", .internalError))
        }
        guard let transport = CurlTransport(library: library, connectTimeout: min(5, options.pushTimeout),
                                            totalTimeout: options.pushTimeout, userAgent: "scalene-attach/0.1.0") else {
            fail(Failure("--push: libcurl could not make a handle (curl_easy_init failed)", .internalError))
        }
        if !spool.isEmpty {
            printError("scalene-attach: push: \(spool.count) snapshots left by an earlier run are in \(directory); sending them first")
        }
        let maxText = options.pushSpoolMax
        return Pusher(configuration: Pusher.Configuration(target: ingest), transport: transport, spool: spool) { event in
            switch event {
            case .outage(let reason):
                printError("scalene-attach: push: \(reason); spooling to \(directory) and retrying with back-off "
                           + "(further failures of this kind are not reported)")
            case .recovered(let sent):
                printError("scalene-attach: push: server answers again; sent \(sent) spooled snapshot\(sent == 1 ? "" : "s")")
            case .refused(let status, let detail):
                printError("scalene-attach: push: the server refused a snapshot with HTTP \(status)\(detail); dropped "
                           + "(check the URL, --push-tenant and the auth variables; further HTTP \(status) answers are not reported)")
            case .spoolFull:
                printError("scalene-attach: push: the spool \(directory) is full (--push-spool-max \(maxText)); "
                           + "the oldest snapshots are dropped (counted at the end)")
            case .spoolFailed(let reason):
                printError("scalene-attach: push: a snapshot could not be spooled (\(reason)); it is dropped "
                           + "(further failures of this kind are not reported)")
            }
        }
    }

    /// Gives the pusher `timeout` seconds to send what is left, then says what was not sent.
    static func finish(_ pusher: Pusher, timeout: Double) {
        let summary = pusher.finish(timeout: timeout)
        if summary.dropped > 0 {
            printError("scalene-attach: push: \(summary.dropped) snapshot\(summary.dropped == 1 ? "" : "s") dropped "
                       + "to keep the spool within its bound (or because it could not be written)")
        }
        if summary.leftInSpool > 0 {
            printError("scalene-attach: push: \(summary.leftInSpool) snapshot\(summary.leftInSpool == 1 ? "" : "s") not sent "
                       + "within \(Int(timeout)) s \(summary.leftInSpool == 1 ? "is" : "are") left in \(summary.spoolDirectory) "
                       + "(a later run with --push-spool \(summary.spoolDirectory) sends them)")
        }
    }

    /// The Unix second of a profile's start and end (end: start plus elapsed).
    static func epochSecond(_ epoch: Double) -> Int { Int(epoch.rounded(.down)) }
}
