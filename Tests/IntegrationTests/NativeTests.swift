import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One statement of a --native fixture, as `fixtures/native/compare.py` reports it.
struct NativeStatement: Decodable {
    struct Function: Decodable {
        var function: String
        var object: String
        var share: Double
    }

    var lines: [Int]
    var truth_cpu: Double
    var truth_off: Double
    var truth_gil_wait: Double
    var python: Double
    var native: Double
    var system: Double
    var gil_wait: Double
    var native_fraction: Double?
    var native_functions: [Function]
}

/// Profiles a fixture under `fixtures/native/` and compares it with its truth log.
func profileNativeFixture(_ python: Interpreter, _ name: String, threads: Int = 1, options: [String]) throws
    -> (statements: [String: NativeStatement], raw: [String: Any], stdout: String)? {
    let directory = try TemporaryDirectory()
    let script = Package.fixture("native/\(name)")
    let log = directory.file("truth.log")
    let json = directory.file("profile.json")
    let fixture = try FixtureProcess(python: python.path, script: script, arguments: [log], readyTimeout: 60)
    defer { fixture.kill() }
    let result = try runTool(["--pid", String(fixture.pid), "--duration", "3", "--rate", "200", "--json", json,
                              "--quiet", "--cpu-only"] + options)
    #expect(result.status == 0, "stderr: \(result.stderr)")
    usleep(600_000)
    #expect(fixture.isRunningUnstopped, "the target runs on, not stopped")
    let compare = Process()
    compare.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    compare.arguments = ["python3", Package.fixture("native/compare.py"), json, log, script, String(threads)]
    let pipe = Pipe()
    compare.standardOutput = pipe
    try compare.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    compare.waitUntilExit()
    let raw = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    var statements = [String: NativeStatement]()
    for (key, value) in raw where !key.hasPrefix("_") {
        statements[key] = try JSONDecoder().decode(NativeStatement.self, from: JSONSerialization.data(withJSONObject: value))
    }
    return (statements, raw, result.stdout)
}

/// --native: CPU classified by where the sampled instruction pointer is, and GIL wait, against
/// fixtures that measure their own truth. In the CPU accuracy suite, so that these profiles never
/// compete with the other accuracy tests for the two cores.
extension CPUAccuracyTests {

    static func describeNative(_ statements: [String: NativeStatement]) -> String {
        statements.sorted { $0.key < $1.key }.map { name, s in
            String(format: "%@: native fraction %@, Python %.1f native %.1f (truth CPU %.1f), GIL wait %.1f (truth %.1f)",
                   name, s.native_fraction.map { String(format: "%.3f", $0) } ?? "-", s.python, s.native, s.truth_cpu,
                   s.gil_wait, s.truth_gil_wait)
        }.joined(separator: "; ")
    }

    @Test("native under non-CALL opcodes, Python under CALL, zlib's functions named (perf)", arguments: Interpreters.installed)
    func classification(python: Interpreter) throws {
        let profile = try #require(try profileNativeFixture(python, "classify.py", options: ["--native"]))
        let s = profile.statements
        print("\(python) classify.py --native: \(Self.describeNative(s))")
        #expect((profile.raw["_classification"] as? String)?.hasPrefix("instruction-pointer (perf)") == true,
                "\(profile.raw["_classification"] ?? "none")")
        for (name, native) in [("getter", true), ("operator", true), ("python-call", false), ("zlib", true)] {
            let statement = try #require(s[name], "\(name) measured")
            let fraction = try #require(statement.native_fraction, "\(name) has CPU time")
            if native { #expect(fraction >= 0.9, "\(name): native fraction \(fraction)") }
            else { #expect(fraction <= 0.1, "\(name): native fraction \(fraction)") }
            #expect(abs(statement.python + statement.native - statement.truth_cpu) <= Self.bound,
                    "\(name): CPU \(statement.python + statement.native) vs truth \(statement.truth_cpu)")
        }
        let zlib = try #require(s["zlib"])
        let top = try #require(zlib.native_functions.first, "native functions under the zlib line")
        #expect(top.function.contains("deflate") || top.function.contains("compress") || top.object.contains("libz"),
                "\(zlib.native_functions.map { "\($0.function) (\($0.object)) \($0.share)" })")
        let getter = try #require(s["getter"])
        #expect(getter.native_functions.first?.function == "slow_value", "\(getter.native_functions.map(\.function))")
        #expect(profile.stdout.contains("↳ native: "), "the table names native functions under native lines")
    }

    @Test("the ptrace fallback classifies the same, and says what stopping costs")
    func ptraceFallback() throws {
        let python = try #require(Interpreters.installed.first { $0.minor == 11 } ?? Interpreters.installed.first)
        let profile = try #require(try profileNativeFixture(python, "classify.py", options: ["--native", "--native-method", "ptrace"]))
        let s = profile.statements
        let native = try #require(profile.raw["_native"] as? [String: Any])
        print("\(python) classify.py --native-method ptrace: \(Self.describeNative(s)); stopped \(native["stopped_seconds"] ?? 0) s over \(native["samples"] ?? 0) samples")
        #expect(native["method"] as? String == "ptrace")
        #expect((native["samples"] as? Int ?? 0) > 50)
        for (name, isNative) in [("getter", true), ("operator", true), ("python-call", false), ("zlib", true)] {
            let fraction = try #require(s[name]?.native_fraction, "\(name) has CPU time")
            #expect(isNative ? fraction >= 0.9 : fraction <= 0.1, "\(name): native fraction \(fraction)")
        }
    }

    @Test("numpy arithmetic on large arrays is native", arguments: Interpreters.installed)
    func numpyArithmetic(python: Interpreter) throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: python.path)
        probe.arguments = ["-c", "import numpy"]
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        guard probe.terminationStatus == 0 else {
            print("\(python) numpy: skipped (numpy is not installed for this interpreter)")
            return
        }
        let profile = try #require(try profileNativeFixture(python, "numpy_add.py", options: ["--native"]))
        print("\(python) numpy_add.py --native: \(Self.describeNative(profile.statements))")
        let numpy = try #require(profile.statements["numpy"]?.native_fraction)
        let pure = try #require(profile.statements["python"]?.native_fraction)
        #expect(numpy >= 0.95, "numpy line native fraction \(numpy)")
        #expect(pure <= 0.1, "pure Python line native fraction \(pure)")
    }

    @Test("GIL wait per line, without --native", arguments: Interpreters.installed)
    func gilWait(python: Interpreter) throws {
        let profile = try #require(try profileNativeFixture(python, "gil.py", threads: 2, options: ["--threads"]))
        let waiter = try #require(profile.statements["waiter"])
        print("\(python) gil.py: waiter GIL wait \(String(format: "%.1f", waiter.gil_wait)) vs truth "
              + "\(String(format: "%.1f", waiter.truth_gil_wait)) points; system \(String(format: "%.1f", waiter.system))")
        #expect(waiter.truth_gil_wait > 5, "the fixture made its worker wait")
        #expect(abs(waiter.gil_wait - waiter.truth_gil_wait) <= 5, "GIL wait \(waiter.gil_wait) vs \(waiter.truth_gil_wait)")
        #expect(profile.stdout.contains("GIL wait"), "the --threads table has the column")
    }

}

/// --native stacks in dump, and the target never left stopped.
@Suite("Native stacks: dump and safety", .serialized)
struct NativeStackTests {
    @Test("dump --native: zlib's functions under the Python frame that called them", arguments: Interpreters.installed)
    func dumpNative(python: Interpreter) throws {
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("native/compress.py"))
        defer { fixture.kill() }
        var found = 0
        var last = ""
        for _ in 0..<5 {
            let result = try runTool(["dump", "--pid", String(fixture.pid), "--native", "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            last = result.stdout
            let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            let thread = (document?["threads"] as? [[String: Any]])?.first
            let frames = thread?["frames"] as? [[String: Any]] ?? []
            guard let handle = frames.firstIndex(where: { $0["qualname"] as? String == "handle" }) else { continue }
            let natives = frames[..<handle].filter { $0["kind"] as? String == "native" }
            if natives.contains(where: { ($0["function"] as? String ?? "").contains("deflate")
                || ($0["object"] as? String ?? "").contains("libz") }) { found += 1 }
        }
        #expect(found >= 3, "zlib frames under handle in \(found) of 5 dumps; last: \(last.prefix(2000))")
        #expect(fixture.isRunningUnstopped)
    }

    /// Every thread of `pid` runs on and has no tracer.
    static func untraced(_ pid: Int32) -> Bool {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return false }
        for task in tasks {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8) else { continue }
            for line in status.split(separator: "\n") {
                if line.hasPrefix("State:"), line.contains("t (tracing stop)") || line.contains("T (stopped)") { return false }
                if line.hasPrefix("TracerPid:"), line.split(separator: "\t").last != "0" { return false }
            }
        }
        return true
    }

    @Test("SIGKILL of the attacher during native sampling leaves no thread stopped", arguments: ["perf", "ptrace"])
    func sigkillDuringSampling(method: String) throws {
        let python = try #require(Interpreters.installed.first { $0.minor == 12 } ?? Interpreters.installed.first)
        let directory = try TemporaryDirectory()
        let log = directory.file("truth.log")
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("native/gil.py"), arguments: [log])
        defer { fixture.kill() }
        for round in 0..<5 {
            let tool = Process()
            tool.executableURL = URL(fileURLWithPath: Package.tool)
            tool.arguments = ["--pid", String(fixture.pid), "--native", "--native-method", method, "--rate", "2000",
                              "--cpu-only", "--quiet", "--output", "/dev/null"]
            try tool.run()
            // Kill at a different moment each round, mid-sampling.
            usleep(useconds_t(700_000 + round * 37_000))
            kill(tool.processIdentifier, SIGKILL)
            tool.waitUntilExit()
            usleep(50_000)
            #expect(Self.untraced(fixture.pid), "round \(round): a thread of the target is stopped or traced")
            #expect(fixture.isRunningUnstopped)
        }
        // The target still makes progress: its truth log keeps growing.
        let before = (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? Int) ?? 0
        usleep(1_000_000)
        let after = (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? Int) ?? 0
        #expect(after > before, "the target kept running (log \(before) → \(after) bytes)")
    }
}
