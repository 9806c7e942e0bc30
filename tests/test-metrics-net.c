/* The metrics service over the network (SPEC section 11), its listener on
 * every tcp model: HTTP/1.x as the spec says, every family present and
 * accepted by `promtool check metrics`, and the values moving as the
 * traffic of the other listeners says, in agreement with SIGUSR1. */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 120
#define IO_MS HARNESS_IO_TIMEOUT_MS
#define BODY_MAX (1024 * 1024)

static const struct harness_combo *cur;

static void
setup(const struct harness_combo *c)
{
	cur = c;
}

/* One HTTP response: status, the head, the body (NUL-terminated). */
struct resp {
	int status;
	char head[4096];
	char *body;
	size_t body_len;
};

static void
resp_done(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* Read one response from fd; for HEAD (no_body) the Content-Length is not
 * read. 0 or -errno (-ECONNRESET / 0-byte EOF: -EPIPE). */
static int
read_resp(int fd, struct resp *r, bool no_body)
{
	size_t n = 0, len = 0;
	const char *cl;
	char *end;

	*r = (struct resp){ 0 };
	while (!(end = strstr(r->head, "\r\n\r\n"))) {
		ssize_t k;

		if (n + 1 >= sizeof(r->head))
			return -EMSGSIZE;
		k = harness_recv_timeout(fd, r->head + n, 1, IO_MS);
		if (k < 0)
			return (int)k;
		if (k == 0)
			return -EPIPE;
		n += (size_t)k;
		r->head[n] = '\0';
	}
	end[2] = '\0';
	if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
		return -EBADMSG;
	cl = strstr(r->head, "Content-Length: ");
	if (!cl)
		return -EBADMSG;
	len = strtoul(cl + 16, NULL, 10);
	r->body_len = len;
	r->body = calloc(1, len + 1);
	if (!r->body)
		return -ENOMEM;
	if (no_body)
		return 0;
	if (len && harness_recv_exact(fd, r->body, len, IO_MS) != (ssize_t)len)
		return -EPIPE;
	return 0;
}

static int
connect_ok(uint16_t port)
{
	int fd = harness_tcp_connect(port);

	ck_assert_msg(fd >= 0, "[%s] connect to 127.0.0.1:%u: %s", cur->tcase, port,
		      strerror(-fd));
	return fd;
}

static void
request(int fd, const char *text)
{
	ck_assert_msg(harness_send_all(fd, text, strlen(text), IO_MS) == 0,
		      "[%s] sending a request failed", cur->tcase);
}

/* GET /metrics on a new connection: the body. */
static char *
scrape(uint16_t port)
{
	_cleanup_(closep) int fd = connect_ok(port);
	struct resp r;
	int k;

	request(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	k = read_resp(fd, &r, false);
	ck_assert_msg(k == 0, "[%s] scrape: %s", cur->tcase, strerror(-k));
	ck_assert_msg(r.status == 200, "[%s] scrape: status %d", cur->tcase, r.status);
	ck_assert_msg(strstr(r.head, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
		      "[%s] scrape: wrong Content-Type in\n%s", cur->tcase, r.head);
	return r.body;
}

/* The value of the sample "series" (name and labels as rendered), or -1. */
static long long
sample(const char *body, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
	return -1;
}

/* Where the lines of series' family start in body (its HELP line), for a
 * failure message; body itself when the family is missing. */
static const char *
family_lines(const char *body, const char *series)
{
	size_t n = strcspn(series, "{ ");

	for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, "# HELP ", 7) == 0 && strncmp(p + 7, series, n) == 0 &&
		    p[7 + n] == ' ')
			return p;
	return body;
}

/* Scrape until series has value want, within IO_MS: counters are bumped
 * after the client may already have its answer. */
static void
expect_sample(uint16_t port, const char *series, long long want)
{
	uint64_t deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC;
	long long got;

	for (;;) {
		_cleanup_(freep) char *body = scrape(port);

		got = sample(body, series);
		if (got == want)
			return;
		/* The lines of that family, not the whole body: Check gives up
		 * on a message over 4 KiB (the case exits 2 without a word). */
		ck_assert_msg(now_usec() < deadline, "[%s] %s is %lld, expected %lld\n%.2000s",
			      cur->tcase, series, got, want, family_lines(body, series));
	}
}

/* promtool check metrics < body: exit 0 and nothing said. */
static void
promtool_ok(struct hdaemon *d, const char *body)
{
	char path[HARNESS_PATH_MAX + 16];
	char *argv[] = { "/bin/sh", "-c", NULL, NULL };
	_cleanup_(freep) char *out = NULL, *err = NULL, *cmd = NULL;
	FILE *f;
	int status;

	snprintf(path, sizeof(path), "%s/body.txt", d->dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(body, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_gt(asprintf(&cmd, "promtool check metrics < '%s' 2>&1", path), 0);
	argv[2] = cmd;
	ck_assert_int_eq(harness_run(argv, &out, &err, &status), 0);
	ck_assert_msg(status == 0 && (!out || !out[0]),
		      "[%s] promtool check metrics: status %d: %s", cur->tcase, status,
		      out ? out : "");
}

enum { L_METRICS, L_ECHO, L_UDP, L_CHAT, L_DENIED, L_N };

/* The udp row of the same model (and workers) as the tcp row c. */
static const struct harness_combo *
udp_twin(const struct harness_combo *c)
{
	char name[64];
	const struct harness_combo *u;

	snprintf(name, sizeof(name), "udp-%s", c->label);
	u = harness_combo_find(name);
	ck_assert_msg(u, "[%s] no combination %s", c->tcase, name);
	return u;
}

/* The metrics listener and the listeners it counts, every one of the
 * current combination's model: what the metrics say must hold whichever
 * model did the counting. */
static void
start(struct hdaemon *d, struct hl_listener *ls, char *buf, size_t len, const char *extra)
{
	static char bufs[L_N][256];
	int r;

	*d = (struct hdaemon){ 0 };
	ls[L_METRICS] = harness_combo_listener(cur, "metrics", "metrics", extra, buf, len);
	ls[L_ECHO] = harness_combo_listener(cur, "echo", NULL, NULL, bufs[L_ECHO], sizeof(bufs[0]));
	ls[L_UDP] = harness_combo_listener(udp_twin(cur), "echo-udp", NULL, NULL, bufs[L_UDP],
					   sizeof(bufs[0]));
	ls[L_CHAT] = harness_combo_listener(cur, "lobby", "chat", "rate_limit = 5;", bufs[L_CHAT],
					    sizeof(bufs[0]));
	ls[L_DENIED] = harness_combo_listener(cur, "closed", NULL, "deny = [ \"127.0.0.0/8\" ];",
					      bufs[L_DENIED], sizeof(bufs[0]));
	r = harness_start(d, ls, L_N, NULL);
	ck_assert_msg(r == 0, "[%s] netechod did not start: %s", cur->tcase, strerror(-r));
}

static void
stop_clean(struct hdaemon *d)
{
	int r = harness_stop(d, SIGTERM);

	ck_assert_msg(r == 0, "[%s] netechod stopped with %d", cur->tcase, r);
}

static void
expect_line(int fd, const char *want)
{
	char line[512];
	size_t n = 0;

	for (;;) {
		ssize_t k = harness_recv_timeout(fd, line + n, 1, IO_MS);

		ck_assert_msg(k == 1, "[%s] chat: no line (waiting for '%s')", cur->tcase, want);
		if (line[n] == '\n' || ++n >= sizeof(line) - 1)
			break;
	}
	line[n] = '\0';
	ck_assert_msg(strstr(line, want), "[%s] chat: got '%s', expected '%s'", cur->tcase, line,
		      want);
}

/* Known traffic on every kind of listener, then every family and the
 * values it moved. */
START_TEST(metrics_count_traffic_of_every_listener)
{
	struct hdaemon d;
	struct hl_listener ls[L_N];
	char buf[256], reply[64];
	_cleanup_(freep) char *body = NULL;
	_cleanup_(closep) int alice = -1, bob = -1;
	struct harness_counters hc;
	static const char *const families[] = {
		"netechod_build_info", "netechod_start_time_seconds",
		"netechod_config_last_reload_successful",
		"netechod_config_last_reload_timestamp_seconds", "netechod_listener_info",
		"netechod_connections_active", "netechod_connections_total",
		"netechod_received_bytes_total", "netechod_sent_bytes_total",
		"netechod_datagrams_received_total", "netechod_datagrams_sent_total",
		"netechod_refused_total", "netechod_dropped_total", "netechod_chat_members",
		"netechod_chat_messages_total", "netechod_handler_restarts_total",
		"netechod_backend_up",
	};

	start(&d, ls, buf, sizeof(buf), NULL);
	for (int i = 0; i < 3; i++) {
		_cleanup_(closep) int fd = connect_ok(ls[L_ECHO].port);

		request(fd, "hello");
		ck_assert_int_eq(harness_recv_exact(fd, reply, 5, IO_MS), 5);
	}
	for (int i = 0; i < 2; i++) {
		_cleanup_(closep) int fd = harness_udp_socket(ls[L_UDP].port);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(harness_udp_roundtrip(fd, "ping", 4, reply, sizeof(reply), IO_MS),
				 4);
	}
	{
		_cleanup_(closep) int fd = connect_ok(ls[L_DENIED].port);
		char c;

		ck_assert_int_le(harness_recv_timeout(fd, &c, 1, IO_MS), 0);
	}
	alice = connect_ok(ls[L_CHAT].port);
	expect_line(alice, "* welcome");
	request(alice, "alice\n");
	expect_line(alice, "* you are alice");
	bob = connect_ok(ls[L_CHAT].port);
	expect_line(bob, "* welcome");
	request(bob, "bob\n");
	expect_line(bob, "* you are bob");
	expect_line(alice, "* bob@");
	request(alice, "hi\n");
	expect_line(bob, "<alice> hi");
	expect_sample(ls[L_METRICS].port, "netechod_connections_total{listener=\"echo\"}", 3);
	expect_sample(ls[L_METRICS].port, "netechod_connections_active{listener=\"echo\"}", 0);
	expect_sample(ls[L_METRICS].port, "netechod_received_bytes_total{listener=\"echo\"}", 15);
	expect_sample(ls[L_METRICS].port, "netechod_sent_bytes_total{listener=\"echo\"}", 15);
	expect_sample(ls[L_METRICS].port,
		      "netechod_datagrams_received_total{listener=\"echo-udp\"}", 2);
	expect_sample(ls[L_METRICS].port, "netechod_datagrams_sent_total{listener=\"echo-udp\"}",
		      2);
	expect_sample(ls[L_METRICS].port,
		      "netechod_refused_total{listener=\"closed\",reason=\"deny\"}", 1);
	expect_sample(ls[L_METRICS].port, "netechod_chat_members{listener=\"lobby\"}", 2);
	expect_sample(ls[L_METRICS].port, "netechod_connections_active{listener=\"lobby\"}", 2);
	expect_sample(ls[L_METRICS].port, "netechod_chat_messages_total{listener=\"lobby\"}", 1);
	/* Over rate_limit (5 lines/s from one address, 3 used): some of
	 * these are refused. */
	request(alice, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
	expect_line(alice, "! slow down");
	body = scrape(ls[L_METRICS].port);
	ck_assert_int_ge(sample(body, "netechod_refused_total{listener=\"lobby\",reason=\"rate_limit\"}"), 1);
	for (size_t i = 0; i < ELEMENTSOF(families); i++) {
		char help[128];

		snprintf(help, sizeof(help), "# HELP %s ", families[i]);
		ck_assert_msg(strncmp(body, help, strlen(help)) == 0 ||
				      (snprintf(help, sizeof(help), "\n# HELP %s ", families[i]),
				       strstr(body, help)),
			      "[%s] family %s missing", cur->tcase, families[i]);
	}
	ck_assert_msg(strstr(body, "netechod_build_info{version=\""), "[%s] no version", cur->tcase);
	ck_assert_int_eq(sample(body, "netechod_config_last_reload_successful"), 1);
	ck_assert_msg(strstr(body, "netechod_listener_info{listener=\"metrics\",protocol=\"tcp\",address=\"127.0.0.1\""),
		      "[%s] the metrics listener is not listed", cur->tcase);
	/* This scrape at least (the fork model counts a finished one down
	 * once it reaped the child). */
	ck_assert_int_ge(sample(body, "netechod_connections_active{listener=\"metrics\"}"), 1);
	promtool_ok(&d, body);

	/* The numbers SIGUSR1 logs are the same. */
	ck_assert_int_eq(harness_counters(&d, "echo", &hc), 0);
	ck_assert_uint_eq(hc.conns_total, 3);
	ck_assert_uint_eq(hc.bytes_in, 15);
	ck_assert_int_eq(harness_counters(&d, "closed", &hc), 0);
	ck_assert_uint_eq(hc.refused, 1);
	stop_clean(&d);
}
END_TEST

/* GET, HEAD, 404, 405, 400 and close, keep-alive, HTTP/1.0, and the 8 KiB
 * head limit. */
START_TEST(metrics_speak_http_as_the_spec_says)
{
	struct hdaemon d;
	struct hl_listener ls[L_N];
	char buf[256], big[9000];
	struct resp r;
	uint16_t port;

	start(&d, ls, buf, sizeof(buf), NULL);
	port = ls[L_METRICS].port;
	{
		/* Keep-alive: GET, HEAD (same length, no body), 404, 405 and a
		 * query string, all on one connection. */
		_cleanup_(closep) int fd = connect_ok(port);
		size_t len;

		request(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_ptr_nonnull(strstr(r.body, "# TYPE netechod_connections_total counter\n"));
		len = r.body_len;
		resp_done(&r);
		request(fd, "HEAD /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
		ck_assert_int_eq(read_resp(fd, &r, true), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_int_ge(r.body_len, len);
		resp_done(&r);
		request(fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 404);
		resp_done(&r);
		request(fd, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 405);
		ck_assert_ptr_nonnull(strstr(r.head, "Allow: GET, HEAD\r\n"));
		resp_done(&r);
		/* Pipelined: two requests in one segment, two answers. */
		request(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n");
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 200);
		resp_done(&r);
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 404);
		resp_done(&r);
	}
	{
		/* HTTP/1.0 without keep-alive: the answer, then the close. */
		_cleanup_(closep) int fd = connect_ok(port);
		char c;

		request(fd, "GET /metrics HTTP/1.0\r\n\r\n");
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_ptr_nonnull(strstr(r.head, "Connection: close\r\n"));
		resp_done(&r);
		ck_assert_int_eq(harness_recv_timeout(fd, &c, 1, IO_MS), 0);
	}
	{
		/* Malformed: 400, then the close. */
		_cleanup_(closep) int fd = connect_ok(port);
		char c;

		request(fd, "GET  /metrics HTTP/1.1\r\n\r\n");
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 400);
		resp_done(&r);
		ck_assert_int_eq(harness_recv_timeout(fd, &c, 1, IO_MS), 0);
	}
	{
		/* A head over 8 KiB: 400, then the close. */
		_cleanup_(closep) int fd = connect_ok(port);
		char c;
		int n = snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ");

		memset(big + n, 'a', sizeof(big) - (size_t)n - 1);
		big[sizeof(big) - 1] = '\0';
		request(fd, big);
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 400);
		resp_done(&r);
		ck_assert_int_eq(harness_recv_timeout(fd, &c, 1, IO_MS), 0);
	}
	{
		/* Half-close after the request: still answered. */
		_cleanup_(closep) int fd = connect_ok(port);

		request(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
		ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
		ck_assert_int_eq(read_resp(fd, &r, false), 0);
		ck_assert_int_eq(r.status, 200);
		resp_done(&r);
	}
	stop_clean(&d);
}
END_TEST

/* max_clients and idle_timeout apply: a third connection is refused
 * (reason max_clients), a silent one is closed. */
START_TEST(metrics_apply_max_clients_and_idle_timeout)
{
	struct hdaemon d;
	struct hl_listener ls[L_N];
	char buf[256], c;
	_cleanup_(closep) int a = -1, b = -1, x = -1;
	struct resp r;

	start(&d, ls, buf, sizeof(buf), "max_clients = 2; idle_timeout = 1;");
	a = connect_ok(ls[L_METRICS].port);
	b = connect_ok(ls[L_METRICS].port);
	/* Both admitted once each has an answer. */
	request(a, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(read_resp(a, &r, false), 0);
	resp_done(&r);
	request(b, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(read_resp(b, &r, false), 0);
	resp_done(&r);
	x = connect_ok(ls[L_METRICS].port);
	ck_assert_int_le(harness_recv_timeout(x, &c, 1, IO_MS), 0);
	request(a, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(read_resp(a, &r, false), 0);
	ck_assert_int_eq(sample(r.body, "netechod_refused_total{listener=\"metrics\",reason=\"max_clients\"}"), 1);
	resp_done(&r);
	/* Silent for idle_timeout: both closed. */
	ck_assert_int_eq(harness_recv_timeout(b, &c, 1, 3000), 0);
	ck_assert_msg(harness_wait_log(&d, "connection closed (idle timeout)", IO_MS),
		      "[%s] no idle timeout", cur->tcase);
	stop_clean(&d);
}
END_TEST

/* ---- udp: drops by reason, chat members ---- */

enum { U_METRICS, U_ECHO, U_CHAT, U_N };

static void
start_udp(struct hdaemon *d, struct hl_listener *ls)
{
	static char bufs[U_N][256];
	int r;

	*d = (struct hdaemon){ 0 };
	ls[U_METRICS] = (struct hl_listener){ .name = "metrics", .protocol = "tcp",
					      .model = "poll", .service = "metrics" };
	ls[U_ECHO] = harness_combo_listener(cur, "echo-udp", NULL, "rate_limit = 3;", bufs[U_ECHO],
					    sizeof(bufs[0]));
	ls[U_CHAT] = harness_combo_listener(cur, "room", "chat", NULL, bufs[U_CHAT],
					    sizeof(bufs[0]));
	r = harness_start(d, ls, U_N, NULL);
	ck_assert_msg(r == 0, "[%s] netechod did not start: %s", cur->tcase, strerror(-r));
}

/* One datagram from fd: its text without the CRLF. */
static void
udp_line(int fd, char *line, size_t len, const char *what)
{
	ssize_t k = harness_recv_timeout(fd, line, len - 1, IO_MS);

	ck_assert_msg(k > 0, "[%s] %s: no datagram (%s)", cur->tcase, what,
		      k < 0 ? strerror((int)-k) : "empty");
	line[k] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
}

/* A udp chat member through the whole handshake (SPEC 5): the name, the
 * token, /join. */
static int
udp_member(uint16_t port, const char *name)
{
	int fd = harness_udp_socket(port);
	char line[256], token[17], want[64];

	ck_assert_int_ge(fd, 0);
	request(fd, name);
	udp_line(fd, line, sizeof(line), "token");
	snprintf(want, sizeof(want), "* to join as %s, send: /join ", name);
	ck_assert_msg(strncmp(line, want, strlen(want)) == 0 &&
			      strlen(line + strlen(want)) == 16,
		      "[%s] no token in '%s'", cur->tcase, line);
	memcpy(token, line + strlen(want), 17);
	snprintf(line, sizeof(line), "/join %s", token);
	request(fd, line);
	udp_line(fd, line, sizeof(line), "join");
	snprintf(want, sizeof(want), "* you are %s@", name);
	ck_assert_msg(strncmp(line, want, strlen(want)) == 0, "[%s] joined: '%s'", cur->tcase,
		      line);
	return fd;
}

/* Datagrams from guarded ports are dropped{reason="guard"}, those over
 * rate_limit dropped{reason="rate_limit"}, every one received; joined udp
 * chat peers are members and active, their lines messages. */
START_TEST(metrics_count_udp_drops_and_chat_members)
{
	static const uint16_t guarded[] = { 1900, 5353 };
	struct hdaemon d;
	struct hl_listener ls[U_N];
	char buf[64];
	_cleanup_(closep) int alice = -1, bob = -1, burst = -1;
	_cleanup_(freep) char *body = NULL;
	long long limited, answered;

	start_udp(&d, ls);
	for (size_t i = 0; i < ELEMENTSOF(guarded); i++) {
		_cleanup_(closep) int fd = harness_udp_socket_addr("127.0.0.1", guarded[i],
								   ls[U_ECHO].port);

		ck_assert_msg(fd >= 0, "[%s] cannot bind source port %u: %s", cur->tcase,
			      guarded[i], strerror(-fd));
		request(fd, "ping");
	}
	expect_sample(ls[U_METRICS].port,
		      "netechod_dropped_total{listener=\"echo-udp\",reason=\"guard\"}", 2);

	/* Ten at once from one source against rate_limit = 3 per second:
	 * each one is either answered or dropped for the rate. */
	burst = harness_udp_socket(ls[U_ECHO].port);
	ck_assert_int_ge(burst, 0);
	for (int i = 0; i < 10; i++)
		request(burst, "ping");
	expect_sample(ls[U_METRICS].port,
		      "netechod_datagrams_received_total{listener=\"echo-udp\"}", 12);
	body = scrape(ls[U_METRICS].port);
	limited = sample(body, "netechod_dropped_total{listener=\"echo-udp\",reason=\"rate_limit\"}");
	answered = sample(body, "netechod_datagrams_sent_total{listener=\"echo-udp\"}");
	ck_assert_msg(limited >= 1 && answered >= 1 && limited + answered == 10,
		      "[%s] 10 datagrams: %lld dropped for the rate, %lld answered", cur->tcase,
		      limited, answered);
	for (long long i = 0; i < answered; i++)
		udp_line(burst, buf, sizeof(buf), "an answer within the rate");
	ck_assert_int_eq(sample(body, "netechod_dropped_total{listener=\"echo-udp\",reason=\"guard\"}"),
			 2);
	promtool_ok(&d, body);

	alice = udp_member(ls[U_CHAT].port, "alice");
	bob = udp_member(ls[U_CHAT].port, "bob");
	expect_sample(ls[U_METRICS].port, "netechod_chat_members{listener=\"room\"}", 2);
	expect_sample(ls[U_METRICS].port, "netechod_connections_active{listener=\"room\"}", 2);
	request(alice, "hi");
	udp_line(bob, buf, sizeof(buf), "alice's line");
	ck_assert_str_eq(buf, "<alice> hi");
	expect_sample(ls[U_METRICS].port, "netechod_chat_messages_total{listener=\"room\"}", 1);
	request(alice, "/quit");
	udp_line(bob, buf, sizeof(buf), "alice's leaving");
	ck_assert_str_eq(buf, "* alice left; 1 online");
	expect_sample(ls[U_METRICS].port, "netechod_chat_members{listener=\"room\"}", 1);
	expect_sample(ls[U_METRICS].port, "netechod_connections_active{listener=\"room\"}", 1);
	stop_clean(&d);
}
END_TEST

/* ---- the dispatcher: reloads and handler restarts ---- */

static const char *const models[] = { "fork", "thread", "select", "poll", "epoll" };
#define N_MODELS ELEMENTSOF(models)

static double
sample_f(const char *body, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

static void
write_conf(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	ck_assert_msg(f, "%s: %s", path, strerror(errno));
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

static void
reload(struct hdaemon *d)
{
	size_t from = harness_notify_count(d);
	int r;

	ck_assert_int_eq(harness_signal(d, SIGHUP), 0);
	r = harness_wait_notify_from(d, "RELOADING=1", from, IO_MS);
	ck_assert_msg(r >= 0, "no RELOADING=1 after SIGHUP");
	r = harness_wait_notify_from(d, "READY=1", (size_t)r + 1, IO_MS);
	ck_assert_msg(r >= 0, "no READY=1 after the reload");
}

/* A good reload, a bad one, a good one again: last_reload_successful and
 * its timestamp follow. A killed handler of each model counts one restart
 * for its listener, and none for the others. */
START_TEST(metrics_count_reloads_and_restarts)
{
	struct hdaemon d = { 0 };
	struct hl_listener ls[1 + N_MODELS];
	char series[128];
	double t_start, t_reload, t_bad;
	uint64_t before;
	int r;

	cur = &(struct harness_combo){ .tcase = "dispatcher" };
	ls[0] = (struct hl_listener){ .name = "metrics", .protocol = "tcp", .model = "poll",
				      .service = "metrics" };
	for (size_t i = 0; i < N_MODELS; i++)
		ls[1 + i] = (struct hl_listener){ .name = models[i], .protocol = "tcp",
						  .model = models[i] };
	r = harness_start(&d, ls, ELEMENTSOF(ls), NULL);
	ck_assert_msg(r == 0, "netechod did not start: %s", strerror(-r));
	{
		_cleanup_(freep) char *body = scrape(ls[0].port);

		t_start = sample_f(body, "netechod_start_time_seconds");
		ck_assert_int_eq(sample(body, "netechod_config_last_reload_successful"), 1);
		ck_assert(sample_f(body, "netechod_config_last_reload_timestamp_seconds") == t_start);
		for (size_t i = 0; i < N_MODELS; i++) {
			snprintf(series, sizeof(series),
				 "netechod_handler_restarts_total{listener=\"%s\"}", models[i]);
			ck_assert_int_eq(sample(body, series), 0);
		}
	}
	ck_assert(t_start > 1.6e9);

	/* The same file again: a good reload. */
	before = realtime_usec();
	reload(&d);
	{
		_cleanup_(freep) char *body = scrape(ls[0].port);

		t_reload = sample_f(body, "netechod_config_last_reload_timestamp_seconds");
		ck_assert_int_eq(sample(body, "netechod_config_last_reload_successful"), 1);
		ck_assert_msg(t_reload * 1e6 >= (double)before - 1e3 && t_reload >= t_start,
			      "reload timestamp %.6f, SIGHUP at %.6f, start %.6f", t_reload,
			      (double)before / 1e6, t_start);
	}
	/* A broken file: the reload fails, the running config stays. */
	write_conf(d.conf_path, "listeners = ( { name = \"x\"; protocol = \"tcp\"; } );\n");
	reload(&d);
	{
		_cleanup_(freep) char *body = scrape(ls[0].port);

		t_bad = sample_f(body, "netechod_config_last_reload_timestamp_seconds");
		ck_assert_int_eq(sample(body, "netechod_config_last_reload_successful"), 0);
		ck_assert_msg(t_bad >= t_reload, "failed reload at %.6f before the good one %.6f",
			      t_bad, t_reload);
		promtool_ok(&d, body);
	}
	ck_assert_int_eq(harness_write_config(&d, ls, ELEMENTSOF(ls), NULL), 0);
	reload(&d);
	expect_sample(ls[0].port, "netechod_config_last_reload_successful", 1);

	/* Kill every model's handler once. */
	for (size_t i = 0; i < N_MODELS; i++) {
		pid_t px = harness_handler_pid(d.pid, "tcp", ls[1 + i].port);

		ck_assert_msg(px > 0, "no handler process for %s", models[i]);
		ck_assert_int_eq(kill(px, SIGKILL), 0);
	}
	for (size_t i = 0; i < N_MODELS; i++) {
		char reply[8];
		_cleanup_(closep) int fd = -1;

		snprintf(series, sizeof(series), "netechod_handler_restarts_total{listener=\"%s\"}",
			 models[i]);
		expect_sample(ls[0].port, series, 1);
		/* It serves again (the connection waits in the backlog until
		 * the new handler takes the socket). */
		fd = connect_ok(ls[1 + i].port);
		request(fd, "back");
		ck_assert_int_eq(harness_recv_exact(fd, reply, 4, 2 * IO_MS), 4);
	}
	expect_sample(ls[0].port, "netechod_handler_restarts_total{listener=\"metrics\"}", 0);
	stop_clean(&d);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("metrics-net");
	TCase *tc;

	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_TCP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, metrics_count_traffic_of_every_listener);
		tcase_add_test(tc, metrics_speak_http_as_the_spec_says);
		tcase_add_test(tc, metrics_apply_max_clients_and_idle_timeout);
	}
	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, metrics_count_udp_drops_and_chat_members);
	}
	tc = harness_tcase(s, "dispatcher", NULL, NULL, NULL, TCASE_TIMEOUT);
	tcase_add_test(tc, metrics_count_reloads_and_restarts);
	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(metrics_suite(), argc, argv);
}
