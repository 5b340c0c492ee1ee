import Profiler
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// One self-contained HTML file: the profile's data, the script that draws it and its style are
/// all inline, and the page's Content-Security-Policy forbids every request (no fonts, images,
/// scripts or connections from anywhere), so it opens offline and can be mailed or attached to a
/// ticket. It shows the run's facts, the hottest lines, per file the per-line table (time bars,
/// memory columns, a sparkline per line, the source), a zoomable and searchable icicle of the
/// sampled stacks coloured by Python / native / system, the memory footprint over time with its
/// peak, and the threads.
///
/// It is made from the Scalene JSON document (`SavedProfile`), so `--html` while profiling and
/// `scalene-attach view saved.json --html` give the same page. What is embedded is bounded
/// (`Limits`), whatever the length of the run: a 10-minute profile stays a few hundred KB.
public struct HTMLReport {
    /// Bounds on the embedded data.
    public struct Limits: Sendable {
        /// Lines with data shown in the per-file tables (the hottest ones when there are more).
        public var dataLines = 4000
        /// Source lines shown around each line with data.
        public var contextLines = 2
        public var functions = 3000
        public var stacks = 2000
        /// Distinct frames over all embedded stacks, and frames per stack (outermost kept).
        public var frames = 12_000
        public var stackDepth = 128
        public var threads = 500
        /// Characters of source text per line.
        public var sourceCharacters = 200
        /// Points per memory sparkline and bins per CPU-activity sparkline.
        public var sparkPoints = 24

        public init() {}
    }

    public var profile: SavedProfile
    public var limits = Limits()

    public init(profile: SavedProfile, limits: Limits = Limits()) {
        self.profile = profile
        self.limits = limits
    }

    /// The report of a profile being recorded: through the same JSON document `--json` writes.
    public init(profile: Profile, sources: SourceFiles, limits: Limits = Limits()) throws(SavedProfile.Invalid) {
        let document = ScaleneJSONReport(profile: profile, sources: sources).render()
        self.init(profile: try SavedProfile.decode(document), limits: limits)
    }

    public func render() -> [UInt8] {
        let data = JSONWriter.bytes(model())
        // Inside <script> only "</" could end the element early; "<" never appears outside a JSON
        // string, where "\u003c" means the same.
        let json = String(decoding: data, as: UTF8.self).replacingAll("<", with: "\\u003c")
        let title = Self.escapeHTML("scalene-attach · " + (programName ?? "profile")
                                    + (profile.scaleneAttach?.pid.map { " · pid \($0)" } ?? ""))
        let page = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <link rel="icon" href="data:,">
            <title>\(title)</title>
            <style>
            \(HTMLAssets.style)
            </style>
            </head>
            <body>
            <noscript>This report draws itself with JavaScript (inline, nothing is loaded from anywhere).</noscript>
            <script type="application/json" id="profile-data">\(json)</script>
            <script>
            \(HTMLAssets.script)
            </script>
            </body>
            </html>

            """
        return Array(page.utf8)
    }

    var programName: String? {
        guard let program = profile.program, !program.isEmpty else { return nil }
        return program.split(separator: "/").last.map(String.init) ?? program
    }

    static func escapeHTML(_ text: String) -> String {
        text.replacingAll("&", with: "&amp;").replacingAll("<", with: "&lt;")
            .replacingAll(">", with: "&gt;").replacingAll("\"", with: "&quot;")
    }

    /// Scalene's JSON escapes these in source lines; the page shows the text itself.
    static func unescapeSource(_ text: String) -> String {
        var text = text
        if text.hasSuffix("\n") { text.removeLast() }
        return text.replacingAll("\\u003c", with: "<").replacingAll("\\u003e", with: ">")
            .replacingAll("\\u0026", with: "&")
    }

    /// Rounded for the page: 4 significant digits are more than a bar or a percentage shows, and
    /// keep the embedded data small.
    static func round(_ value: Double) -> Double {
        guard value.isFinite, value != 0 else { return 0 }
        let magnitude = (log10(abs(value))).rounded(.down)
        let scale = pow(10, 3 - magnitude)
        return (value * scale).rounded() / scale
    }

    /// The embedded data (the page's script reads nothing else).
    public func model() -> [String: Any] {
        let extras = profile.scaleneAttach
        var model: [String: Any] = ["facts": facts(), "elapsed": Self.round(profile.elapsedTimeSec)]
        // Which data lines make the cut: the hottest by time, then by memory share.
        var candidates = [(file: String, line: Int, score: Double)]()
        for (name, file) in profile.files {
            for line in file.lines where line.totalPercent >= 0.01 || line.hasMemory {
                candidates.append((name, line.lineno, line.totalPercent + 100 * (line.nUsageFraction ?? 0)
                                   + (line.nCopyMbS ?? 0)))
            }
        }
        candidates.sort { $0.score > $1.score || ($0.score == $1.score && ($0.file, $0.line) < ($1.file, $1.line)) }
        var kept = [String: Set<Int>]()
        for candidate in candidates.prefix(limits.dataLines) { kept[candidate.file, default: []].insert(candidate.line) }
        let hottest = candidates.prefix(20)
        var files = [[String: Any]]()
        var functionBudget = limits.functions
        for (name, file) in profile.files.sorted(by: { $0.value.percentCpuTime > $1.value.percentCpuTime || ($0.value.percentCpuTime == $1.value.percentCpuTime && $0.key < $1.key) }) {
            let dataLines = kept[name] ?? []
            let functions = file.functions.filter { $0.totalPercent >= 0.01 || $0.hasMemory }
            guard !dataLines.isEmpty || !functions.isEmpty else { continue }
            var shown = Set<Int>()
            for number in dataLines {
                for near in (number - limits.contextLines)...(number + limits.contextLines) where near >= 1 { shown.insert(near) }
            }
            let rows = file.lines.filter { shown.contains($0.lineno) }.sorted { $0.lineno < $1.lineno }.map {
                row($0, source: true, data: dataLines.contains($0.lineno))
            }
            let sortedFunctions = functions.sorted { $0.totalPercent > $1.totalPercent }.prefix(max(0, functionBudget))
            functionBudget -= sortedFunctions.count
            files.append([
                "name": name,
                "percent": Self.round(file.percentCpuTime),
                "lines": rows,
                "functions": sortedFunctions.map { row($0, source: false, data: true) },
                "leaks": (file.leaks ?? [:]).compactMap { key, leak -> [Double]? in
                    Int(key).map { [Double($0), Self.round(leak.likelihood), Self.round(leak.velocityMbS)] }
                }.sorted { $0[0] < $1[0] },
                "omitted": file.lines.filter { $0.totalPercent >= 0.01 || $0.hasMemory }.count - dataLines.count,
            ])
        }
        model["files"] = files
        model["hot"] = hottest.map { [$0.file, $0.line] as [Any] }
        model["stacks"] = stacks()
        model["memory"] = memory()
        model["threads"] = (extras?.threads ?? []).prefix(limits.threads).map { thread -> [String: Any] in
            [
                "tid": thread.tid as Any? ?? JSONNull(), "name": thread.name as Any? ?? JSONNull(),
                "idle": thread.idle ?? false, "python": Self.round(thread.pythonSeconds),
                "native": Self.round(thread.nativeSeconds), "system": Self.round(thread.systemSeconds),
                "gil": Self.round(thread.gilShare ?? 0),
            ]
        }
        return model
    }

    /// A line or function row: [line, Python %, native %, system %, MB allocated, Python share,
    /// peak MB, copy MB/s, text, CPU sparkline, memory sparkline, has data].
    func row(_ line: SavedProfile.Line, source: Bool, data: Bool) -> [Any] {
        var text = source ? Self.unescapeSource(line.line) : line.line
        if text.count > limits.sourceCharacters { text = String(text.prefix(limits.sourceCharacters)) + "…" }
        return [
            line.lineno, Self.round(line.nCpuPercentPython), Self.round(line.nCpuPercentC), Self.round(line.nSysPercent),
            Self.round(line.nMallocMb ?? 0), Self.round(line.nPythonFraction ?? 0), Self.round(line.nPeakMb ?? 0),
            Self.round(line.nCopyMbS ?? 0), text,
            data ? cpuSparkline(line.cpuSamplesList ?? []) : [Int](),
            data ? memorySparkline(line.memorySamples ?? []) : [Double](),
            data ? 1 : 0,
        ]
    }

    /// Samples per time bin over the run: when the line was busy.
    func cpuSparkline(_ times: [Double]) -> [Int] {
        guard !times.isEmpty, profile.elapsedTimeSec > 0 else { return [] }
        var bins = [Int](repeating: 0, count: limits.sparkPoints)
        for time in times where time.isFinite {
            let index = Int((max(0, time) / profile.elapsedTimeSec * Double(limits.sparkPoints)).rounded(.down))
            bins[min(limits.sparkPoints - 1, max(0, index))] += 1
        }
        return bins
    }

    /// The line's footprint over the run, thinned (each point the peak of its bucket).
    func memorySparkline(_ points: [[Double]]) -> [Double] {
        let values = points.compactMap { $0.count >= 2 ? $0[1] : nil }
        guard !values.isEmpty else { return [] }
        guard values.count > limits.sparkPoints else { return values.map(Self.round) }
        return (0..<limits.sparkPoints).map { bucket in
            let start = bucket * values.count / limits.sparkPoints
            let end = max(start + 1, (bucket + 1) * values.count / limits.sparkPoints)
            return Self.round(values[start..<end].max() ?? 0)
        }
    }

    /// Frames once each (their files once each), stacks as frame indices with their split
    /// (fractions of all time). Hottest stacks first, until `stacks` of them or `frames` distinct
    /// frames: a run with deep, rarely repeated stacks cannot make the page large.
    func stacks() -> [String: Any] {
        var frameIndex = [SavedProfile.Stack.Frame: Int]()
        var fileIndex = [String: Int]()
        var files = [String]()
        var frames = [[Any]]()
        var stacks = [[Any]]()
        let sorted = (profile.stacks ?? []).sorted { ($0.python + $0.native + $0.system) > ($1.python + $1.native + $1.system) }
        for stack in sorted {
            guard stacks.count < limits.stacks else { break }
            let kept = stack.frames.prefix(limits.stackDepth)
            let fresh = Set(kept.filter { frameIndex[$0] == nil })
            if frames.count + fresh.count > limits.frames { continue }
            let indices = kept.map { frame -> Int in
                if let index = frameIndex[frame] { return index }
                let file: Int
                if let known = fileIndex[frame.file] { file = known } else {
                    file = files.count
                    fileIndex[frame.file] = file
                    files.append(frame.file)
                }
                frameIndex[frame] = frames.count
                frames.append([frame.function, file, frame.line])
                return frames.count - 1
            }
            stacks.append([indices, Self.round(stack.python), Self.round(stack.native), Self.round(stack.system), stack.count])
        }
        return ["files": files, "frames": frames, "stacks": stacks, "omitted": max(0, sorted.count - stacks.count)]
    }

    func memory() -> [String: Any] {
        guard profile.memory == true else { return ["profiled": false] }
        let memory = profile.scaleneAttach?.memory
        return [
            "profiled": true,
            "footprint": (profile.samples ?? []).compactMap { $0.count >= 2 ? [Self.round($0[0] / 1e9), Self.round($0[1])] : nil },
            "peak": Self.round(profile.maxFootprintMb ?? 0),
            "peakFile": profile.maxFootprintFname as Any? ?? JSONNull(),
            "peakLine": profile.maxFootprintLineno as Any? ?? JSONNull(),
            "allocated": Self.round(memory?.totalAllocatedMb ?? 0),
            "copied": Self.round(memory?.copiedMb ?? 0),
            "final": Self.round(memory?.currentFootprintMb ?? 0),
        ]
    }

    /// The run's facts as label/value pairs, in display order.
    func facts() -> [[String]] {
        let extras = profile.scaleneAttach
        var facts = [[String]]()
        if let pid = extras?.pid { facts.append(["pid", String(pid)]) }
        if let version = extras?.pythonVersion { facts.append(["Python", version]) }
        if let command = extras?.commandLine, !command.isEmpty {
            facts.append(["command", command.joined(separator: " ")])
        } else if let program = profile.program, !program.isEmpty {
            facts.append(["program", ([program] + (profile.args ?? []).dropFirst()).joined(separator: " ")])
        }
        if let start = profile.startTimeAbsolute, start > 0 {
            var seconds = time_t(start)
            var parts = tm()
            gmtime_r(&seconds, &parts)
            facts.append(["started", String(printf: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                                            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))])
        }
        facts.append(["duration", String(printf: "%.2f s", profile.elapsedTimeSec)])
        if let sampler = extras?.sampler {
            let ticks = sampler.ticks ?? 0
            let rate = profile.elapsedTimeSec > 0 ? Double(ticks) / profile.elapsedTimeSec : 0
            facts.append(["samples", String(printf: "%d at %.1f Hz (requested %.0f Hz)", ticks, rate, sampler.requestedRateHz ?? 0)])
            facts.append(["late ticks", String(sampler.lateTicks ?? 0)])
            facts.append(["unreadable samples", String(sampler.failedTicks ?? 0)])
            facts.append(["incomplete stacks", String(sampler.incompleteStacks ?? 0)])
            if let cpu = sampler.samplerCpuSeconds { facts.append(["profiler CPU", String(printf: "%.2f s", cpu)]) }
        }
        if let memory = extras?.memory {
            facts.append(["memory samples", "\(memory.mallocSamples ?? 0) malloc, \(memory.freeSamples ?? 0) free, \(memory.copySamples ?? 0) copy"])
            facts.append(["dropped memory samples", String(memory.agent?.droppedSamples ?? 0)])
            if let window = memory.windowBytes { facts.append(["memory window", "\(window) bytes"]) }
            if let point = memory.agent?.safePoint, !point.isEmpty { facts.append(["agent loaded at", point]) }
        } else if profile.memory != true {
            facts.append(["memory", "not profiled"])
        }
        if let ended = extras?.ended { facts.append(["ended by", ended]) }
        return facts
    }
}
