import ArgumentParser
import CScaleneSys
import Injector
import LiveView
import Profiler
import PythonInspector
import Reports
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        _superCommandName: ScaleneAttach.commandName, // see ScaleneAttach.main
        abstract: "Watch a running CPython process live: its hottest lines or functions, refreshed every second.",
        discussion: """
        Samples the process like `profile` (never stopping it; memory and copies through the \
        injected agent unless --cpu-only) and redraws the hottest lines or functions about once a \
        second, with their Python / native / system shares and, with the agent, allocation and copy \
        rates. Keys: q quit, f lines/functions, s or 1-6 sort, t thread, w since attach/last 5 s, \
        space pause, h help. q or Ctrl-C detaches (every hook removed; the process keeps running) and \
        gives the terminal back as it was. Needs a terminal on stdin and stdout.
        """
    )

    @Option(help: "The process id of a running CPython 3.8–3.15 process.")
    var pid: Int32

    @Option(help: ArgumentHelp("Samples per second (1–100000).", valueName: "hz"))
    var rate: Double = 100

    @Option(help: ArgumentHelp("Seconds between refreshes of the screen (0.2–10).", valueName: "seconds"))
    var refresh: Double = 1

    @Flag(help: "Profile CPU time only: do not inject the memory and copy agent into the process.")
    var cpuOnly = false

    @Flag(help: "Profile every file, including the standard library and installed packages.")
    var profileAll = false

    @Option(help: ArgumentHelp("Profile only files whose path contains one of these comma-separated strings.",
                               valueName: "a,b"))
    var profileOnly: String = ""

    @Option(help: ArgumentHelp("Do not profile files whose path contains one of these comma-separated strings.",
                               valueName: "a,b"))
    var profileExclude: String = ""

    @Flag(help: "Keep threads that were blocked the whole time (idle pool workers) in the view.")
    var includeIdle = false

    @Option(help: ArgumentHelp("Mean bytes allocated between two allocation samples; suffixes K, M, G.", valueName: "bytes"))
    var memoryWindow: String = "256K"

    @Option(help: ArgumentHelp("Mean bytes copied between two copy samples; suffixes K, M, G.", valueName: "bytes"))
    var copyWindow: String = "512K"

    func validate() throws {
        try ProfileOptions.validateSampling(rate: rate, memoryWindow: memoryWindow, copyWindow: copyWindow)
        guard refresh >= 0.2 && refresh <= 10 else { throw ValidationError("--refresh must be between 0.2 and 10 seconds") }
    }

    func run() throws {
        // Before touching the target: a view without a terminal is a usage error.
        guard Terminal.isInteractive else {
            printError("scalene-attach: top needs a terminal on stdin and stdout; to record without one, use "
                       + "`scalene-attach --pid \(pid) --duration S`")
            throw ExitCode.validationFailure
        }
        let target: PythonTarget
        do { target = try PythonTarget(pid: pid) } catch { fail(Failure(error)) }
        scalene_install_stop_handlers()
        var options = SamplerOptions()
        options.rate = rate
        options.filter = FileFilter(profileAll: profileAll, only: profileOnly.split(separator: ",").map(String.init),
                                    exclude: profileExclude.split(separator: ",").map(String.init))
        options.includeIdle = includeIdle
        let sampler = Sampler(target: target, options: options)
        var notice: String?
        var memory: MemorySession?
        if !cpuOnly {
            let started = ProfileSession.startAgent(target: target, sampler: sampler, memoryWindow: memoryWindow,
                                                    copyWindow: copyWindow)
            memory = started.session
            notice = started.warning
        }
        defer { memory?.detach() }
        let status = watch(target: target, sampler: sampler, memory: memory, notice: notice)
        if status != .success { throw ExitCode(status.rawValue) }
    }

    /// The view's loop: sample, refresh once per `refresh`, apply keys between ticks. The terminal
    /// is given back on every way out (q, Ctrl-C, SIGTERM, SIGHUP, the target's exit; a crash via
    /// CTerminal's fatal-signal handler).
    func watch(target: PythonTarget, sampler: Sampler, memory: MemorySession?, notice: String?) -> ExitStatus {
        let sources = SourceFiles(pid: target.pid)
        let first = sampler.profile(end: .durationElapsed)
        let controller = TopController(
            target: .init(pid: target.pid, pythonVersion: target.version.description,
                          commandLine: TableReport.commandLine(first)),
            notice: notice, sourceLine: { sources.line($1, in: $0) })
        do { try Terminal.enter() } catch {
            printError("scalene-attach: cannot set up the terminal: \(error)")
            return .internalError
        }
        defer { Terminal.leave() }
        var size = Terminal.size() ?? Terminal.Size(rows: 24, columns: 80)
        func draw() { Terminal.draw(controller.frame(size: size)) }
        draw()
        let refreshNanoseconds = UInt64(refresh * 1e9)
        var lastRefresh: UInt64 = 0
        var quit = false
        let end = sampler.run(
            stop: { _ in
                if quit { return .interrupted(signal: 0) }
                if scalene_stop_requested() != 0 { return .interrupted(signal: scalene_stop_signal()) }
                return nil
            },
            everyTick: { now in
                // The first refresh after a few ticks, then one per period.
                guard now - lastRefresh >= refreshNanoseconds || (lastRefresh == 0 && now - sampler.startMonotonic > 200_000_000)
                else { return }
                lastRefresh = now
                var profile = sampler.profile(end: .durationElapsed, now: now)
                profile.memory = memory?.profile(elapsed: profile.elapsed)
                controller.record(TopSample(profile: profile))
                draw()
            },
            housekeeping: {
                memory?.poll()
                var changed = false
                if Terminal.takeResize(), let fresh = Terminal.size() {
                    size = fresh
                    changed = true
                }
                for key in Terminal.readKeys() {
                    switch controller.handle(key) {
                    case .quit: quit = true
                    case .redraw: changed = true
                    case .none: break
                    }
                }
                if changed && !quit { draw() }
            })
        // Restore the target first, then the terminal, then say how it ended.
        memory?.detach()
        Terminal.leave()
        switch end {
        case .targetExited:
            printError(String(printf: "scalene-attach: process %d exited after %.1f s", target.pid,
                              Double(scalene_monotonic_ns() - sampler.startMonotonic) / 1e9))
            return .processExited
        default:
            return .success
        }
    }
}
