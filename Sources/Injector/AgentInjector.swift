import CAgentProtocol
import CScaleneSys
import ELFSymbols
import PythonInspector
import RemoteProcess
import TextFormatting
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
///    to release it), save the chosen thread's registers, and make calls on it: `memfd_create` for
///    the library, whose bytes we write into it through /proc/PID/fd, `dlopen("/proc/self/fd/N")`,
///    `close`, `dlsym`; then `memfd_create` for the channel, which we map the same way, and the
///    agent's start function with that descriptor (it only starts the agent's thread). Nothing is
///    placed in the target's filesystem, and no path has to exist in its mount namespace: this is
///    what makes a process in a container (its own root, its own /dev/shm) profilable from the host.
///    A copy of the agent loaded by an earlier session is reused instead of loading another.
/// 3. Restore the thread's registers exactly and resume it. A thread taken out of a system call
///    goes back into it (the kernel restarts the call from the restored registers).
/// Nothing is written to the target's code, and no Python code ever runs on the borrowed thread.
public struct AgentInjector {
    public let target: PythonTarget
    public let library: AgentLibrary
    /// How long to wait for a safe point.
    public var safePointTimeout: Double = 3

    public init(target: PythonTarget, library: AgentLibrary) {
        self.target = target
        self.library = library
    }

    /// What happened, for the report.
    public struct Outcome: Sendable {
        public var thread: Int32
        /// "interpreter code" or the blocking call the thread was in.
        public var safePoint: String
        /// How long the chosen thread was held (microseconds).
        public var heldMicroseconds: Double
        /// The agent was already loaded (an earlier session) and was started again.
        public var reusedLoadedAgent: Bool
    }

    /// The functions of the target's C library and dynamic loader we call.
    struct LoaderFunctions {
        var dlopen: UInt64
        var dlsym: UInt64
        var dlerror: UInt64?
        /// glibc < 2.34 only exports the private `__libc_dlopen_mode`, which needs this flag.
        var extraOpenFlags: UInt64
        /// `syscall` (memfd_create has a libc wrapper only since glibc 2.27) and `close`.
        var syscall: UInt64
        var close: UInt64
    }

    /// The memfd names, as /proc/PID/maps shows them ("/memfd:NAME (deleted)").
    static let libraryName = "scalene-agent"
    static let channelName = "scalene-channel"
    static let memfdCreate: UInt64 = 319 // SYS_memfd_create, x86_64
    static let memfdCloexec: UInt64 = 1  // MFD_CLOEXEC: never inherited across exec

    /// Loads and starts the agent. `channel` is called with the descriptor (in the target) of the
    /// memfd created for the channel, before the agent is started on it: it must map and fill it.
    public func inject(channel makeChannel: (Int32) throws(InjectError) -> Void) throws(InjectError) -> Outcome {
        let pid = target.pid
        let map: MemoryMap
        do { map = try target.process.memoryMap() } catch { throw Self.translate(error) }
        let loader = try loaderFunctions(map: map)
        let loaded = loadedAgentStart(map: map)
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
            let start: UInt64
            if let loaded { start = loaded } else { start = try load(caller: caller, loader: loader) }
            let channelFD = try memfd(Self.channelName, caller: caller, loader: loader)
            do throws(InjectError) {
                try makeChannel(channelFD)
                let result = try caller.call(SCALENE_AGENT_START_FD_SYMBOL, start, arguments: [.integer(UInt64(channelFD))])
                if result == UInt64(EBUSY) { throw .agentStartBusy }
                if result != 0 {
                    throw .agentFailed(message: "the agent's thread could not start (\(String(cString: strerror(Int32(truncatingIfNeeded: result)))))")
                }
            } catch {
                // The agent did not take the descriptor: it is ours to close.
                _ = try? caller.call("close", loader.close, arguments: [.integer(UInt64(channelFD))])
                throw error
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
                       heldMicroseconds: Double(scalene_monotonic_ns() - heldFrom) / 1000,
                       reusedLoadedAgent: loaded != nil)
    }

    /// Loads the library from a memfd of the target; returns the address of its start function.
    private func load(caller: RemoteCaller, loader: LoaderFunctions) throws(InjectError) -> UInt64 {
        let fd = try memfd(Self.libraryName, caller: caller, loader: loader)
        let handle: UInt64
        do throws(InjectError) {
            try Self.write(library.bytes, toDescriptor: fd, of: target.pid)
            let rtldNow: UInt64 = 2
            handle = try caller.call("dlopen", loader.dlopen,
                                     arguments: [.string("/proc/self/fd/\(fd)"), .integer(rtldNow | loader.extraOpenFlags)])
        } catch {
            _ = try? caller.call("close", loader.close, arguments: [.integer(UInt64(fd))])
            throw error
        }
        // The loader keeps its own mapping; the descriptor is not needed any more.
        _ = try? caller.call("close", loader.close, arguments: [.integer(UInt64(fd))])
        if handle == 0 {
            var message = "dlopen returned NULL"
            if let dlerror = loader.dlerror, let text = try? caller.call("dlerror", dlerror, arguments: []), text != 0 {
                let bytes = (try? target.memory.bytes(at: text, count: 256)) ?? []
                message = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            if message.containsBytes(of: "/proc/self/fd") {
                message += " (the agent is loaded through /proc/self/fd: the process must see a /proc)"
            }
            throw .dlopenFailed(message: message)
        }
        let start = try caller.call("dlsym", loader.dlsym, arguments: [.integer(handle), .string(SCALENE_AGENT_START_FD_SYMBOL)])
        guard start != 0 else { throw .dlopenFailed(message: "the agent has no \(SCALENE_AGENT_START_FD_SYMBOL)") }
        return start
    }

    /// `memfd_create(name, MFD_CLOEXEC)` in the target.
    private func memfd(_ name: String, caller: RemoteCaller, loader: LoaderFunctions) throws(InjectError) -> Int32 {
        let result = try caller.call("memfd_create", loader.syscall,
                                     arguments: [.integer(Self.memfdCreate), .string(name), .integer(Self.memfdCloexec)])
        let fd = Int64(bitPattern: result)
        guard fd >= 0, fd < Int64(Int32.max) else {
            throw .failed(detail: "memfd_create failed in the target (refused on its side; a seccomp profile may block it)")
        }
        return Int32(fd)
    }

    /// Writes `bytes` into a file the target holds open, through /proc/PID/fd.
    static func write(_ bytes: [UInt8], toDescriptor fd: Int32, of pid: Int32) throws(InjectError) {
        let path = "/proc/\(pid)/fd/\(fd)"
        let ours = open(path, O_WRONLY | O_CLOEXEC)
        guard ours >= 0 else {
            throw .channel(detail: "cannot open \(path), which the target created: \(String(cString: strerror(errno))) (refused on our side)")
        }
        defer { close(ours) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(ours, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .channel(detail: "cannot write the agent into \(path): \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    /// The start function of this very build of the agent if an earlier session loaded it (a
    /// mapping whose first page is our library's first page), else nil.
    func loadedAgentStart(map: MemoryMap) -> UInt64? {
        let header = Array(library.headerPage)
        for mapping in map.mappings where mapping.offset == 0 && mapping.readable
            && (mapping.path.hasPrefix("/memfd:\(Self.libraryName)") || mapping.fileName == "libscalene_agent.so") {
            guard let page = try? target.memory.bytes(at: mapping.start, count: header.count), page == header,
                  let elf = try? ELFFile(path: library.path, only: [SCALENE_AGENT_START_FD_SYMBOL]),
                  let symbol = elf.symbol(named: SCALENE_AGENT_START_FD_SYMBOL),
                  let bias = elf.loadBias(mappings: map.mappings.filter { $0.path == mapping.path && $0.start >= mapping.start }
                    .map { (start: $0.start, offset: $0.offset) }) else { continue }
            return symbol.value &+ bias
        }
        return nil
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
        let wanted: Set<String> = ["dlopen", "dlsym", "dlerror", "__libc_dlopen_mode", "__libc_dlsym", "syscall", "close"]
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
        guard let syscall = address("syscall", libc), let close = address("close", libc) else {
            throw .noDynamicLoader(pid: target.pid)
        }
        for library in [libc, libdl] {
            if let open = address("dlopen", library), let sym = address("dlsym", library) {
                return LoaderFunctions(dlopen: open, dlsym: sym, dlerror: address("dlerror", library), extraOpenFlags: 0,
                                       syscall: syscall, close: close)
            }
        }
        if let open = address("__libc_dlopen_mode", libc), let sym = address("__libc_dlsym", libc) {
            // __RTLD_DLOPEN marks the call as coming from dlopen itself.
            return LoaderFunctions(dlopen: open, dlsym: sym, dlerror: nil, extraOpenFlags: 0x8000_0000,
                                   syscall: syscall, close: close)
        }
        throw .noDynamicLoader(pid: target.pid)
    }

    static func translate(_ error: ProcessAccessError) -> InjectError {
        switch error {
        case .exited(let pid), .noSuchProcess(let pid): return .exited(pid: pid)
        case .permissionDenied(let pid), .memoryReadsFiltered(let pid): return .permissionDenied(pid: pid)
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
