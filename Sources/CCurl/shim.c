#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ccurl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define CCURL_OPT_WRITEDATA 10001 // CBPOINT 1

int ccurl_load(const char *path, ccurl_api *api, char *error, size_t error_size) {
    memset(api, 0, sizeof *api);
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *reason = dlerror();
        snprintf(error, error_size, "%s", reason ? reason : "dlopen failed");
        return -1;
    }
    struct { const char *name; void **slot; } symbols[] = {
        {"curl_global_init", (void **)&api->global_init},
        {"curl_easy_init", (void **)&api->easy_init},
        {"curl_easy_setopt", (void **)&api->easy_setopt},
        {"curl_easy_perform", (void **)&api->easy_perform},
        {"curl_easy_getinfo", (void **)&api->easy_getinfo},
        {"curl_easy_cleanup", (void **)&api->easy_cleanup},
        {"curl_easy_reset", (void **)&api->easy_reset},
        {"curl_easy_strerror", (void **)&api->easy_strerror},
        {"curl_slist_append", (void **)&api->slist_append},
        {"curl_slist_free_all", (void **)&api->slist_free_all},
        {"curl_version", (void **)&api->version},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        *symbols[i].slot = dlsym(handle, symbols[i].name);
        if (*symbols[i].slot == NULL) {
            snprintf(error, error_size, "%s has no %s (not libcurl?)", path, symbols[i].name);
            dlclose(handle);
            memset(api, 0, sizeof *api);
            return -1;
        }
    }
    int code = api->global_init(CCURL_GLOBAL_ALL);
    if (code != CCURL_E_OK) {
        snprintf(error, error_size, "curl_global_init failed (%d)", code);
        dlclose(handle);
        memset(api, 0, sizeof *api);
        return -1;
    }
    api->handle = handle;
    return 0;
}

int ccurl_set_long(const ccurl_api *api, void *easy, int option, long value) {
    return api->easy_setopt(easy, option, value);
}

int ccurl_set_pointer(const ccurl_api *api, void *easy, int option, const void *value) {
    return api->easy_setopt(easy, option, value);
}

int ccurl_set_off_t(const ccurl_api *api, void *easy, int option, int64_t value) {
    // curl_off_t is int64_t on every 64-bit Linux (curl's system.h: `long`, 8 bytes).
    return api->easy_setopt(easy, option, (long)value);
}

_Static_assert(sizeof(long) == 8, "curl_off_t is passed as a 64-bit long");

static size_t keep_first_bytes(char *data, size_t size, size_t count, void *user) {
    ccurl_response *response = user;
    size_t length = size * count;
    size_t room = sizeof response->bytes - response->length;
    size_t kept = length < room ? length : room;
    memcpy(response->bytes + response->length, data, kept);
    response->length += kept;
    return length; // everything is consumed: a short count would abort the transfer
}

int ccurl_capture_response(const ccurl_api *api, void *easy, ccurl_response *response) {
    response->length = 0;
    int code = api->easy_setopt(easy, CCURL_OPT_WRITEFUNCTION, keep_first_bytes);
    if (code != CCURL_E_OK) return code;
    return api->easy_setopt(easy, CCURL_OPT_WRITEDATA, (void *)response);
}

int ccurl_get_long(const ccurl_api *api, void *easy, int info, long *value) {
    return api->easy_getinfo(easy, info, value);
}
