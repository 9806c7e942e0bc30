#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

union sockaddr_any;

/* Per-source-address state with bounded memory. Sources are addresses
 * without port; IPv4-mapped IPv6 counts as IPv4. */

/* rate_limit: a GCRA token bucket per source (burst = rate). The table is
 * set-associative with a fixed number of slots; when a set is full the
 * source seen longest ago is forgotten (its bucket starts full again).
 * With shared = true the table lives in MAP_SHARED memory with a
 * process-shared lock, so pre-forked workers share one budget. */
struct ratelimit;

int ratelimit_new(struct ratelimit **ret, unsigned per_second, size_t slots, bool shared);
struct ratelimit *ratelimit_free(struct ratelimit *r);
bool ratelimit_allow(struct ratelimit *r, const union sockaddr_any *src, uint64_t now_usec);

/* per_source: exact counts of live connections per source. Capacity is
 * max_clients, so every admitted connection always has room. Thread-safe. */
struct srccount;

int srccount_new(struct srccount **ret, size_t capacity);
struct srccount *srccount_free(struct srccount *t);
/* Count one more connection from src unless it already has `limit`. */
bool srccount_acquire(struct srccount *t, const union sockaddr_any *src, unsigned limit);
void srccount_release(struct srccount *t, const union sockaddr_any *src);
unsigned srccount_get(struct srccount *t, const union sockaddr_any *src);
