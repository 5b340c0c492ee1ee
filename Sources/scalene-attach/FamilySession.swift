import CScaleneSys
import Export
import ProcessFamily
import Profiler
import Push
import PythonInspector
import RemoteProcess
import TextFormatting
import Threads
#if canImport(Glibc)
import Glibc
#endif

/// `--subprocesses`: records a process and every Python process descended from it, including
/// those started while recording (pre-fork servers, `multiprocessing` pools, process pools).
///
/// Each process has a recording of its own (sampler, and agent unless --cpu-only) on a thread of
/// its own, so a slow or stopped process never delays another. This thread watches the family
/// (a new process is picked up within `pollSeconds` plus its settling time), asks every recording
/// for a snapshot at once, and writes reports: one per process (files named by pid), or with
/// `--merge` their sum. A process that ends is reported with what was collected, at once.
struct FamilySession {
    var root: Int32
    var options: ProfileOptions
    /// Whether we launched the root (run) rather than attached to it.
    var launched: Bool
    /// libcurl, loaded at the start with --push (which needs --merge: one series for the family).
    var curl: CurlLibrary? = nil

    static let pollSeconds = 0.25

    func record() -> ExitStatus {
        let writesFiles = ProfileSession.installSignalHandlers(options: options)

        let pusher = curl.map {
            PushSetup.start(options: options, library: $0, pid: root, commandLine: (try? TargetProcess(pid: root))?.commandLine() ?? [])
        }
        let watcher = FamilyWatcher(root: root)
        let board = FamilyBoard()
        let reports = FamilyReports(options: options)
        let writer = SerialWorker<FamilyJob>(name: "snapshots", capacity: 2) { job in
            if let pusher, let interval = job.merged?.pushed { pusher.submit(interval.snapshot) }
            // Without files, only the final reports (tables on stdout) are written.
            reports.write(writesFiles ? job : FamilyJob(finals: job.finals))
        }
        let mode = options.snapshotMode
        var members = [ProcessIdentity: FamilyMember]()
        var merged = MergedFamily(mode: mode, root: root, pushing: pusher != nil)
        var ended = 0
        var rootExited = false
        let start = scalene_monotonic_ns()
        let durationNanoseconds = options.duration.map { UInt64($0 * 1e9) }
        let snapshotNanoseconds = options.effectiveSnapshotInterval.map { UInt64($0 * 1e9) }
        var lastSnapshot = start
        var lastPoll: UInt64 = 0
        var collecting: (epoch: Int, deadline: UInt64)?
        let showStatus = !options.quiet && scalene_isatty(2) != 0
        var lastStatus: UInt64 = 0
        var stopReason: ProfileEnd?

        /// What the recordings handed over since the last call: snapshots into the next write,
        /// finished processes reported.
        func absorbEnded() {
            for (identity, member) in members {
                guard let finished = board.takeFinished(identity) else { continue }
                members[identity] = nil
                ended += 1
                if options.merge {
                    if let pending = finished.pending { merged.absorbPending(pending) }
                    merged.retire(identity, finished.final)
                } else {
                    let snapshots = finished.pending.map { [FamilyJob.Part(identity, $0)] } ?? []
                    writer.submit(FamilyJob(snapshots: snapshots, finals: [FamilyJob.Part(identity, finished.final)]),
                                  combine: { $0.combined(with: $1, mode: mode) })
                }
                if finished.end == .targetExited {
                    printError("scalene-attach: process \(identity.pid) (\(member.label)) ended after "
                               + String(printf: "%.1f", finished.final.whole.elapsed) + " s; reported what was collected")
                }
                // Still alive (it exec'd another program, say): examined again at the next poll.
                if TargetProcess.isAlive(identity.pid) { watcher.forget(identity) }
            }
        }

        while stopReason == nil {
            let now = scalene_monotonic_ns()
            if scalene_stop_requested() != 0 {
                stopReason = .interrupted(signal: scalene_stop_signal())
                break
            }
            if let durationNanoseconds, now - start >= durationNanoseconds {
                stopReason = .durationElapsed
                break
            }
            absorbEnded()
            if now - lastPoll >= UInt64(Self.pollSeconds * 1e9) {
                lastPoll = now
                let family = watcher.poll(now: Double(now) / 1e9)
                for found in family.found where members[found.identity] == nil {
                    let member = FamilyMember(found: found, options: options, board: board, pushing: pusher != nil)
                    guard member.start() else {
                        // Tried again at the next poll: the limit on threads may have eased by then.
                        board.leave(found.identity)
                        printError("scalene-attach: warning: process \(found.identity.pid) is not recorded yet: no thread could be started for it")
                        continue
                    }
                    members[found.identity] = member
                    // For a process started while recording, how soon it was found.
                    let startedSince = found.age < Double(now - start) / 1e9
                    printError("scalene-attach: recording process \(found.identity.pid) (\(member.label))"
                               + (startedSince ? ", found " + String(printf: "%.2f", found.age) + " s after it started" : ""))
                }
                for skipped in family.skipped {
                    printError("scalene-attach: warning: process \(skipped.identity.pid) (\(skipped.executable)) is not recorded: "
                               + Failure(skipped.error).message)
                }
                if !watcher.rootAlive { rootExited = true }
                if family.alive.isEmpty && members.isEmpty {
                    stopReason = .targetExited
                    break
                }
            }
            // Snapshots: every recording is asked at once; their answers are written together.
            if collecting == nil, writesFiles || pusher != nil,
               snapshotNanoseconds.map({ now - lastSnapshot >= $0 }) ?? false || scalene_take_snapshot_request() != 0 {
                lastSnapshot = now
                // A recording answers after its next sample; at low rates that is a while.
                collecting = (board.requestSnapshot(), now + UInt64(max(1.0, 3 / options.rate) * 1e9))
            }
            if let pending = collecting, board.allAnswered(pending.epoch, among: Set(members.keys)) || now >= pending.deadline {
                collecting = nil
                let answers = board.takeAnswers()
                let job = options.merge ? merged.snapshot(answers).map { FamilyJob(merged: $0) } : FamilyJob(snapshots: answers)
                if let job { writer.submit(job) { $0.combined(with: $1, mode: mode) } }
            }
            if showStatus && now - lastStatus > 500_000_000 {
                lastStatus = now
                let line = String(printf: "\r\u{1b}[K[scalene-attach] pid %d and descendants · %.1f s · %d processes recorded · %d ended",
                                  root, Double(now - start) / 1e9, members.count, ended)
                line.withCString { _ = write(2, $0, strlen($0)) }
            }
            _ = scalene_sleep_until(scalene_monotonic_ns() + 20_000_000)
        }
        if showStatus { "\r\u{1b}[K".withCString { _ = write(2, $0, strlen($0)) } }

        // Every recording stops, restores its process and hands over its last snapshot.
        board.stopAll(stopReason ?? .durationElapsed)
        let deadline = scalene_monotonic_ns() + 15_000_000_000
        while !members.isEmpty && scalene_monotonic_ns() < deadline {
            let count = ended
            absorbEnded()
            if ended == count { usleep(5000) }
        }
        if !members.isEmpty {
            printError("scalene-attach: warning: \(members.count) recordings did not stop within 15 s; reported without them")
        }
        if !writer.finish(timeout: 10) {
            printError("scalene-attach: warning: the last reports were not written within 10 s; skipped")
        }
        if options.merge {
            guard let last = merged.final(end: stopReason ?? .targetExited) else {
                fail(Failure("no Python process was found in process \(root)'s family", .notPython))
            }
            if let pusher {
                if let interval = last.pushed { pusher.submit(interval.snapshot) }
                PushSetup.finish(pusher, timeout: 10)
            }
            reports.writeFinal(last)
        }
        if reports.written == 0 && !options.merge {
            fail(Failure("no Python process was found in process \(root)'s family", .notPython))
        }
        if rootExited && !launched {
            printError("scalene-attach: process \(root) exited; reported what was collected")
            return .processExited
        }
        return .success
    }
}

/// One process of the family and the thread that records it.
final class FamilyMember: @unchecked Sendable {
    let identity: ProcessIdentity
    let target: PythonTarget
    let label: String
    private let options: ProfileOptions
    private let board: FamilyBoard
    private let pushing: Bool

    init(found: FamilyWatcher.Found, options: ProfileOptions, board: FamilyBoard, pushing: Bool) {
        identity = found.identity
        target = found.target
        // "python3 pool.py --workers 4": paths shortened to their last part, as a report header shows.
        let command = found.target.process.commandLine()
            .map { $0.hasPrefix("/") ? String($0.split(separator: "/").last ?? Substring($0)) : $0 }.joined(separator: " ")
        label = command.count > 60 ? String(command.prefix(57)) + "..." : command
        self.options = options
        self.board = board
        self.pushing = pushing
        board.join(identity)
    }

    /// Starts the member's recording thread; false when the system refused one.
    func start() -> Bool {
        Threads.start(name: "process \(identity.pid)", stackSize: 8 << 20) { [self] in
            // Signals go to the watching thread, which stops the recordings.
            scalene_block_handled_signals()
            record()
        }
    }

    private func record() {
        let session = ProfileSession(target: target, options: options, launched: false)
        let recording = ProcessRecording(session: session, intervals: pushing, warningPrefix: "process \(identity.pid): ")
        let executable = try? target.process.executablePath()
        var lastIdentityCheck = scalene_monotonic_ns()
        var answered = board.epoch
        let end = recording.run(
            stop: { [board, identity] now in
                if scalene_stop_requested() != 0 { return .interrupted(signal: scalene_stop_signal()) }
                if let reason = board.stopReason { return reason }
                // A process that exited (its pid may already name another process or thread) or
                // exec'd another program is no longer the one recorded.
                if now - lastIdentityCheck > 100_000_000 {
                    lastIdentityCheck = now
                    guard let status = ProcessStatus.read(pid: identity.pid), status.identity == identity, !status.hasExited,
                          (try? target.process.executablePath()) == executable else { return .targetExited }
                }
                return nil
            },
            snapshotDue: { [board] _ in
                let epoch = board.epoch
                guard epoch != answered else { return false }
                answered = epoch
                return true
            },
            deliver: { [board, identity, options] job in board.answer(identity, epoch: answered, job, mode: options.snapshotMode) })
        board.finish(identity, final: recording.finish(end: end), end: end)
    }
}

/// What the recordings of a family and the thread that watches them share.
final class FamilyBoard: @unchecked Sendable {
    private let lock = ConditionLock()
    private var currentEpoch = 0
    private var stop: ProfileEnd?
    private struct MemberState {
        var answeredEpoch = 0
        var pending: SnapshotJob?
        var finished: Finished?
    }
    struct Finished {
        var final: SnapshotJob
        /// A snapshot answered but not collected yet (its interval precedes the final one).
        var pending: SnapshotJob?
        var end: ProfileEnd
    }
    private var members = [ProcessIdentity: MemberState]()

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    var epoch: Int { locked { currentEpoch } }
    var stopReason: ProfileEnd? { locked { stop } }

    func join(_ identity: ProcessIdentity) { locked { members[identity] = MemberState(answeredEpoch: currentEpoch) } }

    /// A member whose recording never started.
    func leave(_ identity: ProcessIdentity) { locked { members[identity] = nil } }

    func stopAll(_ reason: ProfileEnd) { locked { stop = reason } }

    /// Asks every recording for a snapshot; returns the request's number.
    func requestSnapshot() -> Int { locked { currentEpoch += 1; return currentEpoch } }

    /// A recording's snapshot. One not collected yet absorbs the next (no interval is lost).
    func answer(_ identity: ProcessIdentity, epoch: Int, _ job: SnapshotJob, mode: SnapshotMode) {
        locked {
            guard var state = members[identity] else { return }
            state.pending = state.pending.map { SnapshotJob(combining: $0, job, mode: mode) } ?? job
            state.answeredEpoch = epoch
            members[identity] = state
        }
    }

    func allAnswered(_ epoch: Int, among identities: Set<ProcessIdentity>) -> Bool {
        locked { identities.allSatisfy { members[$0].map { $0.answeredEpoch >= epoch || $0.finished != nil } ?? true } }
    }

    /// The snapshots answered since the last call.
    func takeAnswers() -> [FamilyJob.Part] {
        locked {
            var answers = [FamilyJob.Part]()
            for (identity, state) in members {
                guard let pending = state.pending, state.finished == nil else { continue }
                answers.append(FamilyJob.Part(identity, pending))
                members[identity]?.pending = nil
            }
            return answers
        }
    }

    func finish(_ identity: ProcessIdentity, final: SnapshotJob, end: ProfileEnd) {
        locked {
            guard let state = members[identity] else { return }
            members[identity]?.finished = Finished(final: final, pending: state.pending, end: end)
        }
    }

    /// A recording that has ended, once (it is forgotten).
    func takeFinished(_ identity: ProcessIdentity) -> Finished? {
        locked {
            guard let finished = members[identity]?.finished else { return nil }
            members[identity] = nil
            return finished
        }
    }
}

/// `--merge`: the family's profile as one, the sum of its processes. Processes that ended are
/// folded into one sum at once, so what is kept does not grow with the number of processes.
struct MergedFamily {
    let mode: SnapshotMode
    /// The merged profile is described as this process's (its pid and command line) when it is
    /// Python: a sum takes its description from the first profile summed.
    let root: Int32
    /// --push: the interval since the previous push is summed as well (whatever the mode).
    let pushing: Bool
    /// The Unix second the previous pushed interval ended at.
    private var pushedUntil: Int?
    /// Intervals to push not yet in a snapshot (of processes that ended).
    private var unpushed = [Profile]()
    /// The whole recording of every process that ended, summed.
    private var retired: Profile?
    /// The latest whole recording of each live process.
    private var latest = [ProcessIdentity: Profile]()
    /// Delta mode: intervals of ended processes not yet in a snapshot.
    private var unsnapshotted = [Profile]()

    init(mode: SnapshotMode, root: Int32, pushing: Bool) {
        self.mode = mode
        self.root = root
        self.pushing = pushing
    }

    private func sum(_ profiles: [Profile]) -> Profile? {
        Profile.merged(profiles.filter { $0.pid == root } + profiles.filter { $0.pid != root })
    }

    mutating func absorbPending(_ job: SnapshotJob) {
        if mode == .delta { unsnapshotted.append(job.main) }
        if let pushed = job.pushed { unpushed.append(pushed.profile) }
    }

    mutating func retire(_ identity: ProcessIdentity, _ final: SnapshotJob) {
        latest[identity] = nil
        retired = retired.map { sum([$0, final.whole]) ?? final.whole } ?? final.whole
        if mode == .delta { unsnapshotted.append(final.main) }
        if let pushed = final.pushed { unpushed.append(pushed.profile) }
        foldUnsnapshotted()
    }

    /// Keeps the list of waiting intervals short: they are summed as they come.
    private mutating func foldUnsnapshotted() {
        if unsnapshotted.count > 1, let total = sum(unsnapshotted) { unsnapshotted = [total] }
        if unpushed.count > 1, let total = sum(unpushed) { unpushed = [total] }
    }

    /// One snapshot of the family from the recordings' answers.
    mutating func snapshot(_ answers: [FamilyJob.Part]) -> SnapshotJob? {
        for answer in answers { latest[answer.identity] = answer.job.whole }
        guard let whole = sum(Array(latest.values) + (retired.map { [$0] } ?? [])) else { return nil }
        let pushed = takePushed(answers.compactMap { $0.job.pushed?.profile })
        guard mode == .delta else { return SnapshotJob(main: whole, whole: whole, pushed: pushed) }
        let intervals = answers.map(\.job.main) + unsnapshotted
        unsnapshotted = []
        return SnapshotJob(main: sum(intervals) ?? whole, whole: whole, pushed: pushed)
    }

    /// The family's interval to push: the processes' intervals summed, from the previous push's
    /// end (so the pushed intervals tile the recording) to the latest of them.
    private mutating func takePushed(_ intervals: [Profile]) -> PushedInterval? {
        guard pushing, let interval = sum(intervals + unpushed) else { return nil }
        unpushed = []
        let from = pushedUntil ?? PushSetup.epochSecond(interval.startEpoch)
        let until = max(from, PushSetup.epochSecond(interval.startEpoch + interval.elapsed))
        pushedUntil = until
        return PushedInterval(profile: interval, from: from, until: until)
    }

    /// The last report: every process's whole recording (they have all ended by now).
    mutating func final(end: ProfileEnd) -> SnapshotJob? {
        guard var whole = retired else { return nil }
        whole.end = end
        let pushed = takePushed([])
        guard mode == .delta, var main = sum(unsnapshotted) else { return SnapshotJob(main: whole, whole: whole, pushed: pushed) }
        main.end = end
        return SnapshotJob(main: main, whole: whole, pushed: pushed)
    }
}

/// What the family's writer thread writes next: snapshots (one per process, or the merged one) and
/// the reports of processes that ended. Jobs that wait are combined, and none of them is lost.
struct FamilyJob: Sendable {
    struct Part: Sendable {
        var identity: ProcessIdentity
        var job: SnapshotJob
        init(_ identity: ProcessIdentity, _ job: SnapshotJob) {
            self.identity = identity
            self.job = job
        }
    }
    var snapshots: [Part] = []
    var finals: [Part] = []
    var merged: SnapshotJob?

    /// Two jobs that waited, as one: a process's two snapshots are combined like one process's
    /// (`SnapshotJob(combining:)`); final reports are all kept.
    func combined(with later: FamilyJob, mode: SnapshotMode) -> FamilyJob {
        var result = self
        for part in later.snapshots {
            if let index = result.snapshots.firstIndex(where: { $0.identity == part.identity }) {
                result.snapshots[index].job = SnapshotJob(combining: result.snapshots[index].job, part.job, mode: mode)
            } else {
                result.snapshots.append(part)
            }
        }
        result.finals += later.finals
        if let next = later.merged {
            result.merged = result.merged.map { SnapshotJob(combining: $0, next, mode: mode) } ?? next
        }
        return result
    }
}

/// The family's report files: the merged one, or one set per process (named by pid), each
/// dropped when its process's final report is written. Used by one thread at a time.
final class FamilyReports: @unchecked Sendable {
    private let options: ProfileOptions
    private let writer: OutputWriter
    private var perProcess = [ProcessIdentity: OutputFiles]()
    private lazy var mergedFiles = OutputFiles(options: options)
    /// Final reports written.
    private(set) var written = 0

    init(options: ProfileOptions) {
        self.options = options
        writer = OutputWriter(options: options)
    }

    private func files(_ identity: ProcessIdentity) -> OutputFiles {
        if let files = perProcess[identity] { return files }
        let files = OutputFiles(options: options, pid: identity.pid)
        perProcess[identity] = files
        return files
    }

    func write(_ job: FamilyJob) {
        if let merged = job.merged { mergedFiles.writeReporting(merged, writer: writer) }
        for part in job.snapshots { files(part.identity).writeReporting(part.job, writer: writer) }
        for part in job.finals {
            writeFinal(part.job, to: files(part.identity))
            perProcess[part.identity] = nil
        }
    }

    /// The merged final report.
    func writeFinal(_ job: SnapshotJob) { writeFinal(job, to: mergedFiles) }

    /// A final report: to its files, and the table to stdout when there is no --output (one table
    /// after another, each headed by its process).
    private func writeFinal(_ job: SnapshotJob, to files: OutputFiles) {
        written += 1
        do throws(Failure) {
            let reports = try writer.render(main: job.main, whole: job.whole)
            for failure in files.write(reports, reopenGeneration: scalene_reopen_generation()) {
                printError("scalene-attach: warning: the report of process \(job.whole.pid) was not written: \(failure)")
            }
            if options.output == nil {
                _ = OutputFile.writeAll(1, reports.main)
                _ = OutputFile.writeAll(1, Array("\n".utf8))
            }
        } catch {
            printError("scalene-attach: warning: the report of process \(job.whole.pid) failed: \(error.message)")
        }
    }
}
