import CPythonLayouts
import RemoteProcess

/// Reads Python thread names from outside: `sys.modules["threading"]._active` maps each thread's
/// ident (its pthread_t) to its `Thread` object, whose `_name` is the name.
public struct ThreadNameReader<Memory: ProcessMemory>: Sendable {
    public let objects: ObjectReader<Memory>
    public let layout: PythonLayout

    public init(memory: Memory, layout: PythonLayout) {
        self.objects = ObjectReader(memory: memory, objects: layout.objects)
        self.layout = layout
    }

    /// Names by pthread ident: empty if `threading` was never imported (the interpreter then has no
    /// names to give), nil if the structures could not be read (they changed while being read).
    public func names(interpreter: UInt64) -> [UInt64: String]? { read(interpreter: interpreter)?.names }

    /// The names, and how many `_active` entries could not be read (a thread object being built or
    /// torn down, or one that moved while being read): a caller retries while that is not zero.
    public func read(interpreter: UInt64) -> (names: [UInt64: String], unreadable: Int)? {
        var memo = Memo()
        return read(interpreter: interpreter, memo: &memo)
    }

    /// What a reader that reads names again and again remembers between reads: where `_active`
    /// is, and the name of each thread object it has read. A server has hundreds of threads, and
    /// finding `_active` and reading a thread's name take tens of reads each.
    public struct Memo: Sendable {
        var active: UInt64?
        var names: [UInt64: (object: UInt64, name: String)] = [:]
        var reads = 0
        public init() {}
    }

    /// Names read again every this many reads (a thread renamed since is seen then); `_active`
    /// is found again as often.
    static var refreshReads: Int { 16 }

    /// The names, as `read(interpreter:)`, reading again only the entries of `_active` that are
    /// new since `memo` was last updated, or whose ident is in `reread` (a thread seen for the
    /// first time may have the ident, and even the thread object's address, of one that ended),
    /// and all of them every `refreshReads` reads.
    public func read(interpreter: UInt64, memo: inout Memo,
                     reread: Set<UInt64> = []) -> (names: [UInt64: String], unreadable: Int)? {
        let refresh = memo.reads % Self.refreshReads == 0
        memo.reads += 1
        var entries = refresh ? nil : memo.active.flatMap { objects.dictItems(at: $0) }
        if entries == nil {
            guard let found = activeDict(interpreter: interpreter) else { return nil }
            guard let active = found else {
                memo = Memo()
                return ([:], 0)
            }
            memo.active = active
            entries = objects.dictItems(at: active)
        }
        guard let entries else { return nil }
        var result = [UInt64: String]()
        var remembered = [UInt64: (object: UInt64, name: String)]()
        var unreadable = 0
        for entry in entries {
            guard let ident = objects.unsignedInteger(at: entry.key) else { unreadable += 1; continue }
            if !refresh, !reread.contains(ident), let known = memo.names[ident], known.object == entry.value {
                result[ident] = known.name
                remembered[ident] = known
                continue
            }
            guard let name = name(of: entry.value) else { unreadable += 1; continue }
            result[ident] = name
            remembered[ident] = (entry.value, name)
        }
        memo.names = remembered
        return (result, unreadable)
    }

    /// `sys.modules["threading"]._active`; .some(nil) when `threading` was never imported, nil
    /// when the structures could not be read.
    private func activeDict(interpreter: UInt64) -> UInt64?? {
        guard let modules = try? objects.memory.pointer(at: interpreter &+ UInt64(layout.interpreter.modules)),
              modules != 0, let moduleItems = objects.dictItems(at: modules) else { return nil }
        guard let threadingEntry = moduleItems.first(where: { objects.string(at: $0.key) == "threading" }) else {
            return .some(nil)
        }
        guard let moduleDict = objects.moduleDict(of: threadingEntry.value),
              let active = objects.dictValue(at: moduleDict, forKey: "_active") else { return nil }
        return .some(active)
    }

    /// A `Thread` object's `_name`.
    private func name(of thread: UInt64) -> String? {
        guard let attributes = objects.instanceAttributes(of: thread) else { return nil }
        for attribute in attributes where objects.string(at: attribute.key) == "_name" {
            return objects.string(at: attribute.value)
        }
        return nil
    }
}
