/// Process memory made of byte regions the caller supplies: the test double for `RemoteMemory`.
///
/// Tests lay out interpreter structures at chosen addresses and run the same decoders the tool runs
/// against a live process.
public struct LocalMemory: ProcessMemory {
    public struct Region: Sendable {
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
        let length = UInt64(buffer.count)
        for region in regions {
            let end = region.address + UInt64(region.bytes.count)
            guard address >= region.address, address &+ length <= end, address &+ length >= address else { continue }
            let start = Int(address - region.address)
            region.bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<(start + buffer.count)]))
            }
            return
        }
        throw .unmapped(address: address, length: buffer.count)
    }
}
