import RemoteProcess

/// A picture of another process's memory as fuzz input: which layout to read it with, two
/// addresses to start from, and regions of bytes at chosen addresses.
///
/// Format (little-endian): `layout: u8` (an index into `FuzzLayouts.all`, modulo its count),
/// `codeType: u64` (`&PyCode_Type`), `root: u64` (`&_PyRuntime`), then regions until the input
/// ends, each `address: u64, length: u16, bytes[length]` (a region cut short by the end of the input
/// keeps what there is). Decoding never fails: any bytes are an image.
public struct MemoryImage: Sendable, Equatable {
    public var layout: UInt8
    public var codeType: UInt64
    public var root: UInt64
    public var regions: [LocalMemory.Region]

    public init(layout: UInt8, codeType: UInt64, root: UInt64, regions: [LocalMemory.Region]) {
        self.layout = layout
        self.codeType = codeType
        self.root = root
        self.regions = regions
    }

    /// At most this many regions are decoded: the test double scans them linearly.
    static let maximumRegions = 4096

    public init(decoding bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        layout = reader.u8() ?? 0
        codeType = reader.u64() ?? 0
        root = reader.u64() ?? 0
        regions = []
        while regions.count < Self.maximumRegions, let address = reader.u64() {
            let length = Int(reader.u16() ?? 0)
            regions.append(LocalMemory.Region(address: address, bytes: reader.take(length)))
        }
    }

    /// The regions as process memory, looked up by binary search (recorded images hold hundreds).
    public var memory: ImageMemory { ImageMemory(regions: regions) }

    /// The encoding `init(decoding:)` reads; regions longer than 65535 bytes are split.
    public func encoded() -> [UInt8] {
        var out = [layout]
        out += Self.littleEndian(codeType) + Self.littleEndian(root)
        for region in regions {
            var offset = 0
            repeat {
                let length = min(region.bytes.count - offset, Int(UInt16.max))
                out += Self.littleEndian(region.address &+ UInt64(offset))
                out += [UInt8(length & 0xff), UInt8(length >> 8)]
                out += region.bytes[offset..<(offset + length)]
                offset += length
            } while offset < region.bytes.count
        }
        return out
    }

    static func littleEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }
}

/// Reads little-endian fields from the front of a byte array; nil once it runs out.
struct ByteReader {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var remaining: Int { bytes.count - position }

    mutating func u8() -> UInt8? {
        guard position < bytes.count else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u16() -> UInt16? {
        guard remaining >= 2 else { return nil }
        defer { position += 2 }
        return UInt16(bytes[position]) | UInt16(bytes[position + 1]) << 8
    }

    mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        var value: UInt32 = 0
        for index in 0..<4 { value |= UInt32(bytes[position + index]) << (8 * UInt32(index)) }
        position += 4
        return value
    }

    mutating func u64() -> UInt64? {
        guard remaining >= 8 else { return nil }
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[position + index]) << (8 * UInt64(index)) }
        position += 8
        return value
    }

    /// Up to `count` bytes.
    mutating func take(_ count: Int) -> [UInt8] {
        let length = max(0, min(count, remaining))
        defer { position += length }
        return Array(bytes[position..<(position + length)])
    }

    mutating func rest() -> [UInt8] { take(remaining) }
}

/// A process memory that keeps a copy of every range read through it: the seed corpus of the
/// fuzzers is what real readers read from real interpreters.
public final class RecordingMemory<Base: ProcessMemory>: ProcessMemory, @unchecked Sendable {
    public let base: Base
    public private(set) var recorded: [LocalMemory.Region] = []

    public init(_ base: Base) {
        self.base = base
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(MemoryReadError) {
        try base.read(into: buffer, at: address)
        recorded.append(LocalMemory.Region(address: address, bytes: Array(buffer)))
    }

    /// The recorded ranges, overlapping and adjacent ones merged, in address order.
    public var merged: [LocalMemory.Region] {
        var result = [LocalMemory.Region]()
        for region in recorded.sorted(by: { $0.address < $1.address }) where !region.bytes.isEmpty {
            if var last = result.last, let lastEnd = RemoteArithmetic.end(of: last.address, count: last.bytes.count),
               region.address <= lastEnd {
                let overlap = Int(lastEnd - region.address)
                if region.bytes.count > overlap { last.bytes += region.bytes[overlap...] }
                result[result.count - 1] = last
            } else {
                result.append(region)
            }
        }
        return result
    }
}

/// Process memory made of an image's regions, sorted by address. Where regions overlap, a read is
/// served by the region with the greatest start address at or below it.
public struct ImageMemory: ProcessMemory {
    let regions: [LocalMemory.Region]

    init(regions: [LocalMemory.Region]) {
        self.regions = regions.sorted { $0.address < $1.address }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(MemoryReadError) {
        // The last region starting at or below `address`.
        var low = 0, high = regions.count
        while low < high {
            let middle = (low + high) / 2
            if regions[middle].address <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { throw .unmapped(address: address, length: buffer.count) }
        let region = regions[low - 1]
        guard let start = RemoteArithmetic.offset(of: address, length: buffer.count, inRangeAt: region.address,
                                                  count: region.bytes.count) else {
            throw .unmapped(address: address, length: buffer.count)
        }
        region.bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<(start + buffer.count)]))
        }
    }
}
