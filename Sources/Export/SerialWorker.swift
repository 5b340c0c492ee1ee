import CScaleneSys
import Threads
#if canImport(Glibc)
import Glibc
#endif

/// A thread of its own that runs jobs in order from a bounded queue, so that whatever they wait
/// for (a slow or full disk, a server) never delays the thread that submits them.
///
/// `submit` never blocks: when `capacity` jobs already wait, the newest waiting job and the new
/// one are combined into one (`combine`: a newer cumulative snapshot replaces an older one; two
/// delta snapshots are summed, so no interval is lost).
public final class SerialWorker<Job: Sendable>: @unchecked Sendable {
    private let condition = ConditionLock()
    private var queue: [Job] = []
    private var stopping = false
    private var running = false
    public let capacity: Int
    private var combinedCount = 0
    /// False when the system refused the thread: jobs then run in `submit`, on the caller's thread.
    private var started = false
    private let perform: @Sendable (Job) -> Void

    /// - Parameter perform: runs on the worker's thread, one job at a time.
    public init(name: String, capacity: Int = 2, perform: @escaping @Sendable (Job) -> Void) {
        self.capacity = max(1, capacity)
        self.perform = perform
        started = Threads.start(name: name) { [unowned self] in
            // Signals belong to the sampling threads, which act on them.
            scalene_block_handled_signals()
            self.loop(perform)
        }
    }

    /// Jobs combined with a waiting one because the queue was full.
    public var combined: Int {
        condition.lock()
        defer { condition.unlock() }
        return combinedCount
    }

    public func submit(_ job: Job, combine: (Job, Job) -> Job) {
        guard started else {
            perform(job)
            return
        }
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return }
        if queue.count >= capacity, let last = queue.popLast() {
            queue.append(combine(last, job))
            combinedCount += 1
        } else {
            queue.append(job)
        }
        condition.signal()
    }

    /// Lets the queued jobs finish, waiting at most `timeout` seconds; returns whether everything
    /// was done. No job is accepted afterwards.
    @discardableResult
    public func finish(timeout: Double) -> Bool {
        let deadline = scalene_monotonic_ns() + UInt64(max(0, timeout) * 1e9)
        condition.lock()
        stopping = true
        condition.broadcast()
        while !queue.isEmpty || running {
            if !condition.wait(seconds: Double(Int64(bitPattern: deadline &- scalene_monotonic_ns())) / 1e9) { break }
        }
        let done = queue.isEmpty && !running
        condition.unlock()
        return done
    }

    private func loop(_ perform: @Sendable (Job) -> Void) {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                condition.unlock()
                return
            }
            let job = queue.removeFirst()
            running = true
            condition.unlock()
            perform(job)
            condition.lock()
            running = false
            condition.broadcast()
            condition.unlock()
        }
    }
}
