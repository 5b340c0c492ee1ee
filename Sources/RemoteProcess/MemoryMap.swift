/// One line of /proc/PID/maps.
public struct MemoryMapping: Sendable, Equatable {
    public var start: UInt64
    public var end: UInt64
    public var readable: Bool
    public var writable: Bool
    public var executable: Bool
    /// File offset of `start`.
    public var offset: UInt64
    public var inode: UInt64
    /// Path of the mapped file, a pseudo name such as "[heap]", or "" for anonymous memory.
    public var path: String

    public init(start: UInt64, end: UInt64, readable: Bool, writable: Bool, executable: Bool, offset: UInt64,
                inode: UInt64, path: String) {
        self.start = start
        self.end = end
        self.readable = readable
        self.writable = writable
        self.executable = executable
        self.offset = offset
        self.inode = inode
        self.path = path
    }

    public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    /// The file name without directories.
    public var fileName: String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// Whether the mapping is backed by a file (and not deleted since).
    public var isFile: Bool { path.hasPrefix("/") && !path.hasSuffix(" (deleted)") }
}

/// The memory map of a process.
public struct MemoryMap: Sendable {
    public var mappings: [MemoryMapping]

    public init(mappings: [MemoryMapping]) {
        self.mappings = mappings
    }

    /// Parses the text of /proc/PID/maps. Malformed lines are skipped.
    public init(parsing text: String) {
        var result = [MemoryMapping]()
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if let mapping = Self.parse(line) { result.append(mapping) }
        }
        mappings = result
    }

    /// Reads /proc/PID/maps.
    public static func read(pid: Int32) throws(ProcFileError) -> MemoryMap {
        MemoryMap(parsing: try ProcFiles.text("/proc/\(pid)/maps"))
    }

    public func mapping(containing address: UInt64) -> MemoryMapping? {
        mappings.first { $0.contains(address) }
    }

    /// Every mapping of the file at `path`.
    public func mappings(of path: String) -> [MemoryMapping] {
        mappings.filter { $0.path == path }
    }

    static func parse(_ line: Substring) -> MemoryMapping? {
        // address perms offset dev inode [path]; the path may contain spaces.
        var fields = [Substring]()
        var rest = line[...]
        for _ in 0..<5 {
            rest = rest.drop { $0 == " " }
            guard let space = rest.firstIndex(of: " ") else {
                fields.append(rest)
                rest = rest[rest.endIndex...]
                break
            }
            fields.append(rest[..<space])
            rest = rest[space...]
        }
        guard fields.count == 5 else { return nil }
        let range = fields[0].split(separator: "-")
        guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16),
              let offset = UInt64(fields[2], radix: 16), let inode = UInt64(fields[4]) else { return nil }
        let perms = Array(fields[1].utf8)
        guard perms.count >= 3 else { return nil }
        let path = String(rest.drop { $0 == " " })
        return MemoryMapping(start: start, end: end, readable: perms[0] == UInt8(ascii: "r"),
                             writable: perms[1] == UInt8(ascii: "w"), executable: perms[2] == UInt8(ascii: "x"),
                             offset: offset, inode: inode, path: path)
    }
}
