import ArgumentParser
import PythonInspector
#if canImport(Glibc)
import Glibc
#endif

/// The exit codes the README documents. Each failure a user can act on has its own.
enum ExitStatus: Int32 {
    case success = 0
    case internalError = 1
    case noSuchProcess = 2
    case notPython = 3
    case permissionDenied = 4
    case unsupportedPython = 5
    case processExited = 6
    /// `view`: the profile file cannot be read or is not a Scalene JSON profile.
    case badProfile = 7
}

/// A failure reported as one line on stderr and a distinct exit code.
struct Failure: Error {
    var message: String
    var status: ExitStatus

    init(_ message: String, _ status: ExitStatus) {
        self.message = message
        self.status = status
    }

    static let permissionAdvice = "run as root, or grant CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep scalene-attach; "
        + "in a container or sidecar: docker run --cap-add SYS_PTRACE, or capabilities.add: [SYS_PTRACE] in Kubernetes), "
        + "or allow tracing of non-child processes (sysctl kernel.yama.ptrace_scope=0)"

    init(_ error: InspectError) {
        switch error {
        case .noSuchProcess(let pid):
            self.init("no process with pid \(pid)", .noSuchProcess)
        case .exited(let pid):
            self.init("process \(pid) exited while being read", .processExited)
        case .permissionDenied(let pid):
            self.init("permission denied reading process \(pid): \(Self.permissionAdvice)", .permissionDenied)
        case .memoryReadsFiltered(let pid):
            self.init("reading the memory of process \(pid) (process_vm_readv) is refused by the seccomp filter scalene-attach "
                      + "runs under, although tracing it is allowed: Docker's default profile blocks this call unless the "
                      + "container has CAP_SYS_PTRACE; run it with --cap-add SYS_PTRACE (Kubernetes: capabilities.add: "
                      + "[SYS_PTRACE]) or --security-opt seccomp=unconfined", .permissionDenied)
        case .notPython(let pid, let executable):
            let what = executable.isEmpty ? "" : " (\(executable))"
            self.init("process \(pid)\(what) is not a Python process: no loaded binary defines _PyRuntime", .notPython)
        case .unsupportedVersion(let pid, let version, let reason):
            self.init("process \(pid) runs Python \(version), which is not supported: \(reason)", .unsupportedPython)
        case .unrecognisedPython(let pid, let detail):
            self.init("process \(pid) has an unrecognised Python: \(detail)", .unsupportedPython)
        case .failed(let pid, let detail):
            self.init("cannot read process \(pid): \(detail)", .internalError)
        }
    }
}

/// Prints a failure and exits with its code: the one place the tool ends with an error.
func fail(_ failure: Failure) -> Never {
    printError("scalene-attach: \(failure.message)")
    exit(failure.status.rawValue)
}

/// Writes a line to stderr (unbuffered, so it appears before the process exits).
func printError(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    text.withCString { _ = write(2, $0, strlen($0)) }
}
