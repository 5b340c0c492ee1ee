/// Checked arithmetic for integers that come from another process.
///
/// A pointer, size, count or length read from a running target can hold any value: torn reads,
/// freed and reused memory and plain corruption are normal. Swift traps on overflow and on a
/// conversion that does not fit, so every place that turns such a value into an address, an index,
/// a count or an allocation size goes through these helpers, which answer nil instead. A reviewer
/// can then check a reader by looking for raw `Int(…)`, `+`, `*` and `subrange` on remote values:
/// there should be none outside this file.
public enum RemoteArithmetic {
    /// `raw` as a count in `0...limit`: a length, a number of entries, a size in bytes.
    @inline(__always)
    public static func count<T: BinaryInteger>(_ raw: T, atMost limit: Int) -> Int? {
        guard raw >= 0, let value = Int(exactly: raw), value <= limit else { return nil }
        return value
    }

    /// `a × b` for two counts, if it is at most `limit`.
    @inline(__always)
    public static func product(_ a: Int, _ b: Int, atMost limit: Int) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow, value <= limit else { return nil }
        return value
    }

    /// `a + b` for two line numbers, deltas or counts; nil when it does not fit.
    @inline(__always)
    public static func sum(_ a: Int, _ b: Int) -> Int? {
        let (value, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : value
    }

    /// The end of the range `[start, start + count)`, nil when it would pass the top of the 64-bit
    /// address space (a pointer read while it changed can be close to 2^64).
    @inline(__always)
    public static func end(of start: UInt64, count: Int) -> UInt64? {
        guard count >= 0 else { return nil }
        let (value, overflow) = start.addingReportingOverflow(UInt64(count))
        return overflow ? nil : value
    }

    /// Where `[address, address + length)` starts inside `[start, start + count)`, as a byte offset;
    /// nil when it does not lie entirely inside (or either range wraps).
    @inline(__always)
    public static func offset(of address: UInt64, length: Int, inRangeAt start: UInt64, count: Int) -> Int? {
        guard address >= start, let last = end(of: address, count: length),
              let rangeEnd = end(of: start, count: count), last <= rangeEnd else { return nil }
        // Bounded by `count`, so it fits an Int.
        return Int(address - start)
    }
}

extension UInt64 {
    /// The address of a field `offset` bytes from this (remote) address. Field offsets come from
    /// the layout tables and may be negative (CPython keeps some fields before the object header);
    /// the address itself may be garbage, so the sum wraps rather than traps: a wrapped address is
    /// simply one that fails to read.
    @inline(__always)
    public func field(_ offset: Int) -> UInt64 {
        self &+ UInt64(bitPattern: Int64(offset))
    }
}
