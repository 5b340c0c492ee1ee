import CNativeStacks
import CScaleneSys
import RemoteProcess
#if canImport(Glibc)
import Glibc
#endif

/// Native stacks without stopping anything: a `PERF_COUNT_SW_TASK_CLOCK` sampling event on every
/// thread of the target (followed as threads come and go), each sample carrying the user registers
/// and a copy of the top of the user stack, read from the event's mmap ring and unwound from the
/// copy. The events count the thread's own CPU time, so a thread is sampled in proportion to the
/// CPU it uses; an idle thread costs nothing.
public final class PerfStackSampler: NativeStackSource {
    public let method = NativeMethod.perf
    public private(set) var statistics = NativeStatistics()
    let pid: Int32
    let unwinder: NativeUnwinder
    let periodNanoseconds: UInt64
    let stackBytes: Int
    private var rings: [Int32: scalene_perf_ring] = [:]
    private var failed: Set<Int32> = []
    private var lastThreadScan: UInt64 = 0
    private var lost: UInt64 = 0
    private static let batch = 64
    private var samples = [scalene_native_sample](repeating: scalene_native_sample(), count: PerfStackSampler.batch)
    private var stacks: [UInt8]
    /// Threads with a ring, at most (each ring is 128 KiB of locked memory).
    public static let maximumThreads = 1024

    /// Opens an event on every thread of `pid`. Throws `.perfNotPermitted` when the kernel refuses
    /// perf events for this process (the caller falls back to ptrace).
    public init(pid: Int32, unwinder: NativeUnwinder, rateHz: Double, stackBytes: Int = 8192) throws(NativeSamplingError) {
        self.pid = pid
        self.unwinder = unwinder
        periodNanoseconds = UInt64(max(1_000, 1e9 / max(1, rateHz)))
        self.stackBytes = stackBytes
        stacks = [UInt8](repeating: 0, count: Self.batch * stackBytes)
        let fd = scalene_perf_open(pid, periodNanoseconds, UInt32(stackBytes))
        if fd < 0 {
            let code = errno
            let reason = String(cString: strerror(code))
            let paranoid = (try? ProcFiles.text("/proc/sys/kernel/perf_event_paranoid"))
                .map { String($0.filter { $0 != "\n" }) } ?? "?"
            throw .perfNotPermitted(detail: "perf_event_open: \(reason) (kernel.perf_event_paranoid = \(paranoid))")
        }
        var ring = scalene_perf_ring()
        guard Self.map(fd, into: &ring) else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .perfNotPermitted(detail: "cannot map the perf ring: \(reason)")
        }
        rings[pid] = ring
        followThreads(now: scalene_monotonic_ns())
    }

    deinit {
        for key in rings.keys { rings[key].map { var ring = $0; scalene_perf_close(&ring) } }
    }

    /// Maps a ring of 32 data pages, or fewer when locked memory is short (perf_event_mlock_kb).
    private static func map(_ fd: Int32, into ring: inout scalene_perf_ring) -> Bool {
        for pages: UInt32 in [32, 8, 2] where scalene_perf_map(fd, pages, &ring) == 0 { return true }
        return false
    }

    /// Opens events on new threads and closes those of threads that ended.
    func followThreads(now: UInt64) {
        lastThreadScan = now
        guard let entries = try? ProcFiles.directoryEntries("/proc/\(pid)/task") else { return }
        let tids = Set(entries.compactMap { Int32($0) })
        for (tid, ring) in rings where !tids.contains(tid) {
            var closing = ring
            drain(&closing) { _ in } // a thread that ended: its last samples have no Python stack left
            scalene_perf_close(&closing)
            rings[tid] = nil
        }
        for tid in tids where rings[tid] == nil && !failed.contains(tid) && rings.count < Self.maximumThreads {
            let fd = scalene_perf_open(tid, periodNanoseconds, UInt32(stackBytes))
            var ring = scalene_perf_ring()
            if fd >= 0 && Self.map(fd, into: &ring) {
                rings[tid] = ring
            } else {
                if fd >= 0 { close(fd) }
                failed.insert(tid)
                statistics.failedThreads += 1
            }
        }
        failed.formIntersection(tids)
    }

    public func collect(now: UInt64, running: [Int32]) -> [NativeStack] {
        if now &- lastThreadScan > 100_000_000 { followThreads(now: now) }
        var result = [NativeStack]()
        for tid in rings.keys.sorted() {
            guard var ring = rings[tid] else { continue }
            drain(&ring) { result.append($0) }
            rings[tid] = ring
        }
        statistics.lost = Int(clamping: lost)
        result.sort { $0.time < $1.time }
        return result
    }

    private func drain(_ ring: inout scalene_perf_ring, deliver: (NativeStack) -> Void) {
        let stride = stackBytes
        for _ in 0..<16 {
            let count = samples.withUnsafeMutableBufferPointer { out in
                stacks.withUnsafeMutableBufferPointer { bytes in
                    scalene_perf_drain(&ring, out.baseAddress!, bytes.baseAddress!, stride, Int32(out.count), &lost)
                }
            }
            guard count > 0 else { return }
            let now = scalene_monotonic_ns()
            for index in 0..<Int(count) {
                var sample = samples[index]
                guard sample.has_regs != 0 else { lost += 1; continue }
                let size = min(Int(clamping: sample.stack_size), stride)
                let addresses = withUnsafePointer(to: &sample.regs) { tuple in
                    tuple.withMemoryRebound(to: UInt64.self, capacity: Int(SCALENE_NATIVE_REGS)) { regs in
                        stacks.withUnsafeBytes { bytes in
                            unwinder.unwind(registers: regs,
                                            stack: UnsafeRawBufferPointer(rebasing: bytes[(index * stride)..<(index * stride + size)]),
                                            now: now)
                        }
                    }
                }
                statistics.samples += 1
                statistics.frames += addresses.count
                deliver(unwinder.stack(tid: Int32(bitPattern: sample.tid), time: sample.time, addresses: addresses))
            }
            if Int(count) < Self.batch { return }
        }
    }
}
