import CScaleneSys
import ELFSymbols
import PythonInspector
import RemoteProcess
#if canImport(Glibc)
import Glibc
#endif

/// Loads the agent library into a running target and calls its start function, over ptrace.
///
/// 1. Stop every thread and look for one at a safe point: a thread executing the interpreter's own
///    code (not inside the C library or the dynamic loader, so it holds no allocator or loader
///    lock), or a thread asleep in a blocking system call (read, poll, nanosleep, ...). If none,
///    let the process run for a moment and look again, until a deadline.
/// 2. Resume every other thread (a lock our call needs may be held by one of them; it must be free
///    to release it), save the chosen thread's registers, and call `dlopen(agent, RTLD_NOW)`, then
///    `dlsym` for the start function, then `start(channel)`, which only starts the agent's thread.
/// 3. Restore the thread's registers exactly and resume it. A thread taken out of a system call
///    goes back into it (the kernel restarts the call from the restored registers).
/// Nothing is written to the target's code, and no Python code ever runs on the borrowed thread.
public struct AgentInjector {
    public let target: PythonTarget
    public let agentPath: String
    /// How long to wait for a safe point.
    public var safePointTimeout: Double = 3

    public init(target: PythonTarget, agentPath: String) {
        self.target = target
        self.agentPath = agentPath
    }

    /// What happened, for the report.
    public struct Outcome: Sendable {
        public var thread: Int32
        /// "interpreter code" or the blocking call the thread was in.
        public var safePoint: String
        /// How long the chosen thread was held (microseconds).
        public var heldMicroseconds: Double
    }

    /// The functions of the target's dynamic loader we call.
    struct LoaderFunctions {
        var dlopen: UInt64
        var dlsym: UInt64
        var dlerror: UInt64?
        /// glibc < 2.34 only exports the private `__libc_dlopen_mode`, which needs this flag.
        var extraOpenFlags: UInt64
    }

    public func inject(channelPath: String) throws(InjectError) -> Outcome {
        let pid = target.pid
        let map: MemoryMap
        do { map = try target.process.memoryMap() } catch { throw Self.translate(error) }
        let loader = try loaderFunctions(map: map)
        let pythonText = map.mappings.filter { $0.path == target.binary.path && $0.executable }.map { $0.start..<$0.end }

        let stopper = ThreadStopper(pid: pid)
        defer { stopper.resumeAll() }
        let deadline = scalene_monotonic_ns() + UInt64(safePointTimeout * 1e9)
        var choice: (tid: Int32, regs: SavedRegisters, reason: String)?
        while choice == nil {
            do { try stopper.stopAll() } catch { throw Self.translate(error, pid: pid) }
            choice = try pickSafeThread(stopper: stopper, pythonText: pythonText)
            if choice != nil { break }
            stopper.resumeAll()
            if scalene_monotonic_ns() > deadline {
                throw .noSafePoint(pid: pid, waitedSeconds: safePointTimeout)
            }
            usleep(2000)
        }
        guard let choice else { throw .noSafePoint(pid: pid, waitedSeconds: safePointTimeout) }
        let heldFrom = scalene_monotonic_ns()
        for tid in stopper.stoppedThreads where tid != choice.tid { stopper.release(tid) }

        let caller = RemoteCaller(pid: pid, tid: choice.tid, memory: target.memory, saved: choice.regs.general,
                                  stopper: stopper)
        // The calls use the stack below the thread's stack pointer (beyond its red zone) for their
        // arguments and frames; those bytes are put back too, so the target ends exactly as it was.
        let scratchStart = choice.regs.general.rsp &- UInt64(RemoteCaller.scratchBytes)
        let scratch = try? target.memory.bytes(at: scratchStart, count: RemoteCaller.scratchBytes)
        var failure: InjectError?
        do throws(InjectError) {
            let rtldNow: UInt64 = 2
            let handle = try caller.call("dlopen", loader.dlopen,
                                         arguments: [.string(agentPath), .integer(rtldNow | loader.extraOpenFlags)])
            if handle == 0 {
                var message = "dlopen returned NULL"
                if let dlerror = loader.dlerror, let text = try? caller.call("dlerror", dlerror, arguments: []), text != 0 {
                    let bytes = (try? target.memory.bytes(at: text, count: 256)) ?? []
                    message = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
                }
                throw .dlopenFailed(message: message)
            }
            let start = try caller.call("dlsym", loader.dlsym, arguments: [.integer(handle), .string("scalene_agent_start")])
            guard start != 0 else { throw .dlopenFailed(message: "the agent has no scalene_agent_start") }
            let result = try caller.call("scalene_agent_start", start, arguments: [.string(channelPath)])
            if result == UInt64(EBUSY) { throw .agentStartBusy }
            if result != 0 {
                throw .agentFailed(message: "the agent's thread could not start (\(String(cString: strerror(Int32(truncatingIfNeeded: result)))))")
            }
        } catch {
            failure = error
        }
        // Put the thread back exactly as it was, whatever happened.
        if let scratch { try? target.memory.write(scratch, at: scratchStart) }
        do { try choice.regs.restore(choice.tid) } catch {
            if failure == nil { failure = error }
        }
        stopper.release(choice.tid)
        if let failure { throw failure }
        return Outcome(thread: choice.tid, safePoint: choice.reason,
                       heldMicroseconds: Double(scalene_monotonic_ns() - heldFrom) / 1000)
    }

    /// A stopped thread at a safe point, with its saved registers.
    func pickSafeThread(stopper: ThreadStopper, pythonText: [Range<UInt64>]) throws(InjectError)
        -> (tid: Int32, regs: SavedRegisters, reason: String)?
    {
        var blocked: (Int32, SavedRegisters, String)?
        for tid in stopper.stoppedThreads {
            guard let regs = try? SavedRegisters.save(tid) else { continue }
            if pythonText.contains(where: { $0.contains(regs.general.rip) }) && Int64(bitPattern: regs.general.orig_rax) < 0 {
                return (tid, regs, "interpreter code")
            }
            if blocked == nil, let call = BlockingSyscall.interrupted(regs.general) {
                blocked = (tid, regs, "blocked in \(call)")
            }
        }
        return blocked
    }

    /// dlopen/dlsym/dlerror in the target: libc's (glibc 2.34+), libdl's, or glibc's private
    /// `__libc_dlopen_mode`/`__libc_dlsym` (older glibc without libdl loaded).
    func loaderFunctions(map: MemoryMap) throws(InjectError) -> LoaderFunctions {
        let wanted: Set<String> = ["dlopen", "dlsym", "dlerror", "__libc_dlopen_mode", "__libc_dlsym"]
        var libc: (ELFFile, UInt64)?
        var libdl: (ELFFile, UInt64)?
        var seen = Set<String>()
        for mapping in map.mappings where mapping.isFile && seen.insert(mapping.path).inserted {
            let name = mapping.fileName
            let isLibc = name.hasPrefix("libc.so") || name.hasPrefix("libc-2.") || name.hasPrefix("libc.musl")
            let isLibdl = name.hasPrefix("libdl.so") || name.hasPrefix("libdl-2.")
            guard isLibc || isLibdl, let elf = try? ELFFile(path: target.process.hostPath(mapping.path), only: wanted),
                  let bias = elf.loadBias(mappings: map.mappings(of: mapping.path).map { ($0.start, $0.offset) }) else { continue }
            if isLibc { libc = (elf, bias) } else { libdl = (elf, bias) }
        }
        func address(_ name: String, _ library: (ELFFile, UInt64)?) -> UInt64? {
            library.flatMap { lib in lib.0.symbol(named: name).map { $0.value &+ lib.1 } }
        }
        for library in [libc, libdl] {
            if let open = address("dlopen", library), let sym = address("dlsym", library) {
                return LoaderFunctions(dlopen: open, dlsym: sym, dlerror: address("dlerror", library), extraOpenFlags: 0)
            }
        }
        if let open = address("__libc_dlopen_mode", libc), let sym = address("__libc_dlsym", libc) {
            // __RTLD_DLOPEN marks the call as coming from dlopen itself.
            return LoaderFunctions(dlopen: open, dlsym: sym, dlerror: nil, extraOpenFlags: 0x8000_0000)
        }
        throw .noDynamicLoader(pid: target.pid)
    }

    static func translate(_ error: ProcessAccessError) -> InjectError {
        switch error {
        case .exited(let pid), .noSuchProcess(let pid): return .exited(pid: pid)
        case .permissionDenied(let pid): return .permissionDenied(pid: pid)
        case .failed(_, let detail): return .failed(detail: detail)
        }
    }

    static func translate(_ error: TraceError, pid: Int32) -> InjectError {
        switch error {
        case .exited: return .exited(pid: pid)
        case .permissionDenied: return .permissionDenied(pid: pid)
        case .timedOut(_, let tid): return .failed(detail: "thread \(tid) did not stop (uninterruptible sleep?)")
        case .failed(_, let detail): return .failed(detail: detail)
        }
    }
}
