// A native allocator for the agent's tests, called through ctypes: every call below goes through
// this library's GOT, which is what the agent rewrites.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

void *native_alloc(size_t n) {
    void *p = malloc(n);
    if (p) memset(p, 1, n);
    return p;
}

void native_free(void *p) { free(p); }

void *native_copy(void *dst, const void *src, size_t n) { return memcpy(dst, src, n); }

// Thread CPU time: the machine may be busy, and time spent descheduled is not the hook's cost.
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// Nanoseconds per malloc(size)+free pair, best of `rounds` runs of `iters` pairs.
double native_bench_malloc_free(size_t iters, size_t size, int rounds) {
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        uint64_t t0 = now_ns();
        for (size_t i = 0; i < iters; i++) {
            void *p = malloc(size);
            KEEP(p);
            free(p);
        }
        double ns = (double)(now_ns() - t0) / (double)iters;
        if (ns < best) best = ns;
    }
    return best;
}

// Nanoseconds per memcpy of `size` bytes, best of `rounds` runs.
double native_bench_memcpy(size_t iters, size_t size, int rounds) {
    char *a = malloc(size), *b = malloc(size);
    memset(a, 2, size);
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        uint64_t t0 = now_ns();
        for (size_t i = 0; i < iters; i++) {
            memcpy(b, a, size);
            KEEP(b);
        }
        double ns = (double)(now_ns() - t0) / (double)iters;
        if (ns < best) best = ns;
    }
    free(a);
    free(b);
    return best;
}

// Nanoseconds per alloc(size)+release pair through function pointers (e.g. PyObject_Malloc and
// PyObject_Free, called with the GIL held), best of `rounds` runs.
double native_bench_pair(void *(*alloc)(size_t), void (*release)(void *), size_t iters, size_t size,
                         int rounds) {
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        uint64_t t0 = now_ns();
        for (size_t i = 0; i < iters; i++) {
            void *p = alloc(size);
            KEEP(p);
            release(p);
        }
        double ns = (double)(now_ns() - t0) / (double)iters;
        if (ns < best) best = ns;
    }
    return best;
}

// Allocates `count` blocks of `size` bytes (then frees them) on a new pthread that has no Python
// thread state: its samples must land in the native bucket (frame_count 0). Returns its tid.
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

struct thread_job {
    size_t size;
    int count;
    long tid;
};

static void *thread_body(void *arg) {
    struct thread_job *job = arg;
    job->tid = syscall(SYS_gettid);
    void *blocks[256];
    int n = job->count < 256 ? job->count : 256;
    for (int i = 0; i < n; i++) blocks[i] = native_alloc(job->size);
    for (int i = 0; i < n; i++) native_free(blocks[i]);
    return NULL;
}

long native_thread_alloc(size_t size, int count) {
    struct thread_job job = {size, count, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, thread_body, &job) != 0) return -1;
    pthread_join(t, NULL);
    return job.tid;
}

void *native_realloc(void *p, size_t n) { return realloc(p, n); }

// `count` blocks of `size` bytes, touched and held; their addresses in a block of their own.
void **native_alloc_many(size_t count, size_t size) {
    void **blocks = malloc(count * sizeof *blocks);
    if (!blocks) return NULL;
    for (size_t i = 0; i < count; i++) blocks[i] = native_alloc(size);
    return blocks;
}

void native_free_many(void **blocks, size_t count) {
    if (!blocks) return;
    for (size_t i = 0; i < count; i++) free(blocks[i]);
    free(blocks);
}
