import Injector
import TextFormatting

/// One-line descriptions of injection failures.
enum InjectFailure {
    static func describe(_ error: InjectError) -> String {
        switch error {
        case .agentNotFound(let searched): return "agent library not found (looked in \(searched.joined(separator: ", ")))"
        case .agentUnsafe(let path, let reason):
            return "refusing to inject \(path): \(reason); whoever can change it could run code in every process "
                + "profiled with it (it must be owned by root or you and writable by no one else, and so must its folder)"
        case .exited(let pid): return "process \(pid) exited"
        case .permissionDenied(let pid): return "not allowed to trace process \(pid): \(Failure.permissionAdvice)"
        case .noSafePoint(_, let waited):
            return String(printf: "no thread reached a safe point to load the agent within %.0f s", waited)
        case .noDynamicLoader: return "the process's C library has no dlopen to call"
        case .dlopenFailed(let message): return "the process could not load the agent: \(message)"
        case .remoteCallFailed(let function, let detail): return "calling \(function) in the process failed: \(detail)"
        case .channel(let detail): return "cannot set up the shared-memory channel: \(detail)"
        case .agentStartBusy: return "the agent of a previous session is still detaching"
        case .agentFailed(let message): return "the agent could not start: \(message)"
        case .failed(let detail): return detail
        }
    }
}
