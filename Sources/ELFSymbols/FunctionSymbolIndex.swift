import CLibElf
#if canImport(Glibc)
import Glibc
#endif

/// An address → function index of one ELF file, from `.symtab` (when the file has one) and
/// `.dynsym`: what a sampled instruction pointer is symbolised with. Built once per file, on first
/// use, and bounded: a file with more function symbols than `limit` keeps the first `limit`.
public struct FunctionSymbolIndex: Sendable {
    /// Link-time start addresses, sorted; `ends` and `names` are parallel.
    private let starts: [UInt64]
    private let ends: [UInt64]
    private let names: [String]

    public var count: Int { starts.count }

    /// Reads the function symbols of the file at `path`. Symbols of size 0 extend to the next one
    /// (at most 64 KiB, never past their section), as hand-written assembly often has no size.
    public init(path: String, limit: Int = 1 << 20) throws(ELFError) {
        elf_version(UInt32(EV_CURRENT))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        guard let elf = elf_begin(fd, ELF_C_READ_MMAP, nil) else { throw .notELF(path: path) }
        defer { elf_end(elf) }
        guard elf_kind(elf) == ELF_K_ELF else { throw .notELF(path: path) }
        var entries = [(start: UInt64, size: UInt64, name: String, sectionEnd: UInt64)]()
        var sectionEnds = [UInt16: UInt64]()
        var seen = Set<UInt64>()
        var section = elf_nextscn(elf, nil)
        var tables = [(OpaquePointer, GElf_Shdr)]()
        while let current = section {
            defer { section = elf_nextscn(elf, current) }
            var shdr = GElf_Shdr()
            guard gelf_getshdr(current, &shdr) != nil else { continue }
            // .symtab first: it also names the static functions .dynsym leaves out.
            if shdr.sh_type == UInt32(SHT_SYMTAB) { tables.insert((current, shdr), at: 0) }
            if shdr.sh_type == UInt32(SHT_DYNSYM) { tables.append((current, shdr)) }
        }
        outer: for (table, shdr) in tables {
            guard shdr.sh_entsize > 0, let data = elf_getdata(table, nil) else { continue }
            let (quotient, overflow) = shdr.sh_size.dividedReportingOverflow(by: shdr.sh_entsize)
            guard !overflow, let count = Int32(exactly: min(quotient, UInt64(Int32.max))) else { continue }
            for index in 0..<count {
                var symbol = GElf_Sym()
                guard gelf_getsym(data, index, &symbol) != nil else { continue }
                let type = Int32(symbol.st_info & 0xf)
                guard type == STT_FUNC || type == STT_GNU_IFUNC, symbol.st_shndx != UInt16(SHN_UNDEF),
                      symbol.st_value != 0, symbol.st_name != 0,
                      seen.insert(symbol.st_value).inserted,
                      let name = elf_strptr(elf, Int(shdr.sh_link), Int(symbol.st_name)) else { continue }
                if sectionEnds[symbol.st_shndx] == nil {
                    var header = GElf_Shdr()
                    if let scn = elf_getscn(elf, Int(symbol.st_shndx)), gelf_getshdr(scn, &header) != nil {
                        let (end, overflow) = header.sh_addr.addingReportingOverflow(header.sh_size)
                        sectionEnds[symbol.st_shndx] = overflow ? UInt64.max : end
                    } else {
                        sectionEnds[symbol.st_shndx] = 0
                    }
                }
                entries.append((symbol.st_value, symbol.st_size, String(cString: name), sectionEnds[symbol.st_shndx] ?? 0))
                if entries.count >= limit { break outer }
            }
        }
        entries.sort { $0.start < $1.start }
        var starts = [UInt64](), ends = [UInt64](), names = [String]()
        starts.reserveCapacity(entries.count)
        ends.reserveCapacity(entries.count)
        names.reserveCapacity(entries.count)
        for (index, entry) in entries.enumerated() {
            let next = index + 1 < entries.count ? entries[index + 1].start : UInt64.max
            let end: UInt64
            if entry.size > 0 {
                end = entry.start &+ entry.size < entry.start ? UInt64.max : entry.start &+ entry.size
            } else {
                end = min(next, entry.sectionEnd, entry.start &+ 65536 < entry.start ? UInt64.max : entry.start &+ 65536)
            }
            starts.append(entry.start)
            ends.append(end)
            names.append(entry.name)
        }
        self.starts = starts
        self.ends = ends
        self.names = names
    }

    /// The function containing the link-time `address`, and the offset into it.
    public func function(containing address: UInt64) -> (name: String, offset: UInt64)? {
        var low = 0, high = starts.count
        while low < high {
            let middle = (low + high) / 2
            if starts[middle] <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let index = low - 1
        guard address < ends[index] else { return nil }
        return (names[index], address - starts[index])
    }
}
