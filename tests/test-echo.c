/* Echo service over the network, for every protocol x model combination
 * (SPEC sections 1 and 4). Each TCase is one combination and is named after
 * it ("tcp-poll", "udp-fork-w2"), so Check's output says which one failed;
 * every message repeats it. netechod runs under the harness exactly as under
 * systemd: sockets through LISTEN_FDS, readiness through NOTIFY_SOCKET. */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 90
#define IO_MS HARNESS_IO_TIMEOUT_MS

/* The combination of the running TCase (harness_combo_tcase()'s fixture
 * sets it), and its daemon. */
static const struct harness_combo *cur;
static struct hdaemon srv;
static struct hl_listener srv_listener;
static char srv_extra[256];

/* A second daemon for one test, same combination, more settings. */
static void
start_variant(struct hdaemon *d, struct hl_listener *l, char *buf, size_t len, const char *name,
	      const char *extra, const char *global_extra)
{
	int r;

	*d = (struct hdaemon){ 0 };
	*l = harness_combo_listener(cur, name, "echo", extra, buf, len);
	r = harness_start(d, l, 1, global_extra);
	ck_assert_msg(r == 0, "[%s] netechod with '%s' did not start: %s", cur->tcase,
		      extra ? extra : "", strerror(-r));
}

static void
stop_clean(struct hdaemon *d)
{
	int r = harness_stop(d, SIGTERM);

	ck_assert_msg(r == 0, "[%s] netechod stopped with %d (%s), expected exit status 0",
		      cur->tcase, r, r < 0 ? strerror(-r) : "exit status");
}

static void
setup(const struct harness_combo *c)
{
	cur = c;
	start_variant(&srv, &srv_listener, srv_extra, sizeof(srv_extra), "echo", NULL, NULL);
}

static void
teardown(void)
{
	stop_clean(&srv);
}

/* ---- helpers ---- */

static int
connect_ok(uint16_t port)
{
	int fd = harness_tcp_connect(port);

	ck_assert_msg(fd >= 0, "[%s] connect to 127.0.0.1:%u: %s", cur->tcase, port,
		      strerror(-fd));
	return fd;
}

static void
tcp_roundtrip(int fd, const char *what, const void *msg, size_t len)
{
	_cleanup_(freep) uint8_t *got = malloc(len + 1);
	ssize_t n;
	int r;

	ck_assert_ptr_nonnull(got);
	r = harness_send_all(fd, msg, len, IO_MS);
	ck_assert_msg(r == 0, "[%s] %s: send %zu bytes: %s", cur->tcase, what, len, strerror(-r));
	n = harness_recv_exact(fd, got, len, IO_MS);
	ck_assert_msg(n == (ssize_t)len, "[%s] %s: expected %zu echoed bytes, got %zd (%s)",
		      cur->tcase, what, len, n, n < 0 ? strerror((int)-n) : "EOF");
	ck_assert_msg(memcmp(got, msg, len) == 0, "[%s] %s: echo differs from what was sent",
		      cur->tcase, what);
}

static void
send_str(int fd, const char *s)
{
	int r = harness_send_all(fd, s, strlen(s), IO_MS);

	ck_assert_msg(r == 0, "[%s] send '%s': %s", cur->tcase, s, strerror(-r));
}

/* Exactly want, reporting whatever arrived when it does not. */
static void
expect_reply(int fd, const char *want)
{
	size_t len = strlen(want), got_len = 0;
	_cleanup_(freep) char *got = calloc(1, len + 1);
	ssize_t n = 0;

	ck_assert_ptr_nonnull(got);
	while (got_len < len) {
		n = harness_recv_timeout(fd, got + got_len, len - got_len, IO_MS);
		if (n <= 0)
			break;
		got_len += (size_t)n;
	}
	ck_assert_msg(got_len == len && memcmp(got, want, len) == 0,
		      "[%s] expected '%s', got '%s' and then %s", cur->tcase, want, got,
		      got_len == len ? "nothing" : n == 0 ? "EOF" : strerror((int)-n));
}

/* What a receive that should have been refused got instead. */
static const char *
outcome(ssize_t n)
{
	if (n > 0)
		return "an echo";
	if (n == 0)
		return "EOF";
	if (n == -ETIMEDOUT)
		return "no answer";
	return strerror((int)-n);
}

/* "[PID|TID|%] " at the start of buf. */
static void
parse_ids(const char *buf, long *ret_pid, long *ret_tid)
{
	long pid = 0, tid = 0;
	int used = 0;

	ck_assert_msg(sscanf(buf, "[%ld|%ld|%%] %n", &pid, &tid, &used) == 2 && used > 0,
		      "[%s] prefix \"[%%p|%%t|%%%%] \" gave '%s'", cur->tcase, buf);
	ck_assert_msg(pid > 0 && tid > 0, "[%s] %%p/%%t not positive in '%s'", cur->tcase, buf);
	*ret_pid = pid;
	*ret_tid = tid;
}

/* ---- TCP ---- */

START_TEST(echo_tcp_small_message)
{
	_cleanup_(closep) int fd = connect_ok(srv_listener.port);
	static const char msg1[] = "hello, netechod\n";
	static const char msg2[] = "second message on the same connection";

	tcp_roundtrip(fd, "first message", msg1, strlen(msg1));
	tcp_roundtrip(fd, "second message", msg2, strlen(msg2));
	tcp_roundtrip(fd, "one byte", "x", 1);
}
END_TEST

START_TEST(echo_tcp_1mib_sent_and_received_concurrently)
{
	const size_t len = 1 << 20;
	_cleanup_(freep) uint8_t *buf = malloc(len);
	_cleanup_(closep) int fd = connect_ok(srv_listener.port);
	const void *bufs[1];
	char err[256] = "";
	uint8_t c;
	ssize_t n;
	int r;

	ck_assert_ptr_nonnull(buf);
	harness_fill_pattern(buf, len, 1);
	bufs[0] = buf;
	r = harness_tcp_exchange(&fd, 1, bufs, &len, 30000, err, sizeof(err));
	ck_assert_msg(r == 0, "[%s] 1 MiB echo: %s", cur->tcase, err);

	/* Then a clean end: the server closes after our FIN. */
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	n = harness_recv_timeout(fd, &c, 1, IO_MS);
	ck_assert_msg(n == 0, "[%s] expected EOF after SHUT_WR, got %zd (%s)", cur->tcase, n,
		      n < 0 ? strerror((int)-n) : "data");
}
END_TEST

START_TEST(echo_tcp_50_concurrent_clients)
{
	enum { N = 50, LEN = 64 * 1024 };
	int fds[N];
	uint8_t *data[N];
	const void *bufs[N];
	size_t lens[N];
	char err[256] = "";
	int r;

	for (size_t i = 0; i < N; i++) {
		fds[i] = connect_ok(srv_listener.port);
		data[i] = malloc(LEN);
		ck_assert_ptr_nonnull(data[i]);
		/* Distinct bytes per client: a crossed stream shows as a mismatch. */
		harness_fill_pattern(data[i], LEN, (uint32_t)(100 + i));
		bufs[i] = data[i];
		lens[i] = LEN;
	}
	r = harness_tcp_exchange(fds, N, bufs, lens, 60000, err, sizeof(err));
	ck_assert_msg(r == 0, "[%s] %d clients x %d bytes: %s", cur->tcase, N, LEN, err);
	for (size_t i = 0; i < N; i++) {
		safe_close(fds[i]);
		free(data[i]);
	}
}
END_TEST

/* More clients at once than the first page of a per-connection table
 * holds: the fork model's children table once grew with mremap() of a
 * shared mapping, and the handler died of SIGBUS at the 129th child. */
START_TEST(echo_tcp_300_clients_held_at_once)
{
	enum { N = 300 };
	struct hdaemon d;
	struct hl_listener l;
	char buf[256], msg[32];
	int fds[N];

	start_variant(&d, &l, buf, sizeof(buf), "many", "max_clients = 400;", NULL);
	for (int i = 0; i < N; i++) {
		fds[i] = connect_ok(l.port);
		snprintf(msg, sizeof(msg), "client %d\n", i);
		tcp_roundtrip(fds[i], "connecting", msg, strlen(msg));
	}
	/* Every one is still served once all are open. */
	for (int i = 0; i < N; i++) {
		snprintf(msg, sizeof(msg), "again %d\n", i);
		tcp_roundtrip(fds[i], "all open", msg, strlen(msg));
	}
	ck_assert_msg(!harness_log_contains(&d, "killed by signal"),
		      "[%s] a handler died with %d clients", cur->tcase, N);
	for (int i = 0; i < N; i++)
		safe_close(fds[i]);
	stop_clean(&d);
}
END_TEST

START_TEST(echo_tcp_half_close_gets_everything_then_eof)
{
	const size_t len = 32 * 1024;
	_cleanup_(freep) uint8_t *buf = malloc(len);
	_cleanup_(freep) char *got = NULL;
	_cleanup_(closep) int fd = connect_ok(srv_listener.port);
	ssize_t n;
	int r;

	ck_assert_ptr_nonnull(buf);
	harness_fill_pattern(buf, len, 7);
	r = harness_send_all(fd, buf, len, IO_MS);
	ck_assert_msg(r == 0, "[%s] send: %s", cur->tcase, strerror(-r));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	n = harness_recv_until_eof(fd, &got, len * 2, IO_MS * 2);
	ck_assert_msg(n == (ssize_t)len,
		      "[%s] after SHUT_WR expected %zu bytes then EOF, got %zd (%s)", cur->tcase,
		      len, n, n < 0 ? strerror((int)-n) : "short");
	ck_assert_msg(memcmp(got, buf, len) == 0, "[%s] half-closed echo differs", cur->tcase);
}
END_TEST

START_TEST(echo_tcp_binary_with_nul_bytes)
{
	_cleanup_(closep) int fd = connect_ok(srv_listener.port);
	uint8_t msg[1024];

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i % 3 == 0 ? 0 : i);
	memcpy(msg + 500, "\r\n\0\n\0\0\xff\x80", 8);
	tcp_roundtrip(fd, "binary", msg, sizeof(msg));
	tcp_roundtrip(fd, "lone NUL", "\0", 1);
}
END_TEST

START_TEST(echo_tcp_max_clients_refuses_one_more)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[128];
	_cleanup_(closep) int c1 = -1, c2 = -1, c3 = -1;
	bool served = false;
	uint8_t junk[64];
	ssize_t n;

	start_variant(&d, &l, buf, sizeof(buf), "limited", "max_clients = 2;", NULL);
	c1 = connect_ok(l.port);
	c2 = connect_ok(l.port);
	/* A round trip on each proves both were accepted and counted. */
	tcp_roundtrip(c1, "client 1 of 2", "one", 3);
	tcp_roundtrip(c2, "client 2 of 2", "two", 3);

	c3 = connect_ok(l.port);
	(void)harness_send_all(c3, "three", 5, IO_MS);
	n = harness_recv_timeout(c3, junk, sizeof(junk), IO_MS);
	ck_assert_msg(n == 0 || n == -ECONNRESET,
		      "[%s] 3rd client with max_clients = 2: expected EOF or reset, got %s (%zd)",
		      cur->tcase, outcome(n), n);

	tcp_roundtrip(c1, "client 1 after the refusal", "still here", 10);
	tcp_roundtrip(c2, "client 2 after the refusal", "me too", 6);

	/* A freed slot serves the next client. The server learns of the close
	 * asynchronously, so a few refusals may come first (bounded). */
	c1 = safe_close(c1);
	for (int attempt = 0; attempt < 100 && !served; attempt++) {
		_cleanup_(closep) int c4 = connect_ok(l.port);
		uint8_t got[4];

		if (harness_send_all(c4, "four", 4, IO_MS) < 0)
			continue;
		n = harness_recv_exact(c4, got, 4, IO_MS);
		served = n == 4 && memcmp(got, "four", 4) == 0;
		ck_assert_msg(served || n >= 0 || n == -ECONNRESET,
			      "[%s] client after a slot was freed: %s", cur->tcase,
			      strerror((int)-n));
		if (!served)
			(void)poll(NULL, 0, 20); /* retry pacing, not synchronization */
	}
	ck_assert_msg(served, "[%s] a client was still refused after one of 2 closed",
		      cur->tcase);
	stop_clean(&d);
}
END_TEST

START_TEST(echo_tcp_prefix_makes_echo_line_oriented)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[128];
	_cleanup_(closep) int fd = -1;
	_cleanup_(freep) char *rest = NULL;
	ssize_t n;

	start_variant(&d, &l, buf, sizeof(buf), "pfx", "prefix = \"%l: \";", NULL);
	fd = connect_ok(l.port);
	send_str(fd, "a\nb\n");
	expect_reply(fd, "pfx: a\npfx: b\n");

	/* The prefix goes at line starts only, however the bytes arrive. */
	send_str(fd, "c");
	send_str(fd, "d\ne");
	send_str(fd, "f\n");
	expect_reply(fd, "pfx: cd\npfx: ef\n");

	/* Every byte comes back: a last line without newline too, then EOF. */
	send_str(fd, "tail");
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	n = harness_recv_until_eof(fd, &rest, 4096, IO_MS);
	ck_assert_msg(n >= 0 && strcmp(rest, "pfx: tail") == 0,
		      "[%s] unterminated last line then SHUT_WR: expected 'pfx: tail' then EOF, got %zd '%s'",
		      cur->tcase, n, n >= 0 ? rest : strerror((int)-n));
	stop_clean(&d);
}
END_TEST

START_TEST(echo_tcp_prefix_pid_and_thread_id)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[128], reply[2][128], task[64];
	_cleanup_(closep) int c1 = -1, c2 = -1;
	long pid[2], tid[2];
	struct stat st;

	start_variant(&d, &l, buf, sizeof(buf), "ids", "prefix = \"[%p|%t|%%] \";", NULL);
	c1 = connect_ok(l.port);
	c2 = connect_ok(l.port);
	for (int i = 0; i < 2; i++) {
		int fd = i == 0 ? c1 : c2;
		ssize_t n;

		send_str(fd, "x\n");
		memset(reply[i], 0, sizeof(reply[i]));
		/* Read up to the newline; the prefix length is unknown. */
		for (size_t k = 0; k < sizeof(reply[i]) - 1; k++) {
			n = harness_recv_exact(fd, reply[i] + k, 1, IO_MS);
			ck_assert_msg(n == 1, "[%s] prefixed echo cut short after '%s'", cur->tcase,
				      reply[i]);
			if (reply[i][k] == '\n')
				break;
		}
		parse_ids(reply[i], &pid[i], &tid[i]);
		ck_assert_msg(strstr(reply[i], "] x\n"), "[%s] echo after the prefix: '%s'",
			      cur->tcase, reply[i]);
		/* While the connection is open its server process and thread exist. */
		ck_assert_msg(harness_pid_in_tree((pid_t)pid[i], d.pid),
			      "[%s] %%p = %ld is not netechod (pid %d) or one of its processes",
			      cur->tcase, pid[i], (int)d.pid);
		snprintf(task, sizeof(task), "/proc/%ld/task/%ld", pid[i], tid[i]);
		ck_assert_msg(stat(task, &st) == 0, "[%s] %%t = %ld is no thread of process %ld",
			      cur->tcase, tid[i], pid[i]);
	}
	/* The model shows in who serves two simultaneous connections. */
	if (strcmp(cur->model, "fork") == 0)
		ck_assert_msg(pid[0] != pid[1],
			      "[%s] fork model: two connections served by one process %ld",
			      cur->tcase, pid[0]);
	else if (strcmp(cur->model, "thread") == 0)
		ck_assert_msg(pid[0] == pid[1] && tid[0] != tid[1],
			      "[%s] thread model: expected one process, two threads; got %ld/%ld and %ld/%ld",
			      cur->tcase, pid[0], tid[0], pid[1], tid[1]);
	else if (cur->workers <= 1)
		ck_assert_msg(pid[0] == pid[1] && tid[0] == tid[1],
			      "[%s] one event loop expected; got %ld/%ld and %ld/%ld", cur->tcase,
			      pid[0], tid[0], pid[1], tid[1]);
	stop_clean(&d);
}
END_TEST

/* Byte i of an endless stream: no period a short buffer could hide. */
static uint8_t
stream_byte(uint64_t i)
{
	return (uint8_t)((i * UINT64_C(0x9E3779B97F4A7C15) + (i >> 13)) >> 56);
}

START_TEST(echo_tcp_client_that_never_reads_is_throttled)
{
	/* Far beyond what the kernel buffers on loopback (about 20 MiB with
	 * autotuning): passing it means netechod reads without bound. */
	const uint64_t cap = UINT64_C(256) << 20;
	_cleanup_(closep) int fd = connect_ok(srv_listener.port);
	_cleanup_(freep) uint8_t *chunk = malloc(65536);
	uint64_t sent = 0, got = 0, bad = UINT64_MAX, deadline = now_usec() + 30 * USEC_PER_SEC;
	bool blocked = false;

	ck_assert_ptr_nonnull(chunk);
	ck_assert_int_eq(fd_set_nonblock(fd, true), 0);
	while (!blocked && sent < cap && now_usec() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		ssize_t n;

		/* No progress for 500 ms: the server stopped reading. */
		if (poll(&pfd, 1, 500) == 0) {
			blocked = true;
			break;
		}
		for (size_t i = 0; i < 65536; i++)
			chunk[i] = stream_byte(sent + i);
		n = send(fd, chunk, 65536, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				ck_abort_msg("[%s] send after %" PRIu64 " bytes: %s", cur->tcase,
					     sent, strerror(errno));
			continue;
		}
		sent += (uint64_t)n;
	}
	ck_assert_msg(blocked,
		      "[%s] a client that never reads could send %" PRIu64
		      " bytes without blocking: the server's buffer is not bounded",
		      cur->tcase, sent);

	/* Reading resumes the flow, and every byte comes back in order. */
	while (got < sent) {
		ssize_t n = harness_recv_timeout(fd, chunk, (size_t)MIN(sent - got, 65536),
						 HARNESS_IO_TIMEOUT_MS);

		ck_assert_msg(n > 0, "[%s] echo stopped at %" PRIu64 " of %" PRIu64 " bytes: %s",
			      cur->tcase, got, sent, n == 0 ? "EOF" : strerror((int)-n));
		/* One assertion per chunk: Check records every passing one. */
		for (ssize_t i = 0; i < n && bad == UINT64_MAX; i++)
			if (chunk[i] != stream_byte(got + (uint64_t)i))
				bad = got + (uint64_t)i;
		ck_assert_msg(bad == UINT64_MAX, "[%s] byte %" PRIu64 " differs after the stall",
			      cur->tcase, bad);
		got += (uint64_t)n;
		if (now_usec() > deadline + 30 * USEC_PER_SEC)
			ck_abort_msg("[%s] draining %" PRIu64 " bytes took over 30 s", cur->tcase,
				     sent);
	}
}
END_TEST

START_TEST(echo_tcp_idle_timeout_closes_silent_client)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[128], c;
	_cleanup_(closep) int fd = -1;
	uint64_t t0, waited;
	ssize_t n;

	start_variant(&d, &l, buf, sizeof(buf), "idle", "idle_timeout = 1;", NULL);
	fd = connect_ok(l.port);
	tcp_roundtrip(fd, "before going silent", "x", 1);
	t0 = now_usec();
	n = harness_recv_timeout(fd, &c, 1, IO_MS);
	waited = (now_usec() - t0) / USEC_PER_MSEC;
	ck_assert_msg(n == 0 || n == -ECONNRESET,
		      "[%s] idle_timeout = 1: silent client not closed within %d ms (%zd)",
		      cur->tcase, IO_MS, n);
	ck_assert_msg(waited >= 800, "[%s] idle_timeout = 1: closed after only %" PRIu64 " ms",
		      cur->tcase, waited);
	stop_clean(&d);
}
END_TEST

/* allow/deny: refused sources are closed (tcp) or ignored (udp). */
static const struct access_case {
	const char *what;
	const char *settings;
	bool served;
} access_cases[] = {
	{ "allow lists another network", "allow = [ \"10.0.0.0/8\" ];", false },
	{ "deny lists loopback", "deny = [ \"127.0.0.0/8\" ];", false },
	{ "deny wins over allow", "allow = [ \"127.0.0.0/8\" ]; deny = [ \"127.0.0.1/32\" ];",
	  false },
	{ "allowed and not denied",
	  "allow = [ \"10.0.0.0/8\", \"127.0.0.1/32\" ]; deny = [ \"127.0.0.2/32\" ];", true },
};

START_TEST(echo_tcp_access_lists)
{
	const struct access_case *a = &access_cases[_i];
	struct hdaemon d;
	struct hl_listener l;
	char buf[256], got[8];
	_cleanup_(closep) int fd = -1;
	ssize_t n;

	start_variant(&d, &l, buf, sizeof(buf), "acl", a->settings, NULL);
	fd = connect_ok(l.port);
	(void)harness_send_all(fd, "acl", 3, IO_MS);
	n = harness_recv_exact(fd, got, 3, IO_MS);
	if (a->served)
		ck_assert_msg(n == 3 && memcmp(got, "acl", 3) == 0,
			      "[%s] %s: expected an echo, got %zd", cur->tcase, a->what, n);
	else
		ck_assert_msg(n == 0 || n == -ECONNRESET,
			      "[%s] %s: expected a close without echo, got %s (%zd)", cur->tcase,
			      a->what, outcome(n), n);
	stop_clean(&d);
}
END_TEST

START_TEST(echo_tcp_clean_stop)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[128], c;
	_cleanup_(closep) int fd = -1;
	int ready, stopping, r;
	ssize_t n;

	start_variant(&d, &l, buf, sizeof(buf), "stop", NULL, "shutdown_timeout = 1;");
	fd = connect_ok(l.port);
	tcp_roundtrip(fd, "before stop", "bye", 3);

	/* An idle client does not keep netechod from a clean, bounded stop. */
	r = harness_stop(&d, SIGTERM);
	ck_assert_msg(r == 0, "[%s] SIGTERM with a client connected: exit %d, expected 0",
		      cur->tcase, r);
	ready = harness_notify_find(&d, "READY=1", 0);
	stopping = harness_notify_find(&d, "STOPPING=1", 0);
	ck_assert_msg(stopping > ready,
		      "[%s] expected STOPPING=1 after READY=1 (indexes %d, %d of %zu messages)",
		      cur->tcase, ready, stopping, harness_notify_count(&d));
	ck_assert_msg(harness_notify_find(&d, "STATUS=", 0) >= 0,
		      "[%s] no STATUS= notification at all", cur->tcase);
	n = harness_recv_timeout(fd, &c, 1, IO_MS);
	ck_assert_msg(n == 0 || n == -ECONNRESET,
		      "[%s] client of a stopped netechod: expected EOF, got %zd", cur->tcase, n);
	/* Every model logs why the connection ended the same way. */
	ck_assert_msg(harness_log_contains(&d, "connection closed (server stopping)"),
		      "[%s] the close at stop is not logged as 'server stopping'", cur->tcase);
}
END_TEST

/* ---- UDP ---- */

static int
udp_ok(uint16_t port)
{
	int fd = harness_udp_socket(port);

	ck_assert_msg(fd >= 0, "[%s] udp socket: %s", cur->tcase, strerror(-fd));
	return fd;
}

static void
udp_roundtrip(int fd, const void *msg, size_t len, const void *want, size_t want_len)
{
	_cleanup_(freep) uint8_t *got = malloc(65536);
	ssize_t n;

	ck_assert_ptr_nonnull(got);
	n = harness_udp_roundtrip(fd, msg, len, got, 65536, IO_MS);
	ck_assert_msg(n >= 0, "[%s] %zu-byte datagram: no reply (%s)", cur->tcase, len,
		      strerror((int)-n));
	ck_assert_msg(n == (ssize_t)want_len,
		      "[%s] %zu-byte datagram: reply of %zd bytes, expected %zu in one datagram",
		      cur->tcase, len, n, want_len);
	ck_assert_msg(memcmp(got, want, want_len) == 0, "[%s] %zu-byte datagram: reply differs",
		      cur->tcase, len);
}

START_TEST(echo_udp_datagrams_echoed_whole)
{
	static const size_t sizes[] = { 1, 1400, 65507 };
	_cleanup_(freep) uint8_t *buf = malloc(65507);
	_cleanup_(closep) int fd = udp_ok(srv_listener.port);

	ck_assert_ptr_nonnull(buf);
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		harness_fill_pattern(buf, sizes[i], (uint32_t)sizes[i]);
		udp_roundtrip(fd, buf, sizes[i], buf, sizes[i]);
	}
}
END_TEST

START_TEST(echo_udp_empty_datagram_echoed)
{
	_cleanup_(closep) int fd = udp_ok(srv_listener.port);
	uint8_t got[16];
	ssize_t n;

	n = harness_udp_roundtrip(fd, "", 0, got, sizeof(got), IO_MS);
	ck_assert_msg(n == 0, "[%s] empty datagram: expected an empty reply, got %zd (%s)",
		      cur->tcase, n, n < 0 ? strerror((int)-n) : "bytes");
	/* And the listener still serves. */
	udp_roundtrip(fd, "after", 5, "after", 5);
}
END_TEST

/* None of fds has a reply waiting (timeout_ms 0: right now). */
static void
expect_silence(const int *fds, const uint16_t *ports, size_t n, int timeout_ms)
{
	struct pollfd pfd[8];
	int r;

	ck_assert(n <= ELEMENTSOF(pfd));
	for (size_t i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	r = poll(pfd, (nfds_t)n, timeout_ms);
	ck_assert_int_ge(r, 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(!(pfd[i].revents & POLLIN),
			      "[%s] a datagram from source port %u was answered", cur->tcase,
			      ports[i]);
}

/* Datagrams from ports that reflection attacks use get no reply. Silence
 * is proven, not waited for: the dropped counter shows netechod has read
 * and discarded every one, and a normal client's echo after that shows
 * the listener was not just slow. Every port must bind: a test that could
 * send none of them would pass on the normal client alone. */
static void
expect_guarded_ports_ignored(const uint16_t *bad, size_t n_bad)
{
	int fds[8];
	uint16_t ports[8];
	struct harness_counters k;
	size_t n = 0;
	int r;
	_cleanup_(closep) int good = udp_ok(srv_listener.port);

	ck_assert(n_bad <= ELEMENTSOF(fds));
	for (size_t i = 0; i < n_bad; i++) {
		int fd = harness_udp_socket_addr("127.0.0.1", bad[i], srv_listener.port);

		ck_assert_msg(fd >= 0, "[%s] cannot bind source port %u: %s", cur->tcase, bad[i],
			      strerror(-fd));
		ck_assert_int_eq(send(fd, "ping", 4, 0), 4);
		fds[n] = fd;
		ports[n++] = bad[i];
	}
	r = harness_wait_discarded(&srv, srv_listener.name, n, IO_MS, &k);
	ck_assert_msg(r == 0 && k.dropped >= n,
		      "[%s] %zu datagrams from guarded ports: dropped counter %llu", cur->tcase, n,
		      (unsigned long long)k.dropped);
	/* Dropping is per datagram: a normal client is still served. */
	udp_roundtrip(good, "ping", 4, "ping", 4);
	expect_silence(fds, ports, n, 0);
	for (size_t i = 0; i < n; i++)
		safe_close(fds[i]);
}

START_TEST(echo_udp_ignores_reflection_source_ports)
{
	static const uint16_t bad[] = { 1900, 5353, 11211 };

	expect_guarded_ports_ignored(bad, ELEMENTSOF(bad));
}
END_TEST

/* Tagged root: binding port 1023 needs it. */
START_TEST(echo_udp_ignores_privileged_source_port)
{
	static const uint16_t bad[] = { 1023 };

	expect_guarded_ports_ignored(bad, ELEMENTSOF(bad));
}
END_TEST

START_TEST(echo_udp_prefix_prepended_to_each_datagram)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[128];
	_cleanup_(closep) int fd = -1;

	start_variant(&d, &l, buf, sizeof(buf), "pfx", "prefix = \"%l|%%|\";", NULL);
	fd = udp_ok(l.port);
	udp_roundtrip(fd, "hello", 5, "pfx|%|hello", 11);
	udp_roundtrip(fd, "two\nlines\n", 10, "pfx|%|two\nlines\n", 16);
	stop_clean(&d);
}
END_TEST

/* Parent of pid from /proc/PID/stat, or -1. */
static pid_t
proc_ppid(pid_t pid)
{
	char path[64], buf[512], *p;
	int ppid = -1;
	char state;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
		return -1;
	return (pid_t)ppid;
}

static size_t
count_distinct(const long *v, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = v[j] == v[i];
		k += !seen;
	}
	return k;
}

/* %p and %t name the process and the thread that served each datagram
 * (netechod.conf(5): %t is the thread id, the pid in single-threaded
 * processes). Idle workers blocked in recv() on the one socket are woken
 * one at a time, in turn: sequential datagrams reach every worker once
 * all of them wait (a fork worker may still be starting right after
 * READY=1), so this sends until each has answered, at most DATAGRAMS. */
START_TEST(echo_udp_prefix_pid_and_thread_id)
{
	enum { DATAGRAMS = 200 };
	struct hdaemon d;
	struct hl_listener l;
	char buf[128], got[128], task[64];
	_cleanup_(closep) int fd = -1;
	long pid[DATAGRAMS], tid[DATAGRAMS];
	bool fork_model = strcmp(cur->model, "fork") == 0;
	bool thread_model = strcmp(cur->model, "thread") == 0;
	unsigned workers = cur->workers ? cur->workers : 1;
	size_t sent = 0;
	struct stat st;

	start_variant(&d, &l, buf, sizeof(buf), "ids", "prefix = \"[%p|%t|%%] \";", NULL);
	fd = udp_ok(l.port);
	for (size_t i = 0; i < DATAGRAMS; i++) {
		ssize_t n = harness_udp_roundtrip(fd, "x", 1, got, sizeof(got) - 1, IO_MS);
		pid_t handler;

		ck_assert_msg(n > 0 && n < (ssize_t)sizeof(got),
			      "[%s] datagram %zu: reply %zd (%s)", cur->tcase, i, n,
			      n < 0 ? strerror((int)-n) : "size");
		got[n] = 0;
		parse_ids(got, &pid[i], &tid[i]);
		sent = i + 1;
		ck_assert_msg(n >= 3 && strcmp(got + n - 3, "] x") == 0,
			      "[%s] datagram after the prefix: '%s'", cur->tcase, got);
		/* The workers live until the stop: the thread still exists. */
		snprintf(task, sizeof(task), "/proc/%ld/task/%ld", pid[i], tid[i]);
		ck_assert_msg(stat(task, &st) == 0,
			      "[%s] %%t = %ld is no thread of the serving process %%p = %ld",
			      cur->tcase, tid[i], pid[i]);
		/* The handler is the dispatcher's child; fork workers are its
		 * children. The dispatcher itself never serves. */
		handler = fork_model ? proc_ppid((pid_t)pid[i]) : (pid_t)pid[i];
		ck_assert_msg(pid[i] != d.pid && handler > 0 && proc_ppid(handler) == d.pid,
			      "[%s] %%p = %ld is not %s of netechod (pid %d)", cur->tcase, pid[i],
			      fork_model ? "a worker of a handler" : "a handler", (int)d.pid);
		if (thread_model)
			ck_assert_msg(tid[i] != pid[i],
				      "[%s] %%t = %%p = %ld: the handler's main thread, not the worker thread that served",
				      cur->tcase, tid[i]);
		else if (fork_model || strcmp(cur->model, "epoll") != 0 || workers == 1)
			ck_assert_msg(tid[i] == pid[i],
				      "[%s] single-threaded serving process %ld: %%t = %ld, expected its pid",
				      cur->tcase, pid[i], tid[i]);
		if (count_distinct(fork_model ? pid : tid, sent) >= workers && sent >= 8)
			break;
	}
	if (thread_model) {
		ck_assert_msg(count_distinct(pid, sent) == 1,
			      "[%s] thread model: datagrams served by %zu processes", cur->tcase,
			      count_distinct(pid, sent));
		ck_assert_msg(count_distinct(tid, sent) == workers,
			      "[%s] workers = %u: %zu distinct %%t in %zu datagrams", cur->tcase,
			      workers, count_distinct(tid, sent), sent);
	} else if (fork_model) {
		ck_assert_msg(count_distinct(pid, sent) == workers,
			      "[%s] workers = %u: %zu distinct %%p in %zu datagrams", cur->tcase,
			      workers, count_distinct(pid, sent), sent);
	}
	stop_clean(&d);
}
END_TEST

START_TEST(echo_udp_clean_stop)
{
	_cleanup_(closep) int fd = udp_ok(srv_listener.port);
	int ready, stopping, r;

	udp_roundtrip(fd, "before stop", 11, "before stop", 11);
	r = harness_stop(&srv, SIGTERM);
	ck_assert_msg(r == 0, "[%s] SIGTERM: exit %d, expected 0", cur->tcase, r);
	ready = harness_notify_find(&srv, "READY=1", 0);
	stopping = harness_notify_find(&srv, "STOPPING=1", 0);
	ck_assert_msg(stopping > ready,
		      "[%s] expected STOPPING=1 after READY=1 (indexes %d, %d of %zu messages)",
		      cur->tcase, ready, stopping, harness_notify_count(&srv));
}
END_TEST

START_TEST(echo_udp_each_client_gets_its_own_replies)
{
	enum { CLIENTS = 20, PER = 5 };
	int fds[CLIENTS];
	char msg[32], got[64];

	for (int i = 0; i < CLIENTS; i++)
		fds[i] = udp_ok(srv_listener.port);
	/* Interleaved, so with several workers replies are in flight at once. */
	for (int k = 0; k < PER; k++)
		for (int i = 0; i < CLIENTS; i++) {
			int len = snprintf(msg, sizeof(msg), "client %02d message %d", i, k);
			ck_assert_int_eq(send(fds[i], msg, (size_t)len, 0), len);
		}
	for (int i = 0; i < CLIENTS; i++) {
		bool seen[PER] = { false };

		for (int k = 0; k < PER; k++) {
			ssize_t n = harness_recv_timeout(fds[i], got, sizeof(got) - 1, IO_MS);
			int ci = -1, mk = -1;

			ck_assert_msg(n > 0, "[%s] client %d: %d of %d replies, then %s",
				      cur->tcase, i, k, PER,
				      n == 0 ? "an empty datagram" : strerror((int)-n));
			got[n] = 0;
			ck_assert_msg(sscanf(got, "client %d message %d", &ci, &mk) == 2 &&
					      ci == i && mk >= 0 && mk < PER && !seen[mk],
				      "[%s] client %d got '%s'", cur->tcase, i, got);
			seen[mk] = true;
		}
		safe_close(fds[i]);
	}
}
END_TEST

START_TEST(echo_udp_access_lists)
{
	const struct access_case *a = &access_cases[_i];
	struct hdaemon d;
	struct hl_listener l;
	char buf[256], got[8];
	_cleanup_(closep) int fd = -1;
	ssize_t n;

	start_variant(&d, &l, buf, sizeof(buf), "acl", a->settings, NULL);
	fd = udp_ok(l.port);
	if (a->served) {
		n = harness_udp_roundtrip(fd, "acl", 3, got, sizeof(got), IO_MS);
		ck_assert_msg(n == 3 && memcmp(got, "acl", 3) == 0,
			      "[%s] %s: expected an echo, got %zd", cur->tcase, a->what, n);
	} else {
		struct harness_counters k;
		int fds[1] = { fd };
		uint16_t ports[1] = { 0 };

		/* No sentinel can follow from 127.0.0.1, which is refused; the
		 * refused counter shows netechod read and discarded it. */
		ck_assert_int_eq(send(fd, "acl", 3, 0), 3);
		ck_assert_msg(harness_wait_discarded(&d, l.name, 1, IO_MS, &k) == 0 &&
				      k.refused >= 1,
			      "[%s] %s: the datagram was not counted as refused", cur->tcase,
			      a->what);
		expect_silence(fds, ports, 1, 0);
	}
	stop_clean(&d);
}
END_TEST

START_TEST(echo_udp_rate_limit_caps_replies)
{
	enum { RATE = 5, SENT = 40 };
	struct hdaemon d;
	struct hl_listener l;
	struct harness_counters k = { 0 };
	char buf[128], got[16];
	_cleanup_(closep) int fd = -1;
	uint64_t deadline;
	int replies = 0;

	start_variant(&d, &l, buf, sizeof(buf), "rl", "rate_limit = 5;", NULL);
	fd = udp_ok(l.port);
	for (int i = 0; i < SENT; i++)
		ck_assert_int_eq(send(fd, "burst", 5, 0), 5);
	/* Every datagram is either answered or counted as dropped: count
	 * until the two add up to SENT, then take what is already queued. */
	deadline = now_usec() + IO_MS * USEC_PER_MSEC;
	for (;;) {
		while (replies < SENT && harness_recv_timeout(fd, got, sizeof(got), 0) >= 0)
			replies++;
		if ((uint64_t)replies + k.dropped >= SENT || now_usec() >= deadline)
			break;
		ck_assert_int_eq(harness_wait_discarded(&d, l.name, 0, IO_MS, &k), 0);
	}
	while (replies < SENT && harness_recv_timeout(fd, got, sizeof(got), 0) >= 0)
		replies++;
	ck_assert_msg((uint64_t)replies + k.dropped >= SENT,
		      "[%s] %d datagrams: %d replies and %llu dropped within %d ms", cur->tcase,
		      SENT, replies, (unsigned long long)k.dropped, IO_MS);
	/* A one-second window may straddle two budgets: allow twice the rate. */
	ck_assert_msg(replies >= 1 && replies <= 2 * RATE,
		      "[%s] rate_limit = %d: %d datagrams at once got %d replies", cur->tcase,
		      RATE, SENT, replies);
	stop_clean(&d);
}
END_TEST

/* ---- several listeners in one daemon ---- */

static void
multi_roundtrips(const struct hl_listener *ls)
{
	_cleanup_(closep) int t = connect_ok(ls[0].port);
	_cleanup_(closep) int u = udp_ok(ls[1].port);

	tcp_roundtrip(t, "tcp listener of two", "over tcp", 8);
	udp_roundtrip(u, "over udp", 8, "over udp", 8);
}

/* Not a row of the matrix: a name for the messages. */
static const struct harness_combo multi_combo = { "multi", "tcp+udp", "poll+epoll", 0,
						   "multi" };

static void
multi_start(struct hdaemon *d, struct hl_listener *ls, unsigned flags)
{
	int r;

	cur = &multi_combo;
	*d = (struct hdaemon){ .flags = flags };
	ls[0] = (struct hl_listener){ .name = "stream", .protocol = "tcp", .model = "poll" };
	ls[1] = (struct hl_listener){ .name = "dgram", .protocol = "udp", .model = "epoll" };
	r = harness_start(d, ls, 2, NULL);
	ck_assert_msg(r == 0, "[multi] netechod with two listeners did not start: %s",
		      strerror(-r));
}

START_TEST(echo_two_listeners_in_one_daemon)
{
	struct hdaemon d;
	struct hl_listener ls[2];

	multi_start(&d, ls, 0);
	multi_roundtrips(ls);
	stop_clean(&d);
}
END_TEST

START_TEST(echo_activation_fds_matched_by_name_in_any_order)
{
	struct hdaemon d;
	struct hl_listener ls[2];

	multi_start(&d, ls, HARNESS_REVERSE_FDS);
	multi_roundtrips(ls);
	stop_clean(&d);
}
END_TEST

START_TEST(echo_activation_fds_matched_by_address_without_names)
{
	struct hdaemon d;
	struct hl_listener ls[2];

	multi_start(&d, ls, HARNESS_NO_FDNAMES | HARNESS_REVERSE_FDS);
	multi_roundtrips(ls);
	stop_clean(&d);
}
END_TEST

START_TEST(echo_udp_ignores_source_port_of_own_listener)
{
	struct hdaemon d = { 0 };
	struct hl_listener ls[2] = {
		{ .name = "v4", .protocol = "udp", .model = "poll" },
		{ .name = "v6", .protocol = "udp", .model = "poll", .address = "::1" },
	};
	_cleanup_(closep) int good = -1, loop = -1;
	struct harness_counters k;
	int r;

	cur = &multi_combo;
	r = harness_start(&d, ls, 2, NULL);
	ck_assert_msg(r == 0, "[multi] netechod did not start: %s", strerror(-r));
	/* 127.0.0.1:PORT-of-v6 is free (v6 is bound to ::1 only), and a
	 * datagram from there looks like it comes from a netechod listener. */
	loop = harness_udp_socket_addr("127.0.0.1", ls[1].port, ls[0].port);
	ck_assert_msg(loop >= 0, "[multi] cannot bind 127.0.0.1:%u: %s", ls[1].port,
		      strerror(-loop));
	ck_assert_int_eq(send(loop, "ping", 4, 0), 4);
	/* Read and dropped (the counter), and a normal echo after it. */
	ck_assert_msg(harness_wait_discarded(&d, "v4", 1, IO_MS, &k) == 0 && k.dropped >= 1,
		      "[multi] the own-port datagram was not counted as dropped");
	good = udp_ok(ls[0].port);
	udp_roundtrip(good, "ping", 4, "ping", 4);
	expect_silence(&loop, &ls[1].port, 1, 0);
	stop_clean(&d);
}
END_TEST

START_TEST(echo_udp_ipv6_largest_datagram)
{
	struct hdaemon d = { 0 };
	struct hl_listener l = { .name = "v6", .protocol = "udp", .model = "epoll",
				 .address = "::1" };
	_cleanup_(freep) uint8_t *buf = malloc(65527), *got = malloc(65536);
	_cleanup_(closep) int fd = -1;
	ssize_t n;
	int r;

	cur = &multi_combo;
	ck_assert(buf && got);
	r = harness_start(&d, &l, 1, NULL);
	ck_assert_msg(r == 0, "[multi] netechod on ::1 did not start: %s", strerror(-r));
	fd = harness_udp_socket_addr("::1", 0, l.port);
	ck_assert_int_ge(fd, 0);
	harness_fill_pattern(buf, 65527, 6);
	n = harness_udp_roundtrip(fd, buf, 65527, got, 65536, IO_MS);
	ck_assert_msg(n == 65527 && memcmp(buf, got, 65527) == 0,
		      "[multi] 65527-byte IPv6 datagram: reply %zd", n);
	stop_clean(&d);
}
END_TEST

/* ---- UDP replies leave from the address the client sent to (SPEC 4) ---- */

/* A daemon of the running combination on address "*" (one dual-stack
 * [::] socket, as netechod binds it), beside the fixture's. */
static void
start_wildcard(struct hdaemon *d, struct hl_listener *l, char *buf, size_t len)
{
	int r;

	*d = (struct hdaemon){ 0 };
	*l = harness_combo_listener(cur, "any", "echo", NULL, buf, len);
	l->address = "*";
	r = harness_start(d, l, 1, NULL);
	ck_assert_msg(r == 0, "[%s] netechod on address \"*\" did not start: %s", cur->tcase,
		      strerror(-r));
}

/* A client connect()ed to addr:port, as nc -u and most probes are: the
 * kernel drops a reply from any other address, so the echo must come
 * from addr. */
static void
connected_roundtrip(const char *addr, uint16_t port, const char *msg)
{
	_cleanup_(closep) int fd = harness_udp_client(addr, port, true, NULL);
	char got[256];
	ssize_t n;

	ck_assert_msg(fd >= 0, "[%s] udp socket connected to %s: %s", cur->tcase, addr,
		      strerror(-fd));
	n = harness_udp_roundtrip(fd, msg, strlen(msg), got, sizeof(got), IO_MS);
	ck_assert_msg(n == (ssize_t)strlen(msg) && memcmp(got, msg, strlen(msg)) == 0,
		      "[%s] client connect()ed to %s:%u got no echo (%s): the reply must leave "
		      "from the address the client sent to",
		      cur->tcase, addr, port, n < 0 ? strerror((int)-n) : "wrong reply");
}

/* An unconnected client sees where the reply came from: addr:port. */
static void
reply_source_is(int fd, const char *addr, uint16_t port, const char *msg)
{
	struct sockaddr_storage to, from;
	char got[256], want[SOCKADDR_STR_MAX], seen[SOCKADDR_STR_MAX];
	_cleanup_(closep) int tmp = harness_udp_client(addr, port, false, &to);
	ssize_t n;

	ck_assert_msg(tmp >= 0, "[%s] address %s: %s", cur->tcase, addr, strerror(-tmp));
	n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&to,
		   sockaddr_len((union sockaddr_any *)&to));
	ck_assert_msg(n == (ssize_t)strlen(msg), "[%s] sendto %s: %s", cur->tcase, addr,
		      n < 0 ? strerror(errno) : "short");
	n = harness_recvfrom_timeout(fd, got, sizeof(got), &from, IO_MS);
	ck_assert_msg(n == (ssize_t)strlen(msg) && memcmp(got, msg, strlen(msg)) == 0,
		      "[%s] datagram to %s:%u: no echo (%s)", cur->tcase, addr, port,
		      n < 0 ? strerror((int)-n) : "wrong reply");
	(void)sockaddr_to_string((union sockaddr_any *)&to, want, sizeof(want));
	(void)sockaddr_to_string((union sockaddr_any *)&from, seen, sizeof(seen));
	ck_assert_msg(sockaddr_equal((union sockaddr_any *)&from, (union sockaddr_any *)&to),
		      "[%s] datagram sent to %s answered from %s", cur->tcase, want, seen);
}

START_TEST(echo_udp_reply_leaves_from_the_address_sent_to)
{
	static const char *const addrs[] = { "127.0.0.2", "127.0.0.3", "127.0.0.1", "127.0.0.4" };
	_cleanup_(closep) int fd = -1;
	struct hdaemon d;
	struct hl_listener l;
	char buf[256], msg[64];

	start_wildcard(&d, &l, buf, sizeof(buf));
	/* Three clients per address, each from its own port: with several
	 * workers (SO_REUSEPORT spreads by source) every worker answers. */
	for (size_t i = 0; i < 3 * ELEMENTSOF(addrs); i++) {
		snprintf(msg, sizeof(msg), "to %s, client %zu", addrs[i % ELEMENTSOF(addrs)], i);
		connected_roundtrip(addrs[i % ELEMENTSOF(addrs)], l.port, msg);
	}
	fd = harness_udp_client("127.0.0.1", l.port, false, NULL);
	ck_assert_int_ge(fd, 0);
	for (size_t i = 0; i < ELEMENTSOF(addrs); i++)
		reply_source_is(fd, addrs[i], l.port, addrs[i]);
	stop_clean(&d);
}
END_TEST

START_TEST(echo_udp_reply_source_ipv6_and_ipv4_mapped)
{
	static const char *const addrs[] = { "::1", "::ffff:127.0.0.2", "::ffff:127.0.0.3",
					     "127.0.0.5" };
	_cleanup_(closep) int fd = -1;
	struct hdaemon d;
	struct hl_listener l;
	char buf[256], msg[64];

	cur = harness_combo_at((size_t)_i);
	start_wildcard(&d, &l, buf, sizeof(buf));
	for (size_t i = 0; i < 2 * ELEMENTSOF(addrs); i++) {
		snprintf(msg, sizeof(msg), "to %s, client %zu", addrs[i % ELEMENTSOF(addrs)], i);
		connected_roundtrip(addrs[i % ELEMENTSOF(addrs)], l.port, msg);
	}
	/* One dual-stack client socket: IPv6 and IPv4-mapped from one fd. */
	fd = harness_udp_client("::ffff:127.0.0.1", l.port, false, NULL);
	ck_assert_int_ge(fd, 0);
	for (size_t i = 0; i < 3; i++)
		reply_source_is(fd, addrs[i], l.port, addrs[i]);
	stop_clean(&d);
}
END_TEST

static Suite *
echo_suite(void)
{
	Suite *s = suite_create("echo");
	TCase *tc;

	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_TCP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, teardown, TCASE_TIMEOUT);
		tcase_add_test(tc, echo_tcp_small_message);
		tcase_add_test(tc, echo_tcp_1mib_sent_and_received_concurrently);
		tcase_add_test(tc, echo_tcp_50_concurrent_clients);
		tcase_add_test(tc, echo_tcp_300_clients_held_at_once);
		tcase_add_test(tc, echo_tcp_half_close_gets_everything_then_eof);
		tcase_add_test(tc, echo_tcp_binary_with_nul_bytes);
		tcase_add_test(tc, echo_tcp_max_clients_refuses_one_more);
		tcase_add_test(tc, echo_tcp_prefix_makes_echo_line_oriented);
		tcase_add_test(tc, echo_tcp_prefix_pid_and_thread_id);
		tcase_add_test(tc, echo_tcp_client_that_never_reads_is_throttled);
		tcase_add_test(tc, echo_tcp_idle_timeout_closes_silent_client);
		tcase_add_loop_test(tc, echo_tcp_access_lists, 0, ELEMENTSOF(access_cases));
		tcase_add_test(tc, echo_tcp_clean_stop);
	}
	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, teardown, TCASE_TIMEOUT);
		tcase_add_test(tc, echo_udp_datagrams_echoed_whole);
		tcase_add_test(tc, echo_udp_empty_datagram_echoed);
		tcase_add_test(tc, echo_udp_ignores_reflection_source_ports);
		tcase_add_test(tc, echo_udp_prefix_prepended_to_each_datagram);
		tcase_add_test(tc, echo_udp_prefix_pid_and_thread_id);
		tcase_add_test(tc, echo_udp_each_client_gets_its_own_replies);
		tcase_add_loop_test(tc, echo_udp_access_lists, 0, ELEMENTSOF(access_cases));
		tcase_add_test(tc, echo_udp_rate_limit_caps_replies);
		tcase_add_test(tc, echo_udp_clean_stop);
		tcase_add_test(tc, echo_udp_reply_leaves_from_the_address_sent_to);
	}
	/* The same fixtures, for the cases that need root. */
	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, "-root", setup, teardown, TCASE_TIMEOUT);
		tcase_set_tags(tc, HARNESS_TAG_ROOT);
		tcase_add_test(tc, echo_udp_ignores_privileged_source_port);
	}

	/* Needs ::1: tagged, run as meson test echo-ipv6, a skip without it.
	 * One case, each UDP combination a loop iteration (its index in the
	 * harness's table): no fixture daemon. */
	tc = harness_tcase(s, "udp-ipv6", HARNESS_TAG_IPV6, NULL, NULL, TCASE_TIMEOUT);
	harness_combo_add_loop_test(tc, echo_udp_reply_source_ipv6_and_ipv4_mapped,
				    HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS);

	tc = harness_tcase(s, "multi", NULL, NULL, NULL, TCASE_TIMEOUT);
	tcase_add_test(tc, echo_two_listeners_in_one_daemon);
	tcase_add_test(tc, echo_activation_fds_matched_by_name_in_any_order);
	tcase_add_test(tc, echo_activation_fds_matched_by_address_without_names);

	tc = harness_tcase(s, "multi-ipv6", HARNESS_TAG_IPV6, NULL, NULL, TCASE_TIMEOUT);
	tcase_add_test(tc, echo_udp_ignores_source_port_of_own_listener);
	tcase_add_test(tc, echo_udp_ipv6_largest_datagram);
	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(echo_suite(), argc, argv);
}
