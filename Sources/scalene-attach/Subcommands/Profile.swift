import ArgumentParser
import PythonInspector

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        _superCommandName: ScaleneAttach.commandName, // see ScaleneAttach.main
        abstract: "Profile a running CPython process (the default command).",
        discussion: """
        Samples the process (default 100 times a second) without stopping it, until Ctrl-C, \
        --duration, or the process ends, then prints Scalene's per-line table: the share of all \
        sampled time each line spent running Python bytecode (Python), in compiled code it called \
        (native), and in the kernel or blocked (system). Time lands on the innermost frame that \
        belongs to a profiled file: by default everything outside the standard library and \
        installed packages.

        Examples:
          scalene-attach --pid 1234                       # until Ctrl-C, table on stdout
          scalene-attach --pid 1234 --duration 30 --json profile.json
          scalene-attach --pid 1234 --format collapsed --output stacks.txt
          scalene-attach --pid 1234 --snapshot-interval 60 --json /var/tmp/app.json   # production
          scalene-attach --pid 1234 --format pprof --output /var/tmp/app.pb.gz \\
              --snapshot-interval 60 --snapshot-mode delta --snapshot-keep 1440   # for pprof tools
          scalene-attach --pid 1234 --subprocesses --format json --output web.json
              # the server and each worker: web.1234.json, web.1240.json, ...; --merge: one sum
          PYROSCOPE_AUTH_TOKEN=... scalene-attach --pid 1234 --quiet \\
              --push https://pyroscope:4040 --push-label env=prod   # to Pyroscope

        --push sends the interval since the previous push (pprof, every 10 s unless \
        --snapshot-interval) to a Pyroscope server's ingest API; auth only from the environment \
        (PYROSCOPE_AUTH_TOKEN, or PYROSCOPE_BASIC_AUTH_USER and PYROSCOPE_BASIC_AUTH_PASSWORD). \
        While the server is down, snapshots wait in a bounded spool (--push-spool, --push-spool-max) \
        and are sent oldest first when it answers again.
        """
    )

    @Option(help: "The process id of a running CPython 3.8–3.15 process.")
    var pid: Int32

    @OptionGroup var options: ProfileOptions

    func run() throws {
        // libcurl first: a missing one fails before the process is touched.
        let curl = PushSetup.loadLibrary(options)
        if options.subprocesses {
            do { _ = try PythonTarget(pid: pid) } catch {
                // The root of a family need not be Python itself (a shell, a supervisor).
                guard case .notPython = error else { fail(Failure(error)) }
                printError("scalene-attach: process \(pid) is not Python; recording its Python descendants")
            }
            let status = FamilySession(root: pid, options: options, launched: false, curl: curl).record()
            if status != .success { throw ExitCode(status.rawValue) }
            return
        }
        let target: PythonTarget
        do { target = try PythonTarget(pid: pid) } catch { fail(Failure(error)) }
        let status = ProfileSession(target: target, options: options, launched: false, curl: curl).record()
        if status != .success { throw ExitCode(status.rawValue) }
    }
}
