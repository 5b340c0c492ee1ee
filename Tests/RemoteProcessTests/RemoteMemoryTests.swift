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

    @Test("remoteBytes(eachOf:) reads several ranges in one call; an unreadable range is nil, the others are read")
    func eachOf() throws {
        let sources = [LocalBuffer(Array(repeating: 0xaa, count: 24)), LocalBuffer((0..<100).map { UInt8($0) }),
                       LocalBuffer([9, 8, 7])]
        let all = memory.remoteBytes(eachOf: [(sources[0].address, 24), (sources[1].address, 100), (sources[2].address, 3)])
        #expect(all.map { $0?.storage } == [Array(repeating: 0xaa, count: 24), (0..<100).map { UInt8($0) }, [9, 8, 7]])
        #expect(all[1]?.address == sources[1].address)

        let page = try GuardedPage()
        let mixed = memory.remoteBytes(eachOf: [(sources[0].address, 8), (page.protected, 8), (0, 8),
                                                (UInt64.max - 3, 8), (sources[2].address, 3), (sources[1].address, 0)])
        #expect(mixed.map { $0?.storage } == [Array(repeating: 0xaa, count: 8), nil, nil, nil, [9, 8, 7], nil],
                "an unreadable range, a null one, one past the top and an empty one are nil; the rest are read")
        #expect(memory.remoteBytes(eachOf: []).isEmpty)

        // More ranges than one call takes (1024) are read in several calls.
        let many = memory.remoteBytes(eachOf: (0..<1500).map { (sources[1].address + UInt64($0 % 100), 1) })
        #expect(many.count == 1500)
        #expect(many.enumerated().allSatisfy { $0.element?.storage == [UInt8($0.offset % 100)] })
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
        #expect(missing.remoteBytes(eachOf: [(buffer.address, 8), (buffer.address, 4)]).allSatisfy { $0 == nil })

        // A child that has exited and been reaped no longer exists either.
        let child = try ChildProcess("/bin/true", [])
        child.stop()
        #expect(throws: MemoryReadError.processGone) { try RemoteMemory(pid: child.pid).pointer(at: buffer.address) }
    }
}
