// The terminal side of the live view (`scalene-attach top`): what Swift cannot do safely itself.
//
// The terminal's previous mode must come back however the process ends, also from a signal
// handler when it crashes, so it is saved here in C where a handler can reach it, and restored with
// only async-signal-safe calls (tcsetattr, write). ioctl is variadic, so the window size needs a
// wrapper too.
#ifndef CTERMINAL_H
#define CTERMINAL_H

#ifdef __linux__
#include <stddef.h>

// Switches the terminal on `fd` to key-at-a-time input without echo (signal keys such as Ctrl-C
// still raise their signals), writes `enter` (escape sequences: alternate screen, hidden cursor),
// and arranges for scalene_terminal_leave to run before a fatal signal (SIGSEGV, SIGILL, SIGABRT,
// SIGBUS, SIGFPE, SIGTRAP, SIGQUIT) kills the process. Ctrl-Z is ignored while the view is up:
// a stopped view would leave the terminal in its mode. Returns 0, or -1 with errno set (then
// nothing was changed). `leave` is copied (at most 127 bytes).
int scalene_terminal_enter(int fd, const char *_Nonnull enter, const char *_Nonnull leave);

// Writes the `leave` sequence and restores the saved mode. Does nothing if the terminal is not
// entered; safe to call more than once and from a signal handler.
void scalene_terminal_leave(void);

// The window size of the terminal on `fd`. Returns 0, or -1 (not a terminal).
int scalene_terminal_size(int fd, int *_Nonnull rows, int *_Nonnull columns);

// Notes SIGWINCH (the window was resized); scalene_terminal_take_resize returns and clears it.
void scalene_terminal_watch_resize(void);
int scalene_terminal_take_resize(void);

#endif // __linux__
#endif // CTERMINAL_H
