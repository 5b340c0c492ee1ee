// Everything here runs on the target's own threads, inside malloc, free, memcpy, dlopen and
// CPython's allocator: no malloc, no locks (except the patch lock after a dlopen, see got.c),
// no stdio, no Python API, errno preserved, thread-local state only in the initial-exec block.
//
// Sampling follows Scalene: each thread keeps a net byte counter (allocated minus freed); when it
// crosses +window a MALLOC sample is written, when it crosses -window a FREE sample; copies have
// their own counter and window. A hook that does not sample costs a flag test, a TLS add and a
// compare on top of the real call.
#include "internal.h"

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
    int64_t net;            // bytes allocated minus bytes freed since the last memory sample
    uint64_t python_bytes;  // bytes allocated through Python's allocator since the last sample
    uint64_t native_bytes;  // bytes allocated by native code since the last sample
    uint64_t copied;        // bytes copied since the last copy sample
    void *raw_ptr;          // last block malloc & co. returned inside a Python-domain call
    uint64_t raw_size;
    void *freed_ptr;        // last block free/realloc released inside a Python-domain call
    uint64_t freed_size;
    uint32_t tid;           // cached gettid()
    uint32_t epoch;         // g_cfg.epoch these counters belong to
    uint32_t in_python;     // inside a Python-domain wrapper (depth guard)
    uint32_t reserved;
};
_Static_assert(sizeof(struct agent_tls) <= 128, "keep the agent's TLS small");
static __thread struct agent_tls g_tls __attribute__((tls_model("initial-exec")));

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
    t->net = 0;
    t->python_bytes = 0;
    t->native_bytes = 0;
    t->copied = 0;
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

// Fills rec->frames / frame_count / flags with the calling thread's Python stack, innermost first.
// The walk is bounded (SCALENE_MAX_FRAMES recorded, 4x that visited, shim frames included) and
// stops at a pointer that repeats (Brent's cycle detection: constant stack, hooks may run on small
// thread stacks).
static void capture_frames(struct scalene_sample *rec) {
    rec->frame_count = 0;
    rec->flags = 0;
    if (!g_cfg.tss_ok) return;
    // Once Py_Finalize has begun, the thread states of other (daemon) threads are freed while those
    // threads may still run C code (their exit path allocates): their TSS slot would then point at
    // freed memory. CPython sets this before it deletes any thread state.
    if (g_cfg.finalizing && __atomic_load_n((const uintptr_t *)g_cfg.finalizing, __ATOMIC_RELAXED) != 0) {
        rec->flags |= 2;
        return;
    }
    const struct scalene_frame_layout *L = &g_cfg.frames;
    uintptr_t ts = (uintptr_t)pthread_getspecific(g_cfg.tss_key);
    if (!plausible(ts)) return;
    uintptr_t f = rd_ptr(ts, L->tstate_frame);
    if (L->cframe_current_frame >= 0) {
        if (!plausible(f)) return;
        f = rd_ptr(f, L->cframe_current_frame);
    }
    uint32_t n = 0;
    uintptr_t tortoise = 0;
    unsigned power = 1, lam = 0;
    for (unsigned steps = 0; f != 0; steps++) {
        if (!plausible(f) || f == tortoise) break; // garbage or a cycle
        if (steps == 4 * SCALENE_MAX_FRAMES) {
            rec->flags |= 1;
            break;
        }
        if (++lam == power) { // Brent: move the tortoise to f every power-of-two steps
            tortoise = f;
            power <<= 1;
            lam = 0;
        }
        int skip = L->frame_owner >= 0 &&
                   *(const uint8_t *)(f + (uintptr_t)L->frame_owner) == (uint8_t)L->owner_cstack;
        if (!skip) {
            if (n == SCALENE_MAX_FRAMES) {
                rec->flags |= 1;
                break;
            }
            rec->frames[n].code = rd_ptr(f, L->frame_code);
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
}

// ---------------------------------------------------------------------------------------------
// The ring. Every access to the channel is bracketed by the in-flight counter so that disarm can
// wait for writers before it unmaps (Dekker: writer increments then checks live; disarm clears
// live then waits for zero; both sequentially consistent).
long channel_inflight(void) { return atomic_load(&g_inflight); }

static NOINLINE void emit(struct agent_tls *t, uint32_t kind, uint64_t bytes, uint64_t python_bytes,
                          uint64_t native_bytes, const void *pointer) {
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
    rec->python_bytes = python_bytes;
    rec->native_bytes = native_bytes;
    rec->pointer = (uint64_t)(uintptr_t)pointer;
    if (kind == SCALENE_SAMPLE_MALLOC || kind == SCALENE_SAMPLE_COPY) {
        capture_frames(rec);
    } else {
        // A free may be the one that releases this thread's own PyThreadState (thread exit): its
        // frames are never read on the free path, and no report needs them.
        rec->frame_count = 0;
        rec->flags = 0;
    }
    __atomic_store_n(&rec->sequence, w + 1, __ATOMIC_RELEASE);
out:
    atomic_fetch_sub(&g_inflight, 1);
    errno = saved_errno;
}

// ---------------------------------------------------------------------------------------------
// Leak table: pointers of MALLOC samples, lock-free open addressing (0 empty, 1 deleted). Every
// free asks it, so a counting prefilter (8 KB, mostly L1-resident) answers "certainly not" first:
// a bucket counts the entries whose home slot maps to it, incremented before an insert becomes
// visible and decremented after a removal, so a present pointer always finds its bucket nonzero.
#define LEAK_BITS 14
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

static void leak_insert(const void *p) {
    _Atomic uint64_t *tab = g_leak_tab;
    uint64_t key = (uint64_t)(uintptr_t)p;
    if (!tab || key <= 1) return;
    uint64_t i = mix64(key >> 4) & (LEAK_SLOTS - 1);
    _Atomic uint16_t *bucket = &g_leak_filter[i & (LEAK_FILTER - 1)];
    if (atomic_load_explicit(bucket, memory_order_relaxed) < 0xfff0) { // never wrap
        atomic_fetch_add(bucket, 1);
        for (int k = 0; k < LEAK_PROBES; k++, i = (i + 1) & (LEAK_SLOTS - 1)) {
            uint64_t cur = atomic_load_explicit(&tab[i], memory_order_relaxed);
            if (cur == key) { // already tracked
                atomic_fetch_sub(bucket, 1);
                return;
            }
            if (cur <= 1 && atomic_compare_exchange_strong(&tab[i], &cur, key)) return;
        }
        atomic_fetch_sub(bucket, 1);
    }
    atomic_fetch_add_explicit(&g_counters.leak_table_full, 1, memory_order_relaxed);
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
// Threshold sampling.
static NOINLINE void sample_malloc(struct agent_tls *t, const void *p) {
    uint64_t bytes = (uint64_t)t->net;
    uint64_t py = t->python_bytes, nat = t->native_bytes;
    t->net = 0;
    t->python_bytes = 0;
    t->native_bytes = 0;
    emit(t, SCALENE_SAMPLE_MALLOC, bytes, py, nat, p);
    if (p) leak_insert(p);
}

static NOINLINE void sample_free(struct agent_tls *t) {
    uint64_t bytes = (uint64_t)(-t->net);
    uint64_t py = t->python_bytes, nat = t->native_bytes;
    t->net = 0;
    t->python_bytes = 0;
    t->native_bytes = 0;
    emit(t, SCALENE_SAMPLE_FREE, bytes, py, nat, NULL);
}

static NOINLINE void sample_copy(struct agent_tls *t) {
    uint64_t bytes = t->copied;
    t->copied = 0;
    emit(t, SCALENE_SAMPLE_COPY, bytes, 0, 0, NULL);
}

static NOINLINE void sample_sampled_free(struct agent_tls *t, const void *p, uint64_t size) {
    emit(t, SCALENE_SAMPLE_SAMPLED_FREE, size, 0, 0, p);
}

static ALWAYS_INLINE void check_window(struct agent_tls *t, const void *p) {
    if (UNLIKELY(t->net >= g_cfg.memory_window)) sample_malloc(t, p);
    else if (UNLIKELY(t->net <= -g_cfg.memory_window)) sample_free(t);
}

// ---------------------------------------------------------------------------------------------
// Native (GOT) memory hooks.
static ALWAYS_INLINE void note_alloc(void *p) {
    size_t size = malloc_usable_size(p);
    struct agent_tls *t = tls_get();
    if (t->in_python) { // part of a Python-domain call: tell the wrapper, count nothing here
        t->raw_ptr = p;
        t->raw_size = size;
        return;
    }
    t->native_bytes += size;
    t->net += (int64_t)size;
    if (UNLIKELY(t->net >= g_cfg.memory_window)) sample_malloc(t, p);
}

static ALWAYS_INLINE void note_free(void *p) {
    size_t size = malloc_usable_size(p);
    struct agent_tls *t = tls_get();
    if (t->in_python) {
        t->freed_ptr = p;
        t->freed_size = size;
        return;
    }
    if (UNLIKELY(leak_take(p))) sample_sampled_free(t, p, size);
    t->net -= (int64_t)size;
    if (UNLIKELY(t->net <= -g_cfg.memory_window)) sample_free(t);
}

// realloc-like: `old` is the usable size of p taken before the call, r the result.
static ALWAYS_INLINE void note_realloc(void *p, size_t old, void *r) {
    size_t size = r ? malloc_usable_size(r) : 0;
    struct agent_tls *t = tls_get();
    if (t->in_python) {
        if (p) {
            t->freed_ptr = p;
            t->freed_size = old;
        }
        if (r) {
            t->raw_ptr = r;
            t->raw_size = size;
        }
        return;
    }
    if (p && r != p && UNLIKELY(leak_take(p))) sample_sampled_free(t, p, old);
    t->native_bytes += size;
    t->net += (int64_t)size - (int64_t)old;
    check_window(t, r);
}

static void *hk_malloc(size_t n) {
    void *p = REAL(H_MALLOC, malloc_fn)(n);
    if (LIKELY(memory_on()) && p) note_alloc(p);
    return p;
}

static void *hk_calloc(size_t n, size_t m) {
    void *p = REAL(H_CALLOC, calloc_fn)(n, m);
    if (LIKELY(memory_on()) && p) note_alloc(p);
    return p;
}

static void hk_free(void *p) {
    if (LIKELY(memory_on()) && p) note_free(p);
    REAL(H_FREE, free_fn)(p);
}

static void *hk_realloc(void *p, size_t n) {
    if (!memory_on()) return REAL(H_REALLOC, realloc_fn)(p, n);
    size_t old = p ? malloc_usable_size(p) : 0;
    void *r = REAL(H_REALLOC, realloc_fn)(p, n);
    if (r || (p && n == 0)) note_realloc(p, old, r); // NULL with n == 0 means p was freed
    return r;
}

static void *hk_reallocarray(void *p, size_t n, size_t m) {
    if (!memory_on()) return REAL(H_REALLOCARRAY, reallocarray_fn)(p, n, m);
    size_t old = p ? malloc_usable_size(p) : 0;
    void *r = REAL(H_REALLOCARRAY, reallocarray_fn)(p, n, m);
    if (r || (p && (n == 0 || m == 0))) note_realloc(p, old, r);
    return r;
}

static int hk_posix_memalign(void **out, size_t alignment, size_t n) {
    int rc = REAL(H_POSIX_MEMALIGN, posix_memalign_fn)(out, alignment, n);
    if (LIKELY(memory_on()) && rc == 0 && *out) note_alloc(*out);
    return rc;
}

static void *hk_aligned_alloc(size_t alignment, size_t n) {
    void *p = REAL(H_ALIGNED_ALLOC, aligned_alloc_fn)(alignment, n);
    if (LIKELY(memory_on()) && p) note_alloc(p);
    return p;
}

static void *hk_memalign(size_t alignment, size_t n) {
    void *p = REAL(H_MEMALIGN, aligned_alloc_fn)(alignment, n);
    if (LIKELY(memory_on()) && p) note_alloc(p);
    return p;
}

static void *hk_valloc(size_t n) {
    void *p = REAL(H_VALLOC, valloc_fn)(n);
    if (LIKELY(memory_on()) && p) note_alloc(p);
    return p;
}

// ---------------------------------------------------------------------------------------------
// Copy hooks.
static ALWAYS_INLINE void note_copy(size_t n) {
    struct agent_tls *t = tls_get();
    t->copied += n;
    if (UNLIKELY(t->copied >= g_cfg.copy_window)) sample_copy(t);
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

// Size of a block a Python-domain call returned; remembers pymalloc pools.
static ALWAYS_INLINE size_t py_block_size(struct agent_tls *t, int d, void *p, size_t n) {
    if (same_chunk(p, t->raw_ptr)) return t->raw_size; // served by malloc underneath
    if (d == PY_DOMAIN_RAW || n > g_cfg.pymalloc_max_small) return n;
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
    if (p) {
        size_t size = py_block_size(t, d, p, n);
        t->python_bytes += size;
        t->net += (int64_t)size;
        if (UNLIKELY(t->net >= g_cfg.memory_window)) sample_malloc(t, p);
    }
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
    if (p) {
        size_t size = py_block_size(t, d, p, n);
        t->python_bytes += size;
        t->net += (int64_t)size;
        if (UNLIKELY(t->net >= g_cfg.memory_window)) sample_malloc(t, p);
    }
    return p;
}

static ALWAYS_INLINE void *py_realloc(int d, void *p, size_t n) {
    const py_mem_allocator *o = &g_orig_alloc[d];
    if (!memory_on()) return o->realloc(o->ctx, p, n);
    struct agent_tls *t = tls_get();
    if (t->in_python) return o->realloc(o->ctx, p, n);
    uint32_t pool_size = (p && d != PY_DOMAIN_RAW) ? pool_lookup(p) : 0;
    t->in_python = 1;
    t->raw_ptr = NULL;
    t->freed_ptr = NULL;
    void *r = o->realloc(o->ctx, p, n);
    t->in_python = 0;
    if (!r) return r; // failed: p is untouched (Python never returns NULL for a size of 0)
    size_t old = 0;
    if (p) {
        if (same_chunk(p, t->freed_ptr)) {
            old = t->freed_size;
        } else if (pool_size) {
            old = pool_size;
        } else if (d != PY_DOMAIN_RAW) {
            atomic_fetch_add_explicit(&g_counters.untracked_frees, 1, memory_order_relaxed);
        }
    }
    size_t size;
    if (same_chunk(r, t->raw_ptr)) size = t->raw_size;
    else if (d == PY_DOMAIN_RAW || n > g_cfg.pymalloc_max_small) size = n;
    else if (r == p) size = pool_size ? pool_size : py_small_size(n); // resized in place
    else {
        size = py_small_size(n);
        pool_note(r, (uint32_t)size);
    }
    if (p && r != p && UNLIKELY(leak_take(p))) sample_sampled_free(t, p, old);
    t->python_bytes += size;
    t->net += (int64_t)size - (int64_t)old;
    check_window(t, r);
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
    uint32_t pool_size = d != PY_DOMAIN_RAW ? pool_lookup(p) : 0; // before the arena may go
    int sampled = leak_take(p);
    t->in_python = 1;
    t->freed_ptr = NULL;
    o->free(o->ctx, p);
    t->in_python = 0;
    size_t size;
    if (same_chunk(p, t->freed_ptr)) {
        size = t->freed_size; // free() underneath: a malloc'd block
    } else if (pool_size) {
        size = pool_size;
    } else {
        if (d != PY_DOMAIN_RAW)
            atomic_fetch_add_explicit(&g_counters.untracked_frees, 1, memory_order_relaxed);
        if (UNLIKELY(sampled)) sample_sampled_free(t, p, 0);
        return;
    }
    if (UNLIKELY(sampled)) sample_sampled_free(t, p, size);
    t->net -= (int64_t)size;
    if (UNLIKELY(t->net <= -g_cfg.memory_window)) sample_free(t);
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

static void *arena_alloc_w(void *ctx, size_t size) {
    (void)ctx;
    void *p = g_orig_arena.alloc(g_orig_arena.ctx, size);
    if (p) pool_purge((uintptr_t)p, size);
    return p;
}

static void arena_free_w(void *ctx, void *p, size_t size) {
    (void)ctx;
    if (p) pool_purge((uintptr_t)p, size);
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
