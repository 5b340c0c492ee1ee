import Foundation
import Testing
import TextFormatting

@Suite struct PrintfTests {
    @Test func numbersAsCFormatsThem() {
        #expect(String(printf: "%.1f%%", 12.345) == "12.3%")
        #expect(String(printf: "%5d|%-4d|%02X", 42, 7, UInt8(10)) == "   42|7   |0A")
        #expect(String(printf: "%015lld-%d-%06d", Int64(123), Int32(-5), 77) == "000000000000123--5-000077")
        #expect(String(printf: "%.0f", -0.4) == "-0")
    }

    @Test func longOutputIsNotCut() {
        let long = String(printf: "%0300d", 1)
        #expect(long.count == 300)
        #expect(long.hasSuffix("1"))
    }
}

@Suite struct JSONWriterTests {
    /// What Foundation reads back from our bytes.
    func parsed(_ value: Any) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(JSONWriter.bytes(value)), options: [.fragmentsAllowed])
    }

    @Test func treeRoundTripsThroughFoundation() throws {
        let tree: [String: Any] = [
            "b": [1, 2.5, "x", true, JSONNull()] as [Any],
            "a": ["nested": ["deep": -3]],
            "quote\"and\\slash\n": "tab\there \u{1} é ✓",
            "doubles": [Double](arrayLiteral: 0.1, 1e-5, 3.0, 1796219151.6134822, -2.5e20),
            "int32": Int32(-7), "uint64": UInt64.max,
        ]
        let back = try #require(try parsed(tree) as? [String: Any])
        #expect((back["b"] as? [Any])?.count == 5)
        #expect((back["b"] as? [Any])?[4] is NSNull)
        #expect(back["quote\"and\\slash\n"] as? String == "tab\there \u{1} é ✓")
        #expect(((back["a"] as? [String: Any])?["nested"] as? [String: Any])?["deep"] as? Int == -3)
        // Written in the shortest form that reads back exactly (Foundation's own parser rounds the
        // 17th digit, so the text is checked too).
        let doubles = try #require(back["doubles"] as? [Double])
        #expect(zip(doubles, [0.1, 1e-5, 3.0, 1796219151.6134822, -2.5e20]).allSatisfy { Swift.abs($0 - $1) <= Swift.abs($1) * 1e-15 })
        #expect(JSONWriter.string(tree).contains(#""doubles":[0.1,1e-05,3,1796219151.6134822,-2.5e+20]"#))
        #expect(back["int32"] as? Int == -7)
        #expect((back["uint64"] as? NSNumber)?.uint64Value == UInt64.max)
    }

    @Test func keysAreSortedAndBytesRepeat() {
        let text = JSONWriter.string(["zeta": 1, "alpha": 2, "mid": ["b": 1, "a": 2]])
        #expect(text == #"{"alpha":2,"mid":{"a":2,"b":1},"zeta":1}"#)
    }

    @Test func numbersJSONCannotHoldBecomeNull() throws {
        #expect(JSONWriter.string([Double.nan, .infinity, 1.5]) == "[null,null,1.5]")
    }

    @Test func optionalsInsideAny() {
        let none: Int? = nil
        let some: String? = "x"
        #expect(JSONWriter.string(["n": none as Any, "s": some as Any]) == #"{"n":null,"s":"x"}"#)
    }
}
