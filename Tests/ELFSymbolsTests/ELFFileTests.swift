import ELFSymbols
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("ELFFile on compiled fixtures")
struct ELFFileTests {
    /// Every fixture symbol: name → (is a function, size when the C source fixes it).
    static let expected: [String: (isFunction: Bool, size: UInt64?)] = [
        "fixture_add": (true, nil),
        "fixture_sum_table": (true, nil),
        "fixture_literal": (true, nil),
        "fixture_static_helper": (true, nil),
        "fixture_counter": (false, 4),
        "fixture_table": (false, 32),
        "fixture_banner": (false, 34),
        "fixture_zeroed": (false, 4096),
        "fixture_big_buffer": (false, 1 << 20),
    ]

    @Test("symbols of the shared library and the executable: type, size and value as nm sees them",
          arguments: ["library", "executable", "pie"])
    func symbols(_ kind: String) throws {
        let fixtures = try ELFFixtures.get()
        let path = kind == "library" ? fixtures.library : kind == "executable" ? fixtures.executable : fixtures.pieExecutable
        let elf = try ELFFile(path: path)
        #expect(elf.path == path)
        let nm = try ELFFixtures.nmSymbols(path)
        for (name, expected) in Self.expected {
            let symbol = try #require(elf.symbol(named: name), "\(name) in \(kind)")
            let reference = try #require(nm[name], "nm lists \(name)")
            #expect(symbol.name == name)
            #expect(symbol.isFunction == expected.isFunction, "\(name)")
            #expect(symbol.value == reference.value, "\(name)")
            #expect(symbol.size == reference.size, "\(name)")
            if let size = expected.size { #expect(symbol.size == size, "\(name)") }
            if expected.isFunction { #expect(symbol.size > 0, "\(name)") }
        }
        #expect(elf.symbol(named: "symbols.c") == nil, "STT_FILE symbols are not kept")
        #expect(elf.symbol(named: "no_such_symbol") == nil)
        #expect(elf.symbol(named: "") == nil)
        if kind != "library" {
            #expect(elf.symbol(named: "main")?.isFunction == true)
            #expect(elf.symbol(named: "printf") == nil, "an undefined (imported) symbol is not a definition")
        }
    }

    @Test("a static symbol comes from .symtab; a stripped copy keeps only exported .dynsym symbols")
    func stripped() throws {
        let fixtures = try ELFFixtures.get()
        let full = try ELFFile(path: fixtures.library)
        let stripped = try ELFFile(path: fixtures.strippedLibrary)
        #expect(full.section(named: ".symtab") != nil)
        #expect(stripped.section(named: ".symtab") == nil)
        #expect(stripped.section(named: ".dynsym") != nil)

        #expect(full.symbol(named: "fixture_static_helper") != nil)
        #expect(full.symbol(named: "fixture_big_buffer") != nil)
        #expect(stripped.symbol(named: "fixture_static_helper") == nil)
        #expect(stripped.symbol(named: "fixture_big_buffer") == nil)
        for name in ["fixture_add", "fixture_sum_table", "fixture_literal", "fixture_counter", "fixture_table",
                     "fixture_banner", "fixture_zeroed"] {
            #expect(stripped.symbol(named: name) == full.symbol(named: name), "\(name) is exported")
        }
        #expect(stripped.symbolCount < full.symbolCount)

        // An executable exports nothing of its own: stripped, none of the fixture symbols remain.
        let strippedExecutable = try ELFFile(path: fixtures.strippedExecutable)
        for name in Self.expected.keys { #expect(strippedExecutable.symbol(named: name) == nil, "\(name)") }
    }

    @Test("only: keeps exactly the wanted symbols that exist, from either table")
    func onlyFilter() throws {
        let fixtures = try ELFFixtures.get()
        let full = try ELFFile(path: fixtures.library)
        let filtered = try ELFFile(path: fixtures.library,
                                   only: ["fixture_add", "fixture_big_buffer", "fixture_counter", "not_there"])
        #expect(filtered.symbolCount == 3)
        #expect(filtered.symbol(named: "fixture_add") == full.symbol(named: "fixture_add"))
        #expect(filtered.symbol(named: "fixture_big_buffer") == full.symbol(named: "fixture_big_buffer"))
        #expect(filtered.symbol(named: "fixture_counter") == full.symbol(named: "fixture_counter"))
        #expect(filtered.symbol(named: "fixture_sum_table") == nil)
        #expect(filtered.symbol(named: "not_there") == nil)
        #expect(try ELFFile(path: fixtures.library, only: []).symbolCount == 0)
        #expect(filtered.sections == full.sections, "the filter applies to symbols only")
        #expect(filtered.segments == full.segments)
    }

    @Test("isExecutableType: ET_EXEC for -no-pie, ET_DYN for a shared library and a PIE")
    func executableType() throws {
        let fixtures = try ELFFixtures.get()
        #expect(try ELFFile(path: fixtures.executable).isExecutableType)
        #expect(try ELFFile(path: fixtures.strippedExecutable).isExecutableType)
        #expect(try !ELFFile(path: fixtures.library).isExecutableType)
        #expect(try !ELFFile(path: fixtures.pieExecutable).isExecutableType)
    }

    @Test("segments and sections: code, data and .bss where the symbols are")
    func segmentsAndSections() throws {
        let fixtures = try ELFFixtures.get()
        let elf = try ELFFile(path: fixtures.library)
        let first = try #require(elf.segments.min { $0.fileOffset < $1.fileOffset })
        #expect(first.fileOffset == 0 && first.virtualAddress == 0, "a shared library is linked at 0")
        let add = try #require(elf.symbol(named: "fixture_add"))
        let big = try #require(elf.symbol(named: "fixture_big_buffer"))
        let code = elf.segments.filter { $0.executable }
        #expect(code.count == 1)
        #expect(code.allSatisfy { $0.virtualAddress <= add.value && add.value + add.size <= $0.virtualAddress + $0.fileSize })
        let data = try #require(elf.segments.first { $0.writable })
        #expect(!data.executable)
        #expect(data.memorySize - data.fileSize >= 1 << 20, "the .bss part is not in the file")
        #expect(data.virtualAddress <= big.value && big.value + big.size <= data.virtualAddress + data.memorySize)
        #expect(elf.segments.allSatisfy { $0.alignment >= 4096 })

        let bss = try #require(elf.section(named: ".bss"))
        #expect(bss.isNoBits)
        #expect(bss.size >= (1 << 20) + 4096)
        #expect(bss.address <= big.value && big.value + big.size <= bss.address + bss.size)
        #expect(elf.contents(of: bss) == nil, ".bss has no bytes in the file")
        let text = try #require(elf.section(named: ".text"))
        #expect(!text.isNoBits)
        #expect(elf.contents(of: text)?.count == Int(text.size))
        #expect(elf.section(named: ".no_such_section") == nil)
        // Every section but the null one, as readelf lists them.
        let reference = try readelfSections(fixtures.library)
        #expect(reference.count > 20)
        #expect(elf.sections.map(\.name) == reference.map(\.name))
        #expect(elf.sections.map(\.address) == reference.map(\.address))
        #expect(elf.sections.map(\.fileOffset) == reference.map(\.offset))
        #expect(elf.sections.map(\.size) == reference.map(\.size))
        #expect(elf.sections.map(\.isNoBits) == reference.map(\.noBits))
    }

    @Test("contents(of: .rodata) holds the fixture's string literal and const array")
    func rodata() throws {
        let fixtures = try ELFFixtures.get()
        for path in [fixtures.library, fixtures.executable] {
            let elf = try ELFFile(path: path)
            let rodata = try #require(elf.section(named: ".rodata"))
            let bytes = try #require(elf.contents(of: rodata))
            #expect(bytes.count == Int(rodata.size))
            let literal = Array("rodata literal 7f3a9c: the fixture was here\0".utf8)
            #expect(bytes.firstRange(of: literal) != nil, "\(path)")
            // The const array sits in .rodata at its symbol's address.
            let banner = try #require(elf.symbol(named: "fixture_banner"))
            let start = Int(banner.value - rodata.address)
            #expect(Array(bytes[start..<(start + Int(banner.size))]) == Array("scalene-attach ELF fixture banner\0".utf8))
            #expect(elf.contents(of: rodata, limit: Int(rodata.size) - 1) == nil, "over the limit")
        }
    }

    @Test("loadBias of the library dlopen'ed here: symbol value + bias == dlsym address")
    func loadBiasOfLoadedLibrary() throws {
        let fixtures = try ELFFixtures.get()
        let elf = try ELFFile(path: fixtures.library)
        guard let handle = dlopen(fixtures.library, RTLD_NOW | RTLD_LOCAL) else {
            throw HarnessError("dlopen: \(String(cString: dlerror()))")
        }
        defer { dlclose(handle) }
        let mapped = try mappings(of: canonicalPath(fixtures.library), pid: getpid())
        #expect(mapped.count >= 3)
        let bias = try #require(elf.loadBias(mappings: mapped.map { (start: $0.start, offset: $0.offset) }))
        #expect(bias != 0)
        #expect(bias % 4096 == 0)
        for name in ["fixture_add", "fixture_sum_table", "fixture_counter", "fixture_table", "fixture_zeroed",
                     "fixture_banner"] {
            let symbol = try #require(elf.symbol(named: name))
            let address = try #require(dlsym(handle, name), "dlsym \(name)")
            #expect(symbol.value &+ bias == UInt64(UInt(bitPattern: address)), "\(name)")
        }
        // A static function is not visible to dlsym, but lies in an executable mapping of the file.
        let helper = try #require(elf.symbol(named: "fixture_static_helper"))
        let helperAddress = helper.value &+ bias
        #expect(mapped.contains { $0.start <= helperAddress && helperAddress < $0.end && $0.perms.hasPrefix("r-x") })
        // Calling through the resolved address proves it is the function.
        let add = unsafeBitCast(try #require(dlsym(handle, "fixture_add")), to: (@convention(c) (Int32, Int32) -> Int32).self)
        #expect(add(20, 22) == 42)
    }

    @Test("loadBias of running executables: 0 for -no-pie, page-aligned and nonzero for a PIE",
          arguments: [false, true])
    func loadBiasOfExecutable(pie: Bool) throws {
        let fixtures = try ELFFixtures.get()
        let path = pie ? fixtures.pieExecutable : fixtures.executable
        let elf = try ELFFile(path: path)
        let running = try RunningFixture(path)
        defer { running.stop() }
        // READY <&fixture_counter> <fixture_add> <fixture_big_buffer>
        let line = try running.firstLine()
        let fields = line.split(separator: " ")
        try #require(fields.count == 4 && fields[0] == "READY", "\(line)")
        let mapped = try mappings(of: canonicalPath(path), pid: running.pid)
        let bias = try #require(elf.loadBias(mappings: mapped.map { (start: $0.start, offset: $0.offset) }))
        if pie {
            #expect(bias != 0)
            #expect(bias % 4096 == 0)
        } else {
            #expect(bias == 0)
        }
        for (index, name) in ["fixture_counter", "fixture_add", "fixture_big_buffer"].enumerated() {
            let symbol = try #require(elf.symbol(named: name))
            #expect(symbol.value &+ bias == hexAddress(fields[index + 1]), "\(name)")
        }
    }

    @Test("loadBias needs the mapping of the first segment's page")
    func loadBiasArithmetic() throws {
        let fixtures = try ELFFixtures.get()
        let library = try ELFFile(path: fixtures.library)
        let executable = try ELFFile(path: fixtures.executable)
        let firstExecutableSegment = try #require(executable.segments.min { $0.fileOffset < $1.fileOffset })
        #expect(firstExecutableSegment.virtualAddress == 0x400000, "the default -no-pie base")
        #expect(library.loadBias(mappings: [(start: 0x7f00_1234_0000, offset: 0x1000), (start: 0x7f00_1233_f000, offset: 0)])
                == 0x7f00_1233_f000)
        #expect(executable.loadBias(mappings: [(start: 0x400000, offset: 0)]) == 0)
        #expect(executable.loadBias(mappings: [(start: 0x500000, offset: 0)]) == 0x100000)
        #expect(library.loadBias(mappings: [(start: 0x7f00_1234_0000, offset: 0x1000)]) == nil, "no offset-0 mapping")
        #expect(library.loadBias(mappings: []) == nil)
    }

    @Test("a file that is not ELF throws .notELF; a missing file .cannotOpen with ENOENT")
    func errors() throws {
        let fixtures = try ELFFixtures.get()
        #expect(throws: ELFError.notELF(path: fixtures.textFile)) { try ELFFile(path: fixtures.textFile) }
        #expect(throws: ELFError.notELF(path: fixtures.emptyFile)) { try ELFFile(path: fixtures.emptyFile) }
        #expect(throws: ELFError.notELF(path: ELFFixtures.source)) { try ELFFile(path: ELFFixtures.source) }
        let missing = fixtures.directory + "/no-such-file.so"
        #expect(throws: ELFError.cannotOpen(path: missing, errno: ENOENT)) { try ELFFile(path: missing) }
    }
}
