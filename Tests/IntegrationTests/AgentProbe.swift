import Foundation
import RemoteProcess

/// Looks at a target from outside for traces of the agent: whether its library is mapped, and how
/// many pointers into its code sit in the target's file-backed data (GOT slots, allocator tables).
/// After a detach there must be none.
enum AgentProbe {
    static func agentCode(pid: Int32) -> [Range<UInt64>] {
        guard let map = try? MemoryMap.read(pid: pid) else { return [] }
        return map.mappings.filter { $0.path.hasSuffix("libscalene_agent.so") && $0.executable }.map { $0.start..<$0.end }
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
            && !mapping.path.hasSuffix("libscalene_agent.so") && mapping.end - mapping.start <= 64 << 20 {
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
