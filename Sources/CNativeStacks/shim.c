#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "CNativeStacks.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <time.h>
#include <unistd.h>

// The remote (generic) libunwind API: _Ux86_64_* symbols from libunwind-x86_64.
#include <libunwind.h>

// Exported by libunwind-x86_64 (libunwind-ptrace uses it) but not declared in its public headers:
// searches an .eh_frame_hdr table described by `di` for `ip`.
extern int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip, unw_dyn_info_t *di,
                                              unw_proc_info_t *pi, int need_unwind_info, void *arg);

// In the C++ runtime the Swift runtime already links.
extern char *__cxa_demangle(const char *mangled, char *buffer, size_t *length, int *status);

// ---------------------------------------------------------------------------------------------
// perf events

// AX BX CX DX SI DI BP SP IP (bits 0-8) and R8-R15 (bits 16-23).
static const uint64_t regs_mask = 0x1ffull | (0xffull << 16);

int scalene_perf_open(pid_t tid, uint64_t period_ns, uint32_t stack_bytes) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.sample_period = period_ns;
    attr.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_REGS_USER |
                       PERF_SAMPLE_STACK_USER;
    attr.sample_regs_user = regs_mask;
    attr.sample_stack_user = stack_bytes;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.exclude_idle = 1;
    attr.use_clockid = 1;
    attr.clockid = CLOCK_MONOTONIC;
    attr.wakeup_events = 0;
    attr.watermark = 0;
    long fd = syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
    return (int)fd;
}

int scalene_perf_map(int fd, unsigned data_pages, scalene_perf_ring *ring) {
    long page = sysconf(_SC_PAGESIZE);
    if (data_pages == 0 || (data_pages & (data_pages - 1)) != 0) { errno = EINVAL; return -1; }
    size_t length = (size_t)page * (1 + data_pages);
    void *base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return -1;
    ring->base = base;
    ring->length = length;
    ring->data_size = (uint64_t)page * data_pages;
    ring->fd = fd;
    if (ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) != 0) {
        int saved = errno;
        munmap(base, length);
        ring->base = NULL;
        errno = saved;
        return -1;
    }
    return 0;
}

void scalene_perf_close(scalene_perf_ring *ring) {
    if (ring->fd >= 0) ioctl(ring->fd, PERF_EVENT_IOC_DISABLE, 0);
    if (ring->base) munmap(ring->base, ring->length);
    if (ring->fd >= 0) close(ring->fd);
    ring->base = NULL;
    ring->fd = -1;
}

// Copies `length` bytes at ring offset `offset` (wrapping) into `out`.
static void ring_copy(const uint8_t *data, uint64_t size, uint64_t offset, void *out, size_t length) {
    uint64_t start = offset & (size - 1);
    size_t first = (size_t)(size - start) < length ? (size_t)(size - start) : length;
    memcpy(out, data + start, first);
    if (first < length) memcpy((uint8_t *)out + first, data, length - first);
}

int scalene_perf_drain(scalene_perf_ring *ring, scalene_native_sample *samples, uint8_t *stacks,
                       size_t stack_stride, int max, uint64_t *lost) {
    if (!ring->base || max <= 0) return 0;
    struct perf_event_mmap_page *meta = ring->base;
    const uint8_t *data = (const uint8_t *)ring->base + meta->data_offset;
    uint64_t size = meta->data_size ? meta->data_size : ring->data_size;
    uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
    uint64_t tail = meta->data_tail;
    int count = 0;
    while (tail < head && count < max) {
        struct perf_event_header header;
        if (head - tail < sizeof header) break;
        ring_copy(data, size, tail, &header, sizeof header);
        if (header.size < sizeof header || header.size > head - tail) break;
        if (header.type == PERF_RECORD_SAMPLE) {
            // ip, pid/tid, time, abi, regs (if abi), stack size, stack bytes, dyn size (if size).
            uint64_t at = tail + sizeof header;
            uint64_t end = tail + header.size;
            scalene_native_sample *s = &samples[count];
            memset(s, 0, sizeof *s);
            uint64_t value, abi;
            if (at + 24 + 8 > end) goto next;
            ring_copy(data, size, at, &s->ip, 8); at += 8;
            ring_copy(data, size, at, &value, 8); at += 8;
            s->pid = (uint32_t)value;
            s->tid = (uint32_t)(value >> 32);
            ring_copy(data, size, at, &s->time, 8); at += 8;
            ring_copy(data, size, at, &abi, 8); at += 8;
            if (abi != PERF_SAMPLE_REGS_ABI_NONE) {
                if (at + 8 * SCALENE_NATIVE_REGS > end) goto next;
                ring_copy(data, size, at, s->regs, 8 * SCALENE_NATIVE_REGS);
                at += 8 * SCALENE_NATIVE_REGS;
                s->has_regs = 1;
            }
            if (at + 8 > end) goto next;
            uint64_t stack_size;
            ring_copy(data, size, at, &stack_size, 8); at += 8;
            if (stack_size > 0) {
                if (at + stack_size + 8 > end) goto next;
                uint64_t dyn_size;
                ring_copy(data, size, at + stack_size, &dyn_size, 8);
                uint64_t keep = dyn_size < stack_size ? dyn_size : stack_size;
                if (keep > stack_stride) keep = stack_stride;
                ring_copy(data, size, at, stacks + (size_t)count * stack_stride, (size_t)keep);
                s->stack_size = keep;
            }
            count++;
        } else if (header.type == PERF_RECORD_LOST) {
            uint64_t pair[2];
            if (header.size >= sizeof header + 16) {
                ring_copy(data, size, tail + sizeof header, pair, 16);
                *lost += pair[1];
            }
        }
    next:
        tail += header.size;
    }
    __atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
    return count;
}

int scalene_ptrace_user_regs(pid_t tid, uint64_t regs[SCALENE_NATIVE_REGS]) {
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, tid, NULL, &r) != 0) return -1;
    uint64_t values[SCALENE_NATIVE_REGS] = {
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.rip,
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
    };
    memcpy(regs, values, sizeof values);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// libunwind address space over a copied stack

struct region { uint64_t start, end; const uint8_t *local; };
struct object { uint64_t start, end, hdr, table, fde_count; };

struct scalene_unwinder {
    pid_t pid;
    unw_addr_space_t as;
    struct region *regions;
    size_t region_count, region_capacity;
    struct object *objects;
    size_t object_count, object_capacity;
    int sorted;
    uint64_t remote_reads;
};

// What one unwind reads its registers and stack from.
struct unwind_context {
    scalene_unwinder *unwinder;
    const uint64_t *regs;
    const uint8_t *stack;
    uint64_t stack_start, stack_size;
};

static int compare_region(const void *a, const void *b) {
    const struct region *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int compare_object(const void *a, const void *b) {
    const struct object *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static void sort_tables(scalene_unwinder *u) {
    if (u->sorted) return;
    qsort(u->regions, u->region_count, sizeof *u->regions, compare_region);
    qsort(u->objects, u->object_count, sizeof *u->objects, compare_object);
    u->sorted = 1;
}

static const struct region *find_region(const scalene_unwinder *u, uint64_t address, size_t length) {
    size_t lo = 0, hi = u->region_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->regions[mid].start <= address) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return NULL;
    const struct region *r = &u->regions[lo - 1];
    if (address >= r->start && address + length <= r->end && address + length > address) return r;
    return NULL;
}

static const struct object *find_object(const scalene_unwinder *u, uint64_t ip) {
    size_t lo = 0, hi = u->object_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->objects[mid].start <= ip) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return NULL;
    const struct object *o = &u->objects[lo - 1];
    return ip >= o->start && ip < o->end ? o : NULL;
}

// Reads target memory for the unwinder: from the stack copy, a local file copy, or the target.
static int read_memory(struct unwind_context *c, uint64_t address, void *out, size_t length) {
    if (address >= c->stack_start && address + length <= c->stack_start + c->stack_size && c->stack) {
        memcpy(out, c->stack + (address - c->stack_start), length);
        return 0;
    }
    // The rest of this thread's stack has moved on since the copy: reading it live would give
    // another frame's bytes. (1 MiB is well inside any thread's stack guard distance.)
    if (address >= c->stack_start && address < c->stack_start + (1u << 20)) return -1;
    const struct region *r = find_region(c->unwinder, address, length);
    if (r) {
        memcpy(out, r->local + (address - r->start), length);
        return 0;
    }
    c->unwinder->remote_reads++;
    struct iovec l = { .iov_base = out, .iov_len = length };
    struct iovec rv = { .iov_base = (void *)(uintptr_t)address, .iov_len = length };
    return process_vm_readv(c->unwinder->pid, &l, 1, &rv, 1, 0) == (ssize_t)length ? 0 : -1;
}

static int acc_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi, int need_unwind_info,
                              void *arg) {
    struct unwind_context *c = arg;
    const struct object *o = find_object(c->unwinder, ip);
    if (!o) return -UNW_ENOINFO;
    unw_dyn_info_t di;
    memset(&di, 0, sizeof di);
    di.start_ip = o->start;
    di.end_ip = o->end;
    di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    di.u.rti.name_ptr = 0;
    di.u.rti.segbase = o->hdr;
    di.u.rti.table_data = o->table;
    di.u.rti.table_len = (o->fde_count * 8) / sizeof(unw_word_t);
    return _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, arg);
}

static void acc_put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg) {
    (void)as; (void)pi; (void)arg; // DWARF unwind info lives in libunwind's own pool.
}

static int acc_get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr, void *arg) {
    (void)as; (void)addr; (void)arg;
    return -UNW_ENOINFO;
}

static int acc_access_mem(unw_addr_space_t as, unw_word_t address, unw_word_t *value, int write, void *arg) {
    (void)as;
    if (write) return -UNW_EINVAL;
    return read_memory(arg, address, value, sizeof *value) == 0 ? 0 : -UNW_EINVAL;
}

static int acc_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *value, int write, void *arg) {
    (void)as;
    struct unwind_context *c = arg;
    if (write) return -UNW_EREADONLYREG;
    int index;
    switch (reg) {
    case UNW_X86_64_RAX: index = SCALENE_REG_AX; break;
    case UNW_X86_64_RDX: index = SCALENE_REG_DX; break;
    case UNW_X86_64_RCX: index = SCALENE_REG_CX; break;
    case UNW_X86_64_RBX: index = SCALENE_REG_BX; break;
    case UNW_X86_64_RSI: index = SCALENE_REG_SI; break;
    case UNW_X86_64_RDI: index = SCALENE_REG_DI; break;
    case UNW_X86_64_RBP: index = SCALENE_REG_BP; break;
    case UNW_X86_64_RSP: index = SCALENE_REG_SP; break;
    case UNW_X86_64_R8: index = SCALENE_REG_R8; break;
    case UNW_X86_64_R9: index = SCALENE_REG_R9; break;
    case UNW_X86_64_R10: index = SCALENE_REG_R10; break;
    case UNW_X86_64_R11: index = SCALENE_REG_R11; break;
    case UNW_X86_64_R12: index = SCALENE_REG_R12; break;
    case UNW_X86_64_R13: index = SCALENE_REG_R13; break;
    case UNW_X86_64_R14: index = SCALENE_REG_R14; break;
    case UNW_X86_64_R15: index = SCALENE_REG_R15; break;
    case UNW_X86_64_RIP: index = SCALENE_REG_IP; break;
    default: return -UNW_EBADREG;
    }
    *value = c->regs[index];
    return 0;
}

static int acc_access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *value, int write, void *arg) {
    (void)as; (void)reg; (void)value; (void)write; (void)arg;
    return -UNW_EBADREG;
}

static int acc_resume(unw_addr_space_t as, unw_cursor_t *cursor, void *arg) {
    (void)as; (void)cursor; (void)arg;
    return -UNW_EINVAL;
}

static int acc_get_proc_name(unw_addr_space_t as, unw_word_t address, char *buffer, size_t length,
                             unw_word_t *offset, void *arg) {
    (void)as; (void)address; (void)buffer; (void)length; (void)offset; (void)arg;
    return -UNW_ENOINFO; // names come from our own symbol index
}

scalene_unwinder *scalene_unwinder_create(pid_t pid) {
    scalene_unwinder *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    static unw_accessors_t accessors = {
        .find_proc_info = acc_find_proc_info,
        .put_unwind_info = acc_put_unwind_info,
        .get_dyn_info_list_addr = acc_get_dyn_info_list_addr,
        .access_mem = acc_access_mem,
        .access_reg = acc_access_reg,
        .access_fpreg = acc_access_fpreg,
        .resume = acc_resume,
        .get_proc_name = acc_get_proc_name,
    };
    u->as = unw_create_addr_space(&accessors, 0);
    if (!u->as) { free(u); return NULL; }
    unw_set_caching_policy(u->as, UNW_CACHE_GLOBAL);
    u->pid = pid;
    u->sorted = 1;
    return u;
}

void scalene_unwinder_destroy(scalene_unwinder *u) {
    unw_destroy_addr_space(u->as);
    free(u->regions);
    free(u->objects);
    free(u);
}

int scalene_unwinder_add_region(scalene_unwinder *u, uint64_t start, uint64_t end, const void *local) {
    if (end <= start) { errno = EINVAL; return -1; }
    if (u->region_count == u->region_capacity) {
        size_t capacity = u->region_capacity ? u->region_capacity * 2 : 64;
        struct region *grown = realloc(u->regions, capacity * sizeof *grown);
        if (!grown) return -1;
        u->regions = grown;
        u->region_capacity = capacity;
    }
    u->regions[u->region_count++] = (struct region){ start, end, local };
    u->sorted = 0;
    sort_tables(u);
    return 0;
}

int scalene_unwinder_add_object(scalene_unwinder *u, uint64_t text_start, uint64_t text_end, uint64_t hdr) {
    sort_tables(u);
    // .eh_frame_hdr: version 1, eh_frame_ptr encoding, fde_count encoding, table encoding; the binary
    // search table needs fde_count as udata4 and entries as datarel|sdata4 (what every linker writes).
    const struct region *r = find_region(u, hdr, 12);
    if (!r || text_end <= text_start) { errno = EINVAL; return -1; }
    const uint8_t *h = r->local + (hdr - r->start);
    if (h[0] != 1 || (h[1] & 0x0f) != 0x0b || h[2] != 0x03 || h[3] != 0x3b) { errno = ENOTSUP; return -1; }
    uint32_t fde_count;
    memcpy(&fde_count, h + 8, 4);
    if (!find_region(u, hdr + 12, (size_t)fde_count * 8)) { errno = EINVAL; return -1; }
    if (u->object_count == u->object_capacity) {
        size_t capacity = u->object_capacity ? u->object_capacity * 2 : 32;
        struct object *grown = realloc(u->objects, capacity * sizeof *grown);
        if (!grown) return -1;
        u->objects = grown;
        u->object_capacity = capacity;
    }
    u->objects[u->object_count++] = (struct object){ text_start, text_end, hdr, hdr + 12, fde_count };
    u->sorted = 0;
    sort_tables(u);
    return 0;
}

void scalene_unwinder_reset(scalene_unwinder *u) {
    u->region_count = 0;
    u->object_count = 0;
    unw_flush_cache(u->as, 0, 0);
}

int scalene_unwind(scalene_unwinder *u, const uint64_t regs[SCALENE_NATIVE_REGS], const uint8_t *stack,
                   uint64_t stack_size, uint64_t *ips, int max) {
    if (max <= 0) return 0;
    sort_tables(u);
    struct unwind_context c = { u, regs, stack, regs[SCALENE_REG_SP], stack ? stack_size : 0 };
    ips[0] = regs[SCALENE_REG_IP];
    int count = 1;
    unw_cursor_t cursor;
    if (unw_init_remote(&cursor, u->as, &c) != 0) return count;
    uint64_t last_sp = regs[SCALENE_REG_SP];
    while (count < max) {
        if (unw_step(&cursor) <= 0) break;
        unw_word_t ip = 0, sp = 0;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0 || ip == 0) break;
        unw_get_reg(&cursor, UNW_REG_SP, &sp);
        // Stacks grow down: a caller's frame is above its callee's. Anything else is a bad step.
        if (sp < last_sp) break;
        last_sp = sp;
        ips[count++] = ip;
    }
    return count;
}

uint64_t scalene_unwinder_remote_reads(const scalene_unwinder *u) { return u->remote_reads; }

int scalene_demangle(const char *mangled, char *out, size_t capacity) {
    int status = 0;
    char *result = __cxa_demangle(mangled, NULL, NULL, &status);
    if (status != 0 || !result) return -1;
    size_t length = strlen(result);
    if (length >= capacity) length = capacity - 1;
    memcpy(out, result, length);
    out[length] = 0;
    free(result);
    return 0;
}
