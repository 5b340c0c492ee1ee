/// The messages of pprof's `profile.proto` (github.com/google/pprof; a copy with our notes is
/// fixtures/generators/pprof/profile.proto) that `PprofReport` writes, with that file's field
/// numbers, and their encoding. Only the fields we set are here; what a reader finds missing is
/// zero, as proto3 defines. Equal profiles encode to equal bytes (fields in number order).
enum PprofMessages {
    /// `perftools.profiles.Profile`.
    struct Profile {
        var sampleType: [ValueType] = []
        var sample: [Sample] = []
        var mapping: [Mapping] = []
        var location: [Location] = []
        var function: [Function] = []
        /// Index 0 must be "".
        var stringTable: [String] = []
        var timeNanos: Int64 = 0
        var durationNanos: Int64 = 0
        var periodType: ValueType?
        var period: Int64 = 0
        /// Indices into the string table.
        var comment: [Int64] = []
        var defaultSampleType: Int64 = 0

        func serializedBytes() -> [UInt8] {
            var out = ProtobufWriter()
            for value in sampleType { out.message(1, value.encode) }
            for value in sample { out.message(2, value.encode) }
            for value in mapping { out.message(3, value.encode) }
            for value in location { out.message(4, value.encode) }
            for value in function { out.message(5, value.encode) }
            for value in stringTable { out.string(6, value) }
            // 7 drop_frames, 8 keep_frames: not used.
            out.int64(9, timeNanos)
            out.int64(10, durationNanos)
            if let periodType { out.message(11, periodType.encode) }
            out.int64(12, period)
            out.packed(13, comment)
            out.int64(14, defaultSampleType)
            return out.bytes
        }
    }

    /// `ValueType`: a sample value's type and unit (string table indices).
    struct ValueType {
        var type: Int64 = 0
        var unit: Int64 = 0

        func encode(_ out: inout ProtobufWriter) {
            out.int64(1, type)
            out.int64(2, unit)
        }
    }

    /// `Sample`: a stack (location ids, innermost first), its values and labels.
    struct Sample {
        var locationID: [UInt64] = []
        var value: [Int64] = []
        var label: [Label] = []

        func encode(_ out: inout ProtobufWriter) {
            out.packed(1, locationID)
            out.packed(2, value)
            for value in label { out.message(3, value.encode) }
        }
    }

    /// `Label`: a string label (key and value are string table indices).
    struct Label {
        var key: Int64 = 0
        var str: Int64 = 0

        func encode(_ out: inout ProtobufWriter) {
            out.int64(1, key)
            out.int64(2, str)
            // 3 num, 4 num_unit: not used.
        }
    }

    /// `Mapping`: the one pseudo-mapping every location points to.
    struct Mapping {
        var id: UInt64 = 0
        var filename: Int64 = 0
        var hasFunctions: Bool = false
        var hasFilenames: Bool = false
        var hasLineNumbers: Bool = false

        func encode(_ out: inout ProtobufWriter) {
            out.uint64(1, id)
            // 2 memory_start, 3 memory_limit, 4 file_offset: not used.
            out.int64(5, filename)
            // 6 build_id: not used.
            out.bool(7, hasFunctions)
            out.bool(8, hasFilenames)
            out.bool(9, hasLineNumbers)
        }
    }

    /// `Location`: one frame (a function and line), without an address.
    struct Location {
        var id: UInt64 = 0
        var mappingID: UInt64 = 0
        var line: [Line] = []

        func encode(_ out: inout ProtobufWriter) {
            out.uint64(1, id)
            out.uint64(2, mappingID)
            // 3 address: not used.
            for value in line { out.message(4, value.encode) }
        }
    }

    /// `Line`.
    struct Line {
        var functionID: UInt64 = 0
        var line: Int64 = 0

        func encode(_ out: inout ProtobufWriter) {
            out.uint64(1, functionID)
            out.int64(2, line)
        }
    }

    /// `Function`: names and file are string table indices.
    struct Function {
        var id: UInt64 = 0
        var name: Int64 = 0
        var systemName: Int64 = 0
        var filename: Int64 = 0
        var startLine: Int64 = 0

        func encode(_ out: inout ProtobufWriter) {
            out.uint64(1, id)
            out.int64(2, name)
            out.int64(3, systemName)
            out.int64(4, filename)
            out.int64(5, startLine)
        }
    }
}
