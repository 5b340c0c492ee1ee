import CPythonLayouts
import Foundation
import Testing
import PythonInspector

@Suite("line tables from raw bytes")
struct LineTableTests {
    @Test("3.8–3.9 lnotab: increments, a negative line delta, and a split large jump")
    func lnotab() {
        // first line 10; bytes 0-3 line 10; 4-7 line 12; 8-13 line 11 (delta -1); then a 300-line
        // jump split as (6, 127), (0, 127), (0, 46) to line 311 from byte 14.
        let bytes: [UInt8] = [4, 2, 4, 0xff, 6, 127, 0, 127, 0, 46]
        let table = LineTable.decode(bytes, format: .lnotab, firstLine: 10)
        #expect(table.line(atCodeUnit: 0) == 10)
        #expect(table.line(atCodeUnit: 1) == 10)
        #expect(table.line(atCodeUnit: 2) == 12)
        #expect(table.line(atCodeUnit: 4) == 11)
        #expect(table.line(atCodeUnit: 6) == 11)
        #expect(table.line(atCodeUnit: 7) == 311)
        #expect(table.line(atCodeUnit: 500) == 311)
        #expect(table.line(atCodeUnit: -1) == 10, "a frame that has not started is at its first line")
    }

    @Test("3.10 linetable: a no-line entry keeps the running line")
    func linetable310() {
        // (6 bytes, +1) line 6; (4 bytes, no line); (2 bytes, -2) line 4; (8 bytes, +3) line 7
        let bytes: [UInt8] = [6, 1, 4, 0x80, 2, 0xfe, 8, 3]
        let table = LineTable.decode(bytes, format: .lineTable310, firstLine: 5)
        #expect(table.line(atCodeUnit: 0) == 6)
        #expect(table.line(atCodeUnit: 2) == 6)
        #expect(table.line(atCodeUnit: 3) == nil)
        #expect(table.line(atCodeUnit: 4) == nil)
        #expect(table.line(atCodeUnit: 5) == 4)
        #expect(table.line(atCodeUnit: 6) == 7)
        #expect(table.line(atCodeUnit: 9) == 7)
        #expect(table.line(atCodeUnit: 10) == nil, "past the end of the table")
    }

    @Test("3.11+ location table: every entry form")
    func locations() {
        var bytes = [UInt8]()
        // code 13 (no columns), 2 units, line delta +3 (svarint 6) → line 13
        bytes += [0x80 | 13 << 3 | 1, 6]
        // short form code 5, 1 unit, same line 13, one column byte
        bytes += [0x80 | 5 << 3 | 0, 0x12]
        // one-line form code 11 (delta +1), 3 units → line 14, two column bytes
        bytes += [0x80 | 11 << 3 | 2, 4, 9]
        // no location, 1 unit
        bytes += [0x80 | 15 << 3 | 0]
        // long form, 2 units, line delta -4 (svarint 9), end line delta 0, columns 1 and 5
        bytes += [0x80 | 14 << 3 | 1, 9, 0, 1, 5]
        // code 13 with a multi-byte varint: +100 lines (svarint 200 = 0b11_001000: 8 | 64, 3)
        bytes += [0x80 | 13 << 3 | 0, 8 | 64, 3]
        let table = LineTable.decode(bytes, format: .locationTable, firstLine: 10)
        #expect(table.line(atCodeUnit: 0) == 13)
        #expect(table.line(atCodeUnit: 1) == 13)
        #expect(table.line(atCodeUnit: 2) == 13)
        #expect(table.line(atCodeUnit: 3) == 14)
        #expect(table.line(atCodeUnit: 5) == 14)
        #expect(table.line(atCodeUnit: 6) == nil)
        #expect(table.line(atCodeUnit: 7) == 10)
        #expect(table.line(atCodeUnit: 8) == 10)
        #expect(table.line(atCodeUnit: 9) == 110)
    }

    @Test("truncated and garbage tables never trap")
    func garbage() {
        for format in [LineTableFormat.lnotab, .lineTable310, .locationTable] {
            for length in 0..<40 {
                let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
                let table = LineTable.decode(bytes, format: format, firstLine: 1)
                for unit in -2..<50 { _ = table.line(atCodeUnit: unit) }
            }
            _ = LineTable.decode([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                                 format: format, firstLine: Int.max / 2)
        }
    }

    /// Every installed CPython decodes its own line tables; ours must agree for every code unit of
    /// hundreds of real code objects.
    @Test("agrees with CPython's own decoder on real code objects", arguments: installedPythons())
    func agreesWithCPython(python: String) throws {
        let script = packageRoot() + "/fixtures/linetables/dump_line_tables.py"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        struct Entry: Decodable {
            var name: String
            var first: Int
            var format: String
            var table: String
            var lines: [Int?]
        }
        let entries = try JSONDecoder().decode([Entry].self, from: data)
        #expect(entries.count > 100)
        var mismatches = 0
        for entry in entries {
            let format: LineTableFormat = entry.format == "lnotab" ? .lnotab
                : entry.format == "linetable310" ? .lineTable310 : .locationTable
            let table = LineTable.decode(hexBytes(entry.table), format: format, firstLine: entry.first)
            for (unit, expected) in entry.lines.enumerated() where table.line(atCodeUnit: unit) != expected {
                mismatches += 1
                if mismatches < 5 {
                    Issue.record("\(entry.name) unit \(unit): expected \(String(describing: expected)), got \(String(describing: table.line(atCodeUnit: unit)))")
                }
            }
        }
        #expect(mismatches == 0)
    }
}

func hexBytes(_ hex: String) -> [UInt8] {
    var bytes = [UInt8]()
    var index = hex.startIndex
    while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
        bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
        index = next
    }
    return bytes
}

func packageRoot() -> String {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}

/// Every CPython >= 3.8 on the machine (pyenv versions and /usr/bin/python3).
func installedPythons() -> [String] {
    let root = ProcessInfo.processInfo.environment["PYENV_ROOT"] ?? NSHomeDirectory() + "/.pyenv"
    var paths = ((try? FileManager.default.contentsOfDirectory(atPath: root + "/versions")) ?? [])
        .filter { v in v.split(separator: ".").count >= 2 && v.hasPrefix("3.") && (Int(v.split(separator: ".")[1]) ?? 0) >= 8 }
        .sorted { $0.compare($1, options: .numeric) == .orderedAscending }
        .map { "\(root)/versions/\($0)/bin/python3" }
    if FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") { paths.append("/usr/bin/python3") }
    return paths
}
