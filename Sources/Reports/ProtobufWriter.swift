/// Protocol Buffers' binary wire format, the part pprof's `profile.proto` needs to be written:
/// varints, length-delimited fields (strings, nested messages) and packed repeated integers
/// (https://protobuf.dev/programming-guides/encoding/). Replaces swift-protobuf's runtime, whose
/// reflection-driven machinery was about a megabyte of the binary for eight small messages.
///
/// Fields are written as proto3 writes them: singular scalars only when not zero (the default
/// a reader assumes), repeated ones element by element, packed integers only when there are any.
/// The caller writes a message's fields in field-number order, as protobuf's own encoders do.
public struct ProtobufWriter {
    /// The wire types used here.
    enum WireType: UInt64 {
        case varint = 0
        case lengthDelimited = 2
    }

    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// A base-128 varint: seven bits a byte, least significant first, the high bit set on all
    /// bytes but the last (150 → 96 01).
    public mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func key(_ field: Int, _ type: WireType) {
        varint(UInt64(field) << 3 | type.rawValue)
    }

    /// A `uint64` field, left out when 0.
    public mutating func uint64(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        key(field, .varint)
        varint(value)
    }

    /// An `int64` field, left out when 0; negative values are their 64-bit two's complement
    /// (ten bytes), as protobuf encodes `int64`.
    public mutating func int64(_ field: Int, _ value: Int64) {
        uint64(field, UInt64(bitPattern: value))
    }

    /// A `bool` field, left out when false.
    public mutating func bool(_ field: Int, _ value: Bool) {
        uint64(field, value ? 1 : 0)
    }

    /// One element of a `repeated string` field (written even when empty: its place counts).
    public mutating func string(_ field: Int, _ value: String) {
        lengthDelimited(field, Array(value.utf8))
    }

    /// A packed `repeated uint64` field, left out when empty.
    public mutating func packed(_ field: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        var body = ProtobufWriter()
        for value in values { body.varint(value) }
        lengthDelimited(field, body.bytes)
    }

    /// A packed `repeated int64` field, left out when empty.
    public mutating func packed(_ field: Int, _ values: [Int64]) {
        packed(field, values.map { UInt64(bitPattern: $0) })
    }

    /// A nested message (one element of a repeated message field, or a singular one that is set),
    /// written by `body` into a writer of its own.
    public mutating func message(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        var nested = ProtobufWriter()
        body(&nested)
        lengthDelimited(field, nested.bytes)
    }

    mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, .lengthDelimited)
        varint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }
}
