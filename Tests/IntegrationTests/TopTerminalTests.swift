import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A tmux server of our own (its own socket), running one command in a pane of a given size.
/// Stopped by its socket at the end; never looked up by name.
final class TmuxPane {
    let socket = "scalene-attach-test-\(getpid())-\(UUID().uuidString.prefix(8))"

    init(command: String, columns: Int, rows: Int) throws {
        var result = try tmux(["new-session", "-d", "-s", "view", "-x", String(columns), "-y", String(rows), command])
        // The server cannot daemonize while /dev/null is not a device; on a shared machine other
        // runs of older code replaced it with a file (see OutputWriter.replace), so try a few times.
        for _ in 0..<10 where result.status != 0 {
            usleep(500_000)
            result = try tmux(["new-session", "-d", "-s", "view", "-x", String(columns), "-y", String(rows), command])
        }
        guard result.status == 0 else {
            var info = stat()
            let hint = stat("/dev/null", &info) == 0 && (info.st_mode & S_IFMT) != S_IFCHR
                ? " (/dev/null is not a device on this machine: tmux cannot daemonize)" : ""
            throw HarnessError("tmux new-session failed: \(result.output)\(hint)")
        }
    }

    deinit { _ = try? tmux(["kill-server"]) }

    /// Runs a tmux client and waits for it (at most 10 s, then it is killed). Spawned and reaped
    /// here rather than through Foundation's Process, whose exit tracking was seen to miss the
    /// `new-session` client (the server it forks outlives it) and hang `waitUntilExit`; output goes
    /// to a file, since the server may keep inherited pipes open.
    @discardableResult
    func tmux(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let output = NSTemporaryDirectory() + "tmux-\(UUID().uuidString)"
        defer { unlink(output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ["/usr/bin/tmux", "-L", socket, "-f", "/dev/null"] + arguments
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/usr/bin/tmux", &actions, nil, cArguments, environ)
        guard spawned == 0 else { throw HarnessError("cannot start tmux: \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(10)
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                throw HarnessError("tmux \(arguments.first ?? "") did not finish in 10 s")
            }
            usleep(10_000)
        }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), text)
    }

    /// The pane's screen as text.
    func screen() -> String { (try? tmux(["capture-pane", "-p", "-t", "view"]).output) ?? "" }

    func send(_ keys: String) throws { try tmux(["send-keys", "-t", "view", "-l", keys]) }

    /// The pid of the pane's shell.
    func panePID() -> Int32? {
        (try? tmux(["display-message", "-p", "-t", "view", "#{pane_pid}"]).output).flatMap {
            Int32($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// Polls the screen until `condition` holds (true) or `seconds` pass (false).
    func wait(seconds: Double, until condition: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if condition(screen()) { return true }
            usleep(50_000)
        } while Date() < deadline
        return condition(screen())
    }
}

/// `scalene-attach top` in a real terminal: tmux runs it against a live fixture, types keys and
/// reads the screen.
@Suite("top in a real terminal (tmux)", .serialized)
struct TopTerminalTests {
    static let script = Package.fixture("views/hot_native_sleep.py")

    /// The pane runs top, then prints its exit status and whether the terminal is back in its
    /// normal mode (canonical input and echo on), then waits.
    static func paneCommand(pid: Int32, extra: String = "") -> String {
        "sh -c '\"\(Package.tool)\" top --pid \(pid) \(extra); echo \"EXITED $?\"; "
            + "stty -a | tr \" ;\" \"\\n\\n\" | grep -x -e icanon -e -icanon -e echo -e -echo | tr \"\\n\" \" \"; echo MODE; sleep 60'"
    }

    /// The "file:line" of the first data row under the column titles.
    static func firstRow(_ screen: String) -> String? {
        let lines = screen.split(separator: "\n", omittingEmptySubsequences: false)
        guard let header = lines.firstIndex(where: { $0.contains("│ where") }), header + 1 < lines.count else { return nil }
        let columns = lines[header + 1].split(separator: "│")
        return columns.count >= 3 ? columns[1].trimmingCharacters(in: .whitespaces) : nil
    }

    /// The percentages in numeric column `index` (0 total, 1 Python, 2 native, 3 system) of the
    /// data rows, blank cells as 0.
    static func column(_ index: Int, of screen: String) -> [Double] {
        let lines = screen.split(separator: "\n", omittingEmptySubsequences: false)
        guard let header = lines.firstIndex(where: { $0.contains("│ where") }) else { return [] }
        return lines[(header + 1)...].prefix { $0.contains("│") }.map { line in
            let numbers = String(line.split(separator: "│")[0])
            // Fixed 7-column cells.
            let characters = Array(numbers)
            let start = index * 7
            guard characters.count >= start + 7 else { return 0 }
            return Double(String(characters[start..<start + 7]).trimmingCharacters(in: .whitespaces).dropLast()) ?? 0
        }
    }

    func requireTmux() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"), "tmux is not installed (make test installs it)")
    }

    @Test("the hot line within 3 s, sort keys reorder, q detaches and the target runs on", arguments: Interpreters.installed)
    func watchSortQuit(python: Interpreter) throws {
        try requireTmux()
        let marks = try markers(in: Self.script)
        let fixture = try FixtureProcess(python: python.path, script: Self.script)
        defer { fixture.kill() }
        let name = "hot_native_sleep.py"
        let started = Date()
        let pane = try TmuxPane(command: Self.paneCommand(pid: fixture.pid), columns: 110, rows: 30)
        let hot = "\(name):\(marks["hot"]!)"
        // 3 s on a quiet machine; the parallel suites compete for the two cores, so allow twice that.
        let appeared = pane.wait(seconds: 6) { Self.firstRow($0) == hot }
        let seconds = Date().timeIntervalSince(started)
        print(String(format: "%@: top showed the hot line first after %.2f s", python.label, seconds))
        #expect(appeared, "hot line \(hot) first within 6 s; screen:\n\(pane.screen())")
        #expect(pane.screen().contains("· Python 3."))

        try pane.send("3")
        #expect(pane.wait(seconds: 10) { Self.firstRow($0) == "\(name):\(marks["native"]!)" && $0.contains("▼native") },
                "sort by native: the hashing line first; screen:\n\(pane.screen())")
        try pane.send("4")
        // Which line leads by system time depends on the machine's load (waiting for a CPU is
        // system time), so check the order itself.
        #expect(pane.wait(seconds: 10) { $0.contains("▼system") && Self.column(3, of: $0).count >= 2
                    && Self.column(3, of: $0) == Self.column(3, of: $0).sorted(by: >) },
                "sort by system: rows in decreasing system share; screen:\n\(pane.screen())")
        try pane.send("f")
        #expect(pane.wait(seconds: 10) { $0.contains("│ defined at") && $0.contains("hot_loop") && $0.contains("native_work") })

        try pane.send("q")
        #expect(pane.wait(seconds: 5) { $0.contains("EXITED 0") && $0.contains("MODE") }, "\(pane.screen())")
        let screen = pane.screen()
        #expect(screen.contains("icanon echo") || screen.contains("echo icanon"), "the terminal mode is restored: \(screen)")
        #expect(!screen.contains("scalene-attach top ·"), "the normal screen is back")
        #expect(AgentProbe.wait(seconds: 3) { AgentProbe.hookPointers(pid: fixture.pid) == 0 }, "every hook removed")
        usleep(300_000)
        #expect(fixture.isRunning && fixture.isRunningUnstopped, "the target keeps running, not stopped")
    }

    @Test("SIGTERM and SIGHUP detach and restore the terminal too")
    func signals() throws {
        try requireTmux()
        let python = try #require(Interpreters.installed.first { $0.minor == 12 } ?? Interpreters.installed.first)
        for signal in [SIGTERM, SIGHUP] {
            let fixture = try FixtureProcess(python: python.path, script: Self.script)
            defer { fixture.kill() }
            let pane = try TmuxPane(command: Self.paneCommand(pid: fixture.pid), columns: 80, rows: 24)
            #expect(pane.wait(seconds: 5) { Self.firstRow($0) != nil })
            let shell = try #require(pane.panePID())
            let children = (try? String(contentsOfFile: "/proc/\(shell)/task/\(shell)/children", encoding: .utf8)) ?? ""
            let top = try #require(children.split(separator: " ").first.flatMap { Int32($0) })
            kill(top, signal)
            #expect(pane.wait(seconds: 5) { $0.contains("EXITED 0") && $0.contains("MODE") }, "signal \(signal): \(pane.screen())")
            let screen = pane.screen()
            #expect(screen.contains("icanon echo") || screen.contains("echo icanon"), "signal \(signal): \(screen)")
            #expect(AgentProbe.wait(seconds: 3) { AgentProbe.hookPointers(pid: fixture.pid) == 0 })
            #expect(fixture.isRunningUnstopped)
        }
    }

    @Test("the target exits while watched: the terminal is restored and the exit is said (6)")
    func targetExits() throws {
        try requireTmux()
        let python = try #require(Interpreters.installed.first { $0.minor == 12 } ?? Interpreters.installed.first)
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("cpu/short_program.py"), arguments: ["2.5"])
        defer { fixture.kill() }
        let pane = try TmuxPane(command: Self.paneCommand(pid: fixture.pid, extra: "--cpu-only"), columns: 80, rows: 24)
        #expect(pane.wait(seconds: 10) { $0.contains("EXITED 6") && $0.contains("MODE") }, "\(pane.screen())")
        let screen = pane.screen()
        #expect(screen.contains("process \(fixture.pid) exited"), "\(screen)")
        #expect(screen.contains("icanon echo") || screen.contains("echo icanon"), "\(screen)")
    }

    @Test("without a terminal: one line and the usage exit code, target untouched")
    func noTerminal() throws {
        let python = try #require(Interpreters.installed.first)
        let fixture = try FixtureProcess(python: python.path, script: Self.script)
        defer { fixture.kill() }
        let result = try runTool(["top", "--pid", String(fixture.pid)])
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("top needs a terminal") && result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(AgentProbe.hookPointers(pid: fixture.pid) == 0)
        #expect(fixture.isRunningUnstopped)
    }
}
