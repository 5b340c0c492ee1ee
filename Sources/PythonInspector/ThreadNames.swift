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

    /// Names by pthread ident. Empty if `threading` was never imported (the interpreter then has no
    /// names to give) or cannot be read.
    public func names(interpreter: UInt64) -> [UInt64: String] {
        guard let modules = try? objects.memory.pointer(at: interpreter &+ UInt64(layout.interpreter.modules)),
              modules != 0,
              let threading = objects.dictValue(at: modules, forKey: "threading"),
              let moduleDict = objects.moduleDict(of: threading),
              let active = objects.dictValue(at: moduleDict, forKey: "_active"),
              let entries = objects.dictItems(at: active) else { return [:] }
        var result = [UInt64: String]()
        for entry in entries {
            guard let ident = objects.unsignedInteger(at: entry.key),
                  let attributes = objects.instanceAttributes(of: entry.value) else { continue }
            for attribute in attributes where objects.string(at: attribute.key) == "_name" {
                if let name = objects.string(at: attribute.value) { result[ident] = name }
                break
            }
        }
        return result
    }
}
