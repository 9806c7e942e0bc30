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
		ck_assert_msg(now_usec() < deadline, "[%s] %s is %lld, expected %lld\n%s",
			      cur->tcase, series, got, want, body);
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

static void
start(struct hdaemon *d, struct hl_listener *ls, char *buf, size_t len, const char *extra)
{
	int r;

	*d = (struct hdaemon){ 0 };
	ls[L_METRICS] = harness_combo_listener(cur, "metrics", "metrics", extra, buf, len);
	ls[L_ECHO] = (struct hl_listener){ .name = "echo", .protocol = "tcp", .model = "poll" };
	ls[L_UDP] = (struct hl_listener){ .name = "echo-udp", .protocol = "udp", .model = "select" };
	ls[L_CHAT] = (struct hl_listener){ .name = "lobby", .protocol = "tcp", .model = "thread",
					   .service = "chat", .extra = "rate_limit = 5;" };
	ls[L_DENIED] = (struct hl_listener){ .name = "closed", .protocol = "tcp", .model = "epoll",
					     .extra = "deny = [ \"127.0.0.0/8\" ];" };
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
	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(metrics_suite(), argc, argv);
}
