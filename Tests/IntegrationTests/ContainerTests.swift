import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A CPython in a container built without a runtime (fixtures/container/container.sh: its own PID
/// and mount namespaces, its own root with private /tmp and /dev/shm, the interpreter at a path the
/// host does not have; optionally a user namespace whose root is the host's nobody), profiled from
/// the host by its host pid and from inside by its own pid, as a sidecar would.
struct Container {
    let launcher: FixtureProcess
    /// The interpreter's pid as the host sees it; in the container it is 1.
    let pid: Int32
    let root: TemporaryDirectory

    /// The interpreters the container tests run on: the oldest (thread ids through glibc's
    /// `struct pthread`), 3.10, 3.12, and the newest of both shapes, where installed.
    static var interpreters: [Interpreter] {
        let installed = Interpreters.installed
        var chosen = [8, 10, 12].compactMap { minor in installed.first { $0.minor == minor && $0.label.contains("pyenv") } }
        if let newest = installed.map(\.minor).max() {
            chosen += installed.filter { $0.minor == newest && !$0.label.contains("pyenv") && $0.label.contains("sid") }
            if !chosen.contains(where: { $0.minor == newest }), let any = installed.first(where: { $0.minor == newest }) {
                chosen.append(any)
            }
        }
        return chosen
    }

    /// The install prefix and the interpreter's path under it: pyenv's PREFIX/bin/python3, the
    /// provisioned Debian sid ROOT/usr/bin/python3.X.
    static func prefix(of python: Interpreter) -> (prefix: String, relative: String, keepHostPath: Bool)? {
        let path = python.path
        if let range = path.range(of: "/usr/bin/"), range.lowerBound != path.startIndex {
            return (String(path[..<range.lowerBound]), "usr/bin/" + path[range.upperBound...], true)
        }
        if let range = path.range(of: "/bin/", options: .backwards) {
            return (String(path[..<range.lowerBound]), "bin/" + path[range.upperBound...], false)
        }
        return nil
    }

    /// Where the native-allocation library of the memory fixtures is inside.
    static let libraryFolder = "/opt/fixture-lib"

    /// Starts `script` (a path under fixtures/, seen as /app/... inside) with `arguments`.
    init(python: Interpreter, script: String, arguments: [String] = [], user: Bool = false) throws {
        guard let location = Self.prefix(of: python) else { throw HarnessError("no install prefix for \(python)") }
        root = try TemporaryDirectory()
        var options = ["--root", root.path, "--prefix", location.prefix, "--python", location.relative,
                       "--tool", (Package.tool as NSString).deletingLastPathComponent, "--app", Package.root + "/fixtures"]
        if user { options.insert("--user", at: 0) }
        options = ["--bind", Package.root + "/build/fixtures:" + Self.libraryFolder] + options
        if location.keepHostPath { options.insert("--keep-host-path", at: 0) }
        launcher = try FixtureProcess(executable: Package.fixture("container/container.sh"),
                                      arguments: options + ["--", "-u", "/app/" + script] + arguments)
        var found: Int32?
        for _ in 0..<100 where found == nil {
            found = Self.interpreterPID(under: launcher.pid)
            if found == nil { usleep(20_000) }
        }
        guard let found else {
            launcher.kill()
            throw HarnessError("the container's interpreter was not found under \(launcher.pid)")
        }
        pid = found
    }

    /// The descendant of `ancestor` that runs the interpreter (pid 1 of its namespace).
    static func interpreterPID(under ancestor: Int32) -> Int32? {
        var children = [Int32: [Int32]]()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { children[parent, default: []].append(pid) }
        }
        var queue = [ancestor]
        while let next = queue.popLast() {
            for child in children[next] ?? [] {
                let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(child)/exe")) ?? ""
                if exe.contains("/opt/python/") { return child }
                queue.append(child)
            }
        }
        return nil
    }

    /// A path inside the container, as the host reaches it.
    func hostPath(_ inside: String) -> String { "/proc/\(pid)/root" + inside }

    /// Runs the tool inside the container's namespaces (a sidecar sharing its PID namespace), as
    /// `prefix` (e.g. setpriv to drop privileges) wants.
    func runInside(_ arguments: [String], user: Bool = false, prefix: [String] = [], timeout: TimeInterval = 60) throws
        -> ToolResult
    {
        var namespaces = ["-t", String(pid), "-p", "-m"]
        if user { namespaces.append("-U") }
        return try runTool(namespaces + ["--"] + prefix + ["/opt/scalene-attach/scalene-attach"] + arguments,
                           executable: "/usr/bin/nsenter", timeout: timeout)
    }

    /// Stops the container: its init (the interpreter) first, which ends the namespace.
    func stop() {
        kill(pid, SIGKILL)
        launcher.kill()
    }

    /// What was left in the container: files in its /tmp and /dev/shm other than `expected`.
    func leftovers(except expected: Set<String> = []) -> [String] {
        ["/tmp", "/dev/shm"].flatMap { folder in
            ((try? FileManager.default.contentsOfDirectory(atPath: hostPath(folder))) ?? [])
                .filter { !expected.contains($0) }.map { folder + "/" + $0 }
        }
    }
}

@Suite("containers: PID, mount and user namespaces, from the host and from inside", .serialized)
struct ContainerTests {
    @Test("interpreters covered")
    func coverage() {
        print("container tests run on: " + Container.interpreters.map(\.label).joined(separator: ", "))
        #expect(!Container.interpreters.isEmpty)
    }

    @Test("dump from the host: host tids with the namespace's beside them, names, the inside paths",
          arguments: Container.interpreters)
    func dumpFromHost(_ python: Interpreter) throws {
        let container = try Container(python: python, script: "dump/named_threads.py")
        defer { container.stop() }
        let result = try runTool(["dump", "--pid", String(container.pid), "--json"])
        #expect(result.status == 0, "\(python): \(result.stderr)")
        let dump = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(dump["namespace_pid"] as? Int == 1, "\(python): the interpreter is pid 1 inside")
        let threads = try #require(dump["threads"] as? [[String: Any]])
        let hostTasks = Set(((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(container.pid)/task")) ?? []).compactMap { Int($0) })
        #expect(threads.count == 4, "\(python): \(threads.count) threads")
        for thread in threads {
            let tid = try #require(thread["tid"] as? Int, "\(python): every thread has a host tid: \(thread)")
            #expect(hostTasks.contains(tid), "\(python): \(tid) is a task of the process as the host sees it")
            let inner = try #require(thread["namespace_tid"] as? Int, "\(python): and its id inside")
            #expect(inner != tid && inner < 100, "\(python): \(inner) is a namespace id")
        }
        let names = Set(threads.compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["MainThread", "worker-alpha", "worker-beta"]), "\(python): \(names)")
        let files = threads.flatMap { ($0["frames"] as? [[String: Any]] ?? []).compactMap { $0["file"] as? String } }
        #expect(files.contains("/app/dump/named_threads.py"), "\(python): paths as the container sees them")
    }

    /// Interpreters × {container, rootless container}: the rootless one on the first two.
    static var memoryCases: [(Interpreter, Bool)] {
        Container.interpreters.map { ($0, false) } + Container.interpreters.prefix(2).map { ($0, true) }
    }

    @Test("memory and copies with the agent in the container; detach leaves nothing inside", arguments: memoryCases)
    func memory(_ python: Interpreter, user: Bool) throws {
        let label = "\(python)\(user ? " (rootless)" : "")"
        let container = try Container(python: python, script: "memory/allocations.py",
                                      arguments: ["/tmp/truth.json", Container.libraryFolder + "/libnativealloc.so"],
                                      user: user)
        defer { container.stop() }
        let directory = try TemporaryDirectory()
        let json = directory.file("memory.json")
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: Package.tool)
        tool.arguments = ["--pid", String(container.pid), "--json", json, "--quiet", "--output", directory.file("table.txt")]
        let errors = Pipe()
        tool.standardError = errors
        try tool.run()
        defer { if tool.isRunning { kill(tool.processIdentifier, SIGKILL); tool.waitUntilExit() } }
        #expect(AgentProbe.wait(seconds: 10) { AgentProbe.hookPointers(pid: container.pid) > 0 }, "\(label): the agent armed")
        usleep(200_000)
        container.launcher.send("go")
        _ = try container.launcher.waitForLine(prefix: "DONE", timeout: 60)
        usleep(300_000)
        kill(tool.processIdentifier, SIGINT)
        tool.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(tool.terminationStatus == 0, "\(label): \(stderr)")
        #expect(!stderr.contains("unavailable"), "\(label): \(stderr)")
        #expect(AgentProbe.hookPointers(pid: container.pid) == 0, "\(label): every hook restored after detach")
        #expect(AgentProbe.memfdDescriptors(pid: container.pid) == 0, "\(label): no descriptor of ours left")
        #expect(container.leftovers(except: ["truth.json"]).isEmpty, "\(label): left inside: \(container.leftovers(except: ["truth.json"]))")

        let truth = try JSONDecoder().decode(MemoryAccuracyTests.Truth.self,
                                             from: Data(contentsOf: URL(fileURLWithPath: container.hostPath("/tmp/truth.json"))))
        let profile = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
            as? [String: Any])
        let marks = try markers(in: Package.fixture("memory/allocations.py"))
        let file = try #require((profile["files"] as? [String: Any])?["/app/memory/allocations.py"] as? [String: Any],
                                "\(label): the fixture's file, by its path inside")
        let lines = (file["lines"] as? [[String: Any]] ?? []).reduce(into: [Int: [String: Any]]()) {
            $0[$1["lineno"] as? Int ?? 0] = $1
        }
        func value(_ mark: String, _ key: String) -> Double { lines[marks[mark] ?? -1]?[key] as? Double ?? 0 }
        let megabyte = 1024.0 * 1024.0
        let pythonMB = value("python-alloc", "n_malloc_mb"), nativeMB = value("native-alloc", "n_malloc_mb")
        print(String(format: "%@ in a container: python line %.1f MB (truth %.1f), native line %.1f MB (truth %.1f)",
                     label, pythonMB, truth.pythonAlloc / megabyte, nativeMB, truth.nativeAlloc / megabyte))
        #expect(abs(pythonMB / (truth.pythonAlloc / megabyte) - 1) <= 0.15, "\(label)")
        #expect(abs(nativeMB / (truth.nativeAlloc / megabyte) - 1) <= 0.15, "\(label)")
        #expect(value("copy", "n_copy_mb_s") > 0, "\(label): copies seen")
    }

    @Test("SIGKILL of the attacher: the agent leaves by itself, nothing stays inside", arguments: Container.interpreters)
    func attacherKilled(_ python: Interpreter) throws {
        let container = try Container(python: python, script: "memory/stress.py")
        defer { container.stop() }
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: Package.tool)
        tool.arguments = ["--pid", String(container.pid), "--quiet", "--output", "/dev/null"]
        try tool.run()
        #expect(AgentProbe.wait(seconds: 10) { AgentProbe.hookPointers(pid: container.pid) > 0 }, "\(python): armed")
        usleep(300_000)
        kill(tool.processIdentifier, SIGKILL)
        tool.waitUntilExit()
        #expect(AgentProbe.wait(seconds: 5) { !AgentProbe.agentThreadRunning(pid: container.pid) }, "\(python): the agent left")
        #expect(AgentProbe.hookPointers(pid: container.pid) == 0, "\(python): hooks removed")
        #expect(AgentProbe.memfdDescriptors(pid: container.pid) == 0, "\(python): no descriptor of ours left")
        #expect(container.leftovers().isEmpty, "\(python): left inside: \(container.leftovers())")
        container.launcher.send("rounds?")
        let first = Int(try container.launcher.waitForLine(prefix: "ROUNDS", timeout: 10).split(separator: " ").last ?? "") ?? 0
        usleep(300_000)
        container.launcher.send("rounds?")
        let second = Int(try container.launcher.waitForLine(prefix: "ROUNDS", timeout: 10).split(separator: " ").last ?? "") ?? 0
        #expect(second > first, "\(python): the target keeps working")
    }

    @Test("from inside, as a sidecar: dump, CPU and memory by the pid the namespace knows", arguments: Container.interpreters)
    func sidecar(_ python: Interpreter) throws {
        let container = try Container(python: python, script: "dump/named_threads.py")
        defer { container.stop() }
        let dump = try container.runInside(["dump", "--pid", "1", "--json"])
        #expect(dump.status == 0, "\(python): \(dump.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        let threads = try #require(object["threads"] as? [[String: Any]])
        #expect(threads.count == 4 && threads.allSatisfy { ($0["tid"] as? Int ?? 0) > 0 && $0["namespace_tid"] is NSNull },
                "\(python): ids are the namespace's own, nothing to translate")
        let profile = try container.runInside(["--pid", "1", "--duration", "1", "--quiet"])
        #expect(profile.status == 0, "\(python): \(profile.stderr)")
        #expect(!profile.stderr.contains("unavailable"), "\(python): memory from inside: \(profile.stderr)")
        #expect(profile.stdout.contains("named_threads.py"), "\(python): \(profile.stdout)")
        #expect(AgentProbe.hookPointers(pid: container.pid) == 0 && AgentProbe.memfdDescriptors(pid: container.pid) == 0)
    }

    @Test("from inside a rootless container's user namespace", arguments: Container.interpreters.prefix(1))
    func rootlessSidecar(_ python: Interpreter) throws {
        let container = try Container(python: python, script: "dump/named_threads.py", user: true)
        defer { container.stop() }
        let dump = try container.runInside(["dump", "--pid", "1"], user: true)
        #expect(dump.status == 0 && dump.stdout.contains("worker-alpha"), "\(python): \(dump.stderr)")
        // The tool's folder belongs to the host's root, which this user namespace does not map: the
        // agent there is refused (its owner cannot be vouched for), CPU profiling goes on.
        let profile = try container.runInside(["--pid", "1", "--duration", "1", "--quiet"], user: true)
        #expect(profile.status == 0, "\(python): \(profile.stderr)")
        #expect(profile.stderr.contains("refusing to inject") && profile.stderr.contains("outside this user namespace"),
                "\(python): \(profile.stderr)")
    }

    @Test("from inside without CAP_SYS_PTRACE: the clear permission error", arguments: Container.interpreters.prefix(1))
    func sidecarWithoutPrivilege(_ python: Interpreter) throws {
        let container = try Container(python: python, script: "dump/named_threads.py")
        defer { container.stop() }
        let result = try container.runInside(["dump", "--pid", "1"],
                                             prefix: ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"])
        #expect(result.status == 4, "\(python): exit \(result.status): \(result.stderr)")
        #expect(result.stderr.contains("permission denied") && result.stderr.contains("SYS_PTRACE"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line")
    }

    @Test("process_vm_readv blocked by a seccomp filter (Docker's default profile): said so, with the fix")
    func seccomp() throws {
        let python = try #require(Interpreters.installed.first)
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("dump/named_threads.py"))
        defer { fixture.kill() }
        let result = try runTool([Package.tool, "dump", "--pid", String(fixture.pid)],
                                 executable: Package.root + "/build/fixtures/seccomp-deny")
        #expect(result.status == 4, "exit \(result.status): \(result.stderr)")
        #expect(result.stderr.contains("seccomp") && result.stderr.contains("--cap-add SYS_PTRACE"), "\(result.stderr)")
        #expect(fixture.isRunningUnstopped)
    }
}

/// The library we put into other people's processes must not be one that someone else can change.
@Suite("agent library checks")
struct AgentLibraryTests {
    @Test("a writable agent file or folder is refused, and profiling goes on without memory")
    func unsafeAgentRefused() throws {
        let python = try #require(Interpreters.installed.first)
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("dump/named_threads.py"))
        defer { fixture.kill() }
        let agent = (Package.tool as NSString).deletingLastPathComponent + "/libscalene_agent.so"
        let directory = try TemporaryDirectory()
        let openFolder = directory.file("open")
        try FileManager.default.createDirectory(atPath: openFolder, withIntermediateDirectories: true)
        chmod(openFolder, 0o777)
        let safeFolder = directory.file("safe")
        try FileManager.default.createDirectory(atPath: safeFolder, withIntermediateDirectories: true)
        chmod(safeFolder, 0o755)
        chmod(directory.path, 0o755)
        for (path, mode, reason) in [(openFolder + "/agent.so", mode_t(0o644), "its folder"),
                                     (safeFolder + "/agent.so", mode_t(0o666), "it can be written")] {
            try FileManager.default.copyItem(atPath: agent, toPath: path)
            chmod(path, mode)
            let result = try runTool(["--pid", String(fixture.pid), "--duration", "0.5", "--quiet", "--output", "/dev/null"],
                                     environment: ["SCALENE_ATTACH_AGENT": path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("refusing to inject") && result.stderr.contains(reason), "\(result.stderr)")
            #expect(!AgentProbe.isLoaded(pid: fixture.pid), "nothing was loaded")
        }
        // The same file, made safe, is used.
        chmod(safeFolder + "/agent.so", 0o644)
        let result = try runTool(["--pid", String(fixture.pid), "--duration", "0.5", "--quiet", "--output", "/dev/null"],
                                 environment: ["SCALENE_ATTACH_AGENT": safeFolder + "/agent.so"])
        #expect(result.status == 0 && !result.stderr.contains("refusing"), "\(result.stderr)")
    }
}

/// CPU accuracy in a container belongs with the other CPU-accuracy measurements: run alone, so
/// that no other test competes for the cores.
extension CPUAccuracyTests {
    @Test("CPU accuracy in the container, from the host", arguments: Container.interpreters)
    func cpuAccuracy(_ python: Interpreter) throws {
        let container = try Container(python: python, script: "cpu/phases.py", arguments: ["/tmp/truth.log"])
        defer { container.stop() }
        let directory = try TemporaryDirectory()
        let json = directory.file("profile.json")
        let result = try runTool(["--pid", String(container.pid), "--duration", "3", "--rate", "200", "--json", json,
                                  "--quiet", "--cpu-only"])
        #expect(result.status == 0, "\(python): \(result.stderr)")
        usleep(600_000)
        let report = try AccuracyReport.compute(profile: json, log: container.hostPath("/tmp/truth.log"),
                                                fixture: "/app/cpu/phases.py", threads: 1,
                                                source: Package.fixture("cpu/phases.py"))
        print("\(python) in a container: max error \(String(format: "%.2f", report.max_error)) points; \(report.summary)")
        #expect(report.lines.count == 5, "\(python): every line measured")
        #expect(report.max_error <= CPUAccuracyTests.bound, "\(python): \(report.summary)")
    }
}
