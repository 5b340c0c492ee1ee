#if canImport(Glibc)
import Glibc
#endif

/// Kernel thread ids as the target sees them and as we see them.
///
/// A process in its own PID namespace (every container) knows its threads by ids of that
/// namespace: CPython stores those (`native_thread_id`, and glibc's `struct pthread` holds them
/// too), while /proc/PID/task/TID here needs ids of our namespace. The `NSpid:` line of
/// /proc/PID/task/TID/status lists a thread's id at every level, ours first and the target's own
/// last, which is how the two are matched.
public struct ThreadIDMap: Sendable, Equatable {
    /// Our id of each thread, by the id the target itself sees.
    public private(set) var hostByNamespace: [Int32: Int32] = [:]
    /// Whether the target's ids differ from ours (it runs in a PID namespace below ours).
    public private(set) var isNamespaced = false
    /// Threads whose id in the target's namespace could not be learnt (no NSpid line: a kernel
    /// before 4.1): nothing the target stores can be matched to them.
    public private(set) var unmappable: Set<Int32> = []

    public init() {}

    /// A map for threads in our own namespace: every id is itself.
    public init(identity tids: [Int32]) {
        for tid in tids { hostByNamespace[tid] = tid }
    }

    /// The ids the target sees, for matching what it stores.
    public var namespaceIDs: Set<Int32> { Set(hostByNamespace.keys) }

    /// Our id for an id the target sees.
    public func host(_ namespaceID: Int32) -> Int32? { hostByNamespace[namespaceID] }

    /// The id the target sees for one of ours (nil when it is the same).
    public func namespaceID(ofHost host: Int32) -> Int32? {
        guard isNamespaced else { return nil }
        return hostByNamespace.first { $0.value == host }?.key
    }

    /// Reads the ids of every thread of `pid`. Threads present in `previous` keep their entry (a
    /// thread's ids never change), so only new threads cost a read of their status file.
    public static func read(pid: Int32, tids: [Int32], previous: ThreadIDMap? = nil) -> ThreadIDMap {
        var map = ThreadIDMap()
        let known = previous.map { Dictionary($0.hostByNamespace.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a }) } ?? [:]
        var namespaced = previous?.isNamespaced ?? false
        for tid in tids {
            if let namespaceID = known[tid] {
                map.hostByNamespace[namespaceID] = tid
                continue
            }
            guard let levels = namespaceLevels(pid: pid, tid: tid) else {
                map.unmappable.insert(tid)
                continue
            }
            // Ours first, the target's own namespace last.
            guard let own = levels.last else { continue }
            if levels.count > 1 { namespaced = true }
            map.hostByNamespace[own] = tid
        }
        map.isNamespaced = namespaced
        if !namespaced { map.unmappable.removeAll() }
        return map
    }

    /// The `NSpid:` ids of one thread, ours first; nil if the line is missing.
    public static func namespaceLevels(pid: Int32, tid: Int32) -> [Int32]? {
        guard let text = try? ProcFiles.text("/proc/\(pid)/task/\(tid)/status") else { return nil }
        return namespaceLevels(status: text)
    }

    /// The `NSpid:` ids of a status file's text.
    public static func namespaceLevels(status text: String) -> [Int32]? {
        for line in text.split(separator: "\n") where line.hasPrefix("NSpid:") {
            let ids = line.dropFirst(6).split(whereSeparator: { $0 == "\t" || $0 == " " }).compactMap { Int32($0) }
            return ids.isEmpty ? nil : ids
        }
        return nil
    }

    /// Whether `pid` runs in a PID namespace other than ours, from its main thread's NSpid line (or,
    /// on kernels without it, from the namespace links); nil when neither can be read.
    public static func isNamespaced(pid: Int32) -> Bool? {
        if let levels = namespaceLevels(pid: pid, tid: pid) { return levels.count > 1 }
        guard let theirs = try? ProcFiles.linkTarget("/proc/\(pid)/ns/pid"),
              let ours = try? ProcFiles.linkTarget("/proc/self/ns/pid") else { return nil }
        return theirs != ours
    }
}

/// Where readers learn thread ids: a map kept current by the source.
public protocol ThreadIDSource: AnyObject {
    /// The map as last read.
    var map: ThreadIDMap { get }
    /// Re-reads the threads; returns the new map.
    @discardableResult func refresh() -> ThreadIDMap
    /// Our id of a thread the target calls `namespaceID`, re-reading once if it is new.
    func host(_ namespaceID: Int32) -> Int32?
}

/// A fixed map (tests, fuzzing, a one-off read).
public final class FixedThreadIDs: ThreadIDSource {
    public let map: ThreadIDMap

    public init(_ map: ThreadIDMap) {
        self.map = map
    }

    public func refresh() -> ThreadIDMap { map }
    public func host(_ namespaceID: Int32) -> Int32? { map.host(namespaceID) }
}

/// Keeps a `ThreadIDMap` of one process current, cheaply: a process in our own namespace needs no
/// status reads at all, and a namespaced one is re-read (incrementally) only when asked about an id
/// the map does not hold yet. Not thread-safe.
public final class ThreadIDTracker: ThreadIDSource {
    public let pid: Int32
    /// Whether the process runs in a PID namespace below ours; nil when that cannot be told.
    public let namespaced: Bool?
    private var cached: ThreadIDMap?

    public init(pid: Int32) {
        self.pid = pid
        namespaced = ThreadIDMap.isNamespaced(pid: pid)
    }

    /// The map as last read (read now if never read).
    public var map: ThreadIDMap {
        if let cached { return cached }
        return refresh()
    }

    /// Re-reads the process's threads; returns the new map.
    @discardableResult
    public func refresh() -> ThreadIDMap {
        let tids = (try? ProcFiles.directoryEntries("/proc/\(pid)/task").compactMap { Int32($0) }) ?? []
        let fresh = namespaced == false ? ThreadIDMap(identity: tids) : ThreadIDMap.read(pid: pid, tids: tids, previous: cached)
        cached = fresh
        return fresh
    }

    /// Our id of a thread the target calls `namespaceID`, re-reading once if it is new.
    public func host(_ namespaceID: Int32) -> Int32? {
        if namespaced == false { return namespaceID }
        if let found = map.host(namespaceID) { return found }
        return refresh().host(namespaceID)
    }
}
