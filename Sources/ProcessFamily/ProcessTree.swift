import RemoteProcess
#if canImport(Glibc)
import Glibc
#endif

/// A process as the kernel names it for its whole life: a pid is reused once the process is
/// reaped, its start time (clock ticks after boot) is not, so the pair names one process.
public struct ProcessIdentity: Hashable, Sendable, CustomStringConvertible {
    public var pid: Int32
    public var startTicks: UInt64

    public init(pid: Int32, startTicks: UInt64) {
        self.pid = pid
        self.startTicks = startTicks
    }

    public var description: String { "\(pid)" }
}

/// One line of /proc/PID/stat: what the process tree needs of it.
public struct ProcessStatus: Sendable, Equatable {
    public var identity: ProcessIdentity
    public var parent: Int32
    /// R, S, D, Z...: a zombie has exited and waits to be reaped.
    public var state: Character

    public var hasExited: Bool { state == "Z" || state == "X" }

    /// Parses a stat line. The command (field 2) is in parentheses and may hold spaces and
    /// parentheses itself, so fields are counted from the last ')'.
    public init?(parsing bytes: [UInt8], pid: Int32) {
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        // After the command: state (3), ppid (4), ... starttime (22).
        guard fields.count >= 20, let stateByte = fields.first?.first,
              let parent = Int32(String(decoding: fields[fields.startIndex + 1], as: UTF8.self)),
              let start = UInt64(String(decoding: fields[fields.startIndex + 19], as: UTF8.self)) else { return nil }
        identity = ProcessIdentity(pid: pid, startTicks: start)
        self.parent = parent
        state = Character(Unicode.Scalar(stateByte))
    }

    /// The status of one process now, or nil when it is gone.
    public static func read(pid: Int32, procRoot: String = "/proc") -> ProcessStatus? {
        guard let bytes = try? ProcFiles.read("\(procRoot)/\(pid)/stat", limit: 4096) else { return nil }
        return ProcessStatus(parsing: bytes, pid: pid)
    }
}

/// The processes descended from one root, read from /proc.
public enum ProcessTree {
    /// Every live descendant of `root` (children, their children, ...), parents before children.
    /// Reads the stat file of every process: /proc has no cheaper complete index of children (the
    /// `children` files miss processes whose threads other than the first forked them).
    public static func descendants(of root: Int32, procRoot: String = "/proc") -> [ProcessStatus] {
        guard let names = try? ProcFiles.directoryEntries(procRoot) else { return [] }
        var children = [Int32: [ProcessStatus]]()
        for name in names {
            guard let pid = Int32(name), pid > 0, let status = ProcessStatus.read(pid: pid, procRoot: procRoot),
                  !status.hasExited else { continue }
            children[status.parent, default: []].append(status)
        }
        var result = [ProcessStatus]()
        var queue = [root]
        var seen: Set<Int32> = [root]
        while let next = queue.popLast() {
            for child in children[next] ?? [] where seen.insert(child.identity.pid).inserted {
                result.append(child)
                queue.append(child.identity.pid)
            }
        }
        return result
    }

    /// Seconds since `identity` started, from the clock /proc's start times count on (boot time).
    public static func age(of identity: ProcessIdentity) -> Double? {
        var now = timespec()
        guard clock_gettime(CLOCK_BOOTTIME, &now) == 0 else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard ticks > 0 else { return nil }
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 - Double(identity.startTicks) / ticks
    }
}
