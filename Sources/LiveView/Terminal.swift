import CTerminal
#if canImport(Glibc)
import Glibc
#endif

/// The terminal the live view draws on: stdin for keys, stdout for the screen.
///
/// All terminal handling of the project is here and in CTerminal: mode changes (key-at-a-time,
/// no echo), the alternate screen, window size, reading keys without blocking, and restoring
/// everything on the way out, including from fatal signals (see CTerminal.h).
public enum Terminal {
    /// Alternate screen, cursor hidden, line wrap off.
    static let enterSequence = "\u{1b}[?1049h\u{1b}[?25l\u{1b}[?7l\u{1b}[H\u{1b}[2J"
    /// The reverse: wrap on, cursor shown, normal screen back (with what was on it).
    static let leaveSequence = "\u{1b}[?7h\u{1b}[?25h\u{1b}[?1049l"

    public struct Size: Sendable, Equatable {
        public var rows: Int
        public var columns: Int

        public init(rows: Int, columns: Int) {
            self.rows = rows
            self.columns = columns
        }
    }

    /// Why the view cannot start.
    public enum Failure: Error, Equatable {
        case notATerminal
        case modeChange(errno: Int32)
    }

    /// Whether both stdin and stdout are terminals (the view reads keys and draws).
    public static var isInteractive: Bool { isatty(0) == 1 && isatty(1) == 1 }

    /// The window size of the terminal on `fd` (nil when it is not a terminal).
    public static func size(fd: Int32 = 1) -> Size? {
        var rows: Int32 = 0
        var columns: Int32 = 0
        guard scalene_terminal_size(fd, &rows, &columns) == 0 else { return nil }
        return Size(rows: Int(rows), columns: Int(columns))
    }

    /// Takes over the terminal. Pair with `leave()` (a `defer` right after), which also runs by
    /// itself before a fatal signal.
    public static func enter() throws(Failure) {
        guard isInteractive else { throw .notATerminal }
        guard scalene_terminal_enter(1, enterSequence, leaveSequence) == 0 else { throw .modeChange(errno: errno) }
        scalene_terminal_watch_resize()
    }

    /// Gives the terminal back as it was. Safe to call more than once.
    public static func leave() {
        scalene_terminal_leave()
    }

    /// Whether the window was resized since the last call.
    public static func takeResize() -> Bool { scalene_terminal_take_resize() != 0 }

    /// The keys typed since the last call (never blocks: the mode has VMIN = VTIME = 0).
    public static func readKeys() -> [Key] {
        var bytes = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let count = read(0, &buffer, buffer.count)
            if count <= 0 { break }
            bytes += buffer[0..<count]
            if count < buffer.count { break }
        }
        return Key.parse(bytes)
    }

    /// Draws a frame: each line over the previous frame's, the rest of the screen cleared.
    public static func draw(_ lines: [String]) {
        var text = "\u{1b}[H"
        for (index, line) in lines.enumerated() {
            text += line + "\u{1b}[K"
            if index < lines.count - 1 { text += "\r\n" }
        }
        text += "\u{1b}[J"
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}

/// A key press, decoded from the bytes a terminal sends.
public enum Key: Sendable, Equatable {
    case character(Character)
    case up, down, pageUp, pageDown, home, end
    case escape
    case enter

    /// Decodes a burst of input: printable characters, Enter, Escape and the common cursor-key
    /// sequences (`ESC [ A` and friends). Unknown sequences are dropped whole.
    public static func parse(_ bytes: [UInt8]) -> [Key] {
        var keys = [Key]()
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x1b {
                if index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "[") || bytes[index + 1] == UInt8(ascii: "O") {
                    // CSI: parameters, then a final byte in 0x40...0x7E.
                    var end = index + 2
                    while end < bytes.count, !(0x40...0x7E).contains(bytes[end]) { end += 1 }
                    guard end < bytes.count else { break }
                    let parameters = String(decoding: bytes[(index + 2)..<end], as: UTF8.self)
                    switch (bytes[end], parameters) {
                    case (UInt8(ascii: "A"), _): keys.append(.up)
                    case (UInt8(ascii: "B"), _): keys.append(.down)
                    case (UInt8(ascii: "H"), _): keys.append(.home)
                    case (UInt8(ascii: "F"), _): keys.append(.end)
                    case (UInt8(ascii: "~"), "5"): keys.append(.pageUp)
                    case (UInt8(ascii: "~"), "6"): keys.append(.pageDown)
                    default: break
                    }
                    index = end + 1
                    continue
                }
                keys.append(.escape)
                index += 1
                continue
            }
            if byte == 0x0d || byte == 0x0a {
                keys.append(.enter)
                index += 1
                continue
            }
            if byte < 0x20 || byte == 0x7f {
                index += 1
                continue
            }
            // One UTF-8 character.
            let length = byte < 0x80 ? 1 : byte < 0xE0 ? 2 : byte < 0xF0 ? 3 : 4
            let end = min(bytes.count, index + length)
            if let character = String(decoding: bytes[index..<end], as: UTF8.self).first { keys.append(.character(character)) }
            index = end
        }
        return keys
    }
}
