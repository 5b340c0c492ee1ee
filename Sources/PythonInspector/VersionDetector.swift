import CPythonLayouts
import ELFSymbols
import RemoteProcess

/// How the interpreter's version was found, strongest source first.
public enum VersionSource: String, Sendable {
    /// `_Py_DebugOffsets.version` at the start of `_PyRuntime` (3.13+).
    case debugOffsets = "_Py_DebugOffsets"
    /// The `Py_Version` constant (3.11+).
    case pyVersionSymbol = "Py_Version"
    /// The `PY_VERSION` string in the binary's read-only data.
    case versionString = "version string"
    /// The binary's file name (libpython3.X / python3.X): minor version only.
    case fileName = "file name"
}

/// Finds the version of the interpreter in a binary: _Py_DebugOffsets, Py_Version, the version
/// string, then the file name.
public enum VersionDetector {
    public struct Result: Sendable {
        public var version: PythonVersion
        public var source: VersionSource
        /// The raw `_Py_DebugOffsets` when the target has them.
        public var debugOffsets: [UInt8]?
    }

    public static func detect(binary: PythonBinary, runtimeAddress: UInt64, memory: some ProcessMemory)
        -> Result?
    {
        // 3.13+: the runtime starts with a cookie and the version.
        if let head = try? memory.bytes(at: runtimeAddress, count: 16), Array(head[0..<8]) == Array(DebugOffsets.cookie) {
            let hex = head[8..<16].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            let version = PythonVersion(hex: hex)
            let size = DebugOffsets.minimumSize(forMinor: version.minor) ?? 4096
            let raw = try? memory.bytes(at: runtimeAddress, count: size)
            return Result(version: version, source: .debugOffsets, debugOffsets: raw)
        }
        if let address = binary.address(of: "Py_Version"), let hex = try? memory.integer(UInt64.self, at: address),
           hex >> 24 == 3 {
            return Result(version: PythonVersion(hex: hex), source: .pyVersionSymbol, debugOffsets: nil)
        }
        let minorFromName = minorVersion(fromFileName: binary.path)
        if let rodata = binary.elf.section(named: ".rodata"), let bytes = binary.elf.contents(of: rodata),
           let version = versionString(in: bytes, minor: minorFromName) {
            return Result(version: version, source: .versionString, debugOffsets: nil)
        }
        if let minor = minorFromName {
            return Result(version: PythonVersion(major: 3, minor: minor), source: .fileName, debugOffsets: nil)
        }
        return nil
    }

    /// The minor version in "libpython3.9.so.1.0" or "python3.9".
    static func minorVersion(fromFileName path: String) -> Int? {
        let name = Array((path.split(separator: "/").last.map(String.init) ?? path).utf8)
        let needle = Array("python3.".utf8)
        guard name.count > needle.count else { return nil }
        for start in 0...(name.count - needle.count) where Array(name[start..<(start + needle.count)]) == needle {
            let digits = name[(start + needle.count)...].prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
            return Int(String(decoding: digits, as: UTF8.self))
        }
        return nil
    }

    /// Finds a NUL-delimited "3.X.Y" string (PY_VERSION, possibly with a "+" or pre-release suffix)
    /// in read-only data, preferring one whose minor version matches the file name.
    static func versionString(in bytes: [UInt8], minor: Int?) -> PythonVersion? {
        var found: PythonVersion?
        var start = 0
        for index in 0..<bytes.count where bytes[index] == 0 {
            defer { start = index + 1 }
            let length = index - start
            guard length >= 5, length <= 12, bytes[start] == UInt8(ascii: "3"), bytes[start + 1] == UInt8(ascii: ".") else {
                continue
            }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            let parts = text.split(separator: ".", maxSplits: 2)
            guard parts.count == 3, let minorValue = Int(parts[1]) else { continue }
            let microDigits = parts[2].prefix { $0.isNumber }
            let suffix = parts[2].dropFirst(microDigits.count)
            guard let micro = Int(microDigits), suffix.isEmpty || suffix == "+" || suffix.first.map({ "abrc".contains($0) }) == true
            else { continue }
            let version = PythonVersion(major: 3, minor: minorValue, micro: micro)
            if minor == nil || minor == minorValue { return version }
            if found == nil { found = version }
        }
        return minor == nil ? found : nil
    }
}
