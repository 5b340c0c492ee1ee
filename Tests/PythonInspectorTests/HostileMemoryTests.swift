import CPythonLayouts
import PythonInspector
import RemoteProcess
import Testing

/// Memory that counts the reads made through it.
final class CountingMemory: ProcessMemory, @unchecked Sendable {
    let base: LocalMemory
    private(set) var reads = 0

    init(_ base: LocalMemory) {
        self.base = base
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(MemoryReadError) {
        reads += 1
        try base.read(into: buffer, at: address)
    }
}

/// Values a target can hold that once trapped the reader, and the reads that keep a torn stack rare.
@Suite("remote values never trap; data-stack chunks are read whole")
struct HostileMemoryTests {
    /// The crash of issue 7: a frame pointer read while the thread changed was close to 2^64, the
    /// end of the frame wrapped around, passed the window check, and the offset did not fit an Int.
    @Test("a frame pointer near the top of the address space is an unreadable frame, not a trap",
          arguments: ["3.11", "3.12", "3.13"])
    func frameNearTopOfAddressSpace(_ version: String) throws {
        let stack = try FakeStack(version)
        let reader = stack.reader()
        let page = try stack.heap.memory.remoteBytes(at: stack.heap.base, count: stack.heap.bytes.count)
        for address in [UInt64.max, UInt64.max - 8, UInt64.max - 40, UInt64.max - 4095] {
            let walk = reader.walk(from: address, window: FrameWindow(bytes: page, isChunk: false))
            #expect(walk.incomplete && walk.frames.isEmpty)
            let chunkWalk = reader.walk(from: address, window: FrameWindow(bytes: page, isChunk: true))
            #expect(chunkWalk.incomplete && chunkWalk.frames.isEmpty)
        }
        // A frame whose `previous` is such a pointer: the frames before it are kept.
        var torn = try FakeStack(version)
        let top = torn.heap.frame(code: torn.inner, unit: 2, previous: UInt64.max - 16, layout: torn.layout)
        let walk = torn.reader().walk(from: top)
        #expect(walk.frames.count == 1 && walk.incomplete)
    }

    @Test("a thread state whose data-stack chunk pointer is garbage still walks by pages",
          arguments: [UInt64.max, UInt64.max - 23, 0x10, FakeHeap.unmapped])
    func garbageChunkPointer(_ chunk: UInt64) throws {
        let stack = try FakeStack("3.13")
        let reader = stack.reader()
        let t = stack.layout.thread
        let field = try #require(t.datastackChunk)
        var state = [UInt8](repeating: 0, count: max(t.frame, field) + 8)
        write(stack.frames[0], into: &state, at: t.frame)
        write(chunk, into: &state, at: field)
        let start = try #require(reader.walkStart(threadState: RemoteBytes(address: 0x1000, storage: state)))
        #expect(start.frame == stack.frames[0])
        #expect(start.window?.isChunk != true)
        #expect(reader.walk(from: start).frames.count == 3)
    }

    @Test("every frame of the current data-stack chunk comes from one read", arguments: ["3.11", "3.12", "3.13"])
    func chunkReadWhole(_ version: String) throws {
        var stack = try FakeStack(version)
        let t = stack.layout.thread
        let field = try #require(t.datastackChunk)
        // The fake heap plays the chunk: its frames lie after a chunk header at its base.
        var state = [UInt8](repeating: 0, count: max(t.frame, field) + 8)
        var frameField = stack.frames[0]
        if let hop = t.cframeCurrentFrame {
            // 3.11–3.12: the thread state points at a _PyCFrame whose current_frame is the frame.
            let cframe = stack.heap.allocate(hop + 8)
            stack.heap.write(stack.frames[0], at: cframe + UInt64(hop))
            frameField = cframe
        }
        let memory = CountingMemory(stack.heap.memory)
        let reader = StackReader(memory: memory, layout: stack.layout, opcodes: nil, codeType: FakeHeap.codeType)
        write(frameField, into: &state, at: t.frame)
        write(stack.heap.base, into: &state, at: field)
        let start = try #require(reader.walkStart(threadState: RemoteBytes(address: 0x1000, storage: state)))
        #expect(start.window?.isChunk == true)
        let before = memory.reads
        let walk = reader.walk(from: start)
        #expect(walk.frames.count == 3 && !walk.incomplete)
        #expect(memory.reads == before, "no read beyond the chunk copy")
    }

    @Test("line tables with absurd deltas stop decoding instead of overflowing")
    func lineTableDeltas() {
        // lnotab: +127 lines per pair for far more than 2^24 lines.
        let lnotab = Array(repeating: [UInt8(2), UInt8(127)], count: 200_000).flatMap { $0 }
        let table = LineTable.decode(lnotab, format: .lnotab, firstLine: 1)
        #expect(table.ranges.allSatisfy { ($0.line ?? 0) <= LineTable.maximumLine })
        // PEP 657: code 13 (line delta only) with the largest varint, again and again.
        var locations = [UInt8]()
        for _ in 0..<64 {
            locations.append(0x80 | 13 << 3)
            locations += [0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x3e] // 6-bit chunks, positive
        }
        let decoded = LineTable.decode(locations, format: .locationTable, firstLine: 1)
        #expect(decoded.ranges.allSatisfy { ($0.line ?? 0) <= LineTable.maximumLine })
        // 3.10: deltas that would pass the bound.
        let table310 = LineTable.decode(Array(repeating: [UInt8(2), UInt8(127)], count: 200_000).flatMap { $0 },
                                        format: .lineTable310, firstLine: 1)
        #expect(table310.ranges.allSatisfy { ($0.line ?? 0) <= LineTable.maximumLine })
    }

    @Test("RemoteArithmetic: wrapping ranges and oversized counts are nil")
    func arithmetic() {
        // The end is exclusive: a range may end at the last address, not past it.
        #expect(RemoteArithmetic.end(of: UInt64.max - 4, count: 4) == UInt64.max)
        #expect(RemoteArithmetic.end(of: UInt64.max - 3, count: 4) == nil)
        #expect(RemoteArithmetic.offset(of: UInt64.max - 8, length: 80, inRangeAt: 0x1000, count: 4096) == nil)
        #expect(RemoteArithmetic.offset(of: 0x1010, length: 16, inRangeAt: 0x1000, count: 32) == 16)
        #expect(RemoteArithmetic.offset(of: 0x1011, length: 16, inRangeAt: 0x1000, count: 32) == nil)
        #expect(RemoteArithmetic.count(Int64.max, atMost: 1 << 20) == nil)
        #expect(RemoteArithmetic.count(Int64(-1), atMost: 1 << 20) == nil)
        #expect(RemoteArithmetic.count(UInt64.max, atMost: Int.max) == nil)
        #expect(RemoteArithmetic.product(1 << 62, 4, atMost: .max) == nil)
        #expect(RemoteArithmetic.sum(.max, 1) == nil)
        #expect(UInt64.max.field(1) == 0 && UInt64(16).field(-24) == UInt64.max - 7)
    }

    private func write(_ value: UInt64, into bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { for (index, byte) in $0.enumerated() { bytes[offset + index] = byte } }
    }
}
