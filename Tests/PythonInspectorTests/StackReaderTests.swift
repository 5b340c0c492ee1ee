import CPythonLayouts
import PythonInspector
import RemoteProcess
import Testing

/// StackReader on frames, code objects and strings laid out in LocalMemory with the real layouts.
@Suite("StackReader on fake interpreter memory")
struct StackReaderTests {
    static let versions = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]

    @Test("walk returns every frame innermost first; resolve gives name, qualname, file and line",
          arguments: versions)
    func walkAndResolve(_ version: String) throws {
        let stack = try FakeStack(version)
        let reader = stack.reader()
        let walk = reader.walk(from: stack.frames[0])
        #expect(walk.frames == [stack.raw(stack.inner, unit: 6), stack.raw(stack.middle, unit: 5),
                                stack.raw(stack.outer, unit: 3)])
        #expect(!walk.truncated)
        #expect(!walk.incomplete)

        let hasQualname = stack.layout.version.minor >= 11
        let resolved = walk.frames.map { reader.resolve($0) }
        try #require(resolved.allSatisfy { $0 != nil })
        let inner = resolved[0]!, middle = resolved[1]!, outer = resolved[2]!
        #expect(inner.code.name == "inner")
        #expect(inner.code.qualname == (hasQualname ? "Outer.inner" : "inner"))
        #expect(inner.code.filename == "/srv/app/main.py")
        #expect(inner.code.firstLine == 10)
        #expect(inner.codeUnit == 6)
        #expect(inner.line == 15)
        #expect(inner.code.address == stack.inner.address)
        #expect(inner.code.bytecode.count == 16)
        #expect(inner.code.codeUnitCount == 8)
        #expect(inner.code.bytecodeAddress == stack.inner.bytecodeAddress)

        #expect(middle.code.name == "名前")
        #expect(middle.code.qualname == (hasQualname ? "クラス.名前" : "名前"))
        #expect(middle.code.filename == "/srv/app/ünïcödé.py")
        #expect(middle.codeUnit == 5)
        #expect(middle.line == 43)

        #expect(outer.code.name == "<module>")
        #expect(outer.code.qualname == "<module>")
        #expect(outer.codeUnit == 3)
        #expect(outer.line == 30)
        #expect(reader.cachedCodeObjects == 3)

        // Other code units of the same code objects: every range of the line table.
        for (unit, line) in [(0, 10), (1, 10), (2, 12), (4, 12), (5, 15), (7, 15)] {
            #expect(reader.resolve(stack.raw(stack.inner, unit: unit))?.line == line, "\(version) unit \(unit)")
        }
        #expect(reader.cachedCodeObjects == 3, "resolving a cached code object reads nothing new")
    }

    @Test("a frame that has not started is at code unit -1, on its first line", arguments: versions)
    func notStarted(_ version: String) throws {
        var stack = try FakeStack(version)
        let fresh = stack.heap.frame(code: stack.inner, unit: -1, previous: stack.frames[0], layout: stack.layout)
        let reader = stack.reader()
        let walk = reader.walk(from: fresh)
        #expect(walk.frames.count == 4)
        #expect(walk.frames.first == stack.raw(stack.inner, unit: -1))
        let frame = try #require(walk.frames.first.flatMap { reader.resolve($0) })
        #expect(frame.codeUnit == -1)
        #expect(frame.line == 10)
    }

    @Test("C-stack shim frames (owner == FRAME_OWNED_BY_CSTACK) are skipped", arguments: ["3.12", "3.13"])
    func shimFrames(_ version: String) throws {
        var stack = try FakeStack(version)
        let cstack = try #require(stack.layout.frame.ownerCStack)
        #expect(cstack == 3)
        // inner → shim → middle → shim at the bottom → outer; a shim points at real code, too.
        let shimBottom = stack.heap.frame(code: stack.inner, unit: 0, previous: stack.frames[2], owner: UInt8(cstack),
                                          layout: stack.layout)
        stack.heap.setPrevious(of: stack.frames[1], to: shimBottom, layout: stack.layout)
        let shim = stack.heap.frame(code: stack.outer, unit: 0, previous: stack.frames[1], owner: UInt8(cstack),
                                    layout: stack.layout)
        stack.heap.setPrevious(of: stack.frames[0], to: shim, layout: stack.layout)
        let walk = stack.reader().walk(from: stack.frames[0])
        #expect(walk.frames == [stack.raw(stack.inner, unit: 6), stack.raw(stack.middle, unit: 5),
                                stack.raw(stack.outer, unit: 3)])
        #expect(!walk.truncated && !walk.incomplete)

        // A frame owned by a generator (1) or a frame object (2) is a real frame.
        var other = try FakeStack(version)
        let generatorFrame = other.heap.frame(code: other.outer, unit: 1, previous: other.frames[0], owner: 1,
                                              layout: other.layout)
        #expect(other.reader().walk(from: generatorFrame).frames.count == 4)
    }

    @Test("a cycle stops the walk with truncated", arguments: versions)
    func cycle(_ version: String) throws {
        var stack = try FakeStack(version)
        stack.heap.setPrevious(of: stack.frames[1], to: stack.frames[0], layout: stack.layout) // inner ⇄ middle
        let walk = stack.reader().walk(from: stack.frames[0])
        #expect(walk.frames == [stack.raw(stack.inner, unit: 6), stack.raw(stack.middle, unit: 5)])
        #expect(walk.truncated)
        #expect(!walk.incomplete)

        stack.heap.setPrevious(of: stack.frames[0], to: stack.frames[0], layout: stack.layout) // a frame its own caller
        let selfLoop = stack.reader().walk(from: stack.frames[0])
        #expect(selfLoop.frames == [stack.raw(stack.inner, unit: 6)])
        #expect(selfLoop.truncated)
    }

    @Test("the depth bound stops the walk with truncated; a stack exactly that deep is whole", arguments: versions)
    func depthBound(_ version: String) throws {
        let stack = try FakeStack(version)
        let bounded = stack.reader(maximumDepth: 2).walk(from: stack.frames[0])
        #expect(bounded.frames == [stack.raw(stack.inner, unit: 6), stack.raw(stack.middle, unit: 5)])
        #expect(bounded.truncated)
        #expect(!bounded.incomplete)

        let exact = stack.reader(maximumDepth: 3).walk(from: stack.frames[0])
        #expect(exact.frames.count == 3)
        #expect(!exact.truncated)

        // A long chain of one repeated code object, bounded.
        var long = try FakeStack(version)
        var previous: UInt64 = 0
        for _ in 0..<50 { previous = long.heap.frame(code: long.inner, unit: 1, previous: previous, layout: long.layout) }
        let walk = long.reader(maximumDepth: 20).walk(from: previous)
        #expect(walk.frames.count == 20)
        #expect(walk.truncated)
        #expect(long.reader().walk(from: previous).frames.count == 50)
    }

    @Test("an unmapped previous pointer stops the walk with incomplete", arguments: versions)
    func unmappedPrevious(_ version: String) throws {
        var stack = try FakeStack(version)
        stack.heap.setPrevious(of: stack.frames[1], to: FakeHeap.unmapped, layout: stack.layout)
        let walk = stack.reader().walk(from: stack.frames[0])
        #expect(walk.frames == [stack.raw(stack.inner, unit: 6), stack.raw(stack.middle, unit: 5)])
        #expect(walk.incomplete)
        #expect(!walk.truncated)

        let nowhere = stack.reader().walk(from: FakeHeap.unmapped)
        #expect(nowhere.frames.isEmpty && nowhere.incomplete)
        let none = stack.reader().walk(from: 0)
        #expect(none.frames.isEmpty && !none.incomplete && !none.truncated)
        // A frame whose last bytes fall off the end of memory is not read either.
        let cut = stack.heap.end - 8
        let torn = stack.reader().walk(from: cut)
        #expect(torn.frames.isEmpty && torn.incomplete)
    }

    @Test("a code pointer to an object of another type is rejected", arguments: versions)
    func wrongType(_ version: String) throws {
        var stack = try FakeStack(version)
        let impostor = stack.heap.code(FakeStack.innerSpec, layout: stack.layout, type: FakeHeap.otherType)
        let name = stack.heap.str("not code", objects: stack.layout.objects)
        let frame = stack.heap.frame(code: impostor, unit: 2, previous: stack.frames[0], layout: stack.layout)
        let reader = stack.reader()
        let walk = reader.walk(from: frame)
        #expect(walk.frames.count == 4, "walking does not look at the code objects")
        #expect(reader.resolve(walk.frames[0]) == nil)
        #expect(reader.codeInfo(at: impostor.address) == nil)
        #expect(reader.resolve(RawFrame(code: name, instruction: 0)) == nil, "a str is not a code object")
        #expect(reader.resolve(RawFrame(code: FakeHeap.unmapped, instruction: 0)) == nil)
        #expect(reader.resolve(RawFrame(code: 0, instruction: 0)) == nil)
        #expect(reader.resolve(walk.frames[1])?.code.name == "inner", "the real code objects still resolve")
        #expect(reader.cachedCodeObjects == 1, "failures are not cached")

        // Without a known code type, the type is not checked.
        let unchecked = stack.reader(codeType: nil)
        #expect(unchecked.resolve(walk.frames[0])?.code.name == "inner")
    }

    @Test("innermostFrame: the thread state's frame, through _PyCFrame on 3.11–3.12", arguments: versions)
    func innermostFrame(_ version: String) throws {
        var stack = try FakeStack(version)
        let t = stack.layout.thread
        var storage = [UInt8](repeating: 0, count: t.size)
        let pointer: UInt64
        if let current = t.cframeCurrentFrame {
            let cframe = stack.heap.allocate(max(current + 8, 32))
            stack.heap.write(stack.frames[0], at: cframe + UInt64(current))
            pointer = cframe
        } else {
            pointer = stack.frames[0]
        }
        withUnsafeBytes(of: pointer.littleEndian) { storage.replaceSubrange(t.frame..<(t.frame + 8), with: $0) }
        let reader = stack.reader()
        #expect(reader.innermostFrame(threadState: RemoteBytes(address: 0x1000, storage: storage)) == stack.frames[0])
        let idle = RemoteBytes(address: 0x1000, storage: [UInt8](repeating: 0, count: t.size))
        #expect(reader.innermostFrame(threadState: idle) == 0, "a thread with no frame")
        #expect(reader.innermostFrame(threadState: RemoteBytes(address: 0x1000, storage: [])) == nil)
    }
}
