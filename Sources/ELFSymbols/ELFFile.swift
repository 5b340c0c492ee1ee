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
    public init(path: String, only wanted: Set<String>? = nil) throws(ELFError) {
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
        var symbolTables = [(section: OpaquePointer, header: GElf_Shdr)]()
        var section = elf_nextscn(elf, nil)
        while let current = section {
            defer { section = elf_nextscn(elf, current) }
            var shdr = GElf_Shdr()
            guard gelf_getshdr(current, &shdr) != nil else { continue }
            let name = elf_strptr(elf, stringTableIndex, Int(shdr.sh_name)).map { String(cString: $0) } ?? ""
            foundSections.append(ELFSection(name: name, address: shdr.sh_addr, fileOffset: shdr.sh_offset,
                                            size: shdr.sh_size, isNoBits: shdr.sh_type == UInt32(SHT_NOBITS)))
            if shdr.sh_type == UInt32(SHT_DYNSYM) { symbolTables.insert((current, shdr), at: 0) }
            if shdr.sh_type == UInt32(SHT_SYMTAB) { symbolTables.append((current, shdr)) }
        }
        // .dynsym first: it is small and holds every exported symbol; the much larger .symtab (absent
        // from stripped binaries) is read only for names still missing.
        var symbols = [String: ELFSymbol]()
        let wantedNames = (wanted.map { Array($0) } ?? []).map { ($0, Array($0.utf8CString)) }
        for table in symbolTables {
            if let wanted, symbols.count == wanted.count { break }
            let shdr = table.header
            guard shdr.sh_entsize > 0, let data = elf_getdata(table.section, nil) else { continue }
            // A malformed file can claim any size: libelf indexes symbols with an Int32.
            let count = Int(clamping: min(shdr.sh_size / shdr.sh_entsize, UInt64(Int32.max)))
            for index in 0..<count {
                var symbol = GElf_Sym()
                guard gelf_getsym(data, Int32(index), &symbol) != nil else { continue }
                let type = Int32(symbol.st_info & 0xf)
                guard type == STT_FUNC || type == STT_OBJECT, symbol.st_shndx != UInt16(SHN_UNDEF),
                      symbol.st_name != 0,
                      let cName = elf_strptr(elf, Int(shdr.sh_link), Int(symbol.st_name)) else { continue }
                let symbolName: String
                if wanted != nil {
                    // Compare as C strings: making a Swift String of every symbol name costs more
                    // than the rest of the lookup.
                    guard let match = wantedNames.first(where: { strcmp(cName, $0.1) == 0 }) else { continue }
                    symbolName = match.0
                } else {
                    symbolName = String(cString: cName)
                }
                // .dynsym and .symtab often both list a symbol; the first definition wins.
                if symbols[symbolName] == nil {
                    symbols[symbolName] = ELFSymbol(name: symbolName, value: symbol.st_value, size: symbol.st_size,
                                                    isFunction: type == STT_FUNC)
                }
            }
        }
        sections = foundSections
        symbolsByName = symbols
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
