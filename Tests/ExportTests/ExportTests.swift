import Export
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A folder removed at the end of a test.
final class Folder {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "scalene-export-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
    var entries: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}

@Suite("snapshot files")
struct OutputFileTests {
    @Test("one file per process: the pid goes before the first extension of the name, never into a folder")
    func pidInPath() {
        #expect(OutputFile.path("/var/tmp/web.json", withPID: 12) == "/var/tmp/web.12.json")
        #expect(OutputFile.path("out/app.pb.gz", withPID: 7) == "out/app.7.pb.gz")
        #expect(OutputFile.path("/srv/v1.2/profile", withPID: 3) == "/srv/v1.2/profile.3")
        #expect(OutputFile.path(".profile.json", withPID: 5) == ".profile.5.json")
        #expect(OutputFile.path("table", withPID: 9) == "table.9")
    }

    @Test("timestamped snapshots: exactly N kept, oldest removed, other files untouched")
    func rotation() throws {
        let folder = try Folder()
        FileManager.default.createFile(atPath: folder.file("profile.notes.pb.gz"), contents: Data("keep".utf8))
        FileManager.default.createFile(atPath: folder.file("other.20261201T153000.000Z.pb.gz"), contents: Data())
        let output = OutputFile(path: folder.file("profile.pb.gz"), keep: 3)
        var written = [String]()
        for index in 0..<7 {
            written.append(try output.writeSnapshot(Array("snapshot \(index)".utf8)))
        }
        let snapshots = output.snapshots()
        #expect(snapshots == Array(written.suffix(3)), "the three newest, in order")
        for (offset, path) in snapshots.enumerated() {
            #expect(try String(contentsOfFile: path, encoding: .utf8) == "snapshot \(4 + offset)")
            let name = (path as NSString).lastPathComponent
            #expect(name.hasPrefix("profile.") && name.hasSuffix(".pb.gz"))
        }
        #expect(folder.entries.contains("profile.notes.pb.gz") && folder.entries.contains("other.20261201T153000.000Z.pb.gz"))
        #expect(!folder.entries.contains { $0.contains(".tmp-") }, "no temporary file left: \(folder.entries)")
        try output.write(Array("final".utf8))
        #expect(try String(contentsOfFile: folder.file("profile.pb.gz"), encoding: .utf8) == "final")
    }

    @Test("a device is written in place, never with timestamped files beside it")
    func device() throws {
        let before = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev")) ?? []).filter { $0.hasPrefix("null.") }
        let output = OutputFile(path: "/dev/null", keep: 2)
        #expect(try output.writeSnapshot(Array("x".utf8)) == "/dev/null")
        let after = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev")) ?? []).filter { $0.hasPrefix("null.") }
        #expect(after == before)
        var info = stat()
        #expect(stat("/dev/null", &info) == 0 && (info.st_mode & S_IFMT) == S_IFCHR, "/dev/null is still a device")
    }

    @Test("a renamed folder is followed until reopen(), then the path is used again")
    func reopen() throws {
        let folder = try Folder()
        let logs = folder.file("logs")
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let output = OutputFile(path: logs + "/p.json")
        try output.write(Array("1".utf8))
        try FileManager.default.moveItem(atPath: logs, toPath: logs + ".1")
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try output.write(Array("2".utf8))
        #expect(try String(contentsOfFile: logs + ".1/p.json", encoding: .utf8) == "2", "still the folder it had open")
        #expect(!FileManager.default.fileExists(atPath: logs + "/p.json"))
        output.reopen()
        try output.write(Array("3".utf8))
        #expect(try String(contentsOfFile: logs + "/p.json", encoding: .utf8) == "3")
    }

    @Test("a deleted folder fails as folderMissing, and works again once it is back")
    func missingFolder() throws {
        let folder = try Folder()
        let logs = folder.file("gone")
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let output = OutputFile(path: logs + "/p.json")
        try output.write(Array("1".utf8))
        try FileManager.default.removeItem(atPath: logs)
        #expect(throws: WriteFailure.self) { try output.write(Array("2".utf8)) }
        do { try output.write(Array("2".utf8)) } catch { #expect(error.kind == .folderMissing) }
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try output.write(Array("3".utf8))
        #expect(try String(contentsOfFile: logs + "/p.json", encoding: .utf8) == "3")
    }
}
