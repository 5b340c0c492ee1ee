import CNativeStacks
import RemoteProcess

/// Unwinds and symbolises stacks of one target process. Registers and stack bytes come from the
/// caller (a perf sample or a stopped thread); unwind tables and symbols from the ELF files the
/// target has mapped. Not thread-safe.
public final class NativeUnwinder {
    /// Deepest native stack kept.
    public static let maximumDepth = 256
    let objects: LoadedObjects
    private let unwinder: OpaquePointer
    /// Resolved frames by address (bounded: cleared when full).
    private var cache: [UInt64: (function: NativeFunction, role: ObjectRole, isEvaluation: Bool)] = [:]
    private let cacheLimit = 1 << 18
    private var lastReload: UInt64 = 0
    private var addresses = [UInt64](repeating: 0, count: NativeUnwinder.maximumDepth)

    /// - Parameter interpreterPaths: the objects (as the target names them) that are the interpreter's
    ///   own code: libpython, or the executable when the interpreter is linked into it.
    public init(process: TargetProcess, interpreterPaths: Set<String>) throws(NativeSamplingError) {
        guard let created = scalene_unwinder_create(process.pid) else { throw .failed(detail: "cannot create a libunwind address space") }
        unwinder = created
        objects = LoadedObjects(process: process, interpreterPaths: interpreterPaths)
        objects.reload(into: unwinder)
    }

    deinit { scalene_unwinder_destroy(unwinder) }

    /// Number of ELF objects with code the unwinder knows.
    public var objectCount: Int { objects.objects.count }

    /// Reads served from the target rather than from local copies (a health figure: should stay low).
    public var remoteReads: UInt64 { scalene_unwinder_remote_reads(unwinder) }

    /// Rereads the target's mappings (a library was loaded), at most every 200 ms.
    func reloadIfStale(now: UInt64) {
        guard now &- lastReload > 200_000_000 else { return }
        lastReload = now
        if objects.reload(into: unwinder) { cache.removeAll(keepingCapacity: true) }
    }

    /// The instruction pointers of a stack, innermost first.
    public func unwind(registers: UnsafePointer<UInt64>, stack: UnsafeRawBufferPointer, now: UInt64) -> [UInt64] {
        // An instruction pointer in no known object: a library was loaded since the last reload.
        if objects.object(containing: registers[Int(SCALENE_REG_IP)]) == nil { reloadIfStale(now: now) }
        let count = addresses.withUnsafeMutableBufferPointer { out in
            scalene_unwind(unwinder, registers, stack.baseAddress?.assumingMemoryBound(to: UInt8.self),
                           UInt64(stack.count), out.baseAddress!, Int32(out.count))
        }
        return Array(addresses.prefix(Int(max(0, count))))
    }

    /// Symbolises a stack of instruction pointers (innermost first).
    public func stack(tid: Int32, time: UInt64, addresses: [UInt64]) -> NativeStack {
        var frames = [NativeFrame]()
        frames.reserveCapacity(addresses.count)
        for (index, address) in addresses.enumerated() {
            // A return address points after the call: look up the call instruction itself.
            let lookup = index == 0 ? address : address &- 1
            let resolved = resolve(lookup)
            frames.append(NativeFrame(function: resolved.function, role: resolved.role,
                                      isEvaluation: resolved.isEvaluation, address: address))
        }
        return NativeStack(tid: tid, time: time, frames: frames)
    }

    func resolve(_ address: UInt64) -> (function: NativeFunction, role: ObjectRole, isEvaluation: Bool) {
        if let cached = cache[address] { return cached }
        let result: (function: NativeFunction, role: ObjectRole, isEvaluation: Bool)
        if let object = objects.object(containing: address) {
            let linkTime = address &- object.bias
            if let symbol = object.symbols?.function(containing: linkTime) {
                let name = Demangler.demangle(symbol.name)
                result = (NativeFunction(object: object.name, name: name), object.role,
                          object.role == .interpreter && symbol.name.hasPrefix("_PyEval_EvalFrameDefault"))
            } else {
                result = (NativeFunction(object: object.name, name: object.name + "+0x" + String(linkTime, radix: 16)),
                          object.role, false)
            }
        } else {
            result = (NativeFunction(object: "?", name: "0x" + String(address, radix: 16)), .other, false)
        }
        if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[address] = result
        return result
    }
}

/// C++ (Itanium ABI) names made readable; other names are returned as they are.
public enum Demangler {
    public static func demangle(_ name: String) -> String {
        guard name.hasPrefix("_Z") else { return name }
        var buffer = [CChar](repeating: 0, count: 1024)
        let ok = buffer.withUnsafeMutableBufferPointer { out in
            scalene_demangle(name, out.baseAddress!, out.count) == 0
        }
        guard ok else { return name }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
