/// Why a read of another process's memory failed.
public enum MemoryReadError: Error, Equatable, Sendable {
    /// The range is not (entirely) mapped: a stale or torn pointer. Normal while sampling.
    case unmapped(address: UInt64, length: Int)
    /// The process no longer exists.
    case processGone
    /// The kernel refused access (ptrace access mode check).
    case permissionDenied
    /// Any other errno from the read.
    case failed(errno: Int32)
}

/// Read access to the memory of a process: the target through `process_vm_readv`, or local bytes in
/// tests. Everything that decodes interpreter structures reads through this, so layout decoding can be
/// unit-tested on memory the test builds itself.
public protocol ProcessMemory: Sendable {
    /// Copies `buffer.count` bytes at `address` into `buffer`, or throws. Partial reads throw
    /// `.unmapped`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(MemoryReadError)

    /// Reads the ranges of `batch` into it, in as few system calls as the memory allows; a range
    /// that cannot be read is marked so, and the others are read all the same.
    func read(_ batch: inout ReadBatch)
}

extension ProcessMemory {
    /// `count` bytes at `address`.
    public func bytes(at address: UInt64, count: Int) throws(MemoryReadError) -> [UInt8] {
        guard count > 0 else { return [] }
        var result = [UInt8](repeating: 0, count: count)
        var failure: MemoryReadError?
        result.withUnsafeMutableBytes { buffer in
            do throws(MemoryReadError) { try read(into: buffer, at: address) } catch { failure = error }
        }
        if let failure { throw failure }
        return result
    }

    /// A little-endian integer at `address`.
    public func integer<T: FixedWidthInteger>(_: T.Type = T.self, at address: UInt64) throws(MemoryReadError) -> T {
        var value = T.zero
        var failure: MemoryReadError?
        withUnsafeMutableBytes(of: &value) { buffer in
            do throws(MemoryReadError) { try read(into: buffer, at: address) } catch { failure = error }
        }
        if let failure { throw failure }
        return T(littleEndian: value)
    }

    /// A pointer-sized word at `address`.
    public func pointer(at address: UInt64) throws(MemoryReadError) -> UInt64 {
        try integer(UInt64.self, at: address)
    }
}

/// A fixed-size copy of remote bytes with bounds-checked, non-trapping accessors.
///
/// Remote structures are copied in one read and then decoded field by field; every accessor returns
/// nil rather than trapping when an offset falls outside the copy (torn or wrong data is normal).
public struct RemoteBytes: Sendable {
    public let address: UInt64
    /// A view into a buffer that several values may share (see `subrange`).
    private let bytes: ArraySlice<UInt8>

    public init(address: UInt64, storage: [UInt8]) {
        self.address = address
        self.bytes = storage[...]
    }

    /// `count` bytes of `storage` from `offset` (in bounds: the caller laid the storage out).
    init(address: UInt64, storage: [UInt8], offset: Int, count: Int) {
        self.address = address
        self.bytes = storage[offset..<(offset + count)]
    }

    private init(address: UInt64, bytes: ArraySlice<UInt8>) {
        self.address = address
        self.bytes = bytes
    }

    /// The bytes, as an array of their own.
    public var storage: [UInt8] { Array(bytes) }

    public var count: Int { bytes.count }

    public func integer<T: FixedWidthInteger>(_: T.Type = T.self, at offset: Int) -> T? {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= bytes.count - size else { return nil }
        return bytes.withUnsafeBytes { raw in
            T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
    }

    // The accessors readers call for every field of every frame, written out for their types: a
    // generic call from another module is not specialised, and costs tens of times more.
    public func pointer(at offset: Int) -> UInt64? {
        guard offset >= 0, offset <= bytes.count - 8 else { return nil }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    }

    public func int32(at offset: Int) -> Int32? {
        guard offset >= 0, offset <= bytes.count - 4 else { return nil }
        return bytes.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: Int32.self)) }
    }

    public func uint8(at offset: Int) -> UInt8? {
        guard offset >= 0, offset < bytes.count else { return nil }
        return bytes[bytes.startIndex + offset]
    }

    public func slice(_ offset: Int, _ length: Int) -> ArraySlice<UInt8>? {
        guard offset >= 0, length >= 0, offset <= bytes.count - length else { return nil }
        return bytes[(bytes.startIndex + offset)..<(bytes.startIndex + offset + length)]
    }

    /// The same bytes, said to come from `address` (for a buffer that gathers several reads).
    public init(rebasing other: RemoteBytes, at address: UInt64) {
        self.init(address: address, bytes: other.bytes)
    }

    /// `length` bytes at `offset` as a value of their own, sharing this one's buffer (no copy: the
    /// stack reader cuts many frames out of one page read).
    public func subrange(_ offset: Int, _ length: Int) -> RemoteBytes? {
        slice(offset, length).map { RemoteBytes(address: address &+ UInt64(offset), bytes: $0) }
    }

    /// The `length` bytes at remote `address`, if this copy holds all of them (checked: the address
    /// may be a torn pointer anywhere in the 64-bit space).
    public func view(at address: UInt64, count length: Int) -> RemoteBytes? {
        guard let offset = RemoteArithmetic.offset(of: address, length: length, inRangeAt: self.address,
                                                   count: count) else { return nil }
        return subrange(offset, length)
    }
}

extension ProcessMemory {
    /// Several ranges read together (see `read(_:)`), each with its own result: nil where its
    /// range could not be read.
    public func remoteBytes(eachOf ranges: [(address: UInt64, count: Int)]) -> [RemoteBytes?] {
        var batch = ReadBatch()
        for range in ranges { batch.append(range.address, count: range.count) }
        read(&batch)
        return ranges.indices.map { batch.bytes($0) }
    }

    /// One range at a time (memories that cannot read several in one call).
    public func read(_ batch: inout ReadBatch) {
        batch.fill { _, address, buffer in
            do throws(MemoryReadError) { try read(into: buffer, at: address) } catch { return false }
            return true
        }
    }

    /// Copies `count` bytes at `address` as a `RemoteBytes` value.
    public func remoteBytes(at address: UInt64, count: Int) throws(MemoryReadError) -> RemoteBytes {
        RemoteBytes(address: address, storage: try bytes(at: address, count: count))
    }
}

/// Ranges of a process's memory to read together, and then their bytes. A sampler builds one
/// every tick: the arrays are kept between uses (`removeAll`), so a tick allocates nothing here.
public struct ReadBatch {
    /// Address and length of each range, one after the other.
    public private(set) var ranges: [UInt64] = []
    /// Where each range's bytes start in `storage`.
    private var offsets: [Int] = []
    private var readable: [Bool] = []
    private var storage: [UInt8] = []
    private var total = 0

    public init() {}

    public var count: Int { offsets.count }

    /// Forgets the ranges (and bytes), keeping the memory for the next ones.
    public mutating func removeAll() {
        ranges.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true)
        readable.removeAll(keepingCapacity: true)
        total = 0
    }

    /// Adds a range; returns its index. A range no read can take (empty, at 0, past the top of
    /// the address space or larger than 16 MiB) is kept, and reads as unreadable.
    @discardableResult
    public mutating func append(_ address: UInt64, count: Int) -> Int {
        let valid = count > 0 && count <= 1 << 24 && address != 0 && RemoteArithmetic.end(of: address, count: count) != nil
        ranges.append(valid ? address : 0)
        ranges.append(valid ? UInt64(count) : 0)
        offsets.append(total)
        readable.append(false)
        if valid { total += count }
        return offsets.count - 1
    }

    /// The bytes of range `index`, nil if it could not be read (or was not read yet).
    public func bytes(_ index: Int) -> RemoteBytes? {
        guard index >= 0, index < offsets.count, readable[index] else { return nil }
        let length = Int(ranges[2 * index + 1])
        return RemoteBytes(address: ranges[2 * index], storage: storage, offset: offsets[index], count: length)
    }

    /// Makes room for every range's bytes and calls `read` for each valid range, in order, with
    /// its buffer; `read` says whether the range was read whole. (Memories that read one range at a
    /// time use this; `RemoteMemory` reads runs of ranges with `fillRuns`.)
    public mutating func fill(_ read: (Int, UInt64, UnsafeMutableRawBufferPointer) -> Bool) {
        prepareStorage()
        let count = offsets.count
        for index in 0..<count where ranges[2 * index] != 0 {
            let offset = offsets[index], length = Int(ranges[2 * index + 1]), address = ranges[2 * index]
            readable[index] = storage.withUnsafeMutableBytes { raw in
                read(index, address, UnsafeMutableRawBufferPointer(rebasing: raw[offset..<(offset + length)]))
            }
        }
    }

    /// Calls `read` for runs of consecutive valid ranges (at most `limit` each) with the bytes the
    /// run goes into and its ranges (address, length pairs); `read` returns how many ranges of the
    /// run it read whole, in order (a run stops at a range it cannot read, which is skipped), or
    /// nil to give up (the process is gone).
    mutating func fillRuns(limit: Int, _ read: (UnsafeMutableRawPointer, UnsafeBufferPointer<UInt64>, Int) -> Int?) {
        prepareStorage()
        let count = offsets.count
        var next = 0
        while next < count {
            guard ranges[2 * next] != 0 else { next += 1; continue }
            var end = next
            while end < count, end - next < limit, ranges[2 * end] != 0 { end += 1 }
            let offset = offsets[next]
            let done = storage.withUnsafeMutableBytes { raw in
                ranges.withUnsafeBufferPointer { pairs in
                    read(raw.baseAddress! + offset, UnsafeBufferPointer(rebasing: pairs[(2 * next)..<(2 * end)]), end - next)
                }
            }
            guard let done else { return }
            for index in next..<(next + min(done, end - next)) { readable[index] = true }
            next += min(done, end - next)
            // The run stopped at a range that cannot be read: go on after it.
            if next < end { next += 1 }
        }
    }

    /// `storage` at least `total` bytes long; its old bytes are never used again (a range is used
    /// only once read), so they are not cleared.
    private mutating func prepareStorage() {
        if storage.count < max(total, 1) {
            storage = [UInt8](repeating: 0, count: max(total, storage.count * 2, 4096))
        }
    }
}
