/// Process memory made of byte regions the caller supplies: the test double for `RemoteMemory`.
///
/// Tests lay out interpreter structures at chosen addresses and run the same decoders the tool runs
/// against a live process.
public struct LocalMemory: ProcessMemory {
    public struct Region: Sendable, Equatable {
        public var address: UInt64
        public var bytes: [UInt8]

        public init(address: UInt64, bytes: [UInt8]) {
            self.address = address
            self.bytes = bytes
        }
    }

    public var regions: [Region]

    public init(regions: [Region] = []) {
        self.regions = regions
    }

    /// Adds a region; regions must not overlap.
    public mutating func map(_ bytes: [UInt8], at address: UInt64) {
        regions.append(Region(address: address, bytes: bytes))
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(MemoryReadError) {
        for region in regions {
            // Regions may come from fuzz input: any address, any length, overlapping the top of the
            // address space.
            guard let start = RemoteArithmetic.offset(of: address, length: buffer.count, inRangeAt: region.address,
                                                      count: region.bytes.count) else { continue }
            region.bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<(start + buffer.count)]))
            }
            return
        }
        throw .unmapped(address: address, length: buffer.count)
    }
}
