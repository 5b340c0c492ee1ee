import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// A profile in Scalene's JSON format as written by `ScaleneJSONReport` (and, for the parts both
/// write, by Scalene itself), read back: what the HTML report is made from. Every field Scalene's
/// model does not require is optional, so a file from an older scalene-attach or from Scalene
/// itself still reads; what is missing is left out of the report.
public struct SavedProfile: Sendable {
    public struct Line: Sendable {
        public var line: String
        public var lineno: Int
        public var nCpuPercentPython: Double
        public var nCpuPercentC: Double
        public var nSysPercent: Double
        public var nMallocMb: Double?
        public var nPeakMb: Double?
        public var nPythonFraction: Double?
        public var nUsageFraction: Double?
        public var nCopyMbS: Double?
        public var cpuSamplesList: [Double]?
        public var memorySamples: [[Double]]?

        /// Percent of all time.
        public var totalPercent: Double { nCpuPercentPython + nCpuPercentC + nSysPercent }
        public var hasMemory: Bool { (nMallocMb ?? 0) > 0 || (nPeakMb ?? 0) >= 0.05 || (nCopyMbS ?? 0) > 0 }

        init(_ node: ProfileNode) throws(Invalid) {
            line = try node.required("line").string()
            lineno = try node.required("lineno").int()
            nCpuPercentPython = try node.required("n_cpu_percent_python").double()
            nCpuPercentC = try node.required("n_cpu_percent_c").double()
            nSysPercent = try node.required("n_sys_percent").double()
            nMallocMb = try node.optionalDouble("n_malloc_mb")
            nPeakMb = try node.optionalDouble("n_peak_mb")
            nPythonFraction = try node.optionalDouble("n_python_fraction")
            nUsageFraction = try node.optionalDouble("n_usage_fraction")
            nCopyMbS = try node.optionalDouble("n_copy_mb_s")
            cpuSamplesList = try node.optional("cpu_samples_list")?.doubles()
            memorySamples = nil
            if let list = try node.optional("memory_samples") {
                var samples = [[Double]]()
                for element in try list.elements() { samples.append(try element.doubles()) }
                memorySamples = samples
            }
        }
    }

    public struct Leak: Sendable {
        public var likelihood: Double
        public var velocityMbS: Double

        init(_ node: ProfileNode) throws(Invalid) {
            likelihood = try node.required("likelihood").double()
            velocityMbS = try node.required("velocity_mb_s").double()
        }
    }

    public struct File: Sendable {
        public var functions: [Line]
        public var lines: [Line]
        public var leaks: [String: Leak]?
        public var percentCpuTime: Double

        init(_ node: ProfileNode) throws(Invalid) {
            functions = []
            for element in try node.required("functions").elements() { functions.append(try Line(element)) }
            lines = []
            for element in try node.required("lines").elements() { lines.append(try Line(element)) }
            leaks = nil
            if let entries = try node.optional("leaks") {
                var leaks = [String: Leak]()
                for (name, leak) in try entries.entries() { leaks[name] = try Leak(leak) }
                self.leaks = leaks
            }
            percentCpuTime = try node.required("percent_cpu_time").double()
        }
    }

    /// One sampled stack: frames outermost first and its share of all time (fractions).
    public struct Stack: Sendable {
        public var frames: [Frame]
        public var count: Int
        public var python: Double
        public var native: Double
        public var system: Double

        public struct Frame: Hashable, Sendable {
            public var file: String
            public var function: String
            public var line: Int

            public init(file: String, function: String, line: Int) {
                self.file = file
                self.function = function
                self.line = line
            }
        }

        /// `[[frame, ...], {"count": N, "python_time": ..., "c_time": ..., "system_time": ...}]`.
        init(_ node: ProfileNode) throws(Invalid) {
            let parts = try node.elements()
            guard parts.count >= 2 else { throw node.mismatch() }
            frames = []
            for text in try parts[0].elements() { frames.append(Self.frame(try text.string())) }
            let stats = parts[1]
            count = try stats.optionalInt("count") ?? 0
            python = try stats.optionalDouble("python_time") ?? 0
            native = try stats.optionalDouble("c_time") ?? 0
            system = try stats.optionalDouble("system_time") ?? 0
        }

        /// "path/to/file.py function:12;" — the file may contain spaces, the function name and the
        /// line number do not.
        public static func frame(_ text: String) -> Frame {
            var text = Substring(text)
            if text.hasSuffix(";") { text = text.dropLast() }
            var line = 0
            if let colon = text.lastIndex(of: ":"), let number = Int(text[text.index(after: colon)...]) {
                line = number
                text = text[..<colon]
            }
            guard let space = text.lastIndex(of: " ") else { return Frame(file: "", function: String(text), line: line) }
            return Frame(file: String(text[..<space]), function: String(text[text.index(after: space)...]), line: line)
        }
    }

    /// What scalene-attach adds under "scalene_attach" (Scalene ignores it).
    public struct Extras: Sendable {
        public struct Sampler: Sendable {
            public var requestedRateHz: Double?
            public var ticks: Int?
            public var lateTicks: Int?
            public var failedTicks: Int?
            public var incompleteStacks: Int?
            public var samplerCpuSeconds: Double?

            init(_ node: ProfileNode) throws(Invalid) {
                requestedRateHz = try node.optionalDouble("requested_rate_hz")
                ticks = try node.optionalInt("ticks")
                lateTicks = try node.optionalInt("late_ticks")
                failedTicks = try node.optionalInt("failed_ticks")
                incompleteStacks = try node.optionalInt("incomplete_stacks")
                samplerCpuSeconds = try node.optionalDouble("sampler_cpu_seconds")
            }
        }

        public struct Thread: Sendable {
            public var tid: Int?
            public var name: String?
            public var idle: Bool?
            public var pythonSeconds: Double
            public var nativeSeconds: Double
            public var systemSeconds: Double
            public var gilShare: Double?

            init(_ node: ProfileNode) throws(Invalid) {
                tid = try node.optionalInt("tid")
                name = try node.optionalString("name")
                idle = try node.optionalBool("idle")
                pythonSeconds = try node.required("python_seconds").double()
                nativeSeconds = try node.required("native_seconds").double()
                systemSeconds = try node.required("system_seconds").double()
                gilShare = try node.optionalDouble("gil_share")
            }
        }

        public struct Memory: Sendable {
            public struct Agent: Sendable {
                public var safePoint: String?
                public var droppedSamples: Int?
                public var hookedSlots: Int?
                public var detachedCleanly: Bool?
                public var armedSeconds: Double?

                init(_ node: ProfileNode) throws(Invalid) {
                    safePoint = try node.optionalString("safe_point")
                    droppedSamples = try node.optionalInt("dropped_samples")
                    hookedSlots = try node.optionalInt("hooked_slots")
                    detachedCleanly = try node.optionalBool("detached_cleanly")
                    armedSeconds = try node.optionalDouble("armed_seconds")
                }
            }

            public var windowBytes: Int?
            public var mallocSamples: Int?
            public var freeSamples: Int?
            public var copySamples: Int?
            public var totalAllocatedMb: Double?
            public var copiedMb: Double?
            public var currentFootprintMb: Double?
            public var agent: Agent?

            init(_ node: ProfileNode) throws(Invalid) {
                windowBytes = try node.optionalInt("window_bytes")
                mallocSamples = try node.optionalInt("malloc_samples")
                freeSamples = try node.optionalInt("free_samples")
                copySamples = try node.optionalInt("copy_samples")
                totalAllocatedMb = try node.optionalDouble("total_allocated_mb")
                copiedMb = try node.optionalDouble("copied_mb")
                currentFootprintMb = try node.optionalDouble("current_footprint_mb")
                agent = nil
                if let agent = try node.optional("agent") { self.agent = try Agent(agent) }
            }
        }

        public var pid: Int?
        public var pythonVersion: String?
        public var commandLine: [String]?
        public var ended: String?
        public var sampler: Sampler?
        public var threads: [Thread]?
        public var memory: Memory?

        init(_ node: ProfileNode) throws(Invalid) {
            pid = try node.optionalInt("pid")
            pythonVersion = try node.optionalString("python_version")
            commandLine = try node.optionalStrings("command_line")
            ended = try node.optionalString("ended")
            sampler = nil
            if let sampler = try node.optional("sampler") { self.sampler = try Sampler(sampler) }
            threads = nil
            if let list = try node.optional("threads") {
                var threads = [Thread]()
                for element in try list.elements() { threads.append(try Thread(element)) }
                self.threads = threads
            }
            memory = nil
            if let memory = try node.optional("memory") { self.memory = try Memory(memory) }
        }
    }

    public var elapsedTimeSec: Double
    public var startTimeAbsolute: Double?
    public var program: String?
    public var args: [String]?
    public var files: [String: File]
    public var stacks: [Stack]?
    public var samples: [[Double]]?
    public var memory: Bool?
    public var maxFootprintMb: Double?
    public var maxFootprintFname: String?
    public var maxFootprintLineno: Int?
    public var scaleneAttach: Extras?

    /// Why a file is not a profile.
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads a profile from JSON text.
    public static func decode(_ bytes: [UInt8]) throws(Invalid) -> SavedProfile {
        let document: JSONValue
        do { document = try JSONParser.parse(bytes) } catch { throw Invalid(description: "not JSON") }
        return try SavedProfile(ProfileNode(document))
    }

    /// The document's members in the order of the properties (the first problem is the one told).
    init(_ node: ProfileNode) throws(Invalid) {
        elapsedTimeSec = try node.required("elapsed_time_sec").double()
        startTimeAbsolute = try node.optionalDouble("start_time_absolute")
        program = try node.optionalString("program")
        args = try node.optionalStrings("args")
        files = [:]
        for (name, file) in try node.required("files").entries() { files[name] = try File(file) }
        stacks = nil
        if let list = try node.optional("stacks") {
            var stacks = [Stack]()
            for element in try list.elements() { stacks.append(try Stack(element)) }
            self.stacks = stacks
        }
        samples = nil
        if let list = try node.optional("samples") {
            var samples = [[Double]]()
            for element in try list.elements() { samples.append(try element.doubles()) }
            self.samples = samples
        }
        memory = try node.optionalBool("memory")
        maxFootprintMb = try node.optionalDouble("max_footprint_mb")
        maxFootprintFname = try node.optionalString("max_footprint_fname")
        maxFootprintLineno = try node.optionalInt("max_footprint_lineno")
        scaleneAttach = nil
        if let extras = try node.optional("scalene_attach") { scaleneAttach = try Extras(extras) }
    }
}
