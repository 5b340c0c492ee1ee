import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What fixtures/html/check_report.py saw of a report in headless Chromium.
struct BrowserCheck: Decodable {
    struct Row: Decodable { var file: String?; var line: Int; var source: String? }
    struct Screenshot: Decodable { var width: Int; var height: Int; var colours: Int; var painted_fraction: Double }
    struct Search: Decodable { var query: String; var matches: Int }
    struct Zoom: Decodable { var before: Int; var after: Int; var ancestors: Int }

    var ready: Bool?
    var renderMs: Double?
    var hot: [Row]?
    var files: [String]?
    var flame: [String]?
    var threads: Int?
    var memoryPeakMarked: Bool?
    var facts: [String: String]?
    var search: Search?
    var zoom: Zoom?
    var requests: [String]
    var foreign_requests: [String]
    var errors: [String]
    var load_seconds: Double
    var screenshot: Screenshot

    static func open(_ report: String, screenshot: String) throws -> BrowserCheck {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Package.fixture("html/check_report.py"), report, screenshot]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HarnessError("check_report.py failed (\(process.terminationStatus)): \(String(decoding: data, as: UTF8.self))")
        }
        return try JSONDecoder().decode(BrowserCheck.self, from: data)
    }
}

/// The HTML report opened in a real browser (Debian's chromium, headless, driven over the
/// DevTools protocol): it must load nothing, log no error, and show the fixture's hot line, its
/// functions, its memory peak and its threads.
@Suite("HTML report in headless Chromium", .serialized)
struct HTMLReportBrowserTests {
    static let script = Package.fixture("views/hot_native_sleep.py")

    func requireChromium() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"),
                     "chromium is not installed (make test installs it)")
    }

    func check(_ page: BrowserCheck, marks: [String: Int], label: String, memory: Bool) {
        #expect(page.ready == true, "\(label): the page drew itself")
        #expect(page.foreign_requests.isEmpty, "\(label): no request but the page itself: \(page.requests)")
        #expect(page.requests.count == 1, "\(label): \(page.requests)")
        #expect(page.errors.isEmpty, "\(label): console: \(page.errors)")
        let first = page.hot?.first
        #expect(first?.file == Self.script && first?.line == marks["hot"], "\(label): first row \(String(describing: first))")
        #expect(first?.source?.contains("acc = (acc * 31 + i)") == true)
        let flame = Set(page.flame ?? [])
        #expect(flame.isSuperset(of: ["<module>", "main", "hot_loop", "native_work"]), "\(label): flame graph: \(flame.sorted())")
        #expect((page.search?.matches ?? 0) >= 1, "\(label): search finds \(page.search?.query ?? "?")")
        #expect((page.zoom?.ancestors ?? 0) >= 1 && (page.zoom?.after ?? 0) < (page.zoom?.before ?? 0), "\(label): zoom: \(String(describing: page.zoom))")
        #expect((page.threads ?? 0) >= 1)
        #expect(page.memoryPeakMarked == memory, "\(label): memory peak marked")
        #expect(page.facts?["pid"] != nil && page.facts?["late ticks"] != nil && page.facts?["unreadable samples"] != nil,
                "\(label): facts \(page.facts ?? [:])")
        if memory { #expect(page.facts?["dropped memory samples"] != nil) }
        #expect(page.screenshot.colours >= 20 && page.screenshot.painted_fraction > 0.03,
                "\(label): screenshot is not blank: \(page.screenshot)")
        print(String(format: "%@: drawn in %.0f ms (page loaded and drawn in %.2f s), %d colours, %.0f%% painted",
                     label, page.renderMs ?? -1, page.load_seconds, page.screenshot.colours, page.screenshot.painted_fraction * 100))
    }

    @Test("--html while profiling, and view of the --json and of --format json, on every interpreter",
          arguments: Interpreters.installed)
    func reports(python: Interpreter) throws {
        try requireChromium()
        let marks = try markers(in: Self.script)
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.script)
        defer { fixture.kill() }
        let html = directory.file("direct.html")
        let json = directory.file("profile.json")
        let main = directory.file("main.json")
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "2", "--quiet", "--html", html, "--json", json,
                                  "--format", "json", "--output", main])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(fixture.isRunningUnstopped)
        let size = (try? FileManager.default.attributesOfItem(atPath: html)[.size] as? Int) ?? 0
        #expect(size > 0 && size < 2_000_000, "\(size) bytes")
        check(try BrowserCheck.open(html, screenshot: directory.file("direct.png")), marks: marks,
              label: "\(python.label) --html", memory: true)
        for (source, name) in [(json, "--json"), (main, "--format json")] {
            let viewed = directory.file("viewed.html")
            let view = try runTool(["view", source, "--html", viewed])
            #expect(view.status == 0, "\(view.stderr)")
            check(try BrowserCheck.open(viewed, screenshot: directory.file("viewed.png")), marks: marks,
                  label: "\(python.label) view \(name)", memory: true)
        }
    }

    @Test("a CPU-only profile: no memory chart, still no request or error")
    func cpuOnly() throws {
        try requireChromium()
        let python = try #require(Interpreters.installed.first { $0.minor == 13 } ?? Interpreters.installed.last)
        let marks = try markers(in: Self.script)
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.script)
        defer { fixture.kill() }
        let html = directory.file("cpu.html")
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "1.5", "--quiet", "--cpu-only", "--html", html,
                                  "--output", directory.file("table.txt")])
        #expect(result.status == 0, "\(result.stderr)")
        check(try BrowserCheck.open(html, screenshot: directory.file("cpu.png")), marks: marks, label: "\(python.label) --cpu-only",
              memory: false)
    }

    @Test("the browser check itself fails on a page that makes requests or logs errors")
    func checkerCatchesRequests() throws {
        try requireChromium()
        let directory = try TemporaryDirectory()
        let page = directory.file("bad.html")
        try """
            <!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"><img src="other.png">
            <script>console.error("boom"); document.body.dataset.ready = "1";</script></body></html>
            """.write(toFile: page, atomically: true, encoding: .utf8)
        let seen = try BrowserCheck.open(page, screenshot: directory.file("bad.png"))
        #expect(seen.foreign_requests.contains("http://127.0.0.1:9/x.png"), "\(seen.requests)")
        #expect(seen.foreign_requests.contains { $0.hasSuffix("/other.png") }, "\(seen.requests)")
        #expect(seen.errors.contains { $0.contains("boom") }, "\(seen.errors)")
    }
}

/// `view`: bad input is one line and exit 7; reports to a device write through it.
@Suite("view command and outputs")
struct ViewCommandTests {
    @Test("a missing file, a non-JSON file and JSON that is not a profile → 7, one line")
    func badInput() throws {
        let directory = try TemporaryDirectory()
        let missing = try runTool(["view", directory.file("nope.json"), "--html", directory.file("out.html")])
        #expect(missing.status == 7 && missing.stderr.contains("cannot read"), "\(missing.stderr)")
        let text = directory.file("text.json")
        try "hello".write(toFile: text, atomically: true, encoding: .utf8)
        let notJSON = try runTool(["view", text, "--html", directory.file("out.html")])
        #expect(notJSON.status == 7 && notJSON.stderr.contains("not JSON"), "\(notJSON.stderr)")
        let other = directory.file("other.json")
        try "{\"files\": {}}".write(toFile: other, atomically: true, encoding: .utf8)
        let notProfile = try runTool(["view", other, "--html", directory.file("out.html")])
        #expect(notProfile.status == 7 && notProfile.stderr.contains("not a Scalene JSON profile"), "\(notProfile.stderr)")
        for result in [missing, notJSON, notProfile] { #expect(result.stderr.split(separator: "\n").count == 1) }
        #expect(!FileManager.default.fileExists(atPath: directory.file("out.html")))
    }

    @Test("--output to a FIFO writes through it and leaves it a FIFO (as /dev/null must stay a device)")
    func deviceOutput() throws {
        let python = try #require(Interpreters.installed.first)
        let directory = try TemporaryDirectory()
        let fifo = directory.file("table.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        // The reader: drains the FIFO into a file.
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/bin/sh")
        reader.arguments = ["-c", "cat \"$0\" > \"$1\"", fifo, directory.file("read.txt")]
        try reader.run()
        defer { if reader.isRunning { kill(reader.processIdentifier, SIGKILL); reader.waitUntilExit() } }
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("dump/busy_loop.py"))
        defer { fixture.kill() }
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "0.3", "--quiet", "--cpu-only", "--output", fifo])
        #expect(result.status == 0, "\(result.stderr)")
        reader.waitUntilExit()
        var info = stat()
        #expect(stat(fifo, &info) == 0 && (info.st_mode & S_IFMT) == S_IFIFO, "still a FIFO, not replaced by a file")
        let read = (try? String(contentsOfFile: directory.file("read.txt"), encoding: .utf8)) ?? ""
        #expect(read.contains("busy_loop.py"), "the table went through the FIFO: \(read.prefix(200))")
    }
}
