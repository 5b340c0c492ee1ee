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

    /// Reads the ranges of `batch`: one `process_vm_readv` per 1024 ranges while every range
    /// reads. A range that cannot be read (a stale or torn pointer) is marked unreadable and costs
    /// one more call for the ranges after it; the others are read all the same.
    public func read(_ batch: inout ReadBatch) {
        batch.fillRuns(limit: Self.rangesPerCall) { local, pairs, count in
            let n = scalene_vm_readv(pid, local, pairs.baseAddress!, Int32(count))
            if n < 0 { return errno == ESRCH ? nil : 0 }
            var done = 0
            var covered = 0
            for index in 0..<count {
                covered += Int(pairs[2 * index + 1])
                guard covered <= n else { break }
                done += 1
            }
            return done
        }
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
