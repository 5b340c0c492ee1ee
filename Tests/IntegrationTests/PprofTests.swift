import Foundation
import Profiler
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A pprof profile as `go tool pprof -raw` prints it: the reader every pprof consumer follows
/// (Pyroscope and Parca use its Go package), so a profile it reads correctly is read everywhere.
struct RawPprof {
    var sampleTypes: [String] = []
    /// Values per sample (in `sampleTypes` order) and the location ids, innermost first.
    var samples: [(values: [Int64], locations: [Int])] = []
    /// "file:line" of each location id.
    var locations: [Int: String] = [:]
    var period: Int64?
    /// The profile's start (`time_nanos`), in Unix seconds.
    var start: Double?

    /// "2026-12-02 04:51:38.786246144 +0000 UTC" → Unix seconds (pprof prints UTC).
    static func epochSeconds(_ text: String) -> Double? {
        let parts = text.split(separator: " ")
        guard parts.count >= 2 else { return nil }
        let day = parts[0].split(separator: "-").compactMap { Int($0) }
        let clock = parts[1].split(separator: ":")
        guard day.count == 3, clock.count == 3, let hour = Int(clock[0]), let minute = Int(clock[1]),
              let second = Double(clock[2]) else { return nil }
        var components = DateComponents()
        components.timeZone = TimeZone(identifier: "UTC")
        (components.year, components.month, components.day) = (day[0], day[1], day[2])
        (components.hour, components.minute) = (hour, minute)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: components) else { return nil }
        return date.timeIntervalSince1970 + second
    }

    /// Runs `go tool pprof ARGS...` and returns stdout; throws with stderr when it fails.
    static func goTool(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/go")
        process.arguments = ["tool", "pprof"] + arguments
        var environment = ProcessInfo.processInfo.environment
        // go needs a writable cache folder and home; never the network.
        environment["HOME"] = environment["HOME"] ?? NSTemporaryDirectory()
        environment["GOFLAGS"] = "-mod=mod"
        environment["GOPROXY"] = "off"
        process.environment = environment
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = LockedData()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            data.set(out.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        group.wait()
        guard process.terminationStatus == 0 else {
            throw HarnessError("go tool pprof \(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return data.string
    }

    /// Reads one or several files (several are summed by pprof: the sum of delta snapshots).
    init(files: [String]) throws {
        let text = try Self.goTool(["-raw"] + files)
        enum Section { case header, samples, locations, other }
        var section = Section.header
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.hasPrefix("Samples:") { section = .samples; continue }
            if line.hasPrefix("Locations") { section = .locations; continue }
            if line.hasPrefix("Mappings") { section = .other; continue }
            switch section {
            case .header:
                if line.hasPrefix("Period: ") { period = Int64(line.dropFirst(8)) }
                if line.hasPrefix("Time: ") { start = Self.epochSeconds(String(line.dropFirst(6))) }
            case .samples:
                if sampleTypes.isEmpty {
                    sampleTypes = line.split(separator: " ").map { String($0.split(separator: "/")[0]) }
                    continue
                }
                guard let colon = line.firstIndex(of: ":"),
                      case let values = line[..<colon].split(separator: " ").compactMap({ Int64($0) }),
                      values.count == sampleTypes.count else { continue }
                let ids = line[line.index(after: colon)...].split(separator: " ").compactMap { Int($0) }
                samples.append((values, ids))
            case .locations:
                // "     4: 0x0 M=1 compute /path/service.py:19 s=17"
                let parts = line.split(separator: " ")
                guard let first = parts.first, first.hasSuffix(":"), let id = Int(first.dropLast()),
                      let place = parts.last(where: { $0.contains(":") && !$0.hasPrefix("s=") && $0 != first }) else { continue }
                locations[id] = String(place)
            case .other:
                break
            }
        }
    }

    /// The profile's duration in seconds, as `go tool pprof -top` shows it ("Duration: 506.77ms").
    static func duration(of file: String) throws -> Double {
        let top = try goTool(["-top", "-nodecount=1", file])
        guard let line = top.split(separator: "\n").first(where: { $0.hasPrefix("Duration: ") }) else {
            throw HarnessError("no duration in: \(top)")
        }
        let text = line.dropFirst(10).split(separator: ",")[0]
        for (unit, scale) in [("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("s", 1.0), ("m", 60.0)]
        where text.hasSuffix(unit) {
            if let value = Double(text.dropLast(unit.count)) { return value * scale }
        }
        throw HarnessError("unreadable duration: \(line)")
    }

    func index(_ type: String) -> Int? { sampleTypes.firstIndex(of: type) }

    func total(_ type: String) -> Int64 {
        guard let column = index(type) else { return 0 }
        return samples.reduce(0) { $0 + $1.values[column] }
    }

    /// Per "file:line" of `file`, the sum of one sample type over the samples whose innermost
    /// frame of a profiled file is that line: our table's rule (time lands on the innermost frame
    /// of a profiled file; the standard library, packages and "<...>" pseudo files are not
    /// profiled). A frame read torn, whose file is not a library's, takes the time as it does in
    /// our table.
    func byLine(_ type: String, in file: String) -> [String: Int64] {
        guard let column = index(type) else { return [:] }
        var result = [String: Int64]()
        for sample in samples {
            guard let place = sample.locations.lazy.compactMap({ self.locations[$0] }).first(where: Self.isProfiled),
                  place.hasPrefix(file + ":") else { continue }
            result[place, default: 0] += sample.values[column]
        }
        return result
    }

    /// Whether a "path:line" location is in a profiled file by the default rule (FileFilter's);
    /// our own pseudo locations ("[no Python stack]") are not.
    static func isProfiled(_ place: String) -> Bool {
        let path = place.lastIndex(of: ":").map { String(place[..<$0]) } ?? place
        return !path.hasPrefix("[") && FileFilter().isProfiled(path)
    }
}

/// Per-line figures of one of our Scalene JSON profiles, by "file:line".
struct JSONLines {
    var python: [String: Double] = [:]
    var native: [String: Double] = [:]
    var system: [String: Double] = [:]
    var mallocMB: [String: Double] = [:]
    var document: [String: Any] = [:]

    init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let files = try #require(document["files"] as? [String: Any])
        for (file, value) in files {
            guard let entry = value as? [String: Any], let lines = entry["lines"] as? [[String: Any]] else { continue }
            for line in lines {
                guard let number = line["lineno"] as? Int else { continue }
                let key = "\(file):\(number)"
                python[key] = line["n_cpu_percent_python"] as? Double ?? 0
                native[key] = line["n_cpu_percent_c"] as? Double ?? 0
                system[key] = line["n_sys_percent"] as? Double ?? 0
                mallocMB[key] = line["n_malloc_mb"] as? Double ?? 0
            }
        }
    }

    var attach: [String: Any] { document["scalene_attach"] as? [String: Any] ?? [:] }
    var memory: [String: Any] { attach["memory"] as? [String: Any] ?? [:] }
}

/// `--format pprof` read back by `go tool pprof` (Debian's golang-go), with every figure equal
/// to our own report's: each line's share of Python, native and system time, its allocated
/// bytes, the totals of copied and allocated bytes. On every installed CPython (the stacks and
/// names come from each version's frames).
@Suite("pprof output", .serialized)
struct PprofTests {
    static var service: String { Package.fixture("fleet/service.py") }

    @Test("go tool pprof reads our pprof, and its figures are our table's", arguments: Interpreters.installed)
    func readBack(python: Interpreter) throws {
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["2"])
        defer { fixture.kill() }
        let pprof = directory.file("profile.pb.gz")
        let json = directory.file("profile.json")
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "1.5", "--quiet", "--rate", "200",
                                  "--format", "pprof", "--output", pprof, "--json", json])
        try #require(result.status == 0, "\(python): \(result.stderr)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: pprof))
        #expect(bytes.starts(with: [0x1f, 0x8b]), "gzip-compressed")
        let raw = try RawPprof(files: [pprof])
        let ours = try JSONLines(path: json)
        #expect(raw.sampleTypes == ["samples", "wall", "python", "native", "system", "alloc_space", "inuse_space", "copy_space"],
                "\(raw.sampleTypes)")
        #expect(raw.period == 5_000_000, "period: 1/200 s in nanoseconds")
        #expect(abs(try RawPprof.duration(of: pprof) - 1.5) < 0.3)

        // Time: each line's share of the whole sampled time, as our JSON (and table) says.
        let wall = Double(raw.total("wall"))
        #expect(wall > 1e9, "two busy workers and the main thread for 1.5 s")
        #expect(raw.total("wall") == raw.total("python") + raw.total("native") + raw.total("system"))
        let marks = try markers(in: Self.service)
        let compute = "\(Self.service):\(marks["compute"]!)"
        for (type, figures) in [("python", ours.python), ("native", ours.native), ("system", ours.system)] {
            let lines = raw.byLine(type, in: Self.service)
            for (place, percent) in figures where place.hasPrefix(Self.service + ":") {
                let theirs = 100 * Double(lines[place] ?? 0) / wall
                #expect(abs(theirs - percent) < 0.05, "\(python) \(type) \(place): pprof \(theirs)% vs ours \(percent)%")
            }
        }
        #expect((ours.python[compute] ?? 0) > 0, "the compute line runs Python: \(ours.python[compute] ?? 0)%")

        // Memory: bytes allocated per line, and the totals.
        let allocated = raw.byLine("alloc_space", in: Self.service)
        let allocate = "\(Self.service):\(marks["allocate"]!)"
        #expect((allocated[allocate] ?? 0) > 16 << 20, "the allocating line: \(allocated[allocate] ?? 0) bytes")
        for (place, megabytes) in ours.mallocMB where megabytes > 0 && place.hasPrefix(Self.service) {
            let theirs = Double(allocated[place] ?? 0) / 1048576
            #expect(abs(theirs - megabytes) < 0.01, "\(python) alloc \(place): pprof \(theirs) MB vs ours \(megabytes) MB")
        }
        let totalMB = ours.memory["total_allocated_mb"] as? Double ?? -1
        #expect(abs(Double(raw.total("alloc_space")) / 1048576 - totalMB) < 0.01)
        let copiedMB = ours.memory["copied_mb"] as? Double ?? -1
        #expect(copiedMB > 0 && abs(Double(raw.total("copy_space")) / 1048576 - copiedMB) < 0.01)

        // The views people use: top functions and lines.
        let top = try RawPprof.goTool(["-top", "-sample_index=python", pprof])
        #expect(top.contains("compute"), "\(top)")
        let lines = try RawPprof.goTool(["-top", "-lines", "-sample_index=alloc_space", pprof])
        #expect(lines.contains("service.py:\(marks["allocate"]!)"), "\(lines)")
        let threads = try RawPprof.goTool(["-tags", pprof])
        #expect(threads.contains("thread_name") && threads.contains("worker-0"), "\(threads)")
    }
}
