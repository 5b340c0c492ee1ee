/// Why the agent could not be injected or run. In every case the target was left as it was: every
/// register and byte restored, every thread resumed.
public enum InjectError: Error, Equatable, Sendable {
    case agentNotFound(searched: [String])
    /// The agent file, or its folder, could be changed by someone other than root and us: loading
    /// it would hand them every profiled process.
    case agentUnsafe(path: String, reason: String)
    case exited(pid: Int32)
    case permissionDenied(pid: Int32)
    /// No thread was at a point where loading a library is safe within the time allowed.
    case noSafePoint(pid: Int32, waitedSeconds: Double)
    /// The target's C library has no dlopen we can call.
    case noDynamicLoader(pid: Int32)
    case dlopenFailed(message: String)
    /// A call made in the target did not return normally.
    case remoteCallFailed(function: String, detail: String)
    case channel(detail: String)
    /// The agent's previous session in this process is still ending (its start function said EBUSY).
    case agentStartBusy
    /// The agent loaded but reported that it could not arm, or did not arm in time.
    case agentFailed(message: String)
    case failed(detail: String)
}
