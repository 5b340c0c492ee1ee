import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// scalene-attach running in the background while a test acts on it (signals, limits); its
/// stderr is collected as it comes. Killed by pid when the test is done.
final class RunningTool: @unchecked Sendable {
    let process = Process()
    private let errors = LockedData()
    private let done = DispatchGroup()

    /// - Parameter launcher: a command that runs the tool (`prlimit --fsize=N`), if any.
    /// - Parameter environment: variables added to ours.
    init(_ arguments: [String], launcher: [String] = [], environment: [String: String] = [:]) throws {
        let command = launcher + [Package.tool] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = FileHandle.nullDevice
        let pipe = Pipe()
        process.standardError = pipe
        try process.run()
        done.enter()
        let sink = errors
        DispatchQueue.global().async { [done] in
            var all = Data()
            while true {
                let chunk = pipe.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                all.append(chunk)
                sink.set(all)
            }
            done.leave()
        }
    }

    deinit { kill() }

    var pid: Int32 { process.processIdentifier }
    var stderr: String { errors.string }

    func signal(_ number: Int32) { Glibc.kill(pid, number) }

    var isRunning: Bool { process.isRunning }

    /// Waits for the tool to end by itself (at most `timeout` seconds, then it is killed: nil).
    func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill()
            return nil
        }
        process.waitUntilExit()
        done.wait()
        return process.terminationStatus
    }

    /// SIGINT (Ctrl-C) and the exit status.
    func interrupt(timeout: TimeInterval = 30) -> Int32 {
        signal(SIGINT)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        kill()
        done.wait()
        return process.terminationStatus
    }

    func kill() {
        if process.isRunning {
            Glibc.kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Waits until `condition` holds (polling), at most `timeout` seconds.
@discardableResult
func eventually(_ timeout: TimeInterval, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(50_000)
    }
    return condition()
}

func folderEntries(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

/// Periodic snapshots for pipelines: delta intervals that add up to the whole run, timestamped
/// files rotated to exactly N, SIGUSR1 and SIGHUP, and a disk that refuses writes. One
/// interpreter: the snapshot machinery is the same for all (pprof's encoding of each version's
/// frames is tested on every one by "pprof output").
@Suite("snapshots", .serialized)
struct SnapshotTests {
    var python: Interpreter { Interpreters.installed.first { $0.minor == 12 } ?? Interpreters.installed[0] }
    static var service: String { Package.fixture("fleet/service.py") }

    func timestamped(_ folder: String, stem: String, suffix: String) -> [String] {
        folderEntries(folder).filter { name in
            guard name.hasPrefix(stem + "."), name.hasSuffix(suffix) else { return false }
            let stamp = name.dropFirst(stem.count + 1).dropLast(suffix.count)
            return stamp.count >= 20 && stamp.dropFirst(8).first == "T" && stamp.dropFirst(19).first == "Z"
        }
    }

    /// With --include-idle: without it each interval leaves out the threads blocked all through
    /// it (the main thread asleep here), which the whole run keeps when they ran at some time.
    @Test("delta snapshots are intervals that sum to the whole run")
    func delta() throws {
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["2"])
        defer { fixture.kill() }
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "3", "--quiet", "--rate", "200",
                                  "--include-idle", "--format", "pprof", "--output", directory.file("delta.pb.gz"),
                                  "--json", directory.file("whole.json"),
                                  "--snapshot-interval", "0.5", "--snapshot-mode", "delta", "--snapshot-keep", "100"])
        try #require(result.status == 0, "\(result.stderr)")
        let files = timestamped(directory.path, stem: "delta", suffix: ".pb.gz")
        #expect((5...8).contains(files.count), "a delta every 0.5 s of 3 s, and the last interval: \(files)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("delta.pb.gz")), "with --snapshot-keep only timestamped files")
        var durations = 0.0
        for file in files {
            let duration = try RawPprof.duration(of: directory.file(file))
            #expect(duration < 0.9, "\(file) covers one interval: \(duration) s")
            durations += duration
        }
        let summed = try RawPprof(files: files.map { directory.file($0) })
        // --json stays cumulative: its newest file is the whole run.
        let wholes = timestamped(directory.path, stem: "whole", suffix: ".json")
        let whole = try JSONLines(path: directory.file(try #require(wholes.last)))
        #expect(abs(durations - (whole.document["elapsed_time_sec"] as? Double ?? 0)) < 0.05,
                "the intervals cover the run without gap or overlap: \(durations) s")
        #expect(abs((whole.document["elapsed_time_sec"] as? Double ?? 0) - 3) < 0.3)
        let wall = Double(summed.total("wall"))
        #expect(wall > 2e9)
        var compared = 0
        for (type, figures) in [("python", whole.python), ("native", whole.native), ("system", whole.system)] {
            let lines = summed.byLine(type, in: Self.service)
            for (place, percent) in figures where place.hasPrefix(Self.service + ":") {
                let theirs = 100 * Double(lines[place] ?? 0) / wall
                #expect(abs(theirs - percent) < 0.05, "\(type) \(place): deltas sum to \(theirs)%, the whole run has \(percent)%")
                if percent > 0 { compared += 1 }
            }
        }
        #expect(compared >= 3)
        let allocated = summed.byLine("alloc_space", in: Self.service)
        for (place, megabytes) in whole.mallocMB where megabytes > 0 && place.hasPrefix(Self.service) {
            #expect(abs(Double(allocated[place] ?? 0) / 1048576 - megabytes) < 0.01, "alloc \(place)")
        }
        let totalMB = whole.memory["total_allocated_mb"] as? Double ?? -1
        #expect(totalMB > 10 && abs(Double(summed.total("alloc_space")) / 1048576 - totalMB) < 0.01)
    }

    @Test("--snapshot-keep N keeps exactly the newest N files of each output")
    func rotation() throws {
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["1"])
        defer { fixture.kill() }
        // Another file with the same stem is not ours: it must survive the rotation.
        let foreign = directory.file("table.notes.txt")
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: foreign))
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "2.5", "--quiet", "--cpu-only",
                                  "--output", directory.file("table.txt"), "--json", directory.file("run.json"),
                                  "--snapshot-interval", "0.2", "--snapshot-keep", "3"])
        try #require(result.status == 0, "\(result.stderr)")
        let tables = timestamped(directory.path, stem: "table", suffix: ".txt")
        let jsons = timestamped(directory.path, stem: "run", suffix: ".json")
        #expect(tables.count == 3 && jsons.count == 3, "\(folderEntries(directory.path))")
        #expect(Set(folderEntries(directory.path)) == Set(tables + jsons + ["table.notes.txt"]), "no temporary or other file")
        // The newest is the final report (the whole run).
        let newest = try JSONLines(path: directory.file(try #require(jsons.last)))
        #expect(abs((newest.document["elapsed_time_sec"] as? Double ?? 0) - 2.5) < 0.3)
    }

    @Test("SIGUSR1 writes a snapshot now; SIGHUP reopens the output (log rotation), never stops")
    func signals() throws {
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["1"])
        defer { fixture.kill() }
        let folder = directory.file("out")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let json = folder + "/now.json"
        let tool = try RunningTool(["--pid", String(fixture.pid), "--quiet", "--cpu-only", "--json", json])
        defer { tool.kill() }
        usleep(1_000_000)
        #expect(!FileManager.default.fileExists(atPath: json), "no interval: nothing written before SIGUSR1")
        tool.signal(SIGUSR1)
        #expect(eventually(3) { FileManager.default.fileExists(atPath: json) }, "SIGUSR1 writes a snapshot: \(tool.stderr)")

        // Log rotation: the folder is renamed and made again; snapshots follow the open folder
        // until SIGHUP, then go to the path again.
        try FileManager.default.moveItem(atPath: folder, toPath: folder + ".1")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let rotatedBefore = try FileManager.default.attributesOfItem(atPath: folder + ".1/now.json")[.modificationDate] as? Date
        usleep(20_000)
        tool.signal(SIGUSR1)
        #expect(eventually(3) {
            let date = (try? FileManager.default.attributesOfItem(atPath: folder + ".1/now.json")[.modificationDate]) as? Date
            return date != rotatedBefore
        }, "before SIGHUP the snapshot goes to the renamed folder")
        #expect(!FileManager.default.fileExists(atPath: json))
        tool.signal(SIGHUP)
        usleep(200_000)
        #expect(tool.process.isRunning, "SIGHUP does not stop the recording: \(tool.stderr)")
        tool.signal(SIGUSR1)
        #expect(eventually(3) { FileManager.default.fileExists(atPath: json) }, "after SIGHUP the path is opened again")
        #expect(tool.interrupt() == 0, "\(tool.stderr)")
        #expect(fixture.isRunningUnstopped)
    }

    @Test("a disk that refuses writes: reported once, no partial file, the profiler goes on")
    func refusedWrites() throws {
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Self.service, arguments: ["2"])
        defer { fixture.kill() }
        let json = directory.file("big.json")
        let pprof = directory.file("small.pb.gz")
        // RLIMIT_FSIZE of 24 KiB: the pprof file fits, the JSON (about 100 KB here) does not.
        let tool = try RunningTool(["--pid", String(fixture.pid), "--quiet", "--cpu-only", "--snapshot-interval", "0.3",
                                    "--format", "pprof", "--output", pprof, "--json", json],
                                   launcher: ["/usr/bin/prlimit", "--fsize=24576:unlimited"])
        defer { tool.kill() }
        #expect(eventually(5) { FileManager.default.fileExists(atPath: pprof) }, "\(tool.stderr)")
        usleep(1_500_000)
        #expect(tool.process.isRunning, "\(tool.stderr)")
        #expect(!FileManager.default.fileExists(atPath: json), "no partial JSON")
        // A snapshot is written every 0.3 s: one may be under way (its temporary file exists until
        // the refused write removes it), so the folder must come back to the pprof alone.
        #expect(eventually(1) { folderEntries(directory.path) == ["small.pb.gz"] },
                "no temporary file left: \(folderEntries(directory.path))")
        #expect(tool.stderr.components(separatedBy: "File too large").count - 1 == 1, "reported once: \(tool.stderr)")
        _ = try RawPprof(files: [pprof])
        // The limit is lifted: the next snapshots are whole.
        let lift = Process()
        lift.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        lift.arguments = ["--pid", String(tool.pid), "--fsize=unlimited"]
        try lift.run()
        lift.waitUntilExit()
        #expect(eventually(5) { FileManager.default.fileExists(atPath: json) })
        #expect(tool.interrupt() == 0, "\(tool.stderr)")
        _ = try JSONLines(path: json)
        #expect(tool.stderr.components(separatedBy: "File too large").count - 1 == 1, "\(tool.stderr)")
        #expect(fixture.isRunningUnstopped)
    }
}
