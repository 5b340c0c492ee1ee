import RemoteProcess
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("MemoryMap parsing")
struct MemoryMapTests {
    @Test("our own /proc/self/maps holds a local variable and a function of this binary")
    func ownMaps() throws {
        let map = try MemoryMap.read(pid: getpid())
        let executable = try ProcFiles.linkTarget("/proc/self/exe")

        var local: UInt64 = 42
        let localAddress = withUnsafeMutablePointer(to: &local) { UInt64(UInt(bitPattern: $0)) }
        let stack = try #require(map.mapping(containing: localAddress))
        #expect(stack.readable && stack.writable && !stack.executable)
        #expect(stack.start <= localAddress && localAddress < stack.end)

        let function: @convention(c) () -> Void = {}
        let functionAddress = UInt64(UInt(bitPattern: unsafeBitCast(function, to: UnsafeRawPointer.self)))
        let text = try #require(map.mapping(containing: functionAddress))
        #expect(text.readable && text.executable && !text.writable)
        #expect(text.path == executable)
        #expect(text.isFile)
        #expect(text.fileName == String(executable.split(separator: "/").last!))
        #expect(text.inode != 0)

        let own = map.mappings(of: executable)
        #expect(own.contains { $0.offset == 0 }, "the ELF header page is mapped")
        #expect(own.contains(text))
        #expect(map.mappings.allSatisfy { $0.start < $0.end })
        #expect(map.mappings == map.mappings.sorted { $0.start < $1.start }, "the kernel lists mappings in order")
    }

    @Test("hand-written lines: paths with spaces, deleted files, pseudo names, anonymous memory")
    func handWritten() {
        let text = """
        00400000-00452000 r-xp 00000000 08:02 173521                             /usr/bin/dbus-daemon
        7f2c4a000000-7f2c4a021000 r--p 00002000 fd:01 99     /tmp/dir with  spaces/lib name.so
        7f2c4a100000-7f2c4a101000 rw-s 00000000 00:05 1234                       /memfd:agent (deleted)
        7f2c4a1e8000-7f2c4a1e9000 rw-p 00000000 00:00 0
        7f2c4a1f0000-7f2c4a1f1000 ---p 00000000 00:00 0 \("")
        7ffd4a0b1000-7ffd4a0d2000 rw-p 00000000 00:00 0                          [stack]
        ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
        """
        let map = MemoryMap(parsing: text)
        #expect(map.mappings.count == 7)
        guard map.mappings.count == 7 else { return }
        #expect(map.mappings[0] == MemoryMapping(start: 0x400000, end: 0x452000, readable: true, writable: false,
                                                 executable: true, offset: 0, inode: 173521, path: "/usr/bin/dbus-daemon"))
        #expect(map.mappings[0].fileName == "dbus-daemon")
        #expect(map.mappings[0].isFile)

        #expect(map.mappings[1] == MemoryMapping(start: 0x7f2c_4a00_0000, end: 0x7f2c_4a02_1000, readable: true,
                                                 writable: false, executable: false, offset: 0x2000, inode: 99,
                                                 path: "/tmp/dir with  spaces/lib name.so"))
        #expect(map.mappings[1].fileName == "lib name.so")
        #expect(map.mappings[1].isFile)

        #expect(map.mappings[2].path == "/memfd:agent (deleted)")
        #expect(map.mappings[2].readable && map.mappings[2].writable && !map.mappings[2].executable)
        #expect(!map.mappings[2].isFile, "a deleted file is not a file to open")

        #expect(map.mappings[3] == MemoryMapping(start: 0x7f2c_4a1e_8000, end: 0x7f2c_4a1e_9000, readable: true,
                                                 writable: true, executable: false, offset: 0, inode: 0, path: ""))
        #expect(!map.mappings[3].isFile)
        #expect(map.mappings[3].fileName == "")
        #expect(map.mappings[4].path == "", "trailing spaces of an anonymous mapping are not a path")
        #expect(!map.mappings[4].readable && !map.mappings[4].writable && !map.mappings[4].executable)

        #expect(map.mappings[5].path == "[stack]")
        #expect(!map.mappings[5].isFile)
        #expect(map.mappings[6].start == 0xffff_ffff_ff60_0000)
        #expect(map.mappings[6].end == 0xffff_ffff_ff60_1000)
        #expect(map.mappings[6].executable && !map.mappings[6].readable)

        #expect(map.mapping(containing: 0x451fff)?.path == "/usr/bin/dbus-daemon")
        #expect(map.mapping(containing: 0x452000) == nil, "end is exclusive")
        #expect(map.mapping(containing: 0x3fffff) == nil)
        #expect(map.mappings(of: "/usr/bin/dbus-daemon").count == 1)
        #expect(map.mappings(of: "/tmp/dir with  spaces/lib name.so").map(\.offset) == [0x2000])
        #expect(map.mappings(of: "/nowhere").isEmpty)
    }

    @Test("malformed lines are skipped, good ones kept")
    func malformed() {
        let text = """
        garbage

        00400000 r-xp 00000000 08:02 1 /no/dash
        zz400000-00452000 r-xp 00000000 08:02 1 /bad/hex
        00400000-00452000 r-xp 0000000g 08:02 1 /bad/offset
        00400000-00452000 r-xp 00000000 08:02 x1 /bad/inode
        00400000-00452000 r- 00000000 08:02 1 /short/perms
        00400000-00452000 r-xp 00000000 08:02
        00400000-00452000 r-xp 00000000 08:02 \("")
        00400000-00452000-00460000 r-xp 00000000 08:02 1 /three/addresses
        10000-20000 rw-p 00001000 00:00 7 /kept
        """
        let map = MemoryMap(parsing: text)
        #expect(map.mappings == [MemoryMapping(start: 0x10000, end: 0x20000, readable: true, writable: true,
                                               executable: false, offset: 0x1000, inode: 7, path: "/kept")])
        #expect(MemoryMap(parsing: "").mappings.isEmpty)
    }
}
