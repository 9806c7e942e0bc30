#pragma once

/* A log-linear histogram of nanoseconds for the bench subcommands: values
 * below NETECHO_HIST_SUB exactly, then NETECHO_HIST_SUB buckets per power
 * of two (under 1 % error), up to 2^NETECHO_HIST_MAX_EXP ns (18 minutes).
 * Fixed size: adding a value neither allocates nor locks. */

#include <stdint.h>

#define NETECHO_HIST_SUB_BITS 7
#define NETECHO_HIST_SUB (1u << NETECHO_HIST_SUB_BITS)
#define NETECHO_HIST_MAX_EXP 40
#define NETECHO_HIST_BUCKETS                                                              \
	(NETECHO_HIST_SUB + (NETECHO_HIST_MAX_EXP - NETECHO_HIST_SUB_BITS + 1) * NETECHO_HIST_SUB)

struct netecho_hist {
	uint64_t count[NETECHO_HIST_BUCKETS];
	uint64_t total;
	uint64_t max;
};

/* The bucket of value v. */
unsigned netecho_hist_index(uint64_t v);

static inline void
netecho_hist_add(struct netecho_hist *h, uint64_t v)
{
	h->count[netecho_hist_index(v)]++;
	h->total++;
	if (v > h->max)
		h->max = v;
}

void netecho_hist_merge(struct netecho_hist *dst, const struct netecho_hist *src);
/* Value at quantile q (0-1]; 0 for an empty histogram. */
uint64_t netecho_hist_quantile(const struct netecho_hist *h, double q);
