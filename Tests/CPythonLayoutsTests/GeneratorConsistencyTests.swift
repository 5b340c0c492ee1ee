import CPythonLayouts
import Foundation
import Testing

/// The committed tables must be what the installed interpreters' headers produce, and the JSON
/// copy must say the same as the Swift tables.
@Suite struct GeneratorConsistencyTests {
    @Test(.timeLimit(.minutes(5)))
    func committedTablesMatchInstalledHeaders() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Fixtures.generatorScript.path, "--check"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // Read before waiting: a full pipe would block the generator.
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // Interpreters the machine lacks are reported, not failed: show which.
        let lines = text.split(separator: "\n")
        if let skipped = lines.firstIndex(where: { $0.hasPrefix("skipped:") || $0.hasPrefix("kept from") }) {
            print("generate_layouts.py --check:\n" + lines[skipped...].joined(separator: "\n"))
        }
        #expect(process.terminationStatus == 0, "generate_layouts.py --check failed:\n\(text)")
    }

    @Test func jsonAndSwiftTablesAgree() throws {
        let records = try Fixtures.layouts().objects("interpreters")
        #expect(records.count == LayoutTables.all.count)
        for (record, entry) in zip(records, LayoutTables.all) {
            let version = try LayoutJSON.version(try record.string("version"))
            #expect(entry.version == version)
            #expect(entry.prefix == (try record.string("prefix")))
            #expect(entry.objects == (try LayoutJSON.objects(try record.object("objects"))))
            #expect(entry.allocator == (try LayoutJSON.allocator(try record.object("allocator"))))
            #expect(entry.frameOwnerCStack == record.optionalInt("frameOwnerCStack"))
            #expect(entry.stackChunk == (try LayoutJSON.stackChunk(record)))
            #expect(entry.debugOffsetsSize == record.optionalInt("debugOffsetsSize"))
            if try record.string("layoutSource") == "headers" {
                #expect(entry.layout == (try LayoutJSON.layout(record)), "\(version)")
            } else {
                #expect(entry.layout == nil, "\(version): the layout comes from _Py_DebugOffsets")
            }
        }
    }

    @Test func jsonAndSwiftOpcodeTablesAgree() throws {
        let tables = try Fixtures.layouts().objects("opcodeTables")
        #expect(tables.count == OpcodeTables.all.count)
        for (json, table) in zip(tables, OpcodeTables.all) {
            #expect(table.minor == (try json.int("minor")))
            #expect(table.micro == json.optionalInt("micro"))
            #expect(table.extendedArg == UInt8(try json.int("extendedArg")))
            let names = try json.array("names").map { $0 as? String }
            #expect(table.names == names)
            #expect(table.deopt == (try json.array("deopt")).compactMap { ($0 as? Int).map(UInt8.init) })
            #expect(table.cacheEntries == (try json.array("cacheEntries")).compactMap { ($0 as? Int).map(UInt8.init) })
            let family = Set((try json.array("callFamily")).compactMap { $0 as? Int })
            #expect(table.callFamily == (0..<256).map { family.contains($0) })
        }
    }
}
