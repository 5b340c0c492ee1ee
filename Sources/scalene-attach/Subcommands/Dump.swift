import ArgumentParser
import CPythonLayouts
import NativeStacks
import PythonInspector
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        _superCommandName: ScaleneAttach.commandName, // see ScaleneAttach.main
        abstract: "Print every thread's Python stack, now.",
        discussion: """
        Reads the target while it runs (no stop, no injection): for each thread its kernel id, Python \
        name, scheduler state and whether it holds the GIL, then its stack innermost first as \
        `function (file:line)`, and the instruction the innermost frame is executing with its class: \
        `call` (inside a call, possibly into native code) or `python` (running bytecode).

        Reading a running process can catch a stack mid-change; --blocking stops the process for \
        the read (typically well under a millisecond) and always resumes it.

        Supported: CPython 3.8–3.15, default (GIL) builds, libpython shared or linked into the \
        executable. From 3.13 the layout is read from the target's own _Py_DebugOffsets. A minor \
        version newer than this build knows, a pre-release or a free-threaded build is refused \
        (exit 5) rather than read with a guessed layout.

        --native adds each thread's native frames (compiled code, symbolised from the ELF files the \
        process has mapped, C++ names demangled), merged with its Python frames: every interpreter \
        evaluation frame is replaced by the Python frames it runs. It implies --blocking: the \
        registers and the top of each thread's stack are copied while the process is stopped, and \
        the unwind happens after it is resumed.
        """
    )

    @Option(name: .long, help: "The process id of a running CPython 3.8–3.15 process.")
    var pid: Int32

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @Flag(name: .long, help: "Stop the process while reading it (always resumed afterwards).")
    var blocking = false

    @Flag(name: .long, help: "Show native frames merged with the Python frames (implies --blocking).")
    var native = false

    func run() throws {
        let snapshot: ProcessSnapshot
        let target: PythonTarget
        var copies = [StoppedThreadCopy]()
        var unwinder: NativeUnwinder?
        do {
            target = try PythonTarget(pid: pid)
            if native {
                // Loaded before the stop: it maps every object the process has loaded.
                do { unwinder = try NativeUnwinder(process: target.process, interpreterPaths: target.interpreterPaths) }
                catch { fail(Failure("cannot unwind native stacks: \(error)", .internalError)) }
            }
            snapshot = try StackDumper(target: target).snapshot(blocking: blocking || native) { tids in
                guard native else { return }
                copies = tids.compactMap { StoppedThreadCopy(pid: target.pid, tid: $0) }
            }
        } catch {
            fail(Failure(error))
        }
        var nativeStacks = [Int32: NativeStack]()
        if let unwinder {
            for copy in copies { nativeStacks[copy.tid] = copy.unwind(with: unwinder) }
        }
        if json {
            print(DumpFormatter.json(snapshot, native: native ? nativeStacks : nil))
        } else {
            print(DumpFormatter.text(snapshot, executable: target.binary.path, native: native ? nativeStacks : nil),
                  terminator: "")
        }
    }
}

/// Text and JSON renderings of a snapshot.
enum DumpFormatter {
    static func stateName(_ state: Character?) -> String? {
        switch state {
        case "R": return "running"
        case "S": return "sleeping"
        case "D": return "disk-sleep"
        case "T": return "stopped"
        case "t": return "tracing-stop"
        case "Z": return "zombie"
        case "I": return "idle"
        case .some(let other): return String(other)
        case nil: return nil
        }
    }

    static func className(_ kind: InstructionClass?) -> String? {
        switch kind {
        case .call: return "call"
        case .python: return "python"
        case nil: return nil
        }
    }

    /// The thread's frames innermost first as (text, kind), native frames merged in when given.
    static func frames(of thread: ThreadSnapshot, native: [Int32: NativeStack]?) -> [(text: String, kind: String, frame: [String: Any])] {
        func python(_ frame: FrameDescription) -> (text: String, kind: String, frame: [String: Any]) {
            ("\(frame.qualname) (\(frame.file):\(frame.line))", "python",
             ["kind": "python", "function": frame.function, "qualname": frame.qualname, "file": frame.file, "line": frame.line])
        }
        guard let native, let tid = thread.tid, let stack = native[tid] else { return thread.frames.map(python) }
        return StackMerger.merge(native: stack.frames, pythonEntries: thread.entries).map { merged in
            switch merged {
            case .python(let index): return python(thread.frames[index])
            case .native(let frame):
                return (frame.function.description, "native",
                        ["kind": "native", "function": frame.function.name, "object": frame.function.object,
                         "address": "0x" + String(frame.address, radix: 16)])
            }
        }
    }

    static func text(_ snapshot: ProcessSnapshot, executable: String, native: [Int32: NativeStack]? = nil) -> String {
        let inNamespace = snapshot.namespacePID.map { " (pid \($0) in its PID namespace)" } ?? ""
        var out = "Process \(snapshot.pid)\(inNamespace): Python \(snapshot.version) (\(executable)), \(snapshot.threads.count) thread(s)\n"
        if snapshot.threads.contains(where: \.unmapped) {
            out += "(threads marked ? could not be matched to a kernel thread of the process)\n"
        }
        for thread in snapshot.threads {
            var header = "\nThread \(thread.tid.map(String.init) ?? "?")"
            if let own = thread.namespaceTID, own != thread.tid { header += " [\(own) in the namespace]" }
            if let name = thread.name { header += " \"\(name)\"" }
            var details = [String]()
            if let state = stateName(thread.state) { details.append(state) }
            if thread.holdsGIL { details.append("holds the GIL") }
            if !details.isEmpty { header += " (" + details.joined(separator: ", ") + ")" }
            if let name = thread.opcodeName, let kind = className(thread.instructionClass) {
                header += "  at \(name) [\(kind)]"
            }
            out += header + "\n"
            let frames = Self.frames(of: thread, native: native)
            if frames.isEmpty { out += "    (no Python frames)\n" }
            for frame in frames {
                out += (frame.kind == "native" ? "  ~ " : "    ") + frame.text + "\n"
            }
            if thread.truncated { out += "    ... (stack truncated)\n" }
            if thread.incomplete { out += "    ... (stack changed while being read; may be incomplete)\n" }
        }
        return out
    }

    static func json(_ snapshot: ProcessSnapshot, native: [Int32: NativeStack]? = nil) -> String {
        let threads: [[String: Any]] = snapshot.threads.map { thread in
            [
                "tid": thread.tid.map { Int($0) } as Any? ?? JSONNull(),
                "namespace_tid": thread.namespaceTID.map { Int($0) } as Any? ?? JSONNull(),
                "name": thread.name as Any? ?? JSONNull(),
                "state": stateName(thread.state) as Any? ?? JSONNull(),
                "holds_gil": thread.holdsGIL,
                "opcode": thread.opcodeName as Any? ?? JSONNull(),
                "opcode_class": className(thread.instructionClass) as Any? ?? JSONNull(),
                "truncated": thread.truncated,
                "incomplete": thread.incomplete,
                "frames": frames(of: thread, native: native).map(\.frame),
            ]
        }
        let object: [String: Any] = ["pid": Int(snapshot.pid), "python_version": snapshot.version.description,
                                     "namespace_pid": snapshot.namespacePID.map { Int($0) } as Any? ?? JSONNull(),
                                     "threads": threads]
        return JSONWriter.string(object)
    }
}
