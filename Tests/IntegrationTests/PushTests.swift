import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// fixtures/fleet/recording_server.py: a loopback Pyroscope ingest endpoint that records every
/// request it answers 200 and fails (503), hangs or rejects (401) when told to. Killed by pid.
final class RecordingServer {
    let folder: TemporaryDirectory
    let process: FixtureProcess
    let port: Int

    init() throws {
        folder = try TemporaryDirectory()
        process = try FixtureProcess(python: "/usr/bin/python3", script: Package.fixture("fleet/recording_server.py"),
                                     arguments: [folder.path])
        let text = try String(contentsOfFile: folder.file("port"), encoding: .utf8)
        port = try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    deinit { process.kill() }

    var url: String { "http://127.0.0.1:\(port)" }

    /// ok, fail (503), hang (never answers), reject (401).
    func set(_ mode: String) throws {
        try Data(mode.utf8).write(to: URL(fileURLWithPath: folder.file("mode")), options: .atomic)
    }

    struct Request {
        var query: [String: String]
        var headers: [String: String]
        var profile: String
        var from: Int { Int(query["from"] ?? "") ?? -1 }
        var until: Int { Int(query["until"] ?? "") ?? -1 }
    }

    /// The requests answered 200, in the order they came.
    func requests() throws -> [Request] {
        try folderEntries(folder.path).filter { $0.hasSuffix(".json") && $0 != "refused.json" }.map { name in
            let data = try Data(contentsOf: URL(fileURLWithPath: folder.file(name)))
            let record = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            return Request(query: record["query"] as? [String: String] ?? [:], headers: record["headers"] as? [String: String] ?? [:],
                           profile: folder.file(String(name.dropLast(5)) + ".pprof"))
        }
    }

    /// Requests failed or hung on, by mode.
    func refused() -> [String: Int] {
        guard let data = FileManager.default.contents(atPath: folder.file("refused.json")),
              let counts = try? JSONSerialization.jsonObject(with: data) as? [String: Int] else { return [:] }
        return counts
    }
}

/// The bytes in a folder (every file, temporary ones included).
func folderBytes(_ path: String) -> Int {
    folderEntries(path).reduce(0) { sum, name in
        sum + ((try? FileManager.default.attributesOfItem(atPath: path + "/" + name)[.size] as? Int) ?? 0)
    }
}

func occurrences(of text: String, in haystack: String) -> Int { haystack.components(separatedBy: text).count - 1 }

/// `--push`: snapshots sent to a Pyroscope ingest endpoint (our own recording server on
/// loopback). One interpreter: pushing does not depend on it.
@Suite("push to Pyroscope", .serialized)
struct PushTests {
    var python: Interpreter { Interpreters.installed.first ?? Interpreters.discover().found[0] }
    static var service: String { Package.fixture("fleet/service.py") }

    var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, 255)
        return String(cString: buffer)
    }

    /// The pushed intervals tile [first from, last until]: each starts where the previous ended.
    func expectTiling(_ requests: [RecordingServer.Request], _ context: String) {
        for (previous, next) in zip(requests, requests.dropFirst()) {
            #expect(next.from == previous.until, "\(context): \(previous.from)..\(previous.until) then \(next.from)..\(next.until)")
        }
        for request in requests.dropLast() {
            #expect(request.from < request.until, "\(context): a 1 s interval covers a second: \(request.from)..\(request.until)")
        }
    }

    @Test("intervals arrive with labels, tenant and auth from the environment, and sum to the run's cumulative pprof")
    func normal() throws {
        let server = try RecordingServer()
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["2"])
        defer { fixture.kill() }
        let secret = "push-test-secret-\(UUID().uuidString)"
        let cumulative = directory.file("whole.pb.gz")
        let arguments = ["--pid", String(fixture.pid), "--push", server.url, "--snapshot-interval", "1", "--duration", "5",
                         "--quiet", "--rate", "200", "--include-idle", "--push-tenant", "team-a", "--push-label", "env=test",
                         "--push-spool", directory.file("spool"), "--format", "pprof", "--output", cumulative]
        let result = try runTool(arguments, environment: ["PYROSCOPE_AUTH_TOKEN": secret])
        try #require(result.status == 0, "\(result.stderr)")
        #expect(!arguments.joined(separator: " ").contains(secret))
        #expect(!result.stderr.contains(secret) && !result.stdout.contains(secret), "the secret is never printed")
        #expect(!result.stderr.contains("push:"), "no push failure: \(result.stderr)")

        let requests = try server.requests()
        #expect((5...7).contains(requests.count), "an interval every second of 5, and the last: \(requests.count)")
        for request in requests {
            #expect(request.query["name"] == "service{service_name=service,host=\(hostName),pid=\(fixture.pid),env=test}",
                    "\(request.query)")
            #expect(request.query["format"] == "pprof" && request.query["sampleRate"] == "200"
                    && request.query["spyName"] == "scalene-attach", "\(request.query)")
            #expect(request.headers["X-Scope-OrgID"] == "team-a")
            #expect(request.headers["Authorization"] == "Bearer \(secret)")
            #expect(request.headers["Content-Type"]?.hasPrefix("multipart/form-data; boundary=") == true)
        }
        expectTiling(requests, "normal")
        let span = Double((requests.last?.until ?? 0) - (requests.first?.from ?? 0))
        #expect(abs(span - 5) <= 1.01, "the intervals cover the 5 s run: \(span)")

        // Every body is a pprof, and together they are the run's cumulative profile.
        for request in requests { _ = try RawPprof(files: [request.profile]) }
        let pushed = try RawPprof(files: requests.map(\.profile))
        let whole = try RawPprof(files: [cumulative])
        #expect(pushed.total("samples") == whole.total("samples"), "\(pushed.total("samples")) vs \(whole.total("samples"))")
        let wall = Double(whole.total("wall"))
        #expect(wall > 2e9)
        #expect(abs(Double(pushed.total("wall")) - wall) <= 0.001 * wall, "\(pushed.total("wall")) vs \(wall)")
        #expect(abs(Double(pushed.total("python")) - Double(whole.total("python"))) <= 0.001 * wall)
        #expect(pushed.total("alloc_space") == whole.total("alloc_space"))
        #expect(folderEntries(directory.file("spool")).isEmpty, "nothing left in the spool")
        #expect(fixture.isRunningUnstopped)
    }

    @Test("an outage (503, then no answer) is spooled and told once; after recovery every interval has arrived once")
    func outageAndRecovery() throws {
        let server = try RecordingServer()
        try server.set("fail")
        let directory = try TemporaryDirectory()
        let spool = directory.file("spool")
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["2"])
        defer { fixture.kill() }
        let cumulative = directory.file("whole.pb.gz")
        let tool = try RunningTool(["--pid", String(fixture.pid), "--push", server.url, "--snapshot-interval", "1",
                                       "--duration", "12", "--quiet", "--cpu-only", "--include-idle", "--push-timeout", "1.5",
                                       "--push-spool", spool, "--push-spool-max", "1M", "--format", "pprof", "--output", cumulative])
        defer { tool.kill() }
        var largest = 0
        /// Sleeps, watching the spool's size.
        func watch(_ seconds: Double) {
            let until = Date().addingTimeInterval(seconds)
            while Date() < until {
                largest = max(largest, folderBytes(spool))
                usleep(50_000)
            }
        }
        // 503 for about 3 s, then a server that takes requests and never answers for 3 s, then well.
        #expect(eventually(6) { tool.stderr.contains("server answers HTTP 503") }, "\(tool.stderr)")
        #expect(eventually(3) { !folderEntries(spool).isEmpty }, "snapshots wait in the spool")
        watch(1.5)
        try server.set("hang")
        watch(3)
        #expect(tool.isRunning, "\(tool.stderr)")
        let spooled = folderEntries(spool).count
        #expect(spooled >= 3, "the spool holds the outage's snapshots: \(folderEntries(spool))")
        #expect(try server.requests().isEmpty)
        #expect(largest <= 1 << 20, "within the spool's bound: \(largest) bytes")
        try server.set("ok")
        let status = tool.wait(timeout: 40)
        #expect(status == 0, "\(tool.stderr)")
        let stderr = tool.stderr
        #expect(occurrences(of: "scalene-attach: push: server answers HTTP 503", in: stderr) == 1, "the outage, once: \(stderr)")
        #expect(!stderr.contains("no answer in time"), "one outage is told once: \(stderr)")
        #expect(occurrences(of: "push: server answers again; sent ", in: stderr) == 1, "\(stderr)")
        let refused = server.refused()
        #expect((refused["fail"] ?? 0) >= 2 && (refused["hang"] ?? 0) >= 1, "\(refused)")

        // Every interval arrived exactly once: they tile the run, and sum to its cumulative pprof.
        let requests = try server.requests().sorted { ($0.from, $0.until) < ($1.from, $1.until) }
        expectTiling(requests, "after the outage")
        #expect(Set(requests.map(\.from)).count == requests.count, "no interval twice")
        let span = Double((requests.last?.until ?? 0) - (requests.first?.from ?? 0))
        #expect(abs(span - 12) <= 1.01, "the intervals cover the 12 s run: \(span) s in \(requests.count) requests")
        let pushed = try RawPprof(files: requests.map(\.profile))
        let whole = try RawPprof(files: [cumulative])
        #expect(pushed.total("samples") == whole.total("samples"), "none lost: \(pushed.total("samples")) vs \(whole.total("samples"))")
        #expect(folderEntries(spool).isEmpty, "every spooled snapshot deleted after its 2xx")
    }

    @Test("with the server down the spool stays within --push-spool-max, dropping the oldest, and the count is told")
    func spoolBound() throws {
        let server = try RecordingServer()
        try server.set("fail")
        let directory = try TemporaryDirectory()
        let spool = directory.file("spool")
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["1"])
        defer { fixture.kill() }
        let bound = 6 * 1024
        let tool = try RunningTool(["--pid", String(fixture.pid), "--push", server.url, "--snapshot-interval", "0.2",
                                       "--duration", "5", "--quiet", "--cpu-only", "--push-spool", spool,
                                       "--push-spool-max", "6K"])
        defer { tool.kill() }
        var largest = 0
        var files = 0
        while tool.isRunning {
            largest = max(largest, folderBytes(spool))
            files = max(files, folderEntries(spool).count)
            usleep(20_000)
        }
        #expect(tool.wait(timeout: 20) == 0, "\(tool.stderr)")
        largest = max(largest, folderBytes(spool))
        #expect(largest <= bound, "the spool never exceeds its bound: \(largest) bytes")
        #expect(files >= 2 && largest > bound / 3, "the spool was used: \(files) files, \(largest) bytes")
        let stderr = tool.stderr
        #expect(occurrences(of: "is full (--push-spool-max 6K)", in: stderr) == 1, "\(stderr)")
        let dropped = stderr.split(separator: "\n").first { $0.contains("dropped to keep the spool within its bound") }
        let count = dropped.flatMap { $0.split(separator: " ").compactMap { Int($0) }.first } ?? 0
        #expect(count >= 5, "the dropped snapshots are counted: \(stderr)")
        let left = folderEntries(spool).count
        #expect(left > 0 && stderr.contains("\(left) snapshot\(left == 1 ? "" : "s") not sent within 10 s") && stderr.contains(spool),
                "what is left, and where: \(stderr)")

        // The next run with the same spool sends them first (with basic auth from the environment).
        try server.set("ok")
        let next = try runTool(["--pid", String(fixture.pid), "--push", server.url, "--duration", "1", "--quiet", "--cpu-only",
                                "--push-spool", spool],
                               environment: ["PYROSCOPE_BASIC_AUTH_USER": "alice", "PYROSCOPE_BASIC_AUTH_PASSWORD": "pa55"])
        #expect(next.status == 0 && next.stderr.contains("\(left) snapshots left by an earlier run"), "\(next.stderr)")
        let requests = try server.requests()
        #expect(requests.count == left + 1, "the spooled ones, then this run's: \(requests.count)")
        #expect(requests.allSatisfy { $0.headers["Authorization"] == "Basic " + Data("alice:pa55".utf8).base64EncodedString() })
        #expect(folderEntries(spool).isEmpty)
        #expect(!next.stderr.contains("pa55"))
    }

    @Test("no libcurl: one line saying how to install it, exit 1; a bad URL or label is a usage error; no link-time libcurl")
    func errors() throws {
        let me = String(getpid())
        let missing = try runTool(["--pid", me, "--push", "http://127.0.0.1:9", "--duration", "1"],
                                  environment: ["SCALENE_ATTACH_LIBCURL": "/nonexistent/libcurl.so.4"])
        #expect(missing.status == 1)
        #expect(missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
        #expect(missing.stderr.hasPrefix("scalene-attach: --push needs libcurl") && missing.stderr.contains("apt-get install libcurl4"),
                "\(missing.stderr)")
        let notCurl = try runTool(["--pid", me, "--push", "http://127.0.0.1:9"],
                                  environment: ["SCALENE_ATTACH_LIBCURL": "libz.so.1"])
        #expect(notCurl.status == 1 && notCurl.stderr.contains("has no curl_global_init"), "\(notCurl.stderr)")

        for (arguments, message) in [(["--push", "ftp://127.0.0.1/"], "http:// or https://"),
                                     (["--push", "127.0.0.1:4040"], "http:// or https://"),
                                     (["--push", "http://127.0.0.1:4040", "--push-label", "nolabel"], "key=value"),
                                     (["--push-tenant", "a"], "--push-tenant needs --push URL")] {
            let result = try runTool(["--pid", me] + arguments)
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }

        let readelf = Process()
        readelf.executableURL = URL(fileURLWithPath: "/usr/bin/readelf")
        readelf.arguments = ["-d", Package.tool]
        let pipe = Pipe()
        readelf.standardOutput = pipe
        try readelf.run()
        let dynamic = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        readelf.waitUntilExit()
        #expect(dynamic.contains("NEEDED") && !dynamic.contains("curl"), "libcurl is loaded at run time only: \(dynamic)")
    }

    @Test("a 401 is final: the snapshot is dropped, told once; an unusable spool folder fails before sampling")
    func refusedAndSpool() throws {
        let server = try RecordingServer()
        try server.set("reject")
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["1"])
        defer { fixture.kill() }
        let result = try runTool(["--pid", String(fixture.pid), "--push", server.url, "--snapshot-interval", "0.5",
                                  "--duration", "2", "--quiet", "--cpu-only", "--push-spool", directory.file("spool")])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(occurrences(of: "refused a snapshot with HTTP 401: invalid token; dropped", in: result.stderr) == 1, "\(result.stderr)")
        #expect((server.refused()["reject"] ?? 0) >= 3, "each snapshot was tried once: \(server.refused())")
        #expect(folderEntries(directory.file("spool")).isEmpty, "a refused snapshot is not spooled")
        #expect(!result.stderr.contains("spooling"), "\(result.stderr)")

        let file = directory.file("not-a-folder")
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let unusable = try runTool(["--pid", String(fixture.pid), "--push", server.url, "--duration", "1", "--quiet",
                                    "--cpu-only", "--push-spool", file])
        #expect(unusable.status == 1, "\(unusable.stderr)")
        #expect(unusable.stderr.contains("push spool \(file): not a folder") && unusable.stderr.split(separator: "\n").count == 1,
                "\(unusable.stderr)")
        #expect(fixture.isRunningUnstopped)
    }
}
