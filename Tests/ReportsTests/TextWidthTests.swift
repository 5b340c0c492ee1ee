import Reports
import Testing

@Suite("text width: terminal columns, clipping, padding")
struct TextWidthTests {
    @Test("ASCII, accented, CJK, combining marks and emoji take the right number of columns")
    func columns() {
        #expect(TextWidth.of("abc") == 3)
        #expect(TextWidth.of("ünïcödé") == 7)
        #expect(TextWidth.of("名前") == 4)
        #expect(TextWidth.of("e\u{301}") == 1, "a combining acute accent takes no column")
        #expect(TextWidth.of("🔥") == 2)
        #expect(TextWidth.of("\u{200B}") == 0, "zero-width space")
    }

    @Test("clipping never exceeds the width, even inside wide characters, and marks the cut")
    func clipping() {
        #expect(TextWidth.clip("hello", to: 10) == "hello")
        #expect(TextWidth.clip("hello world", to: 6) == "hello…")
        let cut = TextWidth.clip("ab名前cd", to: 4)
        #expect(TextWidth.of(cut) <= 4 && cut.hasSuffix("…"), "\(cut)")
        for width in 1...12 {
            #expect(TextWidth.of(TextWidth.clip("x = 名前 + ünïcödé 🔥 z", to: width)) <= width)
            #expect(TextWidth.of(TextWidth.fit("名前", width)) == max(width, TextWidth.of(TextWidth.clip("名前", to: width))))
        }
    }

    @Test("tabs are expanded and control characters dropped")
    func printable() {
        #expect(TextWidth.printable("\tx = 1") == "    x = 1")
        #expect(TextWidth.printable("ab\tc") == "ab  c")
        #expect(TextWidth.printable("a\u{1b}[31mb") == "a[31mb")
    }
}
