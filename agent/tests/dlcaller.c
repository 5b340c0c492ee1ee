// Opens a library by bare name, relying on this library's own RUNPATH ($ORIGIN/rpath): the agent's
// dlopen hook must not change which object glibc considers the caller. Built without sibling-call
// optimisation: a tail call to dlopen would make our caller (libffi) the caller glibc sees.
#include <dlfcn.h>

void *dl_caller_open(const char *name) { return dlopen(name, RTLD_NOW); }
void *dl_caller_sym(void *handle, const char *name) { return dlsym(handle, name); }
const char *dl_caller_error(void) { return dlerror(); }
