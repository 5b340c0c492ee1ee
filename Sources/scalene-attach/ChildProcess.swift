import CScaleneSys
#if canImport(Glibc)
import Glibc
#endif

/// The program `run` launches, with posix_spawn. It gets default signal dispositions and an empty
/// signal mask whatever this process has (a test runner, say, blocks SIGCHLD), and this process's
/// environment, standard streams and process group, so Ctrl-C reaches it as usual.
final class ChildProcess {
    let pid: Int32
    private var status: Int32?

    struct SpawnError: Error {
        let code: Int32
        var description: String { String(cString: strerror(code)) }
    }

    init(path: String, arguments: [String]) throws(SpawnError) {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + arguments).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var spawned: pid_t = 0
        let rc = (argv + [nil]).withUnsafeBufferPointer { pointers in
            posix_spawn(&spawned, path, nil, &attributes,
                        UnsafeMutablePointer(mutating: pointers.baseAddress!), environ)
        }
        guard rc == 0 else { throw SpawnError(code: rc) }
        pid = spawned
    }

    /// Whether it has not exited yet (an exited child is reaped here, once).
    var isRunning: Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        let rc = waitpid(pid, &raw, WNOHANG)
        if rc == pid && (scalene_wifexited(raw) != 0 || scalene_wifsignaled(raw) != 0) { status = raw }
        if rc < 0 && errno == ECHILD { status = 0 }
        return status == nil
    }

    func waitUntilExit() {
        while status == nil {
            var raw: Int32 = 0
            let rc = waitpid(pid, &raw, 0)
            if rc == pid && (scalene_wifexited(raw) != 0 || scalene_wifsignaled(raw) != 0) { status = raw }
            if rc < 0 && errno != EINTR { status = 0 }
        }
    }

    /// Its exit code, or the number of the signal that ended it.
    var terminationStatus: Int32 {
        guard let status else { return 0 }
        return scalene_wifsignaled(status) != 0 ? scalene_wtermsig(status) : scalene_wexitstatus(status)
    }
}
