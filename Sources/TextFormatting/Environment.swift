#if canImport(Glibc)
import Glibc
#endif

/// Our process's environment variables, read with getenv: what `ProcessInfo.processInfo.environment`
/// gave, without linking Foundation.
public enum Environment {
    /// One variable (getenv).
    public static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// The variables of `names` that are set.
    public static func values(_ names: [String]) -> [String: String] {
        var result = [String: String]()
        for name in names { if let value = value(name) { result[name] = value } }
        return result
    }
}
