import CPythonLayouts
import RemoteProcess

/// One `PyThreadState` as read from the target.
public struct ThreadRecord: Sendable {
    /// Address of the thread state.
    public var address: UInt64
    /// `thread_id`: the pthread_t (also the key of `threading._active`).
    public var pthreadID: UInt64
    /// `native_thread_id` (3.11+), else nil until mapped through `PthreadTIDResolver`.
    public var nativeThreadID: Int32?
    /// The bytes of the thread state, for reading its frame pointer.
    public var bytes: RemoteBytes
    /// `base_frame` (3.15+): where every complete frame chain of the thread ends.
    public var baseFrame: UInt64? = nil
    /// `holds_gil` (3.15+): the thread's own flag; nil where the version does not publish it.
    public var holdsGIL: Bool? = nil
}

/// The GIL at one read.
public struct GILReading: Sendable, Equatable {
    /// `switch_number`: how many times the GIL has changed hands. It grows only when a thread other
    /// than the last holder takes the GIL: unchanged between two reads, no thread but the last
    /// holder can have run Python code in between.
    public var switches: UInt64
    /// `last_holder`: the thread state that took the GIL last.
    public var lastHolder: UInt64
    /// `locked`: some thread holds the GIL (the last holder).
    public var locked: Bool

    public init(switches: UInt64, lastHolder: UInt64, locked: Bool) {
        self.switches = switches
        self.lastHolder = lastHolder
        self.locked = locked
    }
}

/// Reads the interpreter and its thread states.
public struct ThreadReader<Memory: ProcessMemory>: Sendable {
    public let memory: Memory
    public let layout: PythonLayout
    public let runtimeAddress: UInt64
    /// Thread lists longer than this are treated as corrupt.
    public var maximumThreads = 4096
    private let threadReadSize: Int
    /// The version's GIL layout, looked up once (the sampler asks for it every tick).
    private let gilOffsets: GILOffsets?
    /// Bytes read per thread state: every field the readers use.
    public var readSize: Int { threadReadSize }

    public init(memory: Memory, layout: PythonLayout, runtimeAddress: UInt64) {
        self.memory = memory
        self.layout = layout
        self.runtimeAddress = runtimeAddress
        let t = layout.thread
        threadReadSize = max(max(t.next, t.interp, t.frame, t.threadID, t.nativeThreadID ?? 0, t.baseFrame ?? 0,
                                 t.datastackChunk ?? 0) + 8,
                             (t.holdsGIL ?? 0) + 4)
        gilOffsets = LayoutTables.gil(for: layout.version)
    }

    /// The main interpreter (id 0): `interpreters.main` where known, else found in the list.
    public func mainInterpreter() throws(MemoryReadError) -> UInt64 {
        if let main = layout.runtime.interpretersMain {
            let address = try memory.pointer(at: runtimeAddress &+ UInt64(main))
            if address != 0 { return address }
        }
        var interp = try memory.pointer(at: runtimeAddress &+ UInt64(layout.runtime.interpretersHead))
        var first = interp
        for _ in 0..<64 where interp != 0 {
            if try memory.integer(Int64.self, at: interp &+ UInt64(layout.interpreter.id)) == 0 { return interp }
            interp = try memory.pointer(at: interp &+ UInt64(layout.interpreter.next))
            if interp == first { break }
            if first == 0 { first = interp }
        }
        return first
    }

    /// Every thread state of `interpreter`, newest first (the order of the interpreter's list).
    /// Validates each state's back-pointer to the interpreter; stops at a cycle or the bound.
    public func threads(of interpreter: UInt64) throws(MemoryReadError) -> [ThreadRecord] {
        var result = [ThreadRecord]()
        var seen = Set<UInt64>()
        var address = try memory.pointer(at: interpreter &+ UInt64(layout.interpreter.threadsHead))
        while address != 0, result.count < maximumThreads, seen.insert(address).inserted {
            let bytes = try memory.remoteBytes(at: address, count: threadReadSize)
            // A thread state that does not point back at its interpreter was freed or reused while
            // we walked the list: the read tore. Report it so the caller retries.
            guard bytes.pointer(at: layout.thread.interp) == interpreter else {
                throw .unmapped(address: address, length: 0)
            }
            result.append(record(at: address, bytes: bytes))
            address = bytes.pointer(at: layout.thread.next) ?? 0
        }
        try requireMainThread(in: result.map(\.address), interpreter: interpreter)
        return result
    }

    /// 3.14+: the main thread's state is always in the list. A list without it was read while a
    /// thread state was being linked in or out (a new state's `next` not yet visible): torn.
    func requireMainThread(in states: [UInt64], interpreter: UInt64) throws(MemoryReadError) {
        guard let field = layout.interpreter.threadsMain else { return }
        let main = try memory.pointer(at: interpreter &+ UInt64(field))
        guard main == 0 || states.contains(main) else { throw .unmapped(address: main, length: 0) }
    }

    func record(at address: UInt64, bytes: RemoteBytes) -> ThreadRecord {
        let native = layout.thread.nativeThreadID.flatMap { bytes.int32(at: $0) }
        return ThreadRecord(address: address, pthreadID: bytes.pointer(at: layout.thread.threadID) ?? 0,
                            nativeThreadID: native.flatMap { $0 > 0 ? $0 : nil }, bytes: bytes,
                            baseFrame: layout.thread.baseFrame.flatMap { bytes.pointer(at: $0) },
                            holdsGIL: layout.thread.holdsGIL.flatMap { bytes.int32(at: $0) }.map { $0 != 0 })
    }

    /// The memory of the interpreter's GIL (`struct _gil_runtime_state`): a thread blocked in a futex
    /// inside it waits for the GIL. Nil when the version's GIL layout is unknown.
    public func gilState(interpreter: UInt64) -> Range<UInt64>? {
        guard let gil = gilOffsets else { return nil }
        let start: UInt64
        if let offset = gil.runtimeOffset {
            start = runtimeAddress &+ UInt64(offset)
        } else {
            guard let field = layout.interpreter.cevalGIL,
                  let pointer = try? memory.pointer(at: interpreter &+ UInt64(field)), pointer != 0 else { return nil }
            start = pointer
        }
        let (end, overflow) = start.addingReportingOverflow(UInt64(gil.size))
        return overflow ? nil : start..<end
    }

    /// The range of the GIL that holds `last_holder`, `locked` and `switch_number`, given where the
    /// GIL is (`gilState`): read with the thread states every sample. Nil where the layout does not
    /// place them together.
    public func gilFields(gil: UInt64) -> (address: UInt64, count: Int)? {
        guard let offsets = gilOffsets, let switches = offsets.switchNumber, let holder = offsets.lastHolder else {
            return nil
        }
        return (gil.field(holder), switches + 8 - holder)
    }

    /// The GIL as `gilFields` read it.
    public func gilReading(_ bytes: RemoteBytes) -> GILReading? {
        guard let offsets = gilOffsets, let switches = offsets.switchNumber, let holder = offsets.lastHolder,
              let count = bytes.pointer(at: switches - holder),
              let last = bytes.pointer(at: 0),
              let locked = bytes.int32(at: offsets.locked - holder) else { return nil }
        return GILReading(switches: count, lastHolder: last, locked: locked != 0)
    }

    /// The thread state holding the GIL, or nil when no thread holds it (or it cannot be told).
    public func gilHolder(interpreter: UInt64) -> UInt64? {
        if let current = layout.runtime.gilstateTstateCurrent {
            let holder = (try? memory.pointer(at: runtimeAddress &+ UInt64(current))) ?? 0
            return holder == 0 ? nil : holder
        }
        guard let gilField = layout.interpreter.cevalGIL, let lockedField = layout.interpreter.gilLocked,
              let holderField = layout.interpreter.gilLastHolder,
              let gil = try? memory.pointer(at: interpreter &+ UInt64(gilField)), gil != 0,
              let locked = try? memory.integer(Int32.self, at: gil &+ UInt64(lockedField)), locked != 0,
              let holder = try? memory.pointer(at: gil &+ UInt64(holderField)), holder != 0 else { return nil }
        return holder
    }
}

/// Maps pthread_t values to kernel thread ids for versions whose thread state has no
/// `native_thread_id` (3.8–3.10).
///
/// A pthread_t on glibc is the address of the thread's `struct pthread`, which stores the kernel tid
/// at an offset that depends on the glibc build. The offset is found, once per process, as the one
/// where every known pthread holds a distinct tid of the process.
public struct PthreadTIDResolver: Sendable {
    public private(set) var tidOffset: Int?
    /// How far into `struct pthread` to look.
    static let searchBytes = 2048

    public init() {}

    /// Finds the tid of each pthread it can, learning the offset on first use. Thread states of
    /// threads being created or torn down may have no live pthread yet; they are left out.
    public mutating func resolve(_ pthreads: [UInt64], tids: Set<Int32>, memory: some ProcessMemory) -> [UInt64: Int32] {
        // A thread state of a thread being started carries its creator's pthread id: count each id once.
        let blocks = Set(pthreads).sorted().compactMap { id -> (UInt64, RemoteBytes)? in
            guard id != 0, let bytes = try? memory.remoteBytes(at: id, count: Self.searchBytes) else { return nil }
            return (id, bytes)
        }
        guard !blocks.isEmpty else { return [:] }
        if let offset = tidOffset { return Self.mapping(blocks, offset: offset, tids: tids) }
        // The offset where the most pthreads hold distinct tids of this process; the lowest wins ties.
        var best: (offset: Int, mapping: [UInt64: Int32])?
        for offset in stride(from: 0, to: Self.searchBytes - 4, by: 4) {
            let mapping = Self.mapping(blocks, offset: offset, tids: tids)
            if mapping.count > (best?.mapping.count ?? 0) { best = (offset, mapping) }
        }
        guard let best, best.mapping.count * 2 > blocks.count || best.mapping.count == blocks.count else { return [:] }
        tidOffset = best.offset
        return best.mapping
    }

    private static func mapping(_ blocks: [(UInt64, RemoteBytes)], offset: Int, tids: Set<Int32>) -> [UInt64: Int32] {
        var result = [UInt64: Int32]()
        var used = Set<Int32>()
        for (id, bytes) in blocks {
            if let tid = bytes.int32(at: offset), tids.contains(tid), used.insert(tid).inserted { result[id] = tid }
        }
        return result
    }
}
