import CPythonLayouts
import Foundation

/// Files the generator committed under fixtures/generators, found from this file's path.
enum Fixtures {
    /// The package root: Tests/CPythonLayoutsTests/Fixtures.swift is three levels below it.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let generatorScript = packageRoot.appendingPathComponent("fixtures/generators/generate_layouts.py")

    static func bytes(_ relativePath: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: packageRoot.appendingPathComponent(relativePath)))
    }

    static func json(_ relativePath: String) throws -> JSONObject {
        let data = try Data(contentsOf: packageRoot.appendingPathComponent(relativePath))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw FixtureError("\(relativePath) is not a JSON object")
        }
        return JSONObject(object, path: relativePath)
    }

    /// The raw `_Py_DebugOffsets` the generator copied out of a running 3.13.0.
    static func debugOffsets313() throws -> [UInt8] {
        try bytes("fixtures/generators/debug_offsets_3.13.0.bin")
    }

    /// fixtures/generators/layouts.json
    static func layouts() throws -> JSONObject {
        try json("fixtures/generators/layouts.json")
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Typed access to a decoded JSON object; every failure names the path.
struct JSONObject {
    let values: [String: Any]
    let path: String

    init(_ values: [String: Any], path: String) {
        self.values = values
        self.path = path
    }

    func int(_ key: String) throws -> Int {
        guard let value = values[key] as? Int else { throw FixtureError("\(path).\(key) is not an integer") }
        return value
    }

    func optionalInt(_ key: String) -> Int? {
        values[key] as? Int
    }

    func bool(_ key: String) throws -> Bool {
        guard let value = values[key] as? Bool else { throw FixtureError("\(path).\(key) is not a bool") }
        return value
    }

    func string(_ key: String) throws -> String {
        guard let value = values[key] as? String else { throw FixtureError("\(path).\(key) is not a string") }
        return value
    }

    func object(_ key: String) throws -> JSONObject {
        guard let value = values[key] as? [String: Any] else { throw FixtureError("\(path).\(key) is not an object") }
        return JSONObject(value, path: "\(path).\(key)")
    }

    func objects(_ key: String) throws -> [JSONObject] {
        guard let value = values[key] as? [[String: Any]] else { throw FixtureError("\(path).\(key) is not a list") }
        return value.enumerated().map { JSONObject($0.element, path: "\(path).\(key)[\($0.offset)]") }
    }

    func array(_ key: String) throws -> [Any] {
        guard let value = values[key] as? [Any] else { throw FixtureError("\(path).\(key) is not a list") }
        return value
    }
}

/// layouts.json records → the Swift types, to compare the JSON with the generated Swift and with
/// what `DebugOffsets` builds.
enum LayoutJSON {
    static func version(_ text: String) throws -> PythonVersion {
        let parts = text.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 3 else { throw FixtureError("bad version \(text)") }
        return PythonVersion(major: parts[0], minor: parts[1], micro: parts[2])
    }

    static func layout(_ record: JSONObject) throws -> PythonLayout {
        let l = try record.object("layout")
        let r = try l.object("runtime"), i = try l.object("interpreter"), t = try l.object("thread")
        let f = try l.object("frame"), c = try l.object("code")
        return PythonLayout(
            version: try version(try record.string("version")),
            runtime: RuntimeOffsets(
                interpretersHead: try r.int("interpretersHead"), interpretersMain: r.optionalInt("interpretersMain"),
                gilstateTstateCurrent: r.optionalInt("gilstateTstateCurrent"), size: try r.int("size"),
                finalizing: r.optionalInt("finalizing")),
            interpreter: InterpreterOffsets(
                next: try i.int("next"), id: try i.int("id"), threadsHead: try i.int("threadsHead"),
                modules: try i.int("modules"), cevalGIL: i.optionalInt("cevalGIL"),
                gilLastHolder: i.optionalInt("gilLastHolder"), gilLocked: i.optionalInt("gilLocked"),
                size: try i.int("size")),
            thread: ThreadOffsets(
                next: try t.int("next"), interp: try t.int("interp"), frame: try t.int("frame"),
                cframeCurrentFrame: t.optionalInt("cframeCurrentFrame"), threadID: try t.int("threadID"),
                nativeThreadID: t.optionalInt("nativeThreadID"), size: try t.int("size"),
                datastackChunk: t.optionalInt("datastackChunk"), stackChunk: try stackChunk(t)),
            frame: FrameOffsets(
                previous: try f.int("previous"), code: try f.int("code"), instruction: try f.int("instruction"),
                instructionField: try instructionField(try f.string("instructionField")),
                isEntry: f.optionalInt("isEntry"), owner: f.optionalInt("owner"),
                ownerCStack: f.optionalInt("ownerCStack"), size: try f.int("size")),
            code: CodeOffsets(
                filename: try c.int("filename"), name: try c.int("name"), qualname: c.optionalInt("qualname"),
                firstLineNumber: try c.int("firstLineNumber"), lineTable: try c.int("lineTable"),
                lineTableFormat: try lineTableFormat(try c.string("lineTableFormat")),
                codeBytes: try codeBytes(try c.object("codeBytes")), size: try c.int("size")),
            objects: try objects(try record.object("objects")))
    }

    /// The `stackChunk` field of a record or of its thread offsets (nil before 3.11).
    static func stackChunk(_ parent: JSONObject) throws -> StackChunkOffsets? {
        guard parent.values["stackChunk"] is [String: Any] else { return nil }
        let s = try parent.object("stackChunk")
        return StackChunkOffsets(previous: try s.int("previous"), size: try s.int("size"), data: try s.int("data"))
    }

    static func objects(_ o: JSONObject) throws -> ObjectOffsets {
        let b = try o.object("bytes"), u = try o.object("unicode"), l = try o.object("long")
        let d = try o.object("dict"), t = try o.object("type")
        return ObjectOffsets(
            objectType: try o.int("objectType"), varSize: try o.int("varSize"),
            bytes: BytesOffsets(size: try b.int("size"), data: try b.int("data")),
            unicode: UnicodeOffsets(
                length: try u.int("length"), state: try u.int("state"), asciiSize: try u.int("asciiSize"),
                compactSize: try u.int("compactSize"), kindShift: try u.int("kindShift"),
                kindBits: try u.int("kindBits"), compactShift: try u.int("compactShift"),
                asciiShift: try u.int("asciiShift")),
            long: LongOffsets(
                sizeOrTag: try l.int("sizeOrTag"), usesTag: try l.bool("usesTag"),
                tagDigitShift: try l.int("tagDigitShift"), digits: try l.int("digits"),
                digitBits: try l.int("digitBits"), digitSize: try l.int("digitSize")),
            dict: DictOffsets(
                used: try d.int("used"), keys: try d.int("keys"), values: try d.int("values"),
                keysSize: try d.int("keysSize"), keysSizeIsLog2: try d.bool("keysSizeIsLog2"),
                keysLog2IndexBytes: d.optionalInt("keysLog2IndexBytes"), keysKind: d.optionalInt("keysKind"),
                keysNEntries: try d.int("keysNEntries"), keysIndices: try d.int("keysIndices"),
                entrySize: try d.int("entrySize"), entryKey: try d.int("entryKey"),
                entryValue: try d.int("entryValue"), unicodeEntrySize: d.optionalInt("unicodeEntrySize"),
                unicodeEntryKey: d.optionalInt("unicodeEntryKey"),
                unicodeEntryValue: d.optionalInt("unicodeEntryValue"), valuesArray: try d.int("valuesArray")),
            type: TypeOffsets(
                flags: try t.int("flags"), basicSize: try t.int("basicSize"), dictOffset: try t.int("dictOffset"),
                heapCachedKeys: try t.int("heapCachedKeys"), managedDictFlag: UInt64(try t.int("managedDictFlag")),
                inlineValuesFlag: UInt64(try t.int("inlineValuesFlag")),
                instanceDict: try instanceDict(try t.object("instanceDict"))))
    }

    static func allocator(_ a: JSONObject) throws -> AllocatorConstants {
        AllocatorConstants(poolSize: try a.int("poolSize"), arenaSize: try a.int("arenaSize"),
                           smallRequestThreshold: try a.int("smallRequestThreshold"), alignment: try a.int("alignment"))
    }

    static func instructionField(_ name: String) throws -> InstructionField {
        switch name {
        case "lastiBytes": return .lastiBytes
        case "lastiCodeUnits": return .lastiCodeUnits
        case "previousInstructionPointer": return .previousInstructionPointer
        case "instructionPointer": return .instructionPointer
        default: throw FixtureError("unknown instruction field \(name)")
        }
    }

    static func lineTableFormat(_ name: String) throws -> LineTableFormat {
        switch name {
        case "lnotab": return .lnotab
        case "lineTable310": return .lineTable310
        case "locationTable": return .locationTable
        default: throw FixtureError("unknown line table format \(name)")
        }
    }

    static func codeBytes(_ o: JSONObject) throws -> CodeBytesPlacement {
        switch try o.string("case") {
        case "bytesObject": return .bytesObject(offset: try o.int("offset"))
        case "inline": return .inline(offset: try o.int("offset"))
        case let other: throw FixtureError("unknown code bytes placement \(other)")
        }
    }

    static func instanceDict(_ o: JSONObject) throws -> InstanceDictPlacement {
        switch try o.string("case") {
        case "typeDictOffset": return .typeDictOffset
        case "managed311": return .managed311(dictPointer: try o.int("dictPointer"), valuesPointer: try o.int("valuesPointer"))
        case "managedTagged312": return .managedTagged312(word: try o.int("word"))
        case "inlineValues313": return .inlineValues313(dictPointer: try o.int("dictPointer"), validByte: try o.int("validByte"))
        case let other: throw FixtureError("unknown instance dict placement \(other)")
        }
    }
}
