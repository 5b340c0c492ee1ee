// Internals of the scalene-attach agent: the state shared by its three parts.
//
//   agent.c  the start function, the agent thread (channel, Python runtime, arm/disarm loop)
//   hooks.c  everything that runs inside the target's threads: GOT hooks, Python allocator
//            wrappers, per-call sampling (estimator.h), the pool and sampled-pointer tables,
//            footprint counters, frame capture, the ring
//   got.c    finding and rewriting GOT slots of every loaded object, and putting them back
//   footprint.c  the agent thread's side of the footprint: what the allocator holds, published
//
// Rules for code reachable from a hook (see hooks.c): no malloc, no locks, no stdio, no Python
// API, no TLS other than the initial-exec block below, errno preserved.
#ifndef SCALENE_AGENT_INTERNAL_H
#define SCALENE_AGENT_INTERNAL_H

#ifndef _GNU_SOURCE
#error "build with -D_GNU_SOURCE (agent/Makefile does)"
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "scalene_agent_protocol.h"

#define HIDDEN __attribute__((visibility("hidden")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CACHELINE 64

// ---------------------------------------------------------------------------------------------
// Hooked functions (GOT slots). The order is the order of `g_hooks` in hooks.c.
enum hook_id {
    H_MALLOC,
    H_CALLOC,
    H_REALLOC,
    H_FREE,
    H_POSIX_MEMALIGN,
    H_ALIGNED_ALLOC,
    H_MEMALIGN,
    H_VALLOC,
    H_REALLOCARRAY,
    H_MEMCPY,
    H_MEMMOVE,
    H_MEMCPY_CHK,
    H_MEMMOVE_CHK,
    H_DLOPEN,
    H_COUNT
};

enum hook_group { GROUP_MEMORY, GROUP_COPY, GROUP_DLOPEN };

struct hook_def {
    const char *name;
    void *hook;          // our replacement (address written into the slot)
    uint8_t group;       // enum hook_group
};
HIDDEN extern const struct hook_def g_hooks[H_COUNT];
// The function a slot called before we rewrote it (resolved on the agent thread; never cleared).
HIDDEN extern void *volatile g_real[H_COUNT];
// Which hooks the current session installs (written by the agent thread before patching).
HIDDEN extern uint8_t g_hook_enabled[H_COUNT];

// ---------------------------------------------------------------------------------------------
// Python allocator API, declared here so the agent needs no Python header (stable since 3.4).
typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr);
} py_mem_allocator;

typedef struct {
    void *ctx;
    void *(*alloc)(void *ctx, size_t size);
    void (*free)(void *ctx, void *ptr, size_t size);
} py_arena_allocator;

enum { PY_DOMAIN_RAW = 0, PY_DOMAIN_MEM = 1, PY_DOMAIN_OBJ = 2, PY_DOMAINS = 3 };

// The allocators found at arm time; the wrappers call these with these contexts.
HIDDEN extern py_mem_allocator g_orig_alloc[PY_DOMAINS];
HIDDEN extern py_arena_allocator g_orig_arena;
// Our wrappers (ctx is filled with the original ctx when installed).
HIDDEN extern const py_mem_allocator g_wrap_alloc[PY_DOMAINS];
HIDDEN extern const py_arena_allocator g_wrap_arena;

// ---------------------------------------------------------------------------------------------
// Read-mostly sampling configuration. Written by the agent thread only while sampling is off;
// read by every hook.
struct sampling_config {
    _Atomic int memory_on;          // count allocations (hooks + Python wrappers)
    _Atomic int copy_on;            // count copies
    uint32_t epoch;                 // session number: a thread's counters from an older session reset
    uint32_t pool_shift;            // log2(pymalloc pool size); 0: pool tracking off
    uint64_t memory_window;         // mean bytes between allocation samples
    uint64_t copy_window;           // mean bytes between copy samples
    uint64_t pymalloc_align_mask;   // alignment - 1
    uint64_t pymalloc_max_small;
    pthread_key_t tss_key;          // CPython's gilstate TSS key (thread -> PyThreadState)
    int tss_ok;                     // TSTATE_BY_*: how a hook finds its thread's PyThreadState
    intptr_t tls_offset;            // TSTATE_BY_TLS: thread pointer + this = &gilstate tstate
    uintptr_t finalizing;           // &_PyRuntime._finalizing (nonzero once Py_Finalize began), or 0
    struct scalene_frame_layout frames;
} __attribute__((aligned(CACHELINE)));
HIDDEN extern struct sampling_config g_cfg;
// How a hook finds the calling thread's PyThreadState: through CPython's gilstate TSS key
// (pthread_getspecific; 3.8-3.14), or (3.15+, where the gilstate is a C11 thread-local of libpython)
// at a fixed offset from the thread pointer, in the static TLS block of libpython.
enum { TSTATE_NONE = 0, TSTATE_BY_TSS_KEY = 1, TSTATE_BY_TLS = 2 };

static inline uintptr_t thread_pointer(void) {
    uintptr_t tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp)); // x86_64: the TCB's self pointer (== pthread_self())
    return tp;
}

// The channel, valid while `g_channel_live` is set; writers bracket every access with
// channel_enter()/channel_exit() so that disarm can wait for them before unmapping.
HIDDEN extern struct scalene_channel *volatile g_channel;
HIDDEN extern _Atomic int g_channel_live;
HIDDEN extern uint64_t g_ring_mask;
HIDDEN extern size_t g_channel_size;   // bytes mapped

// Counters kept by the hooks and published into the channel by the agent thread.
struct agent_counters {
    _Atomic uint64_t unsized_reallocs;
    _Atomic uint64_t pool_table_full;
    _Atomic uint64_t leak_table_full;
} __attribute__((aligned(CACHELINE)));
HIDDEN extern struct agent_counters g_counters;

// The changes of the footprint between two readings of the allocator (footprint.c): the hooks add
// what their threads allocate and free at malloc level (flushed from per-thread counters) and what
// pymalloc's arenas take and give back; `delta_max` is the highest `delta` since the agent thread last
// reset both. `arena_bytes` is what pymalloc's arenas hold now (counted from arm time on).
struct footprint_counters {
    _Atomic int64_t delta;
    _Atomic int64_t delta_max;
    _Atomic int64_t arena_bytes;
} __attribute__((aligned(CACHELINE)));
HIDDEN extern struct footprint_counters g_footprint;

// hooks.c
HIDDEN int tables_init(void);            // map the pool and leak tables (once) and clear them
HIDDEN void sampling_new_epoch(void);    // invalidate every thread's counters
HIDDEN void hooks_after_fork_child(void);
HIDDEN long channel_inflight(void);
HIDDEN void footprint_add(int64_t bytes); // into g_footprint.delta, raising delta_max

// footprint.c (agent thread only)
HIDDEN void footprint_arm(uint64_t arena_bytes);   // at arm, under the GIL: arenas held now; first reading
HIDDEN void footprint_poll(struct scalene_channel *ch, uint64_t now_ns); // read if due, publish

// got.c
struct got_stats {
    uint64_t hooked_slots;
    uint64_t hooked_objects;
    uint64_t skipped_slots;   // slots for a hooked name bound elsewhere (interposed, versioned)
    int pending;              // some object could not be patched yet (still being loaded)
};
HIDDEN int got_init(void);               // page size, the agent's own extent; idempotent
HIDDEN void got_enable(void);            // allow patch passes (session start)
HIDDEN void got_patch_all(void);         // patch every loaded object not patched yet
HIDDEN void got_poll(void);              // cheap: run a patch pass if objects were loaded
HIDDEN void got_restore_all(void);       // disable further patching and restore every slot
HIDDEN void got_restore_in_child(void);  // after fork, in the child: no locks, no dl_iterate_phdr
HIDDEN void got_get_stats(struct got_stats *out);
HIDDEN int got_any_rpath(void);
// End of the run of readable mappings that contains addr (0 if addr is not mapped readable).
HIDDEN uintptr_t got_readable_end(uintptr_t addr);          // a loaded object (not the executable) has DT_RPATH
// Called by the dlopen hook (hooks.c): a pass after a dlopen that went through us.
HIDDEN void got_after_dlopen(void);

#endif // SCALENE_AGENT_INTERNAL_H
