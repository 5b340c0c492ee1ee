import ArgumentParser

@main
struct ScaleneAttach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scalene-attach",
        abstract: "Profile a running CPython process the way Scalene does, without restarting it.",
        discussion: """
        Attaches to a CPython 3.8–3.15 process by pid and samples it from outside (the target keeps \
        running): per line and per function, time split into Python, native and system.

          scalene-attach --pid 1234              profile until Ctrl-C, print the table
          scalene-attach dump --pid 1234         every thread's stack, now
          scalene-attach run -- python3 app.py   launch and profile until exit

        Exit codes: 0 success, 1 internal error, 2 no such process, 3 not a Python process, \
        4 permission denied, 5 unsupported or unrecognised Python, 6 the process exited while being read, \
        64 usage error.
        """,
        version: "0.1.0",
        subcommands: [ProfileCommand.self, DumpCommand.self, RunCommand.self, TopCommand.self, ViewCommand.self],
        defaultSubcommand: ProfileCommand.self
    )
}
