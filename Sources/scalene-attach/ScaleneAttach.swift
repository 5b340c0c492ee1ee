import ArgumentParser

@main
struct ScaleneAttach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: commandName,
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

extension ScaleneAttach {
    static let commandName = "scalene-attach"

    /// Parses and runs the command line. When the first argument names a subcommand and nothing
    /// asks for help, the version or completions, that subcommand is parsed on its own: parsing
    /// from the root builds the argument sets of every subcommand (the default one's large option
    /// group among them), which was most of `dump`'s start-up. Anything else, and any error in
    /// that direct parse, goes through the root parser, so usage, errors and help are exactly its own.
    ///
    /// Each subcommand names `scalene-attach` as its `_superCommandName`: ArgumentParser then does
    /// not try to parse `--generate-completion-script` (two more argument sets) when the
    /// subcommand is parsed on its own (that flag never takes this path). Inside the tree, where
    /// errors and help are made, only the root's super-command name is read, and it has none.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let first = arguments.first, let subcommand = directSubcommands[first],
           !arguments.contains(where: mayBeBuiltIn),
           var command = try? subcommand.parseAsRoot(Array(arguments.dropFirst())),
           type(of: command) == subcommand {
            do { try command.run() } catch { exit(withError: error) }
            return
        }
        main(nil)
    }

    /// The subcommands, by the name the command line gives them, that can be parsed without the root.
    static var directSubcommands: [String: ParsableCommand.Type] {
        var byName = [String: ParsableCommand.Type]()
        for subcommand in configuration.subcommands {
            if let name = subcommand.configuration.commandName { byName[name] = subcommand }
        }
        return byName
    }

    /// Whether an argument may be one of ArgumentParser's built-in flags, which only the root
    /// parser handles as it always has: help (`help`, `--help`, `-h`, also inside a pack of short
    /// flags such as `-vh`), `--version`, `--experimental-dump-help`, completion scripts and
    /// requests (`--generate-completion-script`, `---completion`). Erring towards the root costs
    /// only time.
    static func mayBeBuiltIn(_ argument: String) -> Bool {
        if argument == "help" { return true }
        if argument.hasPrefix("--") {
            return ["--help", "--version", "--experimental-dump-help", "--generate-completion-script", "---"]
                .contains { argument.hasPrefix($0) }
        }
        return argument.hasPrefix("-") && argument.utf8.contains(UInt8(ascii: "h"))
    }
}
