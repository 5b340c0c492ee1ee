import CScaleneSys
import RemoteProcess
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `process_vm_readv` against this test process itself: the addresses of our own buffers are the
/// "remote" addresses.
@Suite("RemoteMemory on our own process")
struct RemoteMemoryTests {
    let memory = RemoteMemory(pid: getpid())

    @Test("reads a local buffer's bytes by address")
    func readsLocalBuffer() throws {
        let pattern = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let buffer = LocalBuffer(pattern)
        #expect(try memory.bytes(at: buffer.address, count: 300) == pattern)
        #expect(try memory.bytes(at: buffer.address + 100, count: 5) == Array(pattern[100..<105]))
        #expect(try memory.integer(UInt32.self, at: buffer.address + 4)
                == UInt32(pattern[4]) | UInt32(pattern[5]) << 8 | UInt32(pattern[6]) << 16 | UInt32(pattern[7]) << 24)

        var value: UInt64 = 0x0123_4567_89ab_cdef
        let address = withUnsafeMutablePointer(to: &value) { UInt64(UInt(bitPattern: $0)) }
        #expect(try memory.pointer(at: address) == 0x0123_4567_89ab_cdef)
        let copy = try memory.remoteBytes(at: buffer.address, count: 16)
        #expect(copy.address == buffer.address)
        #expect(copy.storage == Array(pattern[0..<16]))
        withExtendedLifetime(buffer) {}
    }

    @Test("address 0, a protected page, a partial read, a wrapping range and kernel space throw .unmapped")
    func unmapped() throws {
        let page = try GuardedPage()
        #expect(throws: MemoryReadError.unmapped(address: 0, length: 8)) { try memory.pointer(at: 0) }
        #expect(throws: MemoryReadError.unmapped(address: page.protected, length: 16)) {
            try memory.bytes(at: page.protected, count: 16)
        }
        // Half readable: the kernel copies the first part and stops; that is still an unmapped read.
        #expect(throws: MemoryReadError.unmapped(address: page.protected - 8, length: 16)) {
            try memory.bytes(at: page.protected - 8, count: 16)
        }
        #expect(try memory.bytes(at: page.protected - 8, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(throws: MemoryReadError.unmapped(address: UInt64.max - 7, length: 16)) {
            try memory.bytes(at: UInt64.max - 7, count: 16)
        }
        #expect(throws: MemoryReadError.unmapped(address: 0xffff_ffff_8100_0000, length: 8)) {
            try memory.pointer(at: 0xffff_ffff_8100_0000)
        }
    }

    @Test("readBatch reads several buffers in one call and reports any failure")
    func readBatch() throws {
        let sources = [LocalBuffer(Array(repeating: 0xaa, count: 24)), LocalBuffer((0..<100).map { UInt8($0) }),
                       LocalBuffer([9, 8, 7])]
        var first = [UInt8](repeating: 0, count: 24), second = [UInt8](repeating: 0, count: 100)
        var third = [UInt8](repeating: 0, count: 3)
        let ok = first.withUnsafeMutableBytes { a in
            second.withUnsafeMutableBytes { b in
                third.withUnsafeMutableBytes { c in
                    memory.readBatch([(sources[0].address, a), (sources[1].address, b), (sources[2].address, c)])
                }
            }
        }
        #expect(ok)
        #expect(first == Array(repeating: 0xaa, count: 24))
        #expect(second == (0..<100).map { UInt8($0) })
        #expect(third == [9, 8, 7])

        let page = try GuardedPage()
        var a = [UInt8](repeating: 0, count: 8), b = [UInt8](repeating: 0, count: 8)
        let withProtected = a.withUnsafeMutableBytes { a in
            b.withUnsafeMutableBytes { b in memory.readBatch([(sources[0].address, a), (page.protected, b)]) }
        }
        #expect(!withProtected, "one unreadable range fails the batch")
        let withNull = a.withUnsafeMutableBytes { a in memory.readBatch([(0, a)]) }
        #expect(!withNull)
        #expect(!memory.readBatch([]))
        var many = [UInt8](repeating: 0, count: 65)
        let tooMany = many.withUnsafeMutableBytes { raw in
            memory.readBatch((0..<65).map { (sources[1].address + UInt64($0),
                                              UnsafeMutableRawBufferPointer(rebasing: raw[$0..<($0 + 1)])) })
        }
        #expect(!tooMany, "more than 64 ranges is refused")
        withExtendedLifetime(sources) {}
    }

    @Test("write puts bytes into the process; a protected page throws .unmapped")
    func write() throws {
        let buffer = LocalBuffer([UInt8](repeating: 0, count: 16))
        try memory.write([1, 2, 3, 4], at: buffer.address + 6)
        #expect(Array(buffer.pointer[4..<12]) == [0, 0, 1, 2, 3, 4, 0, 0])
        let page = try GuardedPage()
        #expect(throws: MemoryReadError.unmapped(address: page.protected, length: 2)) {
            try memory.write([1, 2], at: page.protected)
        }
    }

    @Test("a pid that does not exist throws .processGone")
    func processGone() throws {
        let buffer = LocalBuffer([1, 2, 3, 4, 5, 6, 7, 8])
        let missing = RemoteMemory(pid: Int32.max - 1)  // above any pid_max
        #expect(throws: MemoryReadError.processGone) { try missing.pointer(at: buffer.address) }
        var target = [UInt8](repeating: 0, count: 8)
        let ok = target.withUnsafeMutableBytes { missing.readBatch([(buffer.address, $0)]) }
        #expect(!ok)

        // A child that has exited and been reaped no longer exists either.
        let child = try ChildProcess("/bin/true", [])
        child.stop()
        #expect(throws: MemoryReadError.processGone) { try RemoteMemory(pid: child.pid).pointer(at: buffer.address) }
    }
}
