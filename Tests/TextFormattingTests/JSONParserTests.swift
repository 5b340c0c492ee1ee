import Foundation
import Testing
import TextFormatting

@Suite struct JSONParserTests {
    func parse(_ text: String) throws(JSONParseError) -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    func fails(_ bytes: [UInt8]) -> Bool {
        do {
            _ = try JSONParser.parse(bytes)
            return false
        } catch {
            return true
        }
    }

    @Test func valuesOfEveryKind() throws {
        #expect(try parse(#" {"a": [1, -2.5e3, true, false, null], "b": {}, "c": [], "d": "x"} "#)
            == .object(["a": .array([.number(1), .number(-2500), .bool(true), .bool(false), .null]),
                        "b": .object([:]), "c": .array([]), "d": .string("x")]))
        #expect(try parse("0") == .number(0))
        #expect(try parse("-0.0") == .number(-0.0))
        #expect(try parse("1E+2") == .number(100))
        #expect(try parse("123456789012345") == .number(123456789012345))
        #expect(try parse(#"{"k": 1, "k": 2}"#) == .object(["k": .number(2)]), "the last of a repeated name")
    }

    @Test func stringEscapes() throws {
        #expect(try parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{8}\u{c}\n\r\t"))
        #expect(try parse(#""\u00e9\u2713 é✓""#) == .string("é✓ é✓"))
        #expect(try parse(#""\ud83d\ude00""#) == .string("😀"), "a surrogate pair is one scalar")
        #expect(try parse(#""a\ud800b""#) == .string("a\u{FFFD}b"), "a lone high surrogate")
        #expect(try parse(#""\udc00\ud800\u0041""#) == .string("\u{FFFD}\u{FFFD}A"), "lone low, then high before a non-surrogate")
    }

    @Test func whatJSONWriterWritesReadsBack() throws {
        let tree: [String: Any] = ["lines": [["lineno": 3, "n": 0.125, "s": "tab\there \u{1} \"q\""]], "flag": true,
                                   "none": JSONNull(), "big": 1796219151.6134822, "neg": -7]
        let value = try JSONParser.parse(JSONWriter.bytes(tree))
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members["flag"] == .bool(true) && members["none"] == .null && members["neg"] == .number(-7))
        #expect(members["big"] == .number(1796219151.6134822))
        #expect(members["lines"] == .array([.object(["lineno": .number(3), "n": .number(0.125),
                                                     "s": .string("tab\there \u{1} \"q\"")])]))
    }

    @Test func malformedInputIsAnErrorWithItsOffset() {
        for text in ["", " ", "nul", "tru", "[1,]", "[1 2]", "{\"a\" 1}", "{\"a\":}", "{a:1}", "{\"a\":1,}", "01", "1.",
                     ".5", "-", "1e", "+1", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "[1]]", "{} {}", "\"tab\there\"",
                     "NaN", "Infinity", "[\"a\"", "'x'"] {
            #expect(fails(Array(text.utf8)), "\(text)")
        }
        do {
            _ = try JSONParser.parse(Array("[1, 2, x]".utf8))
        } catch {
            #expect(error.offset == 7)
        }
    }

    @Test("hostile input: deep nesting, huge numbers, invalid UTF-8, truncation; never a trap")
    func hostileInput() throws {
        // Nesting: up to the limit reads, beyond it is refused (not a stack overflow).
        let limit = JSONParser.maximumDepth
        #expect(!fails(Array((String(repeating: "[", count: limit) + String(repeating: "]", count: limit)).utf8)))
        #expect(fails(Array((String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)).utf8)))
        #expect(fails(Array(String(repeating: "[", count: 1_000_000).utf8)))
        #expect(fails(Array(String(repeating: "{\"a\":", count: 100_000).utf8)))
        // Numbers beyond a Double are refused; below its precision they round.
        #expect(fails(Array("1e400".utf8)) && fails(Array("-1e309".utf8)))
        #expect(fails(Array(("1" + String(repeating: "0", count: 400)).utf8)))
        #expect(try parse("1e-400") == .number(0))
        #expect(try parse("12345678901234567890123") == .number(1.2345678901234568e22))
        // Bytes that are not UTF-8 inside a string, and outside one.
        #expect(fails([0x22, 0x61, 0xFF, 0x62, 0x22]))
        #expect(fails([0x22, 0xC3, 0x22]), "a truncated sequence")
        #expect(fails([0x22, 0xED, 0xA0, 0x80, 0x22]), "an encoded surrogate")
        #expect(fails([0xEF, 0xBB, 0xBF, 0x7B, 0x7D]), "a byte-order mark is not JSON")
        #expect(fails([0x5B, 0x00, 0x5D]))
        // Every prefix of a valid document: an error or (for the whole) a value, never a trap.
        let document = Array(#"{"files": {"a.py": {"lines": [{"lineno": 1, "n": -1.5e-3, "s": "\u00e9\ud83d\ude00"}]}}, "x": [true, false, null]}"#.utf8)
        for cut in 0..<document.count { #expect(fails(Array(document[0..<cut])), "prefix of \(cut) bytes") }
        #expect(!fails(document))
        // Random bytes and random mutations of the document.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var mutated = document
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                mutated[Int.random(in: 0..<mutated.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            _ = try? JSONParser.parse(mutated)
            _ = try? JSONParser.parse((0..<Int.random(in: 0..<64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
    }
}

@Suite struct FileSystemTests {
    func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "scalene-text-\(UUID().uuidString)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func readFileReadsWholeFilesAndProcFiles() throws {
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let path = try temporaryFile(bytes)
        defer { unlink(path) }
        #expect(try FileSystem.readFile(path) == bytes)
        #expect(throws: FileError.self, "over the limit") { try FileSystem.readFile(path, limit: 1000) }
        // /proc files say size 0 but have content.
        let status = try FileSystem.readFile("/proc/self/status")
        #expect(String(decoding: status, as: UTF8.self).hasPrefix("Name:"))
        #expect(throws: FileError.self) { try FileSystem.readFile("/dev/zero", limit: 1 << 16) }
        do { _ = try FileSystem.readFile("/nonexistent/file") } catch {
            #expect(error.errno == ENOENT && error.reason == String(cString: strerror(ENOENT)))
        }
        #expect(try FileSystem.readFile(try temporaryFile([])) == [])
    }

    @Test func readTextDropsAByteOrderMarkAndRefusesInvalidUTF8() throws {
        let bom = try temporaryFile([0xEF, 0xBB, 0xBF] + Array("x = 1\n".utf8))
        let bad = try temporaryFile([0x61, 0xFF, 0x62])
        defer { unlink(bom); unlink(bad) }
        #expect(FileSystem.readText(bom) == "x = 1\n")
        #expect(FileSystem.readText(bad) == nil)
        #expect(FileSystem.readText("/nonexistent") == nil)
    }

    @Test func entriesAndAccess() throws {
        let folder = NSTemporaryDirectory() + "scalene-entries-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for name in ["a", "b c", "é"] { _ = FileManager.default.createFile(atPath: folder + "/" + name, contents: Data()) }
        #expect(Set(try FileSystem.entries(of: folder)) == ["a", "b c", "é"])
        #expect(throws: FileError.self) { try FileSystem.entries(of: folder + "/missing") }
        #expect(FileSystem.isReadable(folder + "/a") && !FileSystem.isReadable(folder + "/missing"))
        #expect(FileSystem.isExecutable("/bin/sh") && !FileSystem.isExecutable(folder + "/a"))
        #expect(Environment.value("PATH") == ProcessInfo.processInfo.environment["PATH"])
        #expect(Environment.value("SCALENE_SURELY_UNSET_VARIABLE") == nil)
        #expect(Environment.values(["PATH", "SCALENE_SURELY_UNSET_VARIABLE"]).keys.sorted() == ["PATH"])
    }
}

@Suite struct PathAndStringTests {
    @Test func absolutePathsAsFileURLsMadeThem() {
        let here = FileManager.default.currentDirectoryPath
        #expect(Path.absolute("out.json") == here + "/out.json")
        #expect(Path.absolute("dir/x.json") == here + "/dir/x.json")
        #expect(Path.absolute("/dev/null") == "/dev/null")
        #expect(Path.absolute("/a/b/") == "/a/b")
        #expect(Path.absolute("/a/./b//c/../d") == "/a/b/d")
        #expect(Path.absolute("/..") == "/")
        #expect(Path.lastComponent(of: "/a/b.json") == "b.json")
        #expect(Path.lastComponent(of: "/a/b/") == "b")
        #expect(Path.lastComponent(of: "/") == "")
    }

    @Test func replacingAndContaining() {
        #expect("a<b<<c".replacingAll("<", with: "&lt;") == "a&lt;b&lt;&lt;c")
        #expect("\\u003cx\\u003e".replacingAll("\\u003c", with: "<") == "<x\\u003e")
        #expect("aaa".replacingAll("aa", with: "b") == "ba", "left to right, not overlapping")
        #expect("é<é".replacingAll("<", with: "") == "éé")
        #expect("x".replacingAll("", with: "y") == "x")
        #expect("async def f():".containsBytes(of: "def") && !"class C:".containsBytes(of: "def"))
        #expect("".containsBytes(of: "") && !"".containsBytes(of: "a"))
    }
}
