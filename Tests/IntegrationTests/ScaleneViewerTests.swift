import Foundation
import Testing

/// Our `--json` must be a profile Scalene itself accepts: its Pydantic model validates it and
/// `scalene view --cli` renders it. Uses the real `scalene` package from PyPI, installed by
/// `make test` into .venv-scalene.
@Suite("Scalene's own viewer reads our JSON")
struct ScaleneViewerTests {
    static var venvPython: String {
        ProcessInfo.processInfo.environment["SCALENE_VENV"].map { $0 + "/bin/python" }
            ?? Package.root + "/.venv-scalene/bin/python"
    }

    func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["COLUMNS"] = "160"
        environment["TERM"] = "dumb"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("ScaleneJSONSchema validates it and scalene view --cli renders it")
    func validatesAndRenders() throws {
        let python = Self.venvPython
        try #require(FileManager.default.isExecutableFile(atPath: python),
                     "scalene is not installed in .venv-scalene (make test installs it)")
        let interpreter = try #require(Interpreters.installed.first { $0.minor == 11 } ?? Interpreters.installed.first)
        let directory = try TemporaryDirectory()
        let json = directory.file("profile.json")
        let script = Package.fixture("cpu/phases.py")
        let fixture = try FixtureProcess(python: interpreter.path, script: script, arguments: [directory.file("log")])
        defer { fixture.kill() }
        let profile = try runTool(["--pid", String(fixture.pid), "--duration", "1.5", "--json", json, "--quiet"])
        #expect(profile.status == 0, "\(profile.stderr)")

        let validation = try run(python, ["-c", """
            import json, sys
            from scalene.scalene_json import ScaleneJSONSchema
            ScaleneJSONSchema.model_validate(json.load(open(sys.argv[1])))
            print("valid")
            """, json])
        #expect(validation.status == 0 && validation.output.contains("valid"), "\(validation.output)")

        let scalene = (python as NSString).deletingLastPathComponent + "/scalene"
        let view = try run(scalene, ["view", "--cli", json])
        #expect(view.status == 0, "\(view.output)")
        #expect(view.output.contains("phases.py"), "the file appears")
        #expect(view.output.contains("Memory") && view.output.contains("native"), "the column headers appear")
        // The hashing line's row carries our native share (Scalene narrows the source column to the
        // terminal width, so the row is found by its number).
        let native = try #require(try markers(in: script)["native"])
        let row = view.output.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("\(native) │") }
        #expect(row?.contains("%") == true, "row \(native): \(row ?? "missing")")
    }

    @Test("a --native profile (native functions per line, GIL wait, combined stacks) validates and renders")
    func nativeProfile() throws {
        let python = Self.venvPython
        try #require(FileManager.default.isExecutableFile(atPath: python),
                     "scalene is not installed in .venv-scalene (make test installs it)")
        let interpreter = try #require(Interpreters.installed.first { $0.minor == 11 } ?? Interpreters.installed.first)
        let directory = try TemporaryDirectory()
        let json = directory.file("native.json")
        let script = Package.fixture("native/classify.py")
        let fixture = try FixtureProcess(python: interpreter.path, script: script, arguments: [directory.file("log")],
                                         readyTimeout: 60)
        defer { fixture.kill() }
        let profile = try runTool(["--pid", String(fixture.pid), "--duration", "1.5", "--native", "--cpu-only",
                                   "--json", json, "--quiet"])
        #expect(profile.status == 0, "\(profile.stderr)")
        let validation = try run(python, ["-c", """
            import json, sys
            from scalene.scalene_json import ScaleneJSONSchema
            document = json.load(open(sys.argv[1]))
            ScaleneJSONSchema.model_validate(document)
            lines = [l for f in document["files"].values() for l in f["lines"]]
            assert any(l.get("native_functions") for l in lines), "no native_functions"
            assert all("n_gil_wait_percent" in l for l in lines)
            assert document["combined_stacks"], "no combined stacks"
            print("valid")
            """, json])
        #expect(validation.status == 0 && validation.output.contains("valid"), "\(validation.output)")
        let scalene = (python as NSString).deletingLastPathComponent + "/scalene"
        let view = try run(scalene, ["view", "--cli", json])
        #expect(view.status == 0, "\(view.output)")
        #expect(view.output.contains("classify.py"), "the file appears")
    }
}
