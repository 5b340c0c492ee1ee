#!/usr/bin/env python3
"""Hook overhead micro-benchmark: ns per operation pair, unhooked vs armed, interleaved.

    python3 agent/tests/bench.py --agent build/libscalene_agent.so [--rounds 5]

Each measurement is the minimum over many short runs of thread CPU time (the machine may be busy:
time spent descheduled is not the hooks' cost). Unhooked and armed phases alternate `rounds` times
and the best of each is kept. Windows are large (1 MiB memory, 8 MiB copy) so the numbers are the
hot path (no sample written), which is what a hook costs almost always.
"""
import argparse
import ctypes
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness as H  # noqa: E402

CASES = [
    ("malloc+free(64), native GOT hook", "native_mf", 64),
    ("malloc+free(4096), native GOT hook", "native_mf", 4096),
    ("memcpy(64), copy hook", "native_mc", 64),
    ("PyObject_Malloc+Free(64) (pymalloc)", "obj", 64),
    ("PyObject_Malloc+Free(1024) (malloc underneath)", "obj", 1024),
    ("PyMem_Malloc+Free(64) (pymalloc)", "mem", 64),
    ("PyMem_RawMalloc+RawFree(64)", "raw", 64),
]


def measure(lib, pair, kind, size, runs=60, iters=20000):
    api = ctypes.pythonapi
    addr = lambda f: ctypes.cast(f, ctypes.c_void_p).value  # noqa: E731
    fns = {"obj": (api.PyObject_Malloc, api.PyObject_Free), "mem": (api.PyMem_Malloc, api.PyMem_Free),
           "raw": (api.PyMem_RawMalloc, api.PyMem_RawFree)}
    best = 1e30
    for _ in range(runs):
        if kind == "native_mf":
            v = lib.native_bench_malloc_free(iters, size, 1)
        elif kind == "native_mc":
            v = lib.native_bench_memcpy(iters, size, 1)
        else:
            a, f = fns[kind]
            v = pair(addr(a), addr(f), iters, size, 1)
        best = min(best, v)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    lib = H.load_native(os.path.join(HERE, "libnativealloc.so"))
    pair = H.PAIR_BENCH[0]
    agent = H.Agent(os.path.abspath(args.agent))
    off = {c[0]: 1e30 for c in CASES}
    on = {c[0]: 1e30 for c in CASES}
    for _ in range(args.rounds):
        for name, kind, size in CASES:
            off[name] = min(off[name], measure(lib, pair, kind, size))
        s = H.Session(agent, memory_window=H.MB, copy_window=8 * H.MB, keep=False)
        H.check(s.start() == 0, "start failed")
        s.expect_state(H.proto.STATE_ARMED, 15)
        for name, kind, size in CASES:
            on[name] = min(on[name], measure(lib, pair, kind, size))
        s.detach()
        s.expect_state(H.proto.STATE_DETACHED, 2)
        s.close()
    print("python %s: ns per pair, unhooked -> armed (hot path, no sample)" % sys.version.split()[0])
    for name, _, _ in CASES:
        print("  %-48s %6.1f -> %6.1f  (+%.1f)" % (name, off[name], on[name], on[name] - off[name]))


if __name__ == "__main__":
    main()
