import TextFormatting

/// Reading `SavedProfile` out of a parsed JSON document. Every value is checked for its type, so any
/// file gives a profile or an `Invalid`, never a trap. The messages name a value by its path, with
/// field names as the Swift properties spell them ("files.app.py.lines.0.lineno",
/// "elapsedTimeSec"), as `JSONDecoder` did before.
struct ProfileNode {
    let value: JSONValue
    let path: [String]

    init(_ value: JSONValue, path: [String] = []) {
        self.value = value
        self.path = path
    }

    /// A member that must be there (null counts as there, and is then of the wrong type).
    func required(_ key: String) throws(SavedProfile.Invalid) -> ProfileNode {
        let members = try object()
        guard let member = members[key] else {
            throw SavedProfile.Invalid(description: "not a Scalene JSON profile: no \"\(Self.text(path + [Self.propertyName(key)]))\"")
        }
        return ProfileNode(member, path: path + [Self.propertyName(key)])
    }

    /// A member that may be missing or null.
    func optional(_ key: String) throws(SavedProfile.Invalid) -> ProfileNode? {
        let members = try object()
        guard let member = members[key], member != .null else { return nil }
        return ProfileNode(member, path: path + [Self.propertyName(key)])
    }

    func object() throws(SavedProfile.Invalid) -> [String: JSONValue] {
        guard case .object(let members) = value else { throw mismatch() }
        return members
    }

    /// An object's members as nodes (a dictionary of the profile: its keys are data, not names).
    func entries() throws(SavedProfile.Invalid) -> [(key: String, node: ProfileNode)] {
        try object().map { ($0.key, ProfileNode($0.value, path: path + [$0.key])) }
    }

    func elements() throws(SavedProfile.Invalid) -> [ProfileNode] {
        guard case .array(let values) = value else { throw mismatch() }
        return values.enumerated().map { ProfileNode($0.element, path: path + [String($0.offset)]) }
    }

    func double() throws(SavedProfile.Invalid) -> Double {
        guard case .number(let number) = value else { throw mismatch() }
        return number
    }

    /// A whole number that fits an `Int`.
    func int() throws(SavedProfile.Invalid) -> Int {
        guard case .number(let number) = value, let whole = Int(exactly: number) else { throw mismatch() }
        return whole
    }

    func string() throws(SavedProfile.Invalid) -> String {
        guard case .string(let text) = value else { throw mismatch() }
        return text
    }

    func bool() throws(SavedProfile.Invalid) -> Bool {
        guard case .bool(let flag) = value else { throw mismatch() }
        return flag
    }

    func mismatch() -> SavedProfile.Invalid {
        SavedProfile.Invalid(description: "not a Scalene JSON profile: unexpected value at \"\(Self.text(path))\"")
    }

    static func text(_ path: [String]) -> String {
        var out = ""
        for (index, part) in path.enumerated() {
            if index > 0 { out += "." }
            out += part
        }
        return out
    }

    /// "elapsed_time_sec" → "elapsedTimeSec" (what `JSONDecoder`'s convertFromSnakeCase matched
    /// the properties with): words after the first capitalised, leading and trailing underscores kept.
    static func propertyName(_ key: String) -> String {
        let bytes = Array(key.utf8)
        guard let first = bytes.firstIndex(where: { $0 != UInt8(ascii: "_") }) else { return key }
        let last = bytes.lastIndex(where: { $0 != UInt8(ascii: "_") })!
        var out = Array(bytes[..<first])
        var upperNext = false
        for byte in bytes[first...last] {
            if byte == UInt8(ascii: "_") {
                upperNext = true
                continue
            }
            if upperNext, byte >= UInt8(ascii: "a"), byte <= UInt8(ascii: "z") {
                out.append(byte - 32)
            } else {
                out.append(byte)
            }
            upperNext = false
        }
        out += bytes[(last + 1)...]
        return String(decoding: out, as: UTF8.self)
    }
}

/// Optional members: missing or null is nil, anything else must have the type.
extension ProfileNode {
    func optionalDouble(_ key: String) throws(SavedProfile.Invalid) -> Double? { try optional(key)?.double() }
    func optionalInt(_ key: String) throws(SavedProfile.Invalid) -> Int? { try optional(key)?.int() }
    func optionalString(_ key: String) throws(SavedProfile.Invalid) -> String? { try optional(key)?.string() }
    func optionalBool(_ key: String) throws(SavedProfile.Invalid) -> Bool? { try optional(key)?.bool() }

    func optionalStrings(_ key: String) throws(SavedProfile.Invalid) -> [String]? {
        guard let node = try optional(key) else { return nil }
        var result = [String]()
        for element in try node.elements() { result.append(try element.string()) }
        return result
    }

    func doubles() throws(SavedProfile.Invalid) -> [Double] {
        var result = [Double]()
        for element in try elements() { result.append(try element.double()) }
        return result
    }
}
