/// How many terminal columns text takes, and clipping or padding to a number of columns.
///
/// Counting `Character`s is wrong for a terminal: CJK and fullwidth characters (and most emoji)
/// take two columns, combining marks and format characters none. Source lines and file names are
/// arbitrary Unicode (a fixture is named `ünïcödé_名前.py`), so every report that aligns columns
/// measures with this.
public enum TextWidth {
    /// Columns one character takes: its first scalar decides; the rest of a grapheme cluster
    /// (combining marks, variation selectors) takes none.
    public static func columns(_ character: Character) -> Int {
        guard let scalar = character.unicodeScalars.first else { return 0 }
        return columns(scalar)
    }

    static func columns(_ scalar: Unicode.Scalar) -> Int {
        let value = scalar.value
        if value < 0x20 || (value >= 0x7F && value < 0xA0) { return 0 }
        if value < 0x300 { return 1 }
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .enclosingMark, .format: return 0
        default: break
        }
        return isWide(value) ? 2 : 1
    }

    /// East Asian Wide and Fullwidth blocks, and the emoji blocks terminals draw two columns wide.
    static func isWide(_ value: UInt32) -> Bool {
        switch value {
        case 0x1100...0x115F, 0x231A...0x231B, 0x2329...0x232A, 0x23E9...0x23EC, 0x2E80...0x303E,
             0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF, 0xA960...0xA97F,
             0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE10...0xFE19, 0xFE30...0xFE6F, 0xFF00...0xFF60,
             0xFFE0...0xFFE6, 0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x1FA70...0x1FAFF, 0x20000...0x3FFFD:
            return true
        default:
            return false
        }
    }

    /// Columns `text` takes.
    public static func of(_ text: String) -> Int {
        text.reduce(0) { $0 + columns($1) }
    }

    /// Text a terminal shows as written: tabs expanded (to the next multiple of 4, as editors show
    /// Python), other control characters dropped.
    public static func printable(_ text: String) -> String {
        guard text.contains(where: { $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } ?? false }) else { return text }
        var out = ""
        var column = 0
        for character in text {
            if character == "\t" {
                let spaces = 4 - column % 4
                out += String(repeating: " ", count: spaces)
                column += spaces
            } else if let ascii = character.asciiValue, ascii < 0x20 || ascii == 0x7F {
                continue
            } else {
                out.append(character)
                column += columns(character)
            }
        }
        return out
    }

    /// At most `width` columns of `text`; cut text ends with "…".
    public static func clip(_ text: String, to width: Int) -> String {
        guard width > 0 else { return "" }
        if of(text) <= width { return text }
        var out = ""
        var used = 0
        for character in text {
            let next = columns(character)
            if used + next > width - 1 { break }
            out.append(character)
            used += next
        }
        return out + "…"
    }

    /// `text` right-aligned in `width` columns (not cut).
    public static func padLeft(_ text: String, _ width: Int) -> String {
        let used = of(text)
        return used >= width ? text : String(repeating: " ", count: width - used) + text
    }

    /// `text` left-aligned in `width` columns (not cut).
    public static func padRight(_ text: String, _ width: Int) -> String {
        let used = of(text)
        return used >= width ? text : text + String(repeating: " ", count: width - used)
    }

    /// Exactly `width` columns: clipped, then padded on the right.
    public static func fit(_ text: String, _ width: Int) -> String {
        padRight(clip(text, to: width), width)
    }
}
