import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// Source text of profiled files, read on demand and cached. Files are looked up as the target saw
/// them (through /proc/PID/root, for containers) and then directly.
public final class SourceFiles {
    private let rootPrefix: String?
    private var cache: [String: [String]] = [:]

    /// - Parameter pid: the target, while it exists (its root may differ from ours).
    public init(pid: Int32?) {
        rootPrefix = pid.map { "/proc/\($0)/root" }
    }

    /// The lines of `path` (1-based access via `line(_:in:)`), empty if unreadable.
    public func lines(of path: String) -> [String] {
        if let cached = cache[path] { return cached }
        var text: String?
        if let rootPrefix, path.hasPrefix("/") {
            text = FileSystem.readText(rootPrefix + path)
        }
        if text == nil { text = FileSystem.readText(path) }
        var lines = text.map { $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) } ?? []
        if lines.last == "" { lines.removeLast() }
        cache[path] = lines
        return lines
    }

    /// The lines a report walks for one file: every line of its source, plus any line with data
    /// beyond it (source changed on disk, or not readable). Never a range up to the largest line
    /// number seen: a garbage number from a torn read must not become millions of rows.
    public static func lineNumbers(sourceCount: Int, withData numbers: Set<Int>) -> [Int] {
        let last = max(1, sourceCount)
        return Array(1...last) + numbers.filter { $0 > last }.sorted()
    }

    /// One line's text, or "" when unknown.
    public func line(_ number: Int, in path: String) -> String {
        let all = lines(of: path)
        return number >= 1 && number <= all.count ? all[number - 1] : ""
    }
}

/// Enclosing blocks of each line, found from indentation: the innermost loop or function (the
/// region), the outermost loop, and the function. Scalene's viewer uses them to fold code.
public struct SourceRegions: Sendable {
    public struct Span: Sendable, Equatable {
        public var start: Int
        public var end: Int
    }

    public var region: [Span]
    public var outermostLoop: [Span]
    public var function: [Span]

    public init(lines: [String]) {
        struct Block {
            var indent: Int
            var start: Int
            var end: Int
            var isLoop: Bool
            var isFunction: Bool
        }
        var blocks = [Block]()
        var open = [Int]() // indices into blocks
        var enclosing = [[Int]](repeating: [], count: lines.count + 1)
        for (index, text) in lines.enumerated() {
            let number = index + 1
            let trimmed = text.drop { $0 == " " || $0 == "\t" }
            let indent = text.count - trimmed.count
            let isBlank = trimmed.isEmpty || trimmed.hasPrefix("#")
            if !isBlank {
                while let last = open.last, indent <= blocks[last].indent { open.removeLast() }
            }
            for block in open { blocks[block].end = number }
            enclosing[number] = open
            guard !isBlank else { continue }
            let code = trimmed.split(separator: "#", maxSplits: 1).first.map(String.init) ?? String(trimmed)
            let words = ["def ", "async def ", "class ", "for ", "async for ", "while "]
            if let word = words.first(where: { code.hasPrefix($0) }),
               code.trimmingWhitespace().hasSuffix(":") {
                blocks.append(Block(indent: indent, start: number, end: number,
                                    isLoop: word.containsBytes(of: "for") || word.containsBytes(of: "while"),
                                    isFunction: word.containsBytes(of: "def")))
                open.append(blocks.count - 1)
                enclosing[number] = open
            }
        }
        region = [Span(start: 0, end: 0)]
        outermostLoop = [Span(start: 0, end: 0)]
        function = [Span(start: 0, end: 0)]
        for number in 1..<max(1, enclosing.count) {
            let chain = enclosing[number].map { blocks[$0] }
            let inner = chain.last { $0.isLoop || $0.isFunction }
            region.append(inner.map { Span(start: $0.start, end: $0.end) } ?? Span(start: number, end: number))
            let loop = chain.first { $0.isLoop }
            outermostLoop.append(loop.map { Span(start: $0.start, end: $0.end) } ?? Span(start: number, end: number))
            let fn = chain.last { $0.isFunction }
            function.append(fn.map { Span(start: $0.start, end: $0.end) } ?? Span(start: 0, end: 0))
        }
    }

    func span(_ list: [Span], _ line: Int, fallback: Span) -> Span {
        line >= 1 && line < list.count ? list[line] : fallback
    }

    public func region(of line: Int) -> Span { span(region, line, fallback: Span(start: line, end: line)) }
    public func outermostLoop(of line: Int) -> Span { span(outermostLoop, line, fallback: Span(start: line, end: line)) }
    public func function(of line: Int) -> Span { span(function, line, fallback: Span(start: 0, end: 0)) }
}
