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
#define SCALENE_PROTOCOL_VERSION 3u  /* 3: per-call sampling (size, weight, origin), the absolute footprint,
                                        finalizing, moved allocations; 2: owner_interpreter, code_tag_bits,
                                        tstate_thread_id */
#define SCALENE_MAX_FRAMES 64
#define SCALENE_MESSAGE_SIZE 160
#define SCALENE_AGENT_START_SYMBOL "scalene_agent_start"        // int (const char *channel_path)
#define SCALENE_AGENT_START_FD_SYMBOL "scalene_agent_start_fd"  // int (int channel_fd): mapped, then closed

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
    int32_t owner_cstack;     // owner value of the interpreter's C-stack shim frames (3.12-3.14), -1 if none
    int32_t owner_interpreter;// owner value of entry/sentinel/base frames (3.14+: FRAME_OWNED_BY_INTERPRETER), -1 if none;
                              // frames with either owner hold no code object and are skipped
    int32_t code_tag_bits;    // low bits of the code word that are tags (3.14+: _PyStackRef, Py_TAG_BITS); 0 before
    int32_t tstate_thread_id; // PyThreadState.thread_id (the pthread_t): lets the agent check, on every
                              // thread, where it finds a thread's own state (3.15+ keeps it in TLS)
};

struct scalene_agent_config {
    uint64_t runtime_address;     // &_PyRuntime in the target
    uint64_t memory_window;       // mean bytes allocated between two allocation samples (each thread draws
                                  // its countdowns from an exponential distribution); 0: no memory hooks
    uint64_t copy_window;         // mean bytes copied between two copy samples; 0: no copy hooks
    uint32_t python_hex_version;  // PY_VERSION_HEX of the target
    uint32_t pymalloc_pool_size;  // POOL_SIZE of the target's small-object allocator
    uint32_t pymalloc_max_small;  // largest request pymalloc serves itself (SMALL_REQUEST_THRESHOLD)
    uint32_t pymalloc_alignment;  // pymalloc's size-class granularity (ALIGNMENT)
    uint32_t heartbeat_timeout_ms;// disarm when the attacher's heartbeat is older than this
    uint32_t runtime_finalizing;  // offset in _PyRuntime of the pointer that becomes nonzero when
                                  // Py_Finalize starts (no frames are read from then on, and samples
                                  // are flagged); 0: unknown
    struct scalene_frame_layout frames;
};

// Sample kinds. Allocations and copies are sampled per call: each thread keeps a byte countdown
// drawn from an exponential distribution whose mean is the window; every call subtracts its size,
// and the call that takes it below zero is sampled, then a fresh countdown is drawn. A call of s
// bytes is thus sampled with probability p = 1 - exp(-s / window), and its sample carries the weight
// s / p (rounded to bytes): the expected weight of every call is its size.
enum scalene_sample_kind {
    SCALENE_SAMPLE_MALLOC = 1,       // an allocation was sampled; it is tracked until SAMPLED_FREE
                                     // (unless flag SCALENE_SAMPLE_UNTRACKED)
    // 2 was FREE (net freeing crossed a threshold) before protocol 3; no longer sent.
    SCALENE_SAMPLE_COPY = 3,         // a memcpy/memmove was sampled
    SCALENE_SAMPLE_SAMPLED_FREE = 4, // a tracked (sampled) allocation was freed
    SCALENE_SAMPLE_SAMPLED_MOVE = 5, // realloc moved a tracked allocation from `pointer` to `moved_to`
};
// Where an allocation was made (MALLOC samples): through one of Python's allocator domains (PyMem_*,
// PyObject_*, PyMem_Raw*), or by native code calling malloc & co. directly.
enum scalene_sample_origin {
    SCALENE_ORIGIN_NONE = 0,
    SCALENE_ORIGIN_PYTHON = 1,
    SCALENE_ORIGIN_NATIVE = 2,
};
// Sample flags.
#define SCALENE_SAMPLE_TRUNCATED 1u   // the stack was cut at SCALENE_MAX_FRAMES
#define SCALENE_SAMPLE_FINALIZING 2u  // taken once _PyRuntime._finalizing was set (no frames read)
#define SCALENE_SAMPLE_UNTRACKED 4u   // MALLOC: the sampled-pointer table was full; no SAMPLED_FREE follows
#define SCALENE_SAMPLE_GROWTH 8u      // MALLOC: realloc grew a block; the sample is its growth, and the
                                      // block may already be tracked from an earlier sample
// A MALLOC or COPY sample carries the frames of the thread that allocated or copied; SAMPLED_FREE and
// SAMPLED_MOVE samples carry none (a free can run while the thread's own state is being deleted).
// frame_count 0 on a MALLOC or COPY sample without SCALENE_SAMPLE_FINALIZING: the thread has no
// Python thread state (native bucket).

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
    uint64_t bytes;           // MALLOC, COPY: the size of the sampled call (a realloc: what it grew by);
                              // SAMPLED_FREE: the size of the freed block (0 if unknown)
    uint64_t weight;          // MALLOC, COPY: the bytes the sample stands for (bytes / p, see above)
    uint64_t pointer;         // MALLOC: the block; SAMPLED_FREE: the freed block; SAMPLED_MOVE: the old address
    uint64_t moved_to;        // SAMPLED_MOVE: the new address of the block
    uint32_t origin;          // MALLOC: enum scalene_sample_origin
    uint32_t flags;           // SCALENE_SAMPLE_*
    uint32_t frame_count;     // 0: no Python frame (see above)
    uint32_t reserved;
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
    uint64_t unsized_reallocs;    // Python-allocator reallocs of blocks whose old size was unknown (a pool
                                  // untouched since attach): counted as an allocation of the new size
    uint64_t pool_table_full;     // small-object pools not tracked because the pool table was full
    uint64_t leak_table_full;     // sampled allocations not tracked because the sampled-pointer table was
                                  // full (their MALLOC samples carry SCALENE_SAMPLE_UNTRACKED)

    // What the process holds, read by the agent's thread (never in a hook): bytes in use according to
    // malloc (glibc mallinfo2: uordblks + hblkhd) plus pymalloc's arenas, read every few hundred ms,
    // and between readings the changes counted by the hooks (per-thread counters, flushed into a shared
    // total). Published every poll (50 ms) under a sequence lock: odd while the agent writes.
    uint64_t footprint_sequence;
    uint64_t footprint_bytes;     // now
    uint64_t footprint_peak_bytes;// the highest footprint since the agent armed
    uint64_t footprint_ns;        // CLOCK_MONOTONIC of footprint_bytes
    uint64_t footprint_readings;  // absolute readings of the allocator so far
    uint64_t python_arena_bytes;  // of footprint_bytes, pymalloc's arenas
    uint64_t finalizing_ns;       // CLOCK_MONOTONIC when the agent first saw _PyRuntime._finalizing set; 0: not seen
    char message[SCALENE_MESSAGE_SIZE]; // NUL-terminated reason when FAILED, or a note (ARMED, DETACHED, ORPHANED)
    uint8_t reserved2[64];
};

#endif // SCALENE_AGENT_PROTOCOL_H
