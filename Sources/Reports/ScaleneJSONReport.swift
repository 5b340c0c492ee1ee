import Profiler
import TextFormatting
#if canImport(Glibc)
import Glibc
#endif

/// Writes a profile in Scalene's JSON format (validated by `scalene.scalene_json.ScaleneJSONSchema`
/// and rendered by `scalene view`). Fields for mechanisms we do not have (GPU, async) carry their
/// neutral values.
public struct ScaleneJSONReport {
    public var profile: Profile
    public var sources: SourceFiles
    public var reduced = false

    public init(profile: Profile, sources: SourceFiles, reduced: Bool = false) {
        self.profile = profile
        self.sources = sources
        self.reduced = reduced
    }

    public func render() -> [UInt8] {
        JSONWriter.bytes(document())
    }

    func document() -> [String: Any] {
        let total = profile.totalTime.total
        let memory = profile.memory
        let program = profile.program ?? profile.arguments.first ?? ""
        let entrypoint = Path.directory(of: program)
        var files = [String: Any]()
        let lines = profile.lines
        let functions = profile.functions
        for file in profile.files {
            files[file] = fileDetail(file, lines: lines, functions: functions, total: total)
        }
        var document: [String: Any] = [
            "alloc_samples": (memory?.mallocSamples ?? 0) + (memory?.freeSamples ?? 0),
            "args": Array(profile.arguments.dropFirst()),
            "async_profile": false,
            "elapsed_time_sec": max(0, profile.elapsed),
            "start_time_absolute": max(0, profile.startEpoch),
            "start_time_perf": max(0, profile.startMonotonic),
            "entrypoint_dir": entrypoint,
            "filename": program,
            "program": program,
            "files": files,
            "gpu": false,
            "gpu_device": "",
            "growth_rate": memory?.growthRate ?? 0,
            "max_footprint_mb": max(0, memory?.peakFootprintMB ?? 0),
            "max_footprint_python_fraction": max(0, memory?.peakPythonFraction ?? 0),
            "max_footprint_fname": memory?.peakLine?.file as Any? ?? JSONNull(),
            "max_footprint_lineno": (memory?.peakLine.map { max(1, $0.line) }) as Any? ?? JSONNull(),
            "memory": memory != nil,
            "samples": (memory?.footprint ?? []).map { [Double($0.nanoseconds), max(0, $0.megabytes)] },
            "stacks": stacks(total: total),
            "native_allocations_mb": max(0, memory?.nativeBucketMB ?? 0),
            "memory_stacks": [Any](),
            "combined_stacks": combinedStacks(),
            "combined_stacks_timeline": [Any](),
        ]
        document["main_thread_id"] = Int(profile.pid)
        document["scalene_attach"] = extras()
        return document
    }

    /// What Scalene's format has no place for: how the profile was taken. Scalene's model ignores
    /// unknown keys.
    func extras() -> [String: Any] {
        let stats = profile.statistics
        var extras: [String: Any] = [
            "pid": Int(profile.pid),
            "processes": profile.processCount,
            "python_version": profile.pythonVersion.description,
            "command_line": profile.arguments,
            "sampler": [
                "requested_rate_hz": stats.requestedRate,
                "ticks": stats.ticks,
                "late_ticks": stats.lateTicks,
                "failed_ticks": stats.failedTicks,
                "thread_samples": stats.threadSamples,
                "unreadable_samples": stats.unreadableSamples,
                "retried_samples": stats.retriedSamples,
                "unmapped_thread_samples": stats.unmappedThreadSamples,
                "idle_thread_samples": stats.idleThreadSamples,
                "sampler_cpu_seconds": stats.samplerCPUSeconds,
            ] as [String: Any],
            "threads": profile.threads.map { thread -> [String: Any] in
                let time = thread.total
                return ["tid": thread.tid.map { Int($0) } as Any? ?? JSONNull(),
                        "namespace_tid": thread.namespaceTID.map { Int($0) } as Any? ?? JSONNull(),
                        "name": thread.name as Any? ?? JSONNull(),
                        "idle": thread.isIdle, "python_seconds": time.python, "native_seconds": time.native,
                        "system_seconds": time.system, "gil_wait_seconds": time.gilWait,
                        "gil_share": thread.samples > 0
                            ? Double(thread.gilSamples) / Double(thread.samples) : 0]
            },
        ]
        if let reason = profile.emptyReason { extras["empty_because"] = reason }
        switch profile.classification {
        case .opcodeAndGIL: extras["cpu_classification"] = "opcode-and-gil"
        case .instructionPointer(let method): extras["cpu_classification"] = "instruction-pointer (\(method.rawValue))"
        }
        extras["gil_wait_measured"] = profile.gilWaitMeasured
        if let native = profile.native {
            let stats = native.statistics
            extras["native"] = [
                "method": native.method.rawValue, "samples": stats.samples, "lost": stats.lost,
                "mean_depth": stats.samples > 0 ? Double(stats.frames) / Double(stats.samples) : 0,
                "failed_threads": stats.failedThreads, "stopped_seconds": stats.stoppedSeconds,
                "sampled_intervals": native.sampledIntervals, "carried_intervals": native.carriedIntervals,
                "opcode_rule_intervals": native.opcodeRuleIntervals, "late_intervals": native.lateIntervals,
                "fallback_reason": native.fallbackReason as Any? ?? JSONNull(),
            ] as [String: Any]
        }
        switch profile.end {
        case .targetExited: extras["ended"] = "target exited"
        case .durationElapsed: extras["ended"] = "duration"
        case .interrupted(let signal): extras["ended"] = "signal \(signal)"
        }
        if let memory = profile.memory {
            let agent = memory.agent
            extras["memory"] = [
                "window_bytes": Int(memory.window), "copy_window_bytes": Int(memory.copyWindow),
                "malloc_samples": memory.mallocSamples, "free_samples": memory.freeSamples,
                "copy_samples": memory.copySamples, "total_allocated_mb": memory.totalAllocatedMB,
                "copied_mb": memory.copiedMB, "current_footprint_mb": memory.currentFootprintMB,
                "footprint_change_mb": memory.footprintChangeMB, "untracked_samples": memory.untrackedSamples,
                "exited_after_seconds": memory.exitedAfterSeconds as Any? ?? JSONNull(),
                "agent": [
                    "safe_point": agent.safePoint, "injection_seconds": agent.injectionSeconds,
                    "armed_seconds": agent.armedSeconds, "detach_seconds": agent.detachSeconds,
                    "detached_cleanly": agent.detachedCleanly, "hooked_slots": agent.hookedSlots,
                    "hooked_objects": agent.hookedObjects, "python_allocator_hooked": agent.pythonAllocatorHooked,
                    "dropped_samples": agent.droppedSamples,
                    "untracked_allocations": agent.untrackedAllocations, "untracked_pools": agent.untrackedPools,
                    "unsized_reallocs": agent.unsizedReallocs, "footprint_readings": agent.footprintReadings,
                ] as [String: Any],
            ] as [String: Any]
        }
        return extras
    }

    func fileDetail(_ file: String, lines: [SourceLine: LineTime], functions: [FunctionID: TimeSplit],
                    total: Double) -> [String: Any] {
        let source = sources.lines(of: file)
        let regions = SourceRegions(lines: source)
        let memoryLines = profile.memory?.lines ?? [:]
        let fileLines = lines.filter { $0.key.file == file }
        let known = Set(fileLines.keys.map(\.line)).union(memoryLines.keys.filter { $0.file == file }.map(\.line))
        var details = [[String: Any]]()
        for number in SourceFiles.lineNumbers(sourceCount: source.count, withData: known) {
            let key = SourceLine(file: file, line: number)
            let time = fileLines[key]
            let memory = memoryLines[key]
            if reduced && time == nil && memory == nil { continue }
            var detail = metrics(time: time?.time, cpu: time?.cpu ?? 0, sampleTimes: time?.sampleTimes ?? [],
                                 memory: memory, total: total)
            // Ours, beside Scalene's fields (its model ignores keys it does not know).
            if let time, time.nativeSamples > 0 {
                detail["native_functions"] = time.hottestNative(5).map {
                    ["function": $0.function.name, "object": $0.function.object, "share": $0.share] as [String: Any]
                }
            }
            detail["line"] = escape(number <= source.count ? source[number - 1] + "\n" : "\n")
            detail["lineno"] = number
            let region = regions.region(of: number)
            let loop = regions.outermostLoop(of: number)
            let function = regions.function(of: number)
            detail["start_region_line"] = max(1, region.start)
            detail["end_region_line"] = max(1, region.end)
            detail["start_outermost_loop"] = max(1, loop.start)
            detail["end_outermost_loop"] = max(1, loop.end)
            detail["start_function_line"] = max(0, function.start)
            detail["end_function_line"] = max(0, function.end)
            details.append(detail)
        }
        var functionDetails = [[String: Any]]()
        let functionMemory = profile.memory?.functions ?? [:]
        for (function, time) in functions.filter({ $0.key.file == file }).sorted(by: { $0.key < $1.key }) {
            let memory = functionMemory[function]
            let cpu = fileLines.values.filter { $0.function == function }.reduce(0.0) { $0 + $1.cpu }
            var detail = metrics(time: time, cpu: cpu, sampleTimes: [], memory: memory, total: total)
            detail["line"] = function.name
            detail["lineno"] = max(1, function.firstLine)
            functionDetails.append(detail)
        }
        var leaks = [String: Any]()
        for leak in profile.memory?.leaks ?? [] where leak.line.file == file {
            leaks[String(leak.line.line)] = ["likelihood": max(0, leak.likelihood),
                                             "velocity_mb_s": max(0, leak.velocityMBPerSecond)]
        }
        let fileTime = fileLines.values.reduce(0.0) { $0 + $1.time.total }
        return [
            "functions": functionDetails,
            "imports": [String](),
            "leaks": leaks,
            "lines": details,
            "percent_cpu_time": total > 0 ? 100 * fileTime / total : 0,
        ]
    }

    /// The metrics shared by lines and functions.
    func metrics(time: TimeSplit?, cpu: Double, sampleTimes: [Double], memory: MemoryLine?, total: Double) -> [String: Any] {
        let time = time ?? .zero
        func share(_ value: Double) -> Double { total > 0 ? min(100, max(0, 100 * value / total)) : 0 }
        var python = share(time.python)
        var native = share(time.native)
        var system = share(time.system)
        // Rounding must never push the sum over 100 (the schema checks it).
        let sum = python + native + system
        if sum > 100 { python *= 100 / sum; native *= 100 / sum; system *= 100 / sum }
        let totalAllocated = profile.memory?.totalAllocatedMB ?? 0
        let memory = memory ?? MemoryLine()
        let peak = max(0, memory.peakMB)
        return [
            "n_cpu_percent_python": python,
            "n_cpu_percent_c": native,
            "n_sys_percent": system,
            "n_gil_wait_percent": min(system, share(time.gilWait)),
            "n_core_utilization": time.total > 0 ? min(1, max(0, cpu / time.total)) : 0,
            "cpu_samples_list": sampleTimes,
            "n_malloc_mb": max(0, memory.allocatedMB),
            "n_mallocs": memory.mallocSamples,
            "n_avg_mb": min(peak, max(0, memory.averageMB)),
            "n_peak_mb": peak,
            "n_growth_mb": peak,
            "n_python_fraction": min(1, max(0, memory.pythonFraction)),
            "n_usage_fraction": totalAllocated > 0 ? min(1, max(0, memory.allocatedMB / totalAllocated)) : 0,
            "memory_samples": memory.timeline.map { [Double($0.nanoseconds), max(0, $0.megabytes)] },
            "n_copy_mb_s": profile.elapsed > 0 ? max(0, memory.copiedMB / profile.elapsed) : 0,
            "n_gpu_percent": 0,
            "n_gpu_avg_memory_mb": 0,
            "n_gpu_peak_memory_mb": 0,
            "n_async_await_percent": 0,
            "n_async_concurrency_mean": 0,
            "n_async_concurrency_peak": 0,
            "async_task_names": [String](),
            "is_coroutine": false,
        ]
    }

    /// Scalene's "stacks": frames as "file function:line;", outermost first, with time shares. Python
    /// frames only (merged native stacks that differ only below Python are summed here; they are
    /// kept apart in `combined_stacks`).
    func stacks(total: Double) -> [[Any]] {
        var pythonOnly = [[StackFrame]: StackTime]()
        for (stack, value) in profile.stacks { pythonOnly[stack.filter { !$0.isNative }, default: StackTime()] += value }
        return pythonOnly.sorted { $0.value.time.total > $1.value.time.total }.prefix(2000).map { stack, value in
            let frames = stack.map { "\($0.file) \($0.function):\($0.line);" }
            let stats: [String: Any] = [
                "count": value.samples,
                "python_time": total > 0 ? value.time.python / total : 0,
                "c_time": total > 0 ? value.time.native / total : 0,
                // Ours (Scalene's viewer reads the three above): the stack's system share, so that a
                // saved profile keeps the whole split (`scalene-attach view --html`).
                "system_time": total > 0 ? value.time.system / total : 0,
                "cpu_samples": total > 0 ? (value.time.python + value.time.native) / total : 0,
            ]
            return [frames, stats]
        }
    }

    /// Scalene's own stitched Python + native stacks (`combined_stacks`, frames shaped like its
    /// `CombinedStackFrame`, outermost first, with sample counts): only stacks with a native frame.
    func combinedStacks() -> [[Any]] {
        profile.stacks.filter { $0.key.contains(where: \.isNative) && $0.value.samples > 0 }
            .sorted { $0.value.samples > $1.value.samples }.prefix(2000).map { stack, value in
                let frames: [[String: Any]] = stack.map { frame in
                    frame.isNative
                        ? ["kind": "native", "display_name": frame.function, "filename_or_module": frame.file,
                           "line": JSONNull(), "ip": JSONNull(), "offset": JSONNull()]
                        : ["kind": "py", "display_name": frame.function, "filename_or_module": frame.file,
                           "line": max(0, frame.line), "ip": JSONNull(), "offset": JSONNull()]
                }
                return [frames, value.samples]
            }
    }

    /// Scalene's viewer expects these characters escaped in source lines (it unescapes them).
    func escape(_ line: String) -> String {
        line.replacingAll("&", with: "\\u0026").replacingAll("<", with: "\\u003c")
            .replacingAll(">", with: "\\u003e")
    }
}
