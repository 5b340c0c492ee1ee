import Foundation

/// A CPython installed on this machine that the integration tests run against.
struct Interpreter: CustomStringConvertible, Sendable {
    /// "3.11.7 (pyenv)" or "3.11.2 (Debian, static)".
    var label: String
    var path: String
    var minor: Int

    var description: String { label }
}

/// Finds every CPython the tests cover: each pyenv version from 3.8 up and Debian's python3, and
/// says which of the expected ones are missing.
enum Interpreters {
    static let expectedMinors = [8, 9, 10, 11, 12, 13]

    static let installed: [Interpreter] = discover()

    static func discover() -> [Interpreter] {
        var found = [Interpreter]()
        let root = ProcessInfo.processInfo.environment["PYENV_ROOT"] ?? NSHomeDirectory() + "/.pyenv"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root + "/versions")) ?? []
        for version in versions.sorted(by: { $0.compare($1, options: .numeric) == .orderedAscending }) {
            let parts = version.split(separator: ".")
            guard parts.count >= 2, parts[0] == "3", let minor = Int(parts[1]), minor >= 8 else { continue }
            let path = "\(root)/versions/\(version)/bin/python3"
            if FileManager.default.isExecutableFile(atPath: path) {
                found.append(Interpreter(label: "\(version) (pyenv)", path: path, minor: minor))
            }
        }
        let debian = "/usr/bin/python3"
        if FileManager.default.isExecutableFile(atPath: debian),
           let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: debian) {
            let name = resolved.split(separator: "/").last.map(String.init) ?? resolved
            if let minor = Int(name.replacingOccurrences(of: "python3.", with: "")), minor >= 8 {
                found.append(Interpreter(label: "\(name) (Debian /usr/bin/python3)", path: debian, minor: minor))
            }
        }
        return found
    }

    /// One line for the test log: what runs and what is skipped.
    static var coverageReport: String {
        let present = Set(installed.map(\.minor))
        let skipped = expectedMinors.filter { !present.contains($0) }.map { "3.\($0)" }
        return "interpreters tested: " + installed.map(\.label).joined(separator: ", ")
            + (skipped.isEmpty ? "; none skipped" : "; skipped (not installed): " + skipped.joined(separator: ", "))
    }
}
