import NativeStacks
import Testing

/// The merge of native and Python stacks, on stacks built by hand.
@Suite("Native and Python stacks merged")
struct StackMergerTests {
    func frame(_ name: String, _ object: String, _ role: ObjectRole, eval: Bool = false) -> NativeFrame {
        NativeFrame(function: NativeFunction(object: object, name: name), role: role, isEvaluation: eval, address: 0)
    }

    @Test("each evaluation frame becomes the Python frames it runs; leaf-side native frames stay")
    func replacesEvaluationFrames() {
        // Innermost first: zlib's deflate called by the zlib module, under two evaluation calls.
        let native = [
            frame("deflate", "libz.so.1", .other),
            frame("zlib_compress", "zlib.so", .other),
            frame("cfunction_vectorcall_FASTCALL", "libpython3.11.so", .interpreter),
            frame("_PyEval_EvalFrameDefault", "libpython3.11.so", .interpreter, eval: true),
            frame("method_vectorcall", "libpython3.11.so", .interpreter),
            frame("_PyEval_EvalFrameDefault", "libpython3.11.so", .interpreter, eval: true),
            frame("Py_RunMain", "libpython3.11.so", .interpreter),
            frame("__libc_start_main", "libc.so.6", .runtime),
        ]
        // Python frames innermost first: handle and work run by one call, main by the outer one.
        let merged = StackMerger.merge(native: native, pythonEntries: [false, true, true])
        #expect(merged == [.native(native[0]), .native(native[1]), .python(0), .python(1), .python(2)])
    }

    @Test("in the interpreter's own code, the leaf-side frames are all kept")
    func keepsInterpreterLeaf() {
        let native = [
            frame("memcpy", "libc.so.6", .runtime),
            frame("list_extend", "libpython3.11.so", .interpreter),
            frame("_PyEval_EvalFrameDefault", "libpython3.11.so", .interpreter, eval: true),
        ]
        #expect(StackMerger.merge(native: native, pythonEntries: [true]) == [.native(native[0]), .native(native[1]), .python(0)])
    }

    @Test("an extension calling back into Python keeps its frame between the evaluation calls")
    func keepsExtensionsBetweenEvaluationCalls() {
        let native = [
            frame("_PyEval_EvalFrameDefault", "python3.11", .interpreter, eval: true),
            frame("callback_trampoline", "ext.so", .other),
            frame("PyObject_Call", "python3.11", .interpreter),
            frame("_PyEval_EvalFrameDefault", "python3.11", .interpreter, eval: true),
        ]
        let merged = StackMerger.merge(native: native, pythonEntries: [true, true])
        #expect(merged == [.python(0), .native(native[1]), .python(1)])
    }

    @Test("Python frames beyond the end of the native unwind follow as they are")
    func appendsFramesTheUnwindDidNotReach() {
        let native = [frame("memcpy", "libc.so.6", .runtime), frame("_PyEval_EvalFrameDefault", "python3.8", .interpreter, eval: true)]
        let merged = StackMerger.merge(native: native, pythonEntries: [true, true, true])
        #expect(merged == [.native(native[0]), .python(0), .python(1), .python(2)])
    }

    @Test("where the CPU is: the first frame outside the C runtime decides")
    func place() {
        let python = NativeStack(tid: 1, time: 0, frames: [frame("memcpy", "libc.so.6", .runtime),
                                                          frame("list_extend", "libpython3.11.so", .interpreter)])
        let native = NativeStack(tid: 1, time: 0, frames: [frame("memcpy", "libc.so.6", .runtime),
                                                          frame("array_add", "_multiarray_umath.so", .other)])
        let unknown = NativeStack(tid: 1, time: 0, frames: [frame("clock_gettime", "[vdso]", .runtime)])
        #expect(python.place == .python)
        #expect(native.place == .native)
        #expect(unknown.place == .unknown)
    }

    @Test("C++ names are demangled")
    func demangles() {
        #expect(Demangler.demangle("_ZN5boost6detail4workEv") == "boost::detail::work()")
        #expect(Demangler.demangle("deflate") == "deflate")
    }
}
