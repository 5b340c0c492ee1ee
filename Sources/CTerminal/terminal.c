#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "CTerminal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

// One terminal per process: the view owns stdin/stdout. Written before the handlers are installed
// and read by them; `entered` is the flag the handlers test.
static struct termios saved_mode;
static int saved_fd = -1;
static char leave_sequence[128];
static size_t leave_length = 0;
static volatile sig_atomic_t entered = 0;
static struct sigaction previous_actions[NSIG];
static struct sigaction previous_tstp;

static const int fatal_signals[] = { SIGSEGV, SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGTRAP, SIGQUIT };
#define FATAL_COUNT (sizeof fatal_signals / sizeof fatal_signals[0])

static void write_all(int fd, const char *bytes, size_t length) {
    while (length > 0) {
        ssize_t n = write(fd, bytes, length);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        bytes += n;
        length -= (size_t)n;
    }
}

void scalene_terminal_leave(void) {
    if (!entered) return;
    entered = 0;
    int saved_errno = errno;
    write_all(saved_fd, leave_sequence, leave_length);
    tcsetattr(saved_fd, TCSAFLUSH, &saved_mode);
    // sigaction is async-signal-safe: from a fatal handler this puts back what was there before
    // (the default action, which SA_RESETHAND has already restored for the signal being handled).
    for (size_t i = 0; i < FATAL_COUNT; i++) sigaction(fatal_signals[i], &previous_actions[fatal_signals[i]], NULL);
    sigaction(SIGTSTP, &previous_tstp, NULL);
    errno = saved_errno;
}

static void on_fatal_signal(int signal) {
    scalene_terminal_leave();
    // SA_RESETHAND put the default action back: die of the same signal, with its core dump.
    raise(signal);
}

int scalene_terminal_enter(int fd, const char *enter, const char *leave) {
    if (entered) return 0;
    struct termios mode;
    if (tcgetattr(fd, &mode) != 0) return -1;
    saved_mode = mode;
    saved_fd = fd;
    leave_length = strnlen(leave, sizeof leave_sequence - 1);
    memcpy(leave_sequence, leave, leave_length);
    mode.c_lflag &= ~(tcflag_t)(ICANON | ECHO | IEXTEN);
    mode.c_iflag &= ~(tcflag_t)(IXON | ICRNL);
    mode.c_cc[VMIN] = 0;
    mode.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSAFLUSH, &mode) != 0) return -1;
    entered = 1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_fatal_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND | SA_NODEFER;
    for (size_t i = 0; i < FATAL_COUNT; i++) sigaction(fatal_signals[i], &action, &previous_actions[fatal_signals[i]]);
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGTSTP, &ignore, &previous_tstp);
    write_all(fd, enter, strlen(enter));
    return 0;
}

int scalene_terminal_size(int fd, int *rows, int *columns) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_col == 0) return -1;
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}

static volatile sig_atomic_t resized = 0;

static void on_resize(int signal) { (void)signal; resized = 1; }

void scalene_terminal_watch_resize(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_resize;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &action, NULL);
}

int scalene_terminal_take_resize(void) {
    if (!resized) return 0;
    resized = 0;
    return 1;
}
