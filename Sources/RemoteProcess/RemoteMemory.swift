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

    /// Reads several independent ranges with one system call. Returns false if any of them failed
    /// (the caller then falls back to reading them one by one to learn which).
    public func readBatch(_ requests: [(address: UInt64, buffer: UnsafeMutableRawBufferPointer)]) -> Bool {
        guard !requests.isEmpty, requests.count <= 64 else { return false }
        var locals = [UnsafeMutableRawPointer?](); locals.reserveCapacity(requests.count)
        var remotes = [UInt64](); remotes.reserveCapacity(requests.count)
        var lengths = [Int](); lengths.reserveCapacity(requests.count)
        var total = 0
        for request in requests {
            guard let base = request.buffer.baseAddress, request.address != 0 else { return false }
            locals.append(base)
            remotes.append(request.address)
            lengths.append(request.buffer.count)
            total += request.buffer.count
        }
        let n = locals.withUnsafeBufferPointer { l in
            l.baseAddress!.withMemoryRebound(to: UnsafeMutableRawPointer.self, capacity: l.count) { lp in
                scalene_vm_readv(pid, lp, remotes, lengths, Int32(requests.count))
            }
        }
        return n == total
    }

    /// Several ranges in one `process_vm_readv` per 64 ranges.
    public func remoteBytes(batch: [(address: UInt64, count: Int)]) -> [RemoteBytes]? {
        var result = [RemoteBytes]()
        result.reserveCapacity(batch.count)
        var start = 0
        while start < batch.count {
            let chunk = Array(batch[start..<min(batch.count, start + 64)])
            // One buffer for the whole chunk, cut into the requested ranges.
            var offsets = [Int]()
            var total = 0
            for request in chunk {
                guard request.count > 0 else { return nil }
                offsets.append(total)
                total += request.count
            }
            // Not zero-filled first (tens of KB a tick with many threads): every byte is either
            // read or the whole batch is dropped.
            var ok = false
            let storage = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
                let raw = UnsafeMutableRawBufferPointer(buffer)
                ok = readBatch(chunk.indices.map { index in
                    (chunk[index].address,
                     UnsafeMutableRawBufferPointer(rebasing: raw[offsets[index]..<(offsets[index] + chunk[index].count)]))
                })
                initialized = total
            }
            guard ok else { return nil }
            let whole = RemoteBytes(address: 0, storage: storage)
            for index in chunk.indices {
                guard let part = whole.subrange(offsets[index], chunk[index].count) else { return nil }
                result.append(RemoteBytes(rebasing: part, at: chunk[index].address))
            }
            start += chunk.count
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
