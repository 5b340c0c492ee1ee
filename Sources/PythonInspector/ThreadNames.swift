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
        guard let modules = try? objects.memory.pointer(at: interpreter &+ UInt64(layout.interpreter.modules)),
              modules != 0, let moduleItems = objects.dictItems(at: modules) else { return nil }
        guard let threadingEntry = moduleItems.first(where: { objects.string(at: $0.key) == "threading" }) else {
            return ([:], 0)
        }
        let threading = threadingEntry.value
        guard let moduleDict = objects.moduleDict(of: threading),
              let active = objects.dictValue(at: moduleDict, forKey: "_active"),
              let entries = objects.dictItems(at: active) else { return nil }
        var result = [UInt64: String]()
        var unreadable = 0
        for entry in entries {
            guard let ident = objects.unsignedInteger(at: entry.key),
                  let attributes = objects.instanceAttributes(of: entry.value) else { unreadable += 1; continue }
            var named = false
            for attribute in attributes where objects.string(at: attribute.key) == "_name" {
                if let name = objects.string(at: attribute.value) { result[ident] = name; named = true }
                break
            }
            if !named { unreadable += 1 }
        }
        return (result, unreadable)
    }
}
