import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A profile in Scalene's JSON format as written by `ScaleneJSONReport` (and, for the parts both
/// write, by Scalene itself), read back: what the HTML report is made from. Every field Scalene's
/// model does not require is optional, so a file from an older scalene-attach or from Scalene
/// itself still reads; what is missing is left out of the report.
public struct SavedProfile: Decodable, Sendable {
    public struct Line: Decodable, Sendable {
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
    }

    public struct Leak: Decodable, Sendable {
        public var likelihood: Double
        public var velocityMbS: Double
    }

    public struct File: Decodable, Sendable {
        public var functions: [Line]
        public var lines: [Line]
        public var leaks: [String: Leak]?
        public var percentCpuTime: Double
    }

    /// One sampled stack: frames outermost first and its share of all time (fractions).
    public struct Stack: Decodable, Sendable {
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

        struct Stats: Decodable {
            var count: Int?
            var pythonTime: Double?
            var cTime: Double?
            var systemTime: Double?
        }

        public init(from decoder: Decoder) throws {
            var container = try decoder.unkeyedContainer()
            let texts = try container.decode([String].self)
            let stats = try container.decode(Stats.self)
            frames = texts.map(Self.frame)
            count = stats.count ?? 0
            python = stats.pythonTime ?? 0
            native = stats.cTime ?? 0
            system = stats.systemTime ?? 0
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
    public struct Extras: Decodable, Sendable {
        public struct Sampler: Decodable, Sendable {
            public var requestedRateHz: Double?
            public var ticks: Int?
            public var lateTicks: Int?
            public var failedTicks: Int?
            public var incompleteStacks: Int?
            public var samplerCpuSeconds: Double?
        }

        public struct Thread: Decodable, Sendable {
            public var tid: Int?
            public var name: String?
            public var idle: Bool?
            public var pythonSeconds: Double
            public var nativeSeconds: Double
            public var systemSeconds: Double
            public var gilShare: Double?
        }

        public struct Memory: Decodable, Sendable {
            public struct Agent: Decodable, Sendable {
                public var safePoint: String?
                public var droppedSamples: Int?
                public var hookedSlots: Int?
                public var detachedCleanly: Bool?
                public var armedSeconds: Double?
            }

            public var windowBytes: Int?
            public var mallocSamples: Int?
            public var freeSamples: Int?
            public var copySamples: Int?
            public var totalAllocatedMb: Double?
            public var copiedMb: Double?
            public var currentFootprintMb: Double?
            public var agent: Agent?
        }

        public var pid: Int?
        public var pythonVersion: String?
        public var commandLine: [String]?
        public var ended: String?
        public var sampler: Sampler?
        public var threads: [Thread]?
        public var memory: Memory?
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
    public static func decode(_ data: Data) throws(Invalid) -> SavedProfile {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(SavedProfile.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw Invalid(description: "not a Scalene JSON profile: no \"\(Self.path(context.codingPath + [key]))\"")
        } catch let DecodingError.typeMismatch(_, context) {
            throw Invalid(description: "not a Scalene JSON profile: unexpected value at \"\(Self.path(context.codingPath))\"")
        } catch let DecodingError.dataCorrupted(context) where context.codingPath.isEmpty {
            throw Invalid(description: "not JSON")
        } catch {
            throw Invalid(description: "not a Scalene JSON profile (\(error))")
        }
    }

    static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}
