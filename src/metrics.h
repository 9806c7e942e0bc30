#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stats_view;

/* The Prometheus text exposition format 0.0.4 of netechod's counters
 * (SPEC section 11). Pure: a snapshot in, text out; no I/O. */

struct metrics_global {
	const char *version;  /* netechod_build_info{version} */
	uint64_t start_usec;  /* CLOCK_REALTIME */
	uint64_t reload_usec; /* the last reload attempt; start_usec before any */
	bool reload_ok;
};

/* Render the whole body for the n listeners in v (in that order) into a
 * malloc()ed buffer: *ret (NUL-terminated) and *ret_len. Its size grows
 * with n only (under 3 KiB a listener). -ENOMEM. */
int metrics_render(const struct metrics_global *g, const struct stats_view *v, size_t n,
		   char **ret, size_t *ret_len);

/* A label value as the format wants it: backslash, double quote and line
 * feed escaped as \\, \" and \n. Writes at most size bytes, NUL included;
 * returns the length the whole escaped value needs (like snprintf). */
size_t metrics_escape_label(const char *value, char *buf, size_t size);
