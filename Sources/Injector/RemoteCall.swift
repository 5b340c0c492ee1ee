import CScaleneSys
import RemoteProcess
#if canImport(Glibc)
import Glibc
#endif

/// Calls functions in a thread we hold stopped: sets up arguments and a return address of 0, lets
/// the thread run the function, and takes the stop when it returns to 0 (SIGSEGV at rip 0).
///
/// The caller saves and restores the thread's registers around a series of calls; other threads
/// keep running meanwhile (they are not stopped), so a lock the call needs is never held by a
/// thread we froze.
struct RemoteCaller {
    let pid: Int32
    let tid: Int32
    let memory: RemoteMemory
    /// Registers the thread had when we took it; every call starts from a copy.
    let saved: user_regs_struct
    let stopper: ThreadStopper

    /// How far below the stack pointer the calls write (arguments, return address) and run: the
    /// injector saves and restores this much. dlopen's own frames go deeper, into stack that is
    /// dead at the moment the thread was stopped.
    static let scratchBytes = 8192

    /// Calls `function` with integer arguments and strings (each string argument is copied onto the
    /// thread's stack, below its red zone, and passed by address). Returns rax.
    func call(_ name: String, _ function: UInt64, arguments: [Argument], timeoutSeconds: Double = 10) throws(InjectError) -> UInt64 {
        // Scratch space well below the stack pointer: beyond the 128-byte red zone, 16-aligned.
        var cursor = (saved.rsp &- 4096) & ~UInt64(15)
        var values = [UInt64]()
        for argument in arguments {
            switch argument {
            case .integer(let value):
                values.append(value)
            case .string(let text):
                let bytes = Array(text.utf8) + [0]
                cursor = (cursor &- UInt64(bytes.count)) & ~UInt64(15)
                do { try memory.write(bytes, at: cursor) } catch {
                    throw .remoteCallFailed(function: name, detail: "cannot write an argument on the stack: \(error)")
                }
                values.append(cursor)
            }
        }
        guard values.count <= 6 else { throw .remoteCallFailed(function: name, detail: "too many arguments") }
        // At a function's entry (rsp + 8) is 16-aligned; the word at rsp is the return address, 0.
        let stackPointer = ((cursor &- 256) & ~UInt64(15)) &- 8
        do { try memory.write([UInt8](repeating: 0, count: 8), at: stackPointer) } catch {
            throw .remoteCallFailed(function: name, detail: "cannot write the return address: \(error)")
        }
        var regs = saved
        regs.rip = function
        regs.rsp = stackPointer
        regs.rax = 0
        // -1 in orig_rax: if the thread was stopped inside a system call, the kernel must not
        // restart that call when it resumes into our function (it will, later, from the restored
        // registers).
        regs.orig_rax = UInt64.max
        regs.eflags &= ~UInt64(0x400) // the ABI requires the direction flag clear at a call
        let registers = [\user_regs_struct.rdi, \.rsi, \.rdx, \.rcx, \.r8, \.r9]
        for (index, value) in values.enumerated() { regs[keyPath: registers[index]] = value }
        guard scalene_ptrace_setregs(tid, &regs) == 0 else {
            throw .remoteCallFailed(function: name, detail: "PTRACE_SETREGS: \(String(cString: strerror(errno)))")
        }
        guard scalene_ptrace_cont(tid, 0) == 0 else {
            throw .remoteCallFailed(function: name, detail: "PTRACE_CONT: \(String(cString: strerror(errno)))")
        }
        return try waitForReturn(name, timeoutSeconds: timeoutSeconds)
    }

    enum Argument {
        case integer(UInt64)
        case string(String)
    }

    private func waitForReturn(_ name: String, timeoutSeconds: Double) throws(InjectError) -> UInt64 {
        let deadline = scalene_monotonic_ns() + UInt64(timeoutSeconds * 1e9)
        var status: Int32 = 0
        while true {
            let rc = scalene_waitpid(tid, &status, 1)
            if rc == tid {
                if scalene_wifexited(status) != 0 || scalene_wifsignaled(status) != 0 { throw .exited(pid: pid) }
                if scalene_wifstopped(status) != 0 {
                    let signal = scalene_wstopsig(status)
                    var regs = user_regs_struct()
                    _ = scalene_ptrace_getregs(tid, &regs)
                    if signal == SIGSEGV && regs.rip == 0 { return regs.rax }
                    if signal == SIGSEGV || signal == SIGBUS || signal == SIGILL || signal == SIGFPE {
                        // Our call faulted. The caller restores the thread as it was; the fault is
                        // not delivered (it was ours, not the program's).
                        throw .remoteCallFailed(function: name, detail: "signal \(signal) at 0x\(String(regs.rip, radix: 16))")
                    }
                    if scalene_wptrace_event(status) == scalene_ptrace_event_stop || signal == SIGTRAP || signal == SIGSTOP {
                        _ = scalene_ptrace_cont(tid, 0)
                    } else {
                        // A signal for the program: deliver it now; its handler runs and returns
                        // into our call.
                        _ = scalene_ptrace_cont(tid, signal)
                    }
                    continue
                }
            } else if rc < 0 && errno == ECHILD {
                throw .exited(pid: pid)
            }
            if scalene_monotonic_ns() > deadline {
                _ = scalene_ptrace_interrupt(tid)
                try? stopper.waitForStop(tid, timeoutNanoseconds: 1_000_000_000)
                throw .remoteCallFailed(function: name, detail: "did not return within \(Int(timeoutSeconds)) s")
            }
            usleep(100)
        }
    }
}
