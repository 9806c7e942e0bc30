/* Per-source tables (src/srctable.h): exact per_source counts in an
 * open-addressing table, checked against a plain model through many
 * inserts and removals (backward-shift deletion must keep every probe
 * chain intact), and the GCRA rate limit on a fake clock: burst, steady
 * rate, refill, independence of sources, shared budgets across fork(),
 * and eviction in a full set. */

#include <arpa/inet.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "expect.h"

#include "srctable.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define MSEC USEC_PER_MSEC
/* A fake CLOCK_MONOTONIC far from zero, so nothing special-cases 0. */
#define T0 (UINT64_C(1000) * SEC)

static union sockaddr_any
addr(const char *ip, uint16_t port)
{
	union sockaddr_any a;

	memset(&a, 0, sizeof(a));
	if (strchr(ip, ':')) {
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
	} else {
		a.in.sin_family = AF_INET;
		a.in.sin_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET, ip, &a.in.sin_addr), 1);
	}
	return a;
}

/* Source number i: IPv4 for even i, IPv6 for odd, all distinct. */
static union sockaddr_any
source(unsigned i)
{
	union sockaddr_any a;

	memset(&a, 0, sizeof(a));
	if (i % 2 == 0) {
		a.in.sin_family = AF_INET;
		a.in.sin_port = htons((uint16_t)(40000 + i % 1000));
		a.in.sin_addr.s_addr = htonl(0x0a000000u + i);
	} else {
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons((uint16_t)(40000 + i % 1000));
		a.in6.sin6_addr.s6_addr[0] = 0x20;
		a.in6.sin6_addr.s6_addr[1] = 0x01;
		a.in6.sin6_addr.s6_addr[12] = (uint8_t)(i >> 24);
		a.in6.sin6_addr.s6_addr[13] = (uint8_t)(i >> 16);
		a.in6.sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
		a.in6.sin6_addr.s6_addr[15] = (uint8_t)i;
	}
	return a;
}

static uint32_t
rnd(uint32_t *state)
{
	/* xorshift32: reproducible, no libc state */
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}

/* ================= per_source counts ================= */

START_TEST(srccount_limits_each_source)
{
	struct srccount *t = NULL;
	union sockaddr_any a = addr("192.0.2.1", 1000), b = addr("192.0.2.2", 1000);

	ck_assert_int_eq(srccount_new(&t, 8), 0);
	ck_assert(srccount_acquire(t, &a, 2));
	ck_assert(srccount_acquire(t, &a, 2));
	ck_assert_msg(!srccount_acquire(t, &a, 2), "a third connection from one source with limit 2");
	ck_assert_uint_eq(srccount_get(t, &a), 2);
	ck_assert_msg(srccount_acquire(t, &b, 2), "another source is refused with the first full");
	srccount_release(t, &a);
	ck_assert_uint_eq(srccount_get(t, &a), 1);
	ck_assert(srccount_acquire(t, &a, 2));
	ck_assert_uint_eq(srccount_get(t, &b), 1);
	t = srccount_free(t);
	ck_assert_ptr_null(t);
	ck_assert_ptr_null(srccount_free(NULL));
}
END_TEST

START_TEST(srccount_source_is_address_without_port)
{
	struct srccount *t = NULL;
	union sockaddr_any p1 = addr("198.51.100.7", 1111), p2 = addr("198.51.100.7", 2222);
	union sockaddr_any mapped = addr("::ffff:198.51.100.7", 3333), v6 = addr("2001:db8::7", 1);

	ck_assert_int_eq(srccount_new(&t, 8), 0);
	ck_assert(srccount_acquire(t, &p1, 3));
	ck_assert(srccount_acquire(t, &p2, 3));
	ck_assert_msg(srccount_acquire(t, &mapped, 3), "IPv4-mapped source refused below the limit");
	ck_assert_msg(!srccount_acquire(t, &p1, 3),
		      "other ports and the IPv4-mapped form must count as one source");
	ck_assert_uint_eq(srccount_get(t, &mapped), 3);
	ck_assert_uint_eq(srccount_get(t, &v6), 0);
	srccount_release(t, &mapped);
	srccount_release(t, &p2);
	ck_assert_uint_eq(srccount_get(t, &p1), 1);
	srccount_free(t);
}
END_TEST

START_TEST(srccount_release_of_unknown_source_is_harmless)
{
	struct srccount *t = NULL;
	union sockaddr_any a = addr("192.0.2.1", 1), b = addr("192.0.2.9", 1);

	ck_assert_int_eq(srccount_new(&t, 4), 0);
	ck_assert(srccount_acquire(t, &a, 1));
	srccount_release(t, &b);
	ck_assert_uint_eq(srccount_get(t, &a), 1);
	ck_assert_uint_eq(srccount_get(t, &b), 0);
	srccount_release(t, &a);
	srccount_release(t, &a);
	ck_assert_uint_eq(srccount_get(t, &a), 0);
	ck_assert(srccount_acquire(t, &a, 1));
	srccount_free(t);
}
END_TEST

/* Random acquire/release against a model, at the table's fullest: the
 * capacity is max_clients, so live connections never exceed it; with few
 * slots per live source every chain is long and wraps around the end. */
static const struct churn_case {
	size_t capacity;
	unsigned sources; /* pool of distinct addresses */
	unsigned limit;
	unsigned ops;
} churn_cases[] = {
	{ 1, 3, 1, 2000 },
	{ 8, 8, 1, 20000 },
	{ 8, 40, 3, 20000 },
	{ 64, 64, 1, 50000 },
	{ 64, 500, 2, 50000 },
	{ 256, 4000, 4, 100000 },
};

START_TEST(srccount_matches_model_through_churn)
{
	const struct churn_case *c = &churn_cases[_i];
	_cleanup_(freep) unsigned *model = calloc(c->sources, sizeof(unsigned));
	struct srccount *t = NULL;
	uint32_t seed = 0x9e3779b9u ^ (uint32_t)_i;
	size_t live = 0;

	ck_assert_ptr_nonnull(model);
	ck_assert_int_eq(srccount_new(&t, c->capacity), 0);
	for (unsigned op = 0; op < c->ops; op++) {
		unsigned i = rnd(&seed) % c->sources;
		union sockaddr_any a = source(i);
		bool want_acquire = live < c->capacity && (live == 0 || rnd(&seed) % 2 == 0);

		if (want_acquire) {
			bool expect = model[i] < c->limit;

			HARNESS_EXPECT(srccount_acquire(t, &a, c->limit) == expect,
				      "case %d op %u: acquire of source %u at %u of %u returned %s", _i,
				      op, i, model[i], c->limit, expect ? "false" : "true");
			if (expect) {
				model[i]++;
				live++;
			}
		} else {
			/* Release one that is live, found from a random start. */
			unsigned k = i;

			while (model[k] == 0)
				k = (k + 1) % c->sources;
			a = source(k);
			srccount_release(t, &a);
			model[k]--;
			live--;
		}
		/* Every 97th op, and at the end: every source, live or not. */
		if (op % 97 == 0 || op + 1 == c->ops)
			for (unsigned k = 0; k < c->sources; k++) {
				union sockaddr_any b = source(k);

				HARNESS_EXPECT(srccount_get(t, &b) == model[k],
					      "case %d op %u: source %u counts %u, expected %u", _i, op,
					      k, srccount_get(t, &b), model[k]);
			}
	}
	/* Drain everything: the table ends empty and reusable. */
	for (unsigned k = 0; k < c->sources; k++)
		while (model[k]) {
			union sockaddr_any b = source(k);

			srccount_release(t, &b);
			model[k]--;
		}
	for (unsigned k = 0; k < c->sources; k++) {
		union sockaddr_any b = source(k);

		ck_assert_uint_eq(srccount_get(t, &b), 0);
	}
	for (unsigned k = 0; k < MIN((unsigned)c->capacity, c->sources); k++) {
		union sockaddr_any b = source(k);

		HARNESS_EXPECT(srccount_acquire(t, &b, 1), "case %d: source %u refused after draining",
			      _i, k);
	}
	srccount_free(t);
}
END_TEST

struct hammer {
	struct srccount *t;
	unsigned id;
	unsigned over_limit; /* acquires that succeeded beyond the limit */
};

enum { HAMMER_THREADS = 4, HAMMER_ROUNDS = 20000, HAMMER_LIMIT = 3 };

static void *
hammer_run(void *arg)
{
	struct hammer *h = arg;
	uint32_t seed = 12345u + h->id;

	for (unsigned r = 0; r < HAMMER_ROUNDS; r++) {
		union sockaddr_any a = source(rnd(&seed) % 5);

		if (srccount_acquire(h->t, &a, HAMMER_LIMIT)) {
			if (srccount_get(h->t, &a) > HAMMER_LIMIT)
				h->over_limit++;
			srccount_release(h->t, &a);
		}
	}
	return NULL;
}

START_TEST(srccount_is_thread_safe)
{
	struct hammer h[HAMMER_THREADS];
	pthread_t th[HAMMER_THREADS];
	struct srccount *t = NULL;

	/* Capacity covers every connection the threads can hold at once. */
	ck_assert_int_eq(srccount_new(&t, HAMMER_THREADS), 0);
	for (unsigned i = 0; i < HAMMER_THREADS; i++) {
		h[i] = (struct hammer){ .t = t, .id = i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, hammer_run, &h[i]), 0);
	}
	for (unsigned i = 0; i < HAMMER_THREADS; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_msg(h[i].over_limit == 0, "thread %u saw a source above its limit %u times",
			      i, h[i].over_limit);
	}
	for (unsigned k = 0; k < 5; k++) {
		union sockaddr_any a = source(k);

		ck_assert_uint_eq(srccount_get(t, &a), 0);
	}
	srccount_free(t);
}
END_TEST

/* ================= rate limit (GCRA) ================= */

START_TEST(ratelimit_rejects_zero_rate)
{
	struct ratelimit *r = NULL;

	ck_assert_int_eq(ratelimit_new(&r, 0, 64, false), -EINVAL);
	ck_assert_ptr_null(r);
	ck_assert_ptr_null(ratelimit_free(NULL));
}
END_TEST

/* The burst is exactly rate, for several rates, and one more is refused. */
static const unsigned burst_rates[] = { 1, 2, 10, 100, 1000 };

START_TEST(ratelimit_burst_equals_rate)
{
	unsigned rate = burst_rates[_i];
	struct ratelimit *r = NULL;
	union sockaddr_any a = addr("192.0.2.1", 5000);

	ck_assert_int_eq(ratelimit_new(&r, rate, 64, false), 0);
	for (unsigned k = 0; k < rate; k++)
		ck_assert_msg(ratelimit_allow(r, &a, T0), "rate %u: datagram %u of the burst refused",
			      rate, k + 1);
	ck_assert_msg(!ratelimit_allow(r, &a, T0), "rate %u: datagram %u at the same instant allowed",
		      rate, rate + 1);
	ratelimit_free(r);
}
END_TEST

START_TEST(ratelimit_refills_one_per_interval)
{
	struct ratelimit *r = NULL;
	union sockaddr_any a = addr("192.0.2.1", 5000);

	ck_assert_int_eq(ratelimit_new(&r, 10, 64, false), 0);
	for (int k = 0; k < 10; k++)
		ck_assert(ratelimit_allow(r, &a, T0));
	ck_assert(!ratelimit_allow(r, &a, T0 + 99 * MSEC));
	ck_assert_msg(ratelimit_allow(r, &a, T0 + 100 * MSEC), "no token 100 ms after the burst");
	ck_assert_msg(!ratelimit_allow(r, &a, T0 + 100 * MSEC), "two tokens after 100 ms at rate 10");
	ck_assert(ratelimit_allow(r, &a, T0 + 200 * MSEC));
	/* A second of silence: the whole burst again, not more. */
	for (int k = 0; k < 10; k++)
		ck_assert_msg(ratelimit_allow(r, &a, T0 + 1200 * MSEC),
			      "datagram %d after a second of silence refused", k + 1);
	ck_assert(!ratelimit_allow(r, &a, T0 + 1200 * MSEC));
	/* A long silence does not bank more than the burst. */
	for (int k = 0; k < 10; k++)
		ck_assert(ratelimit_allow(r, &a, T0 + 3600 * SEC));
	ck_assert_msg(!ratelimit_allow(r, &a, T0 + 3600 * SEC), "an hour of silence banked > burst");
	ratelimit_free(r);
}
END_TEST

/* A source that asks all the time gets burst + rate * seconds. */
static const struct steady_case {
	unsigned rate;
	uint64_t step_usec;
	uint64_t seconds;
} steady_cases[] = {
	{ 10, 1 * MSEC, 10 },
	{ 10, 37 * MSEC, 10 },
	{ 1, 10 * MSEC, 20 },
	{ 1000, 100, 5 },
	{ 3, 333333, 30 },
};

START_TEST(ratelimit_steady_rate_over_time)
{
	const struct steady_case *c = &steady_cases[_i];
	struct ratelimit *r = NULL;
	union sockaddr_any a = addr("2001:db8::1", 5000);
	uint64_t allowed = 0, calls = 0, want;

	ck_assert_int_eq(ratelimit_new(&r, c->rate, 64, false), 0);
	for (uint64_t t = 0; t <= c->seconds * SEC; t += c->step_usec, calls++)
		allowed += ratelimit_allow(r, &a, T0 + t);
	/* A source slower than the rate gets everything. */
	want = MIN(calls, c->rate + c->rate * c->seconds);
	ck_assert_msg(allowed + 1 >= want && allowed <= want,
		      "rate %u asked every %" PRIu64 " us for %" PRIu64 " s: %" PRIu64
		      " allowed, expected %" PRIu64 " (burst + rate x seconds)",
		      c->rate, c->step_usec, c->seconds, allowed, want);
	ratelimit_free(r);
}
END_TEST

START_TEST(ratelimit_sources_are_independent)
{
	struct ratelimit *r = NULL;
	union sockaddr_any a = addr("192.0.2.1", 5000), a2 = addr("192.0.2.1", 6000);
	union sockaddr_any mapped = addr("::ffff:192.0.2.1", 7000), b = addr("192.0.2.2", 5000);

	ck_assert_int_eq(ratelimit_new(&r, 5, 64, false), 0);
	for (int k = 0; k < 5; k++)
		ck_assert(ratelimit_allow(r, &a, T0));
	ck_assert_msg(!ratelimit_allow(r, &a2, T0), "another port of a limited source allowed");
	ck_assert_msg(!ratelimit_allow(r, &mapped, T0),
		      "the IPv4-mapped form of a limited source allowed");
	for (int k = 0; k < 5; k++)
		ck_assert_msg(ratelimit_allow(r, &b, T0), "another source limited by the first");
	ratelimit_free(r);
}
END_TEST

START_TEST(ratelimit_shared_budget_across_fork)
{
	struct ratelimit *r = NULL;
	union sockaddr_any a = addr("192.0.2.1", 5000);
	int status;
	pid_t pid;

	ck_assert_int_eq(ratelimit_new(&r, 10, 64, true), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = 0;

		for (int k = 0; k < 6; k++)
			ok += ratelimit_allow(r, &a, T0);
		_exit(ok == 6 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The child took 6 of 10: 4 are left for the parent. */
	for (int k = 0; k < 4; k++)
		ck_assert_msg(ratelimit_allow(r, &a, T0), "parent: datagram %d refused", k + 1);
	ck_assert_msg(!ratelimit_allow(r, &a, T0), "workers do not share one budget");
	ratelimit_free(r);
}
END_TEST

/* slots = 4 is one set of four ways: every source lands in it. */
START_TEST(ratelimit_full_set_forgets_least_recently_seen)
{
	struct ratelimit *r = NULL;
	union sockaddr_any a = addr("192.0.2.1", 1), s[4];

	for (int i = 0; i < 4; i++)
		s[i] = source((unsigned)(100 + 2 * i));
	ck_assert_int_eq(ratelimit_new(&r, 2, 4, false), 0);
	ck_assert(ratelimit_allow(r, &a, T0));
	ck_assert(ratelimit_allow(r, &a, T0));
	ck_assert(!ratelimit_allow(r, &a, T0));
	/* Three more sources fill the set; a is still remembered. */
	for (int i = 0; i < 3; i++)
		ck_assert(ratelimit_allow(r, &s[i], T0 + (uint64_t)(i + 1)));
	ck_assert_msg(!ratelimit_allow(r, &a, T0 + 10), "a forgotten while the set had room");
	/* a was just seen again: a fifth source evicts s[0], the oldest. */
	ck_assert(ratelimit_allow(r, &s[3], T0 + 20));
	ck_assert_msg(!ratelimit_allow(r, &a, T0 + 30),
		      "the most recently seen source was evicted instead of the oldest");
	/* s[0] comes back with a full bucket: it was forgotten. */
	ck_assert(ratelimit_allow(r, &s[0], T0 + 40));
	ck_assert_msg(ratelimit_allow(r, &s[0], T0 + 40),
		      "an evicted source did not start with a full bucket");
	ratelimit_free(r);
}
END_TEST

START_TEST(ratelimit_many_sources_bounded_and_fair)
{
	enum { SOURCES = 20000 };
	struct ratelimit *r = NULL;
	union sockaddr_any a = addr("192.0.2.1", 1);
	unsigned fresh = 0;

	ck_assert_int_eq(ratelimit_new(&r, 1, 256, false), 0);
	ck_assert(ratelimit_allow(r, &a, T0));
	ck_assert(!ratelimit_allow(r, &a, T0));
	/* A flood of new sources: each one new gets its first datagram
	 * (the table forgets, it never refuses a stranger). */
	for (unsigned i = 0; i < SOURCES; i++) {
		union sockaddr_any b = source(i);

		fresh += ratelimit_allow(r, &b, T0 + 1 + i);
	}
	ck_assert_uint_eq(fresh, SOURCES);
	ratelimit_free(r);
}
END_TEST

static Suite *
srctable_suite(void)
{
	Suite *s = suite_create("srctable");
	TCase *tc;

	tc = tcase_create("srccount");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, srccount_limits_each_source);
	tcase_add_test(tc, srccount_source_is_address_without_port);
	tcase_add_test(tc, srccount_release_of_unknown_source_is_harmless);
	tcase_add_loop_test(tc, srccount_matches_model_through_churn, 0, ELEMENTSOF(churn_cases));
	tcase_add_test(tc, srccount_is_thread_safe);
	suite_add_tcase(s, tc);

	tc = tcase_create("ratelimit");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, ratelimit_rejects_zero_rate);
	tcase_add_loop_test(tc, ratelimit_burst_equals_rate, 0, ELEMENTSOF(burst_rates));
	tcase_add_test(tc, ratelimit_refills_one_per_interval);
	tcase_add_loop_test(tc, ratelimit_steady_rate_over_time, 0, ELEMENTSOF(steady_cases));
	tcase_add_test(tc, ratelimit_sources_are_independent);
	tcase_add_test(tc, ratelimit_shared_budget_across_fork);
	tcase_add_test(tc, ratelimit_full_set_forgets_least_recently_seen);
	tcase_add_test(tc, ratelimit_many_sources_bounded_and_fair);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(srctable_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
