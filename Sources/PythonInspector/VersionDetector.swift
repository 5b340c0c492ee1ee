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
    /// `sys.hexversion`, read from the interpreter once the minor version's layout was known.
    case sysHexversion = "sys.hexversion"
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
        // The file name gives the minor version (enough to read sys.hexversion, which the caller
        // does next); the version string in read-only data is the last resort.
        let minorFromName = minorVersion(fromFileName: binary.path)
        if let minor = minorFromName {
            return Result(version: PythonVersion(major: 3, minor: minor), source: .fileName, debugOffsets: nil)
        }
        if let rodata = binary.elf.section(named: ".rodata"), let bytes = binary.elf.contents(of: rodata),
           let version = versionString(in: bytes, minor: nil) {
            return Result(version: version, source: .versionString, debugOffsets: nil)
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

    /// Finds a "3.X.Y" string ending in NUL in read-only data: PY_VERSION, which the linker may have
    /// merged into the tail of a longer string such as the build directory ".../Python-3.X.Y". The
    /// character before it must not be a digit or a dot. Prefers the minor version of the file name.
    static func versionString(in bytes: [UInt8], minor: Int?) -> PythonVersion? {
        let three = UInt8(ascii: "3"), dot = UInt8(ascii: "."), zero = UInt8(ascii: "0"), nine = UInt8(ascii: "9")
        func isDigit(_ byte: UInt8) -> Bool { byte >= zero && byte <= nine }
        var found: PythonVersion?
        var index = 1
        while index + 5 < bytes.count {
            defer { index += 1 }
            guard bytes[index] == three, bytes[index + 1] == dot, !isDigit(bytes[index - 1]), bytes[index - 1] != dot else {
                continue
            }
            var cursor = index + 2
            var minorValue = 0
            while cursor < bytes.count, isDigit(bytes[cursor]), cursor < index + 5 {
                minorValue = minorValue * 10 + Int(bytes[cursor] - zero)
                cursor += 1
            }
            guard cursor > index + 2, cursor < bytes.count, bytes[cursor] == dot else { continue }
            cursor += 1
            let microStart = cursor
            var micro = 0
            while cursor < bytes.count, isDigit(bytes[cursor]), cursor < microStart + 3 {
                micro = micro * 10 + Int(bytes[cursor] - zero)
                cursor += 1
            }
            // Allow a "+" (development build) before the terminating NUL.
            if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "+") { cursor += 1 }
            guard cursor > microStart, cursor < bytes.count, bytes[cursor] == 0 else { continue }
            let version = PythonVersion(major: 3, minor: minorValue, micro: micro)
            if minor == nil || minor == minorValue { return version }
            if found == nil { found = version }
        }
        return minor == nil ? found : nil
    }
}
