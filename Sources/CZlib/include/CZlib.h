// C shim for gzip compression with zlib (pprof files and Pyroscope bodies are gzip-compressed
// profile.proto).
//
// It exists because zlib's deflateInit2 is a macro (it passes the library's version and the size
// of z_stream), which Swift cannot call. The tool already needs libz.so.1 at run time (libelf
// links it), so this adds no dependency.
#ifndef CZLIB_H
#define CZLIB_H

#include <stddef.h>
#include <stdint.h>

// An upper bound of the gzip output for `length` input bytes.
size_t scalene_gzip_bound(size_t length);

// Compresses `length` bytes at `input` into a gzip member (RFC 1952) at `output`, which has room
// for `capacity` bytes. Returns the bytes written, or 0 on failure (output too small, no memory).
size_t scalene_gzip(const uint8_t *_Nullable input, size_t length, uint8_t *_Nonnull output, size_t capacity,
                    int level);

// Decompresses a gzip member into `output` (room for `capacity` bytes). Returns the bytes
// written, or -1 when the input is not gzip, is truncated, or does not fit.
long scalene_gunzip(const uint8_t *_Nonnull input, size_t length, uint8_t *_Nonnull output, size_t capacity);

#endif // CZLIB_H
