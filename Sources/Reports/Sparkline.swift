/// Unicode sparklines for memory timelines, as Scalene draws them.
public enum Sparkline {
    static let bars: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// At most `width` bars for `values`, scaled from 0 to `maximum` (or the largest value).
    public static func render(_ values: [Double], width: Int, maximum: Double? = nil) -> String {
        guard !values.isEmpty, width > 0 else { return "" }
        let top = maximum ?? values.max() ?? 0
        guard top > 0 else { return String(repeating: bars[0], count: min(width, values.count)) }
        var points = values
        if points.count > width {
            // Keep the peak of each bucket so spikes stay visible.
            points = (0..<width).map { bucket in
                let start = bucket * values.count / width
                let end = max(start + 1, (bucket + 1) * values.count / width)
                return values[start..<end].max() ?? 0
            }
        }
        return String(points.map { value in
            let level = Int((max(0, value) / top * Double(bars.count - 1)).rounded())
            return bars[min(bars.count - 1, max(0, level))]
        })
    }
}
