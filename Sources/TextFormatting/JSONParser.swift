/// A JSON value (RFC 8259) as `JSONParser` reads it.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// Every number, as the nearest `Double` (integers are exact up to 2^53).
    case number(Double)
    case string(String)
    case array([JSONValue])
    /// Members by name; of a name given twice, the last one.
    case object([String: JSONValue])
}

/// Why bytes are not JSON: what was wrong and the byte offset where it was found.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public var offset: Int

    public var description: String { "\(reason) at byte \(offset)" }
}

/// Reads JSON text into a `JSONValue`, the counterpart of `JSONWriter` (which replaced Foundation's
/// `JSONSerialization`): what `view` reads a saved profile with, without Foundation's
/// `JSONDecoder`.
///
/// The input can be any file, so nothing in it can trap or exhaust the stack: nesting is limited
/// to `maximumDepth`, strings must be valid UTF-8 (a lone surrogate escape becomes U+FFFD), a
/// number must be finite as a `Double`, and anything after the value but white space is an error.
public enum JSONParser {
    /// Arrays and objects nested deeper than this are refused (the parser recurses once a level).
    public static let maximumDepth = 512

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buffer) throws(JSONParseError) -> JSONValue in
            var reader = Reader(bytes: buffer)
            reader.skipWhitespace()
            let value = try reader.value(depth: 0)
            reader.skipWhitespace()
            guard reader.position == buffer.count else { throw reader.error("unexpected text after the value") }
            return value
        }
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0

        init(bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
        }

        func error(_ reason: String) -> JSONParseError {
            JSONParseError(reason: reason, offset: position)
        }

        var current: UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { position += 1 }
        }

        mutating func expect(_ literal: StaticString, _ value: JSONValue) throws(JSONParseError) -> JSONValue {
            let count = literal.utf8CodeUnitCount
            guard bytes.count - position >= count else { throw error("unexpected end of input") }
            for index in 0..<count where bytes[position + index] != literal.utf8Start[index] {
                throw error("unexpected character")
            }
            position += count
            return value
        }

        mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
            guard let byte = current else { throw error("unexpected end of input") }
            switch byte {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw error("unexpected character")
            }
        }

        mutating func object(depth: Int) throws(JSONParseError) -> JSONValue {
            guard depth <= JSONParser.maximumDepth else { throw error("nested too deeply") }
            position += 1 // {
            var members = [String: JSONValue]()
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                position += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else { throw error("expected a member name") }
                let name = try string()
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { throw error("expected ':'") }
                position += 1
                skipWhitespace()
                members[name] = try value(depth: depth)
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): position += 1
                case UInt8(ascii: "}"):
                    position += 1
                    return .object(members)
                case nil: throw error("unexpected end of input")
                default: throw error("expected ',' or '}'")
                }
            }
        }

        mutating func array(depth: Int) throws(JSONParseError) -> JSONValue {
            guard depth <= JSONParser.maximumDepth else { throw error("nested too deeply") }
            position += 1 // [
            var elements = [JSONValue]()
            skipWhitespace()
            if current == UInt8(ascii: "]") {
                position += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth))
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): position += 1
                case UInt8(ascii: "]"):
                    position += 1
                    return .array(elements)
                case nil: throw error("unexpected end of input")
                default: throw error("expected ',' or ']'")
                }
            }
        }

        /// A number as JSON writes it (`-`? int frac? exp?), converted by the standard library.
        mutating func number() throws(JSONParseError) -> Double {
            let start = position
            func digits(_ reader: inout Reader) -> Int {
                let first = reader.position
                while let byte = reader.current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { reader.position += 1 }
                return reader.position - first
            }
            let negative = current == UInt8(ascii: "-")
            if negative { position += 1 }
            if current == UInt8(ascii: "0") {
                position += 1
            } else if digits(&self) == 0 {
                throw error("expected a digit")
            }
            // Whole numbers of up to 15 digits (exact in a Double) without making a String.
            let integerEnd = position
            if current != UInt8(ascii: "."), current != UInt8(ascii: "e"), current != UInt8(ascii: "E"),
               integerEnd - start - (negative ? 1 : 0) <= 15 {
                var value = 0.0
                for index in (start + (negative ? 1 : 0))..<integerEnd {
                    value = value * 10 + Double(bytes[index] - UInt8(ascii: "0"))
                }
                return negative ? -value : value
            }
            if current == UInt8(ascii: ".") {
                position += 1
                guard digits(&self) > 0 else { throw error("expected a digit") }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                position += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
                guard digits(&self) > 0 else { throw error("expected a digit") }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            guard let value = Double(text), value.isFinite else {
                position = start
                throw error("number out of range")
            }
            return value
        }

        /// A string: escapes decoded, the bytes between them checked to be UTF-8.
        mutating func string() throws(JSONParseError) -> String {
            position += 1 // "
            var out = [UInt8]()
            while true {
                guard let byte = current else { throw error("unterminated string") }
                switch byte {
                case UInt8(ascii: "\""):
                    position += 1
                    guard let text = String(validating: out, as: UTF8.self) else {
                        throw error("invalid UTF-8 in a string")
                    }
                    return text
                case UInt8(ascii: "\\"):
                    position += 1
                    try escape(into: &out)
                case 0..<0x20:
                    throw error("control character in a string")
                default:
                    out.append(byte)
                    position += 1
                }
            }
        }

        /// After a backslash: one escape, appended as UTF-8.
        mutating func escape(into out: inout [UInt8]) throws(JSONParseError) {
            guard let byte = current else { throw error("unterminated string") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(byte)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate: with a low one after it, one scalar; alone, U+FFFD.
                    let saved = position
                    if current == UInt8(ascii: "\\"), position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "u") {
                        position += 2
                        let low = try hex4()
                        if (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            position = saved
                            scalar = 0xFFFD
                        }
                    } else {
                        scalar = 0xFFFD
                    }
                } else if (0xDC00..<0xE000).contains(scalar) {
                    scalar = 0xFFFD
                }
                out.append(contentsOf: String(Unicode.Scalar(scalar) ?? "\u{FFFD}").utf8)
            default:
                position -= 1
                throw error("invalid escape")
            }
        }

        mutating func hex4() throws(JSONParseError) -> UInt32 {
            guard bytes.count - position >= 4 else { throw error("unterminated string") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[position]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw error("invalid \\u escape")
                }
                value = value << 4 | UInt32(digit)
                position += 1
            }
            return value
        }
    }
}
