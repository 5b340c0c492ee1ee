import CScaleneSys
import Export
import Injector
import NativeStacks
import Profiler
import Push
import PythonInspector
import Reports
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// One recording: samples the target until Ctrl-C, --duration or its exit, shows a live status
/// line, writes periodic snapshots, and writes the reports at the end.
struct ProfileSession {
    var target: PythonTarget
    var options: ProfileOptions
    /// Whether we launched the target (run) rather than attached to it.
    var launched: Bool
    /// libcurl, loaded at the start with --push.
    var curl: CurlLibrary? = nil

    /// Injects the memory agent unless --cpu-only. A failure leaves the target untouched and the
    /// profile goes on with CPU only, saying why.
    func startMemorySession(sampler: Sampler, warningPrefix: String = "") -> MemorySession? {
        guard !options.cpuOnly else { return nil }
        let started = Self.startAgent(target: target, sampler: sampler, memoryWindow: options.memoryWindow,
                                      copyWindow: options.copyWindow)
        if let warning = started.warning { printError("scalene-attach: warning: " + warningPrefix + warning) }
        return started.session
    }

    /// Injects the memory agent, or says in one sentence why it could not (then the target is left
    /// exactly as it was).
    static func startAgent(target: PythonTarget, sampler: Sampler, memoryWindow: String, copyWindow: String)
        -> (session: MemorySession?, warning: String?)
    {
        let located = MemorySession.locateAgent()
        guard let path = located.path else {
            return (nil, "memory profiling unavailable: agent library not found (looked in "
                    + located.searched.joined(separator: ", ") + "); profiling CPU only")
        }
        var memoryOptions = MemorySession.Options(agentPath: path)
        memoryOptions.window = ProfileOptions.byteCount(memoryWindow) ?? memoryOptions.window
        memoryOptions.copyWindow = ProfileOptions.byteCount(copyWindow) ?? memoryOptions.copyWindow
        do {
            return (try MemorySession(target: target, sampler: sampler, options: memoryOptions,
                                      cancelled: { scalene_stop_requested() != 0 }), nil)
        } catch {
            return (nil, "memory profiling unavailable: \(InjectFailure.describe(error)); "
                    + "profiling CPU only (--cpu-only skips the attempt)")
        }
    }

    /// The native stack sampler for --native: perf events where the kernel allows them (nothing is
    /// stopped), else ptrace. Nil, with a warning, when neither can be used.
    func startNativeSampler(warningPrefix: String = "") -> (source: NativeStackSource, fallbackReason: String?)? {
        guard options.native else { return nil }
        let unwinder: NativeUnwinder
        do { unwinder = try NativeUnwinder(process: target.process, interpreterPaths: target.interpreterPaths) } catch {
            printError("scalene-attach: warning: \(warningPrefix)--native unavailable: \(error); using the opcode/GIL rule")
            return nil
        }
        var perfFailure: String?
        if options.nativeMethod != .ptrace {
            do {
                return (try PerfStackSampler(pid: target.pid, unwinder: unwinder, rateHz: options.rate), nil)
            } catch {
                switch error {
                case .perfNotPermitted(let detail), .failed(let detail): perfFailure = detail
                case .ptraceNotPermitted: perfFailure = "\(error)"
                }
                if options.nativeMethod == .perf {
                    printError("scalene-attach: warning: \(warningPrefix)--native-method perf unavailable: \(perfFailure ?? ""); using the opcode/GIL rule")
                    return nil
                }
            }
        }
        do { try PtraceStackSampler.probe(pid: target.pid) } catch {
            printError("scalene-attach: warning: \(warningPrefix)--native unavailable: perf events refused (\(perfFailure ?? "not tried")) "
                       + "and ptrace refused (\(error)); using the opcode/GIL rule")
            return nil
        }
        if let perfFailure {
            printError("scalene-attach: warning: \(warningPrefix)perf events unavailable (\(perfFailure)); --native stops each running "
                       + "thread for a moment per sample instead (ptrace)")
        }
        return (PtraceStackSampler(pid: target.pid, unwinder: unwinder), perfFailure)
    }

    /// The signals a recording acts on: Ctrl-C, SIGTERM and SIGHUP stop it, SIGUSR1 asks for a
    /// snapshot. Returns whether the recording writes files.
    static func installSignalHandlers(options: ProfileOptions) -> Bool {
        scalene_install_stop_handlers()
        scalene_install_snapshot_handler()
        let writesFiles = options.output != nil || options.json != nil || options.html != nil
        // With files to write, SIGHUP reopens them (log rotation) instead of stopping.
        if writesFiles { scalene_install_reopen_handler() }
        // Over RLIMIT_FSIZE a write fails (EFBIG) and is reported, instead of killing us.
        scalene_ignore_file_size_signal()
        return writesFiles
    }

    /// Records and reports. Returns the exit status.
    func record() -> ExitStatus {
        let writesFiles = Self.installSignalHandlers(options: options)
        // --push: every snapshot's interval (whatever --snapshot-mode says for --output) goes to
        // the pusher's thread, which never delays this one. Made first: a spool that cannot be
        // used fails before anything is done to the target.
        let pusher = curl.map { PushSetup.start(options: options, library: $0, target: target) }
        let recording = ProcessRecording(session: self, intervals: pusher != nil)
        let sampler = recording.sampler
        let memory = recording.memory
        let writer = OutputWriter(options: options)
        let files = OutputFiles(options: options)
        // Snapshots are rendered and written on a thread of their own: a slow or full disk never
        // delays sampling. At most two wait; beyond, the newest waiting one absorbs the next.
        let mode = options.snapshotMode
        let snapshotWriter = SerialWorker<SnapshotJob>(name: "snapshots", capacity: 2) { job in
            if let pusher, let interval = job.pushed { pusher.submit(interval.snapshot) }
            if writesFiles { files.writeReporting(job, writer: writer) }
        }
        let showStatus = !options.quiet && scalene_isatty(2) != 0
        let durationNanoseconds = options.duration.map { UInt64($0 * 1e9) }
        let snapshotNanoseconds = options.effectiveSnapshotInterval.map { UInt64($0 * 1e9) }
        var lastSnapshot = sampler.startMonotonic

        let end = recording.run(
            stop: { now in
                if scalene_stop_requested() != 0 { return .interrupted(signal: scalene_stop_signal()) }
                if let durationNanoseconds, now - sampler.startMonotonic >= durationNanoseconds { return .durationElapsed }
                return nil
            },
            snapshotDue: { now in
                guard writesFiles || pusher != nil else { return false }
                let due = snapshotNanoseconds.map { now - lastSnapshot >= $0 } ?? false
                guard due || scalene_take_snapshot_request() != 0 else { return false }
                lastSnapshot = now
                return true
            },
            deliver: { job in
                snapshotWriter.submit(job) { earlier, later in SnapshotJob(combining: earlier, later, mode: mode) }
            },
            status: { status in
                guard showStatus else { return }
                let line = String(printf: "\r\u{1b}[K[scalene-attach] pid %d · %.1f s · %d samples · %.1f Hz · %d late · %d unreadable",
                                  target.pid, status.elapsed, status.ticks, status.effectiveRate, status.lateTicks,
                                  status.unreadableSamples + status.failedTicks)
                line.withCString { _ = write(2, $0, strlen($0)) }
            })
        if showStatus { "\r\u{1b}[K".withCString { _ = write(2, $0, strlen($0)) } }
        // Restore the target first: the report can wait, the hooks should not.
        let last = recording.finish(end: end)
        let profile = last.whole
        // The snapshots still queued are written before the final report (in order, so that with
        // --snapshot-keep the newest file is the final one); a disk that hangs is not waited for.
        if !snapshotWriter.finish(timeout: 10) {
            printError("scalene-attach: warning: the last snapshots were not written within 10 s; skipped")
        }
        // The final interval is pushed too; the pusher has a bounded time to send what is left.
        if let pusher {
            if let interval = last.pushed { pusher.submit(interval.snapshot) }
            PushSetup.finish(pusher, timeout: 10)
        }
        if let reason = profile.emptyReason { printError("scalene-attach: warning: the profile is empty: \(reason)") }
        do throws(Failure) {
            let reports = try writer.render(main: last.main, whole: last.whole)
            if let failure = files.write(reports, reopenGeneration: scalene_reopen_generation()).first {
                fail(Failure("\(failure)", .internalError))
            }
            if options.output == nil {
                _ = OutputFile.writeAll(1, reports.main)
                if options.format == .json || options.format == .speedscope { _ = OutputFile.writeAll(1, Array("\n".utf8)) }
            }
        } catch {
            fail(error)
        }
        if let agent = profile.memory?.agent, memory != nil, !agent.detachedCleanly, end != .targetExited {
            printError("scalene-attach: warning: the agent did not confirm its detach; it removes itself when it stops hearing from us")
        }
        if end == .targetExited && !launched {
            printError(String(printf: "scalene-attach: process %d exited after %.1f s; reported what was collected",
                              target.pid, profile.elapsed))
            return .processExited
        }
        return .success
    }
}

/// The interval since the previous push, and the Unix seconds it covers: `from` is the previous
/// interval's `until`, so the pushed intervals tile the run.
struct PushedInterval: Sendable {
    var profile: Profile
    var from: Int
    var until: Int

    /// Rendered on the snapshot thread (gzip-compressed pprof).
    var snapshot: PushSnapshot {
        PushSnapshot(from: from, until: until, startMilliseconds: Int64((profile.startEpoch * 1000).rounded(.down)),
                     profile: PprofReport(profile: profile).render())
    }
}

/// A snapshot to write: the main report's profile (the whole run, or the interval since the
/// previous snapshot with --snapshot-mode delta) and the whole run's (--json, --html); with
/// --push, the interval to push.
struct SnapshotJob: Sendable {
    var main: Profile
    var whole: Profile
    var pushed: PushedInterval?

    /// Two snapshots that waited, as one: the later one; in delta mode its interval starts where
    /// the earlier one's did (the two intervals summed), so no interval is lost. The same for the
    /// pushed interval.
    init(combining earlier: SnapshotJob, _ later: SnapshotJob, mode: SnapshotMode) {
        whole = later.whole
        main = mode == .delta ? Profile.consecutive(earlier.main, later.main) : later.main
        if let first = earlier.pushed, let second = later.pushed {
            pushed = PushedInterval(profile: Profile.consecutive(first.profile, second.profile), from: first.from, until: second.until)
        } else {
            pushed = later.pushed ?? earlier.pushed
        }
    }

    init(main: Profile, whole: Profile, pushed: PushedInterval? = nil) {
        self.main = main
        self.whole = whole
        self.pushed = pushed
    }
}

/// The profiles of successive snapshots of one recording.
struct SnapshotSeries {
    let mode: SnapshotMode
    /// Whether each snapshot carries its interval (--push): then the sampler keeps only the
    /// current interval and the whole run is the sum of the intervals, in either mode.
    let intervals: Bool
    let sampler: Sampler
    let memory: MemorySession?
    /// With intervals: the whole run so far, the sum of the intervals taken (the sampler keeps
    /// only the current interval), and the memory profile at the previous snapshot.
    private var whole: Profile?
    private var previousMemory: MemoryProfile?
    /// The Unix second the previous pushed interval ended at.
    private var previousUntil: Int?

    init(mode: SnapshotMode, intervals: Bool = false, sampler: Sampler, memory: MemorySession?) {
        self.mode = mode
        self.intervals = intervals
        self.sampler = sampler
        self.memory = memory
    }

    mutating func take(end: ProfileEnd, now: UInt64) -> SnapshotJob {
        switch (mode, intervals) {
        case (.cumulative, false):
            var profile = sampler.profile(end: end, now: now)
            profile.memory = memory?.profile(elapsed: profile.elapsed)
            return SnapshotJob(main: profile, whole: profile)
        case (.delta, _), (.cumulative, true):
            var interval = sampler.takeInterval(end: end, now: now)
            var sum = whole.map { Profile.merged([$0, interval], end: end) ?? interval } ?? interval
            sum.end = end
            if let memory {
                let cumulative = memory.profile(elapsed: sum.elapsed)
                let offset = UInt64(max(0, (interval.startMonotonic - sum.startMonotonic) * 1e9))
                interval.memory = previousMemory.map { cumulative.since($0, offset: offset) } ?? cumulative
                sum.memory = cumulative
                previousMemory = cumulative
            }
            whole = sum
            var pushed: PushedInterval?
            if intervals {
                let from = previousUntil ?? PushSetup.epochSecond(interval.startEpoch)
                let until = max(from, PushSetup.epochSecond(interval.startEpoch + interval.elapsed))
                previousUntil = until
                pushed = PushedInterval(profile: interval, from: from, until: until)
            }
            return SnapshotJob(main: mode == .delta ? interval : sum, whole: sum, pushed: pushed)
        }
    }
}
