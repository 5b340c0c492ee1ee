import CZlib
import Profiler
#if canImport(Glibc)
import Glibc
#endif

/// pprof's format: a gzip-compressed `profile.proto` (github.com/google/pprof), read by `go tool
/// pprof`, Grafana Pyroscope, Parca and most continuous-profiling servers.
///
/// Time is one sample per thread and flame-graph stack (innermost frame first), with the values
/// `samples` (count), `wall`, `python`, `native` and `system` (nanoseconds; wall = python + native +
/// system, Scalene's split of the thread's sampled time) and the string labels `thread_id`,
/// `thread_name`. Time a thread spent with
/// no stack recorded (no Python frame, or the stack table full) is one sample at the pseudo-frame
/// `[no Python stack]`, so the totals equal the table's. With the memory agent, each line with
/// memory is one sample at that line with `alloc_space` (bytes allocated there), `inuse_space`
/// (bytes of its sampled allocations still live at the snapshot) and `copy_space` (bytes copied);
/// what was allocated or copied outside profiled files is one sample at `[outside profiled files]`,
/// and allocations of threads without Python frames one at `[native threads]`.
public struct PprofReport {
    /// Which sample types a profile carries. Pyroscope names a pushed profile after its sample
    /// types, so pushes send time and memory as two profiles; a file holds both.
    public enum Part: Sendable, Hashable {
        case time, memory
    }

    public var profile: Profile
    public var parts: Set<Part>

    public init(profile: Profile, parts: Set<Part> = [.time, .memory]) {
        self.profile = profile
        self.parts = parts
    }

    /// Whether the profile has anything for this part (memory needs the agent).
    public static func has(_ part: Part, in profile: Profile) -> Bool {
        part == .time || profile.memory != nil
    }

    /// The gzip-compressed encoding.
    public func render() -> [UInt8] {
        let bytes = message().serializedBytes()
        return Gzip.compress(bytes)
    }

    /// Units of the time values.
    static let nanosecondsPerSecond = 1e9
    static let bytesPerMegabyte = 1024.0 * 1024.0

    func message() -> PprofMessages.Profile {
        var builder = Builder()
        var result = PprofMessages.Profile()
        let time = parts.contains(.time)
        let memory = parts.contains(.memory) ? profile.memory : nil
        var types: [(String, String)] = []
        if time {
            types += [("samples", "count"), ("wall", "nanoseconds"), ("python", "nanoseconds"),
                      ("native", "nanoseconds"), ("system", "nanoseconds")]
        }
        if memory != nil { types += [("alloc_space", "bytes"), ("inuse_space", "bytes"), ("copy_space", "bytes")] }
        result.sampleType = types.map { builder.valueType($0.0, $0.1) }
        let width = types.count
        let memoryOffset = time ? 5 : 0

        if time {
            let firstLines = Dictionary(profile.threads.flatMap { $0.functions.keys }.map { (FileAndName($0.file, $0.name), $0.firstLine) },
                                        uniquingKeysWith: min)
            for thread in profile.reportedThreads {
                var labels = [builder.label("thread_id", thread.tid.map(String.init) ?? "none")]
                if let name = thread.name { labels.append(builder.label("thread_name", name)) }
                var recorded = TimeSplit.zero
                var recordedSamples = 0
                // Sorted, so equal profiles encode to equal bytes.
                for (stack, value) in thread.stacks.sorted(by: { Self.order($0.key, $1.key) }) {
                    var sample = PprofMessages.Sample()
                    sample.locationID = stack.reversed().map { frame in
                        builder.location(function: frame.function, file: frame.file, line: frame.line,
                                         firstLine: frame.isNative ? 0 : firstLines[FileAndName(frame.file, frame.function)] ?? 0)
                    }
                    sample.value = Self.timeValues(value.time, samples: value.samples, width: width)
                    sample.label = labels
                    result.sample.append(sample)
                    recorded += value.time
                    recordedSamples += value.samples
                }
                var rest = thread.total
                rest.python = max(0, rest.python - recorded.python)
                rest.native = max(0, rest.native - recorded.native)
                rest.system = max(0, rest.system - recorded.system)
                if rest.total * Self.nanosecondsPerSecond >= 1000 {
                    var sample = PprofMessages.Sample()
                    sample.locationID = [builder.location(function: "[no Python stack]", file: "", line: 0, firstLine: 0)]
                    sample.value = Self.timeValues(rest, samples: max(0, thread.samples - recordedSamples), width: width)
                    sample.label = labels
                    result.sample.append(sample)
                }
            }
        }

        if let memory {
            func megabytes(_ value: Double) -> Int64 { Self.integer((max(0, value) * Self.bytesPerMegabyte)) }
            var sums = (allocated: 0.0, copied: 0.0)
            for (line, data) in memory.lines.sorted(by: { $0.key < $1.key }) {
                var sample = PprofMessages.Sample()
                let function = data.function?.name ?? "<module>"
                sample.locationID = [builder.location(function: function, file: line.file, line: line.line,
                                                      firstLine: data.function?.firstLine ?? 0)]
                var values = [Int64](repeating: 0, count: width)
                values[memoryOffset] = megabytes(data.allocatedMB)
                values[memoryOffset + 1] = megabytes(data.currentMB)
                values[memoryOffset + 2] = megabytes(data.copiedMB)
                sample.value = values
                result.sample.append(sample)
                sums.allocated += data.allocatedMB
                sums.copied += data.copiedMB
            }
            let native = memory.nativeBucketMB
            let outsideAllocated = memory.totalAllocatedMB - sums.allocated - native
            let outsideCopied = memory.copiedMB - sums.copied
            for (name, allocated, copied) in [("[native threads]", native, 0.0),
                                              ("[outside profiled files]", outsideAllocated, outsideCopied)]
            where megabytes(allocated) > 0 || megabytes(copied) > 0 {
                var sample = PprofMessages.Sample()
                sample.locationID = [builder.location(function: name, file: "", line: 0, firstLine: 0)]
                var values = [Int64](repeating: 0, count: width)
                values[memoryOffset] = megabytes(allocated)
                values[memoryOffset + 2] = megabytes(copied)
                sample.value = values
                result.sample.append(sample)
            }
        }

        var mapping = PprofMessages.Mapping()
        mapping.id = 1
        mapping.filename = builder.string(profile.arguments.first ?? "python")
        mapping.hasFunctions = true
        mapping.hasFilenames = true
        mapping.hasLineNumbers = true
        result.mapping = [mapping]
        result.location = builder.locations
        result.function = builder.functions
        result.timeNanos = Self.integer((max(0, profile.startEpoch) * Self.nanosecondsPerSecond))
        result.durationNanos = Self.integer((max(0, profile.elapsed) * Self.nanosecondsPerSecond))
        result.periodType = builder.valueType("wall", "nanoseconds")
        let rate = profile.statistics.requestedRate
        result.period = rate > 0 ? Self.integer((Self.nanosecondsPerSecond / rate)) : 0
        result.defaultSampleType = builder.string(time ? "wall" : "alloc_space")
        result.comment = ["scalene-attach", "pid \(profile.pid)", "Python \(profile.pythonVersion)",
                          profile.arguments.joined(separator: " ")].map { builder.string($0) }
        result.stringTable = builder.strings
        return result
    }

    /// A measured figure as an integer: rounded, NaN as 0, clamped to Int64's range (never traps).
    static func integer(_ value: Double) -> Int64 {
        guard value.isFinite else { return 0 }
        let rounded = value.rounded()
        if rounded >= 9.2e18 { return .max }
        if rounded <= -9.2e18 { return .min }
        return Int64(rounded)
    }

    static func timeValues(_ time: TimeSplit, samples: Int, width: Int) -> [Int64] {
        var values = [Int64](repeating: 0, count: width)
        func ns(_ seconds: Double) -> Int64 { integer((max(0, seconds) * nanosecondsPerSecond)) }
        values[0] = Int64(samples)
        values[2] = ns(time.python)
        values[3] = ns(time.native)
        values[4] = ns(time.system)
        // wall is the sum of the three as encoded, so every reader's totals agree exactly.
        values[1] = values[2] &+ values[3] &+ values[4]
        return values
    }

    /// A total order on stacks (outermost first), for a deterministic encoding.
    static func order(_ a: [StackFrame], _ b: [StackFrame]) -> Bool {
        for (x, y) in zip(a, b) where x != y {
            return (x.file, x.function, x.line, x.isNative ? 1 : 0) < (y.file, y.function, y.line, y.isNative ? 1 : 0)
        }
        return a.count < b.count
    }

    struct FileAndName: Hashable {
        var file: String
        var name: String
        init(_ file: String, _ name: String) {
            self.file = file
            self.name = name
        }
    }

    /// Interns strings, functions and locations into the profile's tables (ids start at 1; string 0
    /// is "", as the format requires).
    struct Builder {
        private(set) var strings: [String] = [""]
        private var stringIndex: [String: Int64] = ["": 0]
        private(set) var functions: [PprofMessages.Function] = []
        private var functionIndex: [FunctionKey: UInt64] = [:]
        private(set) var locations: [PprofMessages.Location] = []
        private var locationIndex: [LocationKey: UInt64] = [:]

        struct FunctionKey: Hashable {
            var name: String
            var file: String
            var firstLine: Int
        }

        struct LocationKey: Hashable {
            var function: UInt64
            var line: Int
        }

        mutating func string(_ value: String) -> Int64 {
            if let index = stringIndex[value] { return index }
            let index = Int64(strings.count)
            strings.append(value)
            stringIndex[value] = index
            return index
        }

        mutating func valueType(_ type: String, _ unit: String) -> PprofMessages.ValueType {
            var value = PprofMessages.ValueType()
            value.type = string(type)
            value.unit = string(unit)
            return value
        }

        mutating func label(_ key: String, _ value: String) -> PprofMessages.Label {
            var label = PprofMessages.Label()
            label.key = string(key)
            label.str = string(value)
            return label
        }

        mutating func location(function name: String, file: String, line: Int, firstLine: Int) -> UInt64 {
            let functionKey = FunctionKey(name: name, file: file, firstLine: firstLine)
            let functionID: UInt64
            if let existing = functionIndex[functionKey] {
                functionID = existing
            } else {
                var function = PprofMessages.Function()
                functionID = UInt64(functions.count + 1)
                function.id = functionID
                function.name = string(name)
                function.systemName = function.name
                function.filename = string(file)
                function.startLine = Int64(max(0, firstLine))
                functions.append(function)
                functionIndex[functionKey] = functionID
            }
            let key = LocationKey(function: functionID, line: line)
            if let existing = locationIndex[key] { return existing }
            var location = PprofMessages.Location()
            location.id = UInt64(locations.count + 1)
            location.mappingID = 1
            var entry = PprofMessages.Line()
            entry.functionID = functionID
            entry.line = Int64(max(0, line))
            location.line = [entry]
            locations.append(location)
            locationIndex[key] = location.id
            return location.id
        }
    }
}

/// gzip (RFC 1952) through zlib.
public enum Gzip {
    /// The bytes compressed as one gzip member.
    public static func compress(_ bytes: [UInt8], level: Int32 = 6) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: scalene_gzip_bound(bytes.count))
        let written = bytes.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { out in
                scalene_gzip(input.baseAddress, input.count, out.baseAddress!, out.count, level)
            }
        }
        return Array(output[0..<written])
    }

    /// The bytes of a gzip member, or nil when `data` is not one (or inflates past `limit`).
    public static func decompress(_ input: [UInt8], limit: Int = 256 << 20) -> [UInt8]? {
        var capacity = max(4096, input.count * 4)
        while capacity <= limit {
            var output = [UInt8](repeating: 0, count: capacity)
            let written = input.withUnsafeBufferPointer { source in
                output.withUnsafeMutableBufferPointer { out in
                    source.baseAddress.map { scalene_gunzip($0, source.count, out.baseAddress!, out.count) } ?? -1
                }
            }
            if written >= 0 { return Array(output[0..<Int(written)]) }
            capacity *= 4
        }
        return nil
    }
}
