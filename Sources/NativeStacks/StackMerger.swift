/// One frame of a stack that shows native and Python frames together.
public enum MergedFrame: Equatable, Sendable {
    /// The Python frame at this index of the thread's Python stack (innermost first).
    case python(Int)
    case native(NativeFrame)
}

/// Merges a thread's native stack with its Python stack, as a reader expects to see it:
/// `compress (zlib) ← deflate (libz.so.1) ← handle (app.py:31)`.
///
/// Every evaluation frame (`_PyEval_EvalFrameDefault`) of the native stack is replaced by the Python
/// frames it runs: one per call before 3.11; from 3.11 one C call runs a Python frame entered from C
/// and the Python frames it calls in turn, so the Python stack is split after each entry frame.
/// On the leaf side of the innermost evaluation frame, the native frames from the leaf out to the
/// outermost frame of code outside the interpreter are kept (that is where the CPU was; the
/// interpreter's call machinery between that frame and the evaluation frame is dropped), or all of
/// them when the CPU was in the interpreter's own code. Further out only frames of code outside the
/// interpreter and the C runtime are kept (an extension calling back into Python): the interpreter's
/// call machinery between evaluation frames and the start-up frames outside them say nothing a
/// reader needs.
public enum StackMerger {
    /// - Parameters:
    ///   - native: the native stack, innermost first.
    ///   - pythonEntries: for each Python frame, innermost first, whether it is the outermost frame of
    ///     its call of the evaluation function.
    /// - Returns: innermost first.
    public static func merge(native: [NativeFrame], pythonEntries: [Bool]) -> [MergedFrame] {
        var segments = [[Int]]()
        var current = [Int]()
        for (index, entry) in pythonEntries.enumerated() {
            current.append(index)
            if entry {
                segments.append(current)
                current = []
            }
        }
        if !current.isEmpty { segments.append(current) }

        var result = [MergedFrame]()
        var next = 0
        var sawEvaluation = false
        let innermostEvaluation = native.firstIndex(where: \.isEvaluation) ?? native.count
        let leafSide = native[..<innermostEvaluation]
        let leafEnd = leafSide.lastIndex(where: { $0.role == .other }).map { $0 + 1 } ?? innermostEvaluation
        for (index, frame) in native.enumerated() {
            if index < innermostEvaluation && index >= leafEnd { continue }
            if frame.isEvaluation {
                if next < segments.count {
                    result += segments[next].map(MergedFrame.python)
                    next += 1
                }
                sawEvaluation = true
            } else if !sawEvaluation || frame.role == .other {
                result.append(.native(frame))
            }
        }
        // The native unwind stopped before the outermost evaluation frame (the stack copy ends, or
        // code without unwind information): the outer Python frames follow as they are.
        while next < segments.count {
            result += segments[next].map(MergedFrame.python)
            next += 1
        }
        return result
    }
}
