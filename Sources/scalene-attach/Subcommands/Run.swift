import ArgumentParser
import CScaleneSys
import PythonInspector
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        _superCommandName: ScaleneAttach.commandName, // see ScaleneAttach.main
        abstract: "Launch a Python program and profile it until it exits.",
        discussion: """
        Starts the command, attaches as soon as its interpreter is up, and reports when it exits \
        (or on Ctrl-C). The program's own output goes to the terminal as usual; the report follows.

        Example:
          scalene-attach run --json profile.json -- python3 app.py --workers 4
        """
    )

    @OptionGroup var options: ProfileOptions

    @Argument(parsing: .captureForPassthrough, help: "The command to run: a Python interpreter and its arguments.")
    var command: [String] = []

    func validate() throws {
        guard !command.drop(while: { $0 == "--" }).isEmpty else {
            throw ValidationError("give the command to run after --, e.g. scalene-attach run -- python3 app.py")
        }
    }

    func run() throws {
        let argv = Array(command.drop(while: { $0 == "--" }))
        // libcurl first: a missing one fails before the program is started.
        let curl = PushSetup.loadLibrary(options)
        let child: ChildProcess
        do { child = try ChildProcess(path: Self.resolve(argv[0]), arguments: Array(argv.dropFirst())) } catch {
            fail(Failure("cannot start \(argv[0]): \(error.description)", .internalError))
        }
        let pid = child.pid
        // Ctrl-C reaches the child too (same process group); we must survive it to report.
        scalene_install_stop_handlers()
        guard let target = Self.waitForInterpreter(pid: pid, child: child) else {
            child.waitUntilExit()
            fail(Failure("\(argv[0]) exited (status \(child.terminationStatus)) before its Python interpreter could be attached",
                         .processExited))
        }
        if options.subprocesses {
            _ = FamilySession(root: target.pid, options: options, launched: true, curl: curl).record()
        } else {
            _ = ProfileSession(target: target, options: options, launched: true, curl: curl).record()
        }
        if child.isRunning {
            // Stopped by Ctrl-C or --duration: the program keeps running, as with --pid.
            printError("scalene-attach: stopped profiling; process \(pid) is still running")
        }
    }

    /// Polls until the child's interpreter can be read and has a thread with a frame.
    static func waitForInterpreter(pid: Int32, child: ChildProcess) -> PythonTarget? {
        let deadline = scalene_monotonic_ns() + 30_000_000_000
        var lastError: InspectError?
        while child.isRunning && scalene_monotonic_ns() < deadline {
            do {
                let target = try PythonTarget(pid: pid)
                let snapshot = try StackDumper(target: target).snapshot()
                if snapshot.threads.contains(where: { !$0.frames.isEmpty }) { return target }
            } catch {
                lastError = error
                if case .notPython = error {} else if case .unsupportedVersion = error { fail(Failure(error)) }
            }
            if scalene_stop_requested() != 0 { return nil }
            usleep(2000)
        }
        if child.isRunning, let lastError { fail(Failure(lastError)) }
        return nil
    }

    /// The executable for a command name: a path as given, else the first match on $PATH.
    static func resolve(_ name: String) -> String {
        if name.utf8.contains(UInt8(ascii: "/")) { return name }
        for directory in (Environment.value("PATH") ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileSystem.isExecutable(candidate) { return candidate }
        }
        return name
    }
}
