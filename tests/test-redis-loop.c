/* src/redis-loop.c against a real redis-server, on each loop backend
 * (select, poll, epoll): commands and pub/sub through hiredis's async API,
 * connect refused and timed out, a command timed out on a stopped server,
 * the server killed and restarted, the context freed from inside its own
 * reply callback, select's FD_SETSIZE, and the reply limit. Each test gets
 * its own redis-server (tests/harness.h) on a free loopback port. Without
 * redis-server the binary exits 77 (skip). */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "harness.h"
#include "loop.h"
#include "redis-loop.h"
#include "util.h"

#define TCASE_TIMEOUT 60
#define WAIT_MS HARNESS_IO_TIMEOUT_MS
#define N_MESSAGES 500

static const char *backend_name;
static struct hredis srv;
static struct loop *lp;

/* Run the loop until cond holds, for at most ms: an assertion otherwise. */
#define RUN_UNTIL(cond, ms, what)                                                     \
	do {                                                                          \
		uint64_t deadline_ = now_usec() + (uint64_t)(ms) * USEC_PER_MSEC;     \
		while (!(cond)) {                                                     \
			ck_assert_msg(now_usec() < deadline_, "[%s] no %s within %d ms", \
				      backend_name, what, (int)(ms));                 \
			ck_assert_int_eq(loop_run_once(lp, 50), 0);                   \
		}                                                                     \
	} while (0)

static void
setup(enum loop_backend b, const char *name)
{
	backend_name = name;
	(void)signal(SIGPIPE, SIG_IGN); /* hiredis 0.14 write()s */
	srv = (struct hredis){ .unix_socket = true };
	ck_assert_int_eq(harness_redis_start(&srv), 0);
	ck_assert_int_eq(loop_new(&lp, b), 0);
}

static void
setup_select(void)
{
	setup(LOOP_BACKEND_SELECT, "select");
}

static void
setup_poll(void)
{
	setup(LOOP_BACKEND_POLL, "poll");
}

static void
setup_epoll(void)
{
	setup(LOOP_BACKEND_EPOLL, "epoll");
}

static void
teardown(void)
{
	lp = loop_free(lp);
	ck_assert_int_eq(harness_redis_stop(&srv), 0);
}

/* ---- one connection's view of its callbacks ---- */

struct conn {
	redisAsyncContext *ac; /* NULL once freed */
	int fd;
	int connected; /* 0 pending, 1 up, -1 failed */
	int connect_status;
	bool disconnected;
	int disconnect_status;
	char errstr[128];
};

static void
on_connect(redisAsyncContext *ac, int status, const char *errstr, void *userdata)
{
	struct conn *c = userdata;

	c->connect_status = status;
	c->connected = status ? -1 : 1;
	if (status) {
		snprintf(c->errstr, sizeof(c->errstr), "%s", errstr);
		c->ac = NULL;
	}
}

static void
on_disconnect(redisAsyncContext *ac, int status, const char *errstr, void *userdata)
{
	struct conn *c = userdata;

	ck_assert_msg(!c->disconnected, "[%s] disconnect reported twice", backend_name);
	c->disconnected = true;
	c->disconnect_status = status;
	snprintf(c->errstr, sizeof(c->errstr), "%s", errstr);
	c->ac = NULL;
}

/* Start a connection (unix socket when unix_path), 0 or -errno at once. */
static int
conn_start(struct conn *c, uint16_t port, const char *unix_path, uint64_t timeout_usec)
{
	const struct redis_loop_callbacks cbs = {
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.userdata = c,
	};
	int r;

	*c = (struct conn){ .fd = -1 };
	r = redis_loop_connect(&c->ac, lp, "127.0.0.1", port, unix_path, timeout_usec, &cbs);
	if (r == 0)
		c->fd = c->ac->c.fd;
	return r;
}

static void
conn_open(struct conn *c, const char *unix_path)
{
	ck_assert_int_eq(conn_start(c, srv.port, unix_path, 2 * USEC_PER_SEC), 0);
	RUN_UNTIL(c->connected, WAIT_MS, "connect");
	ck_assert_msg(c->connected == 1, "[%s] connect failed: %d %s", backend_name,
		      c->connect_status, c->errstr);
}

/* The fd is no longer in the loop (nothing else was added since). */
static bool
fd_unwatched(int fd)
{
	return loop_set_events(lp, fd, LOOP_READ) == -ENOENT;
}

/* ---- replies ---- */

struct replies {
	int n, n_null;
	char last[64];
	long long last_int;
};

static void
on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct replies *rs = privdata;
	redisReply *r = reply;

	if (!r) {
		rs->n_null++;
		return;
	}
	rs->n++;
	rs->last_int = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
	    r->type == REDIS_REPLY_ERROR)
		snprintf(rs->last, sizeof(rs->last), "%.*s", (int)r->len, r->str);
	else
		snprintf(rs->last, sizeof(rs->last), "(type %d)", r->type);
}

static void
ping(struct conn *c)
{
	struct replies rs = { 0 };

	ck_assert_int_eq(redisAsyncCommand(c->ac, on_reply, &rs, "PING"), REDIS_OK);
	RUN_UNTIL(rs.n + rs.n_null > 0, WAIT_MS, "PONG");
	ck_assert_str_eq(rs.last, "PONG");
}

START_TEST(set_get_and_a_clean_disconnect)
{
	struct conn c;
	struct replies set = { 0 }, get = { 0 };

	conn_open(&c, NULL);
	ck_assert_int_eq(redisAsyncCommand(c.ac, on_reply, &set, "SET %s %s", "k", "v1"),
			 REDIS_OK);
	ck_assert_int_eq(redisAsyncCommand(c.ac, on_reply, &get, "GET %s", "k"), REDIS_OK);
	RUN_UNTIL(get.n, WAIT_MS, "GET reply");
	ck_assert_int_eq(set.n, 1);
	ck_assert_str_eq(set.last, "OK");
	ck_assert_str_eq(get.last, "v1");
	redisAsyncDisconnect(c.ac);
	RUN_UNTIL(c.disconnected, WAIT_MS, "disconnect");
	ck_assert_int_eq(c.disconnect_status, 0);
	ck_assert(fd_unwatched(c.fd));
}
END_TEST

START_TEST(unix_socket_and_free_outside_callbacks)
{
	struct conn c;

	conn_open(&c, srv.unix_path);
	ping(&c);
	redisAsyncFree(c.ac);
	ck_assert(c.disconnected);
	ck_assert_int_eq(c.disconnect_status, 0);
	ck_assert(fd_unwatched(c.fd));
}
END_TEST

/* ---- pub/sub ---- */

struct sub_state {
	bool subscribed;
	int next; /* the message expected next */
	int bad;
	char first_bad[64];
};

static void
on_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct sub_state *s = privdata;
	redisReply *r = reply;
	char want[16];

	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {
		s->subscribed = true;
		return;
	}
	if (strcmp(r->element[0]->str, "message") != 0)
		return;
	snprintf(want, sizeof(want), "m%03d", s->next);
	if (strcmp(r->element[2]->str, want) != 0 && !s->bad++)
		snprintf(s->first_bad, sizeof(s->first_bad), "%s where %s was due",
			 r->element[2]->str, want);
	s->next++;
}

START_TEST(publish_500_messages_arrive_in_order)
{
	struct conn sub, pub;
	struct sub_state s = { 0 };
	struct replies pubs = { 0 };

	conn_open(&sub, NULL);
	conn_open(&pub, srv.unix_path);
	ck_assert_int_eq(redisAsyncCommand(sub.ac, on_sub, &s, "SUBSCRIBE %s", "netechod:t"),
			 REDIS_OK);
	RUN_UNTIL(s.subscribed, WAIT_MS, "subscribe confirmation");
	for (int i = 0; i < N_MESSAGES; i++)
		ck_assert_int_eq(redisAsyncCommand(pub.ac, on_reply, &pubs, "PUBLISH %s m%03d",
						   "netechod:t", i),
				 REDIS_OK);
	RUN_UNTIL(s.next == N_MESSAGES && pubs.n == N_MESSAGES, WAIT_MS, "500 messages");
	ck_assert_msg(s.bad == 0, "[%s] %d out of order, first: %s", backend_name, s.bad,
		      s.first_bad);
	ck_assert_int_eq(pubs.last_int, 1); /* one subscriber heard the last */
	redisAsyncFree(sub.ac);
	redisAsyncFree(pub.ac);
	ck_assert(sub.disconnected && pub.disconnected);
	ck_assert(fd_unwatched(sub.fd) && fd_unwatched(pub.fd));
}
END_TEST

/* ---- the server goes away ---- */

START_TEST(server_killed_reports_an_error_and_unwatches)
{
	struct conn c;

	conn_open(&c, NULL);
	ping(&c);
	ck_assert_int_eq(harness_redis_kill(&srv), 0);
	RUN_UNTIL(c.disconnected, WAIT_MS, "disconnect after kill -9");
	ck_assert_msg(c.disconnect_status < 0, "[%s] status %d", backend_name,
		      c.disconnect_status);
	ck_assert_msg(c.disconnect_status == -ECONNRESET, "[%s] status %d (%s)", backend_name,
		      c.disconnect_status, c.errstr);
	ck_assert(fd_unwatched(c.fd));
}
END_TEST

START_TEST(restarted_server_takes_a_new_context)
{
	struct conn a, b;
	struct replies get = { 0 };

	conn_open(&a, NULL);
	ping(&a);
	ck_assert_int_eq(harness_redis_restart(&srv), 0);
	RUN_UNTIL(a.disconnected, WAIT_MS, "disconnect after the restart");
	ck_assert_int_lt(a.disconnect_status, 0);
	ck_assert(fd_unwatched(a.fd));
	conn_open(&b, NULL);
	ck_assert_int_eq(redisAsyncCommand(b.ac, NULL, NULL, "SET k again"), REDIS_OK);
	ck_assert_int_eq(redisAsyncCommand(b.ac, on_reply, &get, "GET k"), REDIS_OK);
	RUN_UNTIL(get.n, WAIT_MS, "GET after the restart");
	ck_assert_str_eq(get.last, "again");
	redisAsyncFree(b.ac);
	ck_assert(b.disconnected);
}
END_TEST

START_TEST(connect_refused_is_reported)
{
	struct conn c;
	uint16_t port;
	int r;

	/* A unix socket that is not there fails at once. */
	ck_assert_int_eq(conn_start(&c, 0, "/nonexistent/redis.sock", USEC_PER_SEC), -ENOENT);
	ck_assert_int_eq(harness_free_port(SOCK_STREAM, "127.0.0.1", &port), 0);
	r = conn_start(&c, port, NULL, 2 * USEC_PER_SEC);
	if (r < 0) {
		/* Loopback may refuse within connect() itself. */
		ck_assert_int_eq(r, -ECONNREFUSED);
		return;
	}
	RUN_UNTIL(c.connected, WAIT_MS, "connect result");
	ck_assert_msg(c.connect_status == -ECONNREFUSED, "[%s] status %d (%s)", backend_name,
		      c.connect_status, c.errstr);
	ck_assert(!c.disconnected); /* never up, so never down */
	ck_assert(fd_unwatched(c.fd));
}
END_TEST

/* A listener whose accept queue is full drops SYNs (Linux: backlog 0
 * holds one connection), so a connect to it stays in SYN-SENT: a real
 * connect timeout on loopback. Returns the listener; *fillers get the
 * connections made to fill it. */
static int
full_listener(uint16_t *ret_port, int *fillers, size_t max, size_t *ret_n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(lfd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 0), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	*ret_port = ntohs(sa.sin_port);
	*ret_n = 0;
	/* Until one connect does not complete within a second: on loopback
	 * a handshake takes microseconds, and a dropped SYN is sent again
	 * only after a second, to be dropped again. */
	for (size_t i = 0; i < max; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		ck_assert_int_ge(fd, 0);
		fillers[(*ret_n)++] = fd;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			ck_assert_int_eq(errno, EINPROGRESS);
		if (poll(&p, 1, 1000) == 0)
			return lfd;
	}
	ck_abort_msg("[%s] %zu connects to a listener with backlog 0 all completed",
		     backend_name, max);
	return -1;
}

START_TEST(connect_timeout_frees_the_context)
{
	struct conn c;
	int fillers[32], lfd;
	size_t n;
	uint16_t port;
	uint64_t t0;

	lfd = full_listener(&port, fillers, ELEMENTSOF(fillers), &n);
	t0 = now_usec();
	ck_assert_int_eq(conn_start(&c, port, NULL, 300 * USEC_PER_MSEC), 0);
	RUN_UNTIL(c.connected, WAIT_MS, "connect timeout");
	ck_assert_msg(c.connect_status == -ETIMEDOUT, "[%s] status %d (%s)", backend_name,
		      c.connect_status, c.errstr);
	ck_assert_uint_ge(now_usec() - t0, 290 * USEC_PER_MSEC);
	ck_assert(!c.disconnected);
	ck_assert(fd_unwatched(c.fd));
	for (size_t i = 0; i < n; i++)
		safe_close(fillers[i]);
	safe_close(lfd);
}
END_TEST

START_TEST(command_timeout_on_a_stopped_server)
{
	struct conn c, d;
	struct replies rs = { 0 };
	uint64_t t0, idle_until;

	conn_open(&c, NULL);
	ck_assert_int_eq(redis_loop_set_limits(c.ac, 300 * USEC_PER_MSEC, 0), 0);
	ping(&c);
	/* No command waiting: twice the timeout idle is no timeout. */
	idle_until = now_usec() + 600 * USEC_PER_MSEC;
	while (now_usec() < idle_until)
		ck_assert_int_eq(loop_run_once(lp, 50), 0);
	ck_assert(!c.disconnected);
	ck_assert_int_eq(harness_redis_signal(&srv, SIGSTOP), 0);
	t0 = now_usec();
	ck_assert_int_eq(redis_loop_queued(c.ac), 0);
	ck_assert_int_eq(redisAsyncCommand(c.ac, on_reply, &rs, "PING"), REDIS_OK);
	ck_assert_int_eq(redis_loop_queued(c.ac), 14); /* *1\r\n$4\r\nPING\r\n */
	RUN_UNTIL(c.disconnected, WAIT_MS, "command timeout");
	ck_assert_int_eq(harness_redis_signal(&srv, SIGCONT), 0);
	ck_assert_msg(c.disconnect_status == -ETIMEDOUT, "[%s] status %d (%s)", backend_name,
		      c.disconnect_status, c.errstr);
	ck_assert_uint_ge(now_usec() - t0, 290 * USEC_PER_MSEC);
	ck_assert_int_eq(rs.n, 0);
	ck_assert_int_eq(rs.n_null, 1);
	ck_assert(fd_unwatched(c.fd));
	/* The server, woken, serves a new context. */
	conn_open(&d, NULL);
	ping(&d);
	redisAsyncFree(d.ac);
}
END_TEST

/* ---- freed from inside a reply callback ---- */

struct free_in_cb {
	struct conn *self, *other;
	struct replies later; /* the pipelined commands after the first */
	int first;
};

static void
on_reply_free(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct free_in_cb *f = privdata;

	ck_assert_ptr_nonnull(reply);
	f->first++;
	/* hiredis frees ac once this returns; the other one at once. */
	redisAsyncFree(ac);
	if (f->other->ac)
		redisAsyncFree(f->other->ac);
}

START_TEST(free_inside_a_reply_callback)
{
	struct conn a, b;
	struct free_in_cb f = { .self = &a, .other = &b };
	struct replies bs = { 0 };

	conn_open(&a, NULL);
	conn_open(&b, NULL);
	/* Both answered in one wake-up, most likely: b's fd may be in the
	 * batch that frees it. */
	ck_assert_int_eq(redisAsyncCommand(b.ac, on_reply, &bs, "PING"), REDIS_OK);
	ck_assert_int_eq(redisAsyncCommand(a.ac, on_reply_free, &f, "PING"), REDIS_OK);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(redisAsyncCommand(a.ac, on_reply, &f.later, "PING"), REDIS_OK);
	RUN_UNTIL(a.disconnected && b.disconnected, WAIT_MS, "both freed");
	ck_assert_int_eq(f.first, 1);
	ck_assert_int_eq(a.disconnect_status, 0);
	ck_assert_int_eq(b.disconnect_status, 0);
	/* a's pipelined commands after the one that freed it: NULL replies,
	 * or real ones that came in the same read first (never lost). */
	ck_assert_int_eq(f.later.n + f.later.n_null, 3);
	ck_assert_int_eq(bs.n + bs.n_null, 1);
	ck_assert(fd_unwatched(a.fd) && fd_unwatched(b.fd));
	/* The loop goes on without them. */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(loop_run_once(lp, 0), 0);
}
END_TEST

/* ---- attached by hand, with hiredis's own callbacks ---- */

static int own_connected, own_disconnected;

static void
own_on_connect(const redisAsyncContext *ac, int status)
{
	own_connected = status == REDIS_OK ? 1 : -1;
}

static void
own_on_disconnect(const redisAsyncContext *ac, int status)
{
	own_disconnected = status == REDIS_OK ? 1 : -1;
}

static void
own_on_pong(redisAsyncContext *ac, void *reply, void *privdata)
{
	int *got = privdata;

	*got = reply ? 1 : -1;
	redisAsyncFree(ac);
}

START_TEST(attach_with_hiredis_callbacks)
{
	redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", srv.port);
	int got = 0, fd;

	ck_assert_ptr_nonnull(ac);
	ck_assert_int_eq(ac->err, 0);
	fd = ac->c.fd;
	ck_assert_int_eq(redis_loop_attach(ac, lp), 0);
	ck_assert_int_eq(redis_loop_attach(ac, lp), -EEXIST);
	own_connected = own_disconnected = 0;
	ck_assert_int_eq(redisAsyncSetConnectCallback(ac, own_on_connect), REDIS_OK);
	ck_assert_int_eq(redisAsyncSetDisconnectCallback(ac, own_on_disconnect), REDIS_OK);
	ck_assert_int_eq(redisAsyncCommand(ac, own_on_pong, &got, "PING"), REDIS_OK);
	RUN_UNTIL(own_disconnected, WAIT_MS, "PONG and the free in its callback");
	ck_assert_int_eq(own_connected, 1);
	ck_assert_int_eq(got, 1);
	ck_assert_int_eq(own_disconnected, 1);
	ck_assert(fd_unwatched(fd));
}
END_TEST

/* ---- limits ---- */

START_TEST(select_refuses_fds_past_fd_setsize)
{
	struct rlimit rl;
	int dups[FD_SETSIZE + 8], n = 0, fd = -1, r;
	struct conn c;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FD_SETSIZE + 64) {
		/* Cannot reach fd FD_SETSIZE here: only the rest is checked. */
		fprintf(stderr, "[%s] RLIMIT_NOFILE hard limit %lu: FD_SETSIZE not reached\n",
			backend_name, (unsigned long)rl.rlim_max);
		return;
	}
	if (rl.rlim_cur < FD_SETSIZE + 64) {
		rl.rlim_cur = FD_SETSIZE + 64;
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	/* Fill every fd below FD_SETSIZE: the context gets one past it. */
	while (fd < FD_SETSIZE - 1 && n < (int)ELEMENTSOF(dups)) {
		fd = dup(STDERR_FILENO);
		ck_assert_int_ge(fd, 0);
		dups[n++] = fd;
	}
	r = conn_start(&c, srv.port, NULL, 2 * USEC_PER_SEC);
	if (strcmp(backend_name, "select") == 0) {
		ck_assert_int_eq(r, -EMFILE);
	} else {
		ck_assert_int_eq(r, 0);
		ck_assert_int_ge(c.fd, FD_SETSIZE);
		RUN_UNTIL(c.connected, WAIT_MS, "connect");
		ck_assert_int_eq(c.connected, 1);
		ping(&c);
		redisAsyncFree(c.ac);
	}
	for (int i = 0; i < n; i++)
		safe_close(dups[i]);
}
END_TEST

START_TEST(reply_limit_frees_the_context)
{
	static char big[1 << 20];
	struct conn c;
	struct replies rs = { 0 };

	memset(big, 'x', sizeof(big));
	/* A bulk string past the limit: the reader's buffer is what grows. */
	conn_open(&c, NULL);
	ck_assert_int_eq(redis_loop_set_limits(c.ac, 0, 64 * 1024), 0);
	ck_assert_int_eq(redisAsyncCommand(c.ac, NULL, NULL, "SET big %b", big, sizeof(big)),
			 REDIS_OK);
	ck_assert_int_eq(redisAsyncCommand(c.ac, on_reply, &rs, "GET big"), REDIS_OK);
	RUN_UNTIL(c.disconnected, WAIT_MS, "disconnect on a large bulk");
	ck_assert_msg(c.disconnect_status == -EMSGSIZE, "[%s] status %d (%s)", backend_name,
		      c.disconnect_status, c.errstr);
	ck_assert_int_eq(rs.n, 0);
	ck_assert(fd_unwatched(c.fd));

	/* An array whose header alone is past it: refused before allocation. */
	conn_open(&c, NULL);
	ck_assert_int_eq(redis_loop_set_limits(c.ac, 0, 64 * 1024), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(redisAsyncCommand(c.ac, NULL, NULL,
						   "RPUSH l 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 "
						   "17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 "
						   "33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 "
						   "49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 "
						   "65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 "
						   "81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 "
						   "97 98 99 100"),
				 REDIS_OK);
	rs = (struct replies){ 0 };
	ck_assert_int_eq(redisAsyncCommand(c.ac, on_reply, &rs, "LRANGE l 0 -1"), REDIS_OK);
	RUN_UNTIL(c.disconnected, WAIT_MS, "disconnect on a large array");
	ck_assert_msg(c.disconnect_status == -EMSGSIZE, "[%s] status %d (%s)", backend_name,
		      c.disconnect_status, c.errstr);
	ck_assert_int_eq(rs.n, 0);

	/* Under the limit all is well. */
	conn_open(&c, NULL);
	ck_assert_int_eq(redis_loop_set_limits(c.ac, 0, 4 << 20), 0);
	ck_assert_int_eq(redisAsyncCommand(c.ac, on_reply, &rs, "LRANGE l 0 -1"), REDIS_OK);
	ck_assert_int_eq(redisAsyncCommand(c.ac, on_reply, &rs, "STRLEN big"), REDIS_OK);
	RUN_UNTIL(rs.n == 2, WAIT_MS, "replies under the limit");
	ck_assert_int_eq(rs.last_int, (long long)sizeof(big));
	redisAsyncFree(c.ac);
	ck_assert_int_eq(c.disconnect_status, 0);
}
END_TEST

static Suite *
redis_loop_suite(void)
{
	static const struct {
		const char *name;
		void (*setup)(void);
	} backends[] = { { "select", setup_select }, { "poll", setup_poll }, { "epoll", setup_epoll } };
	Suite *s = suite_create("redis-loop");

	for (size_t i = 0; i < ELEMENTSOF(backends); i++) {
		TCase *tc = harness_tcase(s, backends[i].name, NULL, backends[i].setup, teardown,
					  TCASE_TIMEOUT);

		tcase_add_test(tc, set_get_and_a_clean_disconnect);
		tcase_add_test(tc, unix_socket_and_free_outside_callbacks);
		tcase_add_test(tc, publish_500_messages_arrive_in_order);
		tcase_add_test(tc, server_killed_reports_an_error_and_unwatches);
		tcase_add_test(tc, restarted_server_takes_a_new_context);
		tcase_add_test(tc, connect_refused_is_reported);
		tcase_add_test(tc, connect_timeout_frees_the_context);
		tcase_add_test(tc, command_timeout_on_a_stopped_server);
		tcase_add_test(tc, free_inside_a_reply_callback);
		tcase_add_test(tc, attach_with_hiredis_callbacks);
		tcase_add_test(tc, select_refuses_fds_past_fd_setsize);
		tcase_add_test(tc, reply_limit_frees_the_context);
	}
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
	return harness_main(redis_loop_suite(), argc, argv);
}
