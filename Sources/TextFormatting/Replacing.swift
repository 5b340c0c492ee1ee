extension String {
    /// Every occurrence of `target` replaced by `replacement`, left to right and not overlapping,
    /// compared as UTF-8 bytes. The standard library's `replacing(_:with:)` lives in
    /// _StringProcessing, which links the regex engine with it; escaping `<` or `&` needs none.
    public func replacingAll(_ target: String, with replacement: String) -> String {
        let source = Array(utf8), pattern = Array(target.utf8)
        guard !pattern.isEmpty, source.count >= pattern.count else { return self }
        var out = [UInt8]()
        out.reserveCapacity(source.count)
        var index = 0
        while index < source.count {
            if source[index] == pattern[0], index + pattern.count <= source.count,
               source[index..<(index + pattern.count)].elementsEqual(pattern) {
                out.append(contentsOf: replacement.utf8)
                index += pattern.count
            } else {
                out.append(source[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `part` occurs in the string, compared as UTF-8 bytes (the standard library's
    /// `contains(_: some StringProtocol)` is _StringProcessing's).
    public func containsBytes(of part: String) -> Bool {
        Array(utf8).contains(sequence: Array(part.utf8))
    }
}

extension Array where Element == UInt8 {
    /// Whether `pattern` occurs in these bytes (an empty pattern does).
    public func contains(sequence pattern: [UInt8]) -> Bool {
        guard let first = pattern.first else { return true }
        guard count >= pattern.count else { return false }
        for start in 0...(count - pattern.count) where self[start] == first {
            if self[start..<(start + pattern.count)].elementsEqual(pattern) { return true }
        }
        return false
    }
}
