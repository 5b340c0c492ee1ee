import CPythonLayouts
import PythonInspector
import RemoteProcess
import Testing

@Suite("ObjectReader on fake objects")
struct ObjectReaderTests {
    // MARK: str and bytes

    @Test("compact str of every kind", arguments: ["3.8", "3.11", "3.12", "3.13"])
    func strings(_ version: String) throws {
        let o = try TestLayouts.named(version).objects
        var heap = FakeHeap()
        let texts = ["hello_world", "café", "名前", "🐍py", "", "x"]
        let addresses = texts.map { heap.str($0, objects: o) }
        let reader = ObjectReader(memory: heap.memory, objects: o)
        for (text, address) in zip(texts, addresses) {
            #expect(reader.string(at: address) == text, "\(version) \(text)")
        }
        #expect(reader.type(of: addresses[0]) == FakeHeap.strType)
        #expect(reader.string(at: 0) == nil)
        #expect(reader.string(at: FakeHeap.unmapped) == nil)
    }

    @Test("str that is not compact, has a bad kind, or a bad length is not read", arguments: ["3.8", "3.12"])
    func badStrings(_ version: String) throws {
        let o = try TestLayouts.named(version).objects
        let u = o.unicode
        var heap = FakeHeap()
        let legacy = heap.str("legacy", objects: o)
        let state = UInt32(1) << UInt32(u.kindShift) | 1 << UInt32(u.asciiShift) // ascii, kind 1, not compact
        heap.write(state, at: legacy + UInt64(u.state))
        let badKind = heap.str("kind", objects: o)
        heap.write(UInt32(3) << UInt32(u.kindShift) | 1 << UInt32(u.compactShift), at: badKind + UInt64(u.state))
        let negative = heap.str("negative", objects: o)
        heap.write(Int64(-4), at: negative + UInt64(u.length))
        let long = heap.str(String(repeating: "a", count: 300), objects: o)
        let huge = heap.str("huge", objects: o)
        heap.write(Int64(1) << 40, at: huge + UInt64(u.length))

        var reader = ObjectReader(memory: heap.memory, objects: o)
        #expect(reader.string(at: legacy) == nil)
        #expect(reader.string(at: badKind) == nil)
        #expect(reader.string(at: negative) == nil)
        #expect(reader.string(at: huge) == nil)
        #expect(reader.string(at: long) == String(repeating: "a", count: 300))
        reader.maximumLength = 299
        #expect(reader.string(at: long) == nil, "longer than maximumLength")
    }

    @Test("a short ASCII str at the very end of mapped memory is read",
          arguments: ["3.8", "3.12"])
    func shortStringAtEndOfMapping(_ version: String) throws {
        let o = try TestLayouts.named(version).objects
        var heap = FakeHeap()
        // The object ends exactly where the mapping does: asciiSize + 1 character + NUL.
        let name = heap.str("f", objects: o, exactSize: true)
        #expect(heap.end == name + UInt64(o.unicode.asciiSize + 2))
        let reader = ObjectReader(memory: heap.memory, objects: o)
        #expect(reader.string(at: name) == "f")
    }

    @Test("bytes: contents, empty, limit, bad size")
    func byteStrings() throws {
        let o = try TestLayouts.named("3.12").objects
        var heap = FakeHeap()
        let data: [UInt8] = [0, 1, 2, 0xff, 0x80, 10]
        let object = heap.bytesObject(data, objects: o)
        let empty = heap.bytesObject([], objects: o)
        let negative = heap.bytesObject([1, 2], objects: o)
        heap.write(Int64(-2), at: negative + UInt64(o.bytes.size))
        let reader = ObjectReader(memory: heap.memory, objects: o)
        #expect(reader.byteString(at: object) == data)
        #expect(reader.byteString(at: object, limit: 6) == data)
        #expect(reader.byteString(at: object, limit: 5) == nil)
        #expect(reader.byteString(at: empty) == [])
        #expect(reader.byteString(at: negative) == nil)
        #expect(reader.byteString(at: 0) == nil)
        #expect(reader.byteString(at: FakeHeap.unmapped) == nil)
    }

    // MARK: int

    @Test("unsignedInteger: 30-bit digits in ob_size (3.11) and lv_tag (3.12, 3.13) encodings",
          arguments: ["3.8", "3.11", "3.12", "3.13"])
    func integers(_ version: String) throws {
        let o = try TestLayouts.named(version).objects
        #expect(o.long.digitBits == 30 && o.long.digitSize == 4)
        #expect(o.long.usesTag == (version == "3.12" || version == "3.13"))
        var heap = FakeHeap()
        let values: [UInt64] = [
            0, 1, 7, 0x3fff_ffff,                        // no digit, one digit
            0x4000_0000, 0x7f3a_1234_5700, 1 << 59,      // two digits (a pthread_t is one)
            1 << 60, (1 << 63) + 5, UInt64.max,          // three digits
        ]
        let objects = values.map { heap.int(digits: FakeHeap.digits(of: $0), objects: o) }
        #expect(FakeHeap.digits(of: 0x7f3a_1234_5700).count == 2)
        #expect(FakeHeap.digits(of: UInt64.max) == [0x3fff_ffff, 0x3fff_ffff, 0xf])

        let negativeOne = heap.int(digits: [1], negative: true, objects: o)
        let negativeBig = heap.int(digits: [5, 7, 1], negative: true, objects: o)
        let tooBig = heap.int(digits: [0, 0, 16], objects: o)          // 2^64
        let fourDigits = heap.int(digits: [1, 0, 0, 0], objects: o)    // 2^90 digit count, rejected
        let reader = ObjectReader(memory: heap.memory, objects: o)
        for (value, object) in zip(values, objects) {
            #expect(reader.unsignedInteger(at: object) == value, "\(version) \(value)")
        }
        #expect(reader.unsignedInteger(at: negativeOne) == nil)
        #expect(reader.unsignedInteger(at: negativeBig) == nil)
        #expect(reader.unsignedInteger(at: tooBig) == nil, "overflow is nil, not wrapped")
        #expect(reader.unsignedInteger(at: fourDigits) == nil)
        #expect(reader.unsignedInteger(at: 0) == nil)
        #expect(reader.unsignedInteger(at: FakeHeap.unmapped) == nil)
    }

    @Test("3.12 lv_tag spelled out: 8 is one positive digit, 1 is zero, 10 is one negative digit")
    func lvTag() throws {
        let o = try TestLayouts.named("3.12").objects
        var heap = FakeHeap()
        let one = heap.allocate(32), zero = heap.allocate(32), minusOne = heap.allocate(32)
        for (object, tag) in [(one, Int64(8)), (zero, 1), (minusOne, 10)] {
            heap.write(tag, at: object + 16)
            heap.write(UInt32(object == zero ? 0 : 1), at: object + 24)
        }
        let reader = ObjectReader(memory: heap.memory, objects: o)
        #expect(reader.unsignedInteger(at: one) == 1)
        #expect(reader.unsignedInteger(at: zero) == 0)
        #expect(reader.unsignedInteger(at: minusOne) == nil)
    }

    // MARK: dict

    @Test("3.8-style keys: dk_size entries and index width 1, 2 bytes", arguments: ["3.8", "3.9", "3.10"],
          [8, 256, 512])
    func dict38(_ version: String, size: Int) throws {
        let o = try TestLayouts.named(version).objects
        #expect(!o.dict.keysSizeIsLog2 && o.dict.keysKind == nil)
        var heap = FakeHeap()
        let items = FakeDictItems(&heap, o)
        let dict = heap.dict(items.entries, size: size, objects: o)
        let split = heap.dict(items.entries, size: size, objects: o, splitValues: true)
        let reader = ObjectReader(memory: heap.memory, objects: o)
        #expect(FakeDictItems.pairs(reader.dictItems(at: dict)) == items.live)
        #expect(FakeDictItems.pairs(reader.dictItems(at: split)) == items.live, "split table: values from ma_values")
        #expect(reader.dictValue(at: dict, forKey: "c") == items.values[2])
        #expect(reader.dictValue(at: dict, forKey: "b") == nil, "deleted")
        #expect(reader.dictValue(at: dict, forKey: "zz") == nil)
        #expect(reader.dictValue(at: split, forKey: "d") == items.values[3])
        #expect(reader.unsignedInteger(at: reader.dictValue(at: dict, forKey: "a") ?? 0) == 1)
    }

    @Test("3.11+-style keys: log2 sizes, unicode, general and split kinds", arguments: ["3.11", "3.12", "3.13"],
          [8, 256])
    func dict311(_ version: String, size: Int) throws {
        let o = try TestLayouts.named(version).objects
        #expect(o.dict.keysSizeIsLog2 && o.dict.keysKind != nil)
        var heap = FakeHeap()
        let items = FakeDictItems(&heap, o)
        let unicode = heap.dict(items.entries, size: size, objects: o, unicodeKeys: true)
        let general = heap.dict(items.entries, size: size, objects: o, unicodeKeys: false)
        let split = heap.dict(items.entries, size: size, objects: o, splitValues: true)
        let reader = ObjectReader(memory: heap.memory, objects: o)
        #expect(FakeDictItems.pairs(reader.dictItems(at: unicode)) == items.live)
        #expect(FakeDictItems.pairs(reader.dictItems(at: general)) == items.live)
        #expect(FakeDictItems.pairs(reader.dictItems(at: split)) == items.live)
        for dict in [unicode, general, split] {
            #expect(reader.dictValue(at: dict, forKey: "d") == items.values[3])
            #expect(reader.dictValue(at: dict, forKey: "b") == nil)
        }
    }

    @Test("dicts with impossible sizes or counts are not read", arguments: ["3.8", "3.12"])
    func badDicts(_ version: String) throws {
        let o = try TestLayouts.named(version).objects
        let d = o.dict
        var heap = FakeHeap()
        let items = FakeDictItems(&heap, o)
        let empty = heap.dict([], size: 8, objects: o)
        let tooMany = heap.dict(items.entries, size: 8, objects: o)
        let keysOfTooMany = try ObjectReader(memory: heap.memory, objects: o).memory.pointer(at: tooMany + UInt64(d.keys))
        heap.write(Int64(9), at: keysOfTooMany + UInt64(d.keysNEntries)) // more entries than slots
        let badSize = heap.dict(items.entries, size: 8, objects: o)
        let keysOfBadSize = try ObjectReader(memory: heap.memory, objects: o).memory.pointer(at: badSize + UInt64(d.keys))
        if d.keysSizeIsLog2 {
            heap.write(UInt8(40), at: keysOfBadSize + UInt64(d.keysSize))
        } else {
            heap.write(Int64(0), at: keysOfBadSize + UInt64(d.keysSize))
        }
        let noKeys = heap.dict(items.entries, size: 8, objects: o)
        heap.write(UInt64(0), at: noKeys + UInt64(d.keys))
        let unmappedKeys = heap.dict(items.entries, size: 8, objects: o)
        heap.write(FakeHeap.unmapped, at: unmappedKeys + UInt64(d.keys))

        var reader = ObjectReader(memory: heap.memory, objects: o)
        #expect(FakeDictItems.pairs(reader.dictItems(at: empty)) == [])
        #expect(reader.dictItems(at: tooMany) == nil)
        #expect(reader.dictItems(at: badSize) == nil)
        #expect(reader.dictItems(at: noKeys) == nil)
        #expect(reader.dictItems(at: unmappedKeys) == nil)
        #expect(reader.dictItems(at: 0) == nil)
        let fine = heap.dict(items.entries, size: 8, objects: o)
        reader = ObjectReader(memory: heap.memory, objects: o)
        #expect(reader.dictItems(at: fine)?.count == 3)
        reader.maximumEntries = 3
        #expect(reader.dictItems(at: fine) == nil, "4 entries (one deleted) exceed maximumEntries 3")
    }
}
