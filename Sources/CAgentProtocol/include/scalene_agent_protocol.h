// The channel between scalene-attach and the agent it injects into a target process.
//
// The attacher creates a shared-memory file holding one `scalene_channel` followed by a ring of
// `scalene_sample` records, fills in the configuration, and passes the file's path to the agent's
// start function. The agent maps it, reports its state, and writes samples; the attacher reads them,
// beats the heartbeat and asks the agent to detach. This header is the only definition of that
// format: the agent (plain C, built by make) and the Swift side (through the CAgentProtocol module)
// both include it.
#ifndef SCALENE_AGENT_PROTOCOL_H
#define SCALENE_AGENT_PROTOCOL_H

#include <stdint.h>

#define SCALENE_CHANNEL_MAGIC 0x314c454e45434153ull /* "SCALENE1", little-endian */
#define SCALENE_PROTOCOL_VERSION 1u
#define SCALENE_MAX_FRAMES 64
#define SCALENE_MESSAGE_SIZE 160
#define SCALENE_AGENT_START_SYMBOL "scalene_agent_start"

// What the agent is doing; written by the agent only.
enum scalene_agent_state {
    SCALENE_AGENT_NONE = 0,      // not started yet
    SCALENE_AGENT_STARTING = 1,  // mapped the channel, waiting for the GIL
    SCALENE_AGENT_ARMED = 2,     // hooks installed, sampling
    SCALENE_AGENT_DETACHED = 3,  // every hook restored on request; the agent thread has ended
    SCALENE_AGENT_ORPHANED = 4,  // heartbeat lost: every hook restored by the agent itself
    SCALENE_AGENT_FAILED = 5,    // could not arm; `message` says why; nothing is installed
};

// What the attacher wants; written by the attacher only.
enum scalene_agent_command {
    SCALENE_COMMAND_RUN = 0,
    SCALENE_COMMAND_DETACH = 1,
};

// How the agent finds the Python frames of the thread it runs on. Offsets are in bytes; -1 marks a
// field the interpreter version does not have. The agent copies the raw fields; the attacher turns
// them into file, function and line with the same code it uses for stacks.
struct scalene_frame_layout {
    // PyThreadState: offset of the frame pointer (3.8-3.10 `frame`, 3.13+ `current_frame`) or of the
    // `cframe` pointer (3.11-3.12).
    int32_t tstate_frame;
    // _PyCFrame: offset of `current_frame`, or -1 when `tstate_frame` already points at the frame.
    int32_t cframe_current_frame;
    int32_t frame_previous;   // f_back / previous
    int32_t frame_code;       // f_code / f_executable
    int32_t frame_instr;      // f_lasti / prev_instr / instr_ptr
    int32_t frame_instr_size; // 4 for an int f_lasti, 8 for an instruction pointer
    int32_t frame_owner;      // 8-bit owner field (3.12+), -1 if none
    int32_t owner_cstack;     // owner value of the interpreter's C-stack shim frames
};

struct scalene_agent_config {
    uint64_t runtime_address;     // &_PyRuntime in the target
    uint64_t memory_window;       // bytes of net allocation (or freeing) per memory sample; 0: no memory hooks
    uint64_t copy_window;         // bytes copied per copy sample; 0: no copy hooks
    uint32_t python_hex_version;  // PY_VERSION_HEX of the target
    uint32_t pymalloc_pool_size;  // POOL_SIZE of the target's small-object allocator
    uint32_t pymalloc_max_small;  // largest request pymalloc serves itself (SMALL_REQUEST_THRESHOLD)
    uint32_t pymalloc_alignment;  // pymalloc's size-class granularity (ALIGNMENT)
    uint32_t heartbeat_timeout_ms;// disarm when the attacher's heartbeat is older than this
    uint32_t runtime_finalizing;  // offset in _PyRuntime of the pointer that becomes nonzero when
                                  // Py_Finalize starts (no frames are read from then on); 0: unknown
    struct scalene_frame_layout frames;
};

// Sample kinds.
enum scalene_sample_kind {
    SCALENE_SAMPLE_MALLOC = 1,       // net allocation crossed the window
    SCALENE_SAMPLE_FREE = 2,         // net freeing crossed the window
    SCALENE_SAMPLE_COPY = 3,         // bytes copied by memcpy/memmove crossed the copy window
    SCALENE_SAMPLE_SAMPLED_FREE = 4, // the allocation that triggered an earlier MALLOC sample was freed
};
// A MALLOC or COPY sample carries the frames of the thread that allocated or copied; FREE and
// SAMPLED_FREE samples carry none (a free can run while the thread's own state is being deleted).
// frame_count 0 on a MALLOC or COPY sample: the thread has no Python thread state (native bucket).

struct scalene_raw_frame {
    uint64_t code;   // address of the code object
    uint64_t instr;  // the raw instruction field: an instruction pointer, or f_lasti (a C int)
                     // sign-extended, so that -1 ("not started") stays -1
};

struct scalene_sample {
    uint64_t sequence;        // ring index + 1 once the record is complete (release/acquire)
    uint32_t kind;            // enum scalene_sample_kind
    uint32_t tid;             // kernel thread id
    uint64_t timestamp_ns;    // CLOCK_MONOTONIC
    uint64_t bytes;           // net bytes allocated (MALLOC), freed (FREE), copied (COPY); SAMPLED_FREE:
                              // size of the freed block (0 if unknown)
    uint64_t python_bytes;    // of the bytes allocated since the previous MALLOC/FREE sample of this thread,
                              // those from Python's allocator (set on MALLOC and FREE samples)
    uint64_t native_bytes;    // ... and those from native code (malloc and friends)
    uint64_t pointer;         // MALLOC: the allocation that crossed the window; SAMPLED_FREE: that pointer
    uint32_t frame_count;     // 0: the thread has no Python frame (native bucket)
    uint32_t flags;           // bit 0: stack truncated at SCALENE_MAX_FRAMES; bit 1: no frames read
                              // because the interpreter is finalizing
    struct scalene_raw_frame frames[SCALENE_MAX_FRAMES]; // innermost first
};

struct scalene_channel {
    uint64_t magic;               // SCALENE_CHANNEL_MAGIC
    uint32_t protocol_version;    // SCALENE_PROTOCOL_VERSION
    uint32_t header_size;         // sizeof(struct scalene_channel); records start here
    uint32_t record_size;         // sizeof(struct scalene_sample)
    uint32_t capacity;            // number of records in the ring (a power of two)
    struct scalene_agent_config config;

    // Attacher -> agent.
    uint64_t heartbeat_ns;        // attacher's CLOCK_MONOTONIC at its last beat (atomic). The agent disarms
                                  // (ORPHANED) when this value has not changed for heartbeat_timeout_ms
                                  // (default 1500) by the agent's own clock, so beat well within it
    uint32_t command;             // enum scalene_agent_command (atomic)
    uint32_t reserved1;

    // Agent -> attacher.
    uint32_t state;               // enum scalene_agent_state (atomic)
    int32_t error_code;           // errno-style detail when FAILED
    uint64_t agent_tid;           // the agent thread's kernel tid (to leave it out of profiles)
    uint64_t write_index;         // next ring index to reserve (atomic)
    uint64_t read_index;          // next ring index the attacher will read (atomic, attacher-owned)
    uint64_t dropped;             // samples lost because the ring was full (atomic)
    uint64_t hooked_slots;        // GOT slots currently redirected
    uint64_t hooked_objects;      // loaded objects whose GOT was patched
    uint64_t python_hooks;        // 1 when the Python allocator domains are wrapped
    uint64_t untracked_frees;     // Python-allocator frees of blocks whose size was unknown (pre-attach pools)
    uint64_t pool_table_full;     // small-object pools not tracked because the pool table was full
    uint64_t leak_table_full;     // sampled allocations not tracked for leaks because the table was full
    char message[SCALENE_MESSAGE_SIZE]; // NUL-terminated reason when FAILED, or a note (ARMED, DETACHED, ORPHANED)
    uint8_t reserved2[64];
};

#endif // SCALENE_AGENT_PROTOCOL_H
