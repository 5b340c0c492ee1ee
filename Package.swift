// swift-tools-version: 6.1
import PackageDescription

// Release builds optimise across modules (the readers the sampler calls every tick are generic over
// their memory, for tests that read local bytes, and ran unspecialised from the Profiler module)
// and do not check exclusive access at run time (a call into the runtime for every mutation of a
// class's property). Callgrind, steady instructions per sampling tick on a one-thread target:
// 54 k -> 38 k with the first, 31 k -> 25 k with the second. Debug builds (the fuzzers) check.
let optimized: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization", "-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "scalene-attach",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "scalene-attach", targets: ["scalene-attach"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // What Swift cannot call directly: variadic ptrace, wait-status macros, process_vm_readv.
        .target(name: "CScaleneSys"),
        .systemLibrary(name: "CLibElf", providers: [.apt(["libelf-dev"])]),
        // The wire format shared with the injected C agent (header only; the agent includes it too).
        .target(name: "CAgentProtocol"),
        // perf_event_open, its mmap ring and a libunwind address space over copied stacks. libunwind
        // (remote API, libunwind-x86_64) and its liblzma dependency are linked statically, so the tool
        // needs neither at run time. Debian builds libunwind.a without -fPIC, so whatever links it is
        // a position-dependent executable (-no-pie), as Debian's own python3 is.
        .target(
            name: "CNativeStacks",
            linkerSettings: [.linkedLibrary("stdc++"), // __cxa_demangle
                             .unsafeFlags(["-Xclang-linker", "-no-pie",
                                           "-Xlinker", "-l:libunwind-x86_64.a", "-Xlinker", "-l:libunwind.a",
                                           "-Xlinker", "-l:liblzma.a"])]
        ),

        // Threads, locks and text formatting (printf numbers, JSON written and read, files, paths,
        // the environment) without Foundation, which would link ICU and most of the binary's size
        // and start-up time with it. No shipped module imports Foundation or FoundationEssentials.
        .target(name: "Threads", dependencies: ["CScaleneSys"], swiftSettings: optimized),
        .target(name: "TextFormatting", swiftSettings: optimized),
        .target(name: "RemoteProcess", dependencies: ["CScaleneSys", "TextFormatting"], swiftSettings: optimized),
        // libelf and its zlib are linked statically (Debian's libelf-dev and zlib1g-dev ship the
        // archives): the tool needs nothing beyond glibc at run time.
        .target(name: "ELFSymbols", dependencies: ["CLibElf", "RemoteProcess"],
                linkerSettings: [.unsafeFlags(["-Xlinker", "-l:libelf.a", "-Xlinker", "-l:libz.a"])]),
        .target(name: "CPythonLayouts", swiftSettings: optimized),
        .target(name: "PythonInspector", dependencies: ["RemoteProcess", "ELFSymbols", "CPythonLayouts"], swiftSettings: optimized),
        .target(name: "NativeStacks", dependencies: ["CNativeStacks", "ELFSymbols", "RemoteProcess", "CScaleneSys"], swiftSettings: optimized),
        .target(name: "Profiler", dependencies: ["RemoteProcess", "PythonInspector", "NativeStacks", "CScaleneSys", "TextFormatting"],
                swiftSettings: optimized),
        .target(name: "Injector", dependencies: ["RemoteProcess", "ELFSymbols", "PythonInspector", "Profiler", "CAgentProtocol", "CScaleneSys", "TextFormatting"], swiftSettings: optimized),
        // gzip for pprof (zlib's deflateInit2 is a macro); libz.so.1 is needed by libelf already.
        .target(name: "CZlib", linkerSettings: [.unsafeFlags(["-Xlinker", "-l:libz.a"])]),
        // pprof is encoded by hand (ProtobufWriter, PprofMessages): eight small messages.
        .target(name: "Reports", dependencies: ["Profiler", "PythonInspector", "CZlib", "TextFormatting"]),
        // --subprocesses: a process and its Python descendants, found as they appear.
        .target(name: "ProcessFamily", dependencies: ["RemoteProcess", "PythonInspector"], swiftSettings: optimized),
        // Long runs: atomic and rotated snapshot files, and the thread that writes them.
        .target(name: "Export", dependencies: ["CScaleneSys", "Threads", "TextFormatting"], swiftSettings: optimized),
        // --push: libcurl loaded with dlopen only when asked for (no link-time dependency), and
        // Pyroscope's ingest API, the spool and the thread that pushes.
        .target(name: "CCurl"),
        .target(name: "Push", dependencies: ["CCurl", "CScaleneSys", "Threads", "TextFormatting"], swiftSettings: optimized),
        // The readers that take remote bytes, driven by arbitrary input (libFuzzer and corpus replay).
        .target(name: "FuzzTargets", dependencies: ["RemoteProcess", "ELFSymbols", "CPythonLayouts", "PythonInspector", "Profiler", "Injector"]),
        .executableTarget(name: "scalene-fuzz", dependencies: ["FuzzTargets", "PythonInspector", "RemoteProcess", "CPythonLayouts"]),
        // The live view (`top`): terminal mode and keys (CTerminal), and screens rendered as a pure
        // function of a profile snapshot and the view's state.
        .target(name: "CTerminal"),
        .target(name: "LiveView", dependencies: ["CTerminal", "Profiler", "Reports", "TextFormatting"], swiftSettings: optimized),
        .executableTarget(
            name: "scalene-attach",
            dependencies: [
                "RemoteProcess", "PythonInspector", "Profiler", "Injector", "Reports", "LiveView", "NativeStacks", "CScaleneSys",
                "Export", "ProcessFamily", "Push", "Threads", "TextFormatting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "RemoteProcessTests", dependencies: ["RemoteProcess", "CScaleneSys"]),
        .testTarget(name: "ELFSymbolsTests", dependencies: ["ELFSymbols"]),
        .testTarget(name: "ProfilerTests", dependencies: ["Profiler"]),
        .testTarget(name: "NativeStacksTests", dependencies: ["NativeStacks", "RemoteProcess", "CScaleneSys"]),
        .testTarget(name: "CPythonLayoutsTests", dependencies: ["CPythonLayouts"]),
        .testTarget(name: "PythonInspectorTests", dependencies: ["PythonInspector", "RemoteProcess", "CPythonLayouts"]),
        .testTarget(name: "ReportsTests", dependencies: ["Reports", "Profiler", "CPythonLayouts"]),
        .testTarget(name: "ExportTests", dependencies: ["Export"]),
        .testTarget(name: "TextFormattingTests", dependencies: ["TextFormatting"]),
        .testTarget(name: "ProcessFamilyTests", dependencies: ["ProcessFamily"]),
        .testTarget(name: "PushUnitTests", dependencies: ["Push"]),
        .testTarget(name: "LiveViewTests", dependencies: ["LiveView", "Profiler", "CPythonLayouts"]),
        .testTarget(name: "IntegrationTests", dependencies: ["PythonInspector", "RemoteProcess", "ProcessFamily", "Profiler"]),
        .testTarget(name: "FuzzCorpusTests", dependencies: ["FuzzTargets", "RemoteProcess"]),
    ],
    swiftLanguageModes: [.v6]
)
