import CAgentProtocol
import CScaleneSys
#if canImport(Glibc)
import Glibc
#endif

/// One sample from the agent, copied out of the ring.
public struct AgentSample: Sendable {
    /// Protocol 3: allocations and copies are sampled per call (see the protocol header); a tracked
    /// allocation is followed until it is freed.
    public enum Kind: UInt32, Sendable {
        case malloc = 1, copy = 3, sampledFree = 4, sampledMove = 5
    }

    public enum Origin: UInt32, Sendable {
        case none = 0, python = 1, native = 2
    }

    public var kind: Kind
    public var tid: Int32
    public var timestamp: UInt64
    /// The sampled call's own size (a realloc: its growth); a SAMPLED_FREE: the freed block's size.
    public var bytes: UInt64
    /// The bytes the sample stands for (an unbiased estimate: its expectation is the call's size).
    public var weight: UInt64
    public var pointer: UInt64
    /// SAMPLED_MOVE: the block's new address.
    public var movedTo: UInt64
    public var origin: Origin
    /// SCALENE_SAMPLE_* bits.
    public var flags: UInt32
    /// Innermost first, as (code object, raw instruction field).
    public var frames: [(code: UInt64, instruction: UInt64)]
}

/// The footprint the agent publishes: malloc's bytes in use plus pymalloc's arenas (figures of the
/// target's own allocators, read by the agent's thread, with the hooks' counts in between).
public struct AgentFootprint: Sendable, Equatable {
    public var bytes: UInt64
    public var peakBytes: UInt64
    /// CLOCK_MONOTONIC of `bytes`.
    public var timestamp: UInt64
    /// Absolute readings of the allocator so far (0: none yet).
    public var readings: UInt64
    public var pythonArenaBytes: UInt64
}

/// The shared-memory channel between us and the agent: the protocol header and a ring of samples,
/// in a memfd that the target itself created (so it exists in the target's world whatever its
/// mount namespace, /dev/shm or user namespace) and that we map through /proc/PID/fd. We fill in
/// the configuration, beat the heartbeat, read samples and ask the agent to detach. It lives as
/// long as one of us keeps it mapped: nothing is ever left in a filesystem.
public final class Channel {
    /// Where we opened it: /proc/PID/fd/N.
    public let path: String
    private let base: UnsafeMutableRawPointer
    private let size: Int
    private var header: UnsafeMutablePointer<scalene_channel> { base.assumingMemoryBound(to: scalene_channel.self) }
    private var ring: SampleRing
    /// Samples skipped because their slot was reserved but never completed.
    public var abandonedSlots: Int { ring.abandonedSlots }

    /// Opens the memfd that descriptor `targetFD` of process `targetPID` refers to, sizes it for
    /// `capacity` records (a power of two) and writes the header and `config`.
    public init(targetPID: Int32, targetFD: Int32, capacity: Int = 8192, config: scalene_agent_config) throws(InjectError) {
        path = "/proc/\(targetPID)/fd/\(targetFD)"
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "capacity must be a power of two")
        let headerSize = MemoryLayout<scalene_channel>.size
        let recordSize = MemoryLayout<scalene_sample>.size
        size = SampleRing.mappingSize(capacity: capacity)
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            throw .channel(detail: "cannot open the channel the target created (\(path)): \(String(cString: strerror(errno))) "
                           + "(refused on our side)")
        }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0,
              let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw .channel(detail: "cannot size and map the channel \(path): \(String(cString: strerror(errno)))")
        }
        base = mapped
        ring = SampleRing(base: mapped, capacity: capacity)
        memset(base, 0, headerSize)
        header.pointee.magic = SCALENE_CHANNEL_MAGIC
        header.pointee.protocol_version = SCALENE_PROTOCOL_VERSION
        header.pointee.header_size = UInt32(headerSize)
        header.pointee.record_size = UInt32(recordSize)
        header.pointee.capacity = UInt32(capacity)
        header.pointee.config = config
        beat()
    }

    deinit {
        munmap(base, size)
    }

    /// Tells the agent we are alive. It disarms itself if this stops.
    public func beat() {
        scalene_store_u64(&header.pointee.heartbeat_ns, scalene_monotonic_ns())
    }

    public func requestDetach() {
        scalene_store_u32(&header.pointee.command, UInt32(SCALENE_COMMAND_DETACH.rawValue))
    }

    public var state: scalene_agent_state { scalene_agent_state(rawValue: scalene_load_u32(&header.pointee.state)) }

    public var message: String {
        withUnsafeBytes(of: header.pointee.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    public var agentThread: Int32 { Int32(truncatingIfNeeded: scalene_load_u64(&header.pointee.agent_tid)) }
    public var dropped: UInt64 { scalene_load_u64(&header.pointee.dropped) }
    public var hookedSlots: UInt64 { scalene_load_u64(&header.pointee.hooked_slots) }
    public var hookedObjects: UInt64 { scalene_load_u64(&header.pointee.hooked_objects) }
    public var pythonHooks: Bool { scalene_load_u64(&header.pointee.python_hooks) != 0 }
    /// Python-allocator reallocs whose old size was unknown (counted as allocations of the new size).
    public var unsizedReallocs: UInt64 { scalene_load_u64(&header.pointee.unsized_reallocs) }
    /// Sampled allocations the agent could not track (its sampled-pointer table was full).
    public var untrackedAllocations: UInt64 { scalene_load_u64(&header.pointee.leak_table_full) }
    /// Small-object pools the agent could not track (its pool table was full).
    public var untrackedPools: UInt64 { scalene_load_u64(&header.pointee.pool_table_full) }
    /// CLOCK_MONOTONIC when the agent first saw the interpreter finalizing; nil before.
    public var finalizingSince: UInt64? {
        let value = scalene_load_u64(&header.pointee.finalizing_ns)
        return value == 0 ? nil : value
    }

    /// What the process holds as its allocators account for it, as the agent last published it; nil
    /// before its first reading (or if a consistent copy cannot be had: the agent is writing, retried).
    public var footprint: AgentFootprint? {
        for _ in 0..<100 {
            let before = scalene_load_u64(&header.pointee.footprint_sequence)
            if before & 1 != 0 { continue }
            let reading = AgentFootprint(bytes: scalene_load_u64(&header.pointee.footprint_bytes),
                                         peakBytes: scalene_load_u64(&header.pointee.footprint_peak_bytes),
                                         timestamp: scalene_load_u64(&header.pointee.footprint_ns),
                                         readings: scalene_load_u64(&header.pointee.footprint_readings),
                                         pythonArenaBytes: scalene_load_u64(&header.pointee.python_arena_bytes))
            guard scalene_load_u64(&header.pointee.footprint_sequence) == before else { continue }
            return reading.readings > 0 ? reading : nil
        }
        return nil
    }

    /// Copies out every completed sample, in order, and frees their slots.
    public func drain(into samples: inout [AgentSample]) {
        ring.drain(into: &samples, now: scalene_monotonic_ns())
    }
}

/// The reading side of the sample ring: the records after the channel header, written by the
/// agent inside the target and read here.
///
/// Everything in the mapping can be written by the target, so nothing read from it is trusted: the
/// record size and the header size are our own, a record's slot is its index modulo our capacity,
/// its frame count is clamped, and an index the agent never completes is skipped after a second.
public struct SampleRing {
    let base: UnsafeMutableRawPointer
    let capacity: UInt64
    private var stalledSince: (index: UInt64, time: UInt64)?
    /// Samples skipped because their slot was reserved but never completed.
    public private(set) var abandonedSlots = 0

    /// Bytes of a channel with `capacity` records.
    public static func mappingSize(capacity: Int) -> Int {
        MemoryLayout<scalene_channel>.size + capacity * MemoryLayout<scalene_sample>.size
    }

    /// - Parameters:
    ///   - base: the start of the channel mapping, `mappingSize(capacity:)` bytes.
    ///   - capacity: a power of two.
    public init(base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = UInt64(capacity)
    }

    private var header: UnsafeMutablePointer<scalene_channel> { base.assumingMemoryBound(to: scalene_channel.self) }

    /// Copies out every completed sample, in order, and frees their slots. `now` is the monotonic
    /// clock in nanoseconds.
    public mutating func drain(into samples: inout [AgentSample], now: UInt64) {
        let written = scalene_load_u64(&header.pointee.write_index)
        var index = scalene_load_u64(&header.pointee.read_index)
        // Our own sizes, never the header's: a size read back from the mapping could point our
        // reads outside it.
        let recordSize = MemoryLayout<scalene_sample>.size
        let recordsBase = base + MemoryLayout<scalene_channel>.size
        // A writer can be at most a ring ahead of us; anything else is a corrupt index.
        if written &- index > capacity { index = written &- capacity }
        while index < written {
            let record = (recordsBase + Int(index & (capacity - 1)) * recordSize).assumingMemoryBound(to: scalene_sample.self)
            let sequence = scalene_load_u64(&record.pointee.sequence)
            if sequence != index &+ 1 {
                // Reserved but not complete yet. A writer that never completes (killed mid-write)
                // must not block the ring forever: give it a second.
                if let stalled = stalledSince, stalled.index == index {
                    if now &- stalled.time < 1_000_000_000 { break }
                    abandonedSlots += 1
                    stalledSince = nil
                    index += 1
                    scalene_store_u64(&header.pointee.read_index, index)
                    continue
                }
                stalledSince = (index, now)
                break
            }
            stalledSince = nil
            if let sample = Self.copy(record) { samples.append(sample) }
            index += 1
            scalene_store_u64(&header.pointee.read_index, index)
        }
    }

    static func copy(_ record: UnsafeMutablePointer<scalene_sample>) -> AgentSample? {
        let raw = record.pointee
        guard let kind = AgentSample.Kind(rawValue: raw.kind) else { return nil }
        let count = min(Int(raw.frame_count), Int(SCALENE_MAX_FRAMES))
        var frames = [(code: UInt64, instruction: UInt64)]()
        frames.reserveCapacity(count)
        withUnsafeBytes(of: raw.frames) { bytes in
            let typed = bytes.bindMemory(to: scalene_raw_frame.self)
            for index in 0..<count { frames.append((typed[index].code, typed[index].instr)) }
        }
        return AgentSample(kind: kind, tid: Int32(bitPattern: raw.tid), timestamp: raw.timestamp_ns, bytes: raw.bytes,
                           weight: raw.weight, pointer: raw.pointer, movedTo: raw.moved_to,
                           origin: AgentSample.Origin(rawValue: raw.origin) ?? .none, flags: raw.flags, frames: frames)
    }
}
