import ArgumentParser
import CPythonLayouts
import Foundation
import PythonInspector

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
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
        """
    )

    @Option(name: .long, help: "The process id of a running CPython 3.8–3.15 process.")
    var pid: Int32

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @Flag(name: .long, help: "Stop the process while reading it (always resumed afterwards).")
    var blocking = false

    func run() throws {
        let snapshot: ProcessSnapshot
        let target: PythonTarget
        do {
            target = try PythonTarget(pid: pid)
            snapshot = try StackDumper(target: target).snapshot(blocking: blocking)
        } catch {
            fail(Failure(error))
        }
        if json {
            print(DumpFormatter.json(snapshot))
        } else {
            print(DumpFormatter.text(snapshot, executable: target.binary.path), terminator: "")
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

    static func text(_ snapshot: ProcessSnapshot, executable: String) -> String {
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
            if thread.frames.isEmpty { out += "    (no Python frames)\n" }
            for frame in thread.frames {
                out += "    \(frame.qualname) (\(frame.file):\(frame.line))\n"
            }
            if thread.truncated { out += "    ... (stack truncated)\n" }
            if thread.incomplete { out += "    ... (stack changed while being read; may be incomplete)\n" }
        }
        return out
    }

    static func json(_ snapshot: ProcessSnapshot) -> String {
        let threads: [[String: Any]] = snapshot.threads.map { thread in
            [
                "tid": thread.tid.map { Int($0) } as Any? ?? NSNull(),
                "namespace_tid": thread.namespaceTID.map { Int($0) } as Any? ?? NSNull(),
                "name": thread.name as Any? ?? NSNull(),
                "state": stateName(thread.state) as Any? ?? NSNull(),
                "holds_gil": thread.holdsGIL,
                "opcode": thread.opcodeName as Any? ?? NSNull(),
                "opcode_class": className(thread.instructionClass) as Any? ?? NSNull(),
                "truncated": thread.truncated,
                "incomplete": thread.incomplete,
                "frames": thread.frames.map { frame in
                    ["function": frame.function, "qualname": frame.qualname, "file": frame.file, "line": frame.line] as [String: Any]
                },
            ]
        }
        let object: [String: Any] = ["pid": Int(snapshot.pid), "python_version": snapshot.version.description,
                                     "namespace_pid": snapshot.namespacePID.map { Int($0) } as Any? ?? NSNull(),
                                     "threads": threads]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
