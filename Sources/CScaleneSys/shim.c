#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "CScaleneSys.h"

#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

ssize_t scalene_vm_read(pid_t pid, void *local, size_t length, uint64_t remote) {
    struct iovec l = { .iov_base = local, .iov_len = length };
    struct iovec r = { .iov_base = (void *)(uintptr_t)remote, .iov_len = length };
    return process_vm_readv(pid, &l, 1, &r, 1, 0);
}

ssize_t scalene_vm_readv(pid_t pid, void *local, const uint64_t *ranges, int count) {
    // IOV_MAX (1024) is the kernel's bound on iovecs per call.
    if (count <= 0 || count > 1024) { errno = EINVAL; return -1; }
    struct iovec l[count], r[count];
    char *at = local;
    for (int i = 0; i < count; i++) {
        r[i].iov_base = (void *)(uintptr_t)ranges[2 * i];
        r[i].iov_len = (size_t)ranges[2 * i + 1];
        l[i].iov_base = at;
        l[i].iov_len = r[i].iov_len;
        at += r[i].iov_len;
    }
    return process_vm_readv(pid, l, (unsigned long)count, r, (unsigned long)count, 0);
}

ssize_t scalene_vm_write(pid_t pid, const void *local, size_t length, uint64_t remote) {
    struct iovec l = { .iov_base = (void *)local, .iov_len = length };
    struct iovec r = { .iov_base = (void *)(uintptr_t)remote, .iov_len = length };
    return process_vm_writev(pid, &l, 1, &r, 1, 0);
}

long scalene_ptrace_seize(pid_t tid, unsigned long options) {
    return ptrace(PTRACE_SEIZE, tid, NULL, (void *)options);
}
long scalene_ptrace_interrupt(pid_t tid) { return ptrace(PTRACE_INTERRUPT, tid, NULL, NULL); }
long scalene_ptrace_detach(pid_t tid, int signal) {
    return ptrace(PTRACE_DETACH, tid, NULL, (void *)(uintptr_t)signal);
}
long scalene_ptrace_cont(pid_t tid, int signal) {
    return ptrace(PTRACE_CONT, tid, NULL, (void *)(uintptr_t)signal);
}
long scalene_ptrace_getregs(pid_t tid, struct user_regs_struct *regs) {
    return ptrace(PTRACE_GETREGS, tid, NULL, regs);
}
long scalene_ptrace_setregs(pid_t tid, const struct user_regs_struct *regs) {
    return ptrace(PTRACE_SETREGS, tid, NULL, (void *)regs);
}
long scalene_ptrace_get_xstate(pid_t tid, void *buffer, size_t *length) {
    struct iovec io = { .iov_base = buffer, .iov_len = *length };
    long rc = ptrace(PTRACE_GETREGSET, tid, (void *)(uintptr_t)NT_X86_XSTATE, &io);
    if (rc == 0) *length = io.iov_len;
    return rc;
}
long scalene_ptrace_set_xstate(pid_t tid, void *buffer, size_t length) {
    struct iovec io = { .iov_base = buffer, .iov_len = length };
    return ptrace(PTRACE_SETREGSET, tid, (void *)(uintptr_t)NT_X86_XSTATE, &io);
}

const int scalene_ptrace_event_stop = PTRACE_EVENT_STOP;

pid_t scalene_waitpid(pid_t pid, int *status, int nohang) {
    pid_t rc;
    do {
        rc = waitpid(pid, status, __WALL | (nohang ? WNOHANG : 0));
    } while (rc < 0 && errno == EINTR);
    return rc;
}
int scalene_wifexited(int status) { return WIFEXITED(status); }
int scalene_wexitstatus(int status) { return WEXITSTATUS(status); }
int scalene_wifsignaled(int status) { return WIFSIGNALED(status); }
int scalene_wtermsig(int status) { return WTERMSIG(status); }
int scalene_wifstopped(int status) { return WIFSTOPPED(status); }
int scalene_wstopsig(int status) { return WSTOPSIG(status); }
int scalene_wptrace_event(int status) { return (status >> 16) & 0xff; }

pid_t scalene_gettid(void) { return (pid_t)syscall(SYS_gettid); }

int scalene_sleep_until(uint64_t deadline_ns) {
    struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000ull),
                           .tv_nsec = (long)(deadline_ns % 1000000000ull) };
    return clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}
uint64_t scalene_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
uint64_t scalene_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
int scalene_set_timer_slack_ns(unsigned long slack) { return prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0); }

// Written from a signal handler and read by the sampling loop; sig_atomic_t is what C guarantees.
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int signal) { stop_signal = signal; }

void scalene_install_stop_handlers(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    // No SA_RESTART: a blocking sleep or waitpid returns EINTR so the loop notices at once.
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    // A closed pipe on stdout must not kill us while the target is stopped or hooked.
    signal(SIGPIPE, SIG_IGN);
    // A process inherits its parent thread's signal mask: started from a thread that blocks
    // everything (a supervisor, a dispatch worker), we would never see Ctrl-C or SIGTERM.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
int scalene_stop_requested(void) { return stop_signal != 0; }
int scalene_stop_signal(void) { return stop_signal; }

// The mask the calling thread had before scalene_block_stop_signals(1), restored by (0): a signal
// the caller had blocked itself stays blocked. Per thread, since masks are per thread.
static __thread sigset_t saved_mask;
static __thread int mask_saved = 0;

void scalene_block_stop_signals(int block) {
    if (block) {
        if (mask_saved) return;
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, &saved_mask);
        mask_saved = 1;
    } else if (mask_saved) {
        pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
        mask_saved = 0;
    }
}

static volatile sig_atomic_t snapshot_requested = 0;
// A lock-free atomic is async-signal-safe; only the handler writes it.
static _Atomic unsigned long reopen_generation = 0;

static void on_snapshot_signal(int signal) { (void)signal; snapshot_requested = 1; }

static void on_reopen_signal(int signal) {
    (void)signal;
    atomic_fetch_add(&reopen_generation, 1);
}

void scalene_install_reopen_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_reopen_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &action, NULL);
}

unsigned long scalene_reopen_generation(void) { return atomic_load(&reopen_generation); }

void scalene_ignore_file_size_signal(void) { signal(SIGXFSZ, SIG_IGN); }

void scalene_block_handled_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

void scalene_install_snapshot_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_snapshot_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &action, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int scalene_take_snapshot_request(void) {
    if (!snapshot_requested) return 0;
    snapshot_requested = 0;
    return 1;
}

int scalene_isatty(int fd) { return isatty(fd); }

long scalene_clock_ticks_per_second(void) { return sysconf(_SC_CLK_TCK); }

ssize_t scalene_pread(int fd, void *buffer, size_t length, off_t offset) {
    ssize_t rc;
    do {
        rc = pread(fd, buffer, length, offset);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

int scalene_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}
