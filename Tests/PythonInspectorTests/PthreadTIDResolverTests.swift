import PythonInspector
import RemoteProcess
import Testing

/// Fake glibc `struct pthread` blocks: the kernel tid at `tidOffset`, the rest realistic noise
/// (self pointers, small flags, stack addresses) that never equals a tid of the process.
@Suite("PthreadTIDResolver")
struct PthreadTIDResolverTests {
    static let tidOffset = 720 // 0x2d0, where glibc 2.28–2.39 keep `tid` on x86_64
    static let tids: [Int32] = [4242, 4250, 4301, 4302]

    /// One block per entry: the tid it holds (nil: none yet) and where.
    static func memory(_ blocks: [(tid: Int32?, offset: Int)]) -> (LocalMemory, [UInt64]) {
        var heap = FakeHeap(base: 0x7f00_0000_0000)
        var pthreads = [UInt64]()
        for block in blocks {
            let address = heap.allocate(2304) // sizeof(struct pthread) in glibc 2.36
            heap.write(address, at: address)          // header.tcb
            heap.write(address, at: address + 16)     // header.self
            heap.write(Int32(1), at: address + 24)    // multiple_threads
            heap.write(UInt64(0x7ffd_0000_1000), at: address + 1536) // a stack address
            heap.write(Int32(-1), at: address + 728)  // no pid (cached pid field next to tid)
            if let tid = block.tid { heap.write(tid, at: address + UInt64(block.offset)) }
            pthreads.append(address)
        }
        return (heap.memory, pthreads)
    }

    @Test("every pthread maps to its tid; the offset is learnt")
    func resolvesAll() {
        let (memory, pthreads) = Self.memory(Self.tids.map { ($0, Self.tidOffset) })
        var resolver = PthreadTIDResolver()
        #expect(resolver.tidOffset == nil)
        let mapping = resolver.resolve(pthreads, tids: Set(Self.tids + [1, 4243]), memory: memory)
        #expect(mapping == Dictionary(uniqueKeysWithValues: zip(pthreads, Self.tids)))
        #expect(resolver.tidOffset == Self.tidOffset)
    }

    @Test("a pthread whose block holds no tid yet is left out; the others still resolve")
    func threadBeingCreated() {
        let (memory, pthreads) = Self.memory([(4242, Self.tidOffset), (nil, Self.tidOffset), (4301, Self.tidOffset)])
        var resolver = PthreadTIDResolver()
        let mapping = resolver.resolve(pthreads, tids: Set(Self.tids), memory: memory)
        #expect(mapping == [pthreads[0]: 4242, pthreads[2]: 4301])
        #expect(resolver.tidOffset == Self.tidOffset)
    }

    @Test("the most consistent offset wins over a coincidence in one block")
    func decoy() {
        var blocks: [(tid: Int32?, offset: Int)] = Self.tids.map { ($0, Self.tidOffset) }
        blocks.append((4302, 100)) // only one block with a tid at 100
        let (memory, pthreads) = Self.memory(blocks)
        var resolver = PthreadTIDResolver()
        let mapping = resolver.resolve(Array(pthreads.prefix(4)) + [pthreads[4]], tids: Set(Self.tids), memory: memory)
        #expect(resolver.tidOffset == Self.tidOffset)
        #expect(mapping == Dictionary(uniqueKeysWithValues: zip(pthreads.prefix(4), Self.tids)))
    }

    @Test("the learned offset is reused, not searched again")
    func offsetReused() {
        var resolver = PthreadTIDResolver()
        let (first, firstPthreads) = Self.memory([(4242, Self.tidOffset), (4250, Self.tidOffset)])
        #expect(resolver.resolve(firstPthreads, tids: Set(Self.tids), memory: first).count == 2)
        #expect(resolver.tidOffset == Self.tidOffset)

        // New threads: one holds its tid at the learnt offset, two only at another offset (which a
        // fresh search would pick, as it maps more of them).
        let (second, pthreads) = Self.memory([(4301, Self.tidOffset), (4302, 64), (4250, 64)])
        let mapping = resolver.resolve(pthreads, tids: Set(Self.tids), memory: second)
        #expect(mapping == [pthreads[0]: 4301])
        #expect(resolver.tidOffset == Self.tidOffset)

        var fresh = PthreadTIDResolver()
        #expect(fresh.resolve(pthreads, tids: Set(Self.tids), memory: second) == [pthreads[1]: 4302, pthreads[2]: 4250])
        #expect(fresh.tidOffset == 64)
    }

    @Test("unreadable and null pthreads are left out")
    func unreadable() {
        let (memory, pthreads) = Self.memory([(4242, Self.tidOffset), (4250, Self.tidOffset)])
        var resolver = PthreadTIDResolver()
        let mapping = resolver.resolve([0, pthreads[0], FakeHeap.unmapped, pthreads[1]], tids: Set(Self.tids), memory: memory)
        #expect(mapping == [pthreads[0]: 4242, pthreads[1]: 4250])
        #expect(resolver.tidOffset == Self.tidOffset)

        var empty = PthreadTIDResolver()
        #expect(empty.resolve([], tids: Set(Self.tids), memory: memory) == [:])
        #expect(empty.resolve([FakeHeap.unmapped], tids: Set(Self.tids), memory: memory) == [:])
        #expect(empty.tidOffset == nil)
    }

    @Test("no offset that maps most pthreads: nothing is learnt")
    func noConsensus() {
        // Each tid at its own offset: every candidate offset maps one block of three.
        let (memory, pthreads) = Self.memory([(4242, 200), (4250, 400), (4301, 600)])
        var resolver = PthreadTIDResolver()
        #expect(resolver.resolve(pthreads, tids: Set(Self.tids), memory: memory) == [:])
        #expect(resolver.tidOffset == nil)
        // Tids of another process do not count.
        let (other, otherPthreads) = Self.memory([(9000, Self.tidOffset), (9001, Self.tidOffset)])
        #expect(resolver.resolve(otherPthreads, tids: Set(Self.tids), memory: other) == [:])
        #expect(resolver.tidOffset == nil)
    }

    @Test("two thread states with one pthread (a thread being started by the main thread) still resolve")
    func duplicatePthread() {
        // 3.8–3.10: a new thread's state carries its creator's thread_id until the thread runs, so
        // the interpreter's list holds the main thread's pthread_t twice.
        let (memory, pthreads) = Self.memory([(4242, Self.tidOffset)])
        var resolver = PthreadTIDResolver()
        #expect(resolver.resolve([pthreads[0], pthreads[0]], tids: Set(Self.tids), memory: memory)
                == [pthreads[0]: 4242])
        #expect(resolver.tidOffset == Self.tidOffset)
        // With a third thread the majority holds and the duplicate is harmless.
        let (three, threePthreads) = Self.memory([(4242, Self.tidOffset), (4250, Self.tidOffset)])
        var other = PthreadTIDResolver()
        #expect(other.resolve([threePthreads[0], threePthreads[0], threePthreads[1]], tids: Set(Self.tids), memory: three)
                == [threePthreads[0]: 4242, threePthreads[1]: 4250])
    }
}
