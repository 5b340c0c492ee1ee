import TextFormatting

/// Why pushing cannot start, or a snapshot cannot be kept. Returned to the command line, which
/// says it in one line; nothing in this module prints or exits.
public enum PushError: Error, Equatable, CustomStringConvertible {
    /// dlopen of libcurl failed (not installed, or not libcurl).
    case libcurlUnavailable(path: String, reason: String)
    /// The server's address is not an http:// or https:// URL.
    case invalidURL(String, reason: String)
    /// A `--push-label` that is not `key=value` with a key and value Pyroscope accepts.
    case invalidLabel(String, reason: String)
    /// The spool folder cannot be made or used, or a snapshot cannot be written to it.
    case spool(path: String, reason: String)

    public var description: String {
        switch self {
        case .libcurlUnavailable(let path, let reason):
            let detail = reason.containsBytes(of: path) ? reason : "\(path): \(reason)"
            return "--push needs libcurl, which could not be loaded (\(detail)); install it "
                + "(Debian/Ubuntu: apt-get install libcurl4; Fedora/RHEL: dnf install libcurl)"
        case .invalidURL(let url, let reason):
            return "--push needs an http:// or https:// URL of a Pyroscope server (got '\(url)': \(reason))"
        case .invalidLabel(let label, let reason):
            return "--push-label must be key=value (got '\(label)': \(reason))"
        case .spool(let path, let reason):
            return "push spool \(path): \(reason)"
        }
    }
}
