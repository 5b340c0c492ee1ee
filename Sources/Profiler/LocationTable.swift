import NativeStacks
import PythonInspector

/// Interns what the sampler sees into small integers: code objects (by address and identity),
/// source lines, and stacks. Keeps the per-tick work to integer hashing.
final class LocationTable {
    struct CodeKey: Hashable {
        var address: UInt64
        var fingerprint: CodeInfo.Fingerprint
    }

    struct Code {
        var info: CodeInfo
        var profiled: Bool
        var function: FunctionID
    }

    struct LocationKey: Hashable {
        var code: Int
        var line: Int
    }

    private(set) var codes: [Code] = []
    private var codeIndex: [CodeKey: Int] = [:]
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
    static let mergedCapacity = 200_000
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
        let index = codes.count
        var info = info
        if let workingDirectory, !info.filename.hasPrefix("/"), !info.filename.hasPrefix("<"), !info.filename.isEmpty {
            info.filename = workingDirectory + "/" + (info.filename.hasPrefix("./") ? String(info.filename.dropFirst(2)) : info.filename)
        }
        codes.append(Code(info: info, profiled: filter.isProfiled(info.filename),
                          function: FunctionID(file: info.filename, name: info.qualname, firstLine: info.firstLine)))
        codeIndex[key] = index
        return index
    }

    func location(code: Int, line: Int) -> Int {
        let key = LocationKey(code: code, line: line)
        if let index = lineIndex[key] { return index }
        let index = lines.count
        lines.append(SourceLine(file: codes[code].info.filename, line: line))
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
        guard mergedIndex.count < Self.mergedCapacity else { return nil }
        let index = stacks.count
        stacks.append(key.map { element in
            switch element {
            case .python(let location):
                return StackFrame(file: codes[location.code].info.filename, function: codes[location.code].info.qualname,
                                  line: location.line)
            case .native(let function):
                return StackFrame(file: function.object, function: function.name, line: 0, isNative: true)
            }
        })
        mergedIndex[key] = index
        return index
    }

    /// The whole stack, outermost first, as an interned index.
    func stack(_ frames: [ResolvedFrame]) -> Int {
        var key = [LocationKey]()
        key.reserveCapacity(frames.count)
        for frame in frames.reversed() { key.append(LocationKey(code: code(for: frame.code), line: frame.line)) }
        if let index = stackIndex[key] { return index }
        let index = stacks.count
        stacks.append(key.map { StackFrame(file: codes[$0.code].info.filename, function: codes[$0.code].info.qualname,
                                            line: $0.line) })
        stackIndex[key] = index
        return index
    }
}
