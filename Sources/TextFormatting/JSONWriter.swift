/// JSON's `null` inside a tree given to `JSONWriter` (a `nil` optional writes the same).
public struct JSONNull: Sendable, Equatable {
    public init() {}
}

/// Writes a tree of dictionaries (`String` keys, written in sorted order so that equal profiles
/// give equal bytes), arrays, strings, numbers, booleans and `JSONNull` as compact JSON.
///
/// Replaces Foundation's `JSONSerialization`, which compared keys through ICU collation and took
/// three quarters of a short recording's CPU. A number that JSON cannot hold (NaN, infinity) is
/// written as `null` instead of failing the whole document.
public enum JSONWriter {
    public static func bytes(_ value: Any) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(4096)
        write(value, to: &out)
        return out
    }

    public static func string(_ value: Any) -> String {
        String(decoding: bytes(value), as: UTF8.self)
    }

    private static func write(_ value: Any, to out: inout [UInt8]) {
        switch value {
        case let string as String: writeString(string, to: &out)
        case let number as Double: writeDouble(number, to: &out)
        case let number as Int: out.append(contentsOf: String(number).utf8)
        case let dictionary as [String: Any]: writeObject(dictionary, to: &out)
        case let array as [Any]:
            out.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let flag as Bool: out.append(contentsOf: (flag ? "true" : "false").utf8)
        case is JSONNull: out.append(contentsOf: "null".utf8)
        case let number as Int32: out.append(contentsOf: String(number).utf8)
        case let number as Int64: out.append(contentsOf: String(number).utf8)
        case let number as UInt64: out.append(contentsOf: String(number).utf8)
        case let number as UInt32: out.append(contentsOf: String(number).utf8)
        case let number as UInt: out.append(contentsOf: String(number).utf8)
        case let number as Float: writeDouble(Double(number), to: &out)
        case let text as Substring: writeString(String(text), to: &out)
        default:
            // An optional inside `Any`: its wrapped value, or null.
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .optional {
                if let wrapped = mirror.children.first?.value { write(wrapped, to: &out) } else { out.append(contentsOf: "null".utf8) }
            } else {
                writeString(String(describing: value), to: &out)
            }
        }
    }

    private static func writeObject(_ dictionary: [String: Any], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        let keys = dictionary.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for (index, key) in keys.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            writeString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            write(dictionary[key]!, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    private static func writeDouble(_ number: Double, to out: inout [UInt8]) {
        guard number.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        // Whole numbers as integers, as JSONSerialization wrote them; others in Swift's shortest
        // round-tripping form ("0.1", "1e-05"), which is valid JSON.
        if number == number.rounded(), Swift.abs(number) < 1e15 {
            out.append(contentsOf: String(Int64(number)).utf8)
        } else {
            out.append(contentsOf: number.description.utf8)
        }
    }

    private static func writeString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                        hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
