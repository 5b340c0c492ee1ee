import Foundation
import RemoteProcess

/// Looks at a target from outside for traces of the agent: whether its library is mapped, and how
/// many pointers into its code sit in the target's file-backed data (GOT slots, allocator tables).
/// After a detach there must be none.
enum AgentProbe {
    /// The agent is loaded from a memfd ("/memfd:scalene-agent (deleted)" in the maps).
    static func isAgent(_ mapping: MemoryMapping) -> Bool {
        mapping.path.hasPrefix("/memfd:scalene-agent") || mapping.path.hasSuffix("libscalene_agent.so")
    }

    static func agentCode(pid: Int32) -> [Range<UInt64>] {
        guard let map = try? MemoryMap.read(pid: pid) else { return [] }
        return map.mappings.filter { isAgent($0) && $0.executable }.map { $0.start..<$0.end }
    }

    /// Descriptors of the target that refer to a memfd of ours (the library while it loads, the
    /// channel until the agent mapped it): there must be none once the attacher is done.
    static func memfdDescriptors(pid: Int32) -> Int {
        let folder = "/proc/\(pid)/fd"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { name in
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: folder + "/" + name)) ?? ""
            return target.hasPrefix("/memfd:scalene-")
        }.count
    }

    static func isLoaded(pid: Int32) -> Bool { !agentCode(pid: pid).isEmpty }

    /// Pointers into the agent's code found in the target's writable or read-only data of loaded
    /// files (the GOTs and the interpreter's allocator tables live there).
    static func hookPointers(pid: Int32) -> Int {
        let code = agentCode(pid: pid)
        guard !code.isEmpty, let map = try? MemoryMap.read(pid: pid) else { return 0 }
        let memory = RemoteMemory(pid: pid)
        var found = 0
        for mapping in map.mappings where mapping.isFile && mapping.readable && !mapping.executable
            && !isAgent(mapping) && mapping.end - mapping.start <= 64 << 20 {
            guard let bytes = try? memory.bytes(at: mapping.start, count: Int(mapping.end - mapping.start)) else { continue }
            bytes.withUnsafeBytes { raw in
                for offset in stride(from: 0, to: raw.count - 7, by: 8) {
                    let value = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    if code.contains(where: { $0.contains(value) }) { found += 1 }
                }
            }
        }
        return found
    }

    /// Whether the agent's own thread (named "scalene-agent") exists. It ends only after it has
    /// restored every hook, so its disappearance times a detach without scanning memory.
    static func agentThreadRunning(pid: Int32) -> Bool {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.contains { tid in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8)) ?? "").hasPrefix("scalene-agent")
        }
    }

    /// Waits until `condition` holds or `seconds` pass.
    static func wait(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
