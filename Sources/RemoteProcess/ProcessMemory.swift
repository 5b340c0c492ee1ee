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

    /// Copies several ranges, in as few system calls as the memory allows; nil if any range could
    /// not be read (the caller then reads them one by one).
    func remoteBytes(batch: [(address: UInt64, count: Int)]) -> [RemoteBytes]?

    /// Copies several ranges, in as few system calls as the memory allows; each entry is nil where
    /// its range could not be read, and the others are read all the same.
    func remoteBytes(eachOf ranges: [(address: UInt64, count: Int)]) -> [RemoteBytes?]
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

    public func pointer(at offset: Int) -> UInt64? { integer(UInt64.self, at: offset) }
    public func int32(at offset: Int) -> Int32? { integer(Int32.self, at: offset) }
    public func uint8(at offset: Int) -> UInt8? { integer(UInt8.self, at: offset) }

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
    public func remoteBytes(batch: [(address: UInt64, count: Int)]) -> [RemoteBytes]? {
        var result = [RemoteBytes]()
        result.reserveCapacity(batch.count)
        for request in batch {
            guard let bytes = try? remoteBytes(at: request.address, count: request.count) else { return nil }
            result.append(bytes)
        }
        return result
    }

    public func remoteBytes(eachOf ranges: [(address: UInt64, count: Int)]) -> [RemoteBytes?] {
        ranges.map { try? remoteBytes(at: $0.address, count: $0.count) }
    }

    /// Copies `count` bytes at `address` as a `RemoteBytes` value.
    public func remoteBytes(at address: UInt64, count: Int) throws(MemoryReadError) -> RemoteBytes {
        RemoteBytes(address: address, storage: try bytes(at: address, count: count))
    }
}
