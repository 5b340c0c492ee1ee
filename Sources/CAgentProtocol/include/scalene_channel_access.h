// Atomic access to the shared channel for the Swift side (the agent uses the same builtins
// directly). Swift has no atomics on memory it did not allocate, so these small inline functions
// give it acquire loads and release stores on the mapped header and records.
#ifndef SCALENE_CHANNEL_ACCESS_H
#define SCALENE_CHANNEL_ACCESS_H

#include <stdint.h>

static inline uint32_t scalene_load_u32(const uint32_t *_Nonnull p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t scalene_load_u64(const uint64_t *_Nonnull p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void scalene_store_u32(uint32_t *_Nonnull p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void scalene_store_u64(uint64_t *_Nonnull p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

#endif
