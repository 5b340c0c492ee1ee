import ELFSymbols
import Foundation
import Testing

@Suite("symbol lookup through .gnu.hash and .hash")
struct SymbolHashTableTests {
    @Test("the two hash functions, on values the ELF and GNU documentation give")
    func hashFunctions() {
        #expect(SymbolHashTable.gnuHash([]) == 5381)
        #expect(SymbolHashTable.gnuHash(Array("printf".utf8)) == 0x156b_2bb8)
        #expect(SymbolHashTable.gnuHash(Array("exit".utf8)) == 0x7c96_7e3f)
        #expect(SymbolHashTable.sysVHash([]) == 0)
        #expect(SymbolHashTable.sysVHash(Array("printf".utf8)) == 0x0779_05a6)
        #expect(SymbolHashTable.sysVHash(Array("syscall".utf8)) == 0x0b09_985c)
    }

    /// The defined dynamic symbols of a file as nm lists them, version suffixes dropped.
    static func dynamicNames(_ path: String) throws -> Set<String> {
        let output = try ELFFixtures.run("nm", ["-D", "--defined-only", path])
        return Set(output.split(separator: "\n").compactMap { line -> String? in
            guard let name = line.split(separator: " ").last else { return nil }
            return String(name.split(separator: "@").first ?? name)
        })
    }

    @Test("libc (both tables), and copies without .gnu.hash or without either: the same symbol for every exported name")
    func sameAsReadingEveryEntry() throws {
        let fixtures = try ELFFixtures.get()
        let libc = "/lib/x86_64-linux-gnu/libc.so.6"
        try #require(FileManager.default.fileExists(atPath: libc))
        let sysVOnly = fixtures.directory + "/libc-sysv-hash.so"
        let noHash = fixtures.directory + "/libc-no-hash.so"
        try ELFFixtures.run("objcopy", ["--remove-section=.gnu.hash", libc, sysVOnly])
        try ELFFixtures.run("objcopy", ["--remove-section=.gnu.hash", "--remove-section=.hash", libc, noHash])
        let names = try Self.dynamicNames(libc).union(["no_such_symbol", "", "printf@@GLIBC_2.2.5"])
        #expect(names.count > 1000)
        let hashed = try ELFFile(path: libc, only: names, staticSymbols: false)
        let sysV = try ELFFile(path: sysVOnly, only: names, staticSymbols: false)
        let scanned = try ELFFile(path: noHash, only: names, staticSymbols: false)
        #expect(hashed.section(named: ".gnu.hash") != nil && sysV.section(named: ".gnu.hash") == nil)
        #expect(sysV.section(named: ".hash") != nil && scanned.section(named: ".hash") == nil)
        #expect(scanned.symbolCount > 1000)
        #expect(hashed.symbolCount == scanned.symbolCount && sysV.symbolCount == scanned.symbolCount)
        for name in names {
            #expect(hashed.symbol(named: name) == scanned.symbol(named: name), "\(name) through .gnu.hash")
            #expect(sysV.symbol(named: name) == scanned.symbol(named: name), "\(name) through .hash")
        }
        // Versioned twins (two definitions of one name): the first in the table wins, as before.
        #expect(hashed.symbol(named: "memcpy") != nil && hashed.symbol(named: "no_such_symbol") == nil)
    }

    @Test("fixture library linked with each hash style: exported symbols through the table, static ones from .symtab")
    func hashStyles() throws {
        let fixtures = try ELFFixtures.get()
        let reference = try ELFFile(path: fixtures.library)
        for style in ["gnu", "sysv", "both"] {
            let path = fixtures.directory + "/libfixture-\(style).so"
            try ELFFixtures.run("cc", ["-shared", "-fPIC", "-O1", "-Wl,--hash-style=\(style)", "-o", path, ELFFixtures.source])
            let wanted: Set<String> = ["fixture_add", "fixture_counter", "fixture_static_helper", "fixture_big_buffer", "absent"]
            let all = try ELFFile(path: path, only: wanted)
            let dynamicOnly = try ELFFile(path: path, only: wanted, staticSymbols: false)
            for name in wanted {
                #expect(all.symbol(named: name) == reference.symbol(named: name), "\(style): \(name)")
            }
            #expect(dynamicOnly.symbol(named: "fixture_add") == reference.symbol(named: "fixture_add"), "\(style)")
            #expect(dynamicOnly.symbol(named: "fixture_counter") == reference.symbol(named: "fixture_counter"), "\(style)")
            #expect(dynamicOnly.symbol(named: "fixture_static_helper") == nil, "\(style): static, only in .symtab")
            #expect(dynamicOnly.symbolCount == 2, "\(style)")
        }
    }

    @Test("hostile tables: truncated, huge counts, chains that loop or run past the end; nothing traps")
    func hostileTables() {
        func words(_ values: [UInt32]) -> [UInt8] { values.flatMap { value in (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } } }
        let name = Array("printf".utf8)
        // Headers that do not fit.
        #expect(SymbolHashTable(kind: .gnu, bytes: [], is64Bit: true, symbolCount: 10) == nil)
        #expect(SymbolHashTable(kind: .gnu, bytes: words([1, 0, 0, 6]), is64Bit: true, symbolCount: 10) == nil, "no Bloom word")
        #expect(SymbolHashTable(kind: .gnu, bytes: words([.max, 0, .max, 6]), is64Bit: true, symbolCount: 10) == nil)
        #expect(SymbolHashTable(kind: .sysV, bytes: words([0, 5]), is64Bit: true, symbolCount: 10) == nil, "no bucket")
        #expect(SymbolHashTable(kind: .sysV, bytes: words([1, .max, 1]), is64Bit: true, symbolCount: 10) == nil)

        // A SysV chain that loops forever (1 → 2 → 1) and one that points past the table.
        let loop = words([1, 4, 1, 0, 2, 1, 9])
        let sysV = SymbolHashTable(kind: .sysV, bytes: loop, is64Bit: true, symbolCount: 4)
        #expect(sysV?.candidates(for: name) == [1, 2])
        // A GNU table whose Bloom filter passes everything, its one bucket starting at symbol 1 and
        // a chain without an end bit that runs off the section.
        let gnu = words([1, 1, 1, 0]) + [UInt8](repeating: 0xff, count: 8) + words([1])
            + words([SymbolHashTable.gnuHash(name) & ~1, 6, SymbolHashTable.gnuHash(name) & ~1])
        let table = SymbolHashTable(kind: .gnu, bytes: gnu, is64Bit: true, symbolCount: 1 << 30)
        #expect(table?.candidates(for: name) == [1, 3])
        #expect(SymbolHashTable(kind: .gnu, bytes: gnu, is64Bit: true, symbolCount: 2)?.candidates(for: name) == [1],
                "never past the symbol table")
        // A bucket index below the first hashed symbol, and a 32-bit Bloom filter that rejects.
        #expect(SymbolHashTable(kind: .gnu, bytes: words([1, 5, 1, 0, .max, 2, 0]), is64Bit: false, symbolCount: 9)?
            .candidates(for: name) == [])
        #expect(SymbolHashTable(kind: .gnu, bytes: words([1, 0, 1, 0, 0, 0, 0]), is64Bit: false, symbolCount: 9)?
            .candidates(for: name) == [])

        // Every prefix of a real-looking table, and random bytes, with every name of a small list.
        var generator = SystemRandomNumberGenerator()
        for cut in 0...gnu.count {
            _ = SymbolHashTable(kind: .gnu, bytes: Array(gnu[0..<cut]), is64Bit: true, symbolCount: 8)?.candidates(for: name)
            _ = SymbolHashTable(kind: .sysV, bytes: Array(loop[0..<min(cut, loop.count)]), is64Bit: true, symbolCount: 8)?
                .candidates(for: name)
        }
        for _ in 0..<500 {
            let bytes = (0..<Int.random(in: 0..<96, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for kind in [SymbolHashTable.Kind.gnu, .sysV] {
                for is64Bit in [true, false] {
                    let candidates = SymbolHashTable(kind: kind, bytes: bytes, is64Bit: is64Bit, symbolCount: 64)?.candidates(for: name) ?? []
                    #expect(candidates.allSatisfy { $0 >= 0 && $0 < 64 })
                }
            }
        }
    }
}
