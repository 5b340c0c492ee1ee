// The footprint: what the target process holds, as its allocators account for it, published in the
// channel for the attacher. Runs on the agent thread only, never in a hook.
//
//     footprint = malloc's bytes in use (glibc mallinfo2(): uordblks, the in-use chunks of every heap
//                 arena, plus hblkhd, the chunks malloc mmap'd on their own)
//               + pymalloc's arenas (Python's small-object allocator maps them directly, not through
//                 malloc; how many there are at arm comes from the interpreter, see agent.c)
//
// An absolute reading is taken at arm and then every READ_INTERVAL_NS, or more rarely when a reading
// is slow: mallinfo2 walks the free lists of each arena under that arena's lock, so it is kept under
// 1% of the agent thread's time. Between readings the hooks' counters (g_footprint, fed by per-thread
// counters of every malloc-level allocation and free and by the arena wrapper) carry the changes, so
// the published figure follows the process at every poll (50 ms), and the peak includes the highest
// point the counters reached in between, not only what a poll happened to see.
#include "internal.h"

#include <dlfcn.h>
#include <stddef.h>
#include <time.h>

#define READ_INTERVAL_NS 250000000ull
#define READ_BUDGET 100 // a reading may take at most 1/READ_BUDGET of the time between readings

// glibc's struct mallinfo2 (2.33+) and struct mallinfo (int fields, wrapping at 2 GiB), declared here
// so that the agent builds against any glibc and asks for mallinfo2 only at run time.
struct agent_mallinfo2 {
    size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};
struct agent_mallinfo {
    int arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};

static struct agent_mallinfo2 (*g_mallinfo2)(void);
static struct agent_mallinfo (*g_mallinfo)(void);
static int g_resolved;

static uint64_t g_base;         // the last absolute reading (bytes)
static uint64_t g_peak;
static uint64_t g_readings;
static uint64_t g_last_read_ns;
static uint64_t g_interval_ns = READ_INTERVAL_NS;

static uint64_t clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void resolve(void) {
    if (g_resolved) return;
    g_resolved = 1;
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!libc) return;
    *(void **)&g_mallinfo2 = dlsym(libc, "mallinfo2");
    if (!g_mallinfo2) *(void **)&g_mallinfo = dlsym(libc, "mallinfo");
    dlclose(libc);
}

// malloc's bytes in use, 0 if the allocator cannot say.
static uint64_t malloc_in_use(void) {
    resolve();
    if (g_mallinfo2) {
        struct agent_mallinfo2 m = g_mallinfo2();
        return (uint64_t)m.uordblks + (uint64_t)m.hblkhd;
    }
    if (g_mallinfo) { // before glibc 2.33: 32-bit counters
        struct agent_mallinfo m = g_mallinfo();
        return (uint64_t)(uint32_t)m.uordblks + (uint64_t)(uint32_t)m.hblkhd;
    }
    return 0;
}

static uint64_t arena_bytes(void) {
    int64_t a = atomic_load_explicit(&g_footprint.arena_bytes, memory_order_relaxed);
    return a > 0 ? (uint64_t)a : 0;
}

// Restarts the counters and takes an absolute reading (the counters' changes from now on are on top
// of it; what changes while it is read is counted twice, a few bytes at most).
static void read_absolute(uint64_t now) {
    atomic_store_explicit(&g_footprint.delta, 0, memory_order_relaxed);
    atomic_store_explicit(&g_footprint.delta_max, 0, memory_order_relaxed);
    g_base = malloc_in_use() + arena_bytes();
    if (g_base > g_peak) g_peak = g_base;
    g_readings++;
    uint64_t took = clock_ns() - now;
    g_interval_ns = took * READ_BUDGET > READ_INTERVAL_NS ? took * READ_BUDGET : READ_INTERVAL_NS;
    g_last_read_ns = now;
}

void footprint_arm(uint64_t arenas) {
    atomic_store_explicit(&g_footprint.arena_bytes, (int64_t)arenas, memory_order_relaxed);
    g_peak = 0;
    g_readings = 0;
    read_absolute(clock_ns());
}

void footprint_poll(struct scalene_channel *ch, uint64_t now) {
    if (now - g_last_read_ns >= g_interval_ns) {
        // The highest point since the last reading, before that reading is replaced.
        int64_t high = atomic_load_explicit(&g_footprint.delta_max, memory_order_relaxed);
        if (high > 0 && g_base + (uint64_t)high > g_peak) g_peak = g_base + (uint64_t)high;
        read_absolute(now);
    }
    int64_t delta = atomic_load_explicit(&g_footprint.delta, memory_order_relaxed);
    int64_t high = atomic_load_explicit(&g_footprint.delta_max, memory_order_relaxed);
    uint64_t current = delta >= 0 ? g_base + (uint64_t)delta
                                  : (uint64_t)-delta < g_base ? g_base - (uint64_t)-delta : 0;
    if (high > 0 && g_base + (uint64_t)high > g_peak) g_peak = g_base + (uint64_t)high;
    if (current > g_peak) g_peak = current;
    // Sequence lock: odd while the fields change; the attacher retries a read that straddles it.
    uint64_t seq = __atomic_load_n(&ch->footprint_sequence, __ATOMIC_RELAXED);
    __atomic_store_n(&ch->footprint_sequence, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&ch->footprint_bytes, current, __ATOMIC_RELAXED);
    __atomic_store_n(&ch->footprint_peak_bytes, g_peak, __ATOMIC_RELAXED);
    __atomic_store_n(&ch->footprint_ns, now, __ATOMIC_RELAXED);
    __atomic_store_n(&ch->footprint_readings, g_readings, __ATOMIC_RELAXED);
    __atomic_store_n(&ch->python_arena_bytes, arena_bytes(), __ATOMIC_RELAXED);
    __atomic_store_n(&ch->footprint_sequence, seq + 2, __ATOMIC_RELEASE);
}
