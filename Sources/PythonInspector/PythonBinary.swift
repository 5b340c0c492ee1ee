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
    /// All three are exported data of the C API (`PyAPI_DATA`), so a binary that exports its API
    /// (every libpython, and python executables linked with -export-dynamic as CPython links them)
    /// has them in `.dynsym` when it has them at all.
    public static let symbolsOfInterest: Set<String> = ["_PyRuntime", "Py_Version", "PyCode_Type"]

    /// Finds the binary defining `_PyRuntime` among the target's mappings: a libpython first, then
    /// the executable.
    public static func locate(in process: TargetProcess, map: MemoryMap) throws(InspectError) -> PythonBinary {
        let executable = (try? process.executablePath()) ?? ""
        var candidates = [String]()
        for mapping in map.mappings where mapping.isFile && isLibPython(path: mapping.path) {
            if !candidates.contains(mapping.path) { candidates.append(mapping.path) }
        }
        if !executable.isEmpty && !candidates.contains(executable) { candidates.append(executable) }
        for path in candidates {
            let hostPath = process.hostPath(path)
            // `.dynsym` through its hash table first (a few entries read); the whole of a large
            // `.symtab` only for a binary that does not export `_PyRuntime`.
            let exported = (try? ELFFile(path: hostPath, only: symbolsOfInterest, staticSymbols: false))
                .flatMap { $0.symbol(named: "_PyRuntime") != nil ? $0 : nil }
            guard let elf = exported ?? (try? ELFFile(path: hostPath, only: symbolsOfInterest)),
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

    /// Whether the file name in `path` is a libpython: "libpython3.11.so.1.0", "libpython3.8d.so",
    /// ... Compared in place as bytes: this runs on every mapping of the process.
    static func isLibPython(path: String) -> Bool {
        var path = path
        return path.withUTF8 { bytes in
            let nameStart = (bytes.lastIndex(of: UInt8(ascii: "/")) ?? -1) + 1
            func matches(_ text: StaticString, at offset: Int) -> Bool {
                let count = text.utf8CodeUnitCount
                guard offset + count <= bytes.count else { return false }
                for index in 0..<count where bytes[offset + index] != text.utf8Start[index] { return false }
                return true
            }
            guard matches("libpython3", at: nameStart) else { return false }
            for offset in (nameStart + 10)..<max(nameStart + 10, bytes.count) where matches(".so", at: offset) { return true }
            return false
        }
    }
}
