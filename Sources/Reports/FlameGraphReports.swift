import Profiler
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// Brendan Gregg's folded stacks: one line per distinct stack, frames outermost first as
/// `file:function:line` (native frames, with --native: `object:function`) joined by ";", then a
/// space and the sample count. Feed to flamegraph.pl or speedscope.
public struct CollapsedStacksReport {
    public var profile: Profile

    public init(profile: Profile) {
        self.profile = profile
    }

    public func render() -> String {
        var lines = [String]()
        for (stack, value) in profile.stacks where value.samples > 0 {
            let frames = stack.map { frame in
                (frame.isNative ? "\(frame.file):\(frame.function)" : "\(frame.file):\(frame.function):\(frame.line)")
                    .replacingAll(";", with: ",").replacingAll(" ", with: "_")
            }
            lines.append(frames.joined(separator: ";") + " \(value.samples)")
        }
        return lines.sorted().joined(separator: "\n") + (lines.isEmpty ? "" : "\n")
    }
}

/// speedscope's file format (https://www.speedscope.app/file-format-schema.json): one "sampled"
/// profile per thread, weights in seconds, frames shared.
public struct SpeedscopeReport {
    public var profile: Profile

    public init(profile: Profile) {
        self.profile = profile
    }

    public func render() -> [UInt8] {
        var frameIndex = [StackFrame: Int]()
        var frames = [[String: Any]]()
        func index(_ frame: StackFrame) -> Int {
            if let existing = frameIndex[frame] { return existing }
            frameIndex[frame] = frames.count
            frames.append(frame.isNative ? ["name": frame.function, "file": frame.file]
                          : ["name": frame.function, "file": frame.file, "line": frame.line])
            return frames.count - 1
        }
        var profiles = [[String: Any]]()
        for thread in profile.reportedThreads {
            var samples = [[Int]]()
            var weights = [Double]()
            if !thread.timeline.isEmpty {
                for entry in thread.timeline where entry.stack < thread.stackOrder.count {
                    samples.append(thread.stackOrder[entry.stack].map(index))
                    weights.append(entry.weight)
                }
            } else {
                for (stack, value) in thread.stacks.sorted(by: { $0.value.time.total > $1.value.time.total }) {
                    samples.append(stack.map(index))
                    weights.append(value.time.total)
                }
            }
            let name = "\(thread.name ?? "thread") (tid \(thread.tid.map(String.init) ?? "?"))"
            profiles.append([
                "type": "sampled", "name": name, "unit": "seconds", "startValue": 0,
                "endValue": weights.reduce(0, +), "samples": samples, "weights": weights,
            ])
        }
        let document: [String: Any] = [
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "name": "scalene-attach pid \(profile.pid)",
            "exporter": "scalene-attach",
            "activeProfileIndex": 0,
            "shared": ["frames": frames],
            "profiles": profiles,
        ]
        return JSONWriter.bytes(document)
    }
}
