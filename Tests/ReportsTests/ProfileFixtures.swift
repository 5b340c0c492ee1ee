import CPythonLayouts
import Foundation
import Profiler
import Reports

/// Profiles built in memory for the report writers' pure parts. They are inputs to formatting,
/// not measurements: the integration tests check reports of real profiles.
enum ProfileFixtures {
    /// A source file on disk with `lines` lines ("x = N" each), removed by the caller.
    static func sourceFile(lines: Int, name: String = "app.py") throws -> String {
        let directory = NSTemporaryDirectory() + "scalene-attach-reports-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/" + name
        try (1...lines).map { "x\($0) = \($0)  # some text to make the line long enough to be cut somewhere" }
            .joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func line(_ python: Double, _ native: Double = 0, _ system: Double = 0, function: FunctionID? = nil) -> LineTime {
        var time = LineTime()
        time.time = TimeSplit(python: python, native: native, system: system)
        time.cpu = python + native
        time.samples = 10
        time.function = function
        return time
    }

    /// One thread with time on the given lines (seconds), and optional memory.
    static func profile(file: String, lines: [Int: LineTime], outside: Double = 0, memory: MemoryProfile? = nil,
                        arguments: [String] = ["/usr/bin/python3", "app.py", "--port", "80"],
                        end: ProfileEnd = .durationElapsed) -> Profile {
        var thread = ThreadProfile(tid: 100, name: "MainThread")
        thread.samples = 100
        thread.runningSamples = 100
        thread.wallSeconds = 10
        thread.cpuSeconds = 5
        for (number, time) in lines {
            thread.lines[SourceLine(file: file, line: number)] = time
            if let function = time.function { thread.functions[function, default: .zero] += time.time }
        }
        thread.outside = TimeSplit(python: outside)
        var stats = SamplerStatistics()
        stats.requestedRate = 100
        stats.ticks = 1000
        return Profile(pid: 4242, pythonVersion: PythonVersion(major: 3, minor: 11, micro: 7), arguments: arguments,
                       program: file, startEpoch: 1_800_000_000, startMonotonic: 1000, elapsed: 10, threads: [thread],
                       filter: FileFilter(), includeIdle: false, statistics: stats, end: end, memory: memory)
    }
}
