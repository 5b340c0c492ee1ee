import ArgumentParser
import Export
import Reports
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

struct ViewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "view",
        _superCommandName: ScaleneAttach.commandName, // see ScaleneAttach.main
        abstract: "Turn a saved profile (our Scalene JSON) into a self-contained HTML report.",
        discussion: """
        Reads a profile written with --json (or --format json) and writes one HTML file with \
        everything inside: the run's facts, the hottest lines, per-file line tables with source, a \
        flame graph of the sampled stacks, the memory footprint over time and the threads. The \
        page loads nothing from anywhere. Profiles written by Scalene itself are read too (without \
        the facts only scalene-attach records).

        Example:
          scalene-attach view profile.json --html profile.html
        """
    )

    @Argument(help: ArgumentHelp("A profile in Scalene's JSON format.", valueName: "profile.json"))
    var profile: String

    @Option(help: ArgumentHelp("Write the HTML report here.", valueName: "file"))
    var html: String

    func run() throws {
        let data: [UInt8]
        do { data = try FileSystem.readFile(profile) } catch {
            fail(Failure("cannot read \(profile): \(error.reason)", .badProfile))
        }
        let saved: SavedProfile
        do { saved = try SavedProfile.decode(data) } catch {
            fail(Failure("\(profile) is \(error.description)", .badProfile))
        }
        do { try OutputFile(path: html).write(HTMLReport(profile: saved).render()) } catch {
            fail(Failure("\(error)", .internalError))
        }
    }
}
