/// Everything the attacher keeps while it records is bounded whatever the length of the run
/// (days, not minutes). Per-line and per-function tables are bounded by the target's code; these
/// are the caps on everything else, stated in one place (the README quotes them).
public enum RecordingBounds {
    /// Finished threads kept one by one. Beyond, the oldest are summed into one bucket ("N
    /// finished threads"), so a thread-per-request server does not grow a list without end.
    public static let retiredThreads = 256
    /// Speedscope's per-sample timeline, entries per live thread. Consecutive samples of one
    /// stack are one entry; when the log is full, neighbouring entries are merged pairwise (the
    /// heavier stack carries both weights), which halves it and keeps its time exact.
    public static let timelineEntries = 16_384
    /// The same for a finished thread (it is thinned when it ends).
    public static let retiredTimelineEntries = 1_024
    /// Distinct stacks interned for flame graphs and pprof (Python stacks and, with --native,
    /// merged native stacks together). A stack first seen after that is not recorded as a stack;
    /// its time still lands on its line, and pprof shows it under `[no Python stack]`.
    public static let stacks = 30_000
    /// Code objects remembered by address. Only a cache: code objects are identified by file,
    /// qualified name and first line, so generated code (exec, templates) does not pile up.
    public static let codeAddresses = 65_536
    /// Points of the global memory footprint timeline, and of each line's (thinned evenly,
    /// keeping the highest point, when twice as many have gathered).
    public static let footprintPoints = 4_096
    public static let lineTimelinePoints = 512
    /// Sampled allocations whose free is still awaited: twice what the agent's own table of sampled
    /// pointers holds (65,536), so a table full here means samples were lost; beyond it a sample
    /// is counted as untracked (its bytes count as allocated on its line, not as held).
    public static let trackedAllocations = 1 << 17
}

/// Speedscope's per-sample log of one thread: (stack index, seconds) in time order, bounded.
public enum TimelineLog {
    /// Appends a sample; a sample of the same stack as the last entry extends that entry.
    public static func append(_ stack: Int, weight: Double, to log: inout [(stack: Int, weight: Double)],
                              capacity: Int = RecordingBounds.timelineEntries) {
        if let last = log.last, last.stack == stack {
            log[log.count - 1].weight += weight
            return
        }
        log.append((stack, weight))
        if log.count > capacity { halve(&log) }
    }

    /// Halves the log until it has at most `count` entries.
    public static func thin(_ log: inout [(stack: Int, weight: Double)], to count: Int) {
        while log.count > max(1, count) { halve(&log) }
    }

    /// Merges neighbours pairwise: the heavier stack of each pair carries both weights, and equal
    /// neighbours that result are joined.
    static func halve(_ log: inout [(stack: Int, weight: Double)]) {
        var result = [(stack: Int, weight: Double)]()
        result.reserveCapacity(log.count / 2 + 1)
        var index = 0
        while index < log.count {
            var entry = log[index]
            if index + 1 < log.count {
                let next = log[index + 1]
                entry = (next.weight > entry.weight ? next.stack : entry.stack, entry.weight + next.weight)
            }
            if let last = result.last, last.stack == entry.stack {
                result[result.count - 1].weight += entry.weight
            } else {
                result.append(entry)
            }
            index += 2
        }
        log = result
    }
}
