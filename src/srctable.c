#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "srctable.h"
#include "util.h"

#define RL_WAYS 4

struct src_key {
	uint8_t addr[16];
	uint8_t family;
};

static void
key_of(const union sockaddr_any *sa, struct src_key *k)
{
	memset(k, 0, sizeof(*k));
	k->family = (uint8_t)sockaddr_addr_bytes(sa, k->addr);
}

static uint32_t
key_hash(const struct src_key *k)
{
	uint32_t h = 2166136261u ^ k->family;

	for (size_t i = 0; i < sizeof(k->addr); i++)
		h = (h ^ k->addr[i]) * 16777619u;
	return h ^ (h >> 15);
}

static bool
key_eq(const struct src_key *a, const struct src_key *b)
{
	return a->family == b->family && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

struct rl_slot {
	struct src_key key;
	bool used;
	uint64_t tat;  /* GCRA theoretical arrival time */
	uint64_t seen; /* for eviction */
};

struct ratelimit {
	pthread_mutex_t lock;
	bool shared;
	size_t map_size;
	uint64_t interval; /* usec between tokens */
	uint64_t tolerance;
	size_t n_sets;
	struct rl_slot slots[];
};

int
ratelimit_new(struct ratelimit **ret, unsigned per_second, size_t slots, bool shared)
{
	size_t n_sets = MAX(slots / RL_WAYS, (size_t)1);
	size_t size = sizeof(struct ratelimit) + n_sets * RL_WAYS * sizeof(struct rl_slot);
	struct ratelimit *r;
	pthread_mutexattr_t ma;

	if (per_second == 0)
		return -EINVAL;
	if (shared) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return -errno;
		r = p; /* anonymous mappings come zeroed */
	} else {
		r = calloc(1, size);
		if (!r)
			return -ENOMEM;
	}
	r->shared = shared;
	r->map_size = size;
	r->n_sets = n_sets;
	r->interval = USEC_PER_SEC / per_second;
	if (r->interval == 0)
		r->interval = 1;
	/* Burst of per_second datagrams, then per_second a second. */
	r->tolerance = r->interval * (per_second - 1);
	pthread_mutexattr_init(&ma);
	if (shared)
		pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&r->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	*ret = r;
	return 0;
}

struct ratelimit *
ratelimit_free(struct ratelimit *r)
{
	if (!r)
		return NULL;
	pthread_mutex_destroy(&r->lock);
	if (r->shared)
		munmap(r, r->map_size);
	else
		free(r);
	return NULL;
}

bool
ratelimit_allow(struct ratelimit *r, const union sockaddr_any *src, uint64_t now)
{
	struct src_key k;
	struct rl_slot *set, *s = NULL, *victim;
	bool ok;

	key_of(src, &k);
	pthread_mutex_lock(&r->lock);
	set = &r->slots[(key_hash(&k) % r->n_sets) * RL_WAYS];
	victim = &set[0];
	for (int i = 0; i < RL_WAYS; i++) {
		if (set[i].used && key_eq(&set[i].key, &k)) {
			s = &set[i];
			break;
		}
		if (!set[i].used)
			victim = &set[i];
		else if (victim->used && set[i].seen < victim->seen)
			victim = &set[i];
	}
	if (!s) {
		s = victim;
		*s = (struct rl_slot){ .key = k, .used = true, .tat = now };
	}
	s->seen = now;
	if (s->tat < now)
		s->tat = now;
	ok = s->tat - now <= r->tolerance;
	if (ok)
		s->tat += r->interval;
	pthread_mutex_unlock(&r->lock);
	return ok;
}

struct src_count {
	struct src_key key;
	unsigned count; /* 0 = empty slot */
};

struct srccount {
	pthread_mutex_t lock;
	size_t mask;
	struct src_count *slots;
};

int
srccount_new(struct srccount **ret, size_t capacity)
{
	struct srccount *t;
	size_t n = 16;

	/* At most half full, so probes stay short. */
	while (n < capacity * 2)
		n *= 2;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->slots = calloc(n, sizeof(*t->slots));
	if (!t->slots) {
		free(t);
		return -ENOMEM;
	}
	t->mask = n - 1;
	pthread_mutex_init(&t->lock, NULL);
	*ret = t;
	return 0;
}

struct srccount *
srccount_free(struct srccount *t)
{
	if (!t)
		return NULL;
	pthread_mutex_destroy(&t->lock);
	free(t->slots);
	free(t);
	return NULL;
}

/* Slot holding k, or the empty slot where it would go. */
static size_t
find(struct srccount *t, const struct src_key *k)
{
	size_t i = key_hash(k) & t->mask;

	while (t->slots[i].count && !key_eq(&t->slots[i].key, k))
		i = (i + 1) & t->mask;
	return i;
}

bool
srccount_acquire(struct srccount *t, const union sockaddr_any *src, unsigned limit)
{
	struct src_key k;
	bool ok = true;
	size_t i;

	key_of(src, &k);
	pthread_mutex_lock(&t->lock);
	i = find(t, &k);
	if (t->slots[i].count >= limit)
		ok = false;
	else {
		t->slots[i].key = k;
		t->slots[i].count++;
	}
	pthread_mutex_unlock(&t->lock);
	return ok;
}

void
srccount_release(struct srccount *t, const union sockaddr_any *src)
{
	struct src_key k;
	size_t i, j;

	key_of(src, &k);
	pthread_mutex_lock(&t->lock);
	i = find(t, &k);
	if (t->slots[i].count && --t->slots[i].count == 0) {
		/* Backward-shift deletion keeps every probe chain intact. */
		j = i;
		for (;;) {
			size_t home;

			j = (j + 1) & t->mask;
			if (!t->slots[j].count)
				break;
			home = key_hash(&t->slots[j].key) & t->mask;
			/* Move j into the hole at i unless its home lies
			 * cyclically in (i, j]. */
			if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
				t->slots[i] = t->slots[j];
				t->slots[j].count = 0;
				i = j;
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
}

unsigned
srccount_get(struct srccount *t, const union sockaddr_any *src)
{
	struct src_key k;
	unsigned n;

	key_of(src, &k);
	pthread_mutex_lock(&t->lock);
	n = t->slots[find(t, &k)].count;
	pthread_mutex_unlock(&t->lock);
	return n;
}
