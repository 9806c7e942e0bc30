/* Chat across instances (SPEC section 12): a real redis-server and two or
 * three netechod instances, of different models, on one room. Lines are
 * compared as the chat contract writes them (SPEC section 5). "Nothing
 * else arrives" is never a sleep: the client sends a marker (/who) and
 * the next line must be its answer. Every wait is bounded.
 *
 * An instance serves a tcp or a udp chat listener: a udp member is a
 * struct conn too (one datagram, one line), so the same helpers read and
 * write both; udp_join() does the SPEC 5 token handshake. */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 120
#define IO_MS HARNESS_IO_TIMEOUT_MS
/* The backend retries at most 5 s apart (SPEC 12); give it twice that. */
#define RECONNECT_MS 15000
/* Lost within 40 s (SPEC 12), and some slack. */
#define LOST_MS 45000
#define HOST "127.0.0.1"
#define N_INST 3

static struct hredis rs;
static struct hdaemon inst[N_INST];
static struct hl_listener lst[N_INST];
/* Instance 0 may also serve metrics. */
static struct hl_listener lst0[2];
static char extra[N_INST][256];
static bool started[N_INST];

struct conn {
	int fd;
	bool udp; /* a udp chat peer: every datagram is one CRLF-ended line */
	size_t have;
	char buf[65536];
};

static void
setup(void)
{
	(void)signal(SIGPIPE, SIG_IGN);
	rs = (struct hredis){ 0 };
	memset(started, 0, sizeof(started));
}

static void
teardown(void)
{
	for (int i = 0; i < N_INST; i++)
		if (started[i]) {
			int st = harness_stop(&inst[i], SIGTERM);

			started[i] = false;
			ck_assert_msg(st == 0, "instance %d: exit %d", i, st);
		}
	(void)harness_redis_stop(&rs);
}

/* Instance i: one chat listener "a", "b" or "c" of protocol ("tcp",
 * "udp") with model, in room "hall"; instance 0 with a metrics listener
 * too when metrics. */
static void
start_inst_more(int i, const char *protocol, const char *model, bool metrics, const char *more)
{
	static const char *const names[N_INST] = { "a", "b", "c" };
	int r;

	snprintf(extra[i], sizeof(extra[i]),
		 "backend = \"redis://127.0.0.1:%u\"; room = \"hall\"; %s", rs.port, more);
	lst[i] = (struct hl_listener){ .name = names[i], .protocol = protocol, .model = model,
				       .service = "chat", .extra = extra[i] };
	inst[i] = (struct hdaemon){ 0 };
	if (metrics) {
		lst0[0] = lst[i];
		lst0[1] = (struct hl_listener){ .name = "metrics", .protocol = "tcp",
						.model = "poll", .service = "metrics" };
		r = harness_start(&inst[i], lst0, 2, "log_level = \"info\";");
		lst[i].port = lst0[0].port;
	} else
		r = harness_start(&inst[i], &lst[i], 1, "log_level = \"info\";");
	ck_assert_msg(r == 0, "instance %d (%s %s %s) did not start: %d", i, protocol, model, more,
		      r);
	started[i] = true;
}

static void
start_inst_full(int i, const char *model, bool metrics)
{
	start_inst_more(i, "tcp", model, metrics, "");
}

static void
start_inst_nowait(int i, const char *model)
{
	start_inst_full(i, model, false);
}

/* GET /metrics from instance 0: does the body hold want? */
static bool
metrics_have(const char *want)
{
	static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	int fd = harness_tcp_connect(lst0[1].port);
	char *body = NULL;
	bool found;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(harness_send_all(fd, req, sizeof(req) - 1, IO_MS), 0);
	ck_assert_int_ge(harness_recv_until_eof(fd, &body, 1 << 20, IO_MS), 0);
	close(fd);
	found = strstr(body, want) != NULL;
	free(body);
	return found;
}

/* ... and wait until its backend is up. */
static void
start_inst(int i, const char *model)
{
	start_inst_nowait(i, model);
	ck_assert_msg(harness_wait_log(&inst[i], "up, room 'hall'", RECONNECT_MS),
		      "instance %d (%s): backend never came up", i, model);
}

/* A udp chat peer's next datagram, appended to c->buf: it must be one
 * line ended by CRLF (SPEC 5: each datagram is one line). 0, -ETIMEDOUT,
 * or -errno (-ECONNREFUSED once the instance is gone). */
static int
udp_read_datagram(struct conn *c, int timeout_ms)
{
	char dg[65536];
	ssize_t n = harness_recv_timeout(c->fd, dg, sizeof(dg), timeout_ms);

	if (n < 0)
		return (int)n;
	ck_assert_msg(n >= 2 && dg[n - 2] == '\r' && dg[n - 1] == '\n',
		      "udp: a datagram not ended by CRLF: '%.*s'", (int)n, dg);
	ck_assert_msg(!memchr(dg, '\n', (size_t)n - 1) && !memchr(dg, '\r', (size_t)n - 2),
		      "udp: a datagram of more than one line: '%.*s'", (int)n, dg);
	if ((size_t)n > sizeof(c->buf) - c->have)
		return -EMSGSIZE;
	memcpy(c->buf + c->have, dg, (size_t)n);
	c->have += (size_t)n;
	return 0;
}

/* One line without its CRLF into out; 0, -ETIMEDOUT, or -ECONNRESET
 * (closed). A udp peer's lines are its datagrams (bounded the same way;
 * there is no close). */
static int
read_line(struct conn *c, char *out, size_t size, int timeout_ms)
{
	for (;;) {
		char *eol = memmem(c->buf, c->have, "\r\n", 2);
		ssize_t n;

		if (eol) {
			size_t len = (size_t)(eol - c->buf);

			snprintf(out, size, "%.*s", (int)len, c->buf);
			c->have -= len + 2;
			memmove(c->buf, eol + 2, c->have);
			return 0;
		}
		if (c->have == sizeof(c->buf))
			return -EMSGSIZE;
		if (c->udp) {
			int r = udp_read_datagram(c, timeout_ms);

			if (r < 0)
				return r;
			continue;
		}
		n = harness_recv_timeout(c->fd, c->buf + c->have, sizeof(c->buf) - c->have,
					 timeout_ms);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return (int)n;
		c->have += (size_t)n;
	}
}

/* The next line must be want. */
static void
expect_next(struct conn *c, const char *who, const char *want)
{
	char line[8192];
	int r = read_line(c, line, sizeof(line), IO_MS);

	ck_assert_msg(r == 0, "%s: expected '%s', got error %d", who, want, r);
	ck_assert_msg(strcmp(line, want) == 0, "%s: expected '%s', got '%s'", who, want, line);
}

/* Some line within timeout_ms must start with want; others before it are
 * skipped (a rejoin after an outage, say). */
static void
expect_soon(struct conn *c, const char *who, const char *want, int timeout_ms)
{
	char line[8192];

	for (;;) {
		int r = read_line(c, line, sizeof(line), timeout_ms);

		ck_assert_msg(r == 0, "%s: waited for '%s', got error %d", who, want, r);
		if (strncmp(line, want, strlen(want)) == 0)
			return;
	}
}

static void
say(struct conn *c, const char *text)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "%s\n", text);

	ck_assert_int_eq(harness_send_all(c->fd, buf, (size_t)n, IO_MS), 0);
}

/* A client of instance i: a tcp connection, or a udp socket connected to
 * its udp listener (nothing is sent yet). */
static struct conn *
connect_to(int i)
{
	struct conn *c = calloc(1, sizeof(*c));

	ck_assert_ptr_nonnull(c);
	c->udp = strcmp(lst[i].protocol, "udp") == 0;
	c->fd = c->udp ? harness_udp_socket(lst[i].port) : harness_tcp_connect(lst[i].port);
	ck_assert_int_ge(c->fd, 0);
	return c;
}

static void
conn_free(struct conn *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

/* A connection to instance i (a tcp listener) once its welcome counts
 * online members: an instance learns of members elsewhere through Redis,
 * a moment after they joined, so "N online" of a join right after one on
 * another instance may not count it yet. Bounded by RECONNECT_MS. */
static struct conn *
connect_counting(int i, unsigned online)
{
	uint64_t end = now_usec() + (uint64_t)RECONNECT_MS * 1000;
	char want[64], line[8192];

	snprintf(want, sizeof(want), " (%u online); ", online);
	for (;;) {
		struct conn *c = connect_to(i);
		int r = read_line(c, line, sizeof(line), IO_MS);

		ck_assert_msg(r == 0, "instance %d: no welcome (%d)", i, r);
		ck_assert_msg(strncmp(line, "* welcome to ", 13) == 0, "instance %d: got '%s'", i,
			      line);
		if (strstr(line, want))
			return c;
		/* Unnamed: it leaves nobody a notice. */
		conn_free(c);
		ck_assert_msg(now_usec() < end, "instance %d: welcome '%s', never%s", i, line, want);
		(void)poll(NULL, 0, 2); /* bounded polling of the welcome's count */
	}
}

/* Join instance i as name; "you are" must say online. */
static struct conn *
join(int i, const char *name, unsigned online)
{
	struct conn *c = connect_counting(i, online > 0 ? online - 1 : 0);
	char want[128];

	say(c, name);
	snprintf(want, sizeof(want), "* you are %s@" HOST "; %u online", name, online);
	expect_next(c, name, want);
	return c;
}

/* Nothing arrived for c before the answer to a /who. */
static void
expect_quiet(struct conn *c, const char *who, unsigned online)
{
	char want[64];

	say(c, "/who");
	snprintf(want, sizeof(want), "* %u online: ", online);
	{
		char line[8192];
		int r = read_line(c, line, sizeof(line), IO_MS);

		ck_assert_msg(r == 0, "%s: no answer to /who (%d)", who, r);
		ck_assert_msg(strncmp(line, want, strlen(want)) == 0,
			      "%s: expected '%s...', got '%s'", who, want, line);
	}
}

/* Ask /who until its answer is want: after an outage the instances learn
 * of each other again in their own time (a member heard as lost comes
 * back with a join). Bounded by timeout_ms. */
static void
who_until(struct conn *c, const char *who, const char *want, int timeout_ms)
{
	uint64_t end = now_usec() + (uint64_t)timeout_ms * 1000;
	char line[8192] = "";

	while (now_usec() < end) {
		int r;

		say(c, "/who");
		do
			r = read_line(c, line, sizeof(line), IO_MS);
		while (r == 0 && strstr(line, " online: ") == NULL);
		ck_assert_msg(r == 0, "%s: no answer to /who (%d)", who, r);
		if (strcmp(line, want) == 0)
			return;
	}
	ck_abort_msg("%s: /who never said '%s'; last '%s'", who, want, line);
}

/* /who until it counts online members. Bounded by timeout_ms. */
static void
who_count_until(struct conn *c, const char *who, unsigned online, int timeout_ms)
{
	uint64_t end = now_usec() + (uint64_t)timeout_ms * 1000;
	char line[8192] = "", want[64];

	snprintf(want, sizeof(want), "* %u online: ", online);
	while (now_usec() < end) {
		int r;

		say(c, "/who");
		do
			r = read_line(c, line, sizeof(line), IO_MS);
		while (r == 0 && strstr(line, " online: ") == NULL);
		ck_assert_msg(r == 0, "%s: no answer to /who (%d)", who, r);
		if (strncmp(line, want, strlen(want)) == 0)
			return;
	}
	ck_abort_msg("%s: /who never said '%s...'; last '%s'", who, want, line);
}

/* The connection gets line, then is closed. */
static void
expect_refused(struct conn *c, const char *who, const char *line_want)
{
	char line[8192];
	int r;

	expect_next(c, who, line_want);
	r = read_line(c, line, sizeof(line), IO_MS);
	ck_assert_msg(r == -ECONNRESET, "%s: expected a close, got %d '%s'", who, r,
		      r == 0 ? line : "");
}

/* A udp peer's first datagram, name: the reply must offer name a token
 * (SPEC 5), which goes to token. */
static void
udp_ask_token(struct conn *c, const char *who, const char *name, char *token, size_t size)
{
	char prefix[128], line[8192];
	int r;

	say(c, name);
	r = read_line(c, line, sizeof(line), IO_MS);
	snprintf(prefix, sizeof(prefix), "* to join as %s, send: /join ", name);
	ck_assert_msg(r == 0, "%s: expected '%s...', got error %d", who, prefix, r);
	ck_assert_msg(strncmp(line, prefix, strlen(prefix)) == 0, "%s: expected '%s...', got '%s'",
		      who, prefix, line);
	ck_assert_msg(strlen(line + strlen(prefix)) >= 8 && !strpbrk(line + strlen(prefix), " \t"),
		      "%s: join token '%s' is short or has blanks", who, line + strlen(prefix));
	snprintf(token, size, "%s", line + strlen(prefix));
}

/* A new udp peer of instance i sends name and its token: the reply to the
 * /join must be want. */
static struct conn *
udp_try_join(int i, const char *name, const char *want)
{
	struct conn *c = connect_to(i);
	char token[512], cmd[600];

	ck_assert_msg(c->udp, "instance %d is not a udp listener", i);
	udp_ask_token(c, name, name, token, sizeof(token));
	snprintf(cmd, sizeof(cmd), "/join %s", token);
	say(c, cmd);
	expect_next(c, name, want);
	return c;
}

/* A new udp peer of instance i asks for name, held in the room: refused
 * at once. */
static struct conn *
udp_name_refused(int i, const char *name)
{
	struct conn *c = connect_to(i);
	char want[128];

	ck_assert_msg(c->udp, "instance %d is not a udp listener", i);
	say(c, name);
	snprintf(want, sizeof(want), "! name \"%s\" is taken", name);
	expect_next(c, name, want);
	return c;
}

/* Join instance i's udp listener as name through the handshake; "you are"
 * must say online. A udp room shows no count before the join (no
 * welcome): a "you are" that does not count members who joined elsewhere
 * a moment ago yet is taken when /who then counts them (as for
 * connect_counting()). */
static struct conn *
udp_join(int i, const char *name, unsigned online)
{
	struct conn *c = connect_to(i);
	char token[512], cmd[600], want[128], line[8192];
	unsigned got = 0;
	int r, n;

	ck_assert_msg(c->udp, "instance %d is not a udp listener", i);
	udp_ask_token(c, name, name, token, sizeof(token));
	snprintf(cmd, sizeof(cmd), "/join %s", token);
	say(c, cmd);
	r = read_line(c, line, sizeof(line), IO_MS);
	ck_assert_msg(r == 0, "%s: no answer to /join (%d)", name, r);
	n = snprintf(want, sizeof(want), "* you are %s@" HOST "; ", name);
	if (strncmp(line, want, (size_t)n) == 0) {
		char *end;

		got = (unsigned)strtoul(line + n, &end, 10);
		if (strcmp(end, " online") != 0)
			got = 0;
	}
	ck_assert_msg(got >= 1 && got <= online,
		      "%s: expected '* you are %s@" HOST "; %u online', got '%s'", name, name,
		      online, line);
	if (got < online)
		who_count_until(c, name, online, RECONNECT_MS);
	return c;
}

/* Over 80 lines: one conversation over three instances, each step on the
 * room the steps before it left. */
START_TEST(backend_one_room_across_models)
{
	struct conn *alice, *bob, *carol, *dave;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst(0, "epoll");
	start_inst(1, "thread");
	start_inst(2, "fork");

	alice = join(0, "alice", 1);
	bob = join(1, "bob", 2);
	expect_next(alice, "alice", "* bob@" HOST " joined; 2 online");
	carol = join(2, "carol", 3);
	expect_next(alice, "alice", "* carol@" HOST " joined; 3 online");
	expect_next(bob, "bob", "* carol@" HOST " joined; 3 online");

	/* Messages and /me reach every instance. */
	say(alice, "hello from a");
	expect_next(bob, "bob", "<alice> hello from a");
	expect_next(carol, "carol", "<alice> hello from a");
	say(bob, "/me waves");
	expect_next(alice, "alice", "* bob waves");
	expect_next(carol, "carol", "* bob waves");

	/* /who lists the whole room: ours first, then the others'. */
	say(bob, "/who");
	expect_next(bob, "bob", "* 3 online: bob@" HOST ", alice@" HOST ", carol@" HOST);

	/* A name is unique in the whole room, in any case. */
	dave = connect_to(1);
	expect_soon(dave, "dave", "* welcome to b (3 online)", IO_MS);
	say(dave, "alice");
	expect_next(dave, "dave", "! name \"alice\" is taken");
	say(dave, "CAROL");
	expect_next(dave, "dave", "! name \"CAROL\" is taken");
	say(dave, "dave");
	expect_next(dave, "dave", "* you are dave@" HOST "; 4 online");
	expect_next(alice, "alice", "* dave@" HOST " joined; 4 online");
	expect_next(bob, "bob", "* dave@" HOST " joined; 4 online");
	expect_next(carol, "carol", "* dave@" HOST " joined; 4 online");

	/* /msg across instances reaches its addressee only. */
	say(alice, "/msg carol psst");
	expect_next(carol, "carol", "<alice> (private) psst");
	expect_quiet(bob, "bob", 4);
	say(carol, "/msg nobody hi");
	expect_next(carol, "carol", "! no such user \"nobody\"");

	/* /nick across: the old name is free again, the new one taken. */
	say(carol, "/nick carla");
	expect_next(carol, "carol", "* you are now carla");
	expect_next(alice, "alice", "* carol is now carla");
	expect_next(bob, "bob", "* carol is now carla");
	expect_next(dave, "dave", "* carol is now carla");
	say(dave, "/nick alice");
	expect_next(dave, "dave", "! name \"alice\" is taken");

	/* Leaves, with a reason. */
	say(bob, "/quit see you");
	expect_next(alice, "alice", "* bob left (see you); 3 online");
	expect_next(carol, "carol", "* bob left (see you); 3 online");
	expect_next(dave, "dave", "* bob left (see you); 3 online");
	conn_free(dave);
	expect_next(alice, "alice", "* dave left; 2 online");
	expect_next(carol, "carol", "* dave left; 2 online");

	/* A name and a line in one write: the line waits for the claim. */
	dave = connect_to(1);
	expect_soon(dave, "dave", "* welcome to b (2 online)", IO_MS);
	ck_assert_int_eq(harness_send_all(dave->fd, "dave\nfirst words\n", 17, IO_MS), 0);
	expect_next(dave, "dave", "* you are dave@" HOST "; 3 online");
	expect_next(alice, "alice", "* dave@" HOST " joined; 3 online");
	expect_next(alice, "alice", "<dave> first words");
	expect_next(carol, "carol", "* dave@" HOST " joined; 3 online");
	expect_next(carol, "carol", "<dave> first words");
	conn_free(dave);
	expect_next(alice, "alice", "* dave left; 2 online");
	expect_next(carol, "carol", "* dave left; 2 online");

	/* Text from elsewhere is sanitized again: controls never arrive. */
	say(carol, "tab\there");
	expect_next(alice, "alice", "<carla> tab\there");

	conn_free(alice);
	conn_free(bob);
	conn_free(carol);
}
END_TEST

/* Right after READY=1 the backend may still be connecting: a newcomer's
 * name waits for it instead of being refused. */
START_TEST(backend_newcomer_at_start_waits_for_the_backend)
{
	struct conn *alice, *bob;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst_nowait(0, "epoll");
	start_inst_nowait(1, "thread");
	alice = join(0, "alice", 1);
	ck_assert_msg(harness_wait_log(&inst[1], "up, room 'hall'", RECONNECT_MS),
		      "b: backend never came up");
	bob = join(1, "bob", 2);
	expect_next(alice, "alice", "* bob@" HOST " joined; 2 online");
	conn_free(alice);
	conn_free(bob);
}
END_TEST

/* A reload that changes room restarts the listener (SPEC 12). */
START_TEST(backend_reload_with_another_room_restarts)
{
	struct conn *alice, *bob;
	char line[256];

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst(0, "epoll");
	start_inst(1, "poll");
	alice = join(0, "alice", 1);
	bob = join(1, "bob", 2);
	expect_next(alice, "alice", "* bob@" HOST " joined; 2 online");

	snprintf(extra[0], sizeof(extra[0]),
		 "backend = \"redis://127.0.0.1:%u\"; room = \"elsewhere\";", rs.port);
	ck_assert_int_eq(harness_write_config(&inst[0], &lst[0], 1, "log_level = \"info\";"), 0);
	ck_assert_int_eq(harness_signal(&inst[0], SIGHUP), 0);
	expect_next(alice, "alice", "* server shutting down");
	ck_assert_int_eq(read_line(alice, line, sizeof(line), IO_MS), -ECONNRESET);
	expect_next(bob, "bob", "* alice left; 1 online");
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'elsewhere'", RECONNECT_MS),
		      "a: the new room never came up");
	conn_free(alice);
	/* The new room is another room: bob is not in it. */
	alice = join(0, "alice", 1);
	conn_free(alice);
	conn_free(bob);
}
END_TEST

START_TEST(backend_lines_arrive_in_order)
{
	struct conn *alice, *bob;
	static char burst[500 * 32];
	size_t len = 0;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst(0, "epoll");
	start_inst(1, "thread");
	alice = join(0, "alice", 1);
	bob = join(1, "bob", 2);
	expect_next(alice, "alice", "* bob@" HOST " joined; 2 online");

	for (int i = 0; i < 500; i++)
		len += (size_t)snprintf(burst + len, sizeof(burst) - len, "line %03d\n", i);
	ck_assert_int_eq(harness_send_all(alice->fd, burst, len, IO_MS), 0);
	for (int i = 0; i < 500; i++) {
		char want[32];

		snprintf(want, sizeof(want), "<alice> line %03d", i);
		expect_next(bob, "bob", want);
	}
	expect_quiet(bob, "bob", 2);
	conn_free(alice);
	conn_free(bob);
}
END_TEST

/* A flood to 150 members over two instances, the sender's with two loops,
 * five times against the same instances: everything sent reached
 * everyone (netecho bench --chat). A session woken by another thread (the
 * other loop, the backend's) while its loop flushed the sessions woken
 * before it was cut off that list and never flushed: lines never arrived,
 * in about every other such run. */
START_TEST(backend_flood_over_two_loops_reaches_everyone)
{
	char p0[8], also[32];

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst_more(0, "tcp", "epoll", false, "workers = 2; max_clients = 200;");
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "a: backend never came up");
	start_inst_more(1, "tcp", "epoll", false, "max_clients = 200;");
	ck_assert_msg(harness_wait_log(&inst[1], "up, room 'hall'", RECONNECT_MS),
		      "b: backend never came up");
	snprintf(p0, sizeof(p0), "%u", lst[0].port);
	snprintf(also, sizeof(also), HOST ":%u", lst[1].port);
	for (int run = 0; run < 5; run++) {
		char *argv[] = { (char *)harness_netecho_bin(), "bench", "--chat", "-c", "150", "-S",
				 "1", "-d", "2", "-t", "3", "--also", also, HOST, p0, NULL };
		struct harness_output o = { 0 };

		ck_assert_int_eq(harness_run(argv, &o.out, &o.err, &o.status), 0);
		ck_assert_msg(o.status == 0 && o.out && strstr(o.out, " errors=0"),
			      "run %d: exit %d\nstdout: %s\nstderr: %s", run, o.status,
			      o.out ? o.out : "", o.err ? o.err : "");
		harness_output_free(&o);
	}
}
END_TEST

START_TEST(backend_sigterm_tells_the_others)
{
	struct conn *alice, *al2, *bob;
	char line[256];

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst(0, "epoll");
	start_inst(1, "fork");
	alice = join(0, "alice", 1);
	al2 = join(0, "al2", 2);
	expect_next(alice, "alice", "* al2@" HOST " joined; 2 online");
	bob = join(1, "bob", 3);
	expect_next(alice, "alice", "* bob@" HOST " joined; 3 online");
	expect_next(al2, "al2", "* bob@" HOST " joined; 3 online");

	ck_assert_int_eq(harness_signal(&inst[0], SIGTERM), 0);
	expect_next(alice, "alice", "* server shutting down");
	expect_next(al2, "al2", "* server shutting down");
	/* The others hear each of them leave, not a shutdown. */
	expect_next(bob, "bob", "* alice left; 2 online");
	expect_next(bob, "bob", "* al2 left; 1 online");
	ck_assert_int_eq(harness_wait_exit(&inst[0], HARNESS_STOP_TIMEOUT_MS), 0);
	started[0] = false;
	(void)harness_stop(&inst[0], SIGTERM);
	ck_assert_int_eq(read_line(alice, line, sizeof(line), IO_MS), -ECONNRESET);
	expect_quiet(bob, "bob", 1);
	conn_free(alice);
	conn_free(al2);
	conn_free(bob);
}
END_TEST

START_TEST(backend_outage_and_reconnect)
{
	struct conn *alice, *bob, *late;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst(0, "epoll");
	start_inst(1, "thread");
	alice = join(0, "alice", 1);
	bob = join(1, "bob", 2);
	expect_next(alice, "alice", "* bob@" HOST " joined; 2 online");

	ck_assert_int_eq(harness_redis_kill(&rs), 0);
	ck_assert_msg(harness_wait_log(&inst[0], "unreachable", RECONNECT_MS),
		      "a: no warning about the outage");
	/* Members go on talking among themselves... */
	ck_assert_int_eq(harness_wait_log(&inst[1], "unreachable", RECONNECT_MS), true);
	/* ...a newcomer is let go. */
	late = connect_to(0);
	expect_refused(late, "late", "! room unavailable, try again later");
	conn_free(late);

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	expect_soon(alice, "alice", "* reconnected; messages sent while disconnected are lost",
		    RECONNECT_MS);
	expect_soon(bob, "bob", "* reconnected; messages sent while disconnected are lost",
		    RECONNECT_MS);
	/* Both registered again: the room works across instances again. */
	say(alice, "after the outage");
	expect_soon(bob, "bob", "<alice> after the outage", IO_MS);
	who_until(bob, "bob", "* 2 online: bob@" HOST ", alice@" HOST, RECONNECT_MS);
	who_until(alice, "alice", "* 2 online: alice@" HOST ", bob@" HOST, RECONNECT_MS);
	{
		char *log = harness_log_read(&inst[0]);
		const char *p = log ? strstr(log, "unreachable") : NULL;

		ck_assert_ptr_nonnull(p);
		ck_assert_msg(!strstr(p + 1, "unreachable"), "a: more than one warning per outage");
		free(log);
	}
	conn_free(alice);
	conn_free(bob);
}
END_TEST

START_TEST(backend_started_without_redis)
{
	struct conn *c;
	int down;

	ck_assert_int_eq(harness_free_port(SOCK_STREAM, "127.0.0.1", &rs.port), 0);
	start_inst_full(0, "poll", true);
	ck_assert_msg(harness_wait_log(&inst[0], "unreachable", RECONNECT_MS),
		      "a: no warning about the missing backend");
	/* The outage shows in STATUS= and netechod_backend_up (SPEC 12). */
	down = harness_wait_notify_from(&inst[0], "STATUS=2 listeners, 0 clients; backend of a down",
					0, RECONNECT_MS);
	ck_assert_msg(down >= 0, "a: STATUS= never showed the outage");
	ck_assert(metrics_have("netechod_backend_up{listener=\"a\"} 0\n"));
	ck_assert(!metrics_have("netechod_backend_up{listener=\"metrics\"}"));
	c = connect_to(0);
	expect_refused(c, "early", "! room unavailable, try again later");
	conn_free(c);

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "a: backend never came up");
	ck_assert(metrics_have("netechod_backend_up{listener=\"a\"} 1\n"));
	ck_assert_msg(harness_wait_notify_from(&inst[0], "STATUS=2 listeners, 0 clients",
					       (size_t)down + 1, RECONNECT_MS) >= 0,
		      "a: STATUS= never showed the backend back");
	c = join(0, "alice", 1);
	conn_free(c);
}
END_TEST

/* An instance that stalls past the key ttl is lost to the others (SPEC 12:
 * within 40 s); its name may be taken meanwhile, and when it comes back
 * its member becomes NAME-2. */
START_TEST(backend_lost_instance_and_name_taken_meanwhile)
{
	struct conn *alice, *bob, *other;
	pid_t handler;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst(0, "epoll");
	start_inst(1, "thread");
	alice = join(0, "alice", 1);
	bob = join(1, "bob", 2);
	expect_next(alice, "alice", "* bob@" HOST " joined; 2 online");

	handler = harness_handler_pid(inst[0].pid, "tcp", lst[0].port);
	ck_assert_int_gt(handler, 0);
	ck_assert_int_eq(kill(handler, SIGSTOP), 0);
	expect_soon(bob, "bob", "* alice left (instance lost); 1 online", LOST_MS);
	other = join(1, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");
	ck_assert_int_eq(kill(handler, SIGCONT), 0);

	expect_soon(alice, "alice", "* reconnected; messages sent while disconnected are lost",
		    RECONNECT_MS);
	expect_soon(alice, "alice", "* you are now alice-2", RECONNECT_MS);
	expect_soon(bob, "bob", "* alice-2@" HOST " joined; 3 online", RECONNECT_MS);
	say(alice, "back");
	expect_soon(bob, "bob", "<alice-2> back", IO_MS);
	expect_soon(other, "other", "<alice-2> back", IO_MS);
	conn_free(alice);
	conn_free(bob);
	conn_free(other);
}
END_TEST

/* The password is never logged: the warning shows the URL redacted. */
START_TEST(backend_password_stays_out_of_the_log)
{
	char *log;
	int r;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	/* The server has no password: AUTH fails, the backend is down. */
	snprintf(extra[0], sizeof(extra[0]),
		 "backend = \"redis://:s3cr3t-pw@127.0.0.1:%u/0\";", rs.port);
	lst[0] = (struct hl_listener){ .name = "a", .protocol = "tcp", .model = "poll",
				       .service = "chat", .extra = extra[0] };
	inst[0] = (struct hdaemon){ 0 };
	r = harness_start(&inst[0], &lst[0], 1, "log_level = \"debug\";");
	ck_assert_int_eq(r, 0);
	started[0] = true;
	ck_assert_msg(harness_wait_log(&inst[0], "backend redis://:***@127.0.0.1:", RECONNECT_MS),
		      "no warning with the redacted URL");
	log = harness_log_read(&inst[0]);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(!strstr(log, "s3cr3t-pw"), "the password is in the log:\n%s", log);
	free(log);
}
END_TEST

/* Every model's transport delivers what the backend thread hands it. */
static const struct model_case {
	const char *model;
	const char *more;
} model_cases[] = {
	{ "fork", "" },  { "thread", "" }, { "select", "" },
	{ "poll", "" },  { "epoll", "" },  { "epoll", "workers = 2;" },
};

START_TEST(backend_every_model_talks_both_ways)
{
	const struct model_case *mc = &model_cases[_i];
	struct conn *alice, *bob;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst_more(0, "tcp", mc->model, false, mc->more);
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "%s %s: backend never came up", mc->model, mc->more);
	start_inst(1, "epoll");
	alice = join(0, "alice", 1);
	bob = join(1, "bob", 2);
	expect_next(alice, "alice", "* bob@" HOST " joined; 2 online");
	say(bob, "to a");
	expect_next(alice, "alice", "<bob> to a");
	say(alice, "to b");
	expect_next(bob, "bob", "<alice> to b");
	say(bob, "/msg alice secret");
	expect_next(alice, "alice", "<bob> (private) secret");
	say(alice, "/who");
	expect_next(alice, "alice", "* 2 online: alice@" HOST ", bob@" HOST);
	conn_free(bob);
	expect_next(alice, "alice", "* bob left; 1 online");
	conn_free(alice);
}
END_TEST

/* ---- udp members (SPEC 5 UDP chat, in a room of SPEC 12) ---- */

/* The udp listener of the combination under test (harness_combo_at(_i))
 * on instance 0, a tcp epoll one on instance 1: udp members hear tcp ones
 * join and talk, and the other way round. */
START_TEST(backend_udp_every_model_talks_both_ways)
{
	const struct harness_combo *hc = harness_combo_at((size_t)_i);
	struct conn *alice, *bob, *al2, *dave;
	char more[64] = "";

	harness_combo_use(hc);
	if (hc->workers)
		snprintf(more, sizeof(more), "workers = %u;", hc->workers);
	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst_more(0, "udp", hc->model, false, more);
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "[%s] backend never came up", hc->tcase);
	start_inst(1, "epoll");

	/* The tcp member first: a join elsewhere counts a member once its
	 * instance has heard of it, and the first one cannot be waited for. */
	bob = join(1, "bob", 1);
	alice = udp_join(0, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");
	al2 = udp_join(0, "al2", 3);
	expect_next(alice, "alice", "* al2@" HOST " joined; 3 online");
	expect_next(bob, "bob", "* al2@" HOST " joined; 3 online");
	dave = join(1, "dave", 4);
	expect_next(bob, "bob", "* dave@" HOST " joined; 4 online");
	expect_next(alice, "alice", "* dave@" HOST " joined; 4 online");
	expect_next(al2, "al2", "* dave@" HOST " joined; 4 online");

	say(bob, "to udp");
	expect_next(alice, "alice", "<bob> to udp");
	expect_next(al2, "al2", "<bob> to udp");
	expect_next(dave, "dave", "<bob> to udp");
	say(alice, "to tcp");
	expect_next(bob, "bob", "<alice> to tcp");
	expect_next(dave, "dave", "<alice> to tcp");
	expect_next(al2, "al2", "<alice> to tcp");
	say(al2, "/who");
	expect_next(al2, "al2",
		    "* 4 online: alice@" HOST ", al2@" HOST ", bob@" HOST ", dave@" HOST);

	say(al2, "/quit");
	expect_next(alice, "alice", "* al2 left; 3 online");
	expect_next(bob, "bob", "* al2 left; 3 online");
	expect_next(dave, "dave", "* al2 left; 3 online");
	conn_free(dave);
	expect_next(alice, "alice", "* dave left; 2 online");
	conn_free(bob);
	expect_next(alice, "alice", "* bob left; 1 online");
	conn_free(alice);
	conn_free(al2);
}
END_TEST

/* Does a /who answer list exactly names (each as name@HOST), in any
 * order, with "* n online: " before them? */
static bool
who_lists(const char *line, const char *const *names, size_t n)
{
	char head[64], copy[8192], *save = NULL;
	bool seen[N_INST * 4] = { false };
	size_t count = 0;

	ck_assert_uint_le(n, ELEMENTSOF(seen));
	snprintf(head, sizeof(head), "* %zu online: ", n);
	if (strncmp(line, head, strlen(head)) != 0)
		return false;
	snprintf(copy, sizeof(copy), "%s", line + strlen(head));
	for (char *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
		size_t j;

		if (count > 0 && *m++ != ' ')
			return false;
		for (j = 0; j < n; j++)
			if (!seen[j] && strncmp(m, names[j], strlen(names[j])) == 0 &&
			    strcmp(m + strlen(names[j]), "@" HOST) == 0)
				break;
		if (j == n)
			return false;
		seen[j] = true;
		count++;
	}
	return count == n;
}

/* Udp instances 0 (epoll) and 2 (thread), tcp instance 1 (poll), their
 * backends up. */
static void
start_room_of_three(void)
{
	start_inst_more(0, "udp", "epoll", false, "");
	start_inst(1, "poll");
	start_inst_more(2, "udp", "thread", false, "");
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "a: backend never came up");
	ck_assert_msg(harness_wait_log(&inst[2], "up, room 'hall'", RECONNECT_MS),
		      "c: backend never came up");
}

/* The answer to a /who of c: "* N online: " and names (each name@HOST),
 * names[0], the asker, first, the others in any order (SPEC 5 says none). */
static void
expect_who(struct conn *c, const char *who, const char *const *names, size_t n)
{
	char line[8192], first[64];
	int r;

	say(c, "/who");
	r = read_line(c, line, sizeof(line), IO_MS);
	ck_assert_msg(r == 0, "%s: no answer to /who (%d)", who, r);
	snprintf(first, sizeof(first), "* %zu online: %s@" HOST, n, names[0]);
	ck_assert_msg(strncmp(line, first, strlen(first)) == 0 && who_lists(line, names, n),
		      "%s: /who: expected '%s' first, then the other %zu in any order; got '%s'",
		      who, first, n - 1, line);
}

/* udp members on two instances and a tcp one between them: joins,
 * messages, /me, /who, names, /msg, /nick and leaves span them all.
 * Over 80 lines: one conversation, each step building on the room the
 * steps before it left; split, each part would start it all over. */
START_TEST(backend_udp_and_tcp_share_a_room)
{
	struct conn *alice, *bob, *carol, *dave, *c;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_room_of_three();

	/* N online counts the whole room (the tcp member first: see
	 * backend_udp_every_model_talks_both_ways). */
	bob = join(1, "bob", 1);
	alice = udp_join(0, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");
	carol = udp_join(2, "carol", 3);
	expect_next(alice, "alice", "* carol@" HOST " joined; 3 online");
	expect_next(bob, "bob", "* carol@" HOST " joined; 3 online");

	/* Messages and /me, from udp and from tcp. */
	say(alice, "hello from udp");
	expect_next(bob, "bob", "<alice> hello from udp");
	expect_next(carol, "carol", "<alice> hello from udp");
	say(bob, "hello from tcp");
	expect_next(alice, "alice", "<bob> hello from tcp");
	expect_next(carol, "carol", "<bob> hello from tcp");
	say(carol, "/me waves");
	expect_next(alice, "alice", "* carol waves");
	expect_next(bob, "bob", "* carol waves");

	/* /who lists every instance's members: ours first, then the others'. */
	expect_who(alice, "alice", (const char *const[]){ "alice", "bob", "carol" }, 3);
	expect_who(bob, "bob", (const char *const[]){ "bob", "alice", "carol" }, 3);
	expect_who(carol, "carol", (const char *const[]){ "carol", "alice", "bob" }, 3);

	/* A tcp newcomer cannot take a udp member's name, in any case
	 * (udp newcomers: backend_udp_names_taken_anywhere). */
	dave = connect_to(1);
	expect_soon(dave, "dave", "* welcome to b (3 online)", IO_MS);
	say(dave, "alice");
	expect_next(dave, "dave", "! name \"alice\" is taken");
	say(dave, "CAROL");
	expect_next(dave, "dave", "! name \"CAROL\" is taken");
	say(dave, "dave");
	expect_next(dave, "dave", "* you are dave@" HOST "; 4 online");
	/* The refused one never joined: the next line anyone gets is dave's. */
	expect_next(alice, "alice", "* dave@" HOST " joined; 4 online");
	expect_next(bob, "bob", "* dave@" HOST " joined; 4 online");
	expect_next(carol, "carol", "* dave@" HOST " joined; 4 online");

	/* /msg both ways, udp <-> tcp and udp <-> udp, across instances;
	 * only the addressee hears it. */
	say(alice, "/msg bob psst");
	expect_next(bob, "bob", "<alice> (private) psst");
	say(bob, "/msg alice back");
	expect_next(alice, "alice", "<bob> (private) back");
	say(carol, "/msg alice from c");
	expect_next(alice, "alice", "<carol> (private) from c");
	say(dave, "/msg carol to c");
	expect_next(carol, "carol", "<dave> (private) to c");
	say(alice, "/msg nobody hi");
	expect_next(alice, "alice", "! no such user \"nobody\"");
	expect_quiet(alice, "alice", 4);
	expect_quiet(bob, "bob", 4);
	expect_quiet(carol, "carol", 4);
	expect_quiet(dave, "dave", 4);

	/* /nick of a udp member: the new name taken in the whole room, the
	 * old one free again. */
	say(alice, "/nick alicia");
	expect_next(alice, "alice", "* you are now alicia");
	expect_next(bob, "bob", "* alice is now alicia");
	expect_next(carol, "carol", "* alice is now alicia");
	expect_next(dave, "dave", "* alice is now alicia");
	say(bob, "/nick ALICIA");
	expect_next(bob, "bob", "! name \"ALICIA\" is taken");
	say(alice, "as alicia");
	expect_next(bob, "bob", "<alicia> as alicia");
	expect_next(carol, "carol", "<alicia> as alicia");
	expect_next(dave, "dave", "<alicia> as alicia");
	c = udp_join(2, "alice", 5);
	expect_next(alice, "alicia", "* alice@" HOST " joined; 5 online");
	expect_next(bob, "bob", "* alice@" HOST " joined; 5 online");
	expect_next(carol, "carol", "* alice@" HOST " joined; 5 online");
	expect_next(dave, "dave", "* alice@" HOST " joined; 5 online");

	/* Leaves: a udp /quit, a tcp close. */
	say(c, "/quit");
	expect_next(alice, "alicia", "* alice left; 4 online");
	expect_next(bob, "bob", "* alice left; 4 online");
	expect_next(carol, "carol", "* alice left; 4 online");
	expect_next(dave, "dave", "* alice left; 4 online");
	conn_free(c);
	say(carol, "/quit");
	expect_next(alice, "alicia", "* carol left; 3 online");
	expect_next(bob, "bob", "* carol left; 3 online");
	expect_next(dave, "dave", "* carol left; 3 online");
	conn_free(dave);
	expect_next(alice, "alicia", "* dave left; 2 online");
	expect_next(bob, "bob", "* dave left; 2 online");
	expect_who(bob, "bob", (const char *const[]){ "bob", "alicia" }, 2);

	conn_free(alice);
	conn_free(bob);
	conn_free(carol);
}
END_TEST

/* A udp newcomer asking for a name held on another instance, by a tcp
 * or a udp member, in any case: offered a token like anyone, it gets
 * '! name "x" is taken' as the answer to its /join, and never joins. */
START_TEST(backend_udp_names_taken_anywhere)
{
	struct conn *alice, *bob, *carol, *c;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_room_of_three();
	bob = join(1, "bob", 1);
	alice = udp_join(0, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");
	carol = udp_join(2, "carol", 3);
	expect_next(alice, "alice", "* carol@" HOST " joined; 3 online");
	expect_next(bob, "bob", "* carol@" HOST " joined; 3 online");

	/* Names of members the instance knows of are refused at the name, as
	 * a local member's are (a claim made elsewhere a moment ago is
	 * refused in reply to the /join). */
	c = udp_name_refused(0, "BOB");
	conn_free(c);
	c = udp_name_refused(0, "carol");
	conn_free(c);
	c = udp_name_refused(2, "Alice");
	conn_free(c);
	c = udp_name_refused(2, "bob");
	conn_free(c);
	expect_quiet(alice, "alice", 3);
	expect_quiet(bob, "bob", 3);
	expect_quiet(carol, "carol", 3);
	conn_free(alice);
	conn_free(bob);
	conn_free(carol);
}
END_TEST

/* The udp sender's model for the order case: one loop, and two workers
 * reading the same listener. */
static const char *const udp_order_combos[] = { "udp-epoll", "udp-fork-w2" };

/* 200 numbered lines of one udp member reach a tcp member of another
 * instance in the order sent; they go in windows of 20 (datagrams may be
 * lost when a socket buffer overflows: the next window waits for the
 * last line of this one), and nothing more arrives. */
START_TEST(backend_udp_lines_arrive_in_order)
{
	const struct harness_combo *hc = harness_combo_find(udp_order_combos[_i]);
	struct conn *alice, *bob;
	char more[64] = "";

	ck_assert_ptr_nonnull(hc);
	harness_combo_use(hc);
	if (hc->workers)
		snprintf(more, sizeof(more), "workers = %u;", hc->workers);
	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst_more(0, "udp", hc->model, false, more);
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "[%s] backend never came up", hc->tcase);
	start_inst(1, "thread");
	bob = join(1, "bob", 1);
	alice = udp_join(0, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");

	/* 500 lines of 900 bytes: 450 KB through the room's outbound ring
	 * (256 KiB), which wraps on the way. */
	for (int w = 0; w < 500; w += 20) {
		char text[1024], want[1040];

		for (int i = w; i < w + 20; i++) {
			snprintf(text, sizeof(text), "line %03d %0890d", i, i);
			say(alice, text);
		}
		for (int i = w; i < w + 20; i++) {
			snprintf(want, sizeof(want), "<alice> line %03d %0890d", i, i);
			expect_next(bob, "bob", want);
		}
	}
	expect_quiet(bob, "bob", 2);
	expect_quiet(alice, "alice", 2);
	conn_free(alice);
	conn_free(bob);
}
END_TEST

/* SIGTERM of the udp instance: its peers get the shutdown notice, the
 * tcp member elsewhere hears each of them leave. */
START_TEST(backend_udp_sigterm_tells_the_others)
{
	struct conn *alice, *al2, *bob;
	char l1[256], l2[256];

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst_more(0, "udp", "fork", false, "");
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "a: backend never came up");
	start_inst(1, "epoll");
	bob = join(1, "bob", 1);
	alice = udp_join(0, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");
	al2 = udp_join(0, "al2", 3);
	expect_next(alice, "alice", "* al2@" HOST " joined; 3 online");
	expect_next(bob, "bob", "* al2@" HOST " joined; 3 online");

	ck_assert_int_eq(harness_signal(&inst[0], SIGTERM), 0);
	expect_next(alice, "alice", "* server shutting down");
	expect_next(al2, "al2", "* server shutting down");
	/* The others hear each of them leave (in either order), not a
	 * shutdown. */
	ck_assert_int_eq(read_line(bob, l1, sizeof(l1), IO_MS), 0);
	ck_assert_int_eq(read_line(bob, l2, sizeof(l2), IO_MS), 0);
	ck_assert_msg((strcmp(l1, "* alice left; 2 online") == 0 &&
		       strcmp(l2, "* al2 left; 1 online") == 0) ||
			      (strcmp(l1, "* al2 left; 2 online") == 0 &&
			       strcmp(l2, "* alice left; 1 online") == 0),
		      "bob: expected alice and al2 to leave, got '%s', '%s'", l1, l2);
	ck_assert_int_eq(harness_wait_exit(&inst[0], HARNESS_STOP_TIMEOUT_MS), 0);
	started[0] = false;
	(void)harness_stop(&inst[0], SIGTERM);
	expect_quiet(bob, "bob", 1);
	conn_free(alice);
	conn_free(al2);
	conn_free(bob);
}
END_TEST

/* idle_timeout forgets a silent udp peer: the room hears it leave, and
 * its name is free in the whole room. */
START_TEST(backend_udp_idle_peer_leaves_the_room)
{
	struct conn *alice, *bob, *c;
	char token[512];
	uint64_t t0, waited;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst_more(0, "udp", "poll", false, "idle_timeout = 2;");
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "a: backend never came up");
	start_inst(1, "epoll");
	bob = join(1, "bob", 1);
	t0 = now_usec(); /* alice's last datagram, her /join, goes after this */
	alice = udp_join(0, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");

	/* 2 s, the sweep, and slack. */
	expect_soon(bob, "bob", "* alice left; 1 online", 10000);
	waited = (now_usec() - t0) / 1000;
	ck_assert_msg(waited >= 1800, "idle_timeout = 2: alice left after only %llu ms",
		      (unsigned long long)waited);
	expect_quiet(bob, "bob", 1);
	/* Her name is free, also on another instance. */
	c = join(1, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");
	/* Forgotten: her next datagram is a stranger's first. */
	udp_ask_token(alice, "alice", "hello", token, sizeof(token));
	conn_free(c);
	conn_free(alice);
	conn_free(bob);
}
END_TEST

/* Ask /who until it lists exactly names, in any order (after an outage
 * the instances register their members again in their own order).
 * Bounded by timeout_ms. */
static void
who_until_lists(struct conn *c, const char *who, const char *const *names, size_t n,
		int timeout_ms)
{
	uint64_t end = now_usec() + (uint64_t)timeout_ms * 1000;
	char line[8192] = "";

	while (now_usec() < end) {
		int r;

		say(c, "/who");
		do
			r = read_line(c, line, sizeof(line), IO_MS);
		while (r == 0 && strstr(line, " online: ") == NULL);
		ck_assert_msg(r == 0, "%s: no answer to /who (%d)", who, r);
		if (who_lists(line, names, n))
			return;
	}
	ck_abort_msg("%s: /who never listed the %zu expected (first '%s'); last '%s'", who, n,
		     names[0], line);
}

/* Redis killed and started again: the udp peers of an instance go on
 * talking among themselves, a udp newcomer is refused, and when Redis is
 * back they are told and are members of the room again. */
START_TEST(backend_udp_outage_and_reconnect)
{
	static const char *const three[] = { "alice", "al2", "bob" };
	static const char *const four[] = { "alice", "al2", "bob", "late" };
	struct conn *alice, *al2, *bob, *late;

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	start_inst_more(0, "udp", "epoll", false, "");
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "a: backend never came up");
	start_inst(1, "thread");
	bob = join(1, "bob", 1);
	alice = udp_join(0, "alice", 2);
	expect_next(bob, "bob", "* alice@" HOST " joined; 2 online");
	al2 = udp_join(0, "al2", 3);
	expect_next(alice, "alice", "* al2@" HOST " joined; 3 online");
	expect_next(bob, "bob", "* al2@" HOST " joined; 3 online");

	ck_assert_int_eq(harness_redis_kill(&rs), 0);
	ck_assert_msg(harness_wait_log(&inst[0], "unreachable", RECONNECT_MS),
		      "a: no warning about the outage");
	ck_assert_msg(harness_wait_log(&inst[1], "unreachable", RECONNECT_MS),
		      "b: no warning about the outage");
	/* The udp peers go on talking among themselves... */
	say(alice, "during the outage");
	expect_next(al2, "al2", "<alice> during the outage");
	say(al2, "/me is still here");
	expect_next(alice, "alice", "* al2 is still here");
	/* ...a udp newcomer's /join is refused. */
	late = udp_try_join(0, "late", "! room unavailable, try again later");
	conn_free(late);

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	expect_soon(alice, "alice", "* reconnected; messages sent while disconnected are lost",
		    RECONNECT_MS);
	expect_soon(al2, "al2", "* reconnected; messages sent while disconnected are lost",
		    RECONNECT_MS);
	expect_soon(bob, "bob", "* reconnected; messages sent while disconnected are lost",
		    RECONNECT_MS);
	/* Registered again: members of the room, across instances. */
	who_until_lists(bob, "bob", three, 3, RECONNECT_MS);
	who_until_lists(alice, "alice", three, 3, RECONNECT_MS);
	say(alice, "after the outage");
	expect_soon(bob, "bob", "<alice> after the outage", IO_MS);
	expect_soon(al2, "al2", "<alice> after the outage", IO_MS);
	/* And a udp newcomer joins again. */
	late = udp_join(0, "late", 4);
	expect_soon(bob, "bob", "* late@" HOST " joined; 4 online", IO_MS);
	expect_soon(alice, "alice", "* late@" HOST " joined; 4 online", IO_MS);
	who_until_lists(bob, "bob", four, 4, IO_MS);
	conn_free(late);
	conn_free(alice);
	conn_free(al2);
	conn_free(bob);
}
END_TEST

/* A udp listener started before Redis: a newcomer is refused until the
 * backend is up, then joins the room. */
START_TEST(backend_udp_started_without_redis)
{
	struct conn *early, *alice, *bob;

	ck_assert_int_eq(harness_free_port(SOCK_STREAM, "127.0.0.1", &rs.port), 0);
	start_inst_more(0, "udp", "poll", false, "");
	ck_assert_msg(harness_wait_log(&inst[0], "unreachable", RECONNECT_MS),
		      "a: no warning about the missing backend");
	early = udp_try_join(0, "early", "! room unavailable, try again later");
	conn_free(early);

	ck_assert_int_eq(harness_redis_start(&rs), 0);
	ck_assert_msg(harness_wait_log(&inst[0], "up, room 'hall'", RECONNECT_MS),
		      "a: backend never came up");
	alice = udp_join(0, "alice", 1);
	start_inst(1, "epoll");
	bob = join(1, "bob", 2);
	expect_next(alice, "alice", "* bob@" HOST " joined; 2 online");
	conn_free(alice);
	conn_free(bob);
}
END_TEST

static Suite *
chat_backend_net_suite(void)
{
	Suite *s = suite_create("chat-backend-net");
	TCase *tc;

	tc = tcase_create("room");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, backend_one_room_across_models);
	tcase_add_test(tc, backend_lines_arrive_in_order);
	tcase_add_test(tc, backend_newcomer_at_start_waits_for_the_backend);
	tcase_add_test(tc, backend_flood_over_two_loops_reaches_everyone);
	suite_add_tcase(s, tc);

	tc = tcase_create("models");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_loop_test(tc, backend_every_model_talks_both_ways, 0, ELEMENTSOF(model_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("stop");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, backend_sigterm_tells_the_others);
	tcase_add_test(tc, backend_reload_with_another_room_restarts);
	suite_add_tcase(s, tc);

	tc = tcase_create("outage");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, backend_outage_and_reconnect);
	tcase_add_test(tc, backend_started_without_redis);
	tcase_add_test(tc, backend_password_stays_out_of_the_log);
	suite_add_tcase(s, tc);

	tc = tcase_create("lost");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, backend_lost_instance_and_name_taken_meanwhile);
	suite_add_tcase(s, tc);

	/* udp members: every udp row of the model matrix, then single cases. */
	tc = tcase_create("udp-models");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	harness_combo_add_loop_test(tc, backend_udp_every_model_talks_both_ways,
				    HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS);
	suite_add_tcase(s, tc);

	tc = tcase_create("udp-room");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, backend_udp_and_tcp_share_a_room);
	tcase_add_test(tc, backend_udp_names_taken_anywhere);
	tcase_add_loop_test(tc, backend_udp_lines_arrive_in_order, 0,
			    ELEMENTSOF(udp_order_combos));
	suite_add_tcase(s, tc);

	tc = tcase_create("udp-stop");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, backend_udp_sigterm_tells_the_others);
	tcase_add_test(tc, backend_udp_idle_peer_leaves_the_room);
	suite_add_tcase(s, tc);

	tc = tcase_create("udp-outage");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, backend_udp_outage_and_reconnect);
	tcase_add_test(tc, backend_udp_started_without_redis);
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
	return harness_main(chat_backend_net_suite(), argc, argv);
}
