/// A compiled function as a reader names it: `deflate` in `libz.so.1`.
public struct NativeFunction: Hashable, Sendable, Comparable {
    /// The file name of the object (`libz.so.1`, `python3.11`, `[vdso]`).
    public var object: String
    /// The demangled symbol, or `object+0x…` when the object has no symbol there.
    public var name: String

    public init(object: String, name: String) {
        self.object = object
        self.name = name
    }

    /// Whether the object had a symbol there (else the name is `object+0x…`).
    public var isSymbolised: Bool { !name.hasPrefix(object + "+0x") && object != "?" }

    /// `deflate (libz.so.1)`.
    public var description: String { "\(name) (\(object))" }

    public static func < (a: NativeFunction, b: NativeFunction) -> Bool { (a.object, a.name) < (b.object, b.name) }
}

/// What kind of code an object holds, for telling Python time from native time.
public enum ObjectRole: Sendable, Equatable {
    /// The interpreter's own code: libpython, or the executable when the interpreter is linked into it.
    case interpreter
    /// The C runtime (libc, libm, the dynamic loader, the vdso): time there belongs to its caller.
    case runtime
    /// Everything else: extension modules, the libraries they use.
    case other
}

/// One frame of a native stack.
public struct NativeFrame: Sendable, Equatable {
    public var function: NativeFunction
    public var role: ObjectRole
    /// An interpreter evaluation frame (`_PyEval_EvalFrameDefault`): it runs Python frames.
    public var isEvaluation: Bool
    /// The frame's instruction pointer (a return address for every frame but the innermost).
    public var address: UInt64

    public init(function: NativeFunction, role: ObjectRole, isEvaluation: Bool, address: UInt64) {
        self.function = function
        self.role = role
        self.isEvaluation = isEvaluation
        self.address = address
    }
}

/// Where a sampled CPU instruction was, by the rule of the README: inside the interpreter's own
/// code (Python), or outside it (native). Time in the C runtime goes to the first caller outside it.
public enum CPUPlace: Sendable, Equatable {
    case python
    case native
    /// Nothing but C runtime frames could be found (the unwind stopped there).
    case unknown
}

/// The native stack of one thread at one instant.
public struct NativeStack: Sendable {
    public var tid: Int32
    /// CLOCK_MONOTONIC nanoseconds.
    public var time: UInt64
    /// Innermost first.
    public var frames: [NativeFrame]

    public init(tid: Int32, time: UInt64, frames: [NativeFrame]) {
        self.tid = tid
        self.time = time
        self.frames = frames
    }

    /// Where the CPU was: the innermost frame outside the C runtime decides.
    public var place: CPUPlace {
        for frame in frames where frame.role != .runtime {
            return frame.role == .interpreter ? .python : .native
        }
        return .unknown
    }

    /// The innermost frame: the function the CPU was executing.
    public var leaf: NativeFunction? { frames.first?.function }
}

/// How native stacks are taken.
public enum NativeMethod: String, Sendable, Equatable {
    /// perf_event_open task-clock samples with registers and a copy of the stack: nothing stops.
    case perf
    /// Each running thread stopped for a moment with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT).
    case ptrace
}

/// What the profiler asks of a native sampler once per tick.
public protocol NativeStackSource: AnyObject {
    var method: NativeMethod { get }
    /// Stacks sampled since the last call, oldest first. `running` are the threads the profiler saw
    /// on a CPU at this tick (the ptrace sampler stops only those).
    func collect(now: UInt64, running: [Int32]) -> [NativeStack]
    /// Counters for the profile.
    var statistics: NativeStatistics { get }
}

/// A native sampler's own counters.
public struct NativeStatistics: Sendable, Equatable {
    public var samples = 0
    /// Samples the kernel dropped (ring full) or that could not be decoded.
    public var lost = 0
    /// Frames found per sample, summed (÷ samples = mean depth).
    public var frames = 0
    /// Threads that sampling could not be started on.
    public var failedThreads = 0
    /// Seconds the target's threads spent stopped (ptrace only).
    public var stoppedSeconds = 0.0

    public init() {}
}

/// Why native sampling could not start.
public enum NativeSamplingError: Error, Sendable, Equatable {
    /// perf events are not allowed here (perf_event_paranoid, seccomp, missing CAP_PERFMON).
    case perfNotPermitted(detail: String)
    /// ptrace is not allowed (Yama, missing CAP_SYS_PTRACE).
    case ptraceNotPermitted(pid: Int32)
    case failed(detail: String)
}
