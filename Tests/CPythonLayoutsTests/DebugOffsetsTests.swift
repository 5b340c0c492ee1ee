import CPythonLayouts
import Testing

/// `_Py_DebugOffsets` as copied out of running CPythons by the generator
/// (fixtures/generators/debug_offsets_<version>.bin: 3.13.0, 3.14.10, 3.15.2), and damaged copies.
@Suite struct DebugOffsetsTests {
    /// Little-endian uint64 field `index` after cookie, version and free_threaded.
    static func setField(_ bytes: inout [UInt8], at position: Int, to value: UInt64) {
        for index in 0..<8 { bytes[position + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
    }

    @Test func decodesTheRealBytes() throws {
        let raw = try Fixtures.debugOffsets313()
        #expect(raw.count == DebugOffsets.minimumSize(forMinor: 13))
        let decoded = try DebugOffsets.decode(raw)
        #expect(decoded.version == PythonVersion(major: 3, minor: 13, micro: 0))
        #expect(decoded.versionHex == 0x030D_00F0)
        #expect(decoded.runtimeState.interpretersHead == 632)
        #expect(decoded.interpreterState.threadsHead == 7344)
        #expect(decoded.interpreterState.cevalGIL == 16)
        #expect(decoded.interpreterState.gilRuntimeStateHolder == 7760)
        #expect(decoded.interpreterState.gilRuntimeStateLocked == 7768)
        #expect(decoded.threadState.currentFrame == 72)
        #expect(decoded.threadState.threadID == 152 && decoded.threadState.nativeThreadID == 160)
        #expect(decoded.interpreterFrame.previous == 8 && decoded.interpreterFrame.executable == 0)
        #expect(decoded.interpreterFrame.instrPtr == 56 && decoded.interpreterFrame.owner == 70)
        #expect(decoded.codeObject.coCodeAdaptive == 200 && decoded.codeObject.linetable == 136)
        #expect(decoded.unicodeObject.asciiobjectSize == 40)
        #expect(decoded.gc.size > 0)
    }

    @Test func layoutFromTheRealBytes() throws {
        let layout = try DebugOffsets.decode(try Fixtures.debugOffsets313()).layout()
        #expect(layout.runtime.interpretersHead == 632 && layout.runtime.interpretersMain == 640)
        #expect(layout.runtime.gilstateTstateCurrent == nil)
        #expect(layout.interpreter.threadsHead == 7344)
        #expect(layout.interpreter.cevalGIL == 16 && layout.interpreter.gilLastHolder == 8 && layout.interpreter.gilLocked == 16)
        #expect(layout.thread.frame == 72 && layout.thread.cframeCurrentFrame == nil)
        #expect(layout.frame.instructionField == .instructionPointer && layout.frame.ownerCStack == 3)
        #expect(layout.code.lineTableFormat == .locationTable && layout.code.codeBytes == .inline(offset: 200))
        #expect(layout.code.firstLineNumber == 68 && layout.code.qualname == 128)
    }

    /// For every captured version, the decoder's layout equals the one the generator computed from
    /// that version's headers (kept in layouts.json), field by field.
    @Test func layoutEqualsTheHeaderLayout() throws {
        let blobs = try Fixtures.debugOffsetBlobs()
        #expect(Set(blobs.map { $0.version.split(separator: ".").prefix(2).joined(separator: ".") })
            .isSuperset(of: ["3.13", "3.14", "3.15"]))
        for (version, bytes, record) in blobs {
            let fromHeaders = try LayoutJSON.layout(record)
            let fromBytes = try DebugOffsets.decode(bytes).layout()
            #expect(fromBytes.runtime == fromHeaders.runtime, "\(version)")
            #expect(fromBytes.interpreter == fromHeaders.interpreter, "\(version)")
            #expect(fromBytes.thread == fromHeaders.thread, "\(version)")
            #expect(fromBytes.frame == fromHeaders.frame, "\(version)")
            #expect(fromBytes.code == fromHeaders.code, "\(version)")
            #expect(fromBytes.objects == fromHeaders.objects, "\(version)")
            #expect(fromBytes == fromHeaders, "\(version)")
            #expect(bytes.count == DebugOffsets.minimumSize(forMinor: fromBytes.version.minor), "\(version)")
        }
    }

    /// 3.14: sections inserted mid-struct (threads_main, set, gen, debugger support), a tagged
    /// f_executable, entry frames owned by the interpreter (3) and C-stack frames (4).
    @Test func decodes314() throws {
        let raw = try Fixtures.bytes("fixtures/generators/debug_offsets_3.14.10.bin")
        #expect(raw.count == 760)
        let decoded = try DebugOffsets.decode(raw)
        #expect(decoded.version == PythonVersion(major: 3, minor: 14, micro: 10))
        #expect(decoded.runtimeState.interpretersHead == 808)
        #expect(decoded.interpreterState.threadsHead == 7344 && decoded.interpreterState.threadsMain == 7360)
        #expect(decoded.interpreterState.cevalGIL == 16)
        #expect(decoded.threadState.currentFrame == 72 && decoded.threadState.baseFrame == nil)
        #expect(decoded.threadState.threadID == 152 && decoded.threadState.nativeThreadID == 160)
        #expect(decoded.interpreterFrame.owner == 74 && decoded.interpreterFrame.stackpointer != nil)
        #expect(decoded.codeObject.coCodeAdaptive == 208)
        let layout = try decoded.layout()
        #expect(layout.frame.codeTagBits == 3 && layout.frame.codeAddress(0x7f00_1234_5679) == 0x7f00_1234_5678)
        #expect(layout.frame.ownerCStack == 4 && layout.frame.ownerInterpreter == 3)
        #expect(layout.frame.isInterpreterOwned(3) && layout.frame.isInterpreterOwned(4) && !layout.frame.isInterpreterOwned(0))
        #expect(layout.runtime.interpretersMain == 816)
        #expect(layout.thread.baseFrame == nil && layout.thread.holdsGIL == nil)
    }

    /// 3.15: thread-state additions (base_frame, holds_gil...), type and heap-type sections, no
    /// FRAME_OWNED_BY_CSTACK.
    @Test func decodes315() throws {
        let raw = try Fixtures.bytes("fixtures/generators/debug_offsets_3.15.2.bin")
        #expect(raw.count == 888)
        let decoded = try DebugOffsets.decode(raw)
        #expect(decoded.version == PythonVersion(major: 3, minor: 15, micro: 2))
        #expect(decoded.runtimeState.interpretersHead == 936)
        #expect(decoded.interpreterState.threadsHead == 7336)
        #expect(decoded.threadState.baseFrame == 80 && decoded.threadState.holdsGIL == 36)
        #expect(decoded.threadState.threadID == 176 && decoded.threadState.nativeThreadID == 184)
        #expect(decoded.typeObject.tpBasicsize == 32 && decoded.typeObject.tpDictoffset == 288)
        #expect(decoded.unicodeObject.compactunicodeobjectSize == 56)
        let layout = try decoded.layout()
        #expect(layout.thread.baseFrame == 80 && layout.thread.holdsGIL == 36)
        #expect(layout.frame.ownerCStack == nil && layout.frame.ownerInterpreter == 3 && layout.frame.codeTagBits == 3)
        #expect(layout.objects.type.heapCachedKeys == decoded.typeObject.htCachedKeys)
    }

    @Test func sizes() {
        #expect(DebugOffsets.cookie == Array("xdebugpy".utf8))
        #expect(DebugOffsets.minimumSize(forMinor: 13) == 584)
        #expect(DebugOffsets.minimumSize(forMinor: 14) == 760)
        #expect(DebugOffsets.minimumSize(forMinor: 15) == 888)
        for minor in [13, 14, 15] {
            #expect(DebugOffsets.minimumSize(forMinor: minor) == LayoutTables.entry(for: PythonVersion(major: 3, minor: minor))?.debugOffsetsSize)
        }
        #expect(DebugOffsets.minimumSize(forMinor: 12) == nil)
        #expect(DebugOffsets.minimumSize(forMinor: 16) == nil)
        #expect(DebugOffsets.knownMinors == [13, 14, 15])
    }

    @Test func badCookie() throws {
        var raw = try Fixtures.debugOffsets313()
        raw[0] = UInt8(ascii: "X")
        #expect(throws: DebugOffsetsError.badCookie) { try DebugOffsets.decode(raw) }
        #expect(throws: DebugOffsetsError.badCookie) { try DebugOffsets.decode([UInt8](repeating: 0, count: 584)) }
    }

    @Test func truncated() throws {
        let raw = try Fixtures.debugOffsets313()
        for count in [0, 1, 7, 8, 15, 16, 23, 24, 100, 583] {
            #expect(throws: DebugOffsetsError.truncated, "\(count) bytes") { try DebugOffsets.decode(Array(raw.prefix(count))) }
        }
        // Trailing bytes (a reader copying more than the struct) are fine.
        #expect(throws: Never.self) { try DebugOffsets.decode(raw + [UInt8](repeating: 0xAB, count: 100)) }
    }

    @Test func freeThreaded() throws {
        var raw = try Fixtures.debugOffsets313()
        Self.setField(&raw, at: 16, to: 1)
        #expect(throws: DebugOffsetsError.freeThreaded) { try DebugOffsets.decode(raw) }
    }

    @Test func unsupportedVersions() throws {
        let raw = try Fixtures.debugOffsets313()
        let cases: [(UInt64, PythonVersion)] = [
            (0x0310_00F0, PythonVersion(major: 3, minor: 16, micro: 0)),   // newer than this build knows
            (0x03FF_00F0, PythonVersion(major: 3, minor: 255, micro: 0)),
            (0x030C_01F0, PythonVersion(major: 3, minor: 12, micro: 1)),
            (0x040D_00F0, PythonVersion(major: 4, minor: 13, micro: 0)),
        ]
        for (hex, version) in cases {
            var bytes = raw
            Self.setField(&bytes, at: 8, to: hex)
            #expect(throws: DebugOffsetsError.unsupportedVersion(version)) { try DebugOffsets.decode(bytes) }
        }
        for hex: UInt64 in [0x030D_00B1, 0x030E_00A7, 0x030F_00C2] {   // 3.13.0b1, 3.14.0a7, 3.15.0rc2
            var bytes = raw
            Self.setField(&bytes, at: 8, to: hex)
            #expect(throws: DebugOffsetsError.preRelease(hex: hex)) { try DebugOffsets.decode(bytes) }
        }
        // A 3.13 struct claiming to be 3.14 or 3.15 is too short for their layouts: never read as one.
        for hex: UInt64 in [0x030E_00F0, 0x030F_00F0] {
            var bytes = raw
            Self.setField(&bytes, at: 8, to: hex)
            #expect(throws: DebugOffsetsError.truncated) { try DebugOffsets.decode(bytes) }
        }
        // A later 3.13 patch release decodes, and takes the 3.13 object table.
        var later = raw
        Self.setField(&later, at: 8, to: 0x030D_07F0)
        let layout = try DebugOffsets.decode(later).layout()
        #expect(layout.version == PythonVersion(major: 3, minor: 13, micro: 7))
    }

    @Test func implausibleOffsets() throws {
        let raw = try Fixtures.debugOffsets313()
        var huge = raw
        Self.setField(&huge, at: 24 + 2 * 8, to: 1 << 40)        // runtime_state.interpreters_head
        #expect(throws: DebugOffsetsError.implausibleOffset(field: "runtime_state.interpreters_head", value: 1 << 40)) {
            try DebugOffsets.decode(huge)
        }
        var outside = raw
        Self.setField(&outside, at: 24 + 2 * 8, to: 1 << 23)     // within bounds, beyond sizeof(_PyRuntimeState)
        let decoded = try DebugOffsets.decode(outside)
        #expect(throws: DebugOffsetsError.implausibleOffset(field: "runtime_state.interpreters_head", value: 1 << 23)) {
            try decoded.layout()
        }
    }

    /// Arbitrary bytes behind a valid header, for every captured version: a typed error or a
    /// layout, never a trap.
    @Test(arguments: ["3.13.0", "3.14.10", "3.15.2"])
    func garbageNeverTraps(version: String) throws {
        let raw = try Fixtures.bytes("fixtures/generators/debug_offsets_\(version).bin")
        var generator = SplitMix64(seed: 0x5CA1E)
        var decodedCount = 0
        for round in 0..<2000 {
            var bytes = raw
            let mutations = 1 + round % 16
            for _ in 0..<mutations {
                let position = Int(generator.next() % UInt64(bytes.count))
                // Keep the header valid in most rounds so the field checks get exercised.
                if position < 24, round % 4 != 0 { continue }
                bytes[position] = UInt8(truncatingIfNeeded: generator.next())
            }
            if round % 7 == 0 { bytes = Array(bytes.prefix(Int(generator.next() % UInt64(raw.count + 16)))) }
            if let decoded = try? DebugOffsets.decode(bytes) {
                decodedCount += 1
                _ = try? decoded.layout()
            }
        }
        #expect(decodedCount > 0)
    }
}

/// A small deterministic generator for reproducible garbage.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
