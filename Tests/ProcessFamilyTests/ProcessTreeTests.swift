import Foundation
import ProcessFamily
import Testing

/// A /proc of our own: one folder per pid holding a stat file.
final class FakeProc {
    let root: String

    init() throws {
        root = NSTemporaryDirectory() + "scalene-proc-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// A stat line as the kernel writes it: fields 3 (state), 4 (ppid) and 22 (start time) matter.
    func add(pid: Int32, parent: Int32, state: Character = "S", start: UInt64 = 100, command: String = "python3") throws {
        let folder = "\(root)/\(pid)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var fields = [String(state), String(parent)] + Array(repeating: "0", count: 17) + [String(start)] + Array(repeating: "0", count: 30)
        fields[2] = String(pid) // pgrp, anything
        let line = "\(pid) (\(command)) " + fields.joined(separator: " ") + "\n"
        try line.write(toFile: folder + "/stat", atomically: true, encoding: .utf8)
    }
}

@Suite("process tree")
struct ProcessTreeTests {
    @Test("a stat line: parent, state and start time, with spaces and parentheses in the command")
    func parsesStat() throws {
        let line = "4242 (my (odd) worker) S 4200 4242 4200 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 200 "
            + "18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0\n"
        let status = try #require(ProcessStatus(parsing: Array(line.utf8), pid: 4242))
        #expect(status.parent == 4200)
        #expect(status.state == "S")
        #expect(status.identity == ProcessIdentity(pid: 4242, startTicks: 987654))
        #expect(!status.hasExited)
        #expect(ProcessStatus(parsing: Array("4242 (cut".utf8), pid: 4242) == nil)
        #expect(ProcessStatus(parsing: Array("4242 (short) S 1 2".utf8), pid: 4242) == nil)
    }

    @Test("descendants: children and grandchildren, parents first; zombies, strangers and the root left out")
    func descendants() throws {
        let proc = try FakeProc()
        try proc.add(pid: 10, parent: 1)
        try proc.add(pid: 11, parent: 10, start: 200)
        try proc.add(pid: 12, parent: 10, start: 201)
        try proc.add(pid: 13, parent: 11, start: 300, command: "sh -c (x)")
        try proc.add(pid: 14, parent: 13, start: 301)
        try proc.add(pid: 15, parent: 10, state: "Z")
        try proc.add(pid: 20, parent: 1)
        try proc.add(pid: 21, parent: 20)
        let found = ProcessTree.descendants(of: 10, procRoot: proc.root)
        #expect(Set(found.map(\.identity.pid)) == [11, 12, 13, 14])
        let order = found.map(\.identity.pid)
        #expect(try #require(order.firstIndex(of: 11)) < #require(order.firstIndex(of: 13)))
        #expect(try #require(order.firstIndex(of: 13)) < #require(order.firstIndex(of: 14)))
        #expect(ProcessTree.descendants(of: 99, procRoot: proc.root).isEmpty)
    }

    @Test("a parent loop (pids reused while /proc is read) ends")
    func loopEnds() throws {
        let proc = try FakeProc()
        try proc.add(pid: 30, parent: 31)
        try proc.add(pid: 31, parent: 30)
        #expect(Set(ProcessTree.descendants(of: 30, procRoot: proc.root).map(\.identity.pid)) == [31])
    }

    @Test("the watcher: a process that is not Python is not reported; the family it saw is")
    func watcherSkipsNonPython() throws {
        // This test process is not Python: as a child of a fake root it is examined and left out
        // without a line (a shell between a server and its workers is not worth one).
        let proc = try FakeProc()
        let me = getpid()
        try proc.add(pid: 40, parent: 1)
        try proc.add(pid: me, parent: 40, start: 0)
        let watcher = FamilyWatcher(root: 40, procRoot: proc.root)
        watcher.settleSeconds = 0
        let family = watcher.poll(now: 0)
        #expect(family.found.isEmpty)
        #expect(family.skipped.isEmpty)
        #expect(family.alive.map(\.pid).sorted() == [40, me].sorted())
    }
}
