import Foundation

/// A CPython installed on this machine that the integration tests run against.
struct Interpreter: CustomStringConvertible, Sendable {
    /// "3.11.7 (pyenv)", "3.11.2 (Debian /usr/bin/python3)" or "3.14.10 (Debian sid, shared)".
    var label: String
    var path: String
    var minor: Int

    var description: String { label }
}

/// Finds every CPython the tests cover: each pyenv version from 3.8 up, Debian's python3, and the
/// 3.14 and 3.15 interpreters `make pythons` (fixtures/interpreters/provision.py) unpacked from
/// Debian sid in both shapes (static and shared libpython), and says which of the expected ones
/// are missing and why.
enum Interpreters {
    static let expectedMinors = [8, 9, 10, 11, 12, 13, 14, 15]

    /// Where provision.py keeps the interpreters and its manifest (outside the clone).
    static var provisionedCache: String {
        ProcessInfo.processInfo.environment["SCALENE_PYTHONS"] ?? "/var/cache/scalene-attach/pythons"
    }

    /// Every interpreter found; `SCALENE_TEST_INTERPRETERS=3.14,3.15` (substrings of the labels)
    /// narrows a developer's run to some of them (make test sets nothing: all of them run).
    static let installed: [Interpreter] = {
        let all = discover().found
        guard let only = ProcessInfo.processInfo.environment["SCALENE_TEST_INTERPRETERS"], !only.isEmpty else { return all }
        let wanted = only.split(separator: ",").map(String.init)
        return all.filter { interpreter in wanted.contains { interpreter.label.contains($0) } }
    }()

    /// One interpreter of each way the sampler reads frames: heap frame objects (3.8–3.10), data
    /// stack chunks behind a `_PyCFrame` (3.11–3.12), and `_Py_DebugOffsets` layouts (3.13+); the
    /// first installed of 3.10, 3.12 and 3.15 (else of its family).
    static var oneOfEachFamily: [Interpreter] {
        [[10, 9, 8], [12, 11], [15, 14, 13]].compactMap { family in
            family.lazy.compactMap { minor in installed.first { $0.minor == minor } }.first
        }
    }

    /// Minor versions the provisioning could not deliver, with its reason.
    static let provisioningFailures: [String: String] = discover().failures

    static func discover() -> (found: [Interpreter], failures: [String: String]) {
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
        let provisioned = provisionedInterpreters()
        return (found + provisioned.found, provisioned.failures)
    }

    /// The interpreters in provision.py's manifest, and its reasons for the minors it could not
    /// provide ("could not provision: ...").
    static func provisionedInterpreters() -> (found: [Interpreter], failures: [String: String]) {
        let manifestPath = provisionedCache + "/manifest.json"
        guard let data = FileManager.default.contents(atPath: manifestPath),
              let manifest = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            return ([], ["3.14": "could not provision (no manifest at \(manifestPath); run make pythons)",
                         "3.15": "could not provision (no manifest at \(manifestPath); run make pythons)"])
        }
        var found = [Interpreter]()
        for entry in manifest["interpreters"] as? [[String: Any]] ?? [] {
            guard let label = entry["label"] as? String, let path = entry["path"] as? String,
                  let minor = entry["minor"] as? Int, FileManager.default.isExecutableFile(atPath: path) else { continue }
            found.append(Interpreter(label: label, path: path, minor: minor))
        }
        var failures = [String: String]()
        for (minor, reason) in manifest["failures"] as? [String: String] ?? [:] {
            failures[minor] = reason.replacingOccurrences(of: "could not provision: ", with: "could not provision (") + ")"
        }
        return (found, failures)
    }

    /// The provisioned interpreter of one minor and shape ("static" or "shared"), if any.
    static func provisioned(minor: Int, shared: Bool) -> Interpreter? {
        installed.first { $0.minor == minor && $0.path.hasSuffix(shared ? "-shared" : "python3.\(minor)") }
    }

    /// For the test log: what runs, one per line, then what is skipped and why
    /// ("skipped 3.14: could not provision (reason)").
    static var coverageReport: String {
        let present = Set(installed.map(\.minor))
        var lines = ["interpreters tested (\(installed.count)):"] + installed.map { "  \($0.label)  \($0.path)" }
        for minor in expectedMinors where !present.contains(minor) {
            let name = "3.\(minor)"
            let narrowed = ProcessInfo.processInfo.environment["SCALENE_TEST_INTERPRETERS"].map { "not selected (SCALENE_TEST_INTERPRETERS=\($0))" }
            lines.append("skipped \(name): " + (provisioningFailures[name] ?? narrowed ?? "not installed"))
        }
        if lines.count == installed.count + 1 { lines.append("none skipped") }
        return lines.joined(separator: "\n")
    }
}
