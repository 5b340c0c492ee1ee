import CScaleneSys
#if canImport(Glibc)
import Glibc
#endif

/// The general-purpose and extended (FPU/SSE/AVX) register state of a stopped thread, saved so that
/// a thread we borrowed is put back exactly as it was.
struct SavedRegisters {
    var general: user_regs_struct
    var extended: [UInt8]

    static func save(_ tid: Int32) throws(InjectError) -> SavedRegisters {
        var regs = user_regs_struct()
        guard scalene_ptrace_getregs(tid, &regs) == 0 else {
            throw .failed(detail: "PTRACE_GETREGS \(tid): \(String(cString: strerror(errno)))")
        }
        var buffer = [UInt8](repeating: 0, count: 16384)
        var length = buffer.count
        let rc = buffer.withUnsafeMutableBytes { scalene_ptrace_get_xstate(tid, $0.baseAddress!, &length) }
        guard rc == 0 else { throw .failed(detail: "PTRACE_GETREGSET xstate \(tid): \(String(cString: strerror(errno)))") }
        return SavedRegisters(general: regs, extended: Array(buffer[0..<length]))
    }

    func restore(_ tid: Int32) throws(InjectError) {
        var regs = general
        var extended = self.extended
        let xrc = extended.withUnsafeMutableBytes { scalene_ptrace_set_xstate(tid, $0.baseAddress!, $0.count) }
        guard scalene_ptrace_setregs(tid, &regs) == 0, xrc == 0 else {
            throw .failed(detail: "restoring the registers of thread \(tid): \(String(cString: strerror(errno)))")
        }
    }
}

/// Linux x86_64 system call numbers of calls in which a thread sleeps without holding any lock the
/// dynamic loader or the allocator needs (waiting for input, for a timer, for a child). A thread
/// interrupted in one of them is a safe place to call dlopen. futex is deliberately absent: a thread
/// can wait on a futex while holding an allocator lock.
enum BlockingSyscall {
    static let names: [UInt64: String] = [
        0: "read", 7: "poll", 17: "pread64", 19: "readv", 23: "select", 34: "pause", 35: "nanosleep",
        43: "accept", 45: "recvfrom", 47: "recvmsg", 61: "wait4", 128: "rt_sigtimedwait", 130: "rt_sigsuspend",
        230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait",
        288: "accept4", 295: "preadv", 441: "epoll_pwait2",
    ]

    /// -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK and -EINTR: the
    /// values rax holds when a sleeping system call was interrupted by our stop.
    static let interruptedResults: Set<Int64> = [-512, -513, -514, -516, -4]

    /// The blocking call `regs` shows the thread stopped in, if any.
    static func interrupted(_ regs: user_regs_struct) -> String? {
        let number = regs.orig_rax
        guard Int64(bitPattern: number) >= 0, interruptedResults.contains(Int64(bitPattern: regs.rax)) else { return nil }
        return names[number]
    }
}
