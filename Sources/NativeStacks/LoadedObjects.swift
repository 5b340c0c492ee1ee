import CNativeStacks
import ELFSymbols
import RemoteProcess
#if canImport(Glibc)
import Glibc
#endif

/// The ELF objects mapped into the target, as the unwinder and the symboliser need them: each file
/// is opened through /proc/PID/root (so containers work) and mapped read-only here, so unwind tables
/// and read-only data are read from our copy, never from the target.
final class LoadedObjects {
    final class Object {
        let path: String
        let name: String
        let role: ObjectRole
        /// Added to a link-time address to get the address in the target.
        let bias: UInt64
        let hostPath: String?
        /// Our read-only mapping of the whole file (nil for the vdso, copied into `copy`).
        let local: UnsafeRawPointer?
        let localLength: Int
        var copy: [UInt8]
        private var symbolIndex: FunctionSymbolIndex??

        init(path: String, name: String, role: ObjectRole, bias: UInt64, hostPath: String?, local: UnsafeRawPointer?,
             localLength: Int, copy: [UInt8] = []) {
            self.path = path
            self.name = name
            self.role = role
            self.bias = bias
            self.hostPath = hostPath
            self.local = local
            self.localLength = localLength
            self.copy = copy
        }

        deinit {
            if let local { munmap(UnsafeMutableRawPointer(mutating: local), localLength) }
        }

        /// The object's function symbols, read on first use.
        var symbols: FunctionSymbolIndex? {
            if let symbolIndex { return symbolIndex }
            let index = hostPath.flatMap { try? FunctionSymbolIndex(path: $0) }
            symbolIndex = .some(index)
            return index
        }
    }

    let process: TargetProcess
    /// Paths (as the target sees them) of the interpreter's own code.
    let interpreterPaths: Set<String>
    private(set) var objects: [Object] = []
    /// Executable ranges, sorted by start, with the index of their object.
    private var code: [(start: UInt64, end: UInt64, object: Int)] = []
    private(set) var generation = 0
    /// The text of /proc/PID/maps at the last reload: nothing to do while it is unchanged (code in
    /// anonymous memory, a JIT's or libffi's, is in no object however often it is sampled).
    private var lastMaps: [UInt8] = []

    init(process: TargetProcess, interpreterPaths: Set<String>) {
        self.process = process
        self.interpreterPaths = interpreterPaths
    }

    /// The C runtime: time spent there is charged to its caller.
    static func isRuntime(_ name: String) -> Bool {
        name == "[vdso]" || ["libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "ld-linux"]
            .contains { name.hasPrefix($0) }
    }

    /// Rereads /proc/PID/maps and, if it changed, registers every object with `unwinder` again.
    /// Returns whether it changed.
    @discardableResult
    func reload(into unwinder: OpaquePointer) -> Bool {
        guard let text = try? ProcFiles.read("/proc/\(process.pid)/maps"), text != lastMaps else { return false }
        lastMaps = text
        let map = MemoryMap(parsing: text)
        scalene_unwinder_reset(unwinder)
        var kept = [String: Object]()
        for object in objects { kept[object.path] = object }
        var fresh = [Object]()
        var ranges = [(start: UInt64, end: UInt64, object: Int)]()
        var byPath = [String: [MemoryMapping]]()
        var order = [String]()
        for mapping in map.mappings where mapping.isFile || mapping.path == "[vdso]" {
            if byPath[mapping.path] == nil { order.append(mapping.path) }
            byPath[mapping.path, default: []].append(mapping)
        }
        for path in order {
            let mappings = byPath[path] ?? []
            guard mappings.contains(where: \.executable) else { continue }
            let object: Object?
            if let previous = kept[path] { object = previous } else { object = open(path, mappings: mappings) }
            guard let object else { continue }
            let index = fresh.count
            fresh.append(object)
            register(object, mappings: mappings, unwinder: unwinder)
            for mapping in mappings where mapping.executable { ranges.append((mapping.start, mapping.end, index)) }
        }
        objects = fresh
        code = ranges.sorted { $0.start < $1.start }
        generation += 1
        return true
    }

    private func open(_ path: String, mappings: [MemoryMapping]) -> Object? {
        let name = path == "[vdso]" ? path : (mappings.first?.fileName ?? path)
        let role: ObjectRole = interpreterPaths.contains(path) ? .interpreter : (Self.isRuntime(name) ? .runtime : .other)
        if path == "[vdso]" {
            // The vdso is no file: copy its pages out of the target. It is an ELF image at bias = start.
            guard let mapping = mappings.first, mapping.end > mapping.start, mapping.end - mapping.start <= 1 << 20,
                  let bytes = try? process.memory.bytes(at: mapping.start, count: Int(mapping.end - mapping.start)) else { return nil }
            return Object(path: path, name: name, role: role, bias: mapping.start, hostPath: nil, local: nil,
                          localLength: 0, copy: bytes)
        }
        let host = process.hostPath(path)
        let fd = Glibc.open(host, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0, let length = Int(exactly: info.st_size) else { return nil }
        guard let base = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { return nil }
        let elf = try? ELFFile(path: host, only: [])
        let bias = elf?.loadBias(mappings: mappings.map { (start: $0.start, offset: $0.offset) }) ?? 0
        return Object(path: path, name: name, role: role, bias: bias, hostPath: host, local: UnsafeRawPointer(base),
                      localLength: length)
    }

    /// Registers the object's read-only mappings as memory served from our copy, and its code with
    /// its .eh_frame_hdr.
    private func register(_ object: Object, mappings: [MemoryMapping], unwinder: OpaquePointer) {
        var hdr: UInt64?
        if let local = object.local {
            for mapping in mappings where !mapping.writable {
                guard mapping.offset < UInt64(object.localLength) else { continue }
                let available = UInt64(object.localLength) - mapping.offset
                let end = min(mapping.end, mapping.start &+ available)
                guard end > mapping.start else { continue }
                _ = scalene_unwinder_add_region(unwinder, mapping.start, end, local + Int(mapping.offset))
            }
            hdr = ehFrameHeader(image: UnsafeRawBufferPointer(start: local, count: object.localLength))
        } else {
            guard let mapping = mappings.first else { return }
            object.copy.withUnsafeBytes { bytes in
                guard let base = bytes.baseAddress else { return }
                _ = scalene_unwinder_add_region(unwinder, mapping.start, mapping.start &+ UInt64(bytes.count), base)
                hdr = ehFrameHeader(image: bytes)
            }
        }
        guard let hdr else { return }
        for mapping in mappings where mapping.executable {
            _ = scalene_unwinder_add_object(unwinder, mapping.start, mapping.end, hdr &+ object.bias)
        }
    }

    /// The link-time address of PT_GNU_EH_FRAME in an ELF image (64-bit little-endian).
    func ehFrameHeader(image: UnsafeRawBufferPointer) -> UInt64? {
        func u16(_ at: Int) -> UInt16? { at >= 0 && at + 2 <= image.count ? image.loadUnaligned(fromByteOffset: at, as: UInt16.self) : nil }
        func u32(_ at: Int) -> UInt32? { at >= 0 && at + 4 <= image.count ? image.loadUnaligned(fromByteOffset: at, as: UInt32.self) : nil }
        func u64(_ at: Int) -> UInt64? { at >= 0 && at + 8 <= image.count ? image.loadUnaligned(fromByteOffset: at, as: UInt64.self) : nil }
        guard image.count >= 64, image[0] == 0x7f, image[1] == 0x45, image[2] == 0x4c, image[3] == 0x46, image[4] == 2,
              let phoff = u64(32).flatMap({ Int(exactly: $0) }), let entrySize = u16(54), let count = u16(56),
              entrySize >= 56 else { return nil }
        for index in 0..<Int(count) {
            let (offset, overflow) = phoff.addingReportingOverflow(index * Int(entrySize))
            guard !overflow, let type = u32(offset) else { return nil }
            if type == 0x6474e550, let vaddr = u64(offset + 16) { return vaddr } // PT_GNU_EH_FRAME
        }
        return nil
    }

    /// The object whose code contains `address`.
    func object(containing address: UInt64) -> Object? {
        var low = 0, high = code.count
        while low < high {
            let middle = (low + high) / 2
            if code[middle].start <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0, address < code[low - 1].end else { return nil }
        return objects[code[low - 1].object]
    }
}
