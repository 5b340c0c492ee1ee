import CPythonLayouts
import Foundation
import Testing

/// `OpcodeTable.instructionStart` on bytecode captured from each installed interpreter
/// (fixtures/generators/bytecode_vectors.json: adaptive bytecode after warm-up, and the instruction
/// starts `dis` reported), on hand-made bytecode, and on garbage.
@Suite struct InstructionStartTests {
    struct Vector {
        var version: PythonVersion
        var function: String
        var code: [UInt8]
        /// (unit, opcode) of every instruction and EXTENDED_ARG prefix, as `dis` saw them.
        var starts: [(unit: Int, opcode: UInt8)]
    }

    static func vectors() throws -> [Vector] {
        let root = try Fixtures.json("fixtures/generators/bytecode_vectors.json")
        var result = [Vector]()
        for entry in try root.objects("versions") {
            let version = try LayoutJSON.version(try entry.string("version"))
            for vector in try entry.objects("vectors") {
                let hex = Array(try vector.string("code").utf8)
                var code = [UInt8]()
                for index in stride(from: 0, to: hex.count - 1, by: 2) {
                    guard let byte = UInt8(String(decoding: hex[index...index + 1], as: UTF8.self), radix: 16) else {
                        throw FixtureError("bad hex in \(version) vector")
                    }
                    code.append(byte)
                }
                let starts = try vector.array("instructions").map { item -> (unit: Int, opcode: UInt8) in
                    guard let pair = item as? [Int], pair.count == 2 else { throw FixtureError("bad instruction") }
                    return (pair[0], UInt8(pair[1]))
                }
                result.append(Vector(version: version, function: try vector.string("function"), code: code, starts: starts))
            }
        }
        return result
    }

    @Test func vectorsCoverEveryMinorVersion() throws {
        let minors = Set(try Self.vectors().map(\.version.minor))
        #expect(minors == Set(8...15))
    }

    /// Every unit of every instruction maps back to that instruction; units of an EXTENDED_ARG
    /// prefix map to the instruction it prefixes.
    @Test func everyUnitMapsToItsInstruction() throws {
        for vector in try Self.vectors() {
            let table = try #require(OpcodeTables.table(for: vector.version))
            let units = vector.code.count / 2
            // The real instruction each start belongs to: itself, or the next non-prefix.
            var owner = [(start: Int, opcode: UInt8)?](repeating: nil, count: vector.starts.count)
            var next: (start: Int, opcode: UInt8)?
            for index in vector.starts.indices.reversed() {
                let start = vector.starts[index]
                if !table.isExtendedArg(start.opcode) { next = (start.unit, start.opcode) }
                owner[index] = next
            }
            for (index, start) in vector.starts.enumerated() {
                let end = index + 1 < vector.starts.count ? vector.starts[index + 1].unit : units
                let expected = try #require(owner[index])
                for unit in start.unit..<end {
                    let found = table.instructionStart(containing: unit, in: vector.code)
                    #expect(found?.start == expected.start && found?.opcode == expected.opcode,
                            "\(vector.version) \(vector.function) unit \(unit): \(String(describing: found)) != \(expected)")
                }
            }
        }
    }

    /// The case the reader depends on: a 3.11/3.12 frame in a CALL points at the CALL's last cache unit.
    @Test func cacheUnitsOfCallsMapBackToTheCall() throws {
        var checked = 0
        for vector in try Self.vectors() where vector.version.minor >= 11 {
            let table = try #require(OpcodeTables.table(for: vector.version))
            for start in vector.starts where table.instructionClass(of: start.opcode) == .call {
                let caches = table.cacheUnits(after: start.opcode)
                for unit in start.unit...(start.unit + caches) {
                    let found = table.instructionStart(containing: unit, in: vector.code)
                    #expect(found?.start == start.unit && found?.opcode == start.opcode)
                    #expect(found.map { table.instructionClass(of: $0.opcode) } == .call)
                }
                if caches > 0 { checked += 1 }
            }
        }
        #expect(checked >= 6)   // 3.11 (PRECALL + CALL), 3.12, 3.13, instrumented forms
    }

    @Test func instrumentedCallsAreCalls() throws {
        let instrumented = try Self.vectors().filter { $0.function == "sample_instrumented" }
        #expect(Set(instrumented.map(\.version.minor)) == [12, 13, 14, 15])
        for vector in instrumented {
            let table = try #require(OpcodeTables.table(for: vector.version))
            let calls = vector.starts.filter { table.name(of: $0.opcode) == "INSTRUMENTED_CALL" }
            #expect(!calls.isEmpty)
            for call in calls {
                let lastCache = call.unit + table.cacheUnits(after: call.opcode)
                #expect(table.cacheUnits(after: call.opcode) == 3)
                let found = table.instructionStart(containing: lastCache, in: vector.code)
                #expect(found?.start == call.unit)
                #expect(found.map { table.instructionClass(of: $0.opcode) } == .call)
            }
        }
    }

    @Test func extendedArgPrefixesBelongToTheNextInstruction() throws {
        for vector in try Self.vectors() where vector.function == "wide" {
            let table = try #require(OpcodeTables.table(for: vector.version))
            let prefixes = vector.starts.filter { table.isExtendedArg($0.opcode) }
            #expect(!prefixes.isEmpty, "\(vector.version)")
            for prefix in prefixes {
                let found = try #require(table.instructionStart(containing: prefix.unit, in: vector.code))
                #expect(found.start > prefix.unit)
                #expect(!table.isExtendedArg(found.opcode))
            }
        }
    }

    // Hand-made bytecode: [opcode, oparg] pairs.
    static func code(_ table: OpcodeTable, _ names: [String]) throws -> [UInt8] {
        try names.flatMap { name -> [UInt8] in
            if name == "cache" { return [0, 0] }   // an inline-cache unit
            let index = try #require(table.names.firstIndex(of: name))
            return [UInt8(index), 1]
        }
    }

    @Test func handMadeExtendedArgBeforeCall() throws {
        for minor in [11, 12, 13, 14, 15] {
            let table = try #require(OpcodeTables.table(for: PythonVersion(major: 3, minor: minor)))
            let caches = [String](repeating: "cache", count: table.cacheUnits(after: UInt8(try #require(table.names.firstIndex(of: "CALL")))))
            let code = try Self.code(table, ["NOP", "EXTENDED_ARG", "EXTENDED_ARG", "CALL"] + caches + ["NOP"])
            let call = UInt8(try #require(table.names.firstIndex(of: "CALL")))
            #expect(table.instructionStart(containing: 0, in: code)?.start == 0)
            for unit in 1...(3 + caches.count) {
                let found = table.instructionStart(containing: unit, in: code)
                #expect(found?.start == 3 && found?.opcode == call, "3.\(minor) unit \(unit)")
            }
            #expect(table.instructionStart(containing: 4 + caches.count, in: code)?.start == 4 + caches.count)
        }
        let table311 = try #require(OpcodeTables.table(for: PythonVersion(major: 3, minor: 11)))
        let quick = try Self.code(table311, ["EXTENDED_ARG_QUICK", "NOP"])
        #expect(table311.instructionStart(containing: 0, in: quick)?.start == 1)
    }

    @Test func truncatedAndGarbageInputGiveNil() throws {
        let table = try #require(OpcodeTables.table(for: PythonVersion(major: 3, minor: 12)))
        let call = try Self.code(table, ["NOP", "CALL", "cache", "cache", "cache"])
        #expect(table.instructionStart(containing: 4, in: call)?.start == 1)
        // The CALL's caches are cut off: its units give nil, the NOP before it is still found.
        let cut = Array(call.prefix(6))
        #expect(table.instructionStart(containing: 0, in: cut)?.start == 0)
        #expect(table.instructionStart(containing: 1, in: cut) == nil)
        #expect(table.instructionStart(containing: 2, in: cut) == nil)
        // Trailing prefixes with nothing to prefix.
        let dangling = try Self.code(table, ["NOP", "EXTENDED_ARG"])
        #expect(table.instructionStart(containing: 1, in: dangling) == nil)
        // Out of range.
        for unit in [-1, 5, 6, Int.max, Int.min] {
            #expect(table.instructionStart(containing: unit, in: call) == nil)
        }
        #expect(table.instructionStart(containing: 0, in: []) == nil)
        #expect(table.instructionStart(containing: 0, in: [1]) == nil)   // half a unit
    }

    @Test func randomBytesNeverTrap() {
        var generator = SplitMix64(seed: 42)
        for table in OpcodeTables.all {
            for length in [0, 1, 2, 3, 17, 64, 257] {
                let code = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                for unit in -2...(length / 2 + 2) {
                    if let found = table.instructionStart(containing: unit, in: code) {
                        #expect(found.start >= 0 && found.start < length / 2)
                        #expect(code[found.start * 2] == found.opcode)
                    }
                }
            }
        }
    }
}
