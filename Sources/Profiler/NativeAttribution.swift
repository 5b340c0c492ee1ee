import NativeStacks
import PythonInspector

/// What one thread's native samples of one interval mean for its attribution.
struct NativeSplit {
    var fractions: Attribution.NativeFractions
    /// Merged stacks of the samples placed at each end (the interval's time there is spread over them).
    var earlierStacks: [Int] = []
    var laterStacks: [Int] = []
}

/// What native stack samples mean for attribution (`--native`): the sampler hands each thread's
/// samples of an interval here; they decide how its user CPU splits into Python and native time,
/// which native functions its line was in, and which merged stacks its time goes to.
extension Sampler {
    /// Places each sample at the observation its CPU time lands at (by its time, at the middle of the
    /// interval, when the CPU is split between two places), and gives each end the fraction of its
    /// samples whose instruction pointer was outside the interpreter. A thread sampled by CPU time
    /// gets about one sample per tick of CPU, so an end may have none: then the fraction measured at
    /// that same line on this thread (a moving average over its intervals) is carried, and otherwise the opcode/GIL rule decides (nil).
    /// Where the line changed within the interval, the carried fraction is preferred to the few
    /// samples that fell on each side by their time. Also tallies the
    /// native function of each native sample on its line and interns the merged stacks.
    func splitNative(_ stacks: [NativeStack], track: ThreadTrack, later: Endpoint, laterFrames: [ResolvedFrame],
                     now: UInt64, hasUserTime: Bool) -> NativeSplit {
        let weight = Attribution.cpuWeight(earlier: track.last, later: later, sampled: true)
        // A tick far later than scheduled (the sampler was not scheduled: a loaded machine) may span
        // several places the two observations never saw: its samples cannot be placed, and only the
        // fractions measured at these lines before are used.
        let period = 1e9 / max(1, options.rate)
        let stacks = Double(now &- track.lastTime) > 3 * period ? [] : stacks
        if stacks.isEmpty && Double(now &- track.lastTime) > 3 * period { recordNativeInterval(\.lateIntervals) }
        let middle = track.lastTime / 2 + now / 2
        var counts = [(python: 0, native: 0), (python: 0, native: 0)]
        var result = NativeSplit(fractions: .init(earlier: nil, later: nil))
        for stack in stacks {
            let fromEarlier = weight == 1 || (weight > 0 && stack.time < middle)
            let side = fromEarlier ? 0 : 1
            let endpoint = fromEarlier ? track.last : later
            switch stack.place {
            case .python: counts[side].python += 1
            case .native:
                counts[side].native += 1
                if let location = endpoint.location, let function = Self.reportedFunction(of: stack) {
                    track.lineTime[location, default: LineTime()].recordNative(function)
                }
            case .unknown: break
            }
            if let index = table.mergedStack(fromEarlier ? track.lastFrames : laterFrames, native: stack) {
                if fromEarlier { result.earlierStacks.append(index) } else { result.laterStacks.append(index) }
            }
        }
        var fractions = [Double?](repeating: nil, count: 2)
        for side in 0..<2 {
            let endpoint = side == 0 ? track.last : later
            // Only an end that receives CPU time needs a fraction.
            guard side == 0 ? weight > 0 : weight < 1 else { continue }
            let sampled = counts[side].python + counts[side].native
            let place = endpoint.location ?? -1
            // In an interval where the place changed, which side a sample falls on is a guess by
            // its time: a fraction measured at this place in a whole interval is the better figure.
            let transition = weight != 0 && weight != 1
            if sampled > 0 && !(transition && track.nativeFractionAt[place] != nil) {
                let fraction = Double(counts[side].native) / Double(sampled)
                fractions[side] = fraction
                // A moving average: an interval often has a single sample (0 or 1).
                if !transition {
                    track.nativeFractionAt[place] = track.nativeFractionAt[place].map { $0 + (fraction - $0) / 4 } ?? fraction
                }
                if hasUserTime { recordNativeInterval(\.sampledIntervals) }
            } else if let carried = track.nativeFractionAt[place] {
                fractions[side] = carried
                if hasUserTime { recordNativeInterval(\.carriedIntervals) }
            } else if hasUserTime {
                recordNativeInterval(\.opcodeRuleIntervals)
            }
        }
        result.fractions = .init(earlier: fractions[0], later: fractions[1])
        return result
    }

    func recordNativeInterval(_ counter: WritableKeyPath<NativeSummary, Int>) {
        nativeSummary?[keyPath: counter] += 1
    }

    /// The function a native sample is reported under: the innermost frame with a symbol (a
    /// library's static helpers often have none; the exported function that called them does).
    static func reportedFunction(of stack: NativeStack) -> NativeFunction? {
        stack.frames.first(where: { $0.function.isSymbolised })?.function ?? stack.leaf
    }
}
