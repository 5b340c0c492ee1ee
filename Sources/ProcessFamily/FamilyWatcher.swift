import PythonInspector
import RemoteProcess

/// Finds the Python processes among a root process and its descendants as they appear, and says
/// once for each other process why it is not profiled.
///
/// A new process is examined only once it is `settleSeconds` old: `subprocess` and
/// `multiprocessing`'s spawn and forkserver start a program by fork then exec, and the copy of
/// Python between the two is not the process that will run. A process that exec's later is
/// examined again (the member recording it ends by itself when its executable changes).
public final class FamilyWatcher {
    public let root: Int32
    public var settleSeconds = 0.05
    /// How long a process that looks like Python but cannot be read yet (its interpreter is still
    /// starting) is retried before it is given up.
    public var retrySeconds = 5.0
    private let procRoot: String

    private struct Examination {
        var executable: String
        var firstSeen: Double
        var settled: Bool
    }
    private var examined: [ProcessIdentity: Examination] = [:]

    /// A Python process to record.
    public struct Found {
        public var identity: ProcessIdentity
        public var target: PythonTarget
        /// Seconds since the process started when it was found.
        public var age: Double
        public var isRoot: Bool
    }

    /// A process of the family that is not recorded, and why.
    public struct Skipped: Sendable {
        public var identity: ProcessIdentity
        public var executable: String
        public var error: InspectError
    }

    public init(root: Int32, procRoot: String = "/proc") {
        self.root = root
        self.procRoot = procRoot
    }

    /// Whether the root process is still alive.
    public var rootAlive: Bool { ProcessStatus.read(pid: root, procRoot: procRoot).map { !$0.hasExited } ?? false }

    /// The family now: processes found to be Python since the last call, those given up (each once),
    /// and every live process of the family (the root included while it lives).
    public func poll(now: Double) -> (found: [Found], skipped: [Skipped], alive: Set<ProcessIdentity>) {
        var family = ProcessTree.descendants(of: root, procRoot: procRoot)
        if let status = ProcessStatus.read(pid: root, procRoot: procRoot), !status.hasExited { family.insert(status, at: 0) }
        var found = [Found]()
        var skipped = [Skipped]()
        var alive = Set<ProcessIdentity>()
        for status in family {
            let identity = status.identity
            alive.insert(identity)
            let executable = (try? ProcFiles.linkTarget("\(procRoot)/\(identity.pid)/exe")) ?? ""
            if var entry = examined[identity] {
                if entry.executable == executable && entry.settled { continue }
                if entry.executable != executable { entry = Examination(executable: executable, firstSeen: now, settled: false) }
                examined[identity] = entry
            } else {
                examined[identity] = Examination(executable: executable, firstSeen: now, settled: false)
            }
            let isRoot = identity.pid == root
            let age = ProcessTree.age(of: identity) ?? 0
            if !isRoot && age < settleSeconds { continue }
            do {
                let target = try PythonTarget(pid: identity.pid)
                examined[identity]?.settled = true
                found.append(Found(identity: identity, target: target, age: age, isRoot: isRoot))
            } catch {
                switch error {
                case .exited, .noSuchProcess:
                    examined[identity]?.settled = true
                case .notPython, .unsupportedVersion, .permissionDenied, .memoryReadsFiltered:
                    examined[identity]?.settled = true
                    // A process that is not Python at all is not worth a line; everything else is.
                    if case .notPython = error {} else {
                        skipped.append(Skipped(identity: identity, executable: executable, error: error))
                    }
                case .failed, .unrecognisedPython:
                    // An interpreter still starting can look unreadable or unrecognised for a moment.
                    if now - (examined[identity]?.firstSeen ?? now) > retrySeconds {
                        examined[identity]?.settled = true
                        skipped.append(Skipped(identity: identity, executable: executable, error: error))
                    }
                }
            }
        }
        // What left the family is forgotten: the table stays as large as the family.
        examined = examined.filter { alive.contains($0.key) }
        return (found, skipped, alive)
    }

    /// Forgets a process, so that the next poll examines it again (its recording ended, e.g. because
    /// it exec'd another program).
    public func forget(_ identity: ProcessIdentity) {
        examined[identity] = nil
    }
}
