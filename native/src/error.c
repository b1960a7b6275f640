/* Thread-local error channel: the C side never prints or aborts, it reports here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

static _Thread_local char hf_error_msg[512];

int hf_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hf_error_msg, sizeof hf_error_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *hf_last_error(void) { return hf_error_msg; }

void *hf_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    /* round up: aligned_alloc requires a multiple of the alignment */
    bytes = (bytes + 63) & ~(size_t)63;
    p = aligned_alloc(64, bytes);
    return p;
}

void hf_free(void *p) { free(p); }
