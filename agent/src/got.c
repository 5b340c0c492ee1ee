// Redirecting GOT slots of every loaded object to the agent's hooks, and putting them back.
//
// A pass walks dl_iterate_phdr (which holds the loader's list lock, so no listed object can be
// unmapped during the walk), parses each object's PT_DYNAMIC, and rewrites the R_X86_64_JUMP_SLOT
// and R_X86_64_GLOB_DAT slots of the hooked names. A slot is rewritten only if it holds what the
// global binding of that name is (g_real) or, for a JUMP_SLOT, still points at the object's own
// PLT (lazy binding not yet done): a slot bound elsewhere (RTLD_DEEPBIND, an old symbol version,
// a canonical PLT address) is left alone. Every rewrite is recorded (slot, original value) and
// restore writes the original back only where the slot still holds our hook.
//
// An object that dlopen is still relocating on another thread is visible to dl_iterate_phdr. Its
// PT_GNU_RELRO pages are made read-only only when its relocation is finished, so an object whose
// RELRO page is still writable is left for a later pass (never mprotect a page the loader is about
// to write). Pages that are read-only are made writable for the one store and then put back.
#include "internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDS 16384
#define MAX_KNOWN 4096
#define MAX_PENDING 64
#define MAX_MAPS 65536
#define PENDING_GIVE_UP_NS 2000000000ull

struct slot_record {
    uintptr_t slot;
    uintptr_t orig;
    uint32_t hook;
    uint32_t active;
};

struct known_object {
    uintptr_t base;
    uintptr_t dyn;
    uint64_t name_hash;
    uint32_t hooked; // slots rewritten in this object
};

struct pending_object {
    uintptr_t base;
    uintptr_t dyn;
    uint64_t name_hash;
    uint64_t first_ns;
};

struct map_entry {
    uintptr_t start, end;
    int prot;
};

static pthread_mutex_t g_patch_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_patching;                   // under g_patch_lock
static struct slot_record g_records[MAX_RECORDS];
static uint32_t g_nrecords;              // published with release (the fork child reads it)
static struct known_object g_known[MAX_KNOWN];
static uint32_t g_nknown;
static struct pending_object g_pending[MAX_PENDING];
static uint32_t g_npending;
static unsigned long long g_seen_adds, g_seen_subs;
static int g_have_seen;
static _Atomic int g_any_rpath;
static _Atomic int g_pending_flag;
static uint64_t g_skipped_slots;
static int g_records_full;

static struct map_entry g_maps[MAX_MAPS];
static uint32_t g_nmaps;

static uintptr_t g_page_size;
static int g_inited;

HIDDEN extern long g_agent_lmid;
HIDDEN extern _Atomic int g_dlopen_patching;
HIDDEN extern void *volatile scalene_real_dlopen;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

// ---------------------------------------------------------------------------------------------
// /proc/self/maps: a snapshot of every mapping's protection. Plain open/read, no stdio, no malloc
// (async-signal-safe, so the fork child may use it too).
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static void maps_parse_line(const char *s, size_t n) {
    uintptr_t a = 0, b = 0;
    size_t i = 0;
    int d;
    while (i < n && (d = hexval(s[i])) >= 0) a = a * 16 + (uintptr_t)d, i++;
    if (i >= n || s[i] != '-') return;
    i++;
    while (i < n && (d = hexval(s[i])) >= 0) b = b * 16 + (uintptr_t)d, i++;
    if (i + 4 >= n || s[i] != ' ') return;
    i++;
    int prot = 0;
    if (s[i] == 'r') prot |= PROT_READ;
    if (s[i + 1] == 'w') prot |= PROT_WRITE;
    if (s[i + 2] == 'x') prot |= PROT_EXEC;
    if (g_nmaps < MAX_MAPS && b > a) {
        g_maps[g_nmaps].start = a;
        g_maps[g_nmaps].end = b;
        g_maps[g_nmaps].prot = prot;
        g_nmaps++;
    }
}

static int maps_load(void) {
    g_nmaps = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    static char buf[16384];
    char line[128];
    size_t ll = 0;
    int overflow = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++) {
            char c = buf[i];
            if (c == '\n') {
                maps_parse_line(line, ll);
                ll = 0;
                overflow = 0;
            } else if (!overflow) {
                if (ll < sizeof line) line[ll++] = c;
                else overflow = 1; // the first 128 characters hold what we need
            }
        }
    }
    if (ll) maps_parse_line(line, ll);
    close(fd);
    return g_nmaps > 0;
}

// Protection of the page holding addr, or -1 if not mapped (per the snapshot).
static int maps_prot(uintptr_t addr) {
    uint32_t lo = 0, hi = g_nmaps;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (addr < g_maps[mid].start) hi = mid;
        else if (addr >= g_maps[mid].end) lo = mid + 1;
        else return g_maps[mid].prot;
    }
    return -1;
}

// ---------------------------------------------------------------------------------------------
// One loaded object.
struct object {
    uintptr_t bias, lo, hi;
    const ElfW(Dyn) *dyn;
    size_t ndyn;
    uintptr_t relro_lo, relro_hi; // the page range the loader makes read-only (may be empty)
    const ElfW(Phdr) *phdr;
    int phnum;
    uint64_t name_hash;
};

static int object_parse(const struct dl_phdr_info *info, struct object *o) {
    memset(o, 0, sizeof *o);
    o->bias = info->dlpi_addr;
    o->phdr = info->dlpi_phdr;
    o->phnum = info->dlpi_phnum;
    o->lo = UINTPTR_MAX;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            uintptr_t a = o->bias + ph->p_vaddr, b = a + ph->p_memsz;
            if (a < o->lo) o->lo = a;
            if (b > o->hi) o->hi = b;
        } else if (ph->p_type == PT_DYNAMIC) {
            o->dyn = (const ElfW(Dyn) *)(o->bias + ph->p_vaddr);
            o->ndyn = ph->p_memsz / sizeof(ElfW(Dyn));
        } else if (ph->p_type == PT_GNU_RELRO) {
            uintptr_t a = o->bias + ph->p_vaddr, b = a + ph->p_memsz;
            o->relro_lo = a & ~(g_page_size - 1); // as the loader rounds it (_dl_protect_relro)
            o->relro_hi = b & ~(g_page_size - 1);
        }
    }
    o->name_hash = hash_str(info->dlpi_name);
    return o->dyn != NULL && o->hi > o->lo && o->ndyn > 0;
}

// A d_ptr value: glibc rewrites most of them to absolute addresses, other loaders do not.
static uintptr_t object_ptr(const struct object *o, uintptr_t v) {
    if (v >= o->lo && v < o->hi) return v;
    if (v + o->bias >= o->lo && v + o->bias < o->hi) return v + o->bias;
    return 0;
}

static int object_in_writable_load(const struct object *o, uintptr_t addr) {
    for (int i = 0; i < o->phnum; i++) {
        const ElfW(Phdr) *ph = &o->phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        uintptr_t a = o->bias + ph->p_vaddr;
        if (addr >= a && addr + sizeof(uintptr_t) <= a + ph->p_memsz) return 1;
    }
    return 0;
}

static int skip_object(const struct dl_phdr_info *info, int index) {
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (name[0] == '\0') return index != 0; // only the main executable has no name
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    return strncmp(base, "ld-linux", 8) == 0 || strncmp(base, "ld64.so", 7) == 0 ||
           strncmp(base, "linux-vdso", 10) == 0 || strncmp(base, "linux-gate", 10) == 0;
}

static int hook_for_name(const char *s) {
    switch (s[0]) {
    case 'm':
        if (!strcmp(s, "malloc")) return H_MALLOC;
        if (!strcmp(s, "memcpy")) return H_MEMCPY;
        if (!strcmp(s, "memmove")) return H_MEMMOVE;
        if (!strcmp(s, "memalign")) return H_MEMALIGN;
        return -1;
    case 'c': return strcmp(s, "calloc") ? -1 : H_CALLOC;
    case 'r':
        if (!strcmp(s, "realloc")) return H_REALLOC;
        if (!strcmp(s, "reallocarray")) return H_REALLOCARRAY;
        return -1;
    case 'f': return strcmp(s, "free") ? -1 : H_FREE;
    case 'p': return strcmp(s, "posix_memalign") ? -1 : H_POSIX_MEMALIGN;
    case 'a': return strcmp(s, "aligned_alloc") ? -1 : H_ALIGNED_ALLOC;
    case 'v': return strcmp(s, "valloc") ? -1 : H_VALLOC;
    case '_':
        if (!strcmp(s, "__memcpy_chk")) return H_MEMCPY_CHK;
        if (!strcmp(s, "__memmove_chk")) return H_MEMMOVE_CHK;
        return -1;
    case 'd': return strcmp(s, "dlopen") ? -1 : H_DLOPEN;
    default: return -1;
    }
}

// Stores val into a GOT slot whose page currently has protection `prot` (-1: unknown, writable).
static int write_slot(uintptr_t slot, uintptr_t val, int prot) {
    if (prot >= 0 && !(prot & PROT_WRITE)) {
        void *page = (void *)(slot & ~(g_page_size - 1));
        if (mprotect(page, g_page_size, prot | PROT_WRITE) != 0) return -1;
        __atomic_store_n((uintptr_t *)slot, val, __ATOMIC_RELEASE);
        mprotect(page, g_page_size, prot);
        return 0;
    }
    __atomic_store_n((uintptr_t *)slot, val, __ATOMIC_RELEASE);
    return 0;
}

static void record_add(uintptr_t slot, uintptr_t orig, int hook) {
    uint32_t n = g_nrecords;
    g_records[n].slot = slot;
    g_records[n].orig = orig;
    g_records[n].hook = (uint32_t)hook;
    g_records[n].active = 1;
    __atomic_store_n(&g_nrecords, n + 1, __ATOMIC_RELEASE);
}

struct pass {
    int index;
    int maps_state; // 0 not loaded, 1 loaded, -1 unavailable
    int pending;
    int any_rpath;
    unsigned long long adds, subs;
    int have_counts;
};

static int pass_maps(struct pass *ps) {
    if (ps->maps_state == 0) ps->maps_state = maps_load() ? 1 : -1;
    return ps->maps_state == 1;
}

struct dyn_info {
    const ElfW(Sym) *symtab;
    const char *strtab;
    size_t strsz;
    size_t nsyms_max;
    const ElfW(Rela) *tables[2];
    size_t sizes[2];
    size_t relaent;
    int has_rpath, has_runpath;
};

static int dyn_parse(const struct object *o, struct dyn_info *d) {
    memset(d, 0, sizeof *d);
    uintptr_t symtab = 0, strtab = 0, jmprel = 0, rela = 0;
    size_t pltrelsz = 0, relasz = 0;
    long pltrel = DT_RELA;
    d->relaent = sizeof(ElfW(Rela));
    for (size_t i = 0; i < o->ndyn && o->dyn[i].d_tag != DT_NULL; i++) {
        const ElfW(Dyn) *e = &o->dyn[i];
        switch (e->d_tag) {
        case DT_SYMTAB: symtab = e->d_un.d_ptr; break;
        case DT_STRTAB: strtab = e->d_un.d_ptr; break;
        case DT_STRSZ: d->strsz = e->d_un.d_val; break;
        case DT_JMPREL: jmprel = e->d_un.d_ptr; break;
        case DT_PLTRELSZ: pltrelsz = e->d_un.d_val; break;
        case DT_PLTREL: pltrel = (long)e->d_un.d_val; break;
        case DT_RELA: rela = e->d_un.d_ptr; break;
        case DT_RELASZ: relasz = e->d_un.d_val; break;
        case DT_RELAENT: d->relaent = e->d_un.d_val; break;
        case DT_RPATH: d->has_rpath = 1; break;
        case DT_RUNPATH: d->has_runpath = 1; break;
        default: break;
        }
    }
    uintptr_t sym = object_ptr(o, symtab), str = object_ptr(o, strtab);
    if (!sym || !str || d->strsz == 0 || d->relaent != sizeof(ElfW(Rela))) return 0;
    if (str + d->strsz > o->hi) return 0;
    d->symtab = (const ElfW(Sym) *)sym;
    d->strtab = (const char *)str;
    d->nsyms_max = str > sym ? (str - sym) / sizeof(ElfW(Sym)) : (o->hi - sym) / sizeof(ElfW(Sym));
    if (jmprel && pltrel == DT_RELA) {
        uintptr_t t = object_ptr(o, jmprel);
        if (t && t + pltrelsz <= o->hi) {
            d->tables[0] = (const ElfW(Rela) *)t;
            d->sizes[0] = pltrelsz / sizeof(ElfW(Rela));
        }
    }
    if (rela) {
        uintptr_t t = object_ptr(o, rela);
        if (t && t + relasz <= o->hi) {
            d->tables[1] = (const ElfW(Rela) *)t;
            d->sizes[1] = relasz / sizeof(ElfW(Rela));
        }
    }
    return 1;
}

static int find_record(uintptr_t slot) {
    for (int i = (int)g_nrecords - 1; i >= 0; i--)
        if (g_records[i].active && g_records[i].slot == slot) return i;
    return -1;
}

// Rewrites the hooked slots of one fully relocated object. Returns the number rewritten.
static uint32_t patch_object(const struct object *o, const struct dyn_info *d, struct pass *ps) {
    uint32_t hooked = 0;
    for (int t = 0; t < 2; t++) {
        const ElfW(Rela) *r = d->tables[t];
        for (size_t i = 0; r && i < d->sizes[t]; i++) {
            unsigned type = (unsigned)ELF64_R_TYPE(r[i].r_info);
            if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
            size_t symi = ELF64_R_SYM(r[i].r_info);
            if (symi == 0 || symi >= d->nsyms_max) continue;
            const ElfW(Sym) *sym = &d->symtab[symi];
            if (sym->st_name == 0 || sym->st_name >= d->strsz) continue;
            int h = hook_for_name(d->strtab + sym->st_name);
            if (h < 0 || !g_hook_enabled[h]) continue;
            uintptr_t slot = o->bias + r[i].r_offset;
            if ((slot & 7) || slot < o->lo || slot + 8 > o->hi) continue;
            int in_relro = slot >= o->relro_lo && slot < o->relro_hi;
            if (!in_relro && !object_in_writable_load(o, slot)) continue;
            uintptr_t v = __atomic_load_n((uintptr_t *)slot, __ATOMIC_ACQUIRE);
            uintptr_t hook = (uintptr_t)g_hooks[h].hook;
            if (v == hook) {
                // Already ours (e.g. a pass after an unload forgot which objects it had seen).
                if (find_record(slot) < 0 && g_nrecords < MAX_RECORDS)
                    record_add(slot, (uintptr_t)g_real[h], h);
                hooked++;
                continue;
            }
            int lazy = type == R_X86_64_JUMP_SLOT && v >= o->lo && v < o->hi;
            if (v != (uintptr_t)g_real[h] && !lazy) {
                g_skipped_slots++;
                continue;
            }
            if (g_nrecords >= MAX_RECORDS) {
                g_records_full = 1;
                return hooked;
            }
            int prot = -1;
            if (pass_maps(ps)) {
                prot = maps_prot(slot);
                if (prot < 0) continue;
            } else if (in_relro) {
                continue; // cannot tell whether the page is read-only: leave it
            }
            if (write_slot(slot, hook, prot) != 0) continue;
            record_add(slot, v, h);
            hooked++;
        }
    }
    return hooked;
}

static struct known_object *known_find(const struct object *o) {
    for (uint32_t i = 0; i < g_nknown; i++) {
        struct known_object *k = &g_known[i];
        if (k->base == o->bias && k->dyn == (uintptr_t)o->dyn && k->name_hash == o->name_hash) return k;
    }
    return NULL;
}

static void known_add(const struct object *o, uint32_t hooked) {
    if (g_nknown >= MAX_KNOWN) return; // forgotten objects are simply scanned again
    g_known[g_nknown].base = o->bias;
    g_known[g_nknown].dyn = (uintptr_t)o->dyn;
    g_known[g_nknown].name_hash = o->name_hash;
    g_known[g_nknown].hooked = hooked;
    g_nknown++;
}

// An object whose RELRO is still writable: wait for the loader, but not forever.
static int pending_gave_up(const struct object *o) {
    uint64_t now = now_ns();
    for (uint32_t i = 0; i < g_npending; i++) {
        struct pending_object *p = &g_pending[i];
        if (p->base == o->bias && p->dyn == (uintptr_t)o->dyn && p->name_hash == o->name_hash)
            return now - p->first_ns > PENDING_GIVE_UP_NS;
    }
    if (g_npending < MAX_PENDING) {
        g_pending[g_npending].base = o->bias;
        g_pending[g_npending].dyn = (uintptr_t)o->dyn;
        g_pending[g_npending].name_hash = o->name_hash;
        g_pending[g_npending].first_ns = now;
        g_npending++;
        return 0;
    }
    return 1;
}

static int patch_cb(struct dl_phdr_info *info, size_t size, void *data) {
    struct pass *ps = data;
    int index = ps->index++;
    if (index == 0 && size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
        ps->adds = info->dlpi_adds;
        ps->subs = info->dlpi_subs;
        ps->have_counts = 1;
        if (g_have_seen && ps->subs != g_seen_subs) {
            g_nknown = 0; // something was unloaded: addresses may have been reused
            g_npending = 0;
        }
    }
    if (skip_object(info, index)) return 0;
    struct object o;
    if (!object_parse(info, &o)) return 0;
    uintptr_t self = (uintptr_t)&got_init;
    if (self >= o.lo && self < o.hi) return 0; // the agent itself
    struct dyn_info d;
    if (!dyn_parse(&o, &d)) return 0;
    if (index != 0 && d.has_rpath && !d.has_runpath) ps->any_rpath = 1;
    if (known_find(&o)) return 0;
    if (o.relro_hi > o.relro_lo) {
        int prot = pass_maps(ps) ? maps_prot(o.relro_lo) : -1;
        if (prot < 0 || (prot & PROT_WRITE)) {
            // Not protected yet: the loader may still be relocating it on another thread.
            if (!pending_gave_up(&o)) {
                ps->pending = 1;
                return 0;
            }
            known_add(&o, 0);
            return 0;
        }
    }
    uint32_t hooked = patch_object(&o, &d, ps);
    known_add(&o, hooked);
    return 0;
}

static void pass_run_locked(void) {
    struct pass ps;
    memset(&ps, 0, sizeof ps);
    dl_iterate_phdr(patch_cb, &ps);
    if (ps.have_counts) {
        g_seen_adds = ps.adds;
        g_seen_subs = ps.subs;
        g_have_seen = 1;
    }
    atomic_store(&g_any_rpath, ps.any_rpath);
    atomic_store(&g_pending_flag, ps.pending);
}

// ---------------------------------------------------------------------------------------------
int got_init(void) {
    if (g_inited) return 0;
    long ps = sysconf(_SC_PAGESIZE);
    g_page_size = ps > 0 ? (uintptr_t)ps : 4096;
    // Our namespace, for the dlopen routing decision.
    Dl_info info;
    struct link_map *lm = NULL;
    g_agent_lmid = -1;
    if (dladdr1((void *)&got_init, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm) {
        Lmid_t id;
        if (dlinfo(lm, RTLD_DI_LMID, &id) == 0) g_agent_lmid = (long)id;
    }
    g_inited = 1;
    return 0;
}

// Before the first pass installs the dlopen hook, so its routing decision is right from the start.
static int rpath_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    int *index = data;
    int i = (*index)++;
    struct object o;
    struct dyn_info d;
    if (i == 0 || skip_object(info, i) || !object_parse(info, &o) || !dyn_parse(&o, &d)) return 0;
    if (d.has_rpath && !d.has_runpath) {
        atomic_store(&g_any_rpath, 1);
        return 1;
    }
    return 0;
}

void got_enable(void) {
    int index = 0;
    atomic_store(&g_any_rpath, 0);
    dl_iterate_phdr(rpath_cb, &index);
    pthread_mutex_lock(&g_patch_lock);
    g_patching = 1;
    g_nknown = 0;
    g_npending = 0;
    g_have_seen = 0;
    g_skipped_slots = 0;
    g_records_full = 0;
    scalene_real_dlopen = g_real[H_DLOPEN];
    pthread_mutex_unlock(&g_patch_lock);
    atomic_store(&g_dlopen_patching, g_hook_enabled[H_DLOPEN] ? 1 : 0);
}

void got_patch_all(void) {
    pthread_mutex_lock(&g_patch_lock);
    if (g_patching) pass_run_locked();
    pthread_mutex_unlock(&g_patch_lock);
}

static int counts_cb(struct dl_phdr_info *info, size_t size, void *data) {
    unsigned long long *out = data;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
        out[0] = info->dlpi_adds;
        out[1] = info->dlpi_subs;
        out[2] = 1;
    }
    return 1;
}

static int objects_changed(void) {
    unsigned long long c[3] = {0, 0, 0};
    dl_iterate_phdr(counts_cb, c);
    if (!c[2]) return 1; // no counters: always look
    return !g_have_seen || c[0] != g_seen_adds || c[1] != g_seen_subs ||
           atomic_load(&g_pending_flag);
}

void got_poll(void) {
    pthread_mutex_lock(&g_patch_lock);
    if (g_patching && objects_changed()) pass_run_locked();
    pthread_mutex_unlock(&g_patch_lock);
}

void got_after_dlopen(void) { got_poll(); }

int got_any_rpath(void) { return atomic_load_explicit(&g_any_rpath, memory_order_relaxed); }

static int restore_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct pass *ps = data;
    struct object o;
    if (!object_parse(info, &o)) return 0;
    for (int i = (int)g_nrecords - 1; i >= 0; i--) {
        struct slot_record *r = &g_records[i];
        if (!r->active || r->slot < o.lo || r->slot >= o.hi) continue;
        uintptr_t v = __atomic_load_n((uintptr_t *)r->slot, __ATOMIC_ACQUIRE);
        if (v == (uintptr_t)g_hooks[r->hook].hook) {
            int prot = pass_maps(ps) ? maps_prot(r->slot) : -1;
            if (ps->maps_state == 1 && prot < 0) {
                r->active = 0;
                continue;
            }
            if (prot < 0 && r->slot >= o.relro_lo && r->slot < o.relro_hi) prot = PROT_READ;
            write_slot(r->slot, r->orig, prot);
        }
        r->active = 0;
    }
    return 0;
}

void got_restore_all(void) {
    atomic_store(&g_dlopen_patching, 0);
    pthread_mutex_lock(&g_patch_lock);
    g_patching = 0;
    struct pass ps;
    memset(&ps, 0, sizeof ps);
    dl_iterate_phdr(restore_cb, &ps);
    // Records left active belong to objects that are gone.
    __atomic_store_n(&g_nrecords, 0, __ATOMIC_RELEASE);
    g_nknown = 0;
    g_npending = 0;
    g_have_seen = 0;
    atomic_store(&g_pending_flag, 0);
    pthread_mutex_unlock(&g_patch_lock);
}

void got_restore_in_child(void) {
    // The parent's lock may have been held by a thread that does not exist here.
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    memcpy(&g_patch_lock, &fresh, sizeof fresh);
    g_patching = 0;
    uint32_t n = __atomic_load_n(&g_nrecords, __ATOMIC_ACQUIRE);
    if (n == 0) return;
    // Without a maps snapshot we cannot tell a read-only page from an unmapped one: leave the
    // slots (the hooks pass everything through once sampling is off).
    if (maps_load()) {
        for (int i = (int)n - 1; i >= 0; i--) {
            struct slot_record *r = &g_records[i];
            if (!r->active) continue;
            int prot = maps_prot(r->slot);
            if (prot < 0) continue; // unmapped while the parent forked
            uintptr_t v = __atomic_load_n((uintptr_t *)r->slot, __ATOMIC_ACQUIRE);
            if (v == (uintptr_t)g_hooks[r->hook].hook) write_slot(r->slot, r->orig, prot);
            r->active = 0;
        }
    }
    __atomic_store_n(&g_nrecords, 0, __ATOMIC_RELEASE);
    g_nknown = 0;
    g_npending = 0;
    g_have_seen = 0;
}

uintptr_t got_readable_end(uintptr_t addr) {
    uintptr_t end = 0;
    pthread_mutex_lock(&g_patch_lock);
    if (maps_load()) {
        uint32_t lo = 0, hi = g_nmaps;
        while (lo < hi) { // first mapping with end > addr
            uint32_t mid = lo + (hi - lo) / 2;
            if (g_maps[mid].end <= addr) lo = mid + 1;
            else hi = mid;
        }
        for (uint32_t i = lo; i < g_nmaps; i++) {
            const struct map_entry *m = &g_maps[i];
            if (m->start > (end ? end : addr) || !(m->prot & PROT_READ)) break;
            end = m->end;
        }
    }
    pthread_mutex_unlock(&g_patch_lock);
    return end;
}

void got_get_stats(struct got_stats *out) {
    pthread_mutex_lock(&g_patch_lock);
    uint64_t slots = 0, objects = 0;
    for (uint32_t i = 0; i < g_nrecords; i++) slots += g_records[i].active;
    for (uint32_t i = 0; i < g_nknown; i++) objects += g_known[i].hooked > 0;
    out->hooked_slots = slots;
    out->hooked_objects = objects;
    out->skipped_slots = g_skipped_slots;
    out->pending = atomic_load(&g_pending_flag);
    pthread_mutex_unlock(&g_patch_lock);
}
