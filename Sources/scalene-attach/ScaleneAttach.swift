import ArgumentParser

@main
struct ScaleneAttach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scalene-attach",
        abstract: "Inspect a running CPython process from outside, without restarting it.",
        discussion: """
        Attaches to a CPython 3.8–3.13 process by pid, reads the interpreter's structures with \
        process_vm_readv (the target keeps running), and prints what every thread is doing.

        Exit codes: 0 success, 1 internal error, 2 no such process, 3 not a Python process, \
        4 permission denied, 5 unsupported or unrecognised Python, 6 the process exited while being read, \
        64 usage error.
        """,
        version: "0.1.0",
        subcommands: [Dump.self]
    )
}
