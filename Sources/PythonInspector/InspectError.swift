import CPythonLayouts
import RemoteProcess

/// Why a Python process could not be inspected. Each case is one thing a user can act on.
public enum InspectError: Error, Equatable, Sendable {
    case noSuchProcess(pid: Int32)
    case exited(pid: Int32)
    case permissionDenied(pid: Int32)
    /// Our own process's seccomp filter refuses reading another process's memory.
    case memoryReadsFiltered(pid: Int32)
    /// No loaded binary defines `_PyRuntime`.
    case notPython(pid: Int32, executable: String)
    /// A Python we recognise but do not support (too old, too new, free-threaded).
    case unsupportedVersion(pid: Int32, version: String, reason: String)
    /// A binary with `_PyRuntime` whose version we could not determine or whose structures do not
    /// validate.
    case unrecognisedPython(pid: Int32, detail: String)
    /// Anything else (with detail).
    case failed(pid: Int32, detail: String)

    public init(_ error: ProcessAccessError) {
        switch error {
        case .noSuchProcess(let pid): self = .noSuchProcess(pid: pid)
        case .exited(let pid): self = .exited(pid: pid)
        case .permissionDenied(let pid): self = .permissionDenied(pid: pid)
        case .memoryReadsFiltered(let pid): self = .memoryReadsFiltered(pid: pid)
        case .failed(let pid, let detail): self = .failed(pid: pid, detail: detail)
        }
    }
}
