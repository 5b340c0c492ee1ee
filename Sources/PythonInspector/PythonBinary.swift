import ELFSymbols
import RemoteProcess

/// The loaded binary that holds the interpreter's globals: `libpython3.X.so` for shared builds,
/// the executable itself for static builds (Debian's python3).
public struct PythonBinary: Sendable {
    /// The path as the target sees it.
    public var path: String
    public var elf: ELFFile
    /// Added to a link-time address to get the address in the target.
    public var loadBias: UInt64
    /// Whether this is a shared libpython rather than the executable.
    public var isSharedLibrary: Bool

    /// The address of a symbol in the target.
    public func address(of name: String) -> UInt64? {
        elf.symbol(named: name).map { $0.value &+ loadBias }
    }

    /// The symbols the reader uses; only these are indexed, which keeps opening a large binary cheap.
    public static let symbolsOfInterest: Set<String> = [
        "_PyRuntime", "Py_Version", "PyCode_Type", "Py_GetVersion", "_Py_DebugOffsets",
    ]

    /// Finds the binary defining `_PyRuntime` among the target's mappings: a libpython first, then
    /// the executable.
    public static func locate(in process: TargetProcess, map: MemoryMap) throws(InspectError) -> PythonBinary {
        let executable = (try? process.executablePath()) ?? ""
        var candidates = [String]()
        for mapping in map.mappings where mapping.isFile && isLibPython(mapping.fileName) {
            if !candidates.contains(mapping.path) { candidates.append(mapping.path) }
        }
        if !executable.isEmpty && !candidates.contains(executable) { candidates.append(executable) }
        for path in candidates {
            let hostPath = process.hostPath(path)
            guard let elf = try? ELFFile(path: hostPath, only: symbolsOfInterest),
                  elf.symbol(named: "_PyRuntime") != nil else { continue }
            let mappings = map.mappings(of: path).map { (start: $0.start, offset: $0.offset) }
            guard let bias = elf.loadBias(mappings: mappings) else {
                throw .unrecognisedPython(pid: process.pid, detail: "\(path) defines _PyRuntime but is not mapped as expected")
            }
            return PythonBinary(path: path, elf: elf, loadBias: bias, isSharedLibrary: path != executable)
        }
        if !TargetProcess.isAlive(process.pid) { throw .exited(pid: process.pid) }
        throw .notPython(pid: process.pid, executable: executable)
    }

    /// "libpython3.11.so.1.0", "libpython3.8d.so", ...
    static func isLibPython(_ name: String) -> Bool {
        name.hasPrefix("libpython3") && name.contains(".so")
    }
}
