import Profiler
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// The terminal report, modelled on Scalene's: per file a header, then per line
/// `Line │ Python │ native │ system │ [Mem Py │ peak │ timeline │ Copy MB/s │] source`,
/// then per-function summaries. Rows are cut to `width` columns; the source column gets what the
/// fixed columns leave.
public struct TableReport {
    /// Which source lines are printed.
    public enum Detail: Sendable, Equatable {
        /// Lines with at least 1% of the time or 1 MB allocated or copied (Scalene's reduced view).
        case reduced
        /// Lines with any data, with `contextLines` of source around them (the default).
        case withData
        /// Every line of every profiled file.
        case full
    }

    public var profile: Profile
    public var sources: SourceFiles
    public var detail: Detail = .withData
    /// Add a per-thread breakdown.
    public var perThread = false
    /// Columns available (the terminal's width, or 120 when not writing to a terminal).
    public var width = 120
    /// Source lines shown before and after each line with data (`.withData`).
    public static let contextLines = 1

    public init(profile: Profile, sources: SourceFiles, detail: Detail = .withData, perThread: Bool = false,
                width: Int = 120) {
        self.profile = profile
        self.sources = sources
        self.detail = detail
        self.perThread = perThread
        self.width = max(40, width)
    }

    var hasMemory: Bool { profile.memory != nil }

    /// A GIL wait column, when some thread waited for the GIL.
    var hasGILWait: Bool { profile.totalTime.total > 0 && profile.totalTime.gilWait / profile.totalTime.total >= 0.0005 }

    /// Native functions shown under a line (with --native): at most this many, for lines whose
    /// native time is at least 1% of all time.
    static let nativeFunctionsPerLine = 3

    public func render() -> String {
        var out = header()
        let total = profile.totalTime.total
        let lines = profile.lines
        let functions = profile.functions
        let memoryLines = profile.memory?.lines ?? [:]
        for file in profile.files {
            let fileLines = lines.filter { $0.key.file == file }
            let fileTime = fileLines.values.reduce(0.0) { $0 + $1.time.total }
            let fileMemory = memoryLines.filter { $0.key.file == file }
            out += "\n" + clip("\(file): \(percent(fileTime, of: total)) of time (\(seconds(fileTime)) of \(seconds(total)))") + "\n"
            out += columnHeader(last: "source") + "\n"
            let source = sources.lines(of: file)
            let numbers = Set(fileLines.keys.map(\.line)).union(fileMemory.keys.map(\.line))
            let candidates = SourceFiles.lineNumbers(sourceCount: source.count, withData: numbers)
            let shown = Self.shownLines(candidates, detail: detail) { number in
                let key = SourceLine(file: file, line: number)
                return detail == .reduced ? isSignificant(fileLines[key], fileMemory[key], total: total)
                    : hasData(fileLines[key], fileMemory[key], total: total)
            }
            var previous = 0
            for number in shown {
                if number > previous + 1 { out += "  ...\n" }
                previous = number
                let key = SourceLine(file: file, line: number)
                let text = number <= source.count ? source[number - 1] : ""
                let time = fileLines[key]
                out += row(label: String(number), time: time?.time, memory: fileMemory[key], total: total,
                           text: text) + "\n"
                if let time, total > 0, time.time.native / total >= 0.01, time.nativeSamples > 0 {
                    out += nativeRow(time) + "\n"
                }
            }
            if let last = shown.last, last < (candidates.last ?? 0) { out += "  ...\n" }
            if shown.isEmpty { out += "  (no line with data)\n" }
            let fileFunctions = functions.filter { $0.key.file == file }.sorted { $0.key < $1.key }
            let functionMemory = profile.memory?.functions ?? [:]
            if !fileFunctions.isEmpty {
                out += "\n" + columnHeader(last: "function summary") + "\n"
                for (function, time) in fileFunctions where detail != .reduced || time.total / max(total, 1e-12) >= 0.01 {
                    out += row(label: String(function.firstLine), time: time, memory: functionMemory[function], total: total,
                               text: function.name) + "\n"
                }
            }
            if let leaks = profile.memory?.leaks.filter({ $0.line.file == file }), !leaks.isEmpty {
                for leak in leaks {
                    out += clip(String(printf: "Possible memory leak: line %d (likelihood %.0f%%, velocity %.2f MB/s)",
                                       leak.line.line, leak.likelihood * 100, leak.velocityMBPerSecond)) + "\n"
                }
            }
        }
        if perThread { out += threadBreakdown(total: total) }
        out += footer(total: total)
        return out
    }

    func header() -> String {
        var lines = [String]()
        lines.append(clip("scalene-attach: pid \(profile.pid) · Python \(profile.pythonVersion) · \(Self.commandLine(profile))"))
        let stats = profile.statistics
        let rate = profile.elapsed > 0 ? Double(stats.ticks) / profile.elapsed : 0
        if profile.processCount > 1 {
            lines.append(clip(String(printf: "%.2f s profiled · %d samples of %d processes, summed (requested %.0f Hz each)",
                                     profile.elapsed, stats.ticks, profile.processCount, stats.requestedRate)))
        } else {
            lines.append(clip(String(printf: "%.2f s profiled · %d samples at %.1f Hz (requested %.0f Hz)", profile.elapsed,
                                     stats.ticks, rate, stats.requestedRate)))
        }
        switch profile.classification {
        case .opcodeAndGIL:
            lines.append(contentsOf: wrap("Python/native: by the innermost instruction (call) and the GIL (--native samples the CPU itself)"))
        case .instructionPointer(let method):
            var text = "Python/native: by where the CPU was (native stack samples, \(method.rawValue))"
            if let native = profile.native {
                let intervals = native.sampledIntervals + native.carriedIntervals + native.opcodeRuleIntervals
                if intervals > 0 {
                    text += String(printf: "; %.0f%% of intervals sampled, %.0f%% carried, %.0f%% by the opcode rule",
                                   100 * Double(native.sampledIntervals) / Double(intervals),
                                   100 * Double(native.carriedIntervals) / Double(intervals),
                                   100 * Double(native.opcodeRuleIntervals) / Double(intervals))
                }
            }
            lines.append(contentsOf: wrap(text))
        }
        if let memory = profile.memory {
            lines.append(contentsOf: wrap(Self.memorySummary(memory, targetExited: profile.end == .targetExited)))
        }
        switch profile.end {
        case .targetExited: lines.append("the process exited; this is what was collected until then")
        default: break
        }
        if let reason = profile.emptyReason { lines.append(contentsOf: wrap("NOTHING WAS ATTRIBUTED: " + reason)) }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The target's command line as a person typed it: the interpreter by its name, then the
    /// arguments; the main script when argv could not be read.
    public static func commandLine(_ profile: Profile) -> String {
        guard let first = profile.arguments.first else { return profile.program ?? "(command line unknown)" }
        let interpreter = first.split(separator: "/").last.map(String.init) ?? first
        return ([interpreter] + profile.arguments.dropFirst()).map(quoted).joined(separator: " ")
    }

    static func quoted(_ argument: String) -> String {
        if !argument.isEmpty && argument.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }) {
            return argument
        }
        return "'" + argument.replacingAll("'", with: "'\\''") + "'"
    }

    /// One line on memory: the peak and where it was reached, what was allocated and by whom, and
    /// what the process holds now.
    ///
    /// The footprint is what the target's allocators hold (malloc's bytes in use plus pymalloc's
    /// arenas), memory allocated before the attach included, so it is never negative; its change
    /// over the profile is signed. When the process began exiting while profiled, its teardown frees
    /// everything: the line says so, and that frees from then on did not count against leaks.
    public static func memorySummary(_ memory: MemoryProfile, targetExited: Bool = false) -> String {
        var text = String(printf: "memory: peak %.1f MB", memory.peakFootprintMB)
        if let peak = memory.peakLine {
            text += " at \(peak.file.split(separator: "/").last.map(String.init) ?? peak.file):\(peak.line)"
        }
        let python = memory.totalAllocatedMB > 0
            ? 100 * memory.lines.values.reduce(0) { $0 + $1.pythonMB } / memory.totalAllocatedMB : 0
        text += String(printf: " · %.1f MB allocated (%.0f%% Python)", memory.totalAllocatedMB, python)
        let change = memory.footprintChangeMB
        text += String(printf: " · holds %.1f MB (", max(0, memory.currentFootprintMB))
            + (change >= 0.05 ? "+" : change <= -0.05 ? "−" : "±") + String(printf: "%.1f MB while profiled)", Swift.abs(change))
        if let exited = memory.exitedAfterSeconds {
            text += String(printf: " · began exiting at %.1f s: its teardown's frees do not clear leaks", exited)
        } else if targetExited {
            text += " · exited"
        }
        return text
    }

    /// The line numbers to print, in order, for a file of `count` lines.
    /// Which of `candidates` (a file's line numbers, ascending: see `SourceFiles.lineNumbers`) a
    /// table shows.
    static func shownLines(_ candidates: [Int], detail: Detail, hasData: (Int) -> Bool) -> [Int] {
        switch detail {
        case .full: return candidates
        case .reduced: return candidates.filter(hasData)
        case .withData:
            var shown = [Int]()
            for (index, number) in candidates.enumerated() where hasData(number) {
                // A little context around each line with data: neighbours that are real lines.
                let low = max(0, index - contextLines), high = min(candidates.count - 1, index + contextLines)
                for near in candidates[low...high] where abs(near - number) <= contextLines { shown.append(near) }
            }
            return Array(Set(shown)).sorted()
        }
    }

    func columnHeader(last: String) -> String {
        var text = " Line │ Python │ native │ system │"
        if hasGILWait { text += "    GIL │" }
        if hasMemory { text += " Mem Py │   peak │ timeline     │ Copy MB/s │" }
        return clip(text + " " + last)
    }

    func row(label: String, time: TimeSplit?, memory: MemoryLine?, total: Double, text: String) -> String {
        var out = pad(label, 5) + " │"
        out += pad(cell(time?.python, total), 7) + " │"
        out += pad(cell(time?.native, total), 7) + " │"
        out += pad(cell(time?.system, total), 7) + " │"
        if hasGILWait { out += pad(cell(time?.gilWait, total), 7) + " │" }
        if hasMemory {
            if let memory, memory.allocatedMB > 0 || memory.peakMB > 0 || memory.copiedMB > 0 {
                out += pad(memory.allocatedMB > 0 ? String(printf: "%.0f%%", memory.pythonFraction * 100) : "", 7) + " │"
                out += pad(memory.peakMB >= 0.05 ? megabytes(memory.peakMB) : "", 7) + " │"
                let spark = Sparkline.render(memory.timeline.map(\.megabytes), width: 8)
                let share = (profile.memory?.totalAllocatedMB ?? 0) > 0
                    ? String(printf: "%3.0f%%", 100 * memory.allocatedMB / (profile.memory?.totalAllocatedMB ?? 1)) : ""
                out += " " + padRight(spark, 8) + " " + pad(share, 4) + " │"
                let rate = profile.elapsed > 0 ? memory.copiedMB / profile.elapsed : 0
                out += pad(rate >= 0.005 ? String(printf: "%.2f", rate) : "", 10) + " │"
            } else {
                out += "        │        │              │           │"
            }
        }
        return clip(out + " " + TextWidth.printable(text))
    }

    /// Whether any cell of the row would show something.
    func hasData(_ time: LineTime?, _ memory: MemoryLine?, total: Double) -> Bool {
        if let time, total > 0, time.time.total / total >= 0.0005 { return true }
        if let memory, memory.allocatedMB > 0 || memory.peakMB >= 0.05 || memory.copiedMB > 0 { return true }
        return false
    }

    /// The hottest native functions of a line, with their share of its native samples, under the
    /// source column.
    func nativeRow(_ time: LineTime) -> String {
        var out = "      │        │        │        │"
        if hasGILWait { out += "        │" }
        if hasMemory { out += "        │        │              │           │" }
        let functions = time.hottestNative(Self.nativeFunctionsPerLine).map {
            $0.function.description + String(printf: " %.0f%%", 100 * $0.share)
        }
        return clip(out + " ↳ native: " + functions.joined(separator: " · "))
    }

    func isSignificant(_ time: LineTime?, _ memory: MemoryLine?, total: Double) -> Bool {
        if let time, total > 0, time.time.total / total >= 0.01 { return true }
        if let memory, memory.allocatedMB >= 1 || memory.copiedMB >= 1 { return true }
        return false
    }

    func threadBreakdown(total: Double) -> String {
        var out = "\nthreads\n"
        out += "   tid │ Python │ native │ system │ GIL wait │  GIL │ name\n"
        for thread in profile.threads.sorted(by: { ($0.tid ?? 0) < ($1.tid ?? 0) }) {
            let time = thread.total
            let gil = thread.samples > 0 ? Double(thread.gilSamples) / Double(thread.samples) : 0
            var name = thread.name ?? ""
            if let own = thread.namespaceTID, own != thread.tid { name += " [tid \(own) in the namespace]" }
            if thread.isIdle { name += profile.includeIdle ? " (idle)" : " (idle, not in the totals)" }
            out += pad(thread.tid.map(String.init) ?? "?", 6) + " │" + pad(cell(time.python, total), 7) + " │"
                + pad(cell(time.native, total), 7) + " │" + pad(cell(time.system, total), 7) + " │"
                + pad(cell(time.gilWait, total), 9) + " │"
                + pad(String(printf: "%.0f%%", gil * 100), 5) + " │ " + name + "\n"
        }
        return out
    }

    func footer(total: Double) -> String {
        var notes = [String]()
        let outside = profile.outside.total
        if total > 0 && outside / total >= 0.001 {
            notes.append("\(percent(outside, of: total)) of the time was outside profiled files"
                         + (profile.filter.profileAll ? "" : " (--profile-all includes libraries)"))
        }
        let idle = profile.idleThreads.count
        if idle > 0 { notes.append("\(idle) thread(s) blocked for the whole run are not counted (--include-idle)") }
        let stats = profile.statistics
        if stats.lateTicks > 0 { notes.append("\(stats.lateTicks) late tick(s) (the sampler could not keep the rate)") }
        if stats.threadSamples > 0 {
            notes.append(String(printf: "%d of %d thread samples unreadable (%.2f%%): stacks that changed while read",
                                stats.unreadableSamples, stats.threadSamples, 100 * stats.unreadableShare))
        }
        if stats.unmappedThreadSamples > 0 {
            notes.append("\(stats.unmappedThreadSamples) thread sample(s) of threads that could not be matched to a kernel "
                         + "thread were not measured")
        }
        if stats.failedTicks > 0 {
            notes.append("\(stats.failedTicks) tick(s) could not read the thread list (it changed while read)")
        }
        if let agent = profile.memory?.agent, agent.droppedSamples > 0 {
            notes.append("\(agent.droppedSamples) memory sample(s) dropped (ring full)")
        }
        if let ended = profile.memory?.agent.endedEarly {
            notes.append("memory recording stopped early: the agent removed itself (\(ended))")
        }
        return notes.isEmpty ? "" : "\n" + notes.map { clip($0) }.joined(separator: "\n") + "\n"
    }

    // MARK: formatting

    func cell(_ value: Double?, _ total: Double) -> String {
        guard let value, total > 0 else { return "" }
        let share = value / total * 100
        return share >= 0.05 ? String(printf: "%.1f%%", share) : ""
    }

    func percent(_ value: Double, of total: Double) -> String {
        total > 0 ? String(printf: "%.1f%%", value / total * 100) : "0.0%"
    }

    func seconds(_ value: Double) -> String { String(printf: "%.2f s", value) }

    func megabytes(_ value: Double) -> String {
        value >= 100 ? String(printf: "%.0fM", value) : String(printf: "%.1fM", value)
    }

    func shortName(_ path: String) -> String { path.split(separator: "/").last.map(String.init) ?? path }

    func pad(_ text: String, _ width: Int) -> String { TextWidth.padLeft(text, width) }

    func padRight(_ text: String, _ width: Int) -> String { TextWidth.padRight(text, width) }

    func clip(_ text: String) -> String { TextWidth.clip(text, to: width) }

    /// A sentence the reader needs whole (how attribution was made, why nothing was attributed)
    /// broken at spaces into lines of the width, continuation lines indented.
    func wrap(_ text: String) -> [String] {
        var lines = [String]()
        var current = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            let candidate = current.isEmpty ? String(word) : current + " " + word
            if TextWidth.of(candidate) > width, !current.trimmingWhitespace().isEmpty {
                lines.append(current)
                current = "  " + word
            } else {
                current = candidate
            }
        }
        if !current.isEmpty { lines.append(current) }
        return lines.map(clip)
    }
}
