import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// How requests are authorised: only ever from the environment, never from the command line
/// (argv is readable by every user of the machine).
public enum PushAuth: Sendable, Equatable {
    /// `Authorization: Bearer TOKEN` (PYROSCOPE_AUTH_TOKEN).
    case bearer(String)
    /// HTTP basic auth (PYROSCOPE_BASIC_AUTH_USER and PYROSCOPE_BASIC_AUTH_PASSWORD; Grafana Cloud).
    case basic(user: String, password: String)

    /// The variables `fromEnvironment` reads.
    public static let variables = ["PYROSCOPE_AUTH_TOKEN", "PYROSCOPE_BASIC_AUTH_USER", "PYROSCOPE_BASIC_AUTH_PASSWORD"]

    /// The variables Pyroscope's own clients read; the token wins when both are set.
    public static func fromEnvironment(_ environment: [String: String]) -> PushAuth? {
        if let token = environment["PYROSCOPE_AUTH_TOKEN"], !token.isEmpty { return .bearer(token) }
        if let user = environment["PYROSCOPE_BASIC_AUTH_USER"], !user.isEmpty {
            return .basic(user: user, password: environment["PYROSCOPE_BASIC_AUTH_PASSWORD"] ?? "")
        }
        return nil
    }
}

/// A label of the pushed series (`key=value`).
public struct PushLabel: Sendable, Equatable {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    /// Parses `key=value`: the key as Prometheus label names are ([A-Za-z_][A-Za-z0-9_.]*), the
    /// value without the characters that delimit Pyroscope's series names (`{ } , =`).
    public static func parse(_ text: String) throws(PushError) -> PushLabel {
        guard let equals = text.firstIndex(of: "=") else { throw .invalidLabel(text, reason: "no '='") }
        let label = PushLabel(key: String(text[..<equals]), value: String(text[text.index(after: equals)...]))
        try label.validate(as: text)
        return label
    }

    func validate(as text: String) throws(PushError) {
        guard let first = key.unicodeScalars.first, first == "_" || Self.letters.contains(first),
              key.unicodeScalars.allSatisfy({ $0 == "_" || $0 == "." || Self.letters.contains($0) || Self.digits.contains($0) })
        else { throw .invalidLabel(text, reason: "the key must be letters, digits, _ or ., not starting with a digit") }
        guard !value.isEmpty else { throw .invalidLabel(text, reason: "empty value") }
        guard !value.unicodeScalars.contains(where: { "{},=\"".unicodeScalars.contains($0) || $0.value < 0x20 }) else {
            throw .invalidLabel(text, reason: "the value may not contain { } , = \" or control characters")
        }
    }

    private static let letters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".unicodeScalars)
    private static let digits = Set("0123456789".unicodeScalars)
}

/// One interval's profile to push: gzip-compressed pprof, and the Unix seconds it covers.
public struct PushSnapshot: Sendable, Equatable {
    public var from: Int
    public var until: Int
    /// Orders snapshots (spool file names): the interval's start in Unix milliseconds.
    public var startMilliseconds: Int64
    public var profile: [UInt8]

    public init(from: Int, until: Int, startMilliseconds: Int64, profile: [UInt8]) {
        self.from = from
        self.until = until
        self.startMilliseconds = startMilliseconds
        self.profile = profile
    }
}

/// Where and as what snapshots are pushed: Pyroscope's HTTP ingest API (`POST /ingest`, the
/// "legacy" API that Pyroscope servers and Grafana Alloy's `pyroscope.receive_http` accept),
/// with the pprof in a multipart/form-data part named `profile`, as Pyroscope's own clients
/// upload pprof.
public struct IngestTarget: Sendable {
    /// The server's base URL, without a trailing slash.
    public var server: String
    public var application: String
    /// `service_name`, then the others; a later label replaces an earlier one of the same key.
    public var labels: [PushLabel]
    public var tenant: String?
    public var sampleRate: Int
    public var auth: PushAuth?
    public static let spyName = "scalene-attach"

    public init(server: String, application: String, labels: [PushLabel], tenant: String?, sampleRate: Int, auth: PushAuth?) {
        self.server = server
        self.application = application
        var merged = [PushLabel]()
        for label in labels {
            if let index = merged.firstIndex(where: { $0.key == label.key }) { merged[index] = label } else { merged.append(label) }
        }
        self.labels = merged
        self.tenant = tenant
        self.sampleRate = sampleRate
        self.auth = auth
    }

    /// Checks a server URL: http or https, a host, no query or fragment. Returns it without a
    /// trailing slash (`/ingest` is appended).
    ///
    /// RFC 3986's syntax, as far as this needs it: only characters a URI may hold (anything else
    /// must be percent-encoded), `scheme://[userinfo@]host[:port][/path]`.
    public static func validateServer(_ text: String) throws(PushError) -> String {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.allSatisfy(Self.isURICharacter), Self.percentEscapesAreValid(bytes) else {
            throw .invalidURL(text, reason: "not a URL")
        }
        let schemeEnd = bytes.firstIndex(of: UInt8(ascii: ":"))
        let scheme = schemeEnd.map { String(decoding: bytes[..<$0], as: UTF8.self).lowercased() }
        guard let schemeEnd, scheme == "http" || scheme == "https" else {
            throw .invalidURL(text, reason: "the scheme must be http or https")
        }
        let rest = bytes[(schemeEnd + 1)...]
        guard rest.starts(with: Array("//".utf8)) else { throw .invalidURL(text, reason: "no host") }
        let authority = rest.dropFirst(2).prefix { $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
        let hostAndPort = authority.lastIndex(of: UInt8(ascii: "@")).map { authority[($0 + 1)...] } ?? authority
        let host: ArraySlice<UInt8>
        if hostAndPort.first == UInt8(ascii: "[") {
            // An IPv6 literal: up to its closing bracket.
            guard let close = hostAndPort.firstIndex(of: UInt8(ascii: "]")) else { throw .invalidURL(text, reason: "not a URL") }
            host = hostAndPort[hostAndPort.startIndex...close]
        } else {
            host = hostAndPort.prefix { $0 != UInt8(ascii: ":") }
        }
        let port = hostAndPort[(host.endIndex)...]
        guard port.isEmpty || (port.first == UInt8(ascii: ":")
                               && port.dropFirst().allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw .invalidURL(text, reason: "not a URL")
        }
        guard !host.isEmpty else { throw .invalidURL(text, reason: "no host") }
        guard !bytes.contains(UInt8(ascii: "?")) && !bytes.contains(UInt8(ascii: "#")) else {
            throw .invalidURL(text, reason: "no query or fragment: the ingest path and its parameters are added")
        }
        var result = text
        while result.hasSuffix("/") { result.removeLast() }
        return result
    }

    /// An application name Pyroscope takes: letters, digits, `_ - .`; anything else becomes `_`.
    public static func sanitisedApplication(_ name: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
        let cleaned = String(name.map { allowed.contains($0) ? $0 : "_" })
        return cleaned.isEmpty ? "python" : cleaned
    }

    /// `APP{service_name=APP,host=H,pid=N,...}`.
    public var seriesName: String {
        application + "{" + labels.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}"
    }

    /// The ingest URL for one snapshot.
    public func url(for snapshot: PushSnapshot) -> String {
        let query: [(String, String)] = [
            ("name", seriesName), ("from", String(snapshot.from)), ("until", String(snapshot.until)),
            ("format", "pprof"), ("sampleRate", String(sampleRate)), ("spyName", Self.spyName),
        ]
        return server + "/ingest?" + query.map { "\($0)=\(Self.percentEncoded($1))" }.joined(separator: "&")
    }

    /// The request's headers (the tenant, the bearer token, the multipart type); basic auth goes
    /// through `userPassword` (libcurl encodes it).
    public func headers(boundary: String) -> [String] {
        // "Expect:" turns off libcurl's `Expect: 100-continue` (up to a second's wait with servers
        // that do not answer it).
        var headers = ["Content-Type: multipart/form-data; boundary=\(boundary)", "Expect:"]
        if let tenant { headers.append("X-Scope-OrgID: \(tenant)") }
        if case .bearer(let token) = auth { headers.append("Authorization: Bearer \(token)") }
        return headers
    }

    public var userPassword: String? {
        if case .basic(let user, let password) = auth { return "\(user):\(password)" }
        return nil
    }

    /// The multipart/form-data body: one part, `profile`, holding the pprof.
    public static func body(profile: [UInt8], boundary: String) -> [UInt8] {
        var body = [UInt8]()
        body.append(contentsOf: "--\(boundary)\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n".utf8)
        body.append(contentsOf: "Content-Type: application/octet-stream\r\n\r\n".utf8)
        body.append(contentsOf: profile)
        body.append(contentsOf: "\r\n--\(boundary)--\r\n".utf8)
        return body
    }

    /// A boundary that cannot occur in the profile: it is checked against it.
    public static func boundary(for profile: [UInt8]) -> String {
        while true {
            let candidate = "scalene-attach-" + (0..<24).map { _ in String("0123456789abcdef".randomElement()!) }.joined()
            if !profile.contains(sequence: Array(candidate.utf8)) { return candidate }
        }
    }

    /// The characters RFC 3986 allows in a URI: unreserved, reserved and `%`.
    static func isURICharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "-._~:/?#[]@!$&'()*+,;=%".utf8.contains(byte)
        }
    }

    /// Every `%` followed by two hexadecimal digits.
    static func percentEscapesAreValid(_ bytes: [UInt8]) -> Bool {
        func isHex(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
        }
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "%") {
            guard index + 2 < bytes.count, isHex(bytes[index + 1]), isHex(bytes[index + 2]) else { return false }
        }
        return true
    }

    /// RFC 3986: everything but the unreserved characters is percent-encoded.
    static func percentEncoded(_ text: String) -> String {
        let unreserved = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~".utf8)
        var result = ""
        for byte in text.utf8 {
            if unreserved.contains(byte) { result.append(Character(UnicodeScalar(byte))) } else { result += String(printf: "%%%02X", byte) }
        }
        return result
    }

    /// The machine's host name (gethostname).
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
