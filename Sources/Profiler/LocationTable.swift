import NativeStacks
import PythonInspector

/// Interns what the sampler sees into small integers: code objects (by address and identity),
/// source lines, and stacks. Keeps the per-tick work to integer hashing.
final class LocationTable {
    struct CodeKey: Hashable {
        var address: UInt64
        var fingerprint: CodeInfo.Fingerprint
    }

    /// A function as reports name it. Not the whole CodeInfo: its bytecode (up to 1 MiB) would
    /// stay here for the rest of the run.
    struct Code {
        var filename: String
        var qualname: String
        var profiled: Bool
        var function: FunctionID
    }

    struct LocationKey: Hashable {
        var code: Int
        var line: Int
    }

    private(set) var codes: [Code] = []
    /// Code objects by address: a cache (bounded by `RecordingBounds.codeAddresses`, cleared when
    /// full) over `functionIndex`, so code objects created again and again (exec, templates,
    /// lambdas) map to one entry per function.
    private var codeIndex: [CodeKey: Int] = [:]
    private var functionIndex: [FunctionID: Int] = [:]
    private(set) var lines: [SourceLine] = []
    private(set) var lineFunctions: [FunctionID] = []
    private var lineIndex: [LocationKey: Int] = [:]
    private(set) var stacks: [[StackFrame]] = []
    private var stackIndex: [[LocationKey]: Int] = [:]

    /// One frame of a merged native + Python stack key.
    enum MergedKey: Hashable {
        case python(LocationKey)
        case native(NativeFunction)
    }
    private var mergedIndex: [[MergedKey]: Int] = [:]
    /// Distinct merged stacks kept, at most; beyond, samples keep their Python-only stack.
    static var mergedCapacity: Int { RecordingBounds.stacks }
    let filter: FileFilter
    /// The target's working directory: Python 3.8 keeps a script's path as typed (possibly
    /// relative); reports need the absolute path.
    let workingDirectory: String?

    init(filter: FileFilter, workingDirectory: String?) {
        self.filter = filter
        self.workingDirectory = workingDirectory
    }

    func code(for info: CodeInfo) -> Int {
        let key = CodeKey(address: info.address, fingerprint: info.fingerprint)
        if let index = codeIndex[key] { return index }
        var filename = info.filename
        if let workingDirectory, !filename.hasPrefix("/"), !filename.hasPrefix("<"), !filename.isEmpty {
            filename = workingDirectory + "/" + (filename.hasPrefix("./") ? String(filename.dropFirst(2)) : filename)
        }
        let function = FunctionID(file: filename, name: info.qualname, firstLine: info.firstLine)
        let index: Int
        if let known = functionIndex[function] {
            index = known
        } else {
            index = codes.count
            codes.append(Code(filename: filename, qualname: info.qualname, profiled: filter.isProfiled(filename),
                              function: function))
            functionIndex[function] = index
        }
        if codeIndex.count >= RecordingBounds.codeAddresses { codeIndex.removeAll(keepingCapacity: true) }
        codeIndex[key] = index
        return index
    }

    func location(code: Int, line: Int) -> Int {
        let key = LocationKey(code: code, line: line)
        if let index = lineIndex[key] { return index }
        let index = lines.count
        lines.append(SourceLine(file: codes[code].filename, line: line))
        lineFunctions.append(codes[code].function)
        lineIndex[key] = index
        return index
    }

    /// The location of the innermost frame in a profiled file, or nil.
    func innermostProfiled(_ frames: [ResolvedFrame]) -> Int? {
        for frame in frames {
            let code = code(for: frame.code)
            if codes[code].profiled { return location(code: code, line: frame.line) }
        }
        return nil
    }

    /// The stack with the native frames of `native` merged in (see `StackMerger`), outermost first,
    /// as an interned index into `stacks`; nil once the table of merged stacks is full.
    func mergedStack(_ frames: [ResolvedFrame], native: NativeStack) -> Int? {
        let merged = StackMerger.merge(native: native.frames, pythonEntries: frames.map(\.isEntry))
        var key = [MergedKey]()
        key.reserveCapacity(merged.count)
        for element in merged.reversed() {
            switch element {
            case .python(let index):
                key.append(.python(LocationKey(code: code(for: frames[index].code), line: frames[index].line)))
            case .native(let frame):
                key.append(.native(frame.function))
            }
        }
        if let index = mergedIndex[key] { return index }
        guard stacks.count < Self.mergedCapacity else { return nil }
        let index = stacks.count
        stacks.append(key.map { element in
            switch element {
            case .python(let location):
                return StackFrame(file: codes[location.code].filename, function: codes[location.code].qualname,
                                  line: location.line)
            case .native(let function):
                return StackFrame(file: function.object, function: function.name, line: 0, isNative: true)
            }
        })
        mergedIndex[key] = index
        return index
    }

    /// The whole stack, outermost first, as an interned index; nil for a new stack once the table
    /// is full (`RecordingBounds.stacks`).
    func stack(_ frames: [ResolvedFrame]) -> Int? {
        var key = [LocationKey]()
        key.reserveCapacity(frames.count)
        for frame in frames.reversed() { key.append(LocationKey(code: code(for: frame.code), line: frame.line)) }
        if let index = stackIndex[key] { return index }
        guard stacks.count < RecordingBounds.stacks else { return nil }
        let index = stacks.count
        stacks.append(key.map { StackFrame(file: codes[$0.code].filename, function: codes[$0.code].qualname,
                                            line: $0.line) })
        stackIndex[key] = index
        return index
    }
}
