import CLibElf
#if canImport(Glibc)
import Glibc
#endif

/// Why an ELF file could not be used.
public enum ELFError: Error, Equatable, Sendable {
    case cannotOpen(path: String, errno: Int32)
    case notELF(path: String)
    case malformed(path: String, detail: String)
}

/// A symbol from `.dynsym` or `.symtab`.
public struct ELFSymbol: Sendable, Equatable {
    public var name: String
    /// The link-time address (add the load bias for the address in a running process).
    public var value: UInt64
    public var size: UInt64
    public var isFunction: Bool

    public init(name: String, value: UInt64, size: UInt64, isFunction: Bool) {
        self.name = name
        self.value = value
        self.size = size
        self.isFunction = isFunction
    }
}

/// A loadable segment (PT_LOAD).
public struct ELFSegment: Sendable, Equatable {
    public var virtualAddress: UInt64
    public var fileOffset: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    public var alignment: UInt64
    public var executable: Bool
    public var writable: Bool
}

/// A section header.
public struct ELFSection: Sendable, Equatable {
    public var name: String
    public var address: UInt64
    public var fileOffset: UInt64
    public var size: UInt64
    /// SHT_NOBITS (.bss): no bytes in the file.
    public var isNoBits: Bool
}

/// The parts of an ELF file a remote reader needs: symbols, segments and sections, read through
/// libelf. Everything is read once at initialisation; the value is immutable afterwards.
public struct ELFFile: Sendable {
    public let path: String
    /// ET_EXEC (fixed addresses, non-PIE) or ET_DYN (shared object or PIE).
    public let isExecutableType: Bool
    public let segments: [ELFSegment]
    public let sections: [ELFSection]
    private let symbolsByName: [String: ELFSymbol]

    /// Opens and indexes `path`. Only the listed symbol names are kept when `only` is given (much
    /// cheaper for a large .symtab); otherwise every named function and object symbol is.
    ///
    /// Listed names are looked up in `.dynsym` through its hash table (`.gnu.hash`, else `.hash`)
    /// when it has one, as the dynamic linker does, and by reading every entry otherwise; names not
    /// found there are looked for in `.symtab` unless `staticSymbols` is false.
    public init(path: String, only wanted: Set<String>? = nil, staticSymbols: Bool = true) throws(ELFError) {
        self.path = path
        elf_version(UInt32(EV_CURRENT))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        guard let elf = elf_begin(fd, ELF_C_READ_MMAP, nil) else { throw .notELF(path: path) }
        defer { elf_end(elf) }
        guard elf_kind(elf) == ELF_K_ELF else { throw .notELF(path: path) }
        var header = GElf_Ehdr()
        guard gelf_getehdr(elf, &header) != nil else { throw .malformed(path: path, detail: "no ELF header") }
        isExecutableType = header.e_type == UInt16(ET_EXEC)
        let identity = withUnsafeBytes(of: header.e_ident) { (class: $0[Int(EI_CLASS)], data: $0[Int(EI_DATA)]) }

        var programHeaderCount = 0
        guard elf_getphdrnum(elf, &programHeaderCount) == 0 else {
            throw .malformed(path: path, detail: "no program headers")
        }
        var loads = [ELFSegment]()
        for index in 0..<programHeaderCount {
            var phdr = GElf_Phdr()
            guard gelf_getphdr(elf, Int32(index), &phdr) != nil else { continue }
            guard phdr.p_type == UInt32(PT_LOAD) else { continue }
            loads.append(ELFSegment(virtualAddress: phdr.p_vaddr, fileOffset: phdr.p_offset, fileSize: phdr.p_filesz,
                                    memorySize: phdr.p_memsz, alignment: phdr.p_align,
                                    executable: phdr.p_flags & UInt32(PF_X) != 0,
                                    writable: phdr.p_flags & UInt32(PF_W) != 0))
        }
        segments = loads

        var stringTableIndex = 0
        _ = elf_getshdrstrndx(elf, &stringTableIndex)
        var foundSections = [ELFSection]()
        var dynamicTable: SymbolTable?
        var staticSection: (section: OpaquePointer, header: GElf_Shdr)?
        var hashSections = [(kind: SymbolHashTable.Kind, section: OpaquePointer, header: GElf_Shdr)]()
        var section = elf_nextscn(elf, nil)
        while let current = section {
            defer { section = elf_nextscn(elf, current) }
            var shdr = GElf_Shdr()
            guard gelf_getshdr(current, &shdr) != nil else { continue }
            let name = elf_strptr(elf, stringTableIndex, Int(shdr.sh_name)).map { String(cString: $0) } ?? ""
            foundSections.append(ELFSection(name: name, address: shdr.sh_addr, fileOffset: shdr.sh_offset,
                                            size: shdr.sh_size, isNoBits: shdr.sh_type == UInt32(SHT_NOBITS)))
            switch shdr.sh_type {
            case UInt32(SHT_DYNSYM): if dynamicTable == nil { dynamicTable = SymbolTable(elf: elf, section: current, header: shdr) }
            case UInt32(SHT_SYMTAB): if staticSection == nil { staticSection = (current, shdr) }
            case UInt32(SHT_GNU_HASH): hashSections.append((.gnu, current, shdr))
            case UInt32(SHT_HASH): hashSections.append((.sysV, current, shdr))
            default: break
            }
        }
        sections = foundSections

        var symbols = [String: ELFSymbol]()
        // .dynsym first: it is small and holds every exported symbol; the much larger .symtab (absent
        // from stripped binaries) is read only for names still missing.
        var scanned = [SymbolTable]()
        if let wanted, let dynamicTable, identity.data == UInt8(ELFDATA2LSB),
           let table = Self.hashTable(of: dynamicTable, among: hashSections, is64Bit: identity.class == UInt8(ELFCLASS64)) {
            for name in wanted {
                if let symbol = dynamicTable.lookUp(name, with: table) { symbols[name] = symbol }
            }
        } else if let dynamicTable {
            scanned.append(dynamicTable)
        }
        if staticSymbols, let staticSection, wanted.map({ symbols.count < $0.count }) ?? true,
           let staticTable = SymbolTable(elf: elf, section: staticSection.section, header: staticSection.header) {
            scanned.append(staticTable)
        }
        for table in scanned {
            if let wanted, symbols.count == wanted.count { break }
            table.scan(wanted: wanted.map { $0.filter { symbols[$0] == nil } }, into: &symbols)
        }
        symbolsByName = symbols
    }

    /// The hash table of `table` (`.gnu.hash` preferred), if the file has one that indexes it.
    private static func hashTable(of table: SymbolTable,
                                  among sections: [(kind: SymbolHashTable.Kind, section: OpaquePointer, header: GElf_Shdr)],
                                  is64Bit: Bool) -> SymbolHashTable? {
        for kind in [SymbolHashTable.Kind.gnu, .sysV] {
            for candidate in sections where candidate.kind == kind && Int(candidate.header.sh_link) == table.sectionIndex {
                // Raw: the file's bytes, which SymbolHashTable decodes itself (bounds-checked).
                guard let data = elf_rawdata(candidate.section, nil), let start = data.pointee.d_buf,
                      data.pointee.d_size <= 64 << 20 else { continue }
                let bytes = [UInt8](UnsafeRawBufferPointer(start: start, count: data.pointee.d_size))
                if let hash = SymbolHashTable(kind: kind, bytes: bytes, is64Bit: is64Bit, symbolCount: table.count) {
                    return hash
                }
            }
        }
        return nil
    }

    public func symbol(named name: String) -> ELFSymbol? { symbolsByName[name] }

    public var symbolCount: Int { symbolsByName.count }

    public func section(named name: String) -> ELFSection? { sections.first { $0.name == name } }

    /// The difference between where the file's addresses ended up in a process and their link-time
    /// values, found from the process's mappings of this file: the mapping of file offset 0 holds the
    /// segment that starts at file offset 0.
    ///
    /// - Parameter mappings: (start address, file offset) of each mapping of this file in the process.
    public func loadBias(mappings: [(start: UInt64, offset: UInt64)]) -> UInt64? {
        guard let first = segments.min(by: { $0.fileOffset < $1.fileOffset }) else { return nil }
        let pageMask: UInt64 = ~(4096 - 1)
        let segmentPageOffset = first.fileOffset & pageMask
        guard let mapping = mappings.first(where: { $0.offset == segmentPageOffset }) else { return nil }
        return mapping.start &- (first.virtualAddress & pageMask)
    }
}

extension ELFFile {
    /// The file bytes of a section (empty for .bss-like sections), read with pread.
    public func contents(of section: ELFSection, limit: Int = 64 << 20) -> [UInt8]? {
        guard !section.isNoBits, section.size > 0, section.size <= UInt64(limit),
              let start = off_t(exactly: section.fileOffset), start <= off_t.max - off_t(limit) else { return nil }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: Int(section.size))
        var done = 0
        while done < buffer.count {
            let n = buffer.withUnsafeMutableBytes {
                pread(fd, $0.baseAddress! + done, $0.count - done, start + off_t(done))
            }
            if n <= 0 { return nil }
            done += n
        }
        return buffer
    }
}

/// One symbol table section (`.dynsym` or `.symtab`) of an open file, read through libelf, which
/// checks every index against the section's data.
private struct SymbolTable {
    let elf: OpaquePointer
    let data: UnsafeMutablePointer<Elf_Data>
    /// The section's index (what a hash table's sh_link names) and its string table's.
    let sectionIndex: Int
    let stringSection: Int
    let count: Int

    init?(elf: OpaquePointer, section: OpaquePointer, header: GElf_Shdr) {
        guard header.sh_entsize > 0, let data = elf_getdata(section, nil) else { return nil }
        self.elf = elf
        self.data = data
        sectionIndex = elf_ndxscn(section)
        stringSection = Int(header.sh_link)
        // A malformed file can claim any size: libelf indexes symbols with an Int32.
        count = Int(clamping: min(header.sh_size / header.sh_entsize, UInt64(Int32.max)))
    }

    /// The symbol at `index` if it is a named, defined function or object, with its C name.
    func definition(at index: Int) -> (symbol: GElf_Sym, name: UnsafeMutablePointer<CChar>)? {
        guard index >= 0, index < count else { return nil }
        var symbol = GElf_Sym()
        guard gelf_getsym(data, Int32(index), &symbol) != nil else { return nil }
        let type = Int32(symbol.st_info & 0xf)
        guard type == STT_FUNC || type == STT_OBJECT, symbol.st_shndx != UInt16(SHN_UNDEF), symbol.st_name != 0,
              let name = elf_strptr(elf, stringSection, Int(symbol.st_name)) else { return nil }
        return (symbol, name)
    }

    /// `name` through the hash table: of the definitions it chains to that name, the first in the
    /// table (what reading the table in order finds first).
    func lookUp(_ name: String, with table: SymbolHashTable) -> ELFSymbol? {
        let cName = Array(name.utf8CString)
        for index in table.candidates(for: Array(name.utf8)) {
            guard let (symbol, candidate) = definition(at: index), strcmp(candidate, cName) == 0 else { continue }
            return ELFSymbol(name: name, value: symbol.st_value, size: symbol.st_size,
                             isFunction: Int32(symbol.st_info & 0xf) == STT_FUNC)
        }
        return nil
    }

    /// Reads every entry, keeping the `wanted` names (every named definition when nil) not yet in
    /// `symbols`: the first definition of a name wins.
    func scan(wanted: Set<String>?, into symbols: inout [String: ELFSymbol]) {
        let wantedNames = (wanted.map { Array($0) } ?? []).map { ($0, Array($0.utf8CString)) }
        var missing = wantedNames.count
        for index in 0..<count {
            if wanted != nil && missing == 0 { break }
            guard let (symbol, cName) = definition(at: index) else { continue }
            let symbolName: String
            if wanted != nil {
                // Compare as C strings: making a Swift String of every symbol name costs more
                // than the rest of the lookup.
                guard let match = wantedNames.first(where: { strcmp(cName, $0.1) == 0 }) else { continue }
                symbolName = match.0
            } else {
                symbolName = String(cString: cName)
            }
            if symbols[symbolName] == nil {
                symbols[symbolName] = ELFSymbol(name: symbolName, value: symbol.st_value, size: symbol.st_size,
                                                isFunction: Int32(symbol.st_info & 0xf) == STT_FUNC)
                missing -= 1
            }
        }
    }
}
