// The start function and the agent thread.
//
// scalene_agent_start runs on a thread the attacher hijacked at a safe point: it only copies the
// channel path and starts a detached thread. That thread maps the channel, finds CPython's API at
// run time (no link-time dependency on libpython), takes the GIL with PyGILState_Ensure (never
// running Python code), finds the TSS key that maps a thread to its PyThreadState, installs the
// hooks, releases the GIL, and then watches the channel: DETACH or a lost heartbeat disarms
// (every GOT slot and allocator restored), unmaps the channel and ends the thread. The library is
// never unloaded (a hook may still be running on another thread) and may be started again.
#include "internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(struct scalene_sample) == 1096, "scalene_sample layout changed");
_Static_assert(offsetof(struct scalene_sample, frames) == 72, "scalene_sample layout changed");
_Static_assert(sizeof(struct scalene_channel) % 8 == 0, "scalene_channel must keep 8-byte records aligned");

#define DEFAULT_HEARTBEAT_TIMEOUT_MS 1500u
#define POLL_INTERVAL_NS 50000000l
#define DRAIN_TIMEOUT_NS 1000000000ull
#define RUNTIME_SCAN_DEFAULT (256u * 1024u)
#define RUNTIME_SCAN_MAX (1024u * 1024u)

// ---------------------------------------------------------------------------------------------
// CPython's API, found with dlsym at run time.
struct python_api {
    int (*Py_IsInitialized)(void);
    int (*IsFinalizing)(void);                       // Py_IsFinalizing (3.13+) / _Py_IsFinalizing
    int (*PyGILState_Ensure)(void);
    void (*PyGILState_Release)(int);
    void *(*PyGILState_GetThisThreadState)(void);
    void (*PyMem_GetAllocator)(int, py_mem_allocator *);
    void (*PyMem_SetAllocator)(int, py_mem_allocator *);
    void (*PyObject_GetArenaAllocator)(py_arena_allocator *);
    void (*PyObject_SetArenaAllocator)(py_arena_allocator *);
    void *runtime;                                    // &_PyRuntime
    // Optional, for checking the frame layout against the live threads.
    void *(*PyInterpreterState_Main)(void);
    void *(*PyInterpreterState_ThreadHead)(void *);
    void *(*PyThreadState_Next)(void *);
    void *(*PyEval_SaveThread)(void);
    void (*PyEval_RestoreThread)(void *);
    void *code_type;                                  // &PyCode_Type
    // Optional: pymalloc's statistics (every supported version exports it), for its arena count.
    void (*DebugMallocStats)(FILE *);                 // _PyObject_DebugMallocStats
};
static struct python_api P;

static char g_path[PATH_MAX];
// The channel as a descriptor (scalene_agent_start_fd): a memfd the attacher had this process
// create, so that no path has to exist in this process's view of the filesystem. -1: use g_path.
static int g_channel_fd = -1;
static _Atomic int g_session_running;
static int g_atfork_registered;
static int g_py_installed[PY_DOMAINS];
static int g_py_left[PY_DOMAINS];   // our wrapper may still be in a chain someone built on top of it
static int g_arena_installed;
static int g_arena_left;

// ---------------------------------------------------------------------------------------------
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns) {
    struct timespec ts = {ns / 1000000000l, ns % 1000000000l};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static struct scalene_channel *g_ch; // the agent thread's view (g_channel is the hooks' view)

static void ch_vmessage(const char *fmt, va_list ap) {
    if (!g_ch) return;
    char buf[SCALENE_MESSAGE_SIZE];
    vsnprintf(buf, sizeof buf, fmt, ap);
    memcpy(g_ch->message, buf, sizeof buf);
    g_ch->message[SCALENE_MESSAGE_SIZE - 1] = '\0';
}

static void ch_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ch_message(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ch_vmessage(fmt, ap);
    va_end(ap);
}

static void ch_state(uint32_t state) { __atomic_store_n(&g_ch->state, state, __ATOMIC_RELEASE); }

static void publish_counters(void) {
    struct got_stats gs;
    got_get_stats(&gs);
    __atomic_store_n(&g_ch->hooked_slots, gs.hooked_slots, __ATOMIC_RELAXED);
    __atomic_store_n(&g_ch->hooked_objects, gs.hooked_objects, __ATOMIC_RELAXED);
    __atomic_store_n(&g_ch->unsized_reallocs, atomic_load(&g_counters.unsized_reallocs), __ATOMIC_RELAXED);
    __atomic_store_n(&g_ch->pool_table_full, atomic_load(&g_counters.pool_table_full), __ATOMIC_RELAXED);
    __atomic_store_n(&g_ch->leak_table_full, atomic_load(&g_counters.leak_table_full), __ATOMIC_RELAXED);
    int py = g_py_installed[0] && g_py_installed[1] && g_py_installed[2];
    __atomic_store_n(&g_ch->python_hooks, (uint64_t)py, __ATOMIC_RELAXED);
}

static void channel_unmap(void) {
    if (g_ch) munmap(g_ch, g_channel_size);
    g_ch = NULL;
    g_channel = NULL;
}

// Ends a session that installed nothing.
static void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(int code, const char *fmt, ...) {
    if (g_ch) {
        va_list ap;
        va_start(ap, fmt);
        ch_vmessage(fmt, ap);
        va_end(ap);
        g_ch->error_code = code;
        ch_state(SCALENE_AGENT_FAILED);
    }
    channel_unmap();
}

// ---------------------------------------------------------------------------------------------
// Symbols. RTLD_DEFAULT finds CPython when it is the executable or one of its dependencies; an
// embedding application may have loaded libpython RTLD_LOCAL, so fall back to asking each loaded
// object by name.
static char g_names[8192];
static size_t g_names_len;

static int names_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    const char *n = info->dlpi_name;
    if (!n || !n[0]) return 0;
    size_t l = strlen(n) + 1;
    if (g_names_len + l > sizeof g_names) return 1;
    memcpy(g_names + g_names_len, n, l);
    g_names_len += l;
    return 0;
}

static void *find_symbol(const char *name) {
    void *p = dlsym(RTLD_DEFAULT, name);
    if (p) return p;
    g_names_len = 0;
    dl_iterate_phdr(names_cb, NULL);
    for (size_t off = 0; off < g_names_len; off += strlen(g_names + off) + 1) {
        const char *lib = g_names + off;
        if (!strstr(lib, "python")) continue;
        void *h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
        if (!h) continue;
        p = dlsym(h, name);
        dlclose(h);
        if (p) return p;
    }
    return NULL;
}

#define REQUIRE(field, name)                                                                       \
    do {                                                                                           \
        *(void **)&P.field = find_symbol(name);                                                    \
        if (!P.field) return name;                                                                 \
    } while (0)

static const char *resolve_python(void) {
    memset(&P, 0, sizeof P);
    REQUIRE(Py_IsInitialized, "Py_IsInitialized");
    REQUIRE(PyGILState_Ensure, "PyGILState_Ensure");
    REQUIRE(PyGILState_Release, "PyGILState_Release");
    REQUIRE(PyGILState_GetThisThreadState, "PyGILState_GetThisThreadState");
    REQUIRE(PyMem_GetAllocator, "PyMem_GetAllocator");
    REQUIRE(PyMem_SetAllocator, "PyMem_SetAllocator");
    REQUIRE(PyObject_GetArenaAllocator, "PyObject_GetArenaAllocator");
    REQUIRE(PyObject_SetArenaAllocator, "PyObject_SetArenaAllocator");
    REQUIRE(runtime, "_PyRuntime");
    *(void **)&P.IsFinalizing = find_symbol("Py_IsFinalizing");
    if (!P.IsFinalizing) *(void **)&P.IsFinalizing = find_symbol("_Py_IsFinalizing");
    *(void **)&P.PyInterpreterState_Main = find_symbol("PyInterpreterState_Main");
    *(void **)&P.PyInterpreterState_ThreadHead = find_symbol("PyInterpreterState_ThreadHead");
    *(void **)&P.PyThreadState_Next = find_symbol("PyThreadState_Next");
    *(void **)&P.PyEval_SaveThread = find_symbol("PyEval_SaveThread");
    *(void **)&P.PyEval_RestoreThread = find_symbol("PyEval_RestoreThread");
    P.code_type = find_symbol("PyCode_Type");
    *(void **)&P.DebugMallocStats = find_symbol("_PyObject_DebugMallocStats");
    return NULL;
}

// The functions our GOT hooks call. If the executable takes a function's address (Debian's
// non-PIE python3.11 does for malloc and free), RTLD_DEFAULT answers with the executable's PLT
// entry, the "canonical address", which jumps through a slot we are about to rewrite: calling it
// from the hook would recurse. dladdr1 shows such an entry as an undefined symbol; then the real
// definition is asked from libc.
static void resolve_real_functions(void) {
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    for (int h = 0; h < H_COUNT; h++) {
        void *a = dlsym(RTLD_DEFAULT, g_hooks[h].name);
        if (a) {
            Dl_info info;
            const ElfW(Sym) *sym = NULL;
            if (dladdr1(a, &info, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_shndx == SHN_UNDEF)
                a = NULL;
        }
        if (!a && libc) a = dlsym(libc, g_hooks[h].name);
        if (a) g_real[h] = a; // never cleared: a hook of an earlier session may still use it
    }
    if (libc) dlclose(libc);
}

// ---------------------------------------------------------------------------------------------
// Reads memory that may not be mapped, without faulting.
static int g_mem_fd = -1;

static int safe_read(uintptr_t addr, void *buf, size_t n) {
    struct iovec local = {buf, n}, remote = {(void *)addr, n};
    ssize_t k = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (k == (ssize_t)n) return 1;
    if (k < 0 && (errno == ENOSYS || errno == EPERM)) {
        if (g_mem_fd < 0) g_mem_fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
        if (g_mem_fd >= 0) return pread(g_mem_fd, buf, n, (off_t)addr) == (ssize_t)n;
    }
    return 0;
}

static int safe_ptr(uintptr_t addr, uintptr_t *out) { return safe_read(addr, out, sizeof *out); }

// Walks every other thread's frame chain with the attacher's layout and checks that each code
// pointer is a code object. Returns the number of code objects seen; *bad counts mismatches.
static int check_frame_layout(void *own_tstate, int *bad) {
    *bad = 0;
    if (!P.PyInterpreterState_Main || !P.PyInterpreterState_ThreadHead || !P.PyThreadState_Next ||
        !P.code_type)
        return -1;
    const struct scalene_frame_layout *L = &g_cfg.frames;
    void *interp = P.PyInterpreterState_Main();
    int good = 0, threads = 0;
    for (void *ts = interp ? P.PyInterpreterState_ThreadHead(interp) : NULL; ts && threads < 4096;
         ts = P.PyThreadState_Next(ts), threads++) {
        if (ts == own_tstate) continue;
        uintptr_t f = 0;
        if (!safe_ptr((uintptr_t)ts + (uintptr_t)L->tstate_frame, &f)) {
            (*bad)++;
            continue;
        }
        if (L->cframe_current_frame >= 0 && f &&
            !safe_ptr(f + (uintptr_t)L->cframe_current_frame, &f)) {
            (*bad)++;
            continue;
        }
        for (int depth = 0; f && depth < 256; depth++) {
            if (L->frame_owner >= 0) {
                uint8_t owner;
                if (!safe_read(f + (uintptr_t)L->frame_owner, &owner, 1)) {
                    (*bad)++;
                    break;
                }
                if (owner == L->owner_cstack || owner == L->owner_interpreter) goto next;
            }
            uintptr_t code = 0, type = 0;
            if (safe_ptr(f + (uintptr_t)L->frame_code, &code)) code &= ~(uintptr_t)(uint32_t)L->code_tag_bits;
            if (!code ||
                !safe_ptr(code + 8, &type) || type != (uintptr_t)P.code_type) {
                (*bad)++;
                break;
            }
            good++;
        next:;
            uintptr_t prev = 0;
            if (!safe_ptr(f + (uintptr_t)L->frame_previous, &prev)) {
                (*bad)++;
                break;
            }
            if (prev == f) break;
            f = prev;
        }
    }
    return good;
}

// The gilstate TSS key: a Py_tss_t {int _is_initialized; pthread_key_t _key;} inside _PyRuntime
// whose value on this thread is this thread's PyThreadState. Scanned, so no per-version offset.
static int find_tss_key(void *tstate, pthread_key_t *out) {
    uintptr_t start = (uintptr_t)P.runtime;
    size_t len = 0;
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (dladdr1(P.runtime, &info, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_size >= 16)
        len = sym->st_size < RUNTIME_SCAN_MAX ? sym->st_size : RUNTIME_SCAN_MAX; // all mapped
    uintptr_t end = got_readable_end(start);
    if (end > start) {
        if (len == 0) len = RUNTIME_SCAN_DEFAULT;
        if (start + len > end) len = end - start; // never past the readable mappings
    } else if (len == 0) {
        return 0; // no symbol size and no /proc/self/maps: no safe bound
    }
    for (size_t off = 0; off + 8 <= len; off += 4) {
        const int32_t *p = (const int32_t *)(start + off);
        if (p[0] != 1) continue;
        uint32_t key = (uint32_t)p[1];
        if (key >= PTHREAD_KEYS_MAX) continue;
        if (pthread_getspecific((pthread_key_t)key) == tstate) {
            *out = (pthread_key_t)key;
            return 1;
        }
    }
    return 0;
}

// 3.15+: the gilstate thread state is a thread-local variable of libpython (no TSS key). Found on
// this thread, with the GIL held, as the one word of libpython's TLS block that holds this thread's
// state and keeps holding it while the thread is detached (the other candidate, the "current"
// thread state, is cleared then). Its offset from the thread pointer is the same on every thread
// only if libpython's TLS is static (loaded at start, not dlopen'ed): checked on every other Python
// thread, whose pthread_t is its thread pointer, with fault-free reads.
struct tls_search {
    uintptr_t fn;      // an address inside the object that holds the gilstate (PyGILState_* code)
    uintptr_t data;    // that object's TLS block on this thread
    size_t size;
};

static int tls_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    struct tls_search *s = arg;
    int inside = 0;
    size_t tls_size = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && s->fn >= start && s->fn < start + ph->p_memsz) inside = 1;
        if (ph->p_type == PT_TLS) tls_size = ph->p_memsz;
    }
    if (!inside) return 0;
    s->data = (uintptr_t)info->dlpi_tls_data;
    s->size = tls_size;
    return 1;
}

static const char *find_gilstate_tls(void *tstate, intptr_t *offset) {
    if (!P.PyEval_SaveThread || !P.PyEval_RestoreThread) return "no PyEval_SaveThread/RestoreThread";
    struct tls_search s = {(uintptr_t)P.PyGILState_GetThisThreadState, 0, 0};
    dl_iterate_phdr(tls_cb, &s);
    if (!s.data || s.size < sizeof(void *)) return "libpython has no static TLS block on this thread";
    uintptr_t candidates[8];
    int n = 0;
    for (size_t off = 0; off + sizeof(void *) <= s.size && n < 8; off += sizeof(void *))
        if (*(void *const *)(s.data + off) == tstate) candidates[n++] = s.data + off;
    void *saved = P.PyEval_SaveThread(); // detach: the "current" thread state is cleared
    int kept = 0;
    uintptr_t found = 0;
    for (int i = 0; i < n; i++)
        if (*(void *const *)candidates[i] == tstate) kept++, found = candidates[i];
    P.PyEval_RestoreThread(saved);
    if (kept != 1) return "gilstate thread state not found in libpython's TLS";
    *offset = (intptr_t)(found - thread_pointer());
    // Every other thread state of the interpreter must be found at the same offset from its own
    // thread pointer (its pthread_t), unless its thread has not bound it yet.
    int32_t tid_off = g_ch->config.frames.tstate_thread_id;
    if (tid_off <= 0 || !P.PyInterpreterState_Main || !P.PyInterpreterState_ThreadHead || !P.PyThreadState_Next)
        return NULL;
    void *interp = P.PyInterpreterState_Main();
    int agree = 0, disagree = 0, threads = 0;
    for (void *ts = interp ? P.PyInterpreterState_ThreadHead(interp) : NULL; ts && threads < 4096;
         ts = P.PyThreadState_Next(ts), threads++) {
        uintptr_t pthread = 0, value = 0;
        if (ts == tstate || !safe_ptr((uintptr_t)ts + (uintptr_t)tid_off, &pthread) || !pthread) continue;
        if (!safe_ptr(pthread + (uintptr_t)*offset, &value)) disagree++;
        else if (value == (uintptr_t)ts) agree++;
        else if (value != 0) disagree++;
    }
    if (disagree > 0 && disagree >= agree) return "libpython's TLS is not at one offset on every thread (dlopen'ed?)";
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// The bytes pymalloc's arenas hold now (with the GIL held, so that none comes or goes meanwhile; from
// then on the arena wrapper counts them). The count lives in static variables of the interpreter
// (per interpreter from 3.12), so it is taken from the one function that reports it on every
// supported version, _PyObject_DebugMallocStats, whose line "N arenas * S bytes/arena" has been
// printed the same way since 3.3 (it prints nothing when pymalloc is not in use, PYTHONMALLOC=malloc:
// then there are no arenas). Written into a fixed buffer on this thread, before any hook is armed.
static char g_stats[64 * 1024];

static uint64_t python_arena_bytes(void) {
    if (!P.DebugMallocStats) return 0;
    memset(g_stats, 0, sizeof g_stats);
    FILE *out = fmemopen(g_stats, sizeof g_stats - 1, "w");
    if (!out) return 0;
    P.DebugMallocStats(out);
    fclose(out);
    for (char *line = g_stats; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        unsigned long long arenas = 0, size = 0;
        if (sscanf(line, "%llu arenas * %llu bytes/arena", &arenas, &size) == 2 && arenas < (1ull << 32) &&
            size <= (1ull << 30))
            return (uint64_t)(arenas * size);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Python allocator domains (with the GIL held).
static int wrapper_is_ours(const py_mem_allocator *a, int d) {
    return a->malloc == g_wrap_alloc[d].malloc && a->calloc == g_wrap_alloc[d].calloc &&
           a->realloc == g_wrap_alloc[d].realloc && a->free == g_wrap_alloc[d].free;
}

static void install_python_wrappers(void) {
    for (int d = 0; d < PY_DOMAINS; d++) {
        py_mem_allocator cur;
        P.PyMem_GetAllocator(d, &cur);
        if (wrapper_is_ours(&cur, d)) { // left installed (fork child, or a layer we removed)
            g_py_installed[d] = 1;
            g_py_left[d] = 0;
            continue;
        }
        if (g_py_left[d]) continue; // ours may sit under someone else's: do not stack another
        g_orig_alloc[d] = cur;
        py_mem_allocator w = g_wrap_alloc[d];
        w.ctx = cur.ctx;
        P.PyMem_SetAllocator(d, &w);
        g_py_installed[d] = 1;
    }
    py_arena_allocator cur;
    P.PyObject_GetArenaAllocator(&cur);
    if (cur.alloc == g_wrap_arena.alloc && cur.free == g_wrap_arena.free) {
        g_arena_installed = 1;
        g_arena_left = 0;
    } else if (!g_arena_left) {
        g_orig_arena = cur;
        py_arena_allocator w = g_wrap_arena;
        w.ctx = cur.ctx;
        P.PyObject_SetArenaAllocator(&w);
        g_arena_installed = 1;
    }
}

// Puts back what we found, where the current allocator is still our wrapper; otherwise someone
// wrapped us (tracemalloc.start()) and removing ours would cut them out: our wrapper stays and
// passes everything through.
static int restore_python_wrappers(void) {
    int left = 0;
    for (int d = 0; d < PY_DOMAINS; d++) {
        if (!g_py_installed[d]) continue;
        py_mem_allocator cur;
        P.PyMem_GetAllocator(d, &cur);
        if (wrapper_is_ours(&cur, d)) {
            P.PyMem_SetAllocator(d, &g_orig_alloc[d]);
        } else {
            g_py_left[d] = 1;
            left++;
        }
        g_py_installed[d] = 0;
    }
    if (g_arena_installed) {
        py_arena_allocator cur;
        P.PyObject_GetArenaAllocator(&cur);
        if (cur.alloc == g_wrap_arena.alloc && cur.free == g_wrap_arena.free) {
            P.PyObject_SetArenaAllocator(&g_orig_arena);
        } else {
            g_arena_left = 1;
            left++;
        }
        g_arena_installed = 0;
    }
    return left;
}

static int python_usable(void) {
    return P.Py_IsInitialized && P.Py_IsInitialized() && !(P.IsFinalizing && P.IsFinalizing());
}

// ---------------------------------------------------------------------------------------------
// Disarm: stop sampling, restore the GOT (no GIL needed, so this part is bounded even if the GIL
// is held for long), restore the allocators under the GIL, drain writers, report, unmap.
static void disarm(uint32_t final_state, const char *why) {
    if (atomic_load(&g_cfg.memory_on)) footprint_poll(g_ch, now_ns()); // the last figures counted
    atomic_store(&g_cfg.memory_on, 0);
    atomic_store(&g_cfg.copy_on, 0);
    got_restore_all();
    int left = 0, skipped_python = 0;
    int any = g_py_installed[0] || g_py_installed[1] || g_py_installed[2] || g_arena_installed;
    if (any) {
        if (python_usable()) {
            int st = P.PyGILState_Ensure();
            left = restore_python_wrappers();
            P.PyGILState_Release(st);
        } else {
            skipped_python = 1; // finalizing: taking the GIL could end this thread
        }
    }
    atomic_store(&g_channel_live, 0);
    uint64_t t0 = now_ns();
    while (channel_inflight() != 0 && now_ns() - t0 < DRAIN_TIMEOUT_NS) sleep_ns(1000000);
    int drained = channel_inflight() == 0;
    publish_counters();
    __atomic_store_n(&g_ch->hooked_slots, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g_ch->hooked_objects, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g_ch->python_hooks, 0, __ATOMIC_RELAXED);
    if (skipped_python)
        ch_message("%s; interpreter finalizing: Python allocator wrappers left, passing through", why);
    else if (left)
        ch_message("%s; %d Python allocator wrapper(s) left under another hook, passing through", why,
                   left);
    else
        ch_message("%s", why);
    ch_state(final_state);
    if (drained) channel_unmap();
    else g_ch = NULL, g_channel = NULL; // a writer is stuck: leave the mapping rather than fault it
}

// ---------------------------------------------------------------------------------------------
static int map_channel(void) {
    int fd = g_channel_fd;
    g_channel_fd = -1; // ours now: closed below whatever happens
    if (fd < 0) fd = open(g_path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size < sizeof(struct scalene_channel)) {
        close(fd);
        return 0;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return 0;
    g_ch = p;
    g_channel_size = (size_t)st.st_size;
    // Without a valid magic and version we cannot trust where `state` is: stay silent.
    if (g_ch->magic != SCALENE_CHANNEL_MAGIC || g_ch->protocol_version != SCALENE_PROTOCOL_VERSION) {
        channel_unmap();
        return 0;
    }
    return 1;
}

static const char *check_channel(void) {
    const struct scalene_channel *c = g_ch;
    if (c->header_size != sizeof(struct scalene_channel)) return "header_size mismatch";
    if (c->record_size != sizeof(struct scalene_sample)) return "record_size mismatch";
    if (c->capacity == 0 || (c->capacity & (c->capacity - 1)) != 0) return "capacity is not a power of two";
    if ((uint64_t)c->header_size + (uint64_t)c->capacity * c->record_size > g_channel_size)
        return "channel file smaller than header + capacity * record_size";
    return NULL;
}

static const char *check_config(const struct scalene_agent_config *c) {
    const struct scalene_frame_layout *f = &c->frames;
    const int32_t lim = 1 << 16;
    if (f->tstate_frame < 0 || f->tstate_frame > lim || f->cframe_current_frame > lim ||
        f->frame_previous < 0 || f->frame_previous > lim || f->frame_code < 0 ||
        f->frame_code > lim || f->frame_instr < 0 || f->frame_instr > lim || f->frame_owner > lim)
        return "frame layout offsets out of range";
    if (f->frame_instr_size != 4 && f->frame_instr_size != 8) return "frame_instr_size must be 4 or 8";
    if (f->code_tag_bits < 0 || f->code_tag_bits > 7) return "code_tag_bits must be 0..7";
    if (f->tstate_thread_id > lim) return "tstate_thread_id out of range";
    if (c->memory_window > (uint64_t)INT64_MAX / 4) return "memory_window too large";
    if (c->memory_window) {
        uint32_t a = c->pymalloc_alignment, ps = c->pymalloc_pool_size;
        if (a < 8 || a > 4096 || (a & (a - 1))) return "pymalloc_alignment must be a power of two";
        if (ps && (ps < 1024 || (ps & (ps - 1)))) return "pymalloc_pool_size must be a power of two";
        if (c->pymalloc_max_small == 0 || c->pymalloc_max_small > 65536) return "bad pymalloc_max_small";
    }
    return NULL;
}

static int command_detach(void) {
    return __atomic_load_n(&g_ch->command, __ATOMIC_ACQUIRE) == SCALENE_COMMAND_DETACH;
}

static void configure_sampling(const struct scalene_agent_config *c, int source, pthread_key_t key,
                               intptr_t tls_offset) {
    g_cfg.memory_window = c->memory_window;
    g_cfg.copy_window = c->copy_window;
    g_cfg.pymalloc_align_mask = c->pymalloc_alignment ? c->pymalloc_alignment - 1 : 15;
    g_cfg.pymalloc_max_small = c->pymalloc_max_small;
    g_cfg.pool_shift = c->pymalloc_pool_size ? (uint32_t)__builtin_ctz(c->pymalloc_pool_size) : 0;
    g_cfg.frames = c->frames;
    // _PyRuntime is a static object of the interpreter: always mapped, so a plain load is safe.
    g_cfg.finalizing = c->runtime_finalizing && c->runtime_address
                           ? (uintptr_t)c->runtime_address + c->runtime_finalizing : 0;
    g_cfg.tss_key = key;
    g_cfg.tls_offset = tls_offset;
    g_cfg.tss_ok = source;
    sampling_new_epoch();
    g_ring_mask = (uint64_t)g_ch->capacity - 1;
    g_channel = g_ch;
}

static void hook_selection(int memory, int copy) {
    int core_memory = g_real[H_MALLOC] && g_real[H_CALLOC] && g_real[H_REALLOC] && g_real[H_FREE];
    for (int h = 0; h < H_COUNT; h++) {
        int on = 0;
        switch (g_hooks[h].group) {
        case GROUP_MEMORY: on = memory && core_memory; break;
        case GROUP_COPY: on = copy; break;
        case GROUP_DLOPEN: on = memory || copy; break;
        }
        g_hook_enabled[h] = (uint8_t)(on && g_real[h] != NULL);
    }
}

static void atfork_child(void) {
    if (atomic_load(&g_session_running)) {
        hooks_after_fork_child();
        for (int d = 0; d < PY_DOMAINS; d++)
            if (g_py_installed[d]) g_py_left[d] = 0; // still installed in the child: reusable
        g_ch = NULL;
        atomic_store(&g_session_running, 0);
    }
}

static void *agent_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "scalene-agent");
    if (!g_atfork_registered) {
        g_atfork_registered = 1;
        pthread_atfork(NULL, NULL, atfork_child);
    }
    if (!map_channel()) goto end;
    g_ch->agent_tid = (uint64_t)syscall(SYS_gettid);
    g_ch->error_code = 0;
    memset(g_ch->message, 0, sizeof g_ch->message);
    const char *problem = check_channel();
    if (problem) {
        fail(EINVAL, "%s", problem);
        goto end;
    }
    struct scalene_agent_config cfg = g_ch->config; // the attacher's copy may change; ours does not
    ch_state(SCALENE_AGENT_STARTING);
    got_init();

    const char *missing = resolve_python();
    if (missing) {
        fail(ENOENT, "CPython symbol not found: %s", missing);
        goto end;
    }
    if (cfg.runtime_address && cfg.runtime_address != (uint64_t)(uintptr_t)P.runtime) {
        fail(EINVAL, "_PyRuntime is at %p, the attacher expected 0x%llx", P.runtime,
             (unsigned long long)cfg.runtime_address);
        goto end;
    }
    if ((problem = check_config(&cfg)) != NULL) {
        fail(EINVAL, "%s", problem);
        goto end;
    }
    if (!python_usable()) {
        fail(EAGAIN, "the interpreter is not initialized or is finalizing");
        goto end;
    }
    resolve_real_functions();
    int memory = cfg.memory_window > 0, copy = cfg.copy_window > 0;
    hook_selection(memory, copy);
    if (memory && tables_init() != 0) {
        fail(ENOMEM, "cannot map the pool and leak tables");
        goto end;
    }
    uint32_t timeout_ms = cfg.heartbeat_timeout_ms ? cfg.heartbeat_timeout_ms : DEFAULT_HEARTBEAT_TIMEOUT_MS;
    uint64_t last_beat = __atomic_load_n(&g_ch->heartbeat_ns, __ATOMIC_ACQUIRE);
    uint64_t last_change = now_ns();

    int gil = P.PyGILState_Ensure(); // may wait: the state says STARTING meanwhile
    uint64_t beat = __atomic_load_n(&g_ch->heartbeat_ns, __ATOMIC_ACQUIRE);
    if (beat != last_beat) last_beat = beat, last_change = now_ns();
    if (command_detach() || now_ns() - last_change > (uint64_t)timeout_ms * 1000000ull) {
        P.PyGILState_Release(gil);
        ch_message(command_detach() ? "detached before arming" : "heartbeat lost before arming");
        ch_state(command_detach() ? SCALENE_AGENT_DETACHED : SCALENE_AGENT_ORPHANED);
        channel_unmap();
        goto end;
    }
    void *tstate = P.PyGILState_GetThisThreadState();
    pthread_key_t key = 0;
    intptr_t tls_offset = 0;
    int source = TSTATE_BY_TSS_KEY;
    if (!tstate) {
        P.PyGILState_Release(gil);
        fail(ESRCH, "no thread state for the agent thread");
        goto end;
    }
    if (!find_tss_key(tstate, &key)) {
        const char *why = find_gilstate_tls(tstate, &tls_offset);
        if (why) {
            P.PyGILState_Release(gil);
            fail(ESRCH, "gilstate TSS key not found in _PyRuntime, and %s", why);
            goto end;
        }
        source = TSTATE_BY_TLS;
    }
    int bad = 0;
    g_cfg.frames = cfg.frames;
    int good = check_frame_layout(tstate, &bad);
    if (bad > 0 && bad >= good) {
        P.PyGILState_Release(gil);
        fail(EINVAL, "frame layout does not match the interpreter (%d code objects, %d mismatches)",
             good, bad);
        goto end;
    }
    configure_sampling(&cfg, source, key, tls_offset);
    // Arenas now, with the GIL held (none comes or goes until we release it and the wrapper counts).
    uint64_t arenas = memory ? python_arena_bytes() : 0;
    atomic_store(&g_channel_live, 1);
    atomic_store(&g_cfg.memory_on, memory);
    atomic_store(&g_cfg.copy_on, copy);
    if (memory || copy) {
        got_enable();
        got_patch_all(); // GOT first: the Python wrappers rely on the malloc hook underneath
    }
    if (memory) {
        install_python_wrappers();
        footprint_arm(arenas);
        footprint_poll(g_ch, now_ns());
    }
    P.PyGILState_Release(gil);
    publish_counters();
    if (good >= 0)
        ch_message("armed: frame layout checked on %d code objects; thread states from %s", good,
                   source == TSTATE_BY_TLS ? "libpython's TLS" : "the gilstate TSS key");
    else
        ch_message("armed: frame layout not checked (thread iteration API not found)");
    ch_state(SCALENE_AGENT_ARMED);

    for (;;) {
        sleep_ns(POLL_INTERVAL_NS);
        if (command_detach()) {
            disarm(SCALENE_AGENT_DETACHED, "detached on request");
            break;
        }
        uint64_t now = now_ns();
        beat = __atomic_load_n(&g_ch->heartbeat_ns, __ATOMIC_ACQUIRE);
        if (beat != last_beat) {
            last_beat = beat;
            last_change = now;
        } else if (now - last_change > (uint64_t)timeout_ms * 1000000ull) {
            disarm(SCALENE_AGENT_ORPHANED, "heartbeat lost: disarmed by the agent");
            break;
        }
        if (memory || copy) got_poll();
        if (memory) footprint_poll(g_ch, now);
        if (!g_ch->finalizing_ns && g_cfg.finalizing &&
            __atomic_load_n((const uintptr_t *)g_cfg.finalizing, __ATOMIC_RELAXED) != 0)
            __atomic_store_n(&g_ch->finalizing_ns, now, __ATOMIC_RELEASE);
        publish_counters();
    }
end:
    if (g_mem_fd >= 0) close(g_mem_fd), g_mem_fd = -1;
    atomic_store(&g_session_running, 0);
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// The exported symbols: the channel by path (tests, a shared /dev/shm) or by descriptor.
static int start_session(void);

__attribute__((visibility("default"))) int scalene_agent_start(const char *channel_path) {
    if (channel_path == NULL) return EINVAL;
    size_t len = strnlen(channel_path, sizeof g_path);
    if (len == 0) return EINVAL;
    if (len >= sizeof g_path) return ENAMETOOLONG;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&g_session_running, &expected, 1)) return EBUSY;
    memcpy(g_path, channel_path, len + 1);
    g_channel_fd = -1;
    return start_session();
}

// `fd` is an open descriptor of the channel file; the agent's thread maps it and closes it (on
// success; on an error return the caller still owns it).
__attribute__((visibility("default"))) int scalene_agent_start_fd(int fd) {
    if (fd < 0) return EBADF;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&g_session_running, &expected, 1)) return EBUSY;
    g_path[0] = '\0';
    g_channel_fd = fd;
    int rc = start_session();
    if (rc != 0) g_channel_fd = -1;
    return rc;
}

static int start_session(void) {
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0) {
        atomic_store(&g_session_running, 0);
        return rc;
    }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // The agent thread takes no signals: they go to the target's own threads.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    rc = pthread_create(&thread, &attr, agent_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        atomic_store(&g_session_running, 0);
        return rc;
    }
    return 0;
}
