/// What the interpreter is doing at an instruction, as far as attribution cares.
public enum InstructionClass: Sendable, Equatable {
    /// Running bytecode: the interpreter's own work.
    case python
    /// An instruction of the CALL family: the frame may be inside a call into another function,
    /// possibly native code.
    case call
}

/// One CPython version's opcodes: names, specialised → base mapping, inline-cache sizes and the
/// CALL family. Data comes from `Generated/Opcodes.swift`.
///
/// Every array has exactly 256 entries, so any `UInt8` read from a target indexes them safely.
public struct OpcodeTable: Sendable, Equatable {
    public let major: Int
    public let minor: Int
    /// The micro version this table is specific to; nil when it holds for every micro version of
    /// the minor version (the usual case).
    public let micro: Int?
    /// Name of each opcode, nil where the version defines none.
    public let names: [String?]
    /// Base (deoptimised) opcode of each opcode: identity for base opcodes and before 3.11;
    /// specialised and adaptive forms map to the opcode they specialise; `INSTRUMENTED_X` (3.12+)
    /// maps to `X`.
    public let deopt: [UInt8]
    /// Inline-cache code units that follow each opcode (those of its base; 0 before 3.11).
    public let cacheEntries: [UInt8]
    /// Whether each opcode's base is in the CALL family.
    public let callFamily: [Bool]
    /// `EXTENDED_ARG`. Any opcode whose base is this one is an argument prefix of the next instruction.
    public let extendedArg: UInt8

    /// Bytes per code unit (`_Py_CODEUNIT`) in every supported version.
    public static let codeUnitSize = 2

    /// - Parameters:
    ///   - names: one per opcode, "" for an unused opcode.
    ///   - callFamilyOpcodes: every opcode (any form) whose base is in the CALL family.
    /// Arrays shorter than 256 are completed with identity / zero / no name, longer ones cut.
    public init(major: Int, minor: Int, micro: Int?, extendedArg: UInt8, names: [String], deopt: [UInt8],
                cacheEntries: [UInt8], callFamilyOpcodes: [UInt8]) {
        self.major = major
        self.minor = minor
        self.micro = micro
        self.extendedArg = extendedArg
        self.names = (0..<256).map { $0 < names.count && !names[$0].isEmpty ? names[$0] : nil }
        self.deopt = (0..<256).map { $0 < deopt.count ? deopt[$0] : UInt8($0) }
        self.cacheEntries = (0..<256).map { $0 < cacheEntries.count ? cacheEntries[$0] : 0 }
        var family = [Bool](repeating: false, count: 256)
        for opcode in callFamilyOpcodes { family[Int(opcode)] = true }
        self.callFamily = family
    }

    /// "3.11", or "3.11.7" for a micro-specific table.
    public var versionDescription: String {
        micro.map { "\(major).\(minor).\($0)" } ?? "\(major).\(minor)"
    }

    /// The base opcode of `opcode` (itself when it is not a specialised form).
    public func base(of opcode: UInt8) -> UInt8 {
        deopt[Int(opcode)]
    }

    /// Inline-cache code units that follow `opcode` (those of its base).
    public func cacheUnits(after opcode: UInt8) -> Int {
        Int(cacheEntries[Int(base(of: opcode))])
    }

    /// `.call` if the base of `opcode` is in the CALL family, else `.python`.
    public func instructionClass(of opcode: UInt8) -> InstructionClass {
        callFamily[Int(base(of: opcode))] ? .call : .python
    }

    /// The name of `opcode` as stored (a specialised name for a specialised form), nil if unused.
    public func name(of opcode: UInt8) -> String? {
        names[Int(opcode)]
    }

    /// Whether `opcode` is an `EXTENDED_ARG` prefix (3.11 also has `EXTENDED_ARG_QUICK`).
    public func isExtendedArg(_ opcode: UInt8) -> Bool {
        base(of: opcode) == extendedArg
    }

    /// The instruction whose extent contains code unit `unit` of `code` (raw bytecode, 2 bytes per
    /// unit, opcode first; on 3.11+ the adaptive bytecode, specialised opcodes included).
    ///
    /// Walks from unit 0: each instruction is one unit plus the inline-cache units of its base
    /// opcode. `EXTENDED_ARG` prefixes belong to the instruction they prefix: a unit inside a prefix
    /// yields the prefixed instruction. Returns that instruction's own unit index (not its prefix's)
    /// and opcode as stored. This is how a 3.11/3.12 frame whose `prev_instr` points at the last
    /// cache unit of a CALL is classified.
    ///
    /// Nil when `unit` is outside the code, or when the walk runs off the end of the code inside an
    /// instruction (torn or truncated data). Never traps; at most `code.count / 2` steps.
    public func instructionStart(containing unit: Int, in code: [UInt8]) -> (start: Int, opcode: UInt8)? {
        let starts = instructionStarts(in: code)
        guard unit >= 0, unit < starts.count, starts[unit] >= 0 else { return nil }
        let start = Int(starts[unit])
        return (start, code[start * Self.codeUnitSize])
    }

    /// For every code unit of `code`, the unit where its instruction starts, or -1 (a unit past a
    /// truncated instruction or in a trailing run of EXTENDED_ARG prefixes): the whole map in one
    /// pass, for readers that look up many units of the same code object. Each instruction is one
    /// unit plus the inline-cache units of its base opcode; EXTENDED_ARG prefixes belong to the
    /// instruction they prefix.
    public func instructionStarts(in code: [UInt8]) -> [Int32] {
        let units = code.count / Self.codeUnitSize
        var starts = [Int32](repeating: -1, count: units)
        var index = 0
        var prefixStart = 0
        while index < units {
            let opcode = code[index * Self.codeUnitSize]
            let end = index + 1 + cacheUnits(after: opcode)
            if isExtendedArg(opcode) {
                index = end
                continue
            }
            guard end <= units else { break }
            for unit in prefixStart..<end { starts[unit] = Int32(index) }
            index = end
            prefixStart = end
        }
        return starts
    }
}

/// The generated opcode tables and how a version finds its table.
public enum OpcodeTables {
    /// Every generated table, oldest version first.
    public static var all: [OpcodeTable] { generated }

    /// The table of `version`: a micro-specific table if one matches exactly, else the table for the
    /// whole minor version, else the highest micro-specific table of that minor. Nil for an
    /// unsupported minor version.
    public static func table(for version: PythonVersion) -> OpcodeTable? {
        let sameMinor = generated.filter { $0.major == version.major && $0.minor == version.minor }
        if let exact = sameMinor.first(where: { $0.micro == version.micro }) { return exact }
        if let whole = sameMinor.first(where: { $0.micro == nil }) { return whole }
        return sameMinor.max { ($0.micro ?? 0) < ($1.micro ?? 0) }
    }
}
