import CPythonLayouts
import RemoteProcess

/// Decodes Python objects (str, bytes, int, dict) from another process's memory.
///
/// Every read is bounded: strings and byte strings by `maximumLength`, dict walks by their entry
/// count and `maximumEntries`. Wrong or torn data gives nil, never a trap.
public struct ObjectReader<Memory: ProcessMemory>: Sendable {
    public let memory: Memory
    public let objects: ObjectOffsets
    public var maximumLength = 4096
    public var maximumEntries = 4096

    public init(memory: Memory, objects: ObjectOffsets) {
        self.memory = memory
        self.objects = objects
    }

    /// The type object of `object`.
    public func type(of object: UInt64) -> UInt64? {
        try? memory.pointer(at: object &+ UInt64(objects.objectType))
    }

    /// A `str` object's text.
    public func string(at object: UInt64) -> String? {
        let u = objects.unicode
        // Only the fields read here: a short compact ASCII string is smaller than the compact
        // (non-ASCII) header and may end where mapped memory ends.
        let headerSize = max(u.length + 8, u.state + 4)
        guard object != 0, let header = try? memory.remoteBytes(at: object, count: headerSize),
              let length = header.integer(Int64.self, at: u.length), let state = header.integer(UInt32.self, at: u.state),
              length >= 0, length <= maximumLength else { return nil }
        let kind = Int((state >> UInt32(u.kindShift)) & ((1 << UInt32(u.kindBits)) - 1))
        let compact = (state >> UInt32(u.compactShift)) & 1 == 1
        let ascii = (state >> UInt32(u.asciiShift)) & 1 == 1
        // Names and file names are always compact; legacy (non-compact) strings are not read.
        guard compact, kind == 1 || kind == 2 || kind == 4 else { return nil }
        let dataOffset = ascii ? u.asciiSize : u.compactSize
        if length == 0 { return "" }
        guard let data = try? memory.bytes(at: object &+ UInt64(dataOffset), count: Int(length) * kind) else {
            return nil
        }
        if ascii { return String(decoding: data, as: UTF8.self) }
        // Latin-1, UCS-2 or UCS-4: `kind` little-endian bytes per code point.
        var scalars = String.UnicodeScalarView()
        for start in stride(from: 0, to: data.count, by: kind) {
            var value: UInt32 = 0
            for byte in 0..<kind { value |= UInt32(data[start + byte]) << (8 * UInt32(byte)) }
            scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
        }
        return String(scalars)
    }

    /// A `bytes` object's contents, up to `limit` bytes.
    public func byteString(at object: UInt64, limit: Int = 1 << 20) -> [UInt8]? {
        guard object != 0, let size = try? memory.integer(Int64.self, at: object &+ UInt64(objects.bytes.size)),
              size >= 0, size <= limit else { return nil }
        if size == 0 { return [] }
        return try? memory.bytes(at: object &+ UInt64(objects.bytes.data), count: Int(size))
    }

    /// An `int` that fits in 64 bits (unsigned; e.g. a pthread_t ident), or nil.
    public func unsignedInteger(at object: UInt64) -> UInt64? {
        let l = objects.long
        guard object != 0, let raw = try? memory.integer(Int64.self, at: object &+ UInt64(l.sizeOrTag)) else { return nil }
        let digitCount: Int
        if l.usesTag {
            guard raw & 3 != 2 else { return nil } // negative
            digitCount = Int(raw >> Int64(l.tagDigitShift))
        } else {
            guard raw >= 0 else { return nil }
            digitCount = Int(raw)
        }
        // The count is remote data: bound it before any arithmetic on it.
        guard digitCount >= 0, digitCount <= 4, digitCount * l.digitBits <= 64 + l.digitBits,
              l.digitSize == 4 || l.digitSize == 2 else { return nil }
        if digitCount == 0 { return 0 }
        guard let data = try? memory.bytes(at: object &+ UInt64(l.digits), count: digitCount * l.digitSize) else {
            return nil
        }
        var value: UInt64 = 0
        for index in stride(from: digitCount - 1, through: 0, by: -1) {
            var digit: UInt64 = 0
            for byte in 0..<l.digitSize { digit |= UInt64(data[index * l.digitSize + byte]) << (8 * byte) }
            let (shifted, overflow) = value.multipliedReportingOverflow(by: 1 << UInt64(l.digitBits))
            guard !overflow else { return nil }
            value = shifted | digit
        }
        return value
    }

    /// The (key, value) object pairs of a dict, in table order.
    public func dictItems(at dict: UInt64) -> [(key: UInt64, value: UInt64)]? {
        let d = objects.dict
        guard dict != 0, let keys = try? memory.pointer(at: dict &+ UInt64(d.keys)), keys != 0,
              let values = try? memory.pointer(at: dict &+ UInt64(d.values)) else { return nil }
        return items(keys: keys, values: values == 0 ? nil : values &+ UInt64(d.valuesArray))
    }

    /// Entries of a keys object; with `values` (a split table's value array) the values come from it.
    public func items(keys: UInt64, values: UInt64?) -> [(key: UInt64, value: UInt64)]? {
        let d = objects.dict
        guard let header = try? memory.remoteBytes(at: keys, count: d.keysIndices) else { return nil }
        let size: Int
        if d.keysSizeIsLog2 {
            guard let log2 = header.uint8(at: d.keysSize), log2 < 32 else { return nil }
            size = 1 << Int(log2)
        } else {
            guard let raw = header.integer(Int64.self, at: d.keysSize), raw > 0, raw < 1 << 30 else { return nil }
            size = Int(raw)
        }
        guard let entryCount = header.integer(Int64.self, at: d.keysNEntries), entryCount >= 0,
              entryCount <= size, entryCount <= Int64(maximumEntries) else { return nil }
        // The index array sits between the header and the entries; its width depends on the size.
        let indexBytes: Int
        if let log2Field = d.keysLog2IndexBytes {
            guard let log2 = header.uint8(at: log2Field), log2 < 40 else { return nil }
            indexBytes = 1 << Int(log2)
        } else {
            let width = size <= 0xff ? 1 : size <= 0xffff ? 2 : size <= 0xffff_ffff ? 4 : 8
            indexBytes = size * width
        }
        var entrySize = d.entrySize
        var keyOffset = d.entryKey
        var valueOffset = d.entryValue
        if let kindField = d.keysKind, let kind = header.uint8(at: kindField), kind != 0,
           let unicodeSize = d.unicodeEntrySize, let unicodeKey = d.unicodeEntryKey,
           let unicodeValue = d.unicodeEntryValue {
            entrySize = unicodeSize
            keyOffset = unicodeKey
            valueOffset = unicodeValue
        }
        let count = Int(entryCount)
        if count == 0 { return [] }
        let entriesAddress = keys &+ UInt64(d.keysIndices) &+ UInt64(indexBytes)
        guard let entries = try? memory.remoteBytes(at: entriesAddress, count: count * entrySize) else { return nil }
        var valueArray: RemoteBytes?
        if let values {
            valueArray = try? memory.remoteBytes(at: values, count: count * 8)
            if valueArray == nil { return nil }
        }
        var result = [(key: UInt64, value: UInt64)]()
        for index in 0..<count {
            guard let key = entries.pointer(at: index * entrySize + keyOffset), key != 0 else { continue }
            let value = valueArray.map { $0.pointer(at: index * 8) ?? 0 } ?? entries.pointer(at: index * entrySize + valueOffset) ?? 0
            if value != 0 { result.append((key, value)) }
        }
        return result
    }

    /// The value for a string key in a dict (linear scan: dicts read here are small and the hash
    /// function of the target is not ours to compute).
    public func dictValue(at dict: UInt64, forKey name: String) -> UInt64? {
        guard let items = dictItems(at: dict) else { return nil }
        for item in items where string(at: item.key) == name { return item.value }
        return nil
    }

    /// The `__dict__` entries of an instance, following the version's placement rules.
    public func instanceAttributes(of object: UInt64) -> [(key: UInt64, value: UInt64)]? {
        let t = objects.type
        guard let type = type(of: object), type != 0,
              let typeBytes = try? memory.remoteBytes(at: type, count: max(t.flags, t.basicSize, t.dictOffset) + 8),
              let flags = typeBytes.integer(UInt64.self, at: t.flags) else { return nil }
        switch t.instanceDict {
        case .typeDictOffset:
            break
        case .managed311(let dictPointer, let valuesPointer):
            if flags & t.managedDictFlag != 0 {
                if let dict = try? memory.pointer(at: object &- UInt64(-dictPointer)), dict != 0 {
                    return dictItems(at: dict)
                }
                guard let values = try? memory.pointer(at: object &- UInt64(-valuesPointer)), values != 0 else {
                    return nil
                }
                return splitValues(type: type, values: values &+ UInt64(objects.dict.valuesArray))
            }
        case .managedTagged312(let word):
            if flags & t.managedDictFlag != 0 {
                guard let tagged = try? memory.pointer(at: object &- UInt64(-word)), tagged != 0 else { return nil }
                if tagged & 1 == 1 {
                    return splitValues(type: type, values: (tagged &+ 1) &+ UInt64(objects.dict.valuesArray))
                }
                return dictItems(at: tagged)
            }
        case .inlineValues313(let dictPointer, let validByte):
            if flags & t.inlineValuesFlag != 0, let basicSize = typeBytes.integer(Int64.self, at: t.basicSize),
               basicSize > 0 {
                let values = object &+ UInt64(basicSize)
                if let valid = try? memory.integer(UInt8.self, at: values &+ UInt64(validByte)), valid != 0 {
                    return splitValues(type: type, values: values &+ UInt64(objects.dict.valuesArray))
                }
            }
            if flags & (t.managedDictFlag | t.inlineValuesFlag) != 0 {
                guard let dict = try? memory.pointer(at: object &- UInt64(-dictPointer)), dict != 0 else { return nil }
                return dictItems(at: dict)
            }
        }
        guard let offset = typeBytes.integer(Int64.self, at: t.dictOffset), offset > 0,
              let dict = try? memory.pointer(at: object &+ UInt64(offset)), dict != 0 else { return nil }
        return dictItems(at: dict)
    }

    /// Values stored split from their keys: the keys are the type's shared `ht_cached_keys`.
    private func splitValues(type: UInt64, values: UInt64) -> [(key: UInt64, value: UInt64)]? {
        guard let keys = try? memory.pointer(at: type &+ UInt64(objects.type.heapCachedKeys)), keys != 0 else {
            return nil
        }
        return items(keys: keys, values: values)
    }

    /// A module's `__dict__` (at its type's `tp_dictoffset`).
    public func moduleDict(of module: UInt64) -> UInt64? {
        guard let type = type(of: module),
              let offset = try? memory.integer(Int64.self, at: type &+ UInt64(objects.type.dictOffset)), offset > 0,
              let dict = try? memory.pointer(at: module &+ UInt64(offset)), dict != 0 else { return nil }
        return dict
    }
}
