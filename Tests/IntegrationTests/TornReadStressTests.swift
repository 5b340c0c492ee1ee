import Foundation
import Testing

/// The sampler never stops the target, so it reads stacks while they change. Against a target that
/// churns threads, recurses 50–900 deep and unwinds with exceptions, at 2 kHz for 10 s, it must
/// survive, write a profile, and read all but a small share of its samples.
@Suite("torn-read stress", .serialized)
struct TornReadStressTests {
    /// Highest share of unreadable thread samples accepted (austin and Tachyon report under 1%).
    static let maximumUnreadableShare = 0.01

    @Test("2 kHz for 10 s against thread churn, deep recursion and exceptions", arguments: Interpreters.installed)
    func stress(_ python: Interpreter) throws {
        let directory = try TemporaryDirectory()
        let fixture = try FixtureProcess(python: python.path, script: Package.fixture("stress/torn_reads.py"),
                                         arguments: ["60"])
        defer { fixture.kill() }
        let json = directory.file("profile.json")
        let result = try runTool(["--pid", String(fixture.pid), "--rate", "2000", "--duration", "10", "--cpu-only",
                                  "--quiet", "--json", json, "--output", directory.file("table.txt")], timeout: 60)
        #expect(result.status == 0, "\(python): exit \(result.status): \(result.stderr)")
        #expect(fixture.isRunningUnstopped, "\(python): the target keeps running")
        let data = try #require(FileManager.default.contents(atPath: json), "\(python): no profile written")
        let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let sampler = try #require((document["scalene_attach"] as? [String: Any])?["sampler"] as? [String: Any])
        let samples = try #require(sampler["thread_samples"] as? Int)
        let unreadable = try #require(sampler["unreadable_samples"] as? Int)
        let retried = sampler["retried_samples"] as? Int ?? 0
        let ticks = sampler["ticks"] as? Int ?? 0
        let share = samples > 0 ? Double(unreadable) / Double(samples) : 1
        print(String(format: "torn-read stress on %@: %d ticks, %d thread samples, %d unreadable (%.3f%%), %d read again",
                     python.label, ticks, samples, unreadable, 100 * share, retried))
        #expect(samples > 1000, "\(python): the sampler took too few samples to judge")
        #expect(share < Self.maximumUnreadableShare, "\(python): \(unreadable) of \(samples) samples unreadable")
        let files = try #require(document["files"] as? [String: Any])
        #expect(files.keys.contains { $0.hasSuffix("torn_reads.py") }, "\(python): the profile has the fixture's lines")
    }
}
