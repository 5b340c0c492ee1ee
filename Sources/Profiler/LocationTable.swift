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
