import RemoteProcess
import Testing

@Suite("LocalMemory and RemoteBytes")
struct LocalMemoryTests {
    /// 0x1000..<0x1020 holds 0, 1, 2, ... 31; 0x5000..<0x5008 holds a pointer.
    let memory: LocalMemory = {
        var memory = LocalMemory()
        memory.map((0..<32).map { UInt8($0) }, at: 0x1000)
        memory.map([0xef, 0xbe, 0xad, 0xde, 0xff, 0x7f, 0x00, 0x00], at: 0x5000)
        return memory
    }()

    @Test("reads inside a region, up to its last byte")
    func insideRegion() throws {
        #expect(try memory.bytes(at: 0x1000, count: 4) == [0, 1, 2, 3])
        #expect(try memory.bytes(at: 0x1010, count: 16) == Array(16..<32))
        #expect(try memory.bytes(at: 0x101f, count: 1) == [31])
        #expect(try memory.bytes(at: 0x5000, count: 8) == [0xef, 0xbe, 0xad, 0xde, 0xff, 0x7f, 0, 0])
        #expect(try memory.bytes(at: 0x9999, count: 0) == [], "an empty read reads nothing")
    }

    @Test("a read across the end of a region, before it, or between regions throws .unmapped")
    func unmapped() {
        #expect(throws: MemoryReadError.unmapped(address: 0x101c, length: 8)) {
            try memory.bytes(at: 0x101c, count: 8)
        }
        #expect(throws: MemoryReadError.unmapped(address: 0x1020, length: 1)) {
            try memory.bytes(at: 0x1020, count: 1)
        }
        #expect(throws: MemoryReadError.unmapped(address: 0xfff, length: 2)) {
            try memory.bytes(at: 0xfff, count: 2)
        }
        #expect(throws: MemoryReadError.unmapped(address: 0x3000, length: 4)) {
            try memory.integer(UInt32.self, at: 0x3000)
        }
        #expect(throws: MemoryReadError.unmapped(address: 0, length: 8)) {
            try memory.pointer(at: 0)
        }
        // address + length wraps around: must not match the region nor trap.
        #expect(throws: MemoryReadError.unmapped(address: UInt64.max - 3, length: 8)) {
            try memory.pointer(at: UInt64.max - 3)
        }
    }

    @Test("integer and pointer helpers are little-endian and sized by type")
    func integers() throws {
        #expect(try memory.integer(UInt8.self, at: 0x1005) == 5)
        #expect(try memory.integer(UInt16.self, at: 0x1001) == 0x0201)
        #expect(try memory.integer(UInt32.self, at: 0x1004) == 0x0706_0504)
        #expect(try memory.integer(Int64.self, at: 0x1008) == 0x0f0e_0d0c_0b0a_0908)
        #expect(try memory.integer(Int32.self, at: 0x5000) == Int32(bitPattern: 0xdead_beef))
        #expect(try memory.pointer(at: 0x5000) == 0x7fff_dead_beef)
        #expect(throws: MemoryReadError.unmapped(address: 0x101d, length: 4)) {
            try memory.integer(UInt32.self, at: 0x101d)
        }
    }

    @Test("remoteBytes copies once; its accessors read the copy")
    func remoteBytes() throws {
        let copy = try memory.remoteBytes(at: 0x1008, count: 16)
        #expect(copy.address == 0x1008)
        #expect(copy.count == 16)
        #expect(copy.storage == Array(8..<24))
        #expect(copy.uint8(at: 0) == 8)
        #expect(copy.int32(at: 4) == 0x0f0e_0d0c)
        #expect(copy.pointer(at: 8) == 0x1716_1514_1312_1110)
        #expect(copy.integer(UInt16.self, at: 14) == 0x1716)
        #expect(copy.slice(2, 3).map(Array.init) == [10, 11, 12])
        #expect(copy.slice(16, 0).map(Array.init) == [], "an empty slice at the end is in bounds")
    }

    @Test("RemoteBytes accessors return nil, never trap, outside the copy")
    func remoteBytesBounds() {
        let copy = RemoteBytes(address: 0x2000, storage: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        #expect(copy.pointer(at: 2) == 0x0a09_0807_0605_0403)
        #expect(copy.pointer(at: 3) == nil, "8 bytes at 3 end past the 10 stored")
        #expect(copy.pointer(at: -1) == nil)
        #expect(copy.pointer(at: Int.max) == nil)
        #expect(copy.pointer(at: Int.min) == nil)
        #expect(copy.int32(at: 6) == 0x0a09_0807)
        #expect(copy.int32(at: 7) == nil)
        #expect(copy.uint8(at: 9) == 10)
        #expect(copy.uint8(at: 10) == nil)
        #expect(copy.uint8(at: -1) == nil)
        #expect(copy.slice(-1, 2) == nil)
        #expect(copy.slice(9, 2) == nil)
        #expect(copy.slice(0, -1) == nil)
        #expect(copy.slice(0, Int.max) == nil)
        #expect(copy.slice(Int.max, 1) == nil)
        #expect(copy.slice(Int.max, Int.max) == nil)

        let empty = RemoteBytes(address: 0, storage: [])
        #expect(empty.uint8(at: 0) == nil)
        #expect(empty.pointer(at: 0) == nil)
        #expect(empty.slice(0, 0).map(Array.init) == [])
        #expect(empty.slice(0, 1) == nil)
    }
}
