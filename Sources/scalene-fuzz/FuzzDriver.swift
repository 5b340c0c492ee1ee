import CPythonLayouts
import Foundation
import FuzzTargets
import PythonInspector
import RemoteProcess

// The fuzzing driver. Built two ways:
//
//   swift build --product scalene-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
//       a libFuzzer binary; the target is named by $SCALENE_FUZZ_TARGET, libFuzzer's own options
//       (corpus directories, -max_total_time, -runs) follow on the command line (see `make fuzz`);
//   swift build --product scalene-fuzz
//       a plain tool: `replay TARGET FILE...` runs inputs through a target, `record --pid N --out DIR`
//       writes seed inputs from what the readers read in a live interpreter.

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// The target this process fuzzes, read once (libFuzzer calls back millions of times).
nonisolated(unsafe) var selectedTarget: FuzzTarget?

/// libFuzzer's entry point; also called through `LLVMFuzzerRunDriver`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    selectedTarget?.run(bytes)
    return 0
}
#endif

@main
struct FuzzDriver {
    static func main() {
        #if FUZZING
        guard let name = ProcessInfo.processInfo.environment["SCALENE_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) else {
            fail("set SCALENE_FUZZ_TARGET to one of: " + FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))
        }
        selectedTarget = target
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
        #else
        let arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "replay":
            guard arguments.count >= 2, let target = FuzzTarget(rawValue: arguments[1]) else { usage() }
            for path in arguments.dropFirst(2) {
                guard let data = FileManager.default.contents(atPath: path) else { fail("cannot read \(path)") }
                target.run(Array(data))
            }
            print("replayed \(arguments.count - 2) input(s) through \(target.rawValue)")
        case "record":
            guard arguments.count == 5, arguments[1] == "--pid", let pid = Int32(arguments[2]), arguments[3] == "--out" else {
                usage()
            }
            record(pid: pid, directory: arguments[4])
        default:
            usage()
        }
        #endif
    }

    /// Reads the live process the way `dump` does, through a recording memory, and writes what was
    /// read as one `MemoryImage` per target that takes one.
    static func record(pid: Int32, directory: String) {
        let target: PythonTarget
        do { target = try PythonTarget(pid: pid) } catch { fail("cannot attach to \(pid): \(error)") }
        guard let selector = FuzzLayouts.selector(for: target.version) else {
            fail("no fuzz layout for Python \(target.version)")
        }
        let memory = RecordingMemory(target.memory)
        let observer = InterpreterObserver(memory: memory, layout: target.layout, opcodes: target.opcodes,
                                           runtimeAddress: target.runtimeAddress, codeType: target.codeTypeAddress)
        var observed = 0
        for _ in 0..<5 {
            if let observations = try? observer.observe(taskIDs: Set((try? target.process.threadIDs()) ?? [])) {
                observed = observations.count
                break
            }
        }
        if let interpreter = try? observer.mainInterpreter() {
            _ = ThreadNameReader(memory: memory, layout: target.layout).names(interpreter: interpreter)
        }
        let image = MemoryImage(layout: selector, codeType: target.codeTypeAddress ?? 0, root: target.runtimeAddress,
                                regions: memory.merged)
        let bytes = Data(image.encoded())
        let name = "python-\(target.version)-\(target.binary.isSharedLibrary ? "shared" : "static")"
        let folder = directory + "/memory-images"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: folder + "/" + name, contents: bytes) else {
            fail("cannot write \(folder)/\(name)")
        }
        print("recorded \(image.regions.count) region(s), \(bytes.count) bytes, \(observed) thread(s) from Python \(target.version)")
    }

    static func usage() -> Never {
        fail("usage: scalene-fuzz replay TARGET FILE... | scalene-fuzz record --pid N --out DIR\n"
             + "targets: " + FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data(("scalene-fuzz: " + message + "\n").utf8))
        exit(2)
    }
}
