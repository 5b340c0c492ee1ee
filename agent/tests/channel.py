"""The attacher's side of the agent channel, for tests: a ctypes mirror of
Sources/CAgentProtocol/include/scalene_agent_protocol.h (the only place the tests spell the layout;
`make test` checks it byte for byte against the C header through build/agent-tests/protocol_layout),
and the per-version configuration the attacher would pass (frame layout, pymalloc constants).

Standard library only; runs on CPython 3.8 and later.
"""
import ctypes
import json
import os

MAGIC = 0x314C454E45434153  # "SCALENE1"
PROTOCOL_VERSION = 3
MAX_FRAMES = 64
MESSAGE_SIZE = 160

STATE_NONE, STATE_STARTING, STATE_ARMED, STATE_DETACHED, STATE_ORPHANED, STATE_FAILED = range(6)
STATE_NAMES = ["NONE", "STARTING", "ARMED", "DETACHED", "ORPHANED", "FAILED"]
COMMAND_RUN, COMMAND_DETACH = 0, 1
SAMPLE_MALLOC, SAMPLE_COPY, SAMPLE_SAMPLED_FREE, SAMPLE_SAMPLED_MOVE = 1, 3, 4, 5
ORIGIN_NONE, ORIGIN_PYTHON, ORIGIN_NATIVE = 0, 1, 2
FLAG_TRUNCATED, FLAG_FINALIZING, FLAG_UNTRACKED, FLAG_GROWTH = 1, 2, 4, 8

u32, i32, u64 = ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64


class FrameLayout(ctypes.Structure):
    _fields_ = [
        ("tstate_frame", i32),
        ("cframe_current_frame", i32),
        ("frame_previous", i32),
        ("frame_code", i32),
        ("frame_instr", i32),
        ("frame_instr_size", i32),
        ("frame_owner", i32),
        ("owner_cstack", i32),
        ("owner_interpreter", i32),
        ("code_tag_bits", i32),
        ("tstate_thread_id", i32),
    ]


class AgentConfig(ctypes.Structure):
    _fields_ = [
        ("runtime_address", u64),
        ("memory_window", u64),
        ("copy_window", u64),
        ("python_hex_version", u32),
        ("pymalloc_pool_size", u32),
        ("pymalloc_max_small", u32),
        ("pymalloc_alignment", u32),
        ("heartbeat_timeout_ms", u32),
        ("runtime_finalizing", u32),
        ("frames", FrameLayout),
    ]


class RawFrame(ctypes.Structure):
    _fields_ = [("code", u64), ("instr", u64)]


class Sample(ctypes.Structure):
    _fields_ = [
        ("sequence", u64),
        ("kind", u32),
        ("tid", u32),
        ("timestamp_ns", u64),
        ("bytes", u64),
        ("weight", u64),
        ("pointer", u64),
        ("moved_to", u64),
        ("origin", u32),
        ("flags", u32),
        ("frame_count", u32),
        ("reserved", u32),
        ("frames", RawFrame * MAX_FRAMES),
    ]


class Channel(ctypes.Structure):
    _fields_ = [
        ("magic", u64),
        ("protocol_version", u32),
        ("header_size", u32),
        ("record_size", u32),
        ("capacity", u32),
        ("config", AgentConfig),
        ("heartbeat_ns", u64),
        ("command", u32),
        ("reserved1", u32),
        ("state", u32),
        ("error_code", i32),
        ("agent_tid", u64),
        ("write_index", u64),
        ("read_index", u64),
        ("dropped", u64),
        ("hooked_slots", u64),
        ("hooked_objects", u64),
        ("python_hooks", u64),
        ("unsized_reallocs", u64),
        ("pool_table_full", u64),
        ("leak_table_full", u64),
        ("footprint_sequence", u64),
        ("footprint_bytes", u64),
        ("footprint_peak_bytes", u64),
        ("footprint_ns", u64),
        ("footprint_readings", u64),
        ("python_arena_bytes", u64),
        ("finalizing_ns", u64),
        ("message", ctypes.c_char * MESSAGE_SIZE),
        ("reserved2", ctypes.c_uint8 * 64),
    ]


def mirror_layout():
    """{"struct.field": [offset, size]} for every mirrored field, as protocol_layout prints it."""
    out = {}
    for cname, cls in (("scalene_frame_layout", FrameLayout), ("scalene_agent_config", AgentConfig),
                       ("scalene_raw_frame", RawFrame), ("scalene_sample", Sample),
                       ("scalene_channel", Channel)):
        out["sizeof." + cname] = [0, ctypes.sizeof(cls)]
        for name, _ in cls._fields_:
            f = getattr(cls, name)
            out["%s.%s" % (cname, name)] = [f.offset, f.size]
    return out


# ------------------------------------------------------------------------------------------------
# Per-version configuration.
#
# FALLBACK LAYOUTS (from /work/shared/cpython-facts.md, probed on 3.8.18 ... 3.13.0). This is the
# one place the tests hard-code CPython offsets: they are used only while
# fixtures/generators/layouts.json (generated from each interpreter's own headers) does not exist
# or does not describe the running version.
FACTS_FRAMES = {
    # minor: (tstate_frame, cframe_current_frame, frame_previous, frame_code, frame_instr,
    #         frame_instr_size, frame_owner, owner_cstack, owner_interpreter, code_tag_bits,
    #         tstate_thread_id)
    (3, 8): (24, -1, 24, 32, 104, 4, -1, -1, -1, 0, 176),
    (3, 9): (24, -1, 24, 32, 104, 4, -1, -1, -1, 0, 176),
    (3, 10): (24, -1, 24, 32, 96, 4, -1, -1, -1, 0, 176),
    (3, 11): (56, 8, 48, 32, 56, 8, -1, -1, -1, 0, 152),   # 3.11 has no C-stack shim frames (is_entry instead)
    (3, 12): (56, 0, 8, 0, 56, 8, 70, 3, -1, 0, 136),
    (3, 13): (72, -1, 8, 0, 56, 8, 70, 3, -1, 0, 152),
}
FACTS_PYMALLOC = {  # minor: (pool size, small request threshold, alignment)
    (3, 8): (4096, 512, 16),
    (3, 9): (4096, 512, 16),
    (3, 10): (16384, 512, 16),
    (3, 11): (16384, 512, 16),
    (3, 12): (16384, 512, 16),
    (3, 13): (16384, 512, 16),
}
# END OF FALLBACK LAYOUTS

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAYOUTS_JSON = os.path.join(REPO_ROOT, "fixtures", "generators", "layouts.json")


def _from_json(version_info):
    """(frames, pymalloc, source) from layouts.json (written by
    fixtures/generators/generate_layouts.py; field names are the Swift labels of
    Sources/CPythonLayouts/Layout.swift), or None when it is absent or has no such version.
    An entry for the exact micro version is preferred (Debian's 3.11.2 vs pyenv's 3.11.7)."""
    if not os.path.exists(LAYOUTS_JSON):
        return None
    try:
        with open(LAYOUTS_JSON) as f:
            entries = json.load(f).get("interpreters", [])
    except (OSError, ValueError, AttributeError):
        return None
    exact, minor = None, None
    for e in entries:
        v = e.get("layout", {}).get("version", {})
        key = (v.get("major"), v.get("minor"), v.get("micro"))
        if key == tuple(version_info[:3]) and exact is None:
            exact = e
        if key[:2] == tuple(version_info[:2]) and minor is None:
            minor = e
    e = exact or minor
    if e is None:
        return None
    try:
        thread, frame, alloc = e["layout"]["thread"], e["layout"]["frame"], e["allocator"]
        instr_size = 4 if frame["instructionField"] in ("lastiBytes", "lastiCodeUnits") else 8
        cstack = frame.get("ownerCStack")
        if cstack is None:
            cstack = e.get("frameOwnerCStack")
        interp = frame.get("ownerInterpreter")
        # Frames are skipped by owner only where the version has frames of the interpreter's own
        # (3.12+: C-stack shims; 3.14+: entry, sentinel and base frames).
        skipping = cstack is not None or interp is not None
        owner = frame["owner"] if skipping and frame.get("owner") is not None else -1
        cframe = thread.get("cframeCurrentFrame")
        frames = (thread["frame"], -1 if cframe is None else cframe, frame["previous"],
                  frame["code"], frame["instruction"], instr_size, owner,
                  cstack if owner >= 0 and cstack is not None else -1,
                  interp if owner >= 0 and interp is not None else -1,
                  frame.get("codeTagBits", 0), thread["threadID"])
        pymalloc = (alloc["poolSize"], alloc["smallRequestThreshold"], alloc["alignment"])
    except (KeyError, TypeError):
        return None
    v = e["layout"]["version"]
    return frames, pymalloc, "fixtures/generators/layouts.json (%d.%d.%d%s)" % (
        v["major"], v["minor"], v["micro"], "" if e is exact else ", same minor")


def version_config(version_info):
    """(frames tuple, (pool, max_small, alignment), source) for this interpreter."""
    minor = (version_info[0], version_info[1])
    got = _from_json(version_info)
    if got is not None:
        return got
    if minor not in FACTS_FRAMES:
        raise KeyError("no frame layout for Python %d.%d" % minor)
    return FACTS_FRAMES[minor], FACTS_PYMALLOC[minor], "cpython-facts fallback (agent/tests/channel.py)"
