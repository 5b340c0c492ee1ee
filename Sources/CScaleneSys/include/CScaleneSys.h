// C shim for the handful of Linux interfaces Swift cannot call directly.
//
// Nothing else lives here: ptrace is variadic, the wait-status accessors are macros, and
// process_vm_readv/writev take iovec arrays that are clumsy to build from Swift. Each wrapper
// returns the raw result and leaves errno set, so the Swift side turns failures into typed errors.
#ifndef CSCALENESYS_H
#define CSCALENESYS_H

#ifdef __linux__
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/uio.h>

// Reads `length` bytes at `remote` in process `pid` into `local`. Returns bytes read or -1.
ssize_t scalene_vm_read(pid_t pid, void *_Nonnull local, size_t length, uint64_t remote);

// Reads `count` remote ranges, given as (address, length) pairs in `ranges`, in one system call,
// one after the other into `local` (at most 1024, the kernel's IOV_MAX). Returns the bytes read:
// the ranges are filled in order and a range that cannot be read ends the call, so a short count
// says which ranges were read whole.
ssize_t scalene_vm_readv(pid_t pid, void *_Nonnull local, const uint64_t *_Nonnull ranges, int count);

// Writes `length` bytes from `local` to `remote` in process `pid`. Returns bytes written or -1.
ssize_t scalene_vm_write(pid_t pid, const void *_Nonnull local, size_t length, uint64_t remote);

// ptrace requests, each a fixed-arity wrapper over the variadic libc function.
long scalene_ptrace_seize(pid_t tid, unsigned long options);
long scalene_ptrace_interrupt(pid_t tid);
long scalene_ptrace_detach(pid_t tid, int signal);
long scalene_ptrace_cont(pid_t tid, int signal);
long scalene_ptrace_getregs(pid_t tid, struct user_regs_struct *_Nonnull regs);
long scalene_ptrace_setregs(pid_t tid, const struct user_regs_struct *_Nonnull regs);
// PTRACE_GETREGSET/SETREGSET with NT_X86_XSTATE: the full FPU/SSE/AVX state. `length` is in/out.
long scalene_ptrace_get_xstate(pid_t tid, void *_Nonnull buffer, size_t *_Nonnull length);
long scalene_ptrace_set_xstate(pid_t tid, void *_Nonnull buffer, size_t length);
// The PTRACE_EVENT_STOP number (the stop PTRACE_INTERRUPT causes).
extern const int scalene_ptrace_event_stop;

// waitpid with __WALL so that every thread of the target can be waited for.
pid_t scalene_waitpid(pid_t pid, int *_Nonnull status, int nohang);
int scalene_wifexited(int status);
int scalene_wexitstatus(int status);
int scalene_wifsignaled(int status);
int scalene_wtermsig(int status);
int scalene_wifstopped(int status);
int scalene_wstopsig(int status);
// The PTRACE_EVENT_* number carried in a stop status (status >> 16), 0 if none.
int scalene_wptrace_event(int status);

// The kernel's thread id of the caller.
pid_t scalene_gettid(void);

// Sleeps until the CLOCK_MONOTONIC time `deadline_ns`. Returns 0, or an errno value (EINTR).
int scalene_sleep_until(uint64_t deadline_ns);
// CLOCK_MONOTONIC in nanoseconds.
uint64_t scalene_monotonic_ns(void);
// CLOCK_REALTIME in nanoseconds.
uint64_t scalene_realtime_ns(void);
// Sets this thread's timer slack, so that short sleeps wake on time (default slack is 50 us).
int scalene_set_timer_slack_ns(unsigned long slack);

// Ctrl-C, SIGTERM and SIGHUP set a flag instead of killing us, so the target is always restored.
void scalene_install_stop_handlers(void);
// Whether one of those signals arrived.
int scalene_stop_requested(void);
// The signal that set the flag (0 if none).
int scalene_stop_signal(void);
// Blocks (1) the stop signals for the calling thread around a critical section, and (0) restores
// the mask the thread had before.
void scalene_block_stop_signals(int block);

// SIGUSR1 asks for a snapshot of the profile so far; returns (and clears) whether one was asked for.
void scalene_install_snapshot_handler(void);
int scalene_take_snapshot_request(void);

// SIGHUP asks to reopen the outputs (log rotation) instead of stopping the recording; call after
// scalene_install_stop_handlers. scalene_reopen_generation counts the SIGHUPs that arrived.
void scalene_install_reopen_handler(void);
unsigned long scalene_reopen_generation(void);

// A write past RLIMIT_FSIZE raises SIGXFSZ, which kills by default: ignored, the write fails with
// EFBIG instead and the failure is reported like a full disk.
void scalene_ignore_file_size_signal(void);

// Blocks, on the calling thread, every signal the tool handles (stop, snapshot, reopen), so that
// they are delivered to the threads that act on them and never interrupt a helper thread's I/O.
void scalene_block_handled_signals(void);

// Whether file descriptor `fd` is a terminal.
int scalene_isatty(int fd);

// sysconf(_SC_CLK_TCK): the unit of utime/stime in /proc/PID/task/TID/stat.
long scalene_clock_ticks_per_second(void);

// pread that retries EINTR.
ssize_t scalene_pread(int fd, void *_Nonnull buffer, size_t length, off_t offset);

#endif // __linux__
/// Names the calling thread (the kernel keeps 15 bytes).
int scalene_set_thread_name(const char *_Nonnull name);

#endif // CSCALENESYS_H
