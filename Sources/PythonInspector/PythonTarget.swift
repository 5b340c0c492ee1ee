import CPythonLayouts
import ELFSymbols
import RemoteProcess

/// A running CPython found from outside: where its runtime is, which version it is, and the layout
/// of its structures. Discovery happens once, in `init`; readers built on it do the per-sample work.
public struct PythonTarget: Sendable {
    public let process: TargetProcess
    public let binary: PythonBinary
    public let version: PythonVersion
    public let versionSource: VersionSource
    public let layout: PythonLayout
    /// Opcode data for classifying instructions (nil only if the version has no table).
    public let opcodes: OpcodeTable?
    /// pymalloc constants (for the agent).
    public let allocator: AllocatorConstants?
    /// `&_PyRuntime` in the target.
    public let runtimeAddress: UInt64
    /// `&PyCode_Type` in the target: a frame whose code pointer does not point at an object of this
    /// type is torn or not a Python frame.
    public let codeTypeAddress: UInt64?

    /// "3.8–3.15": every minor version with a generated table (3.13+ also need their
    /// `_Py_DebugOffsets` layout, which the same generator writes).
    public static let supportedVersions: String = {
        let minors = LayoutTables.supportedMinorVersions.filter {
            $0.minor < 13 || DebugOffsets.fields(forMinor: $0.minor) != nil
        }
        guard let first = minors.first, let last = minors.last else { return "none" }
        return "\(first.minorVersion)–\(last.minorVersion)"
    }()

    public var pid: Int32 { process.pid }

    /// The objects (paths as the target sees them) that are the interpreter's own code: libpython
    /// where the interpreter is a shared library, and the executable, which is the interpreter itself
    /// when it is linked statically and only its `main` otherwise.
    public var interpreterPaths: Set<String> {
        var paths: Set<String> = [binary.path]
        if let executable = try? process.executablePath() { paths.insert(executable) }
        return paths
    }
    public var memory: RemoteMemory { process.memory }

    public init(pid: Int32) throws(InspectError) {
        let process: TargetProcess
        do { process = try TargetProcess(pid: pid) } catch { throw InspectError(error) }
        let binary = try PythonBinary.locate(in: process, map: process.initialMap)
        guard let runtime = binary.address(of: "_PyRuntime") else {
            throw .notPython(pid: pid, executable: binary.path)
        }
        guard let detected = VersionDetector.detect(binary: binary, runtimeAddress: runtime, memory: process.memory) else {
            if !process.isAlive { throw .exited(pid: pid) }
            throw .unrecognisedPython(pid: pid, detail: "cannot tell the Python version of \(binary.path)")
        }
        var version = detected.version
        var source = detected.source
        var layout: PythonLayout
        do {
            layout = try Self.layout(for: detected, pid: pid)
        } catch .unsupportedVersion where source == .fileName {
            // Only the minor version is known and it is not one we support: say which release it
            // is, from the version string in the binary.
            let exact = binary.elf.section(named: ".rodata").flatMap { binary.elf.contents(of: $0) }
                .flatMap { VersionDetector.versionString(in: $0, minor: version.minor) } ?? version
            throw .unsupportedVersion(pid: pid, version: exact.description, reason: "supported versions are \(Self.supportedVersions)")
        }
        if source == .fileName || source == .versionString,
           let exact = Self.runtimeVersion(memory: process.memory, layout: layout, runtime: runtime),
           exact.major == version.major, exact.minor == version.minor {
            // The file name gives no micro version and a version string can be stale: ask the
            // interpreter itself (sys.hexversion), then take the layout of that exact release.
            version = exact
            source = .sysHexversion
            layout = try Self.layout(for: VersionDetector.Result(version: exact, source: source, debugOffsets: nil), pid: pid)
        }
        self.process = process
        self.binary = binary
        self.version = version
        self.versionSource = source
        self.layout = layout
        self.opcodes = OpcodeTables.table(for: version)
        self.allocator = LayoutTables.allocator(for: version)
        self.runtimeAddress = runtime
        self.codeTypeAddress = binary.address(of: "PyCode_Type")
    }

    /// `sys.hexversion`, read through `sys.modules["sys"]`.
    static func runtimeVersion(memory: RemoteMemory, layout: PythonLayout, runtime: UInt64) -> PythonVersion? {
        let objects = ObjectReader(memory: memory, objects: layout.objects)
        guard let interpreter = try? ThreadReader(memory: memory, layout: layout, runtimeAddress: runtime).mainInterpreter(),
              let modules = try? memory.pointer(at: interpreter &+ UInt64(layout.interpreter.modules)), modules != 0,
              let sys = objects.dictValue(at: modules, forKey: "sys"), let dict = objects.moduleDict(of: sys),
              let value = objects.dictValue(at: dict, forKey: "hexversion"),
              let hex = objects.unsignedInteger(at: value), hex >> 24 == 3 else { return nil }
        return PythonVersion(hex: hex)
    }

    /// "3.15.0b2" for a `PY_VERSION_HEX`.
    static func describe(hex: UInt64) -> String {
        let level: String
        switch (hex >> 4) & 0xf {
        case 0xa: level = "a"
        case 0xb: level = "b"
        case 0xc: level = "rc"
        default: level = "?"
        }
        return PythonVersion(hex: hex).description + level + String(hex & 0xf)
    }

    static func layout(for detected: VersionDetector.Result, pid: Int32) throws(InspectError) -> PythonLayout {
        let version = detected.version
        guard version.major == 3, version.minor >= 8 else {
            throw .unsupportedVersion(pid: pid, version: version.description,
                                      reason: "supported versions are \(supportedVersions)")
        }
        if version.minor >= 13 {
            guard let raw = detected.debugOffsets else {
                throw .unrecognisedPython(pid: pid, detail: "Python \(version) without readable _Py_DebugOffsets")
            }
            do {
                return try DebugOffsets.decode(raw).layout()
            } catch .unsupportedVersion(let v) {
                // A minor this build has no table for (newer than it knows, or a layout it was not
                // generated from) is never read with a guessed layout.
                let newest = LayoutTables.supportedMinorVersions.last.map { $0.minor } ?? 0
                let why = v.major == 3 && v.minor > newest ? "it is newer than this build of scalene-attach knows; " : ""
                throw .unsupportedVersion(pid: pid, version: v.description, reason: why + "supported versions are \(supportedVersions)")
            } catch .preRelease(let hex) {
                throw .unsupportedVersion(pid: pid, version: Self.describe(hex: hex),
                                          reason: "pre-releases are not supported (their layout may differ from the final release's); supported versions are \(supportedVersions)")
            } catch .freeThreaded {
                throw .unsupportedVersion(pid: pid, version: version.description + " (free-threaded)",
                                          reason: "free-threaded builds have no GIL and a different layout")
            } catch {
                throw .unrecognisedPython(pid: pid, detail: "invalid _Py_DebugOffsets: \(error)")
            }
        }
        guard let layout = LayoutTables.layout(for: version) else {
            throw .unsupportedVersion(pid: pid, version: version.description,
                                      reason: "supported versions are \(supportedVersions)")
        }
        return layout
    }
}
