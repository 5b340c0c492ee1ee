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
        self.init(parsing: Array(text.utf8))
    }

    /// Parses the bytes of /proc/PID/maps (without going through String: the sampler and every
    /// command read it).
    public init(parsing bytes: [UInt8]) {
        var result = [MemoryMapping]()
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 10 { end += 1 }
            if end > start, let mapping = Self.parse(bytes[start..<end]) { result.append(mapping) }
            start = end + 1
        }
        mappings = result
    }

    /// Reads /proc/PID/maps.
    public static func read(pid: Int32) throws(ProcFileError) -> MemoryMap {
        MemoryMap(parsing: try ProcFiles.read("/proc/\(pid)/maps"))
    }

    public func mapping(containing address: UInt64) -> MemoryMapping? {
        mappings.first { $0.contains(address) }
    }

    /// Every mapping of the file at `path`.
    public func mappings(of path: String) -> [MemoryMapping] {
        mappings.filter { $0.path == path }
    }

    /// One line: "start-end perms offset dev inode [path]"; the path may contain spaces.
    static func parse(_ line: ArraySlice<UInt8>) -> MemoryMapping? {
        var index = line.startIndex
        func skipSpaces() { while index < line.endIndex && line[index] == 32 { index += 1 } }
        func field() -> ArraySlice<UInt8> {
            skipSpaces()
            let begin = index
            while index < line.endIndex && line[index] != 32 { index += 1 }
            return line[begin..<index]
        }
        func hex(_ digits: ArraySlice<UInt8>) -> UInt64? {
            guard !digits.isEmpty, digits.count <= 16 else { return nil }
            var value: UInt64 = 0
            for digit in digits {
                let nibble: UInt8
                switch digit {
                case 48...57: nibble = digit - 48
                case 97...102: nibble = digit - 87
                case 65...70: nibble = digit - 55
                default: return nil
                }
                value = value << 4 | UInt64(nibble)
            }
            return value
        }
        let range = field()
        let perms = field()
        let offsetField = field()
        _ = field() // device
        let inodeField = field()
        guard let dash = range.firstIndex(of: 45), let start = hex(range[range.startIndex..<dash]),
              let end = hex(range[(dash + 1)...]), let offset = hex(offsetField),
              let inode = UInt64(decimal: inodeField), perms.count >= 3 else { return nil }
        skipSpaces()
        let path = String(decoding: line[index...], as: UTF8.self)
        let p = perms.startIndex
        return MemoryMapping(start: start, end: end, readable: perms[p] == UInt8(ascii: "r"),
                             writable: perms[p + 1] == UInt8(ascii: "w"), executable: perms[p + 2] == UInt8(ascii: "x"),
                             offset: offset, inode: inode, path: path)
    }
}
