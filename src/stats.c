#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "stats.h"
#include "util.h"

static const char *const refuse_names[_REFUSE_MAX] = {
	[REFUSE_DENY] = "deny",
	[REFUSE_MAX_CLIENTS] = "max_clients",
	[REFUSE_PER_SOURCE] = "per_source",
	[REFUSE_RATE_LIMIT] = "rate_limit",
	[REFUSE_PROXY] = "proxy",
	[REFUSE_ERROR] = "error",
};

static const char *const drop_names[_DROP_MAX] = {
	[DROP_GUARD] = "guard",
	[DROP_RATE_LIMIT] = "rate_limit",
	[DROP_ERROR] = "error",
};

const char *
refuse_reason_to_string(enum refuse_reason r)
{
	return (unsigned)r < _REFUSE_MAX ? refuse_names[r] : NULL;
}

const char *
drop_reason_to_string(enum drop_reason r)
{
	return (unsigned)r < _DROP_MAX ? drop_names[r] : NULL;
}

enum refuse_reason
refuse_reason_from_message(const char *why)
{
	static const struct {
		const char *msg;
		enum refuse_reason r;
	} map[] = {
		{ "not allowed", REFUSE_DENY },
		{ "server full", REFUSE_MAX_CLIENTS },
		{ "too many connections from this source", REFUSE_PER_SOURCE },
		{ "rate limit exceeded", REFUSE_RATE_LIMIT },
	};

	if (!why)
		return REFUSE_ERROR;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(why, map[i].msg) == 0)
			return map[i].r;
	/* "bad proxy header", "not a trusted proxy" and whatever else the
	 * PROXY protocol refuses with. */
	if (strstr(why, "proxy"))
		return REFUSE_PROXY;
	return REFUSE_ERROR;
}

uint64_t
stats_refused_sum(const struct listener_stats *s)
{
	uint64_t n = 0;

	for (size_t i = 0; i < _REFUSE_MAX; i++)
		n += atomic_load_explicit(&s->refused[i], memory_order_relaxed);
	return n;
}

uint64_t
stats_dropped_sum(const struct listener_stats *s)
{
	uint64_t n = 0;

	for (size_t i = 0; i < _DROP_MAX; i++)
		n += atomic_load_explicit(&s->dropped[i], memory_order_relaxed);
	return n;
}

void
stats_reset(struct listener_stats *s)
{
	uint64_t restarts = atomic_load(&s->restarts);

	memset(s, 0, sizeof(*s));
	atomic_store(&s->restarts, restarts);
}

int
stats_shared_new(struct stats_shared **ret, uint64_t start_usec)
{
	struct stats_shared *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (s == MAP_FAILED)
		return -errno;
	s->start_usec = start_usec;
	atomic_store(&s->reload_usec, start_usec);
	atomic_store(&s->reload_ok, true);
	*ret = s;
	return 0;
}

struct stats_shared *
stats_shared_free(struct stats_shared *s)
{
	if (s)
		(void)munmap(s, sizeof(*s));
	return NULL;
}

struct stats_slot *
stats_slot_take(struct stats_shared *s)
{
	for (size_t i = 0; i < STATS_SLOTS_MAX; i++) {
		struct stats_slot *slot = &s->slots[i];

		if (slot->used)
			continue;
		slot->used = true;
		memset(&slot->stats, 0, sizeof(slot->stats));
		if (i + 1 > atomic_load(&s->n_slots))
			atomic_store(&s->n_slots, (uint32_t)(i + 1));
		return slot;
	}
	return NULL;
}

void
stats_slot_publish(struct stats_slot *slot, const struct stats_info *info)
{
	atomic_fetch_add_explicit(&slot->seq, 1, memory_order_acq_rel);
	atomic_thread_fence(memory_order_release);
	slot->info = *info;
	atomic_thread_fence(memory_order_release);
	atomic_fetch_add_explicit(&slot->seq, 1, memory_order_acq_rel);
	atomic_store(&slot->visible, true);
}

void
stats_slot_hide(struct stats_slot *slot)
{
	atomic_store(&slot->visible, false);
}

void
stats_slot_release(struct stats_slot *slot)
{
	if (!slot)
		return;
	atomic_store(&slot->visible, false);
	slot->used = false;
}

struct stats_slot *
stats_slot_of(struct stats_shared *s, struct listener_stats *st)
{
	if (!s || !st)
		return NULL;
	for (size_t i = 0; i < STATS_SLOTS_MAX; i++)
		if (&s->slots[i].stats == st)
			return &s->slots[i];
	return NULL;
}

size_t
stats_snapshot_max(const struct stats_shared *s)
{
	return MIN((size_t)atomic_load(&s->n_slots), (size_t)STATS_SLOTS_MAX);
}

static int
by_name(const void *a, const void *b)
{
	const struct stats_view *x = a, *y = b;

	return strcmp(x->info.name, y->info.name);
}

#define LOAD(p) atomic_load_explicit(&(p), memory_order_relaxed)

size_t
stats_snapshot(const struct stats_shared *s, struct stats_view *ret, size_t max)
{
	size_t n = 0, end = MIN((size_t)atomic_load(&s->n_slots), (size_t)STATS_SLOTS_MAX);

	for (size_t i = 0; i < end && n < max; i++) {
		struct stats_slot *slot = (struct stats_slot *)&s->slots[i];
		const struct listener_stats *st = &slot->stats;
		struct stats_view *v = &ret[n];
		uint32_t seq;
		int tries = 0;

		if (!atomic_load(&slot->visible))
			continue;
		/* The dispatcher rewrites info only on start and reload:
		 * a few tries always get a stable copy. */
		do {
			seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
			atomic_thread_fence(memory_order_acquire);
			v->info = slot->info;
			atomic_thread_fence(memory_order_acquire);
		} while ((seq & 1 || seq != atomic_load_explicit(&slot->seq, memory_order_acquire)) &&
			 ++tries < 1000);
		if (tries >= 1000)
			continue;
		v->info.name[STATS_NAME_MAX] = '\0';
		v->info.address[STATS_ADDRESS_MAX] = '\0';
		v->info.protocol[sizeof(v->info.protocol) - 1] = '\0';
		v->info.model[sizeof(v->info.model) - 1] = '\0';
		v->info.service[sizeof(v->info.service) - 1] = '\0';
		v->conns_now = LOAD(st->conns_now);
		v->conns_total = LOAD(st->conns_total);
		v->bytes_in = LOAD(st->bytes_in);
		v->bytes_out = LOAD(st->bytes_out);
		v->dgrams_in = LOAD(st->dgrams_in);
		v->dgrams_out = LOAD(st->dgrams_out);
		for (size_t k = 0; k < _REFUSE_MAX; k++)
			v->refused[k] = LOAD(st->refused[k]);
		for (size_t k = 0; k < _DROP_MAX; k++)
			v->dropped[k] = LOAD(st->dropped[k]);
		v->chat_members = LOAD(st->chat_members);
		v->chat_messages = LOAD(st->chat_messages);
		v->restarts = LOAD(st->restarts);
		v->backend = LOAD(st->backend);
		n++;
	}
	qsort(ret, n, sizeof(*ret), by_name);
	return n;
}
