#if canImport(Glibc)
import Glibc
#endif

extension String {
    /// C's printf formatting (`%.1f`, `%5d`, `%02X`, ...), in the C locale: what Foundation's
    /// `String(format:)` did here, without linking Foundation. Strings go in by concatenation
    /// (a Swift `String` is not a C vararg).
    public init(printf template: String, _ arguments: CVarArg...) {
        var capacity = 128
        while true {
            var buffer = [CChar](repeating: 0, count: capacity)
            let needed = withVaList(arguments) { list in
                template.withCString { vsnprintf(&buffer, capacity, $0, list) }
            }
            if needed < 0 {
                self = template
                return
            }
            if Int(needed) < capacity {
                self = String(decoding: buffer.prefix(Int(needed)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                return
            }
            capacity = Int(needed) + 1
        }
    }
}
