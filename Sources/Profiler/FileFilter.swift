import TextFormatting

/// Which source files are profiled: time lands on the innermost frame of a profiled file.
///
/// By default, every file except the standard library, installed packages (site-packages,
/// dist-packages) and interpreter-internal pseudo files ("<frozen ...>", "<string>"). As in Scalene,
/// `--profile-all` includes everything, `--profile-only` keeps files whose path contains one of the
/// given substrings, and `--profile-exclude` drops files whose path contains one. (Substrings are
/// compared as bytes: `String.contains` would link the regex engine into the binary.)
public struct FileFilter: Sendable, Equatable {
    public var profileAll: Bool
    public var only: [String]
    public var exclude: [String]

    public init(profileAll: Bool = false, only: [String] = [], exclude: [String] = []) {
        self.profileAll = profileAll
        self.only = only.filter { !$0.isEmpty }
        self.exclude = exclude.filter { !$0.isEmpty }
    }

    public func isProfiled(_ path: String) -> Bool {
        if exclude.contains(where: { path.containsBytes(of: $0) }) { return false }
        if !only.isEmpty { return only.contains(where: { path.containsBytes(of: $0) }) }
        if profileAll { return true }
        return !Self.isLibrary(path)
    }

    /// Standard library, installed packages, or not a real file.
    public static func isLibrary(_ path: String) -> Bool {
        if path.hasPrefix("<") { return true }
        return path.containsBytes(of: "/site-packages/") || path.containsBytes(of: "/dist-packages/")
            || path.containsBytes(of: "/lib/python3.") || path.containsBytes(of: "/lib64/python3.")
    }
}
