#if canImport(Glibc)
import Glibc
#endif

/// The path arithmetic NSString did (`deletingLastPathComponent`, `appendingPathComponent`).
public enum Path {
    /// The folder part: "/a/b/c" → "/a/b", "/a" → "/", "name" → "".
    public static func directory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "" }
        if slash == trimmed.startIndex { return "/" }
        var folder = trimmed[..<slash]
        while folder.count > 1 && folder.hasSuffix("/") { folder = folder.dropLast() }
        return String(folder)
    }

    /// `name` inside `folder`, with one slash between them.
    public static func join(_ folder: String, _ name: String) -> String {
        if folder.isEmpty { return name }
        return folder.hasSuffix("/") ? folder + name : folder + "/" + name
    }

    /// `path` made absolute against the current folder and normalised as a file URL's path was
    /// (`URL(fileURLWithPath:).standardized`): "." and empty components dropped, ".." taking one
    /// away, no trailing slash. Lexical only: symbolic links are not resolved.
    public static func absolute(_ path: String) -> String {
        var full = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let folder = buffer.withUnsafeMutableBufferPointer { pointer in
                getcwd(pointer.baseAddress, pointer.count).map { String(cString: $0) }
            } ?? "/"
            full = join(folder, path)
        }
        var parts = [Substring]()
        for part in full.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The last component: "/a/b.json" → "b.json", "/a/b/" → "b", "/" → "".
    public static func lastComponent(of path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? ""
    }
}
