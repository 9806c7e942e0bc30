#include "netecho-hist.h"
#include "util.h"

unsigned
netecho_hist_index(uint64_t v)
{
	unsigned e;

	if (v < NETECHO_HIST_SUB)
		return (unsigned)v;
	if (v >= (UINT64_C(1) << (NETECHO_HIST_MAX_EXP + 1)))
		v = (UINT64_C(1) << (NETECHO_HIST_MAX_EXP + 1)) - 1;
	e = 63u - (unsigned)__builtin_clzll(v);
	return NETECHO_HIST_SUB + (e - NETECHO_HIST_SUB_BITS) * NETECHO_HIST_SUB +
	       (unsigned)((v >> (e - NETECHO_HIST_SUB_BITS)) - NETECHO_HIST_SUB);
}

/* The middle of bucket i. */
static uint64_t
hist_value(unsigned i)
{
	unsigned k, e;
	uint64_t low, width;

	if (i < NETECHO_HIST_SUB)
		return i;
	k = i - NETECHO_HIST_SUB;
	e = k / NETECHO_HIST_SUB + NETECHO_HIST_SUB_BITS;
	low = (uint64_t)(NETECHO_HIST_SUB + k % NETECHO_HIST_SUB) << (e - NETECHO_HIST_SUB_BITS);
	width = UINT64_C(1) << (e - NETECHO_HIST_SUB_BITS);
	return low + width / 2;
}

void
netecho_hist_merge(struct netecho_hist *dst, const struct netecho_hist *src)
{
	for (unsigned i = 0; i < NETECHO_HIST_BUCKETS; i++)
		dst->count[i] += src->count[i];
	dst->total += src->total;
	dst->max = MAX(dst->max, src->max);
}

uint64_t
netecho_hist_quantile(const struct netecho_hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (h->total == 0)
		return 0;
	rank = (uint64_t)(q * (double)h->total + 0.999999);
	rank = MAX(rank, UINT64_C(1));
	for (unsigned i = 0; i < NETECHO_HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank)
			return MIN(hist_value(i), h->max);
	}
	return h->max;
}
