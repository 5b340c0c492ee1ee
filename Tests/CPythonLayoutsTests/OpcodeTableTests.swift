import CPythonLayouts
import Testing

@Suite struct OpcodeTableTests {
    func table(_ minor: Int) throws -> OpcodeTable {
        try #require(OpcodeTables.table(for: PythonVersion(major: 3, minor: minor, micro: 0)))
    }

    /// Opcode of a name (any form) in a table.
    func opcode(_ name: String, in table: OpcodeTable) throws -> UInt8 {
        let index = try #require(table.names.firstIndex(of: name), "\(name) in \(table.versionDescription)")
        return UInt8(index)
    }

    @Test func everySupportedMinorHasATable() throws {
        for minor in 8...15 {
            let table = try table(minor)
            #expect(table.names.count == 256 && table.deopt.count == 256)
            #expect(table.cacheEntries.count == 256 && table.callFamily.count == 256)
            #expect(table.name(of: table.extendedArg) == "EXTENDED_ARG")
            #expect(table.base(of: table.extendedArg) == table.extendedArg)
            #expect(table.cacheUnits(after: table.extendedArg) == 0)
        }
        #expect(OpcodeTables.table(for: PythonVersion(major: 3, minor: 7, micro: 16)) == nil)
        #expect(OpcodeTables.table(for: PythonVersion(major: 3, minor: 16, micro: 0)) == nil)
        // Debian's 3.11.2 and pyenv's 3.11.7 agree: one table for 3.11.
        #expect(OpcodeTables.table(for: PythonVersion(major: 3, minor: 11, micro: 2))
                == OpcodeTables.table(for: PythonVersion(major: 3, minor: 11, micro: 7)))
    }

    @Test(arguments: [
        (8, ["CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX", "CALL_METHOD"]),
        (9, ["CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX", "CALL_METHOD"]),
        (10, ["CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX", "CALL_METHOD"]),
        (11, ["PRECALL", "CALL", "CALL_FUNCTION_EX"]),
        (12, ["CALL", "CALL_FUNCTION_EX"]),
        (13, ["CALL", "CALL_KW", "CALL_FUNCTION_EX"]),
        (14, ["CALL", "CALL_KW", "CALL_FUNCTION_EX"]),
        (15, ["CALL", "CALL_KW", "CALL_FUNCTION_EX"]),
    ])
    func callFamilyBases(minor: Int, names: [String]) throws {
        let table = try table(minor)
        for name in names {
            let op = try opcode(name, in: table)
            #expect(table.instructionClass(of: op) == .call, "\(name) in 3.\(minor)")
            #expect(table.base(of: op) == op)
        }
        // Only those bases (and their forms) are in the family.
        let bases = Set(try names.map { try opcode($0, in: table) })
        for op in UInt8.min...UInt8.max where table.callFamily[Int(op)] {
            #expect(bases.contains(table.base(of: op)), "\(table.name(of: op) ?? "?") in 3.\(minor)")
        }
    }

    @Test(arguments: [
        (11, "PRECALL_BUILTIN_FAST_WITH_KEYWORDS", "PRECALL"),
        (11, "PRECALL_NO_KW_LEN", "PRECALL"),
        (11, "CALL_PY_EXACT_ARGS", "CALL"),
        (11, "CALL_ADAPTIVE", "CALL"),
        (12, "CALL_PY_EXACT_ARGS", "CALL"),
        (12, "CALL_NO_KW_BUILTIN_O", "CALL"),
        (12, "INSTRUMENTED_CALL", "CALL"),
        (12, "INSTRUMENTED_CALL_FUNCTION_EX", "CALL_FUNCTION_EX"),
        (13, "CALL_BUILTIN_FAST", "CALL"),
        (13, "CALL_ALLOC_AND_ENTER_INIT", "CALL"),
        (13, "INSTRUMENTED_CALL", "CALL"),
        (13, "INSTRUMENTED_CALL_KW", "CALL_KW"),
        (14, "CALL_BUILTIN_FAST", "CALL"), (14, "CALL_PY_GENERAL", "CALL"), (14, "CALL_KW_PY", "CALL_KW"),
        (14, "INSTRUMENTED_CALL", "CALL"), (14, "INSTRUMENTED_CALL_FUNCTION_EX", "CALL_FUNCTION_EX"),
        (15, "CALL_BUILTIN_FAST", "CALL"), (15, "CALL_PY_GENERAL", "CALL"), (15, "CALL_KW_PY", "CALL_KW"),
        (15, "INSTRUMENTED_CALL", "CALL"), (15, "INSTRUMENTED_CALL_KW", "CALL_KW"),
    ])
    func specialisedCallsClassifyThroughDeopt(minor: Int, name: String, baseName: String) throws {
        let table = try table(minor)
        let op = try opcode(name, in: table), base = try opcode(baseName, in: table)
        #expect(op != base)
        #expect(table.base(of: op) == base)
        #expect(table.instructionClass(of: op) == .call)
        #expect(table.cacheUnits(after: op) == table.cacheUnits(after: base))
        #expect(table.name(of: op) == name)
    }

    @Test(arguments: [
        (8, "BINARY_ADD"), (8, "LOAD_ATTR"), (9, "LOAD_METHOD"), (10, "BINARY_SUBSCR"),
        (11, "BINARY_OP"), (11, "BINARY_OP_ADD_INT"), (11, "LOAD_ATTR_INSTANCE_VALUE"), (11, "CACHE"),
        (12, "BINARY_OP"), (12, "LOAD_ATTR_INSTANCE_VALUE"), (12, "CALL_INTRINSIC_1"), (12, "CALL_INTRINSIC_2"),
        (12, "INSTRUMENTED_LINE"),
        (13, "BINARY_OP"), (13, "LOAD_ATTR_INSTANCE_VALUE"), (13, "CALL_INTRINSIC_1"), (13, "CALL_INTRINSIC_2"),
        (13, "INSTRUMENTED_LINE"), (13, "ENTER_EXECUTOR"),
        (14, "BINARY_OP"), (14, "LOAD_ATTR_INSTANCE_VALUE"), (14, "CALL_INTRINSIC_1"), (14, "ENTER_EXECUTOR"),
        (15, "BINARY_OP"), (15, "LOAD_ATTR_INSTANCE_VALUE"), (15, "CALL_INTRINSIC_2"), (15, "INSTRUMENTED_LINE"),
    ])
    func otherInstructionsArePython(minor: Int, name: String) throws {
        let table = try table(minor)
        #expect(table.instructionClass(of: try opcode(name, in: table)) == .python)
    }

    /// Cache sizes as the generator read them from the headers (_PyOpcode_Caches), pinned here.
    @Test(arguments: [
        (11, "CALL", 4), (11, "PRECALL", 1), (11, "LOAD_ATTR", 4), (11, "BINARY_OP", 1), (11, "CALL_FUNCTION_EX", 0),
        (12, "CALL", 3), (12, "LOAD_ATTR", 9), (12, "BINARY_OP", 1), (12, "INSTRUMENTED_CALL", 3),
        (13, "CALL", 3), (13, "CALL_KW", 0), (13, "LOAD_ATTR", 9), (13, "JUMP_BACKWARD", 1),
        (13, "INSTRUMENTED_CALL", 3), (13, "INSTRUMENTED_JUMP_BACKWARD", 1),
        (14, "CALL", 3), (14, "CALL_KW", 3), (14, "LOAD_ATTR", 9), (14, "BINARY_OP", 5), (14, "INSTRUMENTED_CALL", 3),
        (15, "CALL", 3), (15, "CALL_KW", 3), (15, "CALL_FUNCTION_EX", 1), (15, "BINARY_OP", 5),
        (15, "INSTRUMENTED_CALL_KW", 3),
    ])
    func cacheSizes(minor: Int, name: String, units: Int) throws {
        let table = try table(minor)
        #expect(table.cacheUnits(after: try opcode(name, in: table)) == units)
    }

    @Test func noCachesOrSpecialisationBefore311() throws {
        for minor in 8...10 {
            let table = try table(minor)
            for op in UInt8.min...UInt8.max {
                #expect(table.cacheUnits(after: op) == 0 && table.base(of: op) == op)
            }
        }
    }

    @Test func unusedOpcodesAreSafe() throws {
        let table = try table(8)
        #expect(table.name(of: 0) == nil)
        #expect(table.name(of: 255) == nil)
        #expect(table.instructionClass(of: 255) == .python)
    }

    @Test func shortArraysAreCompleted() {
        let table = OpcodeTable(major: 3, minor: 99, micro: nil, extendedArg: 1, names: ["A", "EXTENDED_ARG"],
                                deopt: [0], cacheEntries: [2], callFamilyOpcodes: [0, 255])
        #expect(table.names.count == 256 && table.name(of: 2) == nil && table.name(of: 1) == "EXTENDED_ARG")
        #expect(table.base(of: 200) == 200 && table.cacheUnits(after: 0) == 2 && table.cacheUnits(after: 9) == 0)
        #expect(table.instructionClass(of: 255) == .call && table.instructionClass(of: 3) == .python)
    }
}
