// C shim for native stacks: perf_event_open and its mmap ring, and a libunwind address space that
// unwinds another process's stack from a copy (registers and stack bytes taken by the kernel with
// a perf sample, or read while the thread was briefly stopped with ptrace).
//
// Why C: perf_event_open has no libc wrapper, the ring needs memory barriers around its head and
// tail, and libunwind calls back into accessor functions with its own calling conventions. libunwind
// is included only by shim.c, so Swift never sees its macros.
#ifndef CNATIVESTACKS_H
#define CNATIVESTACKS_H

#ifdef __linux__
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

// The user registers a sample carries, in perf's order (PERF_REG_X86_*: AX BX CX DX SI DI BP SP IP,
// then R8..R15).
#define SCALENE_NATIVE_REGS 17
enum {
    SCALENE_REG_AX = 0, SCALENE_REG_BX, SCALENE_REG_CX, SCALENE_REG_DX, SCALENE_REG_SI, SCALENE_REG_DI,
    SCALENE_REG_BP, SCALENE_REG_SP, SCALENE_REG_IP, SCALENE_REG_R8, SCALENE_REG_R9, SCALENE_REG_R10,
    SCALENE_REG_R11, SCALENE_REG_R12, SCALENE_REG_R13, SCALENE_REG_R14, SCALENE_REG_R15,
};

// One thread's sampling event and its ring buffer.
typedef struct scalene_perf_ring {
    void *_Nullable base;
    size_t length;
    uint64_t data_size;
    int fd;
} scalene_perf_ring;

// One decoded sample. `stack_size` bytes of the user stack starting at regs[SCALENE_REG_SP] were
// copied into the caller's stack buffer.
typedef struct scalene_native_sample {
    uint32_t pid;
    uint32_t tid;
    uint64_t time;
    uint64_t ip;
    uint64_t regs[SCALENE_NATIVE_REGS];
    int32_t has_regs;
    uint64_t stack_size;
} scalene_native_sample;

// Opens a PERF_COUNT_SW_TASK_CLOCK sampling event on thread `tid` (user mode only, timestamps on
// CLOCK_MONOTONIC) that samples every `period_ns` of the thread's CPU time with its IP, tid, time,
// user registers and `stack_bytes` of its user stack. Returns the fd or -1 with errno set.
int scalene_perf_open(pid_t tid, uint64_t period_ns, uint32_t stack_bytes);

// Maps the ring (1 + data_pages pages, data_pages a power of two) and enables the event.
int scalene_perf_map(int fd, unsigned data_pages, scalene_perf_ring *_Nonnull ring);

// Disables, unmaps and closes.
void scalene_perf_close(scalene_perf_ring *_Nonnull ring);

// Takes up to `max` samples out of the ring: sample i goes to samples[i], its stack bytes to
// stacks + i * stack_stride (at most stack_stride bytes). Records other than samples are consumed;
// PERF_RECORD_LOST adds to *lost. Returns the number of samples written.
int scalene_perf_drain(scalene_perf_ring *_Nonnull ring, scalene_native_sample *_Nonnull samples,
                       uint8_t *_Nonnull stacks, size_t stack_stride, int max, uint64_t *_Nonnull lost);

// The registers of a stopped thread (ptrace), in perf's order. Returns 0 or -1 with errno set.
int scalene_ptrace_user_regs(pid_t tid, uint64_t regs[_Nonnull SCALENE_NATIVE_REGS]);

// An unwinder for one target process.
typedef struct scalene_unwinder scalene_unwinder;

scalene_unwinder *_Nullable scalene_unwinder_create(pid_t pid);
void scalene_unwinder_destroy(scalene_unwinder *_Nonnull unwinder);

// Target memory [start, end) whose bytes are `local` (a read-only mapping of the file the target
// mapped there). Unwind tables are read from these copies, not from the target.
int scalene_unwinder_add_region(scalene_unwinder *_Nonnull unwinder, uint64_t start, uint64_t end,
                                const void *_Nonnull local);

// Code [text_start, text_end) whose unwind table is the .eh_frame_hdr at target address `eh_frame_hdr`
// (which must lie in a region added before).
int scalene_unwinder_add_object(scalene_unwinder *_Nonnull unwinder, uint64_t text_start, uint64_t text_end,
                                uint64_t eh_frame_hdr);

// Forgets every region and object and flushes libunwind's caches (the target's mappings changed).
void scalene_unwinder_reset(scalene_unwinder *_Nonnull unwinder);

// Unwinds a stack from its registers and a copy of its top: writes up to `max` instruction pointers,
// innermost first (the first is regs[IP]). Memory below or inside the copy is read from it; memory of
// a region from the local copy; anything else from the target with process_vm_readv, except the
// rest of the stack, which has changed since the copy was taken. Returns the number of frames.
int scalene_unwind(scalene_unwinder *_Nonnull unwinder, const uint64_t regs[_Nonnull SCALENE_NATIVE_REGS],
                   const uint8_t *_Nullable stack, uint64_t stack_size, uint64_t *_Nonnull ips, int max);

// Reads served by process_vm_readv so far (the rest came from copies).
uint64_t scalene_unwinder_remote_reads(const scalene_unwinder *_Nonnull unwinder);

// Demangles an Itanium C++ name (_Z...) into `out`; returns 0 on success.
int scalene_demangle(const char *_Nonnull mangled, char *_Nonnull out, size_t capacity);

#endif // __linux__
#endif // CNATIVESTACKS_H
