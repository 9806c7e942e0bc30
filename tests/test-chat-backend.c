/* src/chat-backend.c against a real redis-server (tests/harness.h): two or
 * three backends of one test process in one room, as separate netechod
 * instances would be. Events reach the others once and in order, never
 * their sender; names are claimed once in the room; the server killed,
 * absent at start, stopped (SIGSTOP); an instance that dies without a bye
 * (a forked child, killed -9) is reported lost; garbage on the room
 * channel is dropped. Every wait is on the backends' callbacks, with a
 * deadline. Without redis-server the binary exits 77 (skip). */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <hiredis/hiredis.h>

#include "backend-url.h"
#include "chat-backend.h"
#include "chat-wire.h"
#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 60
#define WAIT_MS 5000
#define ROOM "lobby"
#define MAX_EVENTS 4096

static struct hredis srv;
static struct backend_url url;

/* ---- what one backend reported ---- */

struct rec_event {
	enum chat_wire_type type;
	char instance[CHAT_WIRE_INSTANCE_LEN + 1];
	uint64_t seq;
	char a[40], b[80], text[64];
};

struct rec {
	pthread_mutex_t m;
	pthread_cond_t c;
	int ups, ups_reconnected, downs;
	char down_reason[128];
	int n_claims, claim_result[8];
	uint64_t claim_token[8];
	struct rec_event ev[MAX_EVENTS];
	size_t n_ev;
	int n_lost;
	char lost[8][64];
	/* flush(): how often, and how many events had come by the last one. */
	size_t n_flush, ev_at_flush;
	struct chat_backend *b;
};

static void
rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->m, NULL);
	pthread_cond_init(&r->c, NULL);
}

static void
on_up(void *ud, bool reconnected)
{
	struct rec *r = ud;

	pthread_mutex_lock(&r->m);
	r->ups++;
	r->ups_reconnected += reconnected;
	pthread_cond_broadcast(&r->c);
	pthread_mutex_unlock(&r->m);
}

static void
on_down(void *ud, int error, const char *reason)
{
	struct rec *r = ud;

	ck_assert_int_lt(error, 0);
	ck_assert_ptr_nonnull(reason);
	pthread_mutex_lock(&r->m);
	r->downs++;
	snprintf(r->down_reason, sizeof(r->down_reason), "%s", reason);
	pthread_cond_broadcast(&r->c);
	pthread_mutex_unlock(&r->m);
}

static void
on_event(void *ud, const struct chat_wire_event *ev)
{
	struct rec *r = ud;

	pthread_mutex_lock(&r->m);
	if (r->n_ev < MAX_EVENTS) {
		struct rec_event *e = &r->ev[r->n_ev++];

		e->type = ev->type;
		e->seq = ev->seq;
		snprintf(e->instance, sizeof(e->instance), "%s", ev->instance);
		snprintf(e->a, sizeof(e->a), "%.*s", (int)ev->a_len, ev->a ? ev->a : "");
		snprintf(e->b, sizeof(e->b), "%.*s", (int)ev->b_len, ev->b ? ev->b : "");
		snprintf(e->text, sizeof(e->text), "%.*s", (int)MIN(ev->text_len, 63),
			 ev->text ? ev->text : "");
	}
	pthread_cond_broadcast(&r->c);
	pthread_mutex_unlock(&r->m);
}

static void
on_claim_done(void *ud, uint64_t token, int result)
{
	struct rec *r = ud;

	pthread_mutex_lock(&r->m);
	if (r->n_claims < 8) {
		r->claim_token[r->n_claims] = token;
		r->claim_result[r->n_claims] = result;
	}
	r->n_claims++;
	pthread_cond_broadcast(&r->c);
	pthread_mutex_unlock(&r->m);
}

static void
on_lost(void *ud, const char *instance, const char *name)
{
	struct rec *r = ud;

	pthread_mutex_lock(&r->m);
	if (r->n_lost < 8)
		snprintf(r->lost[r->n_lost], sizeof(r->lost[0]), "%s %s", instance, name);
	r->n_lost++;
	pthread_cond_broadcast(&r->c);
	pthread_mutex_unlock(&r->m);
}

static void
on_flush(void *ud)
{
	struct rec *r = ud;

	pthread_mutex_lock(&r->m);
	r->n_flush++;
	r->ev_at_flush = r->n_ev;
	pthread_cond_broadcast(&r->c);
	pthread_mutex_unlock(&r->m);
}

static const struct chat_backend_ops ops = {
	.up = on_up,
	.down = on_down,
	.event = on_event,
	.claim_done = on_claim_done,
	.lost = on_lost,
	.flush = on_flush,
};

/* Wait until cond (read under r->m) holds, at most ms: false on timeout. */
#define WAIT(r, cond, ms)                                                              \
	__extension__({                                                                 \
		struct timespec ts_;                                                    \
		bool ok_ = true;                                                        \
		clock_gettime(CLOCK_REALTIME, &ts_);                                    \
		ts_.tv_sec += (ms) / 1000;                                              \
		ts_.tv_nsec += ((ms) % 1000) * 1000000L;                                \
		if (ts_.tv_nsec >= 1000000000L) {                                       \
			ts_.tv_sec++;                                                   \
			ts_.tv_nsec -= 1000000000L;                                     \
		}                                                                       \
		pthread_mutex_lock(&(r)->m);                                            \
		while (!(cond) && ok_)                                                  \
			ok_ = pthread_cond_timedwait(&(r)->c, &(r)->m, &ts_) == 0 || (cond); \
		pthread_mutex_unlock(&(r)->m);                                          \
		ok_;                                                                    \
	})

#define ASSERT_WAIT(r, cond, ms, what) ck_assert_msg(WAIT(r, cond, ms), "no %s within %d ms", what, (int)(ms))

/* Events of type t with a == a and text == text (NULL: any). Under r->m. */
static int
count_ev(struct rec *r, enum chat_wire_type t, const char *a, const char *text)
{
	int n = 0;

	for (size_t i = 0; i < r->n_ev; i++)
		if (r->ev[i].type == t && (!a || strcmp(r->ev[i].a, a) == 0) &&
		    (!text || strcmp(r->ev[i].text, text) == 0))
			n++;
	return n;
}

static struct chat_backend_settings
fast_settings(void)
{
	return (struct chat_backend_settings){
		.url = &url,
		.room = ROOM,
		.heartbeat_usec = 200 * USEC_PER_MSEC,
		.key_ttl_usec = 1 * USEC_PER_SEC,
		.backoff_max_usec = 500 * USEC_PER_MSEC,
		.connect_timeout_usec = 1 * USEC_PER_SEC,
		.command_timeout_usec = 2 * USEC_PER_SEC,
	};
}

static void
start_with(struct rec *r, const struct chat_backend_settings *s)
{
	rec_init(r);
	ck_assert_int_eq(chat_backend_start(&r->b, s, &ops, r), 0);
}

static void
start_up(struct rec *r)
{
	struct chat_backend_settings s = fast_settings();

	start_with(r, &s);
	ASSERT_WAIT(r, r->ups == 1, WAIT_MS, "up");
	ck_assert(chat_backend_up(r->b));
}

static void
stop(struct rec *r)
{
	chat_backend_stop(r->b);
	r->b = NULL;
}

static void
setup(void)
{
	char s[64];

	(void)signal(SIGPIPE, SIG_IGN);
	srv = (struct hredis){ .unix_socket = true };
	ck_assert_int_eq(harness_redis_start(&srv), 0);
	snprintf(s, sizeof(s), "redis://127.0.0.1:%u", srv.port);
	ck_assert_int_eq(backend_url_parse(s, &url, NULL), 0);
}

static void
teardown(void)
{
	ck_assert_int_eq(harness_redis_stop(&srv), 0);
}

/* A plain (blocking) context, as an outsider publishing garbage. */
static redisContext *
plain(void)
{
	struct timeval tv = { .tv_sec = 2 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->err, 0);
	return c;
}

static void
plain_publish(redisContext *c, const char *channel, const char *p, size_t n)
{
	redisReply *r = redisCommand(c, "PUBLISH %s %b", channel, p, n);

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
	freeReplyObject(r);
}

/* ---- events ---- */

START_TEST(events_reach_the_others_once_and_never_the_sender)
{
	struct rec a, b, c;

	start_up(&a);
	start_up(&b);
	start_up(&c);
	ck_assert_str_ne(chat_backend_instance(a.b), chat_backend_instance(b.b));
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_JOIN, "alice", "192.0.2.1", NULL, 0), 0);
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_MSG, "alice", NULL, "hi", 2), 0);
	ck_assert_int_eq(chat_backend_privmsg(a.b, chat_backend_instance(b.b), "alice", "bob",
					      "psst", 4), 0);
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_MSG, "alice", NULL, "end", 3), 0);
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_MSG, "alice", "end") == 1, WAIT_MS, "end at b");
	ASSERT_WAIT(&c, count_ev(&c, CHAT_WIRE_MSG, "alice", "end") == 1, WAIT_MS, "end at c");
	/* b hears something from c; a then surely had time to hear itself. */
	ck_assert_int_eq(chat_backend_publish(b.b, CHAT_WIRE_MSG, "bob", NULL, "sync", 4), 0);
	ASSERT_WAIT(&a, count_ev(&a, CHAT_WIRE_MSG, "bob", "sync") == 1, WAIT_MS, "sync at a");

	pthread_mutex_lock(&b.m);
	ck_assert_int_eq(count_ev(&b, CHAT_WIRE_JOIN, "alice", NULL), 1);
	ck_assert_int_eq(count_ev(&b, CHAT_WIRE_MSG, "alice", "hi"), 1);
	ck_assert_int_eq(count_ev(&b, CHAT_WIRE_PRIVMSG, "alice", "psst"), 1);
	pthread_mutex_unlock(&b.m);
	pthread_mutex_lock(&c.m);
	ck_assert_int_eq(count_ev(&c, CHAT_WIRE_JOIN, "alice", "192.0.2.1") +
				 count_ev(&c, CHAT_WIRE_JOIN, "alice", NULL), 1);
	ck_assert_int_eq(count_ev(&c, CHAT_WIRE_MSG, "alice", "hi"), 1);
	ck_assert_int_eq(count_ev(&c, CHAT_WIRE_PRIVMSG, NULL, NULL), 0);
	pthread_mutex_unlock(&c.m);
	pthread_mutex_lock(&a.m);
	for (size_t i = 0; i < a.n_ev; i++)
		ck_assert_str_ne(a.ev[i].instance, chat_backend_instance(a.b));
	pthread_mutex_unlock(&a.m);
	stop(&a);
	/* a's bye reaches the others. */
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_BYE, NULL, NULL) == 1, WAIT_MS, "bye at b");
	stop(&b);
	stop(&c);
}
END_TEST

START_TEST(five_hundred_messages_arrive_in_order)
{
	struct rec a, b;
	char text[16];
	size_t first = 0;

	start_up(&a);
	start_up(&b);
	for (int i = 0; i < 500; i++) {
		int n = snprintf(text, sizeof(text), "m%03d", i);

		ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_MSG, "alice", NULL, text,
						      (size_t)n), 0);
	}
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_MSG, "alice", "m499") == 1, WAIT_MS, "m499");
	/* The last event is followed by a flush, and bursts are flushed
	 * once each, not once per event: at most one flush per event. */
	ASSERT_WAIT(&b, b.ev_at_flush == b.n_ev, WAIT_MS, "a flush after the last event");
	pthread_mutex_lock(&b.m);
	ck_assert_uint_ge(b.n_flush, 1);
	ck_assert_uint_le(b.n_flush, b.n_ev);
	while (first < b.n_ev && b.ev[first].type != CHAT_WIRE_MSG)
		first++;
	ck_assert_uint_eq(b.n_ev - first, 500);
	for (int i = 0; i < 500; i++) {
		snprintf(text, sizeof(text), "m%03d", i);
		ck_assert_str_eq(b.ev[first + (size_t)i].text, text);
		if (i)
			ck_assert_uint_gt(b.ev[first + (size_t)i].seq, b.ev[first + (size_t)i - 1].seq);
	}
	pthread_mutex_unlock(&b.m);
	stop(&a);
	stop(&b);
}
END_TEST

/* ---- names ---- */

START_TEST(a_name_is_claimed_once_in_the_room)
{
	struct rec a, b;
	struct rec *winner, *loser;

	start_up(&a);
	start_up(&b);
	ck_assert_int_eq(chat_backend_claim(a.b, "Bob", "192.0.2.1", 11), 0);
	ck_assert_int_eq(chat_backend_claim(b.b, "bob", "192.0.2.2", 22), 0);
	/* The same name twice through one backend is refused at once. */
	ck_assert_int_eq(chat_backend_claim(a.b, "BOB", "192.0.2.1", 12), -EEXIST);
	ck_assert_int_eq(chat_backend_claim(a.b, "no spaces", "192.0.2.1", 13), -EINVAL);
	ASSERT_WAIT(&a, a.n_claims == 1, WAIT_MS, "claim at a");
	ASSERT_WAIT(&b, b.n_claims == 1, WAIT_MS, "claim at b");
	ck_assert_uint_eq(a.claim_token[0], 11);
	ck_assert_uint_eq(b.claim_token[0], 22);
	ck_assert_msg((a.claim_result[0] == 0 && b.claim_result[0] == -EEXIST) ||
			      (b.claim_result[0] == 0 && a.claim_result[0] == -EEXIST),
		      "claims gave %d and %d", a.claim_result[0], b.claim_result[0]);
	winner = a.claim_result[0] == 0 ? &a : &b;
	loser = winner == &a ? &b : &a;
	/* The winner keeps it over heartbeats (several key ttls). */
	ck_assert_int_eq(chat_backend_claim(loser->b, "BOB", "192.0.2.9", 33), 0);
	ASSERT_WAIT(loser, loser->n_claims == 2, WAIT_MS, "second claim");
	ck_assert_int_eq(loser->claim_result[1], -EEXIST);
	chat_backend_release(winner->b, "bob");
	/* A barrier: the winner's commands run in order on one connection, so
	 * once this claim is answered the release is done. */
	ck_assert_int_eq(chat_backend_claim(winner->b, "zoe", "192.0.2.1", 50), 0);
	ASSERT_WAIT(winner, winner->n_claims == 2, WAIT_MS, "barrier claim");
	ck_assert_int_eq(winner->claim_result[1], 0);
	ck_assert_int_eq(chat_backend_claim(loser->b, "Bob", "192.0.2.9", 44), 0);
	ASSERT_WAIT(loser, loser->n_claims == 3, WAIT_MS, "claim after release");
	ck_assert_uint_eq(loser->claim_token[2], 44);
	ck_assert_int_eq(loser->claim_result[2], 0);
	ck_assert_int_eq(chat_backend_claim(winner->b, "bob", "192.0.2.1", 55), 0);
	ASSERT_WAIT(winner, winner->n_claims == 3, WAIT_MS, "claim of the taken name");
	ck_assert_int_eq(winner->claim_result[2], -EEXIST);
	stop(&a);
	stop(&b);
}
END_TEST

START_TEST(a_release_overtaking_its_claim_frees_the_name)
{
	struct rec a, b;

	start_up(&a);
	start_up(&b);
	ck_assert_int_eq(chat_backend_claim(a.b, "fay", "192.0.2.6", 1), 0);
	chat_backend_release(a.b, "FAY");
	ASSERT_WAIT(&a, a.n_claims == 1, WAIT_MS, "claim");
	/* Whatever the claim said, the name is free again: a's release goes
	 * out on the same connection before this barrier's claim. */
	ck_assert_int_eq(chat_backend_claim(a.b, "gus", "192.0.2.6", 2), 0);
	ASSERT_WAIT(&a, a.n_claims == 2, WAIT_MS, "barrier claim");
	ck_assert_int_eq(chat_backend_claim(b.b, "fay", "192.0.2.7", 3), 0);
	ASSERT_WAIT(&b, b.n_claims == 1, WAIT_MS, "claim at b");
	ck_assert_int_eq(b.claim_result[0], 0);
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_PRIVMSG, "fay", "gus", "x", 1),
			 -EINVAL);
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_HELLO, NULL, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(chat_backend_privmsg(a.b, "not-an-instance", "gus", "fay", "x", 1),
			 -EINVAL);
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_MSG, "bad name", NULL, "x", 1),
			 -EINVAL);
	stop(&a);
	stop(&b);
}
END_TEST

/* ---- outages ---- */

START_TEST(killed_server_means_one_down_then_up_reconnected)
{
	struct rec a, b;

	start_up(&a);
	start_up(&b);
	ck_assert_int_eq(harness_redis_kill(&srv), 0);
	ASSERT_WAIT(&a, a.downs == 1, WAIT_MS, "down at a");
	ASSERT_WAIT(&b, b.downs == 1, WAIT_MS, "down at b");
	ck_assert(!chat_backend_up(a.b));
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_MSG, "alice", NULL, "x", 1),
			 -ENOTCONN);
	ck_assert_int_eq(chat_backend_claim(a.b, "alice", "192.0.2.1", 1), -ENOTCONN);
	ck_assert_int_eq(harness_redis_start(&srv), 0);
	ASSERT_WAIT(&a, a.ups_reconnected == 1, WAIT_MS, "up again at a");
	ASSERT_WAIT(&b, b.ups_reconnected == 1, WAIT_MS, "up again at b");
	ck_assert_int_eq(a.downs, 1); /* one per outage, retries or not */
	ck_assert_int_eq(b.downs, 1);
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_MSG, "alice", NULL, "back", 4), 0);
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_MSG, "alice", "back") == 1, WAIT_MS, "back");
	stop(&a);
	stop(&b);
}
END_TEST

START_TEST(no_server_at_start_means_down_then_up)
{
	struct chat_backend_settings s = fast_settings();
	struct rec a;

	ck_assert_int_eq(harness_redis_kill(&srv), 0);
	start_with(&a, &s);
	ASSERT_WAIT(&a, a.downs == 1, WAIT_MS, "down");
	ck_assert_int_eq(a.ups, 0);
	ck_assert_int_eq(harness_redis_start(&srv), 0);
	ASSERT_WAIT(&a, a.ups == 1, WAIT_MS, "up");
	ck_assert_int_eq(a.ups_reconnected, 0);
	ck_assert_int_eq(a.downs, 1);
	stop(&a);
}
END_TEST

/* The child: one more instance, claims carol, joins, says its id, waits
 * to be killed. */
static _Noreturn void
child_instance(int fd)
{
	struct chat_backend_settings s = fast_settings();
	struct rec c;
	char id[CHAT_WIRE_INSTANCE_LEN + 1];

	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	rec_init(&c);
	if (chat_backend_start(&c.b, &s, &ops, &c) < 0 || !WAIT(&c, c.ups == 1, WAIT_MS) ||
	    chat_backend_claim(c.b, "carol", "198.51.100.7", 1) < 0 ||
	    !WAIT(&c, c.n_claims == 1, WAIT_MS) || c.claim_result[0] != 0 ||
	    chat_backend_publish(c.b, CHAT_WIRE_JOIN, "carol", "198.51.100.7", NULL, 0) < 0)
		_exit(1);
	snprintf(id, sizeof(id), "%s", chat_backend_instance(c.b));
	if (write(fd, id, CHAT_WIRE_INSTANCE_LEN) != CHAT_WIRE_INSTANCE_LEN)
		_exit(1);
	for (;;)
		pause();
}

START_TEST(a_dead_instance_is_reported_lost)
{
	struct rec a, b;
	char id[CHAT_WIRE_INSTANCE_LEN + 1] = "", want[64];
	struct pollfd pfd;
	int p[2], status;
	pid_t pid;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		child_instance(p[1]);
	}
	close(p[1]);
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
	ck_assert_int_eq(read(p[0], id, CHAT_WIRE_INSTANCE_LEN), CHAT_WIRE_INSTANCE_LEN);
	close(p[0]);
	/* a and b learn carol from the snapshot. */
	start_up(&a);
	start_up(&b);
	ASSERT_WAIT(&a, count_ev(&a, CHAT_WIRE_JOIN, "carol", NULL) == 1, WAIT_MS, "carol at a");
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_JOIN, "carol", NULL) == 1, WAIT_MS, "carol at b");
	pthread_mutex_lock(&a.m);
	for (size_t i = 0; i < a.n_ev; i++)
		if (a.ev[i].type == CHAT_WIRE_JOIN)
			ck_assert_str_eq(a.ev[i].instance, id);
	pthread_mutex_unlock(&a.m);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	/* key ttl 1 s plus a heartbeat, with room to spare. */
	ASSERT_WAIT(&a, a.n_lost == 1, 3000, "lost at a");
	ASSERT_WAIT(&b, b.n_lost == 1, 3000, "lost at b");
	snprintf(want, sizeof(want), "%s carol", id);
	ck_assert_str_eq(a.lost[0], want);
	ck_assert_str_eq(b.lost[0], want);
	/* Reported once: a few more heartbeats change nothing. */
	ck_assert(!WAIT(&a, a.n_lost > 1, 600));
	stop(&a);
	stop(&b);
}
END_TEST

START_TEST(an_instance_presumed_lost_starts_over)
{
	struct rec a;
	redisContext *c;
	redisReply *r;
	char k[128];

	start_up(&a);
	snprintf(k, sizeof(k), "netechod:room:%s:inst:%s", ROOM, chat_backend_instance(a.b));
	c = plain();
	/* up() may come before the registration's writes reach the server
	 * (they leave on the connection's next write): until the key is
	 * there to delete, bounded. */
	for (uint64_t end = now_usec() + (uint64_t)WAIT_MS * 1000;;) {
		long long gone;

		r = redisCommand(c, "DEL %s", k);
		ck_assert_ptr_nonnull(r);
		gone = r->integer;
		freeReplyObject(r);
		if (gone == 1)
			break;
		ck_assert_msg(now_usec() < end, "%s never appeared", k);
		(void)poll(NULL, 0, 5); /* bounded polling of the key */
	}
	redisFree(c);
	ASSERT_WAIT(&a, a.downs == 1, WAIT_MS, "down");
	ASSERT_WAIT(&a, a.ups_reconnected == 1, WAIT_MS, "up again");
	stop(&a);
}
END_TEST

static void
plain_command(redisContext *c, const char *cmd)
{
	redisReply *r = redisCommand(c, cmd);

	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->type != REDIS_REPLY_ERROR, "%s: %s", cmd, r->str);
	freeReplyObject(r);
}

/* AUTH with a user, SELECT, over the unix socket; a wrong password is
 * one down whose reason does not hold the password. */
START_TEST(auth_and_select_over_the_unix_socket)
{
	struct chat_backend_settings s = fast_settings();
	struct backend_url good, bad;
	struct rec a, b;
	redisContext *c;
	redisReply *r;
	char u[256];

	c = plain();
	plain_command(c, "ACL SETUSER bob on >s3cret ~* &* +@all");
	/* unix: has no credentials: before the default user needs any. */
	ck_assert_int_eq(strlen(srv.unix_path) + 16 < sizeof(u), 1);
	ck_assert_int_eq(snprintf(u, sizeof(u), "unix:%.200s?db=2", srv.unix_path) > 0, 1);
	ck_assert_int_eq(backend_url_parse(u, &good, NULL), 0);
	s.url = &good;
	start_with(&a, &s);
	ASSERT_WAIT(&a, a.ups == 1, WAIT_MS, "up over the unix socket");
	ck_assert_int_eq(chat_backend_claim(a.b, "eve", "192.0.2.5", 1), 0);
	ASSERT_WAIT(&a, a.n_claims == 1, WAIT_MS, "claim over the unix socket");
	ck_assert_int_eq(a.claim_result[0], 0);
	plain_command(c, "SELECT 2");
	r = redisCommand(c, "EXISTS netechod:room:%s:name:eve", ROOM);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->integer, 1);
	freeReplyObject(r);
	stop(&a);
	plain_command(c, "CONFIG SET requirepass s3cret");
	snprintf(u, sizeof(u), "redis://bob:wrongpw@127.0.0.1:%u/3", srv.port);
	ck_assert_int_eq(backend_url_parse(u, &bad, NULL), 0);
	s.url = &bad;
	start_with(&b, &s);
	ASSERT_WAIT(&b, b.downs == 1, WAIT_MS, "down for a wrong password");
	ck_assert_int_eq(b.ups, 0);
	ck_assert_msg(strstr(b.down_reason, "WRONGPASS"), "reason: %s", b.down_reason);
	ck_assert_ptr_null(strstr(b.down_reason, "wrongpw"));
	stop(&b);
	snprintf(u, sizeof(u), "redis://bob:s3cret@127.0.0.1:%u/3", srv.port);
	ck_assert_int_eq(backend_url_parse(u, &good, NULL), 0);
	s.url = &good;
	start_with(&a, &s);
	ASSERT_WAIT(&a, a.ups == 1, WAIT_MS, "up with user and password");
	ck_assert_int_eq(chat_backend_claim(a.b, "dora", "192.0.2.4", 1), 0);
	ASSERT_WAIT(&a, a.n_claims == 1, WAIT_MS, "claim");
	ck_assert_int_eq(a.claim_result[0], 0);
	plain_command(c, "AUTH bob s3cret");
	plain_command(c, "SELECT 3");
	r = redisCommand(c, "GET netechod:room:%s:name:dora", ROOM);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	ck_assert_str_eq(r->str + CHAT_WIRE_INSTANCE_LEN + 1, "192.0.2.4");
	freeReplyObject(r);
	stop(&a);
	/* Stopped with bye: our keys are gone. */
	r = redisCommand(c, "EXISTS netechod:room:%s:name:dora", ROOM);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->integer, 0);
	freeReplyObject(r);
	redisFree(c);
}
END_TEST

/* ---- untrusted input ---- */

START_TEST(garbage_on_the_room_channel_is_dropped)
{
	struct rec a, b;
	struct chat_backend_stats st;
	redisContext *c;
	char line[128], *huge;
	const char *ch = "netechod:room:" ROOM;
	size_t huge_len = (size_t)1 << 20;

	start_up(&a);
	start_up(&b);
	c = plain();
	plain_publish(c, ch, "v2 00000000000000ff 1 msg zed x", 31);
	plain_publish(c, ch, "hello world", 11);
	plain_publish(c, ch, "", 0);
	huge = malloc(huge_len);
	ck_assert_ptr_nonnull(huge);
	memset(huge, 'x', huge_len);
	memcpy(huge, "v1 00000000000000ff 2 msg zed ", 30);
	plain_publish(c, ch, huge, huge_len);
	free(huge);
	/* A privmsg belongs on an instance's own channel, not the room's. */
	plain_publish(c, ch, "v1 00000000000000ff 3 privmsg zed bob x", 39);
	/* Our own id, forged. */
	snprintf(line, sizeof(line), "v1 %s 999 msg zed forged", chat_backend_instance(b.b));
	plain_publish(c, ch, line, strlen(line));
	/* A good one, then a replay of its SEQ. */
	plain_publish(c, ch, "v1 00000000000000ff 10 msg zed good", 35);
	plain_publish(c, ch, "v1 00000000000000ff 10 msg zed again", 36);
	plain_publish(c, ch, "v1 00000000000000ff 9 msg zed older", 35);
	plain_publish(c, ch, "v1 00000000000000ff 11 msg zed last", 35);
	redisFree(c);
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_MSG, "zed", "last") == 1, WAIT_MS, "last");
	pthread_mutex_lock(&b.m);
	ck_assert_int_eq(count_ev(&b, CHAT_WIRE_MSG, "zed", NULL), 2);
	ck_assert_int_eq(count_ev(&b, CHAT_WIRE_MSG, "zed", "good"), 1);
	pthread_mutex_unlock(&b.m);
	chat_backend_get_stats(b.b, &st);
	ck_assert_uint_ge(st.malformed, 5);
	ck_assert_uint_ge(st.own, 1);
	ck_assert_uint_eq(st.stale, 2);
	/* Still connected and working. */
	ck_assert_int_eq(b.downs, 0);
	ck_assert_int_eq(chat_backend_publish(a.b, CHAT_WIRE_MSG, "alice", NULL, "ok", 2), 0);
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_MSG, "alice", "ok") == 1, WAIT_MS, "ok");
	stop(&a);
	stop(&b);
}
END_TEST

/* With room for 4 senders, 40 forged ones evict the first: its SEQ is
 * forgotten (a replay is taken again) and nothing grows. */
START_TEST(the_sender_table_stays_bounded)
{
	struct chat_backend_settings s = fast_settings();
	struct chat_backend_stats st;
	struct rec b;
	redisContext *c;
	char line[128];
	const char *ch = "netechod:room:" ROOM;

	s.max_instances = 4;
	start_with(&b, &s);
	ASSERT_WAIT(&b, b.ups == 1, WAIT_MS, "up");
	c = plain();
	plain_publish(c, ch, "v1 00000000000000aa 5 msg zed first", 35);
	plain_publish(c, ch, "v1 00000000000000aa 5 msg zed first", 35);
	for (int i = 0; i < 40; i++) {
		int n = snprintf(line, sizeof(line), "v1 %016x 1 msg x%d y", 0x1000 + i, i);

		plain_publish(c, ch, line, (size_t)n);
	}
	plain_publish(c, ch, "v1 00000000000000aa 5 msg zed first", 35);
	plain_publish(c, ch, "v1 00000000000000bb 1 msg zed end", 33);
	redisFree(c);
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_MSG, "zed", "end") == 1, WAIT_MS, "end");
	pthread_mutex_lock(&b.m);
	ck_assert_int_eq(count_ev(&b, CHAT_WIRE_MSG, "zed", "first"), 2);
	pthread_mutex_unlock(&b.m);
	chat_backend_get_stats(b.b, &st);
	ck_assert_uint_eq(st.stale, 1);
	ck_assert_uint_eq(st.received, 43);
	stop(&b);
}
END_TEST

START_TEST(a_stopped_server_never_blocks_the_room)
{
	struct chat_backend_settings s = fast_settings();
	struct chat_backend_stats st;
	struct rec a, b, a2;
	char text[1024];
	uint64_t t0, worst = 0;
	int refused = 0;

	s.queue_max = 64;
	/* Nobody times out or expires while the server is stopped: b and a2
	 * must stay up for the check after it. */
	s.command_timeout_usec = 10 * USEC_PER_SEC;
	s.key_ttl_usec = 10 * USEC_PER_SEC;
	start_with(&a, &s);
	ASSERT_WAIT(&a, a.ups == 1, WAIT_MS, "up");
	start_with(&b, &s);
	ASSERT_WAIT(&b, b.ups == 1, WAIT_MS, "up");
	memset(text, 'y', sizeof(text));
	ck_assert_int_eq(harness_redis_signal(&srv, SIGSTOP), 0);
	/* 40 MiB: more than the kernel's socket buffers take, so hiredis's
	 * output fills up and the queue behind it. */
	for (int i = 0; i < 40000; i++) {
		uint64_t t = now_usec();
		int r = chat_backend_publish(a.b, CHAT_WIRE_MSG, "alice", NULL, text, sizeof(text));
		uint64_t d = now_usec() - t;

		ck_assert_msg(r == 0 || r == -ENOBUFS || r == -ENOTCONN, "publish: %d", r);
		refused += r < 0;
		worst = MAX(worst, d);
	}
	ck_assert_int_gt(refused, 0);
	ck_assert_uint_lt(worst, 100 * USEC_PER_MSEC);
	chat_backend_get_stats(a.b, &st);
	ck_assert_uint_ge(st.dropped, (uint64_t)refused);
	/* Stopping is bounded too (stop_timeout, 1 s). */
	t0 = now_usec();
	stop(&a);
	ck_assert_uint_lt(now_usec() - t0, 3 * USEC_PER_SEC);
	ck_assert_int_eq(harness_redis_signal(&srv, SIGCONT), 0);
	start_with(&a2, &s);
	ASSERT_WAIT(&a2, a2.ups == 1, WAIT_MS, "up");
	ck_assert_int_eq(b.downs, 0);
	ck_assert_int_eq(chat_backend_publish(a2.b, CHAT_WIRE_MSG, "amy", NULL, "after", 5), 0);
	ASSERT_WAIT(&b, count_ev(&b, CHAT_WIRE_MSG, "amy", "after") == 1, 10000, "after");
	stop(&a2);
	stop(&b);
}
END_TEST

static Suite *
chat_backend_suite(void)
{
	Suite *s = suite_create("chat-backend");
	TCase *tc;

	tc = tcase_create("events");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, events_reach_the_others_once_and_never_the_sender);
	tcase_add_test(tc, five_hundred_messages_arrive_in_order);
	tcase_add_test(tc, garbage_on_the_room_channel_is_dropped);
	tcase_add_test(tc, the_sender_table_stays_bounded);
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, a_name_is_claimed_once_in_the_room);
	tcase_add_test(tc, auth_and_select_over_the_unix_socket);
	tcase_add_test(tc, a_release_overtaking_its_claim_frees_the_name);
	suite_add_tcase(s, tc);

	tc = tcase_create("outages");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, killed_server_means_one_down_then_up_reconnected);
	tcase_add_test(tc, no_server_at_start_means_down_then_up);
	tcase_add_test(tc, a_dead_instance_is_reported_lost);
	tcase_add_test(tc, an_instance_presumed_lost_starts_over);
	tcase_add_test(tc, a_stopped_server_never_blocks_the_room);
	suite_add_tcase(s, tc);
	return s;
}

int
main(int argc, char **argv)
{
	if (!harness_redis_server_bin()) {
		printf("redis-server is not installed (Debian: apt-get install redis-server): "
		       "skipped\n");
		return HARNESS_EXIT_SKIP;
	}
	return harness_main(chat_backend_suite(), argc, argv);
}
