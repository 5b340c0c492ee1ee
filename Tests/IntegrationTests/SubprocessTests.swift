import Foundation
import ProcessFamily
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `--subprocesses` on a multiprocessing pool whose workers are replaced while it is profiled
/// (`maxtasksperchild`): every worker is found within a second of its start, recorded with its own
/// sampler and agent, reported when it ends, and the CPU the workers spent in their task (measured
/// by the workers themselves with time.process_time) is what the profiles add up to.
@Suite("worker processes", .serialized)
struct SubprocessTests {
    static var pool: String { Package.fixture("fleet/pool.py") }

    /// The pool, and every process it started, killed by pid when the test is done.
    final class Pool {
        let fixture: FixtureProcess

        init(python: Interpreter) throws {
            fixture = try FixtureProcess(python: python.path, script: SubprocessTests.pool, arguments: ["2", "3"])
        }

        static func descendants(of root: Int32) -> Set<Int32> {
            Set(ProcessTree.descendants(of: root).map(\.identity.pid))
        }

        /// Kills the pool and every process it started (by pid), and returns what it printed.
        func stop() -> String {
            let family = Self.descendants(of: fixture.pid)
            fixture.kill()
            for pid in family { kill(pid, SIGKILL) }
            return fixture.remainingOutput()
        }
    }

    /// A task the fixture reported: which worker, when (Unix seconds) and its CPU in `compute`.
    struct Task {
        var pid: Int32
        var start: Double
        var end: Double
        var cpu: Double

        static func parse(_ output: String) -> [Task] {
            output.split(separator: "\n").compactMap { line in
                let parts = line.split(separator: " ")
                guard parts.count == 5, parts[0] == "TASK", let pid = Int32(parts[1]), let start = Double(parts[2]),
                      let end = Double(parts[3]), let cpu = Double(parts[4]) else { return nil }
                return Task(pid: pid, start: start, end: end, cpu: cpu)
            }
        }

        /// The CPU spent within [from, until], the task's CPU spread evenly over its wall time.
        func cpu(from: Double, until: Double) -> Double {
            guard end > start else { return 0 }
            return cpu * max(0, min(end, until) - max(start, from)) / (end - start)
        }
    }

    /// Pids the tool said it records, and the delays it measured for processes found while recording.
    static func recorded(_ stderr: String) -> (pids: Set<Int32>, delays: [Double]) {
        var pids = Set<Int32>()
        var delays = [Double]()
        for line in stderr.split(separator: "\n") where line.hasPrefix("scalene-attach: recording process ") {
            let rest = line.dropFirst("scalene-attach: recording process ".count)
            if let pid = Int32(rest.prefix(while: { $0.isNumber })) { pids.insert(pid) }
            if let found = line.range(of: ", found ") {
                if let delay = Double(line[found.upperBound...].prefix(while: { $0 != " " })) { delays.append(delay) }
            }
        }
        return (pids, delays)
    }

    /// CPU seconds (Python + native) on the lines of the workers' measured loop (MARK compute to
    /// compute-end: what the fixture's process_time brackets).
    static func computeSeconds(_ profile: RawPprof) throws -> Double {
        let marks = try markers(in: pool)
        let lines = Set((try #require(marks["compute"])...(try #require(marks["compute-end"]))).map { "\(pool):\($0)" })
        let total = ["python", "native"].flatMap { profile.byLine($0, in: pool).filter { lines.contains($0.key) }.values }
        return Double(total.reduce(0, +)) / 1e9
    }

    @Test("one report per process: replaced workers found within a second, each with its own agent; CPU adds up",
          arguments: Interpreters.installed)
    func perProcess(python: Interpreter) throws {
        let folder = NSTemporaryDirectory() + "scalene-family-\(getpid())-\(python.minor)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let pool = try Pool(python: python)
        // The pool's first workers settle for a second: let them start before we attach.
        usleep(300_000)
        let result = try runTool(["--pid", "\(pool.fixture.pid)", "--subprocesses", "--duration", "6", "--quiet",
                                  "--format", "pprof", "--output", folder + "/p.pb.gz"], timeout: 90)
        let recorded = Self.recorded(result.stderr)
        // Detached: no process of the family is left stopped, and the pool goes on working.
        let detached = Date().timeIntervalSince1970
        for pid in Pool.descendants(of: pool.fixture.pid).union([pool.fixture.pid]) {
            if let state = ProcessStatus.read(pid: pid)?.state {
                #expect(state != "T" && state != "t", "\(python): process \(pid) left stopped")
            }
        }
        // A task that ends after the detach, waited for (bounded): a replaced worker settles for a
        // second before its first task, longer on a loaded machine.
        let after = pool.fixture.lines(timeout: 15) { line in Task.parse(line).contains { $0.end > detached } }
        let tasks = Task.parse((after + [pool.stop()]).joined(separator: "\n"))
        #expect(tasks.contains { $0.end > detached }, "\(python): the pool made no progress in 15 s after the recording")
        #expect(result.status == 0, "\(python): \(result.stderr)")

        // Workers replaced while recording: more than the pool's two, each found within a second.
        let workers = recorded.pids.subtracting([pool.fixture.pid])
        #expect(workers.count >= 4, "\(python): recorded \(recorded.pids.sorted()); \(result.stderr)")
        #expect(recorded.delays.count >= 2, "\(python): \(result.stderr)")
        #expect(recorded.delays.allSatisfy { $0 < 1.0 }, "\(python): found after \(recorded.delays) s")
        let ended = result.stderr.split(separator: "\n").filter { $0.contains(" ended after ") && $0.contains("reported what was collected") }
        #expect(ended.count >= 2, "\(python): \(result.stderr)")

        // One file per process, named by pid; every worker that ran a task has its own.
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".pb.gz") }.sorted()
        #expect(files.contains("p.\(pool.fixture.pid).pb.gz"), "\(python): \(files)")
        for pid in workers { #expect(files.contains("p.\(pid).pb.gz"), "\(python): no file for worker \(pid): \(files)") }

        // The root's profile spans the recording: the ground truth is the tasks' CPU within it.
        let root = try RawPprof(files: [folder + "/p.\(pool.fixture.pid).pb.gz"])
        let from = try #require(root.start)
        let until = from + (try RawPprof.duration(of: folder + "/p.\(pool.fixture.pid).pb.gz"))
        let truth = tasks.reduce(0) { $0 + $1.cpu(from: from, until: until) }
        let workerFiles = workers.map { folder + "/p.\($0).pb.gz" }.filter { FileManager.default.fileExists(atPath: $0) }
        let all = try RawPprof(files: workerFiles)
        let measured = try Self.computeSeconds(all)
        print("\(python): \(workers.count) workers, found after \(recorded.delays.map { String(format: "%.2f", $0) }) s; "
              + "compute CPU \(String(format: "%.2f", measured)) s profiled vs \(String(format: "%.2f", truth)) s measured by the workers")
        #expect(truth > 1.0, "\(python): the workers computed only \(truth) s")
        #expect(abs(measured - truth) <= 0.15 * truth + 0.25, "\(python): \(measured) s vs \(truth) s")

        // Each worker had its own agent: the allocation line has bytes in the workers' profiles.
        let marks = try markers(in: Self.pool)
        let allocated = all.byLine("alloc_space", in: Self.pool)["\(Self.pool):\(try #require(marks["allocate"]))"] ?? 0
        #expect(allocated > 0, "\(python): no allocation recorded in the workers; \(result.stderr)")
    }

    /// --merge is tested on a few interpreters: the merging is the same code on each.
    static var mergeInterpreters: [Interpreter] {
        let picks = [8, 12, 14].compactMap { minor in Interpreters.installed.first { $0.minor == minor } }
        return picks.isEmpty ? Array(Interpreters.installed.prefix(1)) : picks
    }

    @Test("--merge: one profile, the sum of every process; delta snapshots add up to the workers' CPU",
          arguments: mergeInterpreters)
    func merged(python: Interpreter) throws {
        let folder = NSTemporaryDirectory() + "scalene-family-merge-\(getpid())-\(python.minor)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let pool = try Pool(python: python)
        usleep(300_000)
        let result = try runTool(["--pid", "\(pool.fixture.pid)", "--subprocesses", "--merge", "--duration", "6", "--quiet",
                                  "--cpu-only", "--format", "pprof", "--output", folder + "/m.pb.gz",
                                  "--snapshot-interval", "1", "--snapshot-mode", "delta", "--snapshot-keep", "100"],
                                 timeout: 90)
        let recorded = Self.recorded(result.stderr)
        let tasks = Task.parse(pool.stop())
        #expect(result.status == 0, "\(python): \(result.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("m.") }.sorted()
        // One file per snapshot (about six) and the final interval: never one per process.
        #expect(files.count >= 4 && files.count <= 9, "\(python): \(files)")
        let paths = files.map { folder + "/" + $0 }
        let first = try RawPprof(files: [paths[0]])
        let last = try RawPprof(files: [paths[paths.count - 1]])
        let from = try #require(first.start)
        let until = try #require(last.start) + (try RawPprof.duration(of: paths[paths.count - 1]))
        let truth = tasks.reduce(0) { $0 + $1.cpu(from: from, until: until) }
        let measured = try Self.computeSeconds(try RawPprof(files: paths))
        print("\(python): merged \(files.count) delta snapshots of \(recorded.pids.count) processes: compute CPU "
              + "\(String(format: "%.2f", measured)) s vs \(String(format: "%.2f", truth)) s measured by the workers")
        #expect(truth > 1.0, "\(python): the workers computed only \(truth) s")
        #expect(abs(measured - truth) <= 0.15 * truth + 0.25, "\(python): \(measured) s vs \(truth) s")
        // The sum is described as the root process, whatever order the processes ended in.
        let top = try RawPprof.goTool(["-raw", paths[paths.count - 1]])
        #expect(top.contains("pid \(pool.fixture.pid)"), "\(python): \(top.prefix(300))")
    }

    @Test("--push with --merge: the family's intervals, one series labelled with the root's pid, tile the run and sum to the merged profile")
    func mergedPush() throws {
        let python = Self.mergeInterpreters[Self.mergeInterpreters.count / 2]
        let server = try RecordingServer()
        let directory = try TemporaryDirectory()
        let pool = try Pool(python: python)
        usleep(300_000)
        let whole = directory.file("whole.pb.gz")
        let result = try runTool(["--pid", "\(pool.fixture.pid)", "--subprocesses", "--merge", "--duration", "5", "--quiet",
                                  "--cpu-only", "--include-idle", "--push", server.url, "--snapshot-interval", "1",
                                  "--push-spool", directory.file("spool"), "--format", "pprof", "--output", whole], timeout: 90)
        _ = pool.stop()
        try #require(result.status == 0, "\(python): \(result.stderr)")
        #expect(!result.stderr.contains("push:"), "no push failure: \(result.stderr)")
        let requests = try server.requests()
        #expect((4...7).contains(requests.count), "\(python): \(requests.count) pushes")
        for request in requests {
            #expect(request.query["name"]?.contains("pid=\(pool.fixture.pid)") == true, "\(request.query)")
        }
        for (previous, next) in zip(requests, requests.dropFirst()) {
            #expect(next.from == previous.until, "\(python): \(previous.from)..\(previous.until) then \(next.from)..\(next.until)")
        }
        let pushed = try RawPprof(files: requests.map(\.profile))
        let merged = try RawPprof(files: [whole])
        print("\(python): \(requests.count) family pushes, \(pushed.total("samples")) samples vs \(merged.total("samples")) in the merged profile")
        #expect(pushed.total("samples") == merged.total("samples"), "\(pushed.total("samples")) vs \(merged.total("samples"))")
        let wall = Double(merged.total("wall"))
        #expect(abs(Double(pushed.total("wall")) - wall) <= 0.001 * wall, "\(pushed.total("wall")) vs \(wall)")
    }
}
