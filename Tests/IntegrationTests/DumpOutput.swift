import Foundation

/// The JSON `scalene-attach dump --json` prints, decoded for assertions.
struct DumpOutput: Decodable {
    struct Frame: Decodable {
        var function: String
        var qualname: String
        var file: String
        var line: Int
    }

    struct Thread: Decodable {
        var tid: Int?
        var name: String?
        var state: String?
        var holds_gil: Bool
        var opcode: String?
        var opcode_class: String?
        var frames: [Frame]
    }

    var pid: Int
    var python_version: String
    var threads: [Thread]

    static func decode(_ text: String) throws -> DumpOutput {
        try JSONDecoder().decode(DumpOutput.self, from: Data(text.utf8))
    }

    /// The thread whose stack contains a frame of `function`.
    func thread(running function: String) -> Thread? {
        threads.first { $0.frames.contains { $0.function == function } }
    }
}

/// Runs `dump --json` against a pid and decodes it, failing with the tool's stderr.
func dump(pid: Int32, blocking: Bool = false) throws -> DumpOutput {
    let result = try runTool(["dump", "--pid", String(pid), "--json"] + (blocking ? ["--blocking"] : []))
    guard result.status == 0 else {
        throw HarnessError("dump exited \(result.status): \(result.stderr)")
    }
    return try DumpOutput.decode(result.stdout)
}

/// Dumps until `settled` holds (for at most 3 s) and returns the last dump. A fixture prints READY
/// just before it reaches the line it then stays on; on a busy machine the first dump can come
/// between the two.
func dump(pid: Int32, blocking: Bool = false, until settled: (DumpOutput) -> Bool) throws -> DumpOutput {
    var output = try dump(pid: pid, blocking: blocking)
    for _ in 0..<30 where !settled(output) {
        usleep(100_000)
        output = try dump(pid: pid, blocking: blocking)
    }
    return output
}
