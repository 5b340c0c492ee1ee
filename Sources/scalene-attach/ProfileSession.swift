import CScaleneSys
import Foundation
import Injector
import NativeStacks
import Profiler
import PythonInspector
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

    /// Injects the memory agent unless --cpu-only. A failure leaves the target untouched and the
    /// profile goes on with CPU only, saying why.
    func startMemorySession(sampler: Sampler) -> MemorySession? {
        guard !options.cpuOnly else { return nil }
        let started = Self.startAgent(target: target, sampler: sampler, memoryWindow: options.memoryWindow,
                                      copyWindow: options.copyWindow)
        if let warning = started.warning { printError("scalene-attach: warning: " + warning) }
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
    func startNativeSampler() -> (source: NativeStackSource, fallbackReason: String?)? {
        guard options.native else { return nil }
        let unwinder: NativeUnwinder
        do { unwinder = try NativeUnwinder(process: target.process, interpreterPaths: target.interpreterPaths) } catch {
            printError("scalene-attach: warning: --native unavailable: \(error); using the opcode/GIL rule")
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
                    printError("scalene-attach: warning: --native-method perf unavailable: \(perfFailure ?? ""); using the opcode/GIL rule")
                    return nil
                }
            }
        }
        do { try PtraceStackSampler.probe(pid: target.pid) } catch {
            printError("scalene-attach: warning: --native unavailable: perf events refused (\(perfFailure ?? "not tried")) "
                       + "and ptrace refused (\(error)); using the opcode/GIL rule")
            return nil
        }
        if let perfFailure {
            printError("scalene-attach: warning: perf events unavailable (\(perfFailure)); --native stops each running "
                       + "thread for a moment per sample instead (ptrace)")
        }
        return (PtraceStackSampler(pid: target.pid, unwinder: unwinder), perfFailure)
    }

    /// Records and reports. Returns the exit status.
    func record() -> ExitStatus {
        scalene_install_stop_handlers()
        scalene_install_snapshot_handler()
        let native = startNativeSampler()
        let sampler = Sampler(target: target, options: options.samplerOptions, native: native?.source,
                              nativeFallbackReason: native?.fallbackReason)
        let memory = startMemorySession(sampler: sampler)
        defer { memory?.detach() }
        let writer = OutputWriter(options: options)
        func currentProfile(end: ProfileEnd, now: UInt64) -> Profile {
            var profile = sampler.profile(end: end, now: now)
            profile.memory = memory?.profile(elapsed: profile.elapsed)
            return profile
        }
        let showStatus = !options.quiet && scalene_isatty(2) != 0
        let durationNanoseconds = options.duration.map { UInt64($0 * 1e9) }
        let snapshotNanoseconds = options.snapshotInterval.map { UInt64($0 * 1e9) }
        var lastSnapshot = sampler.startMonotonic
        var snapshotError: String?

        let end = sampler.run(
            stop: { now in
                if scalene_stop_requested() != 0 { return .interrupted(signal: scalene_stop_signal()) }
                if let durationNanoseconds, now - sampler.startMonotonic >= durationNanoseconds { return .durationElapsed }
                return nil
            },
            everyTick: { now in
                let due = snapshotNanoseconds.map { now - lastSnapshot >= $0 } ?? false
                if due || scalene_take_snapshot_request() != 0 {
                    lastSnapshot = now
                    do { try writer.write(currentProfile(end: .durationElapsed, now: now), final: false) }
                    catch { snapshotError = "\(error)" }
                }
            },
            housekeeping: { memory?.poll() },
            status: { status in
                guard showStatus else { return }
                let line = String(format: "\r\u{1b}[K[scalene-attach] pid %d · %.1f s · %d samples · %.1f Hz · %d late · %d unreadable",
                                  target.pid, status.elapsed, status.ticks, status.effectiveRate, status.lateTicks,
                                  status.unreadableSamples + status.failedTicks)
                line.withCString { _ = write(2, $0, strlen($0)) }
            })
        if showStatus { "\r\u{1b}[K".withCString { _ = write(2, $0, strlen($0)) } }
        // Restore the target first: the report can wait, the hooks should not.
        memory?.detach()
        let profile = currentProfile(end: end, now: scalene_monotonic_ns())
        if let snapshotError { printError("scalene-attach: warning: a periodic snapshot failed: \(snapshotError)") }
        if let reason = profile.emptyReason { printError("scalene-attach: warning: the profile is empty: \(reason)") }
        do {
            try writer.write(profile, final: true)
        } catch let failure as Failure {
            fail(failure)
        } catch {
            fail(Failure("cannot write the report: \(error)", .internalError))
        }
        if let agent = profile.memory?.agent, memory != nil, !agent.detachedCleanly, end != .targetExited {
            printError("scalene-attach: warning: the agent did not confirm its detach; it removes itself when it stops hearing from us")
        }
        if end == .targetExited && !launched {
            printError(String(format: "scalene-attach: process %d exited after %.1f s; reported what was collected",
                              target.pid, profile.elapsed))
            return .processExited
        }
        return .success
    }
}
