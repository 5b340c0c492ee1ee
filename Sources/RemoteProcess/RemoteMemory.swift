import CScaleneSys
#if canImport(Glibc)
import Glibc
#endif

/// The memory of a live process, read with `process_vm_readv` without stopping it.
///
/// Reads are not atomic with respect to the running target: a structure can change while it is
/// copied. Callers validate what they read (back-pointers, type pointers, bounds).
public struct RemoteMemory: ProcessMemory {
    public let pid: Int32

    public init(pid: Int32) {
        self.pid = pid
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(MemoryReadError) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        guard address != 0, address &+ UInt64(buffer.count) > address else {
            throw .unmapped(address: address, length: buffer.count)
        }
        let n = scalene_vm_read(pid, base, buffer.count, address)
        if n == buffer.count { return }
        if n >= 0 { throw .unmapped(address: address, length: buffer.count) }
        throw Self.error(errno: errno, address: address, length: buffer.count)
    }

    /// The most ranges one `process_vm_readv` takes (the kernel's IOV_MAX).
    public static let rangesPerCall = 1024

    /// Reads ranges `first..<end` of `ranges` in one system call, each into `storage` at its offset.
    /// Returns how many ranges from `first` on were read whole (a range that cannot be read ends
    /// the call), or nil when the process is gone.
    private func readRun(_ ranges: [(address: UInt64, count: Int)], _ first: Int, _ end: Int, offsets: [Int],
                         into storage: UnsafeMutableRawBufferPointer) -> Int? {
        guard let base = storage.baseAddress else { return 0 }
        var locals = [UnsafeMutableRawPointer?](); locals.reserveCapacity(end - first)
        var remotes = [UInt64](); remotes.reserveCapacity(end - first)
        var lengths = [Int](); lengths.reserveCapacity(end - first)
        for index in first..<end {
            locals.append(base + offsets[index])
            remotes.append(ranges[index].address)
            lengths.append(ranges[index].count)
        }
        let n = locals.withUnsafeBufferPointer { l in
            l.baseAddress!.withMemoryRebound(to: UnsafeMutableRawPointer.self, capacity: l.count) { lp in
                scalene_vm_readv(pid, lp, remotes, lengths, Int32(end - first))
            }
        }
        if n < 0 { return errno == ESRCH ? nil : 0 }
        var done = 0
        var covered = 0
        for index in first..<end {
            covered += ranges[index].count
            guard covered <= n else { break }
            done += 1
        }
        return done
    }

    /// Several ranges in as few `process_vm_readv` calls as possible: one per 1024 ranges while
    /// every range reads. A range that cannot be read (a stale or torn pointer) is nil and costs one
    /// more call for the ranges after it; the others are read all the same.
    public func remoteBytes(eachOf ranges: [(address: UInt64, count: Int)]) -> [RemoteBytes?] {
        var result = [RemoteBytes?](repeating: nil, count: ranges.count)
        // A range a read cannot take (empty, at 0, or past the top of the address space) is
        // left out of the calls.
        let valid = ranges.map { $0.count > 0 && $0.address != 0 && RemoteArithmetic.end(of: $0.address, count: $0.count) != nil }
        var offsets = [Int]()
        offsets.reserveCapacity(ranges.count)
        var total = 0
        for (index, range) in ranges.enumerated() {
            offsets.append(total)
            if valid[index] { total += range.count }
        }
        guard total > 0 else { return result }
        var readable = [Bool](repeating: false, count: ranges.count)
        // Not zero-filled first (tens of KB a tick with many threads): a range is used only if it
        // was read whole.
        let storage = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            var next = 0
            while next < ranges.count {
                guard valid[next] else { next += 1; continue }
                var end = next
                while end < ranges.count, end - next < Self.rangesPerCall, valid[end] { end += 1 }
                guard let done = readRun(ranges, next, end, offsets: offsets, into: raw) else { break }
                for index in next..<(next + done) { readable[index] = true }
                next += done
                // The call stopped at a range it could not read: go on after it.
                if next < end { next += 1 }
            }
            initialized = total
        }
        let whole = RemoteBytes(address: 0, storage: storage)
        for index in ranges.indices where readable[index] {
            if let part = whole.subrange(offsets[index], ranges[index].count) {
                result[index] = RemoteBytes(rebasing: part, at: ranges[index].address)
            }
        }
        return result
    }

    /// Several ranges; nil if any of them could not be read.
    public func remoteBytes(batch: [(address: UInt64, count: Int)]) -> [RemoteBytes]? {
        var result = [RemoteBytes]()
        result.reserveCapacity(batch.count)
        for bytes in remoteBytes(eachOf: batch) {
            guard let bytes else { return nil }
            result.append(bytes)
        }
        return result
    }

    /// Writes bytes into the target (used only by the injector, with the target stopped).
    public func write(_ bytes: [UInt8], at address: UInt64) throws(MemoryReadError) {
        guard !bytes.isEmpty else { return }
        let n = bytes.withUnsafeBytes { scalene_vm_write(pid, $0.baseAddress!, $0.count, address) }
        if n == bytes.count { return }
        if n >= 0 { throw .unmapped(address: address, length: bytes.count) }
        throw Self.error(errno: errno, address: address, length: bytes.count)
    }

    static func error(errno code: Int32, address: UInt64, length: Int) -> MemoryReadError {
        switch code {
        case EFAULT, EIO: return .unmapped(address: address, length: length)
        case ESRCH: return .processGone
        case EPERM, EACCES: return .permissionDenied
        default: return .failed(errno: code)
        }
    }
}
