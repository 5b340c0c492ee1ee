// Everything here runs on the target's own threads, inside malloc, free, memcpy, dlopen and
// CPython's allocator: no malloc, no locks (except the patch lock after a dlopen, see got.c),
// no stdio, no Python API, errno preserved, thread-local state only in the initial-exec block.
//
// Sampling is per call (see estimator.h): each thread keeps a countdown of bytes until its next
// allocation sample and another until its next copy sample, drawn from an exponential distribution
// whose mean is the window. An allocation or copy subtracts its size; the call that takes the
// countdown below zero is written to the ring with its own size, its weight (the bytes it stands
// for), its origin (Python's allocator or native code) and its pointer, then a fresh countdown is
// drawn. A hook that does not sample costs a flag test, a subtraction and a compare on top of the
// real call (plus, for malloc-level calls, one add to the thread's footprint counter).
//
// The footprint (what the process holds) is read by the agent thread from the allocator itself;
// the hooks only count the changes between readings: each thread adds the usable sizes it
// allocates and subtracts those it frees in a thread-local counter, flushed into the shared
// g_footprint total at each of its samples and whenever it falls below -FOOTPRINT_FLUSH.
#include "internal.h"
#include "estimator.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))

// ---------------------------------------------------------------------------------------------
// Shared state.
struct sampling_config g_cfg;
struct agent_counters g_counters;
struct footprint_counters g_footprint;
struct scalene_channel *volatile g_channel;
_Atomic int g_channel_live;
uint64_t g_ring_mask;
size_t g_channel_size;
py_mem_allocator g_orig_alloc[PY_DOMAINS];
py_arena_allocator g_orig_arena;
void *volatile g_real[H_COUNT];
uint8_t g_hook_enabled[H_COUNT];
// The dlopen hook jumps through this one (read from assembly).
HIDDEN void *volatile scalene_real_dlopen;

static _Atomic long g_inflight __attribute__((aligned(CACHELINE)));

// Per-thread state: 80 bytes, initial-exec (a dlopen'd library's global-dynamic TLS may call
// malloc on first touch, from inside malloc).
struct agent_tls {
    int64_t alloc_countdown; // bytes still to allocate before the next allocation sample
    int64_t copy_countdown;  // bytes still to copy before the next copy sample
    int64_t net;             // malloc-level bytes allocated minus freed, not yet added to g_footprint
    uint64_t rng;            // this thread's random state (estimator.h)
    void *raw_ptr;           // last block malloc & co. returned inside a Python-domain call
    uint64_t raw_size;
    void *freed_ptr;         // last block free/realloc released inside a Python-domain call
    uint64_t freed_size;
    uint32_t tid;            // cached gettid()
    uint32_t epoch;          // g_cfg.epoch these counters belong to
    uint32_t in_python;      // inside a Python-domain wrapper (depth guard)
    uint32_t reserved;
};
_Static_assert(sizeof(struct agent_tls) <= 128, "keep the agent's TLS small");
static __thread struct agent_tls g_tls __attribute__((tls_model("initial-exec")));

// A thread's footprint counter is flushed into g_footprint when it falls this far below zero (frees
// are never sampled); growth is flushed at the thread's next allocation sample.
#define FOOTPRINT_FLUSH (64 << 10)

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_alloc_fn)(size_t, size_t);
typedef void *(*valloc_fn)(size_t);
typedef void *(*reallocarray_fn)(void *, size_t, size_t);
typedef void *(*memcpy_fn)(void *, const void *, size_t);
typedef void *(*memcpy_chk_fn)(void *, const void *, size_t, size_t);

#define REAL(id, type) ((type)g_real[id])

// Acquire: the configuration written before the flag was set is visible (a plain load on x86).
static ALWAYS_INLINE int memory_on(void) {
    return atomic_load_explicit(&g_cfg.memory_on, memory_order_acquire);
}
static ALWAYS_INLINE int copy_on(void) {
    return atomic_load_explicit(&g_cfg.copy_on, memory_order_acquire);
}

static NOINLINE void tls_reset(struct agent_tls *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    // Distinct per thread (its TLS block), per session and per moment.
    uint64_t seed = estimator_splitmix64((uint64_t)(uintptr_t)t ^ ((uint64_t)g_cfg.epoch << 40) ^
                                         ((uint64_t)now.tv_sec << 30) ^ (uint64_t)now.tv_nsec);
    t->rng = seed ? seed : 1;
    t->alloc_countdown = g_cfg.memory_window ? estimator_countdown(&t->rng, g_cfg.memory_window) : INT64_MAX;
    t->copy_countdown = g_cfg.copy_window ? estimator_countdown(&t->rng, g_cfg.copy_window) : INT64_MAX;
    t->net = 0;
    t->raw_ptr = NULL;
    t->freed_ptr = NULL;
    t->epoch = g_cfg.epoch;
}

static ALWAYS_INLINE struct agent_tls *tls_get(void) {
    struct agent_tls *t = &g_tls;
    if (UNLIKELY(t->epoch != g_cfg.epoch)) tls_reset(t);
    return t;
}

void sampling_new_epoch(void) {
    g_cfg.epoch++;
    if (g_cfg.epoch == 0) g_cfg.epoch = 1; // 0 is what a fresh thread's TLS holds
}

// ---------------------------------------------------------------------------------------------
// Raw reads of the current thread's own interpreter structures.
typedef uint64_t __attribute__((may_alias)) u64a;
typedef uint32_t __attribute__((may_alias)) u32a;

static ALWAYS_INLINE int plausible(uintptr_t p) {
    return p >= 4096 && p < 0x0000800000000000ull && (p & 7) == 0;
}
static ALWAYS_INLINE uintptr_t rd_ptr(uintptr_t base, int32_t off) {
    return (uintptr_t)*(const u64a *)(base + (uintptr_t)(intptr_t)off);
}

// Whether Py_Finalize has begun. Once it has, the thread states of other (daemon) threads are freed
// while those threads may still run C code (their exit path allocates): their TSS slot would then
// point at freed memory, so no frame is read from then on. CPython sets this before it deletes any
// thread state. _PyRuntime is a static object of the interpreter: the load cannot fault.
static ALWAYS_INLINE int interpreter_finalizing(void) {
    return g_cfg.finalizing && __atomic_load_n((const uintptr_t *)g_cfg.finalizing, __ATOMIC_RELAXED) != 0;
}

// Fills rec->frames / frame_count with the calling thread's Python stack, innermost first, and
// returns SCALENE_SAMPLE_TRUNCATED if it was cut. Never called once the interpreter finalizes.
// The walk is bounded (SCALENE_MAX_FRAMES recorded, 4x that visited, shim frames included) and
// stops at a pointer that repeats (Brent's cycle detection: constant stack, hooks may run on small
// thread stacks).
static uint32_t capture_frames(struct scalene_sample *rec) {
    rec->frame_count = 0;
    if (!g_cfg.tss_ok) return 0;
    const struct scalene_frame_layout *L = &g_cfg.frames;
    uintptr_t ts = g_cfg.tss_ok == TSTATE_BY_TLS ? *(const u64a *)(thread_pointer() + (uintptr_t)g_cfg.tls_offset)
                                                 : (uintptr_t)pthread_getspecific(g_cfg.tss_key);
    if (!plausible(ts)) return 0;
    uintptr_t f = rd_ptr(ts, L->tstate_frame);
    if (L->cframe_current_frame >= 0) {
        if (!plausible(f)) return 0;
        f = rd_ptr(f, L->cframe_current_frame);
    }
    uint32_t n = 0, flags = 0;
    uintptr_t tortoise = 0;
    unsigned power = 1, lam = 0;
    for (unsigned steps = 0; f != 0; steps++) {
        if (!plausible(f) || f == tortoise) break; // garbage or a cycle
        if (steps == 4 * SCALENE_MAX_FRAMES) {
            flags |= SCALENE_SAMPLE_TRUNCATED;
            break;
        }
        if (++lam == power) { // Brent: move the tortoise to f every power-of-two steps
            tortoise = f;
            power <<= 1;
            lam = 0;
        }
        int skip = 0;
        if (L->frame_owner >= 0) {
            int owner = *(const uint8_t *)(f + (uintptr_t)L->frame_owner);
            skip = owner == L->owner_cstack || owner == L->owner_interpreter;
        }
        if (!skip) {
            if (n == SCALENE_MAX_FRAMES) {
                flags |= SCALENE_SAMPLE_TRUNCATED;
                break;
            }
            rec->frames[n].code = rd_ptr(f, L->frame_code) & ~(uint64_t)(uint32_t)L->code_tag_bits;
            if (L->frame_instr_size == 4) {
                int32_t v = (int32_t)*(const u32a *)(f + (uintptr_t)L->frame_instr);
                rec->frames[n].instr = (uint64_t)(int64_t)v;
            } else {
                rec->frames[n].instr = rd_ptr(f, L->frame_instr);
            }
            n++;
        }
        f = rd_ptr(f, L->frame_previous);
    }
    rec->frame_count = n;
    return flags;
}

// ---------------------------------------------------------------------------------------------
// The ring. Every access to the channel is bracketed by the in-flight counter so that disarm can
// wait for writers before it unmaps (Dekker: writer increments then checks live; disarm clears
// live then waits for zero; both sequentially consistent).
long channel_inflight(void) { return atomic_load(&g_inflight); }

static NOINLINE void emit(struct agent_tls *t, uint32_t kind, uint64_t bytes, uint64_t weight,
                          const void *pointer, const void *moved_to, uint32_t origin, uint32_t flags) {
    int saved_errno = errno;
    atomic_fetch_add(&g_inflight, 1);
    if (!atomic_load(&g_channel_live)) goto out;
    struct scalene_channel *ch = g_channel;
    const uint64_t capacity = g_ring_mask + 1;
    uint64_t w = __atomic_load_n(&ch->write_index, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t r = __atomic_load_n(&ch->read_index, __ATOMIC_ACQUIRE);
        if ((int64_t)(w - r) < 0) { // our view of write_index is older than the reader's progress
            w = __atomic_load_n(&ch->write_index, __ATOMIC_ACQUIRE);
            continue;
        }
        if (w - r >= capacity) {
            __atomic_fetch_add(&ch->dropped, 1, __ATOMIC_RELAXED);
            goto out;
        }
        if (__atomic_compare_exchange_n(&ch->write_index, &w, w + 1, 1, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            break;
    }
    struct scalene_sample *rec =
        (struct scalene_sample *)((char *)ch + sizeof(struct scalene_channel) +
                                  (w & g_ring_mask) * sizeof(struct scalene_sample));
    if (t->tid == 0) t->tid = (uint32_t)syscall(SYS_gettid);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rec->kind = kind;
    rec->tid = t->tid;
    rec->timestamp_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    rec->bytes = bytes;
    rec->weight = weight;
    rec->pointer = (uint64_t)(uintptr_t)pointer;
    rec->moved_to = (uint64_t)(uintptr_t)moved_to;
    rec->origin = origin;
    rec->reserved = 0;
    if (interpreter_finalizing()) flags |= SCALENE_SAMPLE_FINALIZING;
    if ((kind == SCALENE_SAMPLE_MALLOC || kind == SCALENE_SAMPLE_COPY) && !(flags & SCALENE_SAMPLE_FINALIZING)) {
        flags |= capture_frames(rec);
    } else {
        // A free may be the one that releases this thread's own PyThreadState (thread exit): its
        // frames are never read on the free path (nor once the interpreter finalizes).
        rec->frame_count = 0;
    }
    rec->flags = flags;
    __atomic_store_n(&rec->sequence, w + 1, __ATOMIC_RELEASE);
out:
    atomic_fetch_sub(&g_inflight, 1);
    errno = saved_errno;
}

// ---------------------------------------------------------------------------------------------
// Sampled-pointer table: the blocks of MALLOC samples still live, lock-free open addressing (0 empty,
// 1 deleted), bounded (2^16 slots, 512 KiB of address space, touched only where used). An insert that
// finds no slot is counted (leak_table_full) and its sample flagged SCALENE_SAMPLE_UNTRACKED. Every
// free asks the table, so a counting prefilter (8 KB, mostly L1-resident) answers "certainly not"
// first: a bucket counts the entries whose home slot maps to it, incremented before an insert becomes
// visible and decremented after a removal, so a present pointer always finds its bucket nonzero.
#define LEAK_BITS 16
#define LEAK_SLOTS (1u << LEAK_BITS)
#define LEAK_PROBES 16
#define LEAK_FILTER 4096u
static _Atomic uint64_t *g_leak_tab;
static _Atomic uint16_t g_leak_filter[LEAK_FILTER] __attribute__((aligned(CACHELINE)));

static ALWAYS_INLINE uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

// Returns 1 when p is in the table (inserted now or already there), 0 when it could not be.
static int leak_insert(const void *p) {
    _Atomic uint64_t *tab = g_leak_tab;
    uint64_t key = (uint64_t)(uintptr_t)p;
    if (!tab || key <= 1) return 0;
    uint64_t i = mix64(key >> 4) & (LEAK_SLOTS - 1);
    _Atomic uint16_t *bucket = &g_leak_filter[i & (LEAK_FILTER - 1)];
    if (atomic_load_explicit(bucket, memory_order_relaxed) < 0xfff0) { // never wrap
        atomic_fetch_add(bucket, 1);
        for (int k = 0; k < LEAK_PROBES; k++, i = (i + 1) & (LEAK_SLOTS - 1)) {
            uint64_t cur = atomic_load_explicit(&tab[i], memory_order_relaxed);
            if (cur == key) { // already tracked
                atomic_fetch_sub(bucket, 1);
                return 1;
            }
            if (cur <= 1 && atomic_compare_exchange_strong(&tab[i], &cur, key)) return 1;
        }
        atomic_fetch_sub(bucket, 1);
    }
    atomic_fetch_add_explicit(&g_counters.leak_table_full, 1, memory_order_relaxed);
    return 0;
}

// Removes p if it is a sampled allocation; returns 1 if it was.
static ALWAYS_INLINE int leak_take(const void *p) {
    uint64_t key = (uint64_t)(uintptr_t)p;
    uint64_t i = mix64(key >> 4) & (LEAK_SLOTS - 1);
    _Atomic uint16_t *bucket = &g_leak_filter[i & (LEAK_FILTER - 1)];
    if (LIKELY(atomic_load_explicit(bucket, memory_order_relaxed) == 0)) return 0;
    _Atomic uint64_t *tab = g_leak_tab;
    if (!tab) return 0;
    for (int k = 0; k < LEAK_PROBES; k++, i = (i + 1) & (LEAK_SLOTS - 1)) {
        uint64_t cur = atomic_load_explicit(&tab[i], memory_order_relaxed);
        if (cur == 0) return 0;
        if (cur == key) {
            if (atomic_compare_exchange_strong(&tab[i], &cur, 1)) {
                atomic_fetch_sub(bucket, 1);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Pool table: pymalloc pool address -> block size, learned from allocations (never from a pool
// header). Keys stay once inserted; forgetting a pool sets its size to 0.
#define POOL_BITS 18
#define POOL_SLOTS (1u << POOL_BITS)
#define POOL_PROBES 32
struct pool_entry {
    _Atomic uint64_t key;
    _Atomic uint32_t size;
    uint32_t pad;
};
static struct pool_entry *g_pool_tab;

static ALWAYS_INLINE uint64_t pool_index(uint64_t key) {
    return ((key >> g_cfg.pool_shift) * 0x9E3779B97F4A7C15ull) >> (64 - POOL_BITS);
}

static ALWAYS_INLINE void pool_note(const void *p, uint32_t size) {
    struct pool_entry *tab = g_pool_tab;
    if (!tab || g_cfg.pool_shift == 0) return;
    uint64_t key = (uint64_t)(uintptr_t)p & ~((1ull << g_cfg.pool_shift) - 1);
    uint64_t i = pool_index(key);
    for (int k = 0; k < POOL_PROBES; k++, i = (i + 1) & (POOL_SLOTS - 1)) {
        struct pool_entry *e = &tab[i];
        uint64_t cur = atomic_load_explicit(&e->key, memory_order_relaxed);
        if (cur == 0) {
            if (!atomic_compare_exchange_strong(&e->key, &cur, key) && cur != key) continue;
            cur = key;
        }
        if (cur == key) {
            if (atomic_load_explicit(&e->size, memory_order_relaxed) != size)
                atomic_store_explicit(&e->size, size, memory_order_relaxed);
            return;
        }
    }
    atomic_fetch_add_explicit(&g_counters.pool_table_full, 1, memory_order_relaxed);
}

static ALWAYS_INLINE uint32_t pool_lookup(const void *p) {
    struct pool_entry *tab = g_pool_tab;
    if (!tab || g_cfg.pool_shift == 0) return 0;
    uint64_t key = (uint64_t)(uintptr_t)p & ~((1ull << g_cfg.pool_shift) - 1);
    uint64_t i = pool_index(key);
    for (int k = 0; k < POOL_PROBES; k++, i = (i + 1) & (POOL_SLOTS - 1)) {
        uint64_t cur = atomic_load_explicit(&tab[i].key, memory_order_relaxed);
        if (cur == key) return atomic_load_explicit(&tab[i].size, memory_order_relaxed);
        if (cur == 0) return 0;
    }
    return 0;
}

// Forget every pool in [p, p + size): an arena came or went.
static void pool_purge(uintptr_t p, size_t size) {
    struct pool_entry *tab = g_pool_tab;
    if (!tab || g_cfg.pool_shift == 0 || size == 0) return;
    uint64_t pool = 1ull << g_cfg.pool_shift;
    uintptr_t end = p + size;
    for (uintptr_t a = p & ~(pool - 1); a < end; a += pool) {
        uint64_t i = pool_index(a);
        for (int k = 0; k < POOL_PROBES; k++, i = (i + 1) & (POOL_SLOTS - 1)) {
            uint64_t cur = atomic_load_explicit(&tab[i].key, memory_order_relaxed);
            if (cur == a) {
                atomic_store_explicit(&tab[i].size, 0, memory_order_relaxed);
                break;
            }
            if (cur == 0) break;
        }
    }
}

static void *map_table(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int tables_init(void) {
    const size_t pool_bytes = (size_t)POOL_SLOTS * sizeof(struct pool_entry);
    const size_t leak_bytes = (size_t)LEAK_SLOTS * sizeof(uint64_t);
    if (!g_pool_tab) {
        g_pool_tab = map_table(pool_bytes);
    } else {
        madvise(g_pool_tab, pool_bytes, MADV_DONTNEED); // back to zero pages
    }
    if (!g_leak_tab) {
        g_leak_tab = map_table(leak_bytes);
    } else {
        madvise((void *)g_leak_tab, leak_bytes, MADV_DONTNEED);
    }
    for (unsigned i = 0; i < LEAK_FILTER; i++) atomic_store_explicit(&g_leak_filter[i], 0, memory_order_relaxed);
    return g_pool_tab && g_leak_tab ? 0 : ENOMEM;
}

// ---------------------------------------------------------------------------------------------
// The footprint counters: a thread's malloc-level changes go into the shared total here.
static NOINLINE void footprint_flush(struct agent_tls *t) {
    int64_t d = t->net;
    t->net = 0;
    footprint_add(d);
}

void footprint_add(int64_t d) {
    int64_t now = atomic_fetch_add_explicit(&g_footprint.delta, d, memory_order_relaxed) + d;
    int64_t high = atomic_load_explicit(&g_footprint.delta_max, memory_order_relaxed);
    while (now > high &&
           !atomic_compare_exchange_weak_explicit(&g_footprint.delta_max, &high, now, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static ALWAYS_INLINE void net_sub(struct agent_tls *t, uint64_t bytes) {
    t->net -= (int64_t)bytes;
    if (UNLIKELY(t->net < -FOOTPRINT_FLUSH)) footprint_flush(t);
}

// ---------------------------------------------------------------------------------------------
// Per-call sampling (estimator.h).

// The call that took the thread's allocation countdown below zero: `size` bytes at p (for a realloc,
// what it grew by), made through Python's allocator or by native code.
static NOINLINE void sample_alloc(struct agent_tls *t, const void *p, uint64_t size, uint32_t origin,
                                  uint32_t flags) {
    t->alloc_countdown = estimator_countdown(&t->rng, g_cfg.memory_window);
    footprint_flush(t);
    // Tracked before the sample is visible; p is not returned to its caller yet, so no free of it
    // can come first.
    if (!leak_insert(p)) flags |= SCALENE_SAMPLE_UNTRACKED;
    emit(t, SCALENE_SAMPLE_MALLOC, size, estimator_weight(size, g_cfg.memory_window), p, NULL, origin, flags);
}

static NOINLINE void sample_copy(struct agent_tls *t, uint64_t size) {
    t->copy_countdown = estimator_countdown(&t->rng, g_cfg.copy_window);
    emit(t, SCALENE_SAMPLE_COPY, size, estimator_weight(size, g_cfg.copy_window), NULL, NULL,
         SCALENE_ORIGIN_NONE, 0);
}

static NOINLINE void sample_sampled_free(struct agent_tls *t, const void *p, uint64_t size) {
    emit(t, SCALENE_SAMPLE_SAMPLED_FREE, size, 0, p, NULL, SCALENE_ORIGIN_NONE, 0);
}

// A realloc of a tracked block (taken out of the table before the call, which may free it) returned
// `to`: the block stays tracked at its new address. If the table has no room any more, the attacher
// is told the block is gone (its sample stops counting).
static NOINLINE void keep_tracking(struct agent_tls *t, const void *from, const void *to) {
    if (!leak_insert(to)) sample_sampled_free(t, from, 0);
    else if (to != from) emit(t, SCALENE_SAMPLE_SAMPLED_MOVE, 0, 0, from, to, SCALENE_ORIGIN_NONE, 0);
}

static ALWAYS_INLINE void count_alloc(struct agent_tls *t, const void *p, uint64_t size, uint32_t origin,
                                      uint32_t flags) {
    t->alloc_countdown -= (int64_t)size;
    if (UNLIKELY(t->alloc_countdown < 0)) sample_alloc(t, p, size, origin, flags);
}

// ---------------------------------------------------------------------------------------------
// Native (GOT) memory hooks. Inside a Python-domain call they only tell the wrapper what malloc did
// underneath (the wrapper counts the call, as Python's); the footprint counter sees every block.
// What a call allocated is what it asked for (`requested`); what the process holds is the chunk's
// usable size, which is also all a free can tell, so the footprint counter takes that.
static ALWAYS_INLINE void note_alloc(void *p, size_t requested) {
    size_t size = malloc_usable_size(p);
    struct agent_tls *t = tls_get();
    t->net += (int64_t)size;
    if (t->in_python) {
        t->raw_ptr = p;
        t->raw_size = size;
        return;
    }
    count_alloc(t, p, requested, SCALENE_ORIGIN_NATIVE, 0);
}

static ALWAYS_INLINE void note_free(void *p) {
    size_t size = malloc_usable_size(p);
    struct agent_tls *t = tls_get();
    net_sub(t, size);
    if (t->in_python) {
        t->freed_ptr = p;
        t->freed_size = size;
        return;
    }
    if (UNLIKELY(leak_take(p))) sample_sampled_free(t, p, size);
}

// realloc-like, after the call: `old` is the usable size of p taken before it, `tracked` whether p
// was a tracked block (taken out of the table before the call), r the result; `freed`: r is NULL
// because p was freed (a size of 0), not because the call failed. A realloc allocates what it grows.
static ALWAYS_INLINE void note_realloc(struct agent_tls *t, void *p, size_t old, int tracked, void *r, int freed) {
    if (r == NULL) {
        if (freed) {
            net_sub(t, old);
            if (t->in_python) {
                t->freed_ptr = p;
                t->freed_size = old;
            } else if (UNLIKELY(tracked)) {
                sample_sampled_free(t, p, old);
            }
        } else if (UNLIKELY(tracked)) {
            keep_tracking(t, p, p); // failed: p is untouched
        }
        return;
    }
    size_t size = malloc_usable_size(r);
    if (size >= old) t->net += (int64_t)(size - old);
    else net_sub(t, old - size);
    if (t->in_python) {
        if (p) {
            t->freed_ptr = p;
            t->freed_size = old;
        }
        t->raw_ptr = r;
        t->raw_size = size;
        return;
    }
    if (UNLIKELY(tracked)) keep_tracking(t, p, r);
    count_alloc(t, r, size > old ? size - old : 0, SCALENE_ORIGIN_NATIVE, p ? SCALENE_SAMPLE_GROWTH : 0);
}

static void *hk_malloc(size_t n) {
    void *p = REAL(H_MALLOC, malloc_fn)(n);
    if (LIKELY(memory_on()) && p) note_alloc(p, n);
    return p;
}

static void *hk_calloc(size_t n, size_t m) {
    void *p = REAL(H_CALLOC, calloc_fn)(n, m);
    if (LIKELY(memory_on()) && p) note_alloc(p, n * m); // cannot overflow: calloc checked it
    return p;
}

static void hk_free(void *p) {
    if (LIKELY(memory_on()) && p) note_free(p); // before: p may be reused by another thread at once
    REAL(H_FREE, free_fn)(p);
}

static void *hk_realloc(void *p, size_t n) {
    if (!memory_on()) return REAL(H_REALLOC, realloc_fn)(p, n);
    struct agent_tls *t = tls_get();
    size_t old = p ? malloc_usable_size(p) : 0;
    int tracked = p && !t->in_python ? leak_take(p) : 0; // before: the call may free p
    void *r = REAL(H_REALLOC, realloc_fn)(p, n);
    note_realloc(t, p, old, tracked, r, r == NULL && p && n == 0); // NULL with n == 0: p was freed
    return r;
}

static void *hk_reallocarray(void *p, size_t n, size_t m) {
    if (!memory_on()) return REAL(H_REALLOCARRAY, reallocarray_fn)(p, n, m);
    struct agent_tls *t = tls_get();
    size_t old = p ? malloc_usable_size(p) : 0;
    int tracked = p && !t->in_python ? leak_take(p) : 0;
    void *r = REAL(H_REALLOCARRAY, reallocarray_fn)(p, n, m);
    note_realloc(t, p, old, tracked, r, r == NULL && p && (n == 0 || m == 0));
    return r;
}

static int hk_posix_memalign(void **out, size_t alignment, size_t n) {
    int rc = REAL(H_POSIX_MEMALIGN, posix_memalign_fn)(out, alignment, n);
    if (LIKELY(memory_on()) && rc == 0 && *out) note_alloc(*out, n);
    return rc;
}

static void *hk_aligned_alloc(size_t alignment, size_t n) {
    void *p = REAL(H_ALIGNED_ALLOC, aligned_alloc_fn)(alignment, n);
    if (LIKELY(memory_on()) && p) note_alloc(p, n);
    return p;
}

static void *hk_memalign(size_t alignment, size_t n) {
    void *p = REAL(H_MEMALIGN, aligned_alloc_fn)(alignment, n);
    if (LIKELY(memory_on()) && p) note_alloc(p, n);
    return p;
}

static void *hk_valloc(size_t n) {
    void *p = REAL(H_VALLOC, valloc_fn)(n);
    if (LIKELY(memory_on()) && p) note_alloc(p, n);
    return p;
}

// ---------------------------------------------------------------------------------------------
// Copy hooks.
static ALWAYS_INLINE void note_copy(size_t n) {
    struct agent_tls *t = tls_get();
    t->copy_countdown -= (int64_t)n;
    if (UNLIKELY(t->copy_countdown < 0)) sample_copy(t, n);
}

static void *hk_memcpy(void *d, const void *s, size_t n) {
    if (LIKELY(copy_on())) note_copy(n);
    return REAL(H_MEMCPY, memcpy_fn)(d, s, n);
}

static void *hk_memmove(void *d, const void *s, size_t n) {
    if (LIKELY(copy_on())) note_copy(n);
    return REAL(H_MEMMOVE, memcpy_fn)(d, s, n);
}

static void *hk_memcpy_chk(void *d, const void *s, size_t n, size_t dlen) {
    if (LIKELY(copy_on())) note_copy(n);
    return REAL(H_MEMCPY_CHK, memcpy_chk_fn)(d, s, n, dlen);
}

static void *hk_memmove_chk(void *d, const void *s, size_t n, size_t dlen) {
    if (LIKELY(copy_on())) note_copy(n);
    return REAL(H_MEMMOVE_CHK, memcpy_chk_fn)(d, s, n, dlen);
}

// ---------------------------------------------------------------------------------------------
// dlopen. glibc's dlopen looks at its return address: the caller's namespace, $ORIGIN, and the
// RPATH/RUNPATH used for a bare name all come from the calling object. A hook that simply calls
// dlopen makes the agent the caller and silently changes those (memray's issue). So the hook is
// a stub that decides first:
//  - a path with '/' and no '$', a caller in the agent's namespace, and no loaded object with a
//    DT_RPATH (whose loader chain would matter): the caller's identity changes nothing, so we call
//    dlopen ourselves and patch the new objects before returning (extension-module imports);
//  - anything else: a tail jump to the real dlopen with the caller's return address intact; the
//    agent thread patches the new objects within one poll (~50 ms).
HIDDEN int scalene_dlopen_route(const char *file, int mode, void *caller);
HIDDEN void *scalene_dlopen_and_patch(const char *file, int mode);
HIDDEN void scalene_hook_dlopen(void);
HIDDEN _Atomic int g_dlopen_patching;
HIDDEN long g_agent_lmid;

__asm__(".text\n"
        ".p2align 4\n"
        ".globl scalene_hook_dlopen\n"
        ".hidden scalene_hook_dlopen\n"
        ".type scalene_hook_dlopen,@function\n"
        "scalene_hook_dlopen:\n"
        ".cfi_startproc\n"
        "  endbr64\n" // reached by an indirect call through a GOT slot (IBT); a NOP elsewhere
        "  pushq %rdi\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  pushq %rsi\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  subq $8, %rsp\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  movq 24(%rsp), %rdx\n" // our caller's return address
        "  call scalene_dlopen_route\n"
        "  addq $8, %rsp\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  popq %rsi\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  popq %rdi\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  testl %eax, %eax\n"
        "  jnz 1f\n"
        "  jmpq *scalene_real_dlopen(%rip)\n" // exact: the real dlopen sees the real caller
        "1:\n"
        "  jmp scalene_dlopen_and_patch\n"
        ".cfi_endproc\n"
        ".size scalene_hook_dlopen, .-scalene_hook_dlopen\n");

int scalene_dlopen_route(const char *file, int mode, void *caller) {
    (void)mode;
    if (!atomic_load_explicit(&g_dlopen_patching, memory_order_acquire)) return 0;
    if (file == NULL || file[0] == '\0' || strchr(file, '/') == NULL || strchr(file, '$') != NULL)
        return 0;
    int saved_errno = errno;
    int route = 0;
    if (!got_any_rpath()) {
        Dl_info info;
        struct link_map *lm = NULL;
        if (dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm) {
            Lmid_t id = -1;
            route = dlinfo(lm, RTLD_DI_LMID, &id) == 0 && (long)id == g_agent_lmid;
        } else {
            route = g_agent_lmid == (long)LM_ID_BASE; // unknown caller: glibc assumes the main map
        }
    }
    errno = saved_errno;
    return route;
}

void *scalene_dlopen_and_patch(const char *file, int mode) {
    void *(*real)(const char *, int) = (void *(*)(const char *, int))scalene_real_dlopen;
    void *h = real(file, mode);
    if (h) {
        int saved_errno = errno;
        got_after_dlopen();
        errno = saved_errno;
    }
    return h;
}

// ---------------------------------------------------------------------------------------------
// Python allocator wrappers. They ignore their ctx (which is the original ctx, so a thread that
// reads a half-written allocator struct still calls something valid) and call the saved original.
// Whether block p (returned by or passed to a Python-domain call) is the malloc chunk the GOT hook
// saw during that call. Python's debug allocator (PYTHONMALLOC=debug) hands out the chunk plus a
// 16-byte header, so p may sit a little after it; a pymalloc block never does (arenas are mmap'd,
// apart from malloc's chunks).
#define RAW_SLACK 64u
static ALWAYS_INLINE int same_chunk(const void *p, const void *chunk) {
    return chunk != NULL && (uintptr_t)p - (uintptr_t)chunk < RAW_SLACK;
}

static ALWAYS_INLINE size_t py_small_size(size_t n) {
    if (n == 0) n = 1;
    return (n + g_cfg.pymalloc_align_mask) & ~g_cfg.pymalloc_align_mask;
}

// Bytes a Python-domain call allocated: what it asked for when malloc served it (underneath, or
// with PYTHONMALLOC=malloc), a pymalloc block's size otherwise; remembers pymalloc pools.
static ALWAYS_INLINE size_t py_block_size(struct agent_tls *t, int d, void *p, size_t n) {
    if (same_chunk(p, t->raw_ptr) || d == PY_DOMAIN_RAW || n > g_cfg.pymalloc_max_small) return n;
    size_t size = py_small_size(n);
    pool_note(p, (uint32_t)size);
    return size;
}

static ALWAYS_INLINE void *py_malloc(int d, size_t n) {
    const py_mem_allocator *o = &g_orig_alloc[d];
    if (!memory_on()) return o->malloc(o->ctx, n);
    struct agent_tls *t = tls_get();
    if (t->in_python) return o->malloc(o->ctx, n);
    t->in_python = 1;
    t->raw_ptr = NULL;
    void *p = o->malloc(o->ctx, n);
    t->in_python = 0;
    if (p) count_alloc(t, p, py_block_size(t, d, p, n), SCALENE_ORIGIN_PYTHON, 0);
    return p;
}

static ALWAYS_INLINE void *py_calloc(int d, size_t nelem, size_t elsize) {
    const py_mem_allocator *o = &g_orig_alloc[d];
    if (!memory_on()) return o->calloc(o->ctx, nelem, elsize);
    struct agent_tls *t = tls_get();
    size_t n;
    if (t->in_python || __builtin_mul_overflow(nelem, elsize, &n))
        return o->calloc(o->ctx, nelem, elsize);
    t->in_python = 1;
    t->raw_ptr = NULL;
    void *p = o->calloc(o->ctx, nelem, elsize);
    t->in_python = 0;
    if (p) count_alloc(t, p, py_block_size(t, d, p, n), SCALENE_ORIGIN_PYTHON, 0);
    return p;
}

// A realloc allocates what it grows. Its old size comes from malloc underneath (the GOT hook saw the
// block freed or resized), else from the pool table; pymalloc resizes in place only within a block,
// so in place without malloc underneath grows nothing.
static ALWAYS_INLINE void *py_realloc(int d, void *p, size_t n) {
    const py_mem_allocator *o = &g_orig_alloc[d];
    if (!memory_on()) return o->realloc(o->ctx, p, n);
    struct agent_tls *t = tls_get();
    if (t->in_python) return o->realloc(o->ctx, p, n);
    uint32_t pool_size = (p && d != PY_DOMAIN_RAW) ? pool_lookup(p) : 0;
    int tracked = p ? leak_take(p) : 0; // before: the call may free p
    t->in_python = 1;
    t->raw_ptr = NULL;
    t->freed_ptr = NULL;
    void *r = o->realloc(o->ctx, p, n);
    t->in_python = 0;
    if (!r) { // failed: p is untouched (Python never returns NULL for a size of 0)
        if (UNLIKELY(tracked)) keep_tracking(t, p, p);
        return r;
    }
    int raw = same_chunk(r, t->raw_ptr);
    size_t size;
    if (raw) size = t->raw_size;
    else if (d == PY_DOMAIN_RAW || n > g_cfg.pymalloc_max_small) size = n;
    else if (r == p) size = pool_size ? pool_size : py_small_size(n);
    else {
        size = py_small_size(n);
        pool_note(r, (uint32_t)size);
    }
    uint64_t growth = size;
    if (p) {
        if (same_chunk(p, t->freed_ptr)) {
            growth = size > t->freed_size ? size - t->freed_size : 0;
        } else if (r == p) {
            growth = 0;
        } else if (pool_size) {
            growth = size > pool_size ? size - pool_size : 0;
        } else {
            atomic_fetch_add_explicit(&g_counters.unsized_reallocs, 1, memory_order_relaxed);
        }
    }
    if (UNLIKELY(tracked)) keep_tracking(t, p, r);
    count_alloc(t, r, growth, SCALENE_ORIGIN_PYTHON, p ? SCALENE_SAMPLE_GROWTH : 0);
    return r;
}

static ALWAYS_INLINE void py_free(int d, void *p) {
    const py_mem_allocator *o = &g_orig_alloc[d];
    if (!memory_on() || p == NULL) {
        o->free(o->ctx, p);
        return;
    }
    struct agent_tls *t = tls_get();
    if (t->in_python) {
        o->free(o->ctx, p);
        return;
    }
    int sampled = leak_take(p); // before: p may be reused by another thread at once
    t->in_python = 1;
    t->freed_ptr = NULL;
    o->free(o->ctx, p);
    t->in_python = 0;
    if (UNLIKELY(sampled)) sample_sampled_free(t, p, same_chunk(p, t->freed_ptr) ? t->freed_size : 0);
}

#define PY_DOMAIN_WRAPPERS(D, tag)                                                                 \
    static void *pyw_malloc_##tag(void *ctx, size_t n) {                                          \
        (void)ctx;                                                                                 \
        return py_malloc(D, n);                                                                    \
    }                                                                                              \
    static void *pyw_calloc_##tag(void *ctx, size_t a, size_t b) {                                \
        (void)ctx;                                                                                 \
        return py_calloc(D, a, b);                                                                 \
    }                                                                                              \
    static void *pyw_realloc_##tag(void *ctx, void *p, size_t n) {                                \
        (void)ctx;                                                                                 \
        return py_realloc(D, p, n);                                                                \
    }                                                                                              \
    static void pyw_free_##tag(void *ctx, void *p) {                                              \
        (void)ctx;                                                                                 \
        py_free(D, p);                                                                             \
    }
PY_DOMAIN_WRAPPERS(PY_DOMAIN_RAW, raw)
PY_DOMAIN_WRAPPERS(PY_DOMAIN_MEM, mem)
PY_DOMAIN_WRAPPERS(PY_DOMAIN_OBJ, obj)

const py_mem_allocator g_wrap_alloc[PY_DOMAINS] = {
    {NULL, pyw_malloc_raw, pyw_calloc_raw, pyw_realloc_raw, pyw_free_raw},
    {NULL, pyw_malloc_mem, pyw_calloc_mem, pyw_realloc_mem, pyw_free_mem},
    {NULL, pyw_malloc_obj, pyw_calloc_obj, pyw_realloc_obj, pyw_free_obj},
};

// pymalloc's arenas are mmap'd directly, not through malloc: counted here, exactly, for the footprint.
static void *arena_alloc_w(void *ctx, size_t size) {
    (void)ctx;
    void *p = g_orig_arena.alloc(g_orig_arena.ctx, size);
    if (p) {
        pool_purge((uintptr_t)p, size);
        if (memory_on()) {
            atomic_fetch_add_explicit(&g_footprint.arena_bytes, (int64_t)size, memory_order_relaxed);
            footprint_add((int64_t)size);
        }
    }
    return p;
}

static void arena_free_w(void *ctx, void *p, size_t size) {
    (void)ctx;
    if (p) {
        pool_purge((uintptr_t)p, size);
        if (memory_on()) {
            atomic_fetch_sub_explicit(&g_footprint.arena_bytes, (int64_t)size, memory_order_relaxed);
            footprint_add(-(int64_t)size);
        }
    }
    g_orig_arena.free(g_orig_arena.ctx, p, size);
}

const py_arena_allocator g_wrap_arena = {NULL, arena_alloc_w, arena_free_w};

// ---------------------------------------------------------------------------------------------
const struct hook_def g_hooks[H_COUNT] = {
    [H_MALLOC] = {"malloc", (void *)hk_malloc, GROUP_MEMORY},
    [H_CALLOC] = {"calloc", (void *)hk_calloc, GROUP_MEMORY},
    [H_REALLOC] = {"realloc", (void *)hk_realloc, GROUP_MEMORY},
    [H_FREE] = {"free", (void *)hk_free, GROUP_MEMORY},
    [H_POSIX_MEMALIGN] = {"posix_memalign", (void *)hk_posix_memalign, GROUP_MEMORY},
    [H_ALIGNED_ALLOC] = {"aligned_alloc", (void *)hk_aligned_alloc, GROUP_MEMORY},
    [H_MEMALIGN] = {"memalign", (void *)hk_memalign, GROUP_MEMORY},
    [H_VALLOC] = {"valloc", (void *)hk_valloc, GROUP_MEMORY},
    [H_REALLOCARRAY] = {"reallocarray", (void *)hk_reallocarray, GROUP_MEMORY},
    [H_MEMCPY] = {"memcpy", (void *)hk_memcpy, GROUP_COPY},
    [H_MEMMOVE] = {"memmove", (void *)hk_memmove, GROUP_COPY},
    [H_MEMCPY_CHK] = {"__memcpy_chk", (void *)hk_memcpy_chk, GROUP_COPY},
    [H_MEMMOVE_CHK] = {"__memmove_chk", (void *)hk_memmove_chk, GROUP_COPY},
    [H_DLOPEN] = {"dlopen", (void *)scalene_hook_dlopen, GROUP_DLOPEN},
};

// ---------------------------------------------------------------------------------------------
// In a child after fork (one thread, no agent thread): stop sampling, put the GOT back, drop the
// channel. The Python wrappers stay installed but pass everything through; a later session in
// the child finds and reuses them.
void hooks_after_fork_child(void) {
    atomic_store(&g_cfg.memory_on, 0);
    atomic_store(&g_cfg.copy_on, 0);
    atomic_store(&g_dlopen_patching, 0);
    atomic_store(&g_channel_live, 0);
    g_tls.tid = 0;
    got_restore_in_child();
    struct scalene_channel *ch = g_channel;
    if (ch && g_channel_size && atomic_load(&g_inflight) == 0) munmap((void *)ch, g_channel_size);
    g_channel = NULL;
}
