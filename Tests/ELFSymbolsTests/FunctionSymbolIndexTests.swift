import ELFSymbols
import Testing

@Suite("FunctionSymbolIndex: address → function")
struct FunctionSymbolIndexTests {
    @Test("every address inside a function finds it with its offset; data and gaps find nothing")
    func lookups() throws {
        let fixtures = try ELFFixtures.get()
        let elf = try ELFFile(path: fixtures.library)
        let index = try FunctionSymbolIndex(path: fixtures.library)
        for name in ["fixture_add", "fixture_sum_table", "fixture_literal", "fixture_static_helper"] {
            let symbol = try #require(elf.symbol(named: name))
            #expect(symbol.size > 0)
            #expect(index.function(containing: symbol.value)?.name == name)
            #expect(index.function(containing: symbol.value)?.offset == 0)
            let last = symbol.value + symbol.size - 1
            #expect(index.function(containing: last)?.name == name, "\(name) + \(symbol.size - 1)")
            #expect(index.function(containing: last)?.offset == symbol.size - 1)
        }
        let counter = try #require(elf.symbol(named: "fixture_counter"))
        #expect(index.function(containing: counter.value) == nil, "a data object is no function")
        #expect(index.function(containing: 0) == nil)
    }

    @Test("a stripped file names only its exported functions; static ones are unknown")
    func stripped() throws {
        let fixtures = try ELFFixtures.get()
        let full = try ELFFile(path: fixtures.library)
        let index = try FunctionSymbolIndex(path: fixtures.strippedLibrary)
        let helper = try #require(full.symbol(named: "fixture_static_helper"))
        let add = try #require(full.symbol(named: "fixture_add"))
        #expect(index.function(containing: add.value + 1)?.name == "fixture_add")
        #expect(index.function(containing: helper.value)?.name != "fixture_static_helper")
    }

    @Test("the limit bounds the index")
    func bounded() throws {
        let fixtures = try ELFFixtures.get()
        #expect(try FunctionSymbolIndex(path: fixtures.library, limit: 2).count == 2)
        #expect(try FunctionSymbolIndex(path: fixtures.library).count > 2)
    }
}
