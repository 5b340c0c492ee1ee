import CPythonLayouts
import RemoteProcess

/// What the reader needs from one code object, read once and cached by address. A class: every
/// frame of every sample refers to one, and a reference is cheaper to pass around than its strings
/// and arrays.
public final class CodeInfo: Sendable {
    public let address: UInt64
    public let filename: String
    /// `co_name`.
    public let name: String
    /// `co_qualname` where the version has it (3.11+), else `co_name`.
    public let qualname: String
    public let firstLine: Int
    public let lineTable: LineTable
    /// The bytecode as it was when first read (3.11+: the adaptive, specialised code). Specialisation
    /// only swaps opcodes within one family, so instruction boundaries and classes stay valid.
    public let bytecode: [UInt8]
    /// Address of the first code unit in the target (3.11+, where frames hold instruction pointers).
    public let bytecodeAddress: UInt64
    /// For each code unit, the unit where its instruction starts (-1 if none); empty without an
    /// opcode table.
    public let instructionStarts: [Int32]
    /// Pointers and values that identify this code object, compared when the cache entry is
    /// re-validated (an address can be reused by a new code object after the old one is freed).
    public let fingerprint: Fingerprint

    public struct Fingerprint: Sendable, Hashable {
        public var filename: UInt64
        public var name: UInt64
        public var firstLine: Int32
    }

    public init(address: UInt64, filename: String, name: String, qualname: String, firstLine: Int, lineTable: LineTable,
                bytecode: [UInt8], bytecodeAddress: UInt64, instructionStarts: [Int32] = [], fingerprint: Fingerprint) {
        self.address = address
        self.filename = filename
        self.name = name
        self.qualname = qualname
        self.firstLine = firstLine
        self.lineTable = lineTable
        self.bytecode = bytecode
        self.bytecodeAddress = bytecodeAddress
        self.instructionStarts = instructionStarts
        self.fingerprint = fingerprint
    }

    public var codeUnitCount: Int { bytecode.count / 2 }
}

/// Reads code objects.
public struct CodeReader<Memory: ProcessMemory>: Sendable {
    public let objects: ObjectReader<Memory>
    public let code: CodeOffsets
    /// `&PyCode_Type`; when known, an object of another type is rejected.
    public let codeType: UInt64?
    /// Upper bound on bytecode copied per code object.
    public var maximumBytecode = 1 << 20

    public init(objects: ObjectReader<Memory>, code: CodeOffsets, codeType: UInt64?) {
        self.objects = objects
        self.code = code
        self.codeType = codeType
    }

    /// The fixed part of a code object, if `address` holds one.
    func header(at address: UInt64) -> RemoteBytes? {
        guard address != 0, let bytes = try? objects.memory.remoteBytes(at: address, count: code.size) else { return nil }
        if let codeType, bytes.pointer(at: objects.objects.objectType) != codeType { return nil }
        return bytes
    }

    func fingerprint(of header: RemoteBytes) -> CodeInfo.Fingerprint? {
        guard let filename = header.pointer(at: code.filename), let name = header.pointer(at: code.name),
              let firstLine = header.int32(at: code.firstLineNumber) else { return nil }
        return CodeInfo.Fingerprint(filename: filename, name: name, firstLine: firstLine)
    }

    /// Whether the code object at `info.address` is still the one `info` describes.
    public func isCurrent(_ info: CodeInfo) -> Bool {
        guard let header = header(at: info.address) else { return false }
        return fingerprint(of: header) == info.fingerprint
    }

    /// Reads everything about the code object at `address`, or nil if it is not a readable code
    /// object; with `opcodes`, where each instruction starts.
    public func read(at address: UInt64, opcodes: OpcodeTable? = nil) -> CodeInfo? {
        guard let header = header(at: address), let fingerprint = fingerprint(of: header),
              let filename = objects.string(at: fingerprint.filename), let name = objects.string(at: fingerprint.name),
              let lineTableObject = header.pointer(at: code.lineTable) else { return nil }
        let qualname = code.qualname.flatMap { header.pointer(at: $0) }.flatMap { objects.string(at: $0) } ?? name
        let firstLine = Int(fingerprint.firstLine)
        guard firstLine >= 0, firstLine <= LineTable.maximumLine else { return nil }
        let lineBytes = objects.byteString(at: lineTableObject) ?? []
        var bytecode = [UInt8]()
        var bytecodeAddress: UInt64 = 0
        switch code.codeBytes {
        case .bytesObject(let offset):
            if let object = header.pointer(at: offset) {
                bytecode = objects.byteString(at: object, limit: maximumBytecode) ?? []
                bytecodeAddress = object &+ UInt64(objects.objects.bytes.data)
            }
        case .inline(let offset):
            bytecodeAddress = address &+ UInt64(offset)
            if let units = header.integer(Int64.self, at: objects.objects.varSize),
               let count = RemoteArithmetic.count(units, atMost: maximumBytecode / 2), count > 0 {
                bytecode = (try? objects.memory.bytes(at: bytecodeAddress, count: count * 2)) ?? []
            }
        }
        return CodeInfo(address: address, filename: filename, name: name, qualname: qualname, firstLine: firstLine,
                        lineTable: LineTable.decode(lineBytes, format: code.lineTableFormat, firstLine: firstLine),
                        bytecode: bytecode, bytecodeAddress: bytecodeAddress,
                        instructionStarts: opcodes?.instructionStarts(in: bytecode) ?? [], fingerprint: fingerprint)
    }
}
