#pragma once

#include <stddef.h>

/* Expand a listener's `prefix` (SPEC: %p the serving process, %t the
 * serving thread, %l the listener's name, %% a percent sign) for the
 * calling process and thread into buf, NUL-terminated and truncated to
 * fit. Returns the length written; 0 when prefix is NULL or size is 0.
 * Config validation keeps other escapes out; should one get here it
 * expands to nothing. */
size_t prefix_expand(const char *prefix, const char *listener, char *buf, size_t size);
