import CScaleneSys
import TextFormatting
import Threads
#if canImport(Glibc)
import Glibc
#endif

/// What the pusher tells its owner (who says it on stderr). Each kind of failure is told once a
/// run; the pusher decides that, so the owner prints every event it gets.
public enum PushEvent: Sendable, Equatable {
    /// The server stopped taking snapshots (no answer, a timeout, HTTP 5xx or 429): they are
    /// spooled and retried with back-off.
    case outage(reason: String)
    /// After an outage that was told, the spool has been sent.
    case recovered(sentSpooled: Int)
    /// The server refused a snapshot for good (a 4xx other than 429): it is dropped.
    case refused(status: Int, detail: String)
    /// The spool reached its bound: the oldest snapshots are being dropped.
    case spoolFull(maxBytes: UInt64)
    /// A snapshot could not be written to the spool (it is dropped).
    case spoolFailed(reason: String)
}

/// Counts of one run, for the final summary.
public struct PushSummary: Sendable, Equatable {
    public var sent = 0
    public var refused = 0
    /// Dropped by the spool's bound, or because the spool could not be written.
    public var dropped = 0
    /// Still in the spool at the end (sent by a later run with the same spool folder).
    public var leftInSpool = 0
    public var spoolDirectory = ""
    /// Whether everything queued was sent within the time given.
    public var drained = false
}

/// Pushes snapshots from a thread of its own, so a slow, hung or absent server never delays the
/// caller.
///
/// `submit` never blocks on the network: snapshots wait in a bounded queue (`capacity`); when it is
/// full, the oldest waiting one goes to the spool. A request that gets no answer (connection
/// refused, timeout) or HTTP 5xx or 429 puts its snapshot in the spool, and from then on every
/// snapshot goes there until the server answers again; the oldest spooled one is retried with
/// exponential back-off (1 s doubling to 60 s), and once one succeeds the spool is sent oldest
/// first, each file deleted after a 2xx. A 4xx other than 429 is final: that snapshot is dropped.
public final class Pusher: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var target: IngestTarget
        public var capacity = 4
        public var firstBackoff = 1.0
        public var maxBackoff = 60.0

        public init(target: IngestTarget) { self.target = target }
    }

    private let configuration: Configuration
    private let transport: PushTransport
    public let spool: Spool
    private let report: @Sendable (PushEvent) -> Void

    private let condition = ConditionLock()
    private var queue: [PushSnapshot] = []
    private var inFlight: PushSnapshot?
    private var stopping = false
    private var finished = false
    /// Set when the thread must stop trying (finish's deadline, or a failure while finishing).
    private var givingUp = false
    private var inOutage = false
    private var outageTold = false
    private var spooledSent = 0
    private var backoff = 0.0
    /// When the spool may be tried again (monotonic seconds, `now()`).
    private var nextAttempt = -Double.infinity
    private var summary = PushSummary()
    private var toldFailures: Set<String> = []

    /// Starts the pusher's thread. `transport` is used on that thread only.
    public init(configuration: Configuration, transport: PushTransport, spool: Spool,
                report: @escaping @Sendable (PushEvent) -> Void) {
        self.configuration = configuration
        self.transport = transport
        self.spool = spool
        self.report = report
        summary.spoolDirectory = spool.directory
        // The thread holds the pusher: after a `finish` that gave up on a hung request, the thread
        // may still return from it later, and must find the pusher there. (Should the system refuse
        // a thread, nothing is sent and `finish` spools everything when its time is up.)
        Threads.start(name: "push") {
            // Signals belong to the sampling thread.
            scalene_block_handled_signals()
            self.loop()
        }
    }

    /// Queues a snapshot; never waits for the network (at worst it writes one file to the spool).
    public func submit(_ snapshot: PushSnapshot) {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            return
        }
        var spill: PushSnapshot?
        if queue.count >= configuration.capacity { spill = queue.removeFirst() }
        queue.append(snapshot)
        condition.signal()
        condition.unlock()
        if let spill { toSpool(spill) }
    }

    /// Sends what is queued and spooled, waiting at most `timeout` seconds; what could not be sent
    /// is left in the spool. No snapshot is accepted afterwards.
    public func finish(timeout: Double) -> PushSummary {
        let deadline = Self.now() + timeout
        condition.lock()
        stopping = true
        // One prompt attempt, whatever the back-off says: the server may be back.
        nextAttempt = -.infinity
        condition.broadcast()
        while !finished {
            if !condition.wait(seconds: deadline - Self.now()) { break }
        }
        var leftovers = [PushSnapshot]()
        if !finished {
            // A request hangs: what waits, and the snapshot being sent, go to the spool.
            givingUp = true
            leftovers = queue + (inFlight.map { [$0] } ?? [])
            queue = []
        }
        condition.unlock()
        for snapshot in leftovers { toSpool(snapshot) }
        condition.lock()
        var result = summary
        result.drained = finished && spool.isEmpty
        condition.unlock()
        result.leftInSpool = spool.count
        result.dropped = spool.dropped
        return result
    }

    // MARK: - The pusher's thread

    private enum Outcome {
        case sent
        case retry(kind: String, reason: String)
        case refused(status: Int, detail: String)
    }

    private func loop() {
        condition.lock()
        run: while true {
            if givingUp { break run }
            let spooled = !spool.isEmpty
            if let first = queue.first, !spooled, !inOutage {
                queue.removeFirst()
                inFlight = first
                condition.unlock()
                let outcome = send(first)
                condition.lock()
                inFlight = nil
                if givingUp { break run }
                switch outcome {
                case .sent:
                    summary.sent += 1
                case .retry(let kind, let reason):
                    startOutage(kind: kind, reason: reason)
                    condition.unlock()
                    toSpool(first)
                    condition.lock()
                    if stopping { break run }
                case .refused(let status, let detail):
                    refuse(status: status, detail: detail)
                }
                continue
            }
            if !queue.isEmpty {
                // In an outage, or older snapshots are spooled: keep the order, through the spool.
                let waiting = queue
                queue = []
                condition.unlock()
                for snapshot in waiting { toSpool(snapshot) }
                condition.lock()
                continue
            }
            if spooled && Self.now() >= nextAttempt {
                condition.unlock()
                guard let (name, snapshot) = spool.oldest() else {
                    condition.lock()
                    continue
                }
                let outcome = send(snapshot)
                condition.lock()
                if givingUp { break run }
                switch outcome {
                case .sent:
                    spool.remove(name)
                    summary.sent += 1
                    backoff = 0
                    if inOutage { spooledSent += 1 }
                    if spool.isEmpty && inOutage {
                        inOutage = false
                        if outageTold { tell(.recovered(sentSpooled: spooledSent)) }
                        outageTold = false
                        spooledSent = 0
                    }
                case .retry(let kind, let reason):
                    startOutage(kind: kind, reason: reason)
                    if stopping { break run }
                case .refused(let status, let detail):
                    spool.remove(name)
                    refuse(status: status, detail: detail)
                }
                continue
            }
            if stopping && (!spooled || inOutage) { break run }
            if spooled {
                condition.wait(seconds: nextAttempt - Self.now())
            } else {
                condition.wait()
            }
        }
        // Whatever still waits is kept for a later run.
        let rest = givingUp ? [] : queue
        queue = []
        condition.unlock()
        for snapshot in rest { toSpool(snapshot) }
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// CLOCK_MONOTONIC in seconds: deadlines and back-off do not move with the wall clock.
    static func now() -> Double { Double(scalene_monotonic_ns()) / 1e9 }

    /// Called with the lock held.
    private func startOutage(kind: String, reason: String) {
        backoff = backoff == 0 ? configuration.firstBackoff : min(configuration.maxBackoff, backoff * 2)
        nextAttempt = Self.now() + backoff
        guard !inOutage else { return }
        inOutage = true
        spooledSent = 0
        if toldFailures.insert("outage " + kind).inserted {
            outageTold = true
            tell(.outage(reason: reason))
        }
    }

    /// Called with the lock held.
    private func refuse(status: Int, detail: String) {
        summary.refused += 1
        if toldFailures.insert("refused \(status)").inserted { tell(.refused(status: status, detail: detail)) }
    }

    private func tell(_ event: PushEvent) { report(event) }

    /// Called without the lock.
    private func toSpool(_ snapshot: PushSnapshot) {
        do {
            let dropped = try spool.store(snapshot)
            if dropped > 0 { tellOnce("spool full", .spoolFull(maxBytes: spool.maxBytes)) }
        } catch {
            tellOnce("spool failed", .spoolFailed(reason: error.description))
        }
    }

    private func tellOnce(_ kind: String, _ event: PushEvent) {
        condition.lock()
        let first = toldFailures.insert(kind).inserted
        condition.unlock()
        if first { tell(event) }
    }

    private func send(_ snapshot: PushSnapshot) -> Outcome {
        let target = configuration.target
        let boundary = IngestTarget.boundary(for: snapshot.profile)
        let result = transport.post(url: target.url(for: snapshot), headers: target.headers(boundary: boundary),
                                    userPassword: target.userPassword,
                                    body: IngestTarget.body(profile: snapshot.profile, boundary: boundary))
        switch result {
        case .response(let status, _) where (200..<300).contains(status):
            return .sent
        case .response(let status, let body) where status == 429 || status >= 500 || status < 200:
            return .retry(kind: "http \(status)", reason: "server answers HTTP \(status)\(Self.detail(body))")
        case .response(let status, let body):
            return .refused(status: status, detail: Self.detail(body))
        case .failed(let failure):
            switch failure.kind {
            case .unreachable: return .retry(kind: "unreachable", reason: "server unreachable (\(failure.message))")
            case .timedOut: return .retry(kind: "timeout", reason: "no answer in time (\(failure.message))")
            case .other: return .retry(kind: "other", reason: "request failed (\(failure.message))")
            }
        }
    }

    /// The first line of a server's answer, shortened: ": invalid token".
    static func detail(_ body: String) -> String {
        let line = body.split(whereSeparator: \.isNewline).first.map(String.init)?.trimmingWhitespace() ?? ""
        guard !line.isEmpty else { return "" }
        return ": " + (line.count > 160 ? String(line.prefix(160)) + "…" : line)
    }
}
