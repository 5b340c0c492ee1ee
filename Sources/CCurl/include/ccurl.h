// C shim for libcurl loaded at run time with dlopen (`--push`).
//
// It exists because the tool must not link libcurl: without `--push` it needs nothing beyond
// glibc (and the C++ runtime). libcurl's header is not needed either (no libcurl-dev): the few
// option and info numbers used are declared here. They are part of libcurl's ABI, which never
// renumbers an option (curl.h: `CURLOPT(name, type, number)` is `type + number`, with LONG 0,
// OBJECTPOINT/STRINGPOINT/SLISTPOINT 10000, FUNCTIONPOINT 20000, OFF_T 30000; CURLINFO_LONG is
// 0x200000). `curl_easy_setopt` is variadic, which Swift cannot call: each kind of argument has
// a typed wrapper. Nothing here is global: the loaded functions live in a `ccurl_api` the caller
// owns.
#ifndef CCURL_H
#define CCURL_H

#include <stddef.h>
#include <stdint.h>

// CURLOPT_* numbers (curl.h, stable since they were added).
#define CCURL_OPT_URL                 10002 // STRINGPOINT 2
#define CCURL_OPT_USERPWD             10005 // STRINGPOINT 5
#define CCURL_OPT_ERRORBUFFER         10010 // OBJECTPOINT 10
#define CCURL_OPT_WRITEFUNCTION       20011 // FUNCTIONPOINT 11
#define CCURL_OPT_POSTFIELDS          10015 // OBJECTPOINT 15
#define CCURL_OPT_USERAGENT           10018 // STRINGPOINT 18
#define CCURL_OPT_HTTPHEADER          10023 // SLISTPOINT 23
#define CCURL_OPT_POST                47    // LONG 47
#define CCURL_OPT_NOSIGNAL            99    // LONG 99
#define CCURL_OPT_TIMEOUT_MS          155   // LONG 155
#define CCURL_OPT_CONNECTTIMEOUT_MS   156   // LONG 156
#define CCURL_OPT_POSTFIELDSIZE_LARGE 30120 // OFF_T 120
#define CCURL_INFO_RESPONSE_CODE      0x200002 // CURLINFO_LONG + 2
// CURL_GLOBAL_ALL (SSL | WIN32).
#define CCURL_GLOBAL_ALL 3
// CURL_ERROR_SIZE: the room CURLOPT_ERRORBUFFER needs.
#define CCURL_ERROR_SIZE 256

// CURLcode values the pusher tells apart (curl.h `CURLcode`).
#define CCURL_E_OK                  0
#define CCURL_E_UNSUPPORTED_PROTOCOL 1
#define CCURL_E_URL_MALFORMAT       3
#define CCURL_E_COULDNT_RESOLVE_PROXY 5
#define CCURL_E_COULDNT_RESOLVE_HOST 6
#define CCURL_E_COULDNT_CONNECT     7
#define CCURL_E_OPERATION_TIMEDOUT  28

/// libcurl's functions, resolved from one dlopen handle.
typedef struct ccurl_api {
    void *_Nullable handle;
    int (*_Nullable global_init)(long flags);
    void *_Nullable (*_Nullable easy_init)(void);
    int (*_Nullable easy_setopt)(void *_Nonnull easy, int option, ...);
    int (*_Nullable easy_perform)(void *_Nonnull easy);
    int (*_Nullable easy_getinfo)(void *_Nonnull easy, int info, ...);
    void (*_Nullable easy_cleanup)(void *_Nonnull easy);
    void (*_Nullable easy_reset)(void *_Nonnull easy);
    const char *_Nullable (*_Nullable easy_strerror)(int code);
    void *_Nullable (*_Nullable slist_append)(void *_Nullable list, const char *_Nonnull string);
    void (*_Nullable slist_free_all)(void *_Nullable list);
    char *_Nullable (*_Nullable version)(void);
} ccurl_api;

/// Loads `path` (RTLD_NOW | RTLD_LOCAL), resolves every function and runs curl_global_init.
/// Returns 0, or -1 with a message (dlerror's, or the missing symbol) in `error`.
/// Call it before starting other threads: curl_global_init is not thread-safe in older libcurls.
int ccurl_load(const char *_Nonnull path, ccurl_api *_Nonnull api, char *_Nonnull error, size_t error_size);

/// The response body is not needed beyond its first bytes (kept for error messages).
typedef struct ccurl_response {
    char bytes[512];
    size_t length;
} ccurl_response;

/// curl_easy_setopt with a `long` argument.
int ccurl_set_long(const ccurl_api *_Nonnull api, void *_Nonnull easy, int option, long value);
/// curl_easy_setopt with a pointer argument (strings, the header list, the error buffer, the body).
int ccurl_set_pointer(const ccurl_api *_Nonnull api, void *_Nonnull easy, int option, const void *_Nullable value);
/// curl_easy_setopt with a `curl_off_t` (int64) argument.
int ccurl_set_off_t(const ccurl_api *_Nonnull api, void *_Nonnull easy, int option, int64_t value);
/// Sets the write callback that keeps the first bytes of the response in `response` (WRITEDATA).
int ccurl_capture_response(const ccurl_api *_Nonnull api, void *_Nonnull easy, ccurl_response *_Nonnull response);
/// curl_easy_getinfo with a `long *` argument.
int ccurl_get_long(const ccurl_api *_Nonnull api, void *_Nonnull easy, int info, long *_Nonnull value);

#endif // CCURL_H
