/// A CPython release, as `PY_VERSION_HEX` describes it.
public struct PythonVersion: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var micro: Int

    public init(major: Int, minor: Int, micro: Int = 0) {
        self.major = major
        self.minor = minor
        self.micro = micro
    }

    /// Decodes `PY_VERSION_HEX` (`0xMMmmppLS`: major, minor, micro, release level, serial).
    public init(hex: UInt64) {
        self.init(major: Int((hex >> 24) & 0xff), minor: Int((hex >> 16) & 0xff), micro: Int((hex >> 8) & 0xff))
    }

    /// `PY_VERSION_HEX` for a final release of this version.
    public var hex: UInt32 { UInt32(major) << 24 | UInt32(minor) << 16 | UInt32(micro) << 8 | 0xf0 }

    /// "3.11" — the part that decides the layout.
    public var minorVersion: String { "\(major).\(minor)" }

    public var description: String { "\(major).\(minor).\(micro)" }

    public static func < (a: PythonVersion, b: PythonVersion) -> Bool {
        (a.major, a.minor, a.micro) < (b.major, b.minor, b.micro)
    }
}
