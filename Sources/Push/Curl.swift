import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// libcurl, loaded with dlopen when `--push` is used: the binary has no link-time dependency on
/// it. Load it once, before other threads start (curl_global_init is not thread-safe in older
/// libcurls).
public final class CurlLibrary: @unchecked Sendable {
    /// The soname of libcurl's ABI 4 (every libcurl 7.x and 8.x).
    public static let defaultPath = "libcurl.so.4"

    fileprivate let api: ccurl_api
    /// curl_version()'s text ("libcurl/7.88.1 OpenSSL/3.0.15 ...").
    public let version: String

    private init(api: ccurl_api) {
        self.api = api
        version = api.version.flatMap { $0() }.map { String(cString: $0) } ?? "libcurl"
    }

    /// Loads libcurl from `path` (a soname or a file).
    public static func load(path: String = defaultPath) throws(PushError) -> CurlLibrary {
        var api = ccurl_api()
        var error = [CChar](repeating: 0, count: 512)
        guard ccurl_load(path, &api, &error, error.count) == 0 else {
            let reason = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw .libcurlUnavailable(path: path, reason: reason)
        }
        return CurlLibrary(api: api)
    }
}

/// What became of one request.
public enum TransferResult: Sendable, Equatable {
    /// The server answered with this status; `body` is the start of its answer.
    case response(status: Int, body: String)
    /// No answer: the connection could not be made, or timed out, or failed otherwise.
    case failed(TransferFailure)
}

public struct TransferFailure: Sendable, Equatable {
    public enum Kind: Sendable, Hashable {
        /// The host could not be resolved or refused the connection.
        case unreachable
        /// No (whole) answer within the time limit.
        case timedOut
        /// Anything else libcurl reports (TLS, protocol, connection reset...).
        case other
    }

    public var kind: Kind
    /// libcurl's description.
    public var message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }
}

/// Sends one HTTP POST and returns what came of it; used by one thread at a time.
public protocol PushTransport: AnyObject {
    func post(url: String, headers: [String], userPassword: String?, body: [UInt8]) -> TransferResult
}

/// PushTransport through libcurl's easy interface, one handle reused (its connection is kept
/// alive between snapshots). Signals are never used (CURLOPT_NOSIGNAL): this runs on a thread of
/// its own while the sampling thread handles the signals.
public final class CurlTransport: PushTransport {
    private let library: CurlLibrary
    private let easy: UnsafeMutableRawPointer
    private let connectTimeoutMs: Int
    private let totalTimeoutMs: Int
    private let userAgent: String

    public init?(library: CurlLibrary, connectTimeout: Double, totalTimeout: Double, userAgent: String) {
        guard let initialise = library.api.easy_init, let easy = initialise() else { return nil }
        self.library = library
        self.easy = easy
        connectTimeoutMs = max(1, Int(connectTimeout * 1000))
        totalTimeoutMs = max(1, Int(totalTimeout * 1000))
        self.userAgent = userAgent
    }

    deinit { library.api.easy_cleanup?(easy) }

    public func post(url: String, headers: [String], userPassword: String?, body: [UInt8]) -> TransferResult {
        withUnsafePointer(to: library.api) { api in
            api.pointee.easy_reset?(easy)
            var list: UnsafeMutableRawPointer?
            for header in headers { list = api.pointee.slist_append?(list, header) ?? list }
            defer { api.pointee.slist_free_all?(list) }
            var errorBuffer = [CChar](repeating: 0, count: Int(CCURL_ERROR_SIZE))
            var response = ccurl_response()
            let code: Int32 = errorBuffer.withUnsafeMutableBufferPointer { errors in
                body.withUnsafeBytes { bytes in
                    let easy = self.easy
                    var setup: Int32 = 0
                    func set(_ result: Int32) { if setup == 0 { setup = result } }
                    set(ccurl_set_long(api, easy, CCURL_OPT_NOSIGNAL, 1))
                    set(ccurl_set_pointer(api, easy, CCURL_OPT_ERRORBUFFER, errors.baseAddress))
                    set(url.withCString { ccurl_set_pointer(api, easy, CCURL_OPT_URL, $0) }) // copied by libcurl
                    set(userAgent.withCString { ccurl_set_pointer(api, easy, CCURL_OPT_USERAGENT, $0) })
                    if let userPassword {
                        set(userPassword.withCString { ccurl_set_pointer(api, easy, CCURL_OPT_USERPWD, $0) })
                    }
                    set(ccurl_set_long(api, easy, CCURL_OPT_POST, 1))
                    set(ccurl_set_pointer(api, easy, CCURL_OPT_POSTFIELDS, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)))
                    set(ccurl_set_off_t(api, easy, CCURL_OPT_POSTFIELDSIZE_LARGE, Int64(bytes.count)))
                    set(ccurl_set_pointer(api, easy, CCURL_OPT_HTTPHEADER, list))
                    set(ccurl_set_long(api, easy, CCURL_OPT_CONNECTTIMEOUT_MS, min(connectTimeoutMs, totalTimeoutMs)))
                    set(ccurl_set_long(api, easy, CCURL_OPT_TIMEOUT_MS, totalTimeoutMs))
                    set(ccurl_capture_response(api, easy, &response))
                    guard setup == 0 else { return setup }
                    // The body must stay where it is until the transfer ends: it is sent from here.
                    return api.pointee.easy_perform?(easy) ?? -1
                }
            }
            // Nothing may point into this call's buffers once it returns.
            _ = ccurl_set_pointer(api, easy, CCURL_OPT_ERRORBUFFER, nil)
            _ = ccurl_set_pointer(api, easy, CCURL_OPT_HTTPHEADER, nil)
            _ = ccurl_set_pointer(api, easy, CCURL_OPT_POSTFIELDS, nil)
            guard code == CCURL_E_OK else {
                var message = errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                if message.isEmpty { message = api.pointee.easy_strerror?(code).map { String(cString: $0) } ?? "error \(code)" }
                let kind: TransferFailure.Kind
                switch code {
                case CCURL_E_COULDNT_CONNECT, CCURL_E_COULDNT_RESOLVE_HOST, CCURL_E_COULDNT_RESOLVE_PROXY: kind = .unreachable
                case CCURL_E_OPERATION_TIMEDOUT: kind = .timedOut
                default: kind = .other
                }
                return .failed(TransferFailure(kind: kind, message: message))
            }
            var status = 0
            _ = ccurl_get_long(api, easy, CCURL_INFO_RESPONSE_CODE, &status)
            let text = withUnsafeBytes(of: &response.bytes) { raw in
                String(decoding: raw.prefix(response.length), as: UTF8.self)
            }
            return .response(status: status, body: text)
        }
    }
}
