#include "CZlib.h"

#include <string.h>
#include <zlib.h>

// windowBits 15 + 16 asks deflate for a gzip header and trailer instead of zlib's.
#define GZIP_WINDOW (15 + 16)

size_t scalene_gzip_bound(size_t length) {
    // deflateBound's figure for zlib streams plus the gzip header and trailer (18 bytes).
    return (size_t)compressBound((uLong)length) + 32;
}

size_t scalene_gzip(const uint8_t *input, size_t length, uint8_t *output, size_t capacity, int level) {
    z_stream stream;
    memset(&stream, 0, sizeof stream);
    if (deflateInit2(&stream, level, Z_DEFLATED, GZIP_WINDOW, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    stream.next_in = (Bytef *)(uintptr_t)input;
    stream.avail_in = (uInt)length;
    stream.next_out = output;
    stream.avail_out = (uInt)capacity;
    int status = (length == (size_t)(uInt)length && capacity == (size_t)(uInt)capacity)
        ? deflate(&stream, Z_FINISH) : Z_BUF_ERROR;
    size_t written = stream.total_out;
    deflateEnd(&stream);
    return status == Z_STREAM_END ? written : 0;
}

long scalene_gunzip(const uint8_t *input, size_t length, uint8_t *output, size_t capacity) {
    z_stream stream;
    memset(&stream, 0, sizeof stream);
    if (inflateInit2(&stream, GZIP_WINDOW) != Z_OK) return -1;
    stream.next_in = (Bytef *)(uintptr_t)input;
    stream.avail_in = (uInt)length;
    stream.next_out = output;
    stream.avail_out = (uInt)capacity;
    int status = (length == (size_t)(uInt)length && capacity == (size_t)(uInt)capacity)
        ? inflate(&stream, Z_FINISH) : Z_BUF_ERROR;
    long written = (long)stream.total_out;
    inflateEnd(&stream);
    return status == Z_STREAM_END ? written : -1;
}
