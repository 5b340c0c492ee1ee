/// A dynamic symbol table's hash table (`.gnu.hash`, or the older SysV `.hash`), read from the
/// section's bytes: what the dynamic linker itself looks names up with. Finding a few names this
/// way reads a handful of entries instead of every symbol of a large library.
///
/// The bytes are the file's and untrusted: every count, index and chain is bounds-checked, chains
/// are walked at most `symbolCount` steps, and anything inconsistent makes the table unusable
/// (`init` returns nil) or the lookup find nothing. Little-endian files only (the caller checks).
public struct SymbolHashTable: Sendable {
    public enum Kind: Sendable {
        /// `.gnu.hash` (SHT_GNU_HASH): a Bloom filter, buckets and hash-value chains.
        case gnu
        /// `.hash` (SHT_HASH): buckets and chains of symbol indices.
        case sysV
    }

    public let kind: Kind
    private let bytes: [UInt8]
    /// Entries in the symbol table the hash table indexes (chains never reach past it).
    private let symbolCount: Int
    // .gnu.hash: the header's fields and where the Bloom words, buckets and chain start.
    private let bucketCount: Int
    private let symbolOffset: Int
    private let bloomWords: Int
    private let bloomShift: UInt32
    private let bloomWordBytes: Int
    private let bucketsStart: Int
    private let chainStart: Int
    // .hash: its chain has one entry per symbol.
    private let chainCount: Int

    /// Reads the header of a hash section; nil when the header does not fit the section.
    ///
    /// - Parameters:
    ///   - bytes: the section's bytes as in the file.
    ///   - is64Bit: ELFCLASS64 (the Bloom filter's words are 64 bits wide, 32 otherwise).
    ///   - symbolCount: the number of entries of the symbol table it indexes.
    public init?(kind: Kind, bytes: [UInt8], is64Bit: Bool, symbolCount: Int) {
        self.kind = kind
        self.bytes = bytes
        self.symbolCount = max(0, symbolCount)
        switch kind {
        case .gnu:
            guard let buckets = Self.word(bytes, 0), let offset = Self.word(bytes, 4),
                  let blooms = Self.word(bytes, 8), let shift = Self.word(bytes, 12),
                  buckets > 0, blooms > 0 else { return nil }
            let wordBytes = is64Bit ? 8 : 4
            let bucketsStart = 16 + Int(blooms) * wordBytes
            let chainStart = bucketsStart + Int(buckets) * 4
            guard chainStart <= bytes.count else { return nil }
            bucketCount = Int(buckets)
            symbolOffset = Int(offset)
            bloomWords = Int(blooms)
            bloomShift = shift
            bloomWordBytes = wordBytes
            self.bucketsStart = bucketsStart
            self.chainStart = chainStart
            chainCount = (bytes.count - chainStart) / 4
        case .sysV:
            guard let buckets = Self.word(bytes, 0), let chains = Self.word(bytes, 4), buckets > 0 else { return nil }
            let bucketsStart = 8
            let chainStart = bucketsStart + Int(buckets) * 4
            guard chainStart + Int(chains) * 4 <= bytes.count else { return nil }
            bucketCount = Int(buckets)
            chainCount = Int(chains)
            self.bucketsStart = bucketsStart
            self.chainStart = chainStart
            symbolOffset = 0
            bloomWords = 0
            bloomShift = 0
            bloomWordBytes = 0
        }
    }

    /// The indices of the symbols that may be `name`, in increasing order: every symbol the table
    /// chains to `name`'s hash. The caller compares the names (a hash match is not a name match).
    public func candidates(for name: [UInt8]) -> [Int] {
        switch kind {
        case .gnu: return gnuCandidates(for: name)
        case .sysV: return sysVCandidates(for: name)
        }
    }

    /// The GNU hash (`dl_new_hash`): h = h * 33 + c, from 5381.
    public static func gnuHash(_ name: [UInt8]) -> UInt32 {
        name.reduce(UInt32(5381)) { $0 &* 33 &+ UInt32($1) }
    }

    /// The SysV ELF hash (`elf_hash` of the System V ABI).
    public static func sysVHash(_ name: [UInt8]) -> UInt32 {
        var hash: UInt32 = 0
        for byte in name {
            hash = (hash << 4) &+ UInt32(byte)
            let high = hash & 0xf000_0000
            if high != 0 { hash ^= high >> 24 }
            hash &= ~high
        }
        return hash
    }

    private func gnuCandidates(for name: [UInt8]) -> [Int] {
        let hash = Self.gnuHash(name)
        let bits = UInt32(bloomWordBytes * 8)
        // The Bloom filter: both bits clear or set tells "absent" at the cost of one word.
        let wordIndex = Int((hash / bits) % UInt32(bloomWords))
        guard let bloom = Self.integer(bytes, 16 + wordIndex * bloomWordBytes, size: bloomWordBytes) else { return [] }
        let mask = (UInt64(1) << UInt64(hash % bits)) | (UInt64(1) << UInt64((hash >> (bloomShift % 32)) % bits))
        guard bloom & mask == mask else { return [] }
        guard let first = Self.word(bytes, bucketsStart + Int(hash % UInt32(bucketCount)) * 4) else { return [] }
        var index = Int(first)
        guard index >= symbolOffset else { return [] }
        // One chain entry per hashed symbol from `first` on; the last of the chain has bit 0 set.
        var found = [Int]()
        while index < symbolCount {
            let chainIndex = index - symbolOffset
            guard chainIndex < chainCount, let value = Self.word(bytes, chainStart + chainIndex * 4) else { break }
            if value | 1 == hash | 1 { found.append(index) }
            if value & 1 != 0 { break }
            index += 1
        }
        return found
    }

    private func sysVCandidates(for name: [UInt8]) -> [Int] {
        let hash = Self.sysVHash(name)
        guard let first = Self.word(bytes, bucketsStart + Int(hash % UInt32(bucketCount)) * 4) else { return [] }
        var found = [Int]()
        var index = Int(first)
        // 0 (STN_UNDEF) ends a chain; a chain longer than the table is a loop.
        var steps = 0
        while index != 0, index < chainCount, steps <= chainCount {
            if index < symbolCount { found.append(index) }
            guard let next = Self.word(bytes, chainStart + index * 4) else { break }
            index = Int(next)
            steps += 1
        }
        return Array(Set(found)).sorted()
    }

    /// A little-endian 32-bit word at `offset`, nil past the end.
    static func word(_ bytes: [UInt8], _ offset: Int) -> UInt32? {
        integer(bytes, offset, size: 4).map { UInt32(truncatingIfNeeded: $0) }
    }

    /// A little-endian integer of `size` bytes (at most 8) at `offset`, nil past the end.
    static func integer(_ bytes: [UInt8], _ offset: Int, size: Int) -> UInt64? {
        guard offset >= 0, size <= 8, offset <= bytes.count - size else { return nil }
        var value: UInt64 = 0
        for index in 0..<size { value |= UInt64(bytes[offset + index]) << UInt64(8 * index) }
        return value
    }
}
