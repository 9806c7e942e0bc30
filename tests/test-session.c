#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <check.h>

#include "listener-rt.h"
#include "log.h"
#include "service.h"
#include "session.h"

/* The session layer alone, over socketpairs: no daemon, no loop, no model.
 * The test is the driver: it calls session_read/flush/wants_* as the models
 * do, and a fake driver records want_write() calls (and, for the cases with
 * a second thread, wakes an eventfd the way the thread model does).
 *
 * No wait is unbounded and nothing sleeps to synchronize: the socketpairs
 * are non-blocking and what one end writes is readable at the other at
 * once, so "drain the peer, flush again" loops need no waiting; a wait for
 * another thread is a poll() with a timeout; every case has a Check timeout
 * and an alarm() that also holds under CK_FORK=no. SIGPIPE is ignored as
 * the daemon does (dispatcher_run): session.c writes with write(), not
 * send(MSG_NOSIGNAL), and relies on that. */

#define TEST_ALARM_SEC 10
#define WAIT_MS 5000
/* Upper bound for drain-and-flush loops: the tiny socket takes ~4 KiB a
 * round, so 200 KiB take ~50. */
#define MAX_ROUNDS 10000
/* SO_SNDBUF asked for; Linux makes it its minimum (4608, ~4.4 KiB of data
 * in flight on an AF_UNIX stream). */
#define TINY_SNDBUF 1

/* The fake service. */
enum svc_mode {
	SVC_SINK, /* consume everything, keep a copy in got */
	SVC_ECHO, /* as service-echo.c without a prefix */
	SVC_KEEP, /* consume nothing */
	SVC_RELAY, /* send everything to the session R, as chat relays */
};

static enum svc_mode mode;
static struct session R; /* SVC_RELAY's receiver */
static struct buffer got;
static unsigned n_data, n_eof;
static atomic_bool hold;
static atomic_uint n_hold;

static size_t
fake_on_data(struct session *s, const uint8_t *p, size_t n)
{
	size_t m;

	n_data++;
	switch (mode) {
	case SVC_SINK:
		if (buffer_append(&got, p, n) < 0)
			ck_abort_msg("out of memory");
		return n;
	case SVC_ECHO:
		m = MIN(n, session_send_space(s));
		session_send(s, p, m);
		return m;
	case SVC_KEEP:
		return 0;
	case SVC_RELAY:
		session_send(&R, p, n);
		return n;
	}
	return 0;
}

static void
fake_on_eof(struct session *s)
{
	(void)s;
	n_eof++;
}

static bool
fake_hold_input(struct session *s)
{
	(void)s;
	atomic_fetch_add(&n_hold, 1);
	return atomic_load(&hold);
}

static unsigned n_close, n_shutdown, n_detach, n_writable;

static void
fake_on_close(struct session *s)
{
	n_close++;
}

/* Last words on a stop, as chat says goodbye. */
static void
fake_on_shutdown(struct session *s)
{
	n_shutdown++;
	session_send(s, "bye\n", 4);
}

static const struct service_ops fake_ops = {
	.name = "fake",
	.on_data = fake_on_data,
	.on_eof = fake_on_eof,
	.hold_input = fake_hold_input,
	.on_close = fake_on_close,
	.on_shutdown = fake_on_shutdown,
};

/* A service that streams (as chargen): 1000 bytes each time output ran
 * dry. */
static void
fake_on_writable(struct session *s)
{
	static const uint8_t part[1000];

	n_writable++;
	session_send(s, part, sizeof(part));
}

static const struct service_ops stream_ops = {
	.name = "stream",
	.on_data = fake_on_data,
	.on_writable = fake_on_writable,
};

/* The fake driver: counts want_write() calls, notes the caller's thread and
 * whether the session's lock was held, and writes to wake_fd if set. */
static atomic_uint n_wake;
static pthread_t wake_thread;
static atomic_bool wake_lock_held; /* every call so far had s->lock held */
static int wake_fd = -1;

static void
fake_want_write(struct session *s)
{
	uint64_t one = 1;

	if (s->lock) {
		/* Default mutex: EBUSY when held, by us or anyone. */
		int r = pthread_mutex_trylock(s->lock);

		if (r == 0) {
			pthread_mutex_unlock(s->lock);
			atomic_store(&wake_lock_held, false);
		}
	}
	wake_thread = pthread_self();
	atomic_fetch_add(&n_wake, 1);
	if (wake_fd >= 0)
		ck_assert_int_eq(write(wake_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

/* Plain values for assertions (an atomic_load() in one reads badly). */
static unsigned
wakes(void)
{
	return atomic_load(&n_wake);
}

static unsigned
holds(void)
{
	return atomic_load(&n_hold);
}

static void
fake_detach(struct session *s)
{
	/* Before the close. */
	ck_assert_int_ge(s->fd, 0);
	n_detach++;
}

static const struct session_driver fake_driver = {
	.want_write = fake_want_write,
	.detach = fake_detach,
};

/* A loop model's driver: what other sessions' steps send is queued. */
static const struct session_driver later_driver = {
	.want_write = fake_want_write,
	.flush_later = true,
};

static struct listener_stats stats;
static struct listener_rt lst;
static struct session S;
static int peer = -1; /* the client's end, always non-blocking */
static int rpeer = -1; /* R's client end */

static void
setup(void)
{
	(void)signal(SIGPIPE, SIG_IGN);
	alarm(TEST_ALARM_SEC);
	/* Under CK_FORK=no state carries over between cases: reset it all. */
	mode = SVC_SINK;
	buffer_release(&got);
	n_data = n_eof = 0;
	n_close = n_shutdown = n_detach = n_writable = 0;
	atomic_store(&hold, false);
	atomic_store(&n_hold, 0);
	atomic_store(&n_wake, 0);
	atomic_store(&wake_lock_held, true);
	wake_fd = -1;
	memset(&stats, 0, sizeof(stats));
	memset(&lst, 0, sizeof(lst));
	strcpy(lst.cfg.name, "test");
	lst.service = &fake_ops;
	lst.stats = &stats;
	lst.ready_fd = -1;
	memset(&S, 0, sizeof(S));
	S.fd = -1;
	peer = -1;
	memset(&R, 0, sizeof(R));
	R.fd = -1;
	rpeer = -1;
	log_set_max_level(LOG_WARNING);
}

static void
teardown(void)
{
	session_done(&S);
	if (S.fd >= 0)
		close(S.fd);
	if (peer >= 0)
		close(peer);
	if (R.lst)
		session_done(&R);
	if (R.fd >= 0)
		close(R.fd);
	if (rpeer >= 0)
		close(rpeer);
	if (wake_fd >= 0)
		close(wake_fd);
	buffer_release(&got);
	alarm(0);
}

/* A session on one end of a socketpair; peer gets the other. */
static void
open_session(bool tiny_sndbuf, bool blocking)
{
	union sockaddr_any addr = { .in = { .sin_family = AF_INET, .sin_port = htons(4242) } };
	int sv[2], one = TINY_SNDBUF;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	if (!blocking)
		ck_assert_int_eq(fd_set_nonblock(sv[0], true), 0);
	ck_assert_int_eq(fd_set_nonblock(sv[1], true), 0);
	if (tiny_sndbuf)
		ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
	addr.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	session_init(&S, sv[0], &lst, &fake_driver, &(struct conn_origin){ .peer = addr },
		     now_usec());
	S.blocking = blocking;
	peer = sv[1];
}

static uint8_t
pattern(size_t off)
{
	/* 251 is prime: a block out of place shows. */
	return (uint8_t)(off % 251 + off / 251);
}

static uint8_t *
pattern_new(size_t off, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < n; i++)
		p[i] = pattern(off + i);
	return p;
}

/* Fill the session's socket from outside the session until it would
 * block, so that the session's next write-through takes nothing. Returns
 * the bytes written (the peer drains them before the session's own). */
static size_t
fill_socket(int fd)
{
	static const uint8_t junk[512];
	size_t total = 0;

	for (;;) {
		ssize_t n = write(fd, junk, sizeof(junk));

		if (n < 0) {
			ck_assert_int_eq(errno, EAGAIN);
			break;
		}
		total += (size_t)n;
	}
	ck_assert_uint_gt(total, 0);
	return total;
}

/* Read what the peer has now (no waiting) into rx; returns the count. */
static size_t
drain(struct buffer *rx)
{
	uint8_t buf[16384];
	size_t total = 0;

	for (;;) {
		ssize_t n = read(peer, buf, sizeof(buf));

		if (n < 0) {
			ck_assert_int_eq(errno, EAGAIN);
			break;
		}
		if (n == 0)
			break;
		ck_assert_int_eq(buffer_append(rx, buf, (size_t)n), 0);
		total += (size_t)n;
	}
	return total;
}

/* Drain and flush until the session has nothing left to send. Returns the
 * flushes that wrote some but not all (short writes seen). */
static unsigned
drain_and_flush(struct buffer *rx)
{
	unsigned partial = 0;
	int rounds;

	for (rounds = 0; rounds < MAX_ROUNDS; rounds++) {
		uint64_t before = S.bytes_out;
		int r;

		(void)drain(rx);
		r = session_flush(&S);
		ck_assert_msg(r == 0 || r == -EAGAIN, "session_flush: %s", strerror(-r));
		if (r == 0)
			break;
		if (S.bytes_out > before)
			partial++;
	}
	ck_assert_int_lt(rounds, MAX_ROUNDS);
	(void)drain(rx);
	return partial;
}

static void
assert_pattern(const struct buffer *rx, size_t skip, size_t n)
{
	const uint8_t *p = buffer_data(rx);

	ck_assert_uint_eq(buffer_len(rx), skip + n);
	for (size_t i = 0; i < n; i++)
		if (p[skip + i] != pattern(i))
			ck_abort_msg("byte %zu of %zu: got %u, want %u", i, n, p[skip + i],
				     pattern(i));
}

/* Short writes. */

/* The peer of R has exactly n bytes to read now, the pattern from off. */
static void
expect_at_rpeer(size_t off, size_t n)
{
	uint8_t buf[16384];
	ssize_t k = read(rpeer, buf, sizeof(buf));

	if (n == 0) {
		ck_assert_int_lt(k, 0);
		ck_assert_int_eq(errno, EAGAIN);
		return;
	}
	ck_assert_int_eq(k, (ssize_t)n);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(buf[i], pattern(off + i));
}

/* flush_later: a small relay during another session's step waits in R's
 * buffer for its driver's flush (one write for the pass), a large one goes
 * to the socket at once when nothing is queued before it, and order holds
 * either way. */
START_TEST(test_flush_later_queues_small_relays_only)
{
	union sockaddr_any addr = { .in = { .sin_family = AF_INET, .sin_port = htons(4343) } };
	uint8_t scratch[8192];
	_cleanup_(freep) uint8_t *data = pattern_new(0, 7000);
	int sv[2];
	unsigned w;

	open_session(false, false);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_int_eq(fd_set_nonblock(sv[0], true), 0);
	ck_assert_int_eq(fd_set_nonblock(sv[1], true), 0);
	session_init(&R, sv[0], &lst, &later_driver, &(struct conn_origin){ .peer = addr },
		     now_usec());
	rpeer = sv[1];
	mode = SVC_RELAY;

	w = wakes();
	ck_assert_int_eq(write(peer, data, 10), 10);
	(void)session_step(&S, SESSION_READ, scratch, sizeof(scratch), 1);
	ck_assert_uint_eq(session_unsent(&R), 10);
	ck_assert_uint_gt(wakes(), w);
	expect_at_rpeer(0, 0);
	/* Large, but behind the queued 10: appended. */
	ck_assert_int_eq(write(peer, data + 10, 3000), 3000);
	(void)session_step(&S, SESSION_READ, scratch, sizeof(scratch), 2);
	ck_assert_uint_eq(session_unsent(&R), 3010);
	ck_assert_int_eq(session_flush(&R), 0);
	expect_at_rpeer(0, 3010);
	/* Large with nothing queued: straight to the socket. */
	ck_assert_int_eq(write(peer, data + 3010, 3000), 3000);
	(void)session_step(&S, SESSION_READ, scratch, sizeof(scratch), 3);
	ck_assert_uint_eq(session_unsent(&R), 0);
	expect_at_rpeer(3010, 3000);
	/* Outside any step a small send goes out at once too. */
	session_send(&R, data + 6010, 10);
	ck_assert_uint_eq(session_unsent(&R), 0);
	expect_at_rpeer(6010, 10);
}
END_TEST

START_TEST(test_short_write_queues_rest_in_order)
{
	const size_t n1 = 40000, n2 = 20000;
	uint8_t *d = pattern_new(0, n1 + n2);
	struct buffer rx = { 0 };
	uint64_t took;

	open_session(true, false);
	session_send(&S, d, n1);
	took = S.bytes_out;
	ck_assert(!S.broken);
	ck_assert_msg(took > 0 && took < n1, "write-through took %" PRIu64 " of %zu", took, n1);
	ck_assert_uint_eq(buffer_len(&S.out), n1 - took);
	ck_assert_uint_eq(session_unsent(&S), n1 - took);
	ck_assert(session_wants_write(&S));
	ck_assert(!session_finished(&S));
	ck_assert_uint_eq(wakes(), 1);

	/* More output queues behind, never past, what waits. */
	session_send(&S, d + n1, n2);
	ck_assert_uint_eq(S.bytes_out, took);
	ck_assert_uint_eq(buffer_len(&S.out), n1 + n2 - took);

	/* Nobody reads: a flush takes nothing and says so. */
	ck_assert_int_eq(session_flush(&S), -EAGAIN);
	ck_assert_uint_eq(S.bytes_out, took);

	ck_assert_uint_gt(drain_and_flush(&rx), 1);
	assert_pattern(&rx, 0, n1 + n2);
	ck_assert_uint_eq(S.bytes_out, n1 + n2);
	ck_assert_uint_eq(atomic_load(&stats.bytes_out), n1 + n2);
	ck_assert_uint_eq(buffer_len(&S.out), 0);
	ck_assert_ptr_null(S.out.data); /* released once empty */
	ck_assert_uint_eq(session_unsent(&S), 0);
	ck_assert(!session_wants_write(&S));
	ck_assert(!session_finished(&S));
	buffer_release(&rx);
	free(d);
}
END_TEST

START_TEST(test_short_writev_across_iovecs)
{
	/* The socket takes ~4.4 KiB: the write-through ends inside the second
	 * iovec and the rest must be queued from exactly there. */
	const size_t len[3] = { 1000, 6000, 3000 }, total = 10000;
	uint8_t *d = pattern_new(0, total);
	struct iovec iov[3] = {
		{ d, len[0] },
		{ d + len[0], len[1] },
		{ d + len[0] + len[1], len[2] },
	};
	struct buffer rx = { 0 };

	open_session(true, false);
	session_sendv(&S, iov, 3);
	ck_assert(!S.broken);
	ck_assert_uint_gt(S.bytes_out, len[0]);
	ck_assert_uint_lt(S.bytes_out, len[0] + len[1]);
	ck_assert_uint_eq(buffer_len(&S.out), total - S.bytes_out);
	(void)drain_and_flush(&rx);
	assert_pattern(&rx, 0, total);
	buffer_release(&rx);
	free(d);
}
END_TEST

struct reader {
	int fd;
	size_t want;
	struct buffer rx;
	bool timed_out;
};

static void *
reader_thread(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[4096];

	while (buffer_len(&r->rx) < r->want) {
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, WAIT_MS) <= 0) {
			r->timed_out = true;
			break;
		}
		n = read(r->fd, buf, sizeof(buf));
		if (n <= 0 && !(n < 0 && errno == EAGAIN))
			break;
		if (n > 0 && buffer_append(&r->rx, buf, (size_t)n) < 0)
			break;
	}
	return NULL;
}

START_TEST(test_blocking_writev_completes)
{
	/* The fork and thread models' blocking sessions: a send returns once
	 * the socket took everything, and never queues (so never counts as
	 * a slow consumer) though it is larger than SESSION_OUT_MAX. A
	 * blocking AF_UNIX write() waits for all of it rather than return
	 * short, so this does not reach write_through()'s iovec advance
	 * (only a signal or SO_SNDTIMEO would). */
	const size_t len[3] = { 30000, 50000, 20000 }, total = 100000;
	uint8_t *d = pattern_new(0, total);
	struct iovec iov[3] = {
		{ d, len[0] },
		{ d + len[0], len[1] },
		{ d + len[0] + len[1], len[2] },
	};
	struct reader r = { .want = total };
	pthread_t t;

	open_session(true, true);
	r.fd = peer;
	ck_assert_int_eq(pthread_create(&t, NULL, reader_thread, &r), 0);
	session_sendv(&S, iov, 3);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert(!r.timed_out);
	ck_assert(!S.broken);
	ck_assert_uint_eq(S.bytes_out, total);
	ck_assert_uint_eq(buffer_len(&S.out), 0);
	ck_assert_uint_eq(wakes(), 0); /* nothing left pending */
	assert_pattern(&r.rx, 0, total);
	buffer_release(&r.rx);
	free(d);
}
END_TEST

/* The 64 KiB pause and resume after flush. */

START_TEST(test_pause_at_out_max_resume_after_flush)
{
	uint8_t *d = pattern_new(0, SESSION_OUT_MAX);
	struct buffer rx = { 0 };
	size_t pre;

	open_session(true, false);
	pre = fill_socket(S.fd);
	ck_assert(session_wants_read(&S));

	session_send(&S, d, SESSION_OUT_MAX - 1);
	ck_assert_uint_eq(S.bytes_out, 0);
	ck_assert_uint_eq(session_unsent(&S), SESSION_OUT_MAX - 1);
	ck_assert_uint_eq(session_send_space(&S), 1);
	ck_assert(session_wants_read(&S));

	/* Reaching the limit pauses input; it is not a slow consumer yet. */
	session_send(&S, d + SESSION_OUT_MAX - 1, 1);
	ck_assert(!S.broken);
	ck_assert_uint_eq(session_unsent(&S), SESSION_OUT_MAX);
	ck_assert_uint_eq(session_send_space(&S), 0);
	ck_assert(!session_wants_read(&S));
	ck_assert(!S.held);
	ck_assert(session_wants_write(&S));

	/* Still paused while the client reads nothing. */
	ck_assert_int_eq(session_flush(&S), -EAGAIN);
	ck_assert(!session_wants_read(&S));

	/* One flush that writes anything resumes reading. */
	ck_assert_uint_eq(drain(&rx), pre);
	ck_assert_int_eq(session_flush(&S), -EAGAIN);
	ck_assert_uint_gt(S.bytes_out, 0);
	ck_assert_uint_lt(session_unsent(&S), SESSION_OUT_MAX);
	ck_assert(session_wants_read(&S));

	(void)drain_and_flush(&rx);
	assert_pattern(&rx, pre, SESSION_OUT_MAX);
	ck_assert(session_wants_read(&S));
	ck_assert_uint_eq(session_send_space(&S), SESSION_OUT_MAX);
	buffer_release(&rx);
	free(d);
}
END_TEST

START_TEST(test_echo_keeps_input_and_resumes_after_flush)
{
	/* An echo service fed more than SESSION_OUT_MAX: it takes what fits,
	 * the rest waits in s->in, and the flush that empties the queue
	 * re-offers it. */
	const size_t total = 100000;
	uint8_t *d = pattern_new(0, total);
	struct buffer rx = { 0 };
	unsigned rounds = 0;

	mode = SVC_ECHO;
	open_session(true, false);
	session_feed(&S, d, total);
	ck_assert(!S.broken);
	ck_assert_uint_gt(buffer_len(&S.in), 0);
	ck_assert_uint_le(session_unsent(&S), SESSION_OUT_MAX);
	ck_assert(!session_wants_read(&S));
	ck_assert(!session_finished(&S));

	while (buffer_len(&S.in) > 0 || buffer_len(&S.out) > 0) {
		int r;

		ck_assert_uint_lt(rounds++, MAX_ROUNDS);
		(void)drain(&rx);
		r = session_flush(&S);
		ck_assert_msg(r == 0 || r == -EAGAIN, "session_flush: %s", strerror(-r));
		ck_assert(!S.broken);
		ck_assert_uint_le(session_unsent(&S), SESSION_OUT_MAX);
	}
	(void)drain(&rx);
	assert_pattern(&rx, 0, total);
	/* Kept input is offered again once the queue is empty, not after
	 * every short flush: the first offer took 64 KiB, the second the
	 * rest. */
	ck_assert_uint_eq(n_data, 2);
	ck_assert_ptr_null(S.in.data);
	ck_assert(session_wants_read(&S));
	buffer_release(&rx);
	free(d);
}
END_TEST

/* Slow consumer. */

START_TEST(test_slow_consumer_closes)
{
	uint8_t *d = pattern_new(0, SESSION_OUT_MAX);
	unsigned w;

	open_session(true, false);
	(void)fill_socket(S.fd);
	session_send(&S, d, SESSION_OUT_MAX);
	ck_assert(!S.broken);
	w = wakes();

	/* One byte past the limit. */
	session_send(&S, "x", 1);
	ck_assert(S.broken);
	ck_assert_str_eq(S.close_reason, "slow consumer");
	ck_assert_uint_eq(wakes(), w + 1); /* the owner learns */
	ck_assert_uint_eq(buffer_len(&S.out), 0);       /* dropped */
	ck_assert_uint_eq(session_unsent(&S), 0);
	ck_assert(!session_wants_write(&S));
	ck_assert(!session_wants_read(&S));
	ck_assert(session_finished(&S));
	ck_assert_int_eq(session_flush(&S), -EPIPE);

	/* Later sends are ignored; the reason stays. */
	session_send(&S, "y", 1);
	ck_assert_uint_eq(buffer_len(&S.out), 0);
	ck_assert_str_eq(S.close_reason, "slow consumer");
	free(d);
}
END_TEST

START_TEST(test_slow_consumer_one_big_send)
{
	uint8_t *d = pattern_new(0, SESSION_OUT_MAX + 1);

	open_session(true, false);
	(void)fill_socket(S.fd);
	session_send(&S, d, SESSION_OUT_MAX + 1);
	ck_assert(S.broken);
	ck_assert_str_eq(S.close_reason, "slow consumer");
	ck_assert_ptr_null(S.out.data);
	ck_assert(session_finished(&S));
	free(d);
}
END_TEST

START_TEST(test_slow_consumer_keeps_earlier_reason)
{
	uint8_t *d = pattern_new(0, SESSION_OUT_MAX + 1);

	open_session(true, false);
	(void)fill_socket(S.fd);
	session_close(&S, "quit");
	session_send(&S, d, SESSION_OUT_MAX + 1);
	ck_assert(S.broken);
	ck_assert_str_eq(S.close_reason, "quit");
	free(d);
}
END_TEST

/* An external delivered counter (the fork model's pump). */

START_TEST(test_delivered_counter_defines_unsent)
{
	/* The fork model's hub: its socket is a socketpair to the pump, and
	 * the pump counts what the client's socket took. The hub's socket
	 * taking bytes does not make them sent. */
	_Atomic uint64_t delivered = 0;
	uint8_t *d = pattern_new(0, SESSION_OUT_MAX);
	struct buffer rx = { 0 };
	uint64_t on_socket;

	open_session(true, false); /* small, as the fork hub makes it */
	S.delivered = &delivered;

	session_send(&S, d, 1000);
	ck_assert_uint_eq(S.bytes_out, 1000); /* on the socket... */
	ck_assert_uint_eq(buffer_len(&S.out), 0);
	ck_assert_uint_eq(session_delivered(&S), 0); /* ...not at the client */
	ck_assert_uint_eq(session_unsent(&S), 1000);
	ck_assert_uint_eq(session_send_space(&S), SESSION_OUT_MAX - 1000);

	/* Up to the limit: the socket takes some, the rest queues. */
	session_send(&S, d + 1000, SESSION_OUT_MAX - 1000);
	ck_assert(!S.broken);
	ck_assert_uint_gt(S.bytes_out, 1000);
	ck_assert_uint_gt(buffer_len(&S.out), 0);
	ck_assert_uint_eq(session_unsent(&S), SESSION_OUT_MAX);
	ck_assert_uint_eq(session_send_space(&S), 0);
	ck_assert(!session_wants_read(&S));

	/* The pump reads the socketpair, the hub flushes more into it: the
	 * bytes moved, the client has none of them, reading stays paused. */
	on_socket = S.bytes_out;
	(void)drain(&rx);
	ck_assert_int_eq(session_flush(&S), -EAGAIN);
	ck_assert_uint_gt(S.bytes_out, on_socket);
	ck_assert_uint_eq(session_unsent(&S), SESSION_OUT_MAX);
	ck_assert(!session_wants_read(&S));

	/* The pump delivers: reading resumes without any flush. */
	atomic_store(&delivered, 1000);
	ck_assert_uint_eq(session_delivered(&S), 1000);
	ck_assert_uint_eq(session_unsent(&S), SESSION_OUT_MAX - 1000);
	ck_assert_uint_eq(session_send_space(&S), 1000);
	ck_assert(session_wants_read(&S));

	/* And the limit counts the pump's backlog. */
	session_send(&S, d, 1000);
	ck_assert(!S.broken);
	ck_assert_uint_eq(session_unsent(&S), SESSION_OUT_MAX);
	session_send(&S, "x", 1);
	ck_assert(S.broken);
	ck_assert_str_eq(S.close_reason, "slow consumer");
	buffer_release(&rx);
	free(d);
}
END_TEST

START_TEST(test_delivered_ahead_is_zero_unsent)
{
	_Atomic uint64_t delivered = 0;

	open_session(false, false);
	S.delivered = &delivered;
	session_send(&S, "hello", 5);
	ck_assert_uint_eq(session_unsent(&S), 5);
	/* A counter that runs ahead (it counts what the pump wrote, the
	 * session what it queued) never makes unsent wrap. */
	atomic_store(&delivered, 9);
	ck_assert_uint_eq(session_unsent(&S), 0);
	ck_assert_uint_eq(session_send_space(&S), SESSION_OUT_MAX);
	ck_assert(session_wants_read(&S));
}
END_TEST

/* hold_input. */

START_TEST(test_hold_input)
{
	open_session(false, false);
	ck_assert(session_wants_read(&S));
	ck_assert(!S.held);
	ck_assert_uint_eq(holds(), 1);

	atomic_store(&hold, true);
	ck_assert(!session_wants_read(&S));
	ck_assert(S.held);
	/* Held is not "wants write": the driver only rechecks. */
	ck_assert(!session_wants_write(&S));
	ck_assert(!session_finished(&S));

	atomic_store(&hold, false);
	ck_assert(session_wants_read(&S));
	ck_assert(!S.held);
	ck_assert_uint_eq(holds(), 3);
}
END_TEST

START_TEST(test_hold_input_only_asked_when_reading)
{
	/* A session that would not read anyway is not "held": a driver
	 * would otherwise recheck it every SESSION_HOLD_RECHECK_USEC. */
	open_session(true, false);
	atomic_store(&hold, true);
	(void)fill_socket(S.fd);
	{
		uint8_t *d = pattern_new(0, SESSION_OUT_MAX);

		session_send(&S, d, SESSION_OUT_MAX);
		free(d);
	}
	ck_assert(!session_wants_read(&S));
	ck_assert(!S.held);

	session_close(&S, "quit");
	ck_assert(!session_wants_read(&S));
	ck_assert(!S.held);
	ck_assert_uint_eq(holds(), 0);
}
END_TEST

/* A wake from another thread. */

static pthread_mutex_t session_lock = PTHREAD_MUTEX_INITIALIZER;

enum relay_action { RELAY_SEND, RELAY_CLOSE, RELAY_ABORT, RELAY_SEND_CLOSE };

struct relay {
	enum relay_action action;
	const char *msg;
};

static void *
relay_thread(void *arg)
{
	struct relay *r = arg;

	switch (r->action) {
	case RELAY_SEND:
		session_send(&S, r->msg, strlen(r->msg));
		break;
	case RELAY_CLOSE:
		session_close(&S, "kicked");
		break;
	case RELAY_ABORT:
		session_abort(&S, "kicked");
		break;
	case RELAY_SEND_CLOSE:
		session_send(&S, r->msg, strlen(r->msg));
		session_close(&S, "kicked");
		break;
	}
	return NULL;
}

/* A shared session (chat relays) woken through an eventfd, as in the
 * thread model. */
static void
open_shared_session(void)
{
	open_session(true, false);
	S.lock = &session_lock;
	wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(wake_fd, 0);
}

/* Run the relay in its own thread while this one, the owner, waits for
 * the wake as a driver would. */
static void
relay_and_wait(enum relay_action action, const char *msg)
{
	struct relay r = { action, msg };
	struct pollfd p = { .fd = wake_fd, .events = POLLIN };
	uint64_t v;
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, relay_thread, &r), 0);
	ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
	ck_assert_int_eq(read(wake_fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_uint_ge(wakes(), 1);
	ck_assert_msg(pthread_equal(wake_thread, t), "want_write() not from the relay thread");
	ck_assert_msg(atomic_load(&wake_lock_held), "want_write() without the session lock");
}

START_TEST(test_wake_send_from_other_thread)
{
	static const char msg[] = "* alice: hello\r\n";
	struct buffer rx = { 0 };
	size_t pre;

	open_shared_session();
	pre = fill_socket(S.fd);
	relay_and_wait(RELAY_SEND, msg);
	ck_assert(session_wants_write(&S));
	ck_assert(!session_finished(&S));
	(void)drain_and_flush(&rx);
	ck_assert_uint_eq(buffer_len(&rx), pre + strlen(msg));
	ck_assert(!memcmp(buffer_data(&rx) + pre, msg, strlen(msg)));
	buffer_release(&rx);
}
END_TEST

START_TEST(test_wake_close_from_other_thread)
{
	/* Nothing to send: only want_write() tells the owner. */
	open_shared_session();
	relay_and_wait(RELAY_CLOSE, NULL);
	ck_assert(session_finished(&S));
	ck_assert(!session_wants_read(&S));
	ck_assert_str_eq(S.close_reason, "kicked");
}
END_TEST

START_TEST(test_wake_send_then_close_from_other_thread)
{
	/* A close after a queued line flushes the line first. */
	static const char msg[] = "! bye\r\n";
	struct buffer rx = { 0 };
	size_t pre;

	open_shared_session();
	pre = fill_socket(S.fd);
	relay_and_wait(RELAY_SEND_CLOSE, msg);
	ck_assert(!session_finished(&S));
	ck_assert(!session_wants_read(&S));
	(void)drain_and_flush(&rx);
	ck_assert(session_finished(&S));
	ck_assert_uint_eq(buffer_len(&rx), pre + strlen(msg));
	ck_assert(!memcmp(buffer_data(&rx) + pre, msg, strlen(msg)));
	ck_assert_str_eq(S.close_reason, "kicked");
	buffer_release(&rx);
}
END_TEST

START_TEST(test_wake_abort_from_other_thread)
{
	uint8_t *d = pattern_new(0, 1000);

	open_shared_session();
	(void)fill_socket(S.fd);
	session_send(&S, d, 1000);
	ck_assert_uint_eq(buffer_len(&S.out), 1000);
	relay_and_wait(RELAY_ABORT, NULL);
	ck_assert(session_finished(&S));
	ck_assert_uint_eq(buffer_len(&S.out), 0);
	ck_assert_str_eq(S.close_reason, "kicked");
	free(d);
}
END_TEST

/* Reading: data, EAGAIN, EOF, reset, and writing to a closed peer. */

START_TEST(test_read_eagain)
{
	uint8_t buf[64];

	open_session(false, false);
	ck_assert_int_eq(session_read(&S, buf, sizeof(buf)), -EAGAIN);
	ck_assert(!S.broken);
	ck_assert(!S.read_eof);
	ck_assert_ptr_null(S.close_reason);
	ck_assert_uint_eq(n_data, 0);
	ck_assert(session_wants_read(&S));
	ck_assert(!session_finished(&S));
}
END_TEST

START_TEST(test_read_data_then_eof)
{
	uint8_t buf[64];

	open_session(false, false);
	ck_assert_int_eq(write(peer, "abc", 3), 3);
	ck_assert_int_eq(shutdown(peer, SHUT_WR), 0);
	ck_assert_int_eq(session_read(&S, buf, sizeof(buf)), 3);
	ck_assert_uint_eq(buffer_len(&got), 3);
	ck_assert(!memcmp(buffer_data(&got), "abc", 3));
	ck_assert_uint_eq(S.bytes_in, 3);
	ck_assert_uint_eq(atomic_load(&stats.bytes_in), 3);
	ck_assert(!S.read_eof);

	ck_assert_int_eq(session_read(&S, buf, sizeof(buf)), 0);
	ck_assert(S.read_eof);
	ck_assert_str_eq(S.close_reason, "eof");
	ck_assert_uint_eq(n_eof, 1);
	ck_assert(!session_wants_read(&S));
	ck_assert(session_finished(&S));
}
END_TEST

START_TEST(test_eof_flushes_pending_output)
{
	/* Half-close: the peer stopped sending, not reading; what is queued
	 * still goes out before the session is finished. */
	uint8_t buf[64];
	struct buffer rx = { 0 };
	size_t pre;

	mode = SVC_ECHO;
	open_session(true, false);
	pre = fill_socket(S.fd);
	ck_assert_int_eq(write(peer, "abc", 3), 3);
	ck_assert_int_eq(shutdown(peer, SHUT_WR), 0);
	ck_assert_int_eq(session_read(&S, buf, sizeof(buf)), 3);
	ck_assert_uint_eq(buffer_len(&S.out), 3);
	ck_assert_int_eq(session_read(&S, buf, sizeof(buf)), 0);
	ck_assert(S.read_eof);
	ck_assert(!session_finished(&S));
	ck_assert(session_wants_write(&S));
	(void)drain_and_flush(&rx);
	ck_assert(session_finished(&S));
	ck_assert_uint_eq(buffer_len(&rx), pre + 3);
	ck_assert(!memcmp(buffer_data(&rx) + pre, "abc", 3));
	buffer_release(&rx);
}
END_TEST

START_TEST(test_read_reset)
{
	uint8_t buf[64];

	open_session(false, false);
	/* Closing with unread input resets the connection (as TCP does). */
	ck_assert_int_eq(write(S.fd, "unread", 6), 6);
	ck_assert_int_eq(close(peer), 0);
	peer = -1;
	ck_assert_int_eq(session_read(&S, buf, sizeof(buf)), -ECONNRESET);
	ck_assert(S.broken);
	ck_assert_str_eq(S.close_reason, "reset");
	ck_assert(session_finished(&S));
	ck_assert(!session_wants_read(&S));
	ck_assert_uint_eq(n_data, 0);
	ck_assert_uint_eq(n_eof, 0);
}
END_TEST

START_TEST(test_flush_to_closed_peer)
{
	int r;

	open_session(true, false);
	(void)fill_socket(S.fd);
	session_send(&S, "queued", 6);
	ck_assert_uint_eq(buffer_len(&S.out), 6);
	ck_assert_int_eq(close(peer), 0);
	peer = -1;
	r = session_flush(&S);
	/* EPIPE, or ECONNRESET when the peer left our bytes unread. */
	ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "session_flush: %d", r);
	ck_assert(S.broken);
	ck_assert_str_eq(S.close_reason, "reset");
	ck_assert_ptr_null(S.out.data);
	ck_assert(session_finished(&S));
}
END_TEST

START_TEST(test_send_to_closed_peer)
{
	open_session(false, false);
	ck_assert_int_eq(close(peer), 0);
	peer = -1;
	session_send(&S, "hello", 5);
	ck_assert(S.broken);
	ck_assert_str_eq(S.close_reason, "reset");
	ck_assert_uint_eq(S.bytes_out, 0);
	ck_assert(session_finished(&S));
}
END_TEST

/* Close, abort, kept input. */

START_TEST(test_close_flushes_then_finishes)
{
	struct buffer rx = { 0 };
	size_t pre;

	open_session(true, false);
	pre = fill_socket(S.fd);
	session_send(&S, "last words", 10);
	session_close(&S, "quit");
	ck_assert(!session_finished(&S));
	ck_assert(!session_wants_read(&S));
	ck_assert(session_wants_write(&S));
	/* Input after the close is not handed to the service. */
	session_feed(&S, (const uint8_t *)"more", 4);
	ck_assert_uint_eq(n_data, 0);
	(void)drain_and_flush(&rx);
	ck_assert(session_finished(&S));
	ck_assert_uint_eq(buffer_len(&rx), pre + 10);
	ck_assert_str_eq(S.close_reason, "quit");
	buffer_release(&rx);
}
END_TEST

START_TEST(test_abort_drops_output)
{
	open_session(true, false);
	(void)fill_socket(S.fd);
	session_send(&S, "dropped", 7);
	session_abort(&S, "idle timeout");
	ck_assert(session_finished(&S));
	ck_assert(!session_wants_write(&S));
	ck_assert_ptr_null(S.out.data);
	ck_assert_str_eq(S.close_reason, "idle timeout");
}
END_TEST

START_TEST(test_kept_input_keeps_order)
{
	mode = SVC_KEEP;
	open_session(false, false);
	session_feed(&S, (const uint8_t *)"ab", 2);
	ck_assert_uint_eq(n_data, 1);
	ck_assert_uint_eq(buffer_len(&S.in), 2);
	ck_assert(!session_wants_read(&S));
	/* New input queues behind the kept input, unseen by the service. */
	session_feed(&S, (const uint8_t *)"cd", 2);
	ck_assert_uint_eq(n_data, 1);
	ck_assert_uint_eq(buffer_len(&S.in), 4);

	mode = SVC_SINK;
	session_resume(&S);
	ck_assert_uint_eq(n_data, 2);
	ck_assert_uint_eq(buffer_len(&got), 4);
	ck_assert(!memcmp(buffer_data(&got), "abcd", 4));
	ck_assert_ptr_null(S.in.data);
	ck_assert(session_wants_read(&S));
}
END_TEST

/* Open and close bookkeeping. */

START_TEST(test_log_open_close_counts)
{
	open_session(false, false);
	log_set_max_level(LOG_INFO); /* format the close line too */
	ck_assert_str_eq(session_peer_str(&S), "127.0.0.1:4242");
	ck_assert_str_eq(session_host_str(&S), "127.0.0.1");
	session_log_open(&S);
	ck_assert_uint_eq(atomic_load(&stats.conns_now), 1);
	ck_assert_uint_eq(atomic_load(&stats.conns_total), 1);
	/* A stop turns an "eof" into "server stopping". */
	S.close_reason = "eof";
	atomic_store(&S.stop_requested, SESSION_STOP_DRAIN);
	session_log_close(&S);
	ck_assert_str_eq(S.close_reason, "server stopping");
	ck_assert_uint_eq(atomic_load(&stats.conns_now), 0);
	ck_assert_uint_eq(atomic_load(&stats.conns_total), 1);
}
END_TEST

START_TEST(test_log_counted_elsewhere)
{
	open_session(false, false);
	S.counted_elsewhere = true;
	session_log_open(&S);
	session_close(&S, "quit");
	session_log_close(&S);
	ck_assert_uint_eq(atomic_load(&stats.conns_now), 0);
	ck_assert_uint_eq(atomic_load(&stats.conns_total), 0);
	ck_assert_str_eq(S.close_reason, "quit");
}
END_TEST

/* ---- the driver's whole cycle: start, step, next, end ---- */

START_TEST(test_step_cycle)
{
	uint8_t scratch[64];
	unsigned ev;

	open_session(false, false);
	atomic_store(&lst.clients, 1); /* as admission_admit() left it */
	ev = session_start(&S);
	ck_assert_uint_eq(ev, SESSION_READ);
	ck_assert_uint_eq(atomic_load(&stats.conns_now), 1);
	/* Nothing ready yet: a read attempt is EAGAIN and changes nothing. */
	ck_assert_uint_eq(session_step(&S, SESSION_READ, scratch, sizeof(scratch), 1), SESSION_READ);
	ck_assert_int_eq(write(peer, "abc", 3), 3);
	ev = session_step(&S, SESSION_READ, scratch, sizeof(scratch), 4242);
	ck_assert_uint_eq(ev, SESSION_READ);
	ck_assert_uint_eq(buffer_len(&got), 3);
	ck_assert_uint_eq(S.last_active, 4242);
	ck_assert_int_eq(shutdown(peer, SHUT_WR), 0);
	ev = session_step(&S, SESSION_READ, scratch, sizeof(scratch), 5000);
	ck_assert_uint_eq(ev, SESSION_DONE);
	session_end(&S);
	ck_assert_uint_eq(n_close, 1);
	ck_assert_uint_eq(n_detach, 1);
	ck_assert_int_lt(S.fd, 0);
	ck_assert_uint_eq(atomic_load(&lst.clients), 0);
	ck_assert_uint_eq(atomic_load(&stats.conns_now), 0);
	ck_assert_str_eq(S.close_reason, "eof");
}
END_TEST

/* Kept input, nothing to send, not reading: it can never progress. */
START_TEST(test_step_stalled)
{
	uint8_t scratch[64];

	open_session(false, false);
	mode = SVC_KEEP;
	ck_assert_uint_eq(session_start(&S), SESSION_READ);
	ck_assert_int_eq(write(peer, "abc", 3), 3);
	ck_assert_uint_eq(session_step(&S, SESSION_READ, scratch, sizeof(scratch), 1), SESSION_DONE);
	ck_assert_str_eq(S.close_reason, "stalled");
	/* Offered again before giving up. */
	ck_assert_uint_eq(n_data, 2);
}
END_TEST

START_TEST(test_step_held_then_free)
{
	open_session(false, false);
	atomic_store(&hold, true);
	ck_assert_uint_eq(session_start(&S), SESSION_HELD);
	atomic_store(&hold, false);
	ck_assert_uint_eq(session_next(&S), SESSION_READ);
}
END_TEST

/* A drain: the service's last words once, flushed, then done. */
START_TEST(test_step_stop_drain)
{
	uint8_t scratch[64];
	char buf[16];
	unsigned ev, w;

	open_session(false, false);
	ck_assert_uint_eq(session_start(&S), SESSION_READ);
	w = wakes();
	session_request_stop(&S, SESSION_STOP_DRAIN);
	ck_assert_uint_gt(wakes(), w);
	ev = session_next(&S);
	ck_assert_uint_eq(n_shutdown, 1);
	/* "bye" went straight through: nothing left, done. */
	ck_assert_uint_eq(ev, SESSION_DONE);
	ck_assert_int_eq(read(peer, buf, sizeof(buf)), 4);
	ck_assert_uint_eq(session_next(&S), SESSION_DONE);
	ck_assert_uint_eq(n_shutdown, 1);
	session_log_close(&S);
	ck_assert_str_eq(S.close_reason, "server stopping");
	(void)scratch;
}
END_TEST

/* A drain that cannot flush waits for WRITE; the deadline's stop drops
 * the rest. */
START_TEST(test_step_stop_now)
{
	uint8_t scratch[64];
	unsigned ev;

	open_session(true, false);
	ck_assert_uint_eq(session_start(&S), SESSION_READ);
	(void)fill_socket(S.fd);
	session_request_stop(&S, SESSION_STOP_DRAIN);
	ev = session_next(&S);
	ck_assert_uint_eq(ev, SESSION_WRITE);
	ck_assert_uint_eq(session_step(&S, SESSION_WRITE, scratch, sizeof(scratch), 1), SESSION_WRITE);
	session_request_stop(&S, SESSION_STOP_NOW);
	ck_assert_uint_eq(session_next(&S), SESSION_DONE);
	/* The drain's reason came first. */
	ck_assert_str_eq(S.close_reason, "server stopping");
	ck_assert(S.broken);
}
END_TEST

START_TEST(test_idle_deadline_and_expire)
{
	open_session(false, false);
	S.last_active = 10 * USEC_PER_SEC;
	ck_assert_uint_eq(session_idle_deadline(&S), 0);
	ck_assert(!session_expire(&S, UINT64_MAX / 2));
	lst.cfg.idle_timeout = 2;
	ck_assert_uint_eq(session_idle_deadline(&S), 12 * USEC_PER_SEC);
	ck_assert(!session_expire(&S, 12 * USEC_PER_SEC - 1));
	ck_assert(!S.broken);
	ck_assert(session_expire(&S, 12 * USEC_PER_SEC));
	ck_assert_str_eq(S.close_reason, "idle timeout");
	ck_assert_uint_eq(session_next(&S), SESSION_DONE);
}
END_TEST

/* On a blocking socket a receive timeout (SO_RCVTIMEO = idle_timeout in
 * the fork and thread models) is the idle timeout. */
START_TEST(test_step_blocking_timeout_is_idle)
{
	struct timeval tv = { .tv_usec = 20000 };
	uint8_t scratch[64];

	open_session(false, true);
	ck_assert_int_eq(setsockopt(S.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	ck_assert_uint_eq(session_start(&S), SESSION_READ);
	ck_assert_uint_eq(session_step(&S, SESSION_READ, scratch, sizeof(scratch), 0), SESSION_DONE);
	ck_assert_str_eq(S.close_reason, "idle timeout");
}
END_TEST

/* A streaming service: always wants WRITE, refills when output ran dry,
 * output taken is activity, and a half-close does not end it. */
START_TEST(test_step_streaming_service)
{
	uint8_t scratch[64], buf[4096];
	unsigned ev;

	lst.service = &stream_ops;
	open_session(false, false);
	ev = session_start(&S);
	ck_assert_uint_eq(ev, SESSION_READ | SESSION_WRITE);
	ev = session_step(&S, SESSION_WRITE, scratch, sizeof(scratch), 77);
	ck_assert_uint_eq(n_writable, 1);
	ck_assert_uint_eq(S.last_active, 77);
	ck_assert_uint_eq(ev, SESSION_READ | SESSION_WRITE);
	ck_assert_int_eq(read(peer, buf, sizeof(buf)), 1000);
	ck_assert_int_eq(shutdown(peer, SHUT_WR), 0);
	ev = session_step(&S, SESSION_READ | SESSION_WRITE, scratch, sizeof(scratch), 78);
	ck_assert_uint_eq(ev, SESSION_WRITE);
	ck_assert_uint_eq(n_writable, 2);
	ck_assert(S.read_eof);
	/* Gone for good: the next write breaks it. */
	close(peer);
	peer = -1;
	ev = session_step(&S, SESSION_WRITE, scratch, sizeof(scratch), 79);
	ck_assert_uint_eq(ev, SESSION_DONE);
}
END_TEST

static Suite *
session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc;

	tc = tcase_create("write");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TEST_ALARM_SEC);
	tcase_add_test(tc, test_short_write_queues_rest_in_order);
	tcase_add_test(tc, test_flush_later_queues_small_relays_only);
	tcase_add_test(tc, test_short_writev_across_iovecs);
	tcase_add_test(tc, test_blocking_writev_completes);
	tcase_add_test(tc, test_pause_at_out_max_resume_after_flush);
	tcase_add_test(tc, test_echo_keeps_input_and_resumes_after_flush);
	tcase_add_test(tc, test_slow_consumer_closes);
	tcase_add_test(tc, test_slow_consumer_one_big_send);
	tcase_add_test(tc, test_slow_consumer_keeps_earlier_reason);
	tcase_add_test(tc, test_delivered_counter_defines_unsent);
	tcase_add_test(tc, test_delivered_ahead_is_zero_unsent);
	suite_add_tcase(s, tc);

	tc = tcase_create("control");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TEST_ALARM_SEC);
	tcase_add_test(tc, test_hold_input);
	tcase_add_test(tc, test_hold_input_only_asked_when_reading);
	tcase_add_test(tc, test_wake_send_from_other_thread);
	tcase_add_test(tc, test_wake_close_from_other_thread);
	tcase_add_test(tc, test_wake_send_then_close_from_other_thread);
	tcase_add_test(tc, test_wake_abort_from_other_thread);
	tcase_add_test(tc, test_close_flushes_then_finishes);
	tcase_add_test(tc, test_abort_drops_output);
	tcase_add_test(tc, test_kept_input_keeps_order);
	tcase_add_test(tc, test_log_open_close_counts);
	tcase_add_test(tc, test_log_counted_elsewhere);
	suite_add_tcase(s, tc);

	tc = tcase_create("read");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TEST_ALARM_SEC);
	tcase_add_test(tc, test_read_eagain);
	tcase_add_test(tc, test_read_data_then_eof);
	tcase_add_test(tc, test_eof_flushes_pending_output);
	tcase_add_test(tc, test_read_reset);
	tcase_add_test(tc, test_flush_to_closed_peer);
	tcase_add_test(tc, test_send_to_closed_peer);
	suite_add_tcase(s, tc);

	tc = tcase_create("step");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_step_cycle);
	tcase_add_test(tc, test_step_stalled);
	tcase_add_test(tc, test_step_held_then_free);
	tcase_add_test(tc, test_step_stop_drain);
	tcase_add_test(tc, test_step_stop_now);
	tcase_add_test(tc, test_idle_deadline_and_expire);
	tcase_add_test(tc, test_step_blocking_timeout_is_idle);
	tcase_add_test(tc, test_step_streaming_service);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(session_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
