/* PROXY protocol listeners (SPEC section 10) on every tcp model, with
 * hand-made headers: the client's address from the header everywhere,
 * nothing sent before the header, the bytes after it, every way a header
 * can be wrong, the 5 s limit, balancers that send nothing, health checks.
 * tests/test-haproxy.c puts a real HAProxy in front. */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 120
#define IO_MS HARNESS_IO_TIMEOUT_MS
#define PROXIED "proxy_protocol = true; proxy_from = [ \"127.0.0.0/8\" ]; "
/* SPEC 10: the header within 5 s of the accept. */
#define HEADER_MS 5000
/* How late past HEADER_MS the close may come on a loaded machine. */
#define LATE_MS 4000

static const struct harness_combo *cur;

static void
setup(const struct harness_combo *c)
{
	cur = c;
}

static void
start(struct hdaemon *d, struct hl_listener *l, char *buf, size_t len, const char *service,
      const char *extra)
{
	char conf[512];
	int r;

	snprintf(conf, sizeof(conf), "%s%s", PROXIED, extra ? extra : "");
	*d = (struct hdaemon){ 0 };
	*l = harness_combo_listener(cur, "lb", service, conf, buf, len);
	r = harness_start(d, l, 1, NULL);
	ck_assert_msg(r == 0, "[%s] netechod with '%s' did not start: %s", cur->tcase, conf,
		      strerror(-r));
}

static void
stop_clean(struct hdaemon *d)
{
	int r = harness_stop(d, SIGTERM);

	ck_assert_msg(r == 0, "[%s] netechod stopped with %d, expected exit status 0", cur->tcase,
		      r);
}

/* A connection from a chosen loopback address, as a balancer there. */
static int
connect_from(const char *src, uint16_t port)
{
	int fd = harness_tcp_connect_from(src, port);

	ck_assert_msg(fd >= 0, "[%s] connect from %s to port %u: %s", cur->tcase, src, port,
		      strerror(-fd));
	return fd;
}

static int
connect_ok(uint16_t port)
{
	return connect_from("127.0.0.1", port);
}

static void
send_str(int fd, const char *s)
{
	int r = harness_send_all(fd, s, strlen(s), IO_MS);

	ck_assert_msg(r == 0, "[%s] send: %s", cur->tcase, strerror(-r));
}

static void
send_bytes(int fd, const void *p, size_t n)
{
	int r = harness_send_all(fd, p, n, IO_MS);

	ck_assert_msg(r == 0, "[%s] send: %s", cur->tcase, strerror(-r));
}

/*
 * Send to a connection the server is about to refuse: it may already have
 * closed it, so EPIPE and ECONNRESET are answers too. What counts is
 * expect_closed_silent() after it.
 */
static void
send_refusable(int fd, const char *s)
{
	int r = harness_send_all(fd, s, strlen(s), IO_MS);

	ck_assert_msg(r == 0 || r == -EPIPE || r == -ECONNRESET, "[%s] send: %s", cur->tcase,
		      strerror(-r));
}

/* "PROXY TCP4 SRC 127.0.0.1 SPORT 7\r\n" */
static const char *
v1(char *buf, size_t len, const char *src, unsigned sport)
{
	snprintf(buf, len, "PROXY TCP4 %s 127.0.0.1 %u 7\r\n", src, sport);
	return buf;
}

/* A v2 PROXY header over TCP/IPv4 with one TLV (skipped by netechod). */
static size_t
v2(uint8_t *p, const char *src, unsigned sport)
{
	static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
	struct in_addr a, b = { .s_addr = htonl(INADDR_LOOPBACK) };
	size_t n = 0;

	ck_assert_int_eq(inet_pton(AF_INET, src, &a), 1);
	memcpy(p, sig, 12);
	n = 12;
	p[n++] = 0x21; /* version 2, PROXY */
	p[n++] = 0x11; /* AF_INET, STREAM */
	p[n++] = 0;
	p[n++] = 12 + 7; /* addresses + a 7-byte TLV */
	memcpy(p + n, &a, 4);
	memcpy(p + n + 4, &b, 4);
	n += 8;
	p[n++] = (uint8_t)(sport >> 8);
	p[n++] = (uint8_t)sport;
	p[n++] = 0;
	p[n++] = 7;
	/* PP2_TYPE_AUTHORITY "abcd" */
	p[n++] = 0x02;
	p[n++] = 0;
	p[n++] = 4;
	memcpy(p + n, "abcd", 4);
	n += 4;
	return n;
}

static void
expect_echo(int fd, const char *what, const char *want)
{
	char got[256];
	ssize_t n = harness_recv_exact(fd, got, strlen(want), IO_MS);

	ck_assert_msg(n == (ssize_t)strlen(want) && memcmp(got, want, strlen(want)) == 0,
		      "[%s] %s: expected the echo '%s', got %zd bytes (%s)", cur->tcase, what,
		      want, n, n < 0 ? strerror((int)-n) : "short or different");
}

/* The server closes the connection and never sent a byte. */
static void
expect_closed_silent(int fd, const char *what)
{
	_cleanup_(freep) char *got = NULL;
	ssize_t n = harness_recv_until_eof(fd, &got, 4096, IO_MS + HEADER_MS);

	ck_assert_msg(n == 0 || n == -ECONNRESET,
		      "[%s] %s: expected a close without data, got %zd (%s%.*s)", cur->tcase, what,
		      n, n < 0 ? strerror((int)-n) : "", n > 0 ? (int)MIN(n, 60) : 0,
		      n > 0 ? got : "");
}

/* Read until a line contains want; consume up to the end of that line. */
static void
expect_line(struct harness_reader *r, const char *what, const char *want)
{
	int n = harness_reader_expect_line(r, want, IO_MS);

	ck_assert_msg(n == 0, "[%s] %s: no '%s' (%s), so far '%s'", cur->tcase, what, want,
		      strerror(-n), r->buf);
}

static uint64_t
refused_now(struct hdaemon *d)
{
	struct harness_counters c;
	int r = harness_counters(d, "lb", &c);

	ck_assert_msg(r == 0, "[%s] counters: %s", cur->tcase, strerror(-r));
	return c.refused;
}

/* refused reaches want within IO_MS (refusals are counted when the
 * daemon gets to them). */
static void
expect_refused(struct hdaemon *d, uint64_t want)
{
	uint64_t deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC, got;

	while ((got = refused_now(d)) < want && now_usec() < deadline)
		(void)poll(NULL, 0, 20);
	ck_assert_msg(got == want, "[%s] refused: %" PRIu64 ", expected %" PRIu64, cur->tcase,
		      got, want);
}

static uint16_t
local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	return ntohs(sa.sin_port);
}

/* ---- the header and what follows it ---- */

START_TEST(proxy_echo_after_v1_and_v2_headers)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[512], h[128];
	uint8_t b[128];
	size_t n;
	int fd;

	start(&d, &l, buf, sizeof(buf), "echo", NULL);

	/* Header and data in one segment: the data is the client's. */
	fd = connect_ok(l.port);
	v1(h, sizeof(h), "192.0.2.7", 4711);
	strcat(h, "hello v1\n");
	send_str(fd, h);
	expect_echo(fd, "v1 and data in one segment", "hello v1\n");
	safe_close(fd);

	fd = connect_ok(l.port);
	n = v2(b, "198.51.100.9", 5555);
	memcpy(b + n, "hello v2\n", 9);
	send_bytes(fd, b, n + 9);
	expect_echo(fd, "v2 (with a TLV) and data in one segment", "hello v2\n");
	safe_close(fd);

	/* A header that trickles in, byte by byte, then data. */
	fd = connect_ok(l.port);
	v1(h, sizeof(h), "192.0.2.8", 4712);
	for (size_t i = 0; h[i]; i++) {
		send_bytes(fd, h + i, 1);
		if (i % 8 == 0)
			(void)poll(NULL, 0, 2);
	}
	send_str(fd, "after a trickle\n");
	expect_echo(fd, "v1 byte by byte", "after a trickle\n");
	safe_close(fd);

	fd = connect_ok(l.port);
	n = v2(b, "198.51.100.10", 5556);
	send_bytes(fd, b, 7);
	(void)poll(NULL, 0, 20);
	send_bytes(fd, b + 7, 10);
	(void)poll(NULL, 0, 20);
	memcpy(b + n, "v2 in parts\n", 12);
	send_bytes(fd, b + 17, n - 17 + 12);
	expect_echo(fd, "v2 in three parts", "v2 in parts\n");
	safe_close(fd);

	/* The log names the client and the balancer. */
	ck_assert_msg(harness_wait_log(&d, "192.0.2.7:4711 PROXY=127.0.0.1:", IO_MS),
		      "[%s] no log line with the client and PROXY=", cur->tcase);
	ck_assert_msg(harness_wait_log(&d, "198.51.100.9:5555 PROXY=127.0.0.1:", IO_MS),
		      "[%s] no log line for the v2 client", cur->tcase);
	ck_assert_int_eq(refused_now(&d), 0);
	stop_clean(&d);
}
END_TEST

/* Nothing before the header, not even the chat welcome; then chat knows
 * the client by the header's address. */
START_TEST(proxy_chat_waits_for_the_header_and_names_the_client)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[512], h[128], tmp[64];
	_cleanup_(closep) int a = -1, b = -1;
	struct harness_reader ra = { 0 }, rb = { 0 };
	ssize_t n;

	start(&d, &l, buf, sizeof(buf), "chat", NULL);
	a = connect_ok(l.port);
	v1(h, sizeof(h), "192.0.2.7", 4711);
	send_bytes(a, h, 10); /* half a header */
	/* A second client, through the same accept path: once it has its
	 * welcome, the first one's half header was read too. */
	b = connect_ok(l.port);
	v1(h, sizeof(h), "198.51.100.9", 5555);
	send_str(b, h);
	ra.fd = a;
	rb.fd = b;
	expect_line(&rb, "second client", "* welcome to lb");
	n = recv(a, tmp, sizeof(tmp), MSG_DONTWAIT);
	ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
		      "[%s] the server sent %zd bytes before the header was whole", cur->tcase, n);
	v1(h, sizeof(h), "192.0.2.7", 4711);
	send_str(a, h + 10);
	send_str(a, "alice\n/who\n");
	expect_line(&ra, "welcome after the header", "* welcome to lb");
	expect_line(&ra, "alice joins", "* you are alice@192.0.2.7");
	expect_line(&ra, "/who", "alice@192.0.2.7");
	send_str(b, "bob\n/who\n");
	expect_line(&rb, "/who of bob", "bob@198.51.100.9");
	ck_assert_msg(harness_wait_log(&d, "192.0.2.7:4711 PROXY=127.0.0.1:", IO_MS),
		      "[%s] no log line with the client and PROXY=", cur->tcase);
	a = safe_close(a);
	b = safe_close(b);
	stop_clean(&d);
}
END_TEST

/* ---- refusals ---- */

struct bad_header {
	const char *what;
	const uint8_t *p;
	size_t n;
	bool then_eof; /* the client half-closes after it */
};

static const uint8_t bad_garbage[] = "GET / HTTP/1.0\r\n\r\n";
static const uint8_t bad_v1_port[] = "PROXY TCP4 192.0.2.7 127.0.0.1 65536 7\r\n";
static const uint8_t bad_v1_family[] = "PROXY TCP4 2001:db8::1 127.0.0.1 1 7\r\n";
/* 108 bytes and no CRLF yet: over the 107-byte limit. */
static const uint8_t bad_v1_long[] =
	"PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxx";
static const uint8_t bad_v2_version[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
					  0x55, 0x49, 0x54, 0x0A, 0x31, 0x11, 0x00, 0x0C };
/* Claims 65535 bytes of addresses and TLVs. */
static const uint8_t bad_v2_len[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
				      0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0xFF, 0xFF };
/* TCP over IPv4 needs 12 bytes; it says 4. */
static const uint8_t bad_v2_short[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
					0x54, 0x0A, 0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4 };
static const uint8_t bad_truncated[] = "PROXY TCP4 192.0.2.7 12";

static const struct bad_header bad_headers[] = {
	{ "not a header", bad_garbage, sizeof(bad_garbage) - 1, false },
	{ "v1 port out of range", bad_v1_port, sizeof(bad_v1_port) - 1, false },
	{ "v1 address of another family", bad_v1_family, sizeof(bad_v1_family) - 1, false },
	{ "v1 over 107 bytes", bad_v1_long, sizeof(bad_v1_long) - 1, false },
	{ "v2 version 3", bad_v2_version, sizeof(bad_v2_version), false },
	{ "v2 length over the limit", bad_v2_len, sizeof(bad_v2_len), false },
	{ "v2 length too short for its family", bad_v2_short, sizeof(bad_v2_short), false },
	{ "half a header, then EOF", bad_truncated, sizeof(bad_truncated) - 1, true },
};

/* GET /metrics from listener m: the body, or NULL. */
static char *
scrape(uint16_t port)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	_cleanup_(closep) int fd = connect_ok(port);
	char *got = NULL;
	ssize_t n;

	send_str(fd, req);
	n = harness_recv_until_eof(fd, &got, 1 << 20, IO_MS);
	ck_assert_msg(n > 0, "[%s] scrape: %zd", cur->tcase, n);
	return got;
}

START_TEST(proxy_bad_headers_close_without_data)
{
	struct hdaemon d;
	struct hl_listener l[2];
	char buf[512], mbuf[256], want[128];
	_cleanup_(freep) char *log = NULL, *body = NULL;
	size_t bad = 0;
	int r;

	ck_assert_int_eq(sizeof(bad_v1_long) - 1, 108);
	/* With a metrics listener beside it: the refusals are reason proxy. */
	d = (struct hdaemon){ 0 };
	l[0] = harness_combo_listener(cur, "lb", "chat", PROXIED, buf, sizeof(buf));
	l[1] = harness_combo_listener(harness_combo_find("tcp-poll"), "m", "metrics", NULL, mbuf,
				      sizeof(mbuf));
	r = harness_start(&d, l, 2, NULL);
	ck_assert_msg(r == 0, "[%s] start: %s", cur->tcase, strerror(-r));
	for (size_t i = 0; i < ELEMENTSOF(bad_headers); i++) {
		const struct bad_header *b = &bad_headers[i];
		int fd = connect_ok(l[0].port);

		send_bytes(fd, b->p, b->n);
		/* Data after it must not be served either. */
		if (b->then_eof)
			ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
		else
			(void)send(fd, "alice\n", 6, MSG_NOSIGNAL);
		expect_closed_silent(fd, b->what);
		safe_close(fd);
	}
	expect_refused(&d, ELEMENTSOF(bad_headers));
	log = harness_log_read(&d);
	ck_assert_ptr_nonnull(log);
	for (const char *p = log; (p = strstr(p, "connection refused: bad proxy header")); p++)
		bad++;
	ck_assert_msg(bad == ELEMENTSOF(bad_headers),
		      "[%s] %zu 'bad proxy header' refusals logged, expected %zu", cur->tcase, bad,
		      ELEMENTSOF(bad_headers));
	ck_assert_msg(!strstr(log, "connection opened"),
		      "[%s] a connection with a bad header was served", cur->tcase);
	body = scrape(l[1].port);
	snprintf(want, sizeof(want), "netechod_refused_total{listener=\"lb\",reason=\"proxy\"} %zu\n",
		 ELEMENTSOF(bad_headers));
	ck_assert_msg(strstr(body, want), "[%s] metrics: no '%s' in\n%s", cur->tcase, want, body);
	stop_clean(&d);
}
END_TEST

/* A header from outside proxy_from is not looked at. */
START_TEST(proxy_peer_outside_proxy_from_is_refused)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[512], h[128];
	int fd;

	*(&d) = (struct hdaemon){ 0 };
	{
		char conf[256];
		int r;

		snprintf(conf, sizeof(conf),
			 "proxy_protocol = true; proxy_from = [ \"127.0.0.2/32\", \"10.0.0.0/8\" ]; ");
		l = harness_combo_listener(cur, "lb", "echo", conf, buf, sizeof(buf));
		r = harness_start(&d, &l, 1, NULL);
		ck_assert_msg(r == 0, "[%s] start: %s", cur->tcase, strerror(-r));
	}
	fd = connect_from("127.0.0.1", l.port);
	send_refusable(fd, v1(h, sizeof(h), "192.0.2.7", 4711));
	send_refusable(fd, "hello\n");
	expect_closed_silent(fd, "balancer outside proxy_from");
	safe_close(fd);
	expect_refused(&d, 1);
	ck_assert_msg(harness_wait_log(&d, "connection refused: not a trusted proxy", IO_MS),
		      "[%s] refusal not logged", cur->tcase);

	fd = connect_from("127.0.0.2", l.port);
	send_str(fd, v1(h, sizeof(h), "192.0.2.7", 4711));
	send_str(fd, "hello\n");
	expect_echo(fd, "balancer in proxy_from", "hello\n");
	safe_close(fd);
	stop_clean(&d);
}
END_TEST

/* allow/deny and per_source look at the client, not the balancer. */
START_TEST(proxy_allow_and_per_source_apply_to_the_client)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[512], h[128];
	_cleanup_(closep) int a = -1, b = -1;
	int fd;

	start(&d, &l, buf, sizeof(buf), "echo",
	      "allow = [ \"192.0.2.0/24\" ]; deny = [ \"192.0.2.66/32\" ]; per_source = 1; ");
	a = connect_ok(l.port);
	send_str(a, v1(h, sizeof(h), "192.0.2.7", 1000));
	send_str(a, "first\n");
	expect_echo(a, "192.0.2.7, allowed", "first\n");

	/* The same client again: over per_source, though the balancer's own
	 * address has only one connection so far. */
	fd = connect_ok(l.port);
	send_refusable(fd, v1(h, sizeof(h), "192.0.2.7", 1001));
	send_refusable(fd, "second\n");
	expect_closed_silent(fd, "192.0.2.7 again, per_source = 1");
	safe_close(fd);

	b = connect_ok(l.port);
	send_str(b, v1(h, sizeof(h), "192.0.2.8", 1002));
	send_str(b, "other\n");
	expect_echo(b, "192.0.2.8, another client", "other\n");

	fd = connect_ok(l.port);
	send_refusable(fd, v1(h, sizeof(h), "198.51.100.1", 1003));
	send_refusable(fd, "hello\n");
	expect_closed_silent(fd, "198.51.100.1, not in allow");
	safe_close(fd);

	fd = connect_ok(l.port);
	send_refusable(fd, v1(h, sizeof(h), "192.0.2.66", 1004));
	send_refusable(fd, "hello\n");
	expect_closed_silent(fd, "192.0.2.66, in deny");
	safe_close(fd);

	expect_refused(&d, 3);
	ck_assert_msg(harness_wait_log(&d, "192.0.2.7:1001 PROXY=127.0.0.1:", IO_MS) &&
			      harness_log_contains(&d, "too many connections from this source"),
		      "[%s] per_source refusal not logged with the client and PROXY=", cur->tcase);
	ck_assert_msg(harness_log_contains(&d, "198.51.100.1:1003 PROXY=127.0.0.1:"),
		      "[%s] allow refusal not logged with the client", cur->tcase);

	/* Once the first is gone, its source may come again. */
	a = safe_close(a);
	for (int i = 0;; i++) {
		fd = connect_ok(l.port);
		send_str(fd, v1(h, sizeof(h), "192.0.2.7", 1005));
		send_str(fd, "again\n");
		{
			char got[16];
			ssize_t n = harness_recv_exact(fd, got, 6, IO_MS);

			if (n == 6) {
				ck_assert(memcmp(got, "again\n", 6) == 0);
				safe_close(fd);
				break;
			}
		}
		safe_close(fd);
		/* The close may not have been seen yet: a few more tries. */
		ck_assert_msg(i < 20, "[%s] 192.0.2.7 refused after its connection closed",
			      cur->tcase);
		(void)poll(NULL, 0, 50);
	}
	stop_clean(&d);
}
END_TEST

/* 500 balancer connections that send nothing stall no one; each is
 * closed 5 s after its accept, without data. */
START_TEST(proxy_silent_connections_block_no_one_and_time_out)
{
	enum { SILENT = 500 };
	struct hdaemon d;
	struct hl_listener l;
	char buf[512], h[128];
	int fds[SILENT], fd;
	uint64_t t0, t1;
	struct rlimit rl;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	ck_assert_msg(rl.rlim_cur >= SILENT + 64, "RLIMIT_NOFILE %ju is too low for this test",
		      (uintmax_t)rl.rlim_cur);
	start(&d, &l, buf, sizeof(buf), "echo", "max_clients = 600; ");
	t0 = now_usec();
	for (int i = 0; i < SILENT; i++)
		fds[i] = connect_ok(l.port);
	/* Everyone else is served at once. */
	fd = connect_ok(l.port);
	send_str(fd, v1(h, sizeof(h), "192.0.2.7", 4711));
	send_str(fd, "not blocked\n");
	expect_echo(fd, "a client beside 500 silent ones", "not blocked\n");
	safe_close(fd);
	ck_assert_msg((now_usec() - t0) / USEC_PER_MSEC < HEADER_MS,
		      "[%s] the client was served only after the silent ones timed out",
		      cur->tcase);

	/* The first silent one is closed, not before 5 s (less what the
	 * accept took) and not much after. */
	expect_closed_silent(fds[0], "silent for 5 s");
	t1 = now_usec();
	ck_assert_msg((t1 - t0) / USEC_PER_MSEC >= HEADER_MS - 1000 &&
			      (t1 - t0) / USEC_PER_MSEC <= HEADER_MS + LATE_MS,
		      "[%s] a silent connection was closed after %" PRIu64 " ms, expected about %d",
		      cur->tcase, (t1 - t0) / USEC_PER_MSEC, HEADER_MS);
	for (int i = 1; i < SILENT; i++) {
		expect_closed_silent(fds[i], "silent");
		safe_close(fds[i]);
	}
	safe_close(fds[0]);
	expect_refused(&d, SILENT);
	ck_assert_msg(harness_log_contains(&d, "bad proxy header (none within 5 s)"),
		      "[%s] timeout not logged", cur->tcase);
	stop_clean(&d);
}
END_TEST

/*
 * max_clients counts connections still waiting for their header. Which of
 * three connections is the third is the server's call (with workers, two
 * processes accept side by side), so the test waits for any one of them to
 * be closed without a word: a and b never sent a whole header, and c, if it
 * got in, sees the welcome first.
 */
START_TEST(proxy_max_clients_counts_waiting_connections)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[512], h[128];
	_cleanup_(closep) int a = -1, b = -1, c = -1;
	int *fds[3] = { &a, &b, &c }, gone = -1, fd;
	bool welcomed = false;

	start(&d, &l, buf, sizeof(buf), "chat", "max_clients = 2; ");
	a = connect_ok(l.port);
	b = connect_ok(l.port);
	send_bytes(b, "PROXY", 5);
	c = connect_ok(l.port);
	send_refusable(c, v1(h, sizeof(h), "192.0.2.7", 4711));
	/* Each pass reads something or an end, so 8 passes are plenty. */
	for (int pass = 0; gone < 0; pass++) {
		struct pollfd p[3];
		int n;

		ck_assert_msg(pass < 8, "[%s] no connection refused", cur->tcase);
		for (int i = 0; i < 3; i++)
			p[i] = (struct pollfd){ .fd = *fds[i], .events = POLLIN };
		n = poll(p, 3, IO_MS);
		ck_assert_msg(n > 0, "[%s] none of 3 connections closed, max_clients = 2",
			      cur->tcase);
		for (int i = 0; i < 3 && gone < 0; i++) {
			char got[64];
			ssize_t r;

			if (!p[i].revents)
				continue;
			r = recv(*fds[i], got, sizeof(got), MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno == ECONNRESET)) {
				gone = i;
			} else if (r > 0) {
				/* Only c may hear anything, and only the welcome. */
				ck_assert_msg(i == 2 && (welcomed || (r >= 12 && !memcmp(got, "* welcome to", 12))),
					      "[%s] connection %d: unexpected %.*s", cur->tcase, i,
					      (int)r, got);
				welcomed = true;
			}
		}
	}
	ck_assert_msg(!(gone == 2 && welcomed), "[%s] c was welcomed, then closed", cur->tcase);
	*fds[gone] = safe_close(*fds[gone]);
	expect_refused(&d, 1);
	ck_assert_msg(harness_wait_log(&d, "connection refused: server full", IO_MS),
		      "[%s] server full not logged", cur->tcase);
	/* One of the two waiting goes: room again. */
	if (gone == 0)
		b = safe_close(b);
	else
		a = safe_close(a);
	for (int i = 0;; i++) {
		fd = connect_ok(l.port);
		send_str(fd, v1(h, sizeof(h), "192.0.2.7", 4712));
		{
			char got[32];
			ssize_t n = harness_recv_exact(fd, got, 12, IO_MS);

			safe_close(fd);
			if (n == 12) {
				ck_assert(memcmp(got, "* welcome to", 12) == 0);
				break;
			}
		}
		ck_assert_msg(i < 20, "[%s] still full after a waiting connection left",
			      cur->tcase);
		(void)poll(NULL, 0, 50);
	}
	stop_clean(&d);
}
END_TEST

/* Balancers' health checks (v1 UNKNOWN, v2 LOCAL) are served as from the
 * balancer, and logged only at debug. */
START_TEST(proxy_health_checks_are_served_quietly)
{
	static const uint8_t local[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
					 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00 };
	struct hdaemon d;
	struct hl_listener l;
	char buf[512], h[128], port[16];
	_cleanup_(freep) char *log = NULL;
	int fd, check1, check2;

	start(&d, &l, buf, sizeof(buf), "echo", NULL);
	fd = connect_ok(l.port);
	check1 = local_port(fd);
	send_str(fd, "PROXY UNKNOWN\r\n");
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	{
		_cleanup_(freep) char *got = NULL;
		ssize_t n = harness_recv_until_eof(fd, &got, 64, IO_MS);

		ck_assert_msg(n == 0, "[%s] v1 UNKNOWN then EOF: %zd", cur->tcase, n);
	}
	safe_close(fd);

	fd = connect_ok(l.port);
	check2 = local_port(fd);
	send_bytes(fd, local, sizeof(local));
	send_str(fd, "local\n");
	expect_echo(fd, "v2 LOCAL, served as the balancer", "local\n");
	safe_close(fd);

	/* A client after them: once its close is logged, theirs would be. */
	fd = connect_ok(l.port);
	send_str(fd, v1(h, sizeof(h), "192.0.2.7", 4711));
	send_str(fd, "x\n");
	expect_echo(fd, "client after the checks", "x\n");
	safe_close(fd);
	ck_assert(harness_wait_log(&d, "192.0.2.7:4711 PROXY=127.0.0.1:", IO_MS));
	ck_assert(harness_wait_log(&d, "connection closed (eof)", IO_MS));
	log = harness_log_read(&d);
	ck_assert_ptr_nonnull(log);
	snprintf(port, sizeof(port), ":%d ", check1);
	ck_assert_msg(!strstr(log, port), "[%s] the v1 health check was logged at info:\n%s",
		      cur->tcase, log);
	snprintf(port, sizeof(port), ":%d ", check2);
	ck_assert_msg(!strstr(log, port), "[%s] the v2 health check was logged at info:\n%s",
		      cur->tcase, log);
	ck_assert_msg(!strstr(log, "warning"), "[%s] health checks left a warning:\n%s",
		      cur->tcase, log);
	ck_assert_int_eq(refused_now(&d), 0);
	stop_clean(&d);
}
END_TEST

/* SIGTERM with connections waiting for a header: they go, the daemon exits
 * 0 at once. */
START_TEST(proxy_stop_with_connections_waiting)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[512];
	int fds[3], r;

	start(&d, &l, buf, sizeof(buf), "echo", NULL);
	for (int i = 0; i < 3; i++) {
		fds[i] = connect_ok(l.port);
		send_bytes(fds[i], "PROXY TCP4", 10);
	}
	ck_assert_int_eq(harness_signal(&d, SIGTERM), 0);
	for (int i = 0; i < 3; i++) {
		expect_closed_silent(fds[i], "waiting at stop");
		safe_close(fds[i]);
	}
	r = harness_wait_exit(&d, HARNESS_STOP_TIMEOUT_MS);
	ck_assert_msg(r == 0, "[%s] exit status %d after SIGTERM", cur->tcase, r);
	(void)harness_stop(&d, SIGTERM);
}
END_TEST

static Suite *
proxy_suite(void)
{
	Suite *s = suite_create("proxy");
	TCase *tc;

	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_TCP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, proxy_echo_after_v1_and_v2_headers);
		tcase_add_test(tc, proxy_chat_waits_for_the_header_and_names_the_client);
		tcase_add_test(tc, proxy_bad_headers_close_without_data);
		tcase_add_test(tc, proxy_peer_outside_proxy_from_is_refused);
		tcase_add_test(tc, proxy_allow_and_per_source_apply_to_the_client);
		tcase_add_test(tc, proxy_silent_connections_block_no_one_and_time_out);
		tcase_add_test(tc, proxy_max_clients_counts_waiting_connections);
		tcase_add_test(tc, proxy_health_checks_are_served_quietly);
		tcase_add_test(tc, proxy_stop_with_connections_waiting);
	}
	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(proxy_suite(), argc, argv);
}
