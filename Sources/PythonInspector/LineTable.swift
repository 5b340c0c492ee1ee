import CPythonLayouts
import RemoteProcess

/// A decoded line table: which source line each stretch of bytecode belongs to.
///
/// Ranges are in 2-byte code units, sorted and non-overlapping; a range with line nil has no line
/// (e.g. compiler-generated cleanup code).
public struct LineTable: Sendable, Equatable {
    public struct Range: Sendable, Equatable {
        public var start: Int
        public var end: Int
        public var line: Int?

        public init(start: Int, end: Int, line: Int?) {
            self.start = start
            self.end = end
            self.line = line
        }
    }

    public var ranges: [Range]
    public var firstLine: Int

    /// Line numbers above this are garbage (torn or foreign bytes): CPython stores lines as C ints,
    /// and no real source file comes near it. Decoding stops at the first such line.
    public static let maximumLine = 1 << 24

    public init(ranges: [Range], firstLine: Int) {
        self.ranges = ranges
        self.firstLine = firstLine
    }

    /// The line of the instruction at `unit` (a code-unit index). An index before the first
    /// instruction (a frame that has not started) is the function's first line.
    public func line(atCodeUnit unit: Int) -> Int? {
        if unit < 0 { return firstLine }
        var low = 0
        var high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].end <= unit { low = mid + 1 } else { high = mid }
        }
        guard low < ranges.count, ranges[low].start <= unit else { return nil }
        return ranges[low].line
    }

    /// Decodes `bytes` in `format`. Malformed or truncated input yields the ranges decoded so far;
    /// decoding never traps.
    public static func decode(_ bytes: [UInt8], format: LineTableFormat, firstLine: Int) -> LineTable {
        switch format {
        case .lnotab: return decodeLnotab(bytes, firstLine: firstLine)
        case .lineTable310: return decode310(bytes, firstLine: firstLine)
        case .locationTable: return decodeLocations(bytes, firstLine: firstLine)
        }
    }

    /// 3.8–3.9 `co_lnotab`: (byte increment, signed line increment) pairs. A line belongs to the
    /// bytecode from its address up to the next address increment; large jumps are split across
    /// several pairs with one of the two increments zero.
    static func decodeLnotab(_ bytes: [UInt8], firstLine: Int) -> LineTable {
        var ranges = [Range]()
        var address = 0 // bytes
        var line = firstLine
        var start = 0
        var index = 0
        while index + 1 < bytes.count {
            let addressIncrement = Int(bytes[index])
            let lineIncrement = Int(Int8(bitPattern: bytes[index + 1]))
            index += 2
            if addressIncrement != 0 {
                let end = address + addressIncrement
                append(&ranges, start: start / 2, end: end / 2, line: line)
                start = end
                address = end
            }
            guard let next = plausible(line, lineIncrement) else { return LineTable(ranges: ranges, firstLine: firstLine) }
            line = next
        }
        // The last line runs to the end of the code; an open-ended range says so.
        append(&ranges, start: start / 2, end: Int.max, line: line)
        return LineTable(ranges: ranges, firstLine: firstLine)
    }

    /// 3.10 `co_linetable`: (byte delta, signed line delta) pairs; a line delta of -128 means the
    /// range has no line and leaves the running line unchanged.
    static func decode310(_ bytes: [UInt8], firstLine: Int) -> LineTable {
        var ranges = [Range]()
        var address = 0
        var line = firstLine
        var index = 0
        while index + 1 < bytes.count {
            let delta = Int(bytes[index])
            let lineDelta = Int8(bitPattern: bytes[index + 1])
            index += 2
            let rangeLine: Int?
            if lineDelta == -128 {
                rangeLine = nil
            } else {
                guard let next = plausible(line, Int(lineDelta)) else { return LineTable(ranges: ranges, firstLine: firstLine) }
                line = next
                rangeLine = line
            }
            if delta > 0 { append(&ranges, start: address / 2, end: (address + delta) / 2, line: rangeLine) }
            address += delta
        }
        return LineTable(ranges: ranges, firstLine: firstLine)
    }

    /// 3.11+ PEP 657 location table. Each entry starts with a byte 1cccclll: code c, length l+1 code
    /// units. Code 15: no location; 14: long form (signed line delta, end line delta, start column,
    /// end column as varints); 13: signed line delta, no columns; 10–12: line delta c-10 and two
    /// column bytes; 0–9: same line, one column byte.
    static func decodeLocations(_ bytes: [UInt8], firstLine: Int) -> LineTable {
        var ranges = [Range]()
        var reader = VarintReader(bytes: bytes)
        var address = 0
        var line = firstLine
        while let first = reader.next() {
            guard first & 0x80 != 0 else { break } // lost sync: torn or foreign data
            let code = Int((first >> 3) & 0x0f)
            let length = Int(first & 0x07) + 1
            var rangeLine: Int? = nil
            var delta = 0
            switch code {
            case 15:
                rangeLine = nil
            case 14:
                guard let value = reader.signedVarint(), reader.varint() != nil, reader.varint() != nil,
                      reader.varint() != nil else { return LineTable(ranges: ranges, firstLine: firstLine) }
                delta = value
            case 13:
                guard let value = reader.signedVarint() else { return LineTable(ranges: ranges, firstLine: firstLine) }
                delta = value
            case 10, 11, 12:
                guard reader.next() != nil, reader.next() != nil else {
                    return LineTable(ranges: ranges, firstLine: firstLine)
                }
                delta = code - 10
            default:
                guard reader.next() != nil else { return LineTable(ranges: ranges, firstLine: firstLine) }
            }
            if code >= 10 && code <= 14 {
                guard let next = plausible(line, delta) else { return LineTable(ranges: ranges, firstLine: firstLine) }
                line = next
            }
            if code != 15 { rangeLine = line }
            append(&ranges, start: address, end: address + length, line: rangeLine)
            address += length
        }
        return LineTable(ranges: ranges, firstLine: firstLine)
    }

    /// `line + delta` if that is a line a real file can have (a delta may take the running line
    /// below zero for a while in hand-made tables, so only the upper bound and overflow are checked).
    private static func plausible(_ line: Int, _ delta: Int) -> Int? {
        guard let next = RemoteArithmetic.sum(line, delta), next <= maximumLine, next >= -maximumLine else { return nil }
        return next
    }

    /// Appends a range, merging it with the previous one when they are adjacent and on one line.
    private static func append(_ ranges: inout [Range], start: Int, end: Int, line: Int?) {
        guard end > start else { return }
        if var last = ranges.last, last.end == start, last.line == line {
            last.end = end
            ranges[ranges.count - 1] = last
        } else {
            ranges.append(Range(start: start, end: end, line: line))
        }
    }
}

/// Reads the 6-bit varints of the 3.11+ location table.
struct VarintReader {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func next() -> UInt8? {
        guard index < bytes.count else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func varint() -> Int? {
        guard var byte = next() else { return nil }
        var value = Int(byte & 63)
        var shift = 0
        while byte & 64 != 0 {
            guard let following = next(), shift < 56 else { return nil }
            byte = following
            shift += 6
            value |= Int(byte & 63) << shift
        }
        return value
    }

    mutating func signedVarint() -> Int? {
        guard let raw = varint() else { return nil }
        return raw & 1 != 0 ? -(raw >> 1) : raw >> 1
    }
}
