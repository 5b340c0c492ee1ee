import Foundation
import Push
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A folder removed at the end of a test.
final class SpoolFolder {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "scalene-push-test-" + UUID().uuidString
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    var entries: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}

func snapshot(_ second: Int, bytes: Int = 100) -> PushSnapshot {
    PushSnapshot(from: second, until: second + 1, startMilliseconds: Int64(second) * 1000, profile: [UInt8](repeating: UInt8(second & 0xff), count: bytes))
}

@Suite("Pyroscope ingest requests")
struct IngestTests {
    let target = IngestTarget(server: "http://127.0.0.1:4040", application: "app",
                              labels: [PushLabel(key: "service_name", value: "app"), PushLabel(key: "host", value: "h"),
                                       PushLabel(key: "pid", value: "7"), PushLabel(key: "host", value: "web-1")],
                              tenant: "team", sampleRate: 100, auth: .bearer("s3cret"))

    @Test("name with labels, from, until, format, sampleRate, spyName; a later label replaces an earlier one")
    func url() {
        let url = target.url(for: snapshot(1_700_000_000))
        #expect(target.seriesName == "app{service_name=app,host=web-1,pid=7}")
        #expect(url == "http://127.0.0.1:4040/ingest?name=app%7Bservice_name%3Dapp%2Chost%3Dweb-1%2Cpid%3D7%7D"
                + "&from=1700000000&until=1700000001&format=pprof&sampleRate=100&spyName=scalene-attach")
    }

    @Test("headers: multipart type, tenant, bearer token; basic auth through libcurl")
    func headers() {
        let headers = target.headers(boundary: "B")
        #expect(headers.contains("Content-Type: multipart/form-data; boundary=B"))
        #expect(headers.contains("X-Scope-OrgID: team"))
        #expect(headers.contains("Authorization: Bearer s3cret"))
        #expect(target.userPassword == nil)
        #expect(PushAuth.fromEnvironment(["PYROSCOPE_BASIC_AUTH_USER": "u", "PYROSCOPE_BASIC_AUTH_PASSWORD": "p"]) == .basic(user: "u", password: "p"))
        #expect(PushAuth.fromEnvironment([:]) == nil)
    }

    @Test("the body is one multipart part named profile")
    func body() {
        let profile: [UInt8] = [0x1f, 0x8b, 0, 1, 2]
        let boundary = IngestTarget.boundary(for: profile)
        let body = IngestTarget.body(profile: profile, boundary: boundary)
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.hasPrefix("--\(boundary)\r\nContent-Disposition: form-data; name=\"profile\""))
        #expect(text.hasSuffix("\r\n--\(boundary)--\r\n"))
        #expect(Data(body).range(of: Data(profile)) != nil)
    }

    @Test("URLs and labels are checked")
    func validation() throws {
        #expect(try IngestTarget.validateServer("https://x.example/pyroscope/") == "https://x.example/pyroscope")
        for bad in ["ftp://x", "127.0.0.1:4040", "http://", "http://x/?a=b", "x"] {
            #expect(throws: PushError.self, "\(bad)") { try IngestTarget.validateServer(bad) }
        }
        #expect(try PushLabel.parse("env=prod") == PushLabel(key: "env", value: "prod"))
        for bad in ["env", "=x", "1a=b", "a=", "a=b,c", "a=b}"] {
            #expect(throws: PushError.self, "\(bad)") { try PushLabel.parse(bad) }
        }
    }
}

@Suite("push spool")
struct SpoolTests {
    @Test("oldest first, bounded, dropped counted, kept across runs, private")
    func bound() throws {
        let folder = SpoolFolder()
        let spool = try Spool(directory: folder.path, maxBytes: 350)
        for second in [3, 1, 2] { try spool.store(snapshot(second)) }
        #expect(spool.count == 3 && spool.totalBytes == 300)
        #expect(spool.oldest()?.snapshot.from == 1)
        try spool.store(snapshot(4))
        #expect(spool.count == 3 && spool.dropped == 1, "the oldest made room")
        #expect(spool.oldest()?.snapshot == snapshot(2))
        try spool.store(snapshot(5, bytes: 400))
        #expect(spool.dropped == 2 && spool.count == 3, "larger than the bound alone: dropped itself")
        var info = stat()
        #expect(stat(folder.path, &info) == 0 && info.st_mode & 0o777 == 0o700)
        let again = try Spool(directory: folder.path, maxBytes: 350)
        #expect(again.count == 3 && again.oldest()?.snapshot.from == 2)
        if let name = again.oldest()?.name { again.remove(name) }
        #expect(again.count == 2 && folder.entries.count == 2)
    }
}

/// A server as the pusher sees it: answers by a script of outcomes.
final class ScriptedTransport: PushTransport, @unchecked Sendable {
    private let lock = NSLock()
    var answers: [TransferResult] = []
    var otherwise = TransferResult.response(status: 200, body: "")
    private(set) var received: [String] = []

    func post(url: String, headers: [String], userPassword: String?, body: [UInt8]) -> TransferResult {
        lock.lock()
        defer { lock.unlock() }
        let answer = answers.isEmpty ? otherwise : answers.removeFirst()
        if case .response(let status, _) = answer, (200..<300).contains(status) {
            let from = url.split(separator: "&").first { $0.hasPrefix("from=") }.map { String($0.dropFirst(5)) } ?? "?"
            received.append(from)
        }
        return answer
    }

    var froms: [String] { lock.lock(); defer { lock.unlock() }; return received }
}

final class Events: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [PushEvent] = []
    func add(_ event: PushEvent) { lock.lock(); list.append(event); lock.unlock() }
    var all: [PushEvent] { lock.lock(); defer { lock.unlock() }; return list }
}

@Suite("pusher")
struct PusherTests {
    func make(_ transport: ScriptedTransport, folder: SpoolFolder, events: Events, maxBytes: UInt64 = 1 << 20) throws -> Pusher {
        var configuration = Pusher.Configuration(target: IngestTarget(server: "http://h", application: "a", labels: [],
                                                                     tenant: nil, sampleRate: 100, auth: nil))
        configuration.firstBackoff = 0.05
        configuration.maxBackoff = 0.2
        return Pusher(configuration: configuration, transport: transport,
                      spool: try Spool(directory: folder.path, maxBytes: maxBytes)) { events.add($0) }
    }

    @Test("an outage spools, told once; recovery sends the spool oldest first, each once")
    func outage() throws {
        let transport = ScriptedTransport()
        transport.answers = [.response(status: 200, body: ""), .response(status: 503, body: "down"),
                             .failed(TransferFailure(kind: .timedOut, message: "t")), .response(status: 503, body: "")]
        let folder = SpoolFolder()
        let events = Events()
        let pusher = try make(transport, folder: folder, events: events)
        for second in 1...6 {
            pusher.submit(snapshot(second))
            usleep(30_000)
        }
        // Recovery comes with the back-off (0.05 s doubling to 0.2 s); finish makes one attempt
        // only when the server is still down, so it waits for the recovery here.
        let deadline = Date().addingTimeInterval(10)
        while transport.froms.count < 6 && Date() < deadline { usleep(10_000) }
        let summary = pusher.finish(timeout: 5)
        #expect(transport.froms == (1...6).map(String.init), "\(transport.froms)")
        #expect(summary.sent == 6 && summary.leftInSpool == 0 && summary.drained)
        #expect(events.all.filter { if case .outage = $0 { true } else { false } }.count == 1, "\(events.all)")
        #expect(events.all.contains { if case .recovered = $0 { true } else { false } })
        #expect(folder.entries.isEmpty)
    }

    @Test("a 4xx other than 429 drops the snapshot, told once a status")
    func refused() throws {
        let transport = ScriptedTransport()
        transport.answers = [.response(status: 401, body: "bad token\nmore"), .response(status: 401, body: ""),
                             .response(status: 429, body: "")]
        let folder = SpoolFolder()
        let events = Events()
        let pusher = try make(transport, folder: folder, events: events)
        for second in 1...4 { pusher.submit(snapshot(second)); usleep(20_000) }
        let summary = pusher.finish(timeout: 5)
        #expect(summary.refused == 2 && summary.sent == 2, "\(summary)")
        #expect(transport.froms == ["3", "4"], "429 is retried")
        #expect(events.all.filter { $0 == .refused(status: 401, detail: ": bad token") }.count == 1, "\(events.all)")
    }

    @Test("a server that stays down: what is left stays in the spool, within the bound")
    func down() throws {
        let transport = ScriptedTransport()
        transport.otherwise = .failed(TransferFailure(kind: .unreachable, message: "refused"))
        let folder = SpoolFolder()
        let events = Events()
        let pusher = try make(transport, folder: folder, events: events, maxBytes: 350)
        for second in 1...8 { pusher.submit(snapshot(second)); usleep(10_000) }
        let summary = pusher.finish(timeout: 2)
        #expect(summary.leftInSpool == 3 && summary.dropped == 5, "\(summary)")
        #expect(folder.entries.count == 3)
        #expect(events.all.contains(.spoolFull(maxBytes: 350)))
    }
}
