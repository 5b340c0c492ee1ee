import Foundation
import Profiler
import Reports
import Testing

@Suite("protobuf wire format and pprof read back")
struct PprofEncodingTests {
    func bytes(_ body: (inout ProtobufWriter) -> Void) -> [UInt8] {
        var writer = ProtobufWriter()
        body(&writer)
        return writer.bytes
    }

    @Test("the encoding guide's examples, byte for byte")
    func wireFormat() {
        #expect(bytes { $0.varint(150) } == [0x96, 0x01])
        #expect(bytes { $0.varint(0) } == [0x00])
        #expect(bytes { $0.varint(UInt64.max) } == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        // Field 1 = 150: 08 96 01. Field 2 = "testing": 12 07 74 65 73 74 69 6e 67.
        #expect(bytes { $0.uint64(1, 150) } == [0x08, 0x96, 0x01])
        #expect(bytes { $0.string(2, "testing") } == [0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6E, 0x67])
        // Packed repeated field 4 = [3, 270, 86942]: 22 06 03 8e 02 9e a7 05.
        #expect(bytes { $0.packed(4, [UInt64(3), 270, 86942]) } == [0x22, 0x06, 0x03, 0x8E, 0x02, 0x9E, 0xA7, 0x05])
        // int64 -1: ten bytes of two's complement; -2 in field 3.
        #expect(bytes { $0.int64(3, -2) } == [0x18, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(bytes { $0.packed(2, [Int64(-1)]) } == [0x12, 0x0A] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
        // Zero, false and empty packed fields are left out (proto3 defaults); empty strings are not.
        #expect(bytes { $0.uint64(1, 0); $0.int64(2, 0); $0.bool(3, false); $0.packed(4, [UInt64]()) }.isEmpty)
        #expect(bytes { $0.bool(7, true) } == [0x38, 0x01])
        #expect(bytes { $0.string(6, "") } == [0x32, 0x00])
        // A nested message: field 3 holding field 1 = 150.
        #expect(bytes { $0.message(3) { $0.uint64(1, 150) } } == [0x1A, 0x03, 0x08, 0x96, 0x01])
        // Field numbers past 15 take a two-byte key.
        #expect(bytes { $0.uint64(16, 1) } == [0x80, 0x01, 0x01])
        // A payload past 127 bytes has a two-byte length.
        let long = bytes { $0.string(1, String(repeating: "x", count: 200)) }
        #expect(Array(long.prefix(3)) == [0x0A, 0xC8, 0x01] && long.count == 203)
    }

    static let go = "/usr/bin/go"

    @Test("go tool pprof -raw reads a small profile back: types, values, frames, labels",
          .enabled(if: FileManager.default.isExecutableFile(atPath: go), "go (Debian's golang-go) is not installed"))
    func readByGo() throws {
        var thread = ThreadProfile(tid: 100, name: "MainThread")
        // Seen running: an idle thread is left out of every report.
        (thread.samples, thread.runningSamples, thread.wallSeconds, thread.cpuSeconds) = (10, 10, 1, 1)
        let main = StackFrame(file: "/srv/app.py", function: "<module>", line: 9)
        let work = StackFrame(file: "/srv/app.py", function: "work", line: 3)
        var time = StackTime()
        time.time = TimeSplit(python: 0.25, native: 0.125, system: 0.0625)
        time.samples = 7
        thread.stacks[[main, work]] = time
        thread.lines[SourceLine(file: "/srv/app.py", line: 3)] = ProfileFixtures.line(0.25, 0.125, 0.0625)
        var memory = MemoryProfile()
        var line = MemoryLine()
        line.allocatedMB = 2
        line.function = FunctionID(file: "/srv/app.py", name: "work", firstLine: 2)
        memory.lines[SourceLine(file: "/srv/app.py", line: 3)] = line
        memory.totalAllocatedMB = 3
        var profile = ProfileFixtures.profile(file: "/srv/app.py", lines: [:], memory: memory)
        profile.threads = [thread]
        let file = NSTemporaryDirectory() + "scalene-pprof-\(UUID().uuidString).pb.gz"
        try Data(PprofReport(profile: profile).render()).write(to: URL(fileURLWithPath: file))
        defer { unlink(file) }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.go)
        process.arguments = ["tool", "pprof", "-raw", file]
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = environment["HOME"] ?? NSTemporaryDirectory()
        environment["GOPROXY"] = "off"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "\(text)")

        // Rows with their runs of spaces collapsed.
        let rows = text.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        for row in ["PeriodType: wall nanoseconds", "Period: 10000000", "Duration: 10s", "Comment: pid 4242",
                    "samples/count wall/nanoseconds[dflt] python/nanoseconds native/nanoseconds system/nanoseconds alloc_space/bytes inuse_space/bytes copy_space/bytes",
                    // The stack (innermost location first): wall = python + native + system, and its labels.
                    "7 437500000 250000000 125000000 62500000 0 0 0: 1 2",
                    "thread_id:[100] thread_name:[MainThread]",
                    // Memory: 2 MB at line 3, the 1 MB allocated outside profiled files.
                    "0 0 0 0 0 2097152 0 0: 3", "0 0 0 0 0 1048576 0 0: 4",
                    "1: 0x0 M=1 work /srv/app.py:3 s=0", "2: 0x0 M=1 /srv/app.py:9 s=0(<module>)",
                    "3: 0x0 M=1 work /srv/app.py:3 s=2", "4: 0x0 M=1 [outside profiled files] :0 s=0"] {
            #expect(rows.contains(row), "\(row) in:\n\(text)")
        }
    }
}
