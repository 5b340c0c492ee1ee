import CPythonLayouts
import Testing

/// Generated values against numbers known independently (cpython-facts.md: probed in-process on
/// these exact builds, and agreeing with py-spy / austin / Pyroscope).
@Suite struct LayoutSpotCheckTests {
    func layout(_ major: Int, _ minor: Int, _ micro: Int) throws -> PythonLayout {
        try #require(LayoutTables.layout(for: PythonVersion(major: major, minor: minor, micro: micro)))
    }

    @Test func python38() throws {
        let l = try layout(3, 8, 18)
        #expect(l.runtime.interpretersHead == 32)
        #expect(l.runtime.gilstateTstateCurrent == 1368)
        #expect(l.interpreter.threadsHead == 8)
        #expect(l.thread.next == 8 && l.thread.interp == 16 && l.thread.frame == 24)
        #expect(l.thread.threadID == 176 && l.thread.nativeThreadID == nil)
        #expect(l.frame.previous == 24 && l.frame.code == 32 && l.frame.instruction == 104)
        #expect(l.frame.instructionField == .lastiBytes)
        #expect(l.code.firstLineNumber == 40 && l.code.filename == 104 && l.code.name == 112 && l.code.qualname == nil)
        #expect(l.code.lineTable == 120 && l.code.lineTableFormat == .lnotab)
        #expect(l.code.codeBytes == .bytesObject(offset: 48))
        #expect(l.objects.unicode.asciiSize == 48)
    }

    @Test func python39And310() throws {
        let l39 = try layout(3, 9, 18)
        #expect(l39.runtime.gilstateTstateCurrent == 568)
        #expect(l39.frame.instruction == 104 && l39.frame.instructionField == .lastiBytes)
        let l310 = try layout(3, 10, 13)
        #expect(l310.runtime.gilstateTstateCurrent == 568)
        #expect(l310.frame.instruction == 96 && l310.frame.instructionField == .lastiCodeUnits)
        #expect(l310.code.lineTable == 120 && l310.code.lineTableFormat == .lineTable310)
        #expect(l310.thread.threadID == 176)
    }

    @Test func python311() throws {
        for micro in [2, 7] {   // Debian's 3.11.2 and pyenv's 3.11.7
            let l = try layout(3, 11, micro)
            #expect(l.runtime.interpretersHead == 40 && l.runtime.gilstateTstateCurrent == 576)
            #expect(l.interpreter.threadsHead == 16)
            #expect(l.thread.frame == 56 && l.thread.cframeCurrentFrame == 8)
            #expect(l.thread.threadID == 152 && l.thread.nativeThreadID == 160)
            #expect(l.frame.previous == 48 && l.frame.code == 32 && l.frame.instruction == 56)
            #expect(l.frame.instructionField == .previousInstructionPointer)
            #expect(l.frame.isEntry == 68 && l.frame.owner == 69 && l.frame.ownerCStack == nil)
            #expect(l.code.firstLineNumber == 72 && l.code.filename == 112 && l.code.name == 120 && l.code.qualname == 128)
            #expect(l.code.lineTable == 136 && l.code.codeBytes == .inline(offset: 184))
            #expect(l.objects.type.instanceDict == .managed311(dictPointer: -24, valuesPointer: -32))
        }
    }

    @Test func python312() throws {
        let l = try layout(3, 12, 1)
        #expect(l.runtime.interpretersHead == 40 && l.runtime.gilstateTstateCurrent == nil)
        #expect(l.interpreter.threadsHead == 72)
        #expect(l.interpreter.cevalGIL == 384 && l.interpreter.gilLastHolder == 8 && l.interpreter.gilLocked == 16)
        #expect(l.thread.frame == 56 && l.thread.cframeCurrentFrame == 0)
        #expect(l.thread.threadID == 136 && l.thread.nativeThreadID == 144)
        #expect(l.frame.previous == 8 && l.frame.code == 0 && l.frame.instruction == 56)
        #expect(l.frame.owner == 70 && l.frame.ownerCStack == 3 && l.frame.isEntry == nil)
        #expect(l.code.firstLineNumber == 68 && l.code.codeBytes == .inline(offset: 192))
        #expect(l.objects.unicode.asciiSize == 40)
        #expect(l.objects.long.usesTag && l.objects.long.tagDigitShift == 3)
        #expect(l.objects.type.instanceDict == .managedTagged312(word: -24))
    }

    @Test func python313HasNoTableLayoutButObjects() throws {
        let v = PythonVersion(major: 3, minor: 13, micro: 0)
        #expect(LayoutTables.layout(for: v) == nil)
        let objects = try #require(LayoutTables.objects(for: v))
        #expect(objects.unicode.asciiSize == 40)
        #expect(objects.type.instanceDict == .inlineValues313(dictPointer: -24, validByte: 3))
        #expect(objects.type.inlineValuesFlag == 1 << 2 && objects.type.managedDictFlag == 1 << 4)
        #expect(LayoutTables.frameOwnerCStack(for: v) == 3)
        #expect(LayoutTables.entry(for: v)?.debugOffsetsSize == 584)
        #expect(LayoutTables.entry(for: v)?.interpretersMainFromHead == 8)
    }

    @Test func objectsCommonToAllVersions() {
        for entry in LayoutTables.all {
            #expect(entry.objects.objectType == 8)
            #expect(entry.objects.bytes == BytesOffsets(size: 16, data: 32), "\(entry.version)")
            #expect(entry.objects.long.digitBits == 30 && entry.objects.long.digitSize == 4)
            #expect(entry.objects.unicode.kindBits == 3)
        }
    }

    @Test func allocatorConstants() throws {
        let a38 = try #require(LayoutTables.allocator(for: PythonVersion(major: 3, minor: 8, micro: 18)))
        #expect(a38 == AllocatorConstants(poolSize: 4096, arenaSize: 256 * 1024, smallRequestThreshold: 512, alignment: 16))
        for minor in 10...13 {
            let a = try #require(LayoutTables.allocator(for: PythonVersion(major: 3, minor: minor)))
            #expect(a == AllocatorConstants(poolSize: 16384, arenaSize: 1 << 20, smallRequestThreshold: 512, alignment: 16))
        }
    }

    @Test func lookupRules() throws {
        // Exact micro first: 3.11.2 is Debian's build.
        #expect(LayoutTables.entry(for: PythonVersion(major: 3, minor: 11, micro: 2))?.prefix == "/usr")
        // Another micro of a known minor: the highest generated micro of that minor.
        let unknownMicro = PythonVersion(major: 3, minor: 11, micro: 4)
        #expect(LayoutTables.entry(for: unknownMicro)?.version == PythonVersion(major: 3, minor: 11, micro: 7))
        #expect(LayoutTables.layout(for: unknownMicro)?.version == unknownMicro)
        // Unsupported.
        for v in [PythonVersion(major: 3, minor: 7, micro: 16), PythonVersion(major: 2, minor: 7, micro: 18),
                  PythonVersion(major: 3, minor: 16, micro: 0)] {
            #expect(LayoutTables.layout(for: v) == nil)
            #expect(LayoutTables.objects(for: v) == nil)
            #expect(LayoutTables.allocator(for: v) == nil)
        }
        #expect(LayoutTables.frameOwnerCStack(for: PythonVersion(major: 3, minor: 11, micro: 7)) == nil)
        #expect(LayoutTables.supportedMinorVersions == (8...15).map { PythonVersion(major: 3, minor: $0) })
        // 3.14+: the owner values of the interpreter's own frames and the tag bits of f_executable.
        let v314 = try #require(LayoutTables.entry(for: PythonVersion(major: 3, minor: 14)))
        #expect(v314.frameOwnerCStack == 4 && v314.frameOwnerInterpreter == 3 && v314.frameCodeTagBits == 3)
        let v315 = try #require(LayoutTables.entry(for: PythonVersion(major: 3, minor: 15)))
        #expect(v315.frameOwnerCStack == nil && v315.frameOwnerInterpreter == 3 && v315.frameCodeTagBits == 3)
        #expect(LayoutTables.entry(for: PythonVersion(major: 3, minor: 13))?.frameCodeTagBits == 0)
    }
}
