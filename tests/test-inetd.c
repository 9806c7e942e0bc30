/* discard and chargen over the network (SPEC section 9), on every model:
 * tcp discard and chargen on each tcp combination, udp discard on each udp
 * one. Silence is proven by the counters (SIGUSR1): netechod has read what
 * was sent and sent nothing. */

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>

#include "expect.h"
#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 90
#define IO_MS HARNESS_IO_TIMEOUT_MS
#define LINE_BYTES 74
#define PERIOD 95

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
	int r;

	*d = (struct hdaemon){ 0 };
	*l = harness_combo_listener(cur, service, service, extra, buf, len);
	r = harness_start(d, l, 1, NULL);
	ck_assert_msg(r == 0, "[%s] netechod with service %s '%s' did not start: %s", cur->tcase,
		      service, extra ? extra : "", strerror(-r));
}

static void
stop_clean(struct hdaemon *d)
{
	int r = harness_stop(d, SIGTERM);

	ck_assert_msg(r == 0, "[%s] netechod stopped with %d (%s), expected exit status 0",
		      cur->tcase, r, r < 0 ? strerror(-r) : "exit status");
}

static int
connect_ok(uint16_t port)
{
	int fd = harness_tcp_connect(port);

	ck_assert_msg(fd >= 0, "[%s] connect to 127.0.0.1:%u: %s", cur->tcase, port,
		      strerror(-fd));
	return fd;
}

/* Counters of listener once conns_now is back to 0, conns_total counts
 * the one connection and bytes_in reached min_in: every connection was
 * served to its end. (The fork model counts a connection in the listener
 * process after fork() returns there, which can be after the child has
 * served it whole: conns_now 0 alone is no proof.) */
static struct harness_counters
counters_settled(struct hdaemon *d, const char *listener, uint64_t min_in)
{
	uint64_t deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC;
	struct harness_counters c;

	for (;;) {
		int r = harness_counters(d, listener, &c);

		ck_assert_msg(r == 0, "[%s] counters of %s: %s", cur->tcase, listener,
			      strerror(-r));
		if ((c.conns_now == 0 && c.conns_total >= 1 && c.bytes_in >= min_in) ||
		    now_usec() >= deadline)
			break;
		(void)poll(NULL, 0, 10);
	}
	ck_assert_msg(c.conns_now == 0 && c.conns_total >= 1 && c.bytes_in >= min_in,
		      "[%s] %s: after %d ms %" PRIu64 " connections open of %" PRIu64 ", %" PRIu64
		      " bytes in (want 0 of >= 1, >= %" PRIu64 ")",
		      cur->tcase, listener, IO_MS, c.conns_now, c.conns_total, c.bytes_in, min_in);
	return c;
}

/* ---- discard ---- */

/* Everything is read and nothing ever comes back, also after a
 * half-close: then the server closes. */
START_TEST(discard_tcp_reads_everything_sends_nothing)
{
	enum { TOTAL = 1 << 20 };
	struct hdaemon d;
	struct hl_listener l;
	char buf[256];
	_cleanup_(freep) uint8_t *data = malloc(TOTAL);
	_cleanup_(freep) char *back = NULL;
	_cleanup_(closep) int fd = -1;
	struct harness_counters c;
	ssize_t n;

	ck_assert(data);
	harness_fill_pattern(data, TOTAL, 9);
	start(&d, &l, buf, sizeof(buf), "discard", NULL);
	fd = connect_ok(l.port);
	/* 1 MiB without reading: more than any buffer, so the server must
	 * keep reading. */
	ck_assert_int_eq(harness_send_all(fd, data, TOTAL, IO_MS), 0);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	n = harness_recv_until_eof(fd, &back, 1024, IO_MS);
	ck_assert_msg(n == 0, "[%s] discard: expected EOF and nothing, got %zd bytes", cur->tcase,
		      n);
	c = counters_settled(&d, "discard", TOTAL);
	ck_assert_msg(c.bytes_in == TOTAL && c.bytes_out == 0 && c.conns_total == 1,
		      "[%s] discard: counters in %" PRIu64 " out %" PRIu64 " total %" PRIu64
		      ", want %d, 0, 1",
		      cur->tcase, c.bytes_in, c.bytes_out, c.conns_total, TOTAL);
	stop_clean(&d);
}
END_TEST

/* max_clients, allow/deny and idle_timeout apply as to echo. */
START_TEST(discard_tcp_limits)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[256], x;
	_cleanup_(closep) int a = -1, b = -1;
	struct harness_counters c;
	uint64_t t0;
	ssize_t n;

	start(&d, &l, buf, sizeof(buf), "discard", "max_clients = 1; idle_timeout = 1;");
	a = connect_ok(l.port);
	ck_assert_int_eq(harness_send_all(a, "x", 1, IO_MS), 0);
	/* Served: the byte was counted. */
	for (int i = 0; i < 500; i++) {
		ck_assert_int_eq(harness_counters(&d, "discard", &c), 0);
		if (c.bytes_in == 1)
			break;
		(void)poll(NULL, 0, 10);
	}
	ck_assert_msg(c.bytes_in == 1, "[%s] discard: first byte not counted", cur->tcase);
	b = connect_ok(l.port);
	n = harness_recv_timeout(b, &x, 1, IO_MS);
	ck_assert_msg(n == 0 || n == -ECONNRESET,
		      "[%s] discard max_clients = 1: second client not closed (%zd)", cur->tcase, n);
	/* The first one, silent, is closed by idle_timeout. */
	t0 = now_usec();
	n = harness_recv_timeout(a, &x, 1, IO_MS);
	ck_assert_msg(n == 0 || n == -ECONNRESET,
		      "[%s] discard idle_timeout = 1: silent client not closed (%zd)", cur->tcase, n);
	ck_assert_msg(now_usec() - t0 >= 500 * USEC_PER_MSEC,
		      "[%s] discard: closed before idle_timeout", cur->tcase);
	ck_assert_msg(harness_wait_log(&d, "connection closed (idle timeout)", IO_MS),
		      "[%s] discard: no idle timeout close in the log", cur->tcase);
	c = counters_settled(&d, "discard", 1);
	ck_assert_msg(c.refused == 1 && c.bytes_out == 0,
		      "[%s] discard: refused %" PRIu64 " out %" PRIu64 ", want 1, 0", cur->tcase,
		      c.refused, c.bytes_out);
	stop_clean(&d);
}
END_TEST

START_TEST(discard_udp_never_replies)
{
	enum { N = 20, SIZE = 100 };
	struct hdaemon d;
	struct hl_listener l;
	char buf[256], data[SIZE], got[64];
	_cleanup_(closep) int fd = -1;
	struct harness_counters c;
	uint64_t deadline;
	ssize_t n;

	start(&d, &l, buf, sizeof(buf), "discard", NULL);
	fd = harness_udp_socket(l.port);
	ck_assert_int_ge(fd, 0);
	memset(data, 'd', sizeof(data));
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(send(fd, data, i % 2 ? sizeof(data) : 0, 0),
				 i % 2 ? (ssize_t)sizeof(data) : 0);
	/* Every byte read (empty datagrams too, before the last full one). */
	deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC;
	do {
		ck_assert_int_eq(harness_counters(&d, "discard", &c), 0);
		if (c.bytes_in >= N / 2 * SIZE)
			break;
		(void)poll(NULL, 0, 10);
	} while (now_usec() < deadline);
	ck_assert_msg(c.bytes_in == N / 2 * SIZE, "[%s] udp discard: %" PRIu64 " bytes in, want %d",
		      cur->tcase, c.bytes_in, N / 2 * SIZE);
	/* A reply would have been sent before the count moved on; one more
	 * counter round trip, then nothing may be waiting. */
	ck_assert_int_eq(harness_counters(&d, "discard", &c), 0);
	n = recv(fd, got, sizeof(got), MSG_DONTWAIT);
	ck_assert_msg(n < 0 && errno == EAGAIN, "[%s] udp discard replied (%zd bytes)", cur->tcase,
		      n);
	ck_assert_msg(c.bytes_out == 0 && c.dropped == 0,
		      "[%s] udp discard: out %" PRIu64 " dropped %" PRIu64, cur->tcase, c.bytes_out,
		      c.dropped);
	stop_clean(&d);
}
END_TEST

/* ---- chargen ---- */

/* Line k of the RFC 864 pattern. */
static void
chargen_line(unsigned k, char line[LINE_BYTES])
{
	for (unsigned j = 0; j < 72; j++)
		line[j] = (char)(32 + (k + j) % PERIOD);
	line[72] = '\r';
	line[73] = '\n';
}

/* The last of the three numbers in a tcp_rmem/tcp_wmem sysctl. */
static uint64_t
sysctl_max(const char *path)
{
	unsigned long long a, b, c;
	FILE *f = fopen(path, "re");
	int n;

	ck_assert_msg(f, "cannot read %s", path);
	n = fscanf(f, "%llu %llu %llu", &a, &b, &c);
	fclose(f);
	ck_assert_int_eq(n, 3);
	return c;
}

/* Read n bytes and check them against the pattern from byte *pos of the
 * stream on; *pos moves on. */
static void
chargen_expect(int fd, size_t n, uint64_t *pos, const char *what)
{
	char buf[8192], line[LINE_BYTES];

	while (n > 0) {
		size_t want = MIN(n, sizeof(buf));
		ssize_t got = harness_recv_exact(fd, buf, want, IO_MS);

		ck_assert_msg(got == (ssize_t)want, "[%s] chargen %s: read %zd of %zu at byte %" PRIu64,
			      cur->tcase, what, got, want, *pos);
		for (size_t i = 0; i < want; i++, (*pos)++) {
			if (*pos % LINE_BYTES == 0 || i == 0)
				chargen_line((unsigned)(*pos / LINE_BYTES % PERIOD), line);
			HARNESS_EXPECT(buf[i] == line[*pos % LINE_BYTES],
				      "[%s] chargen %s: byte %" PRIu64 " (line %" PRIu64
				      ", column %" PRIu64 ") is 0x%02x, want 0x%02x",
				      cur->tcase, what, *pos, *pos / LINE_BYTES, *pos % LINE_BYTES,
				      (unsigned char)buf[i], (unsigned char)line[*pos % LINE_BYTES]);
		}
		n -= want;
	}
}

/* The pattern from line 0, across several periods, while the client also
 * sends (thrown away, counted), and after its half-close. */
START_TEST(chargen_tcp_pattern_and_input_discarded)
{
	enum { SENT = 100000 };
	struct hdaemon d;
	struct hl_listener l;
	char buf[256];
	_cleanup_(freep) uint8_t *junk = malloc(SENT);
	_cleanup_(closep) int fd = -1;
	struct harness_counters c;
	uint64_t pos = 0;

	ck_assert(junk);
	memset(junk, 'j', SENT);
	start(&d, &l, buf, sizeof(buf), "chargen", NULL);
	fd = connect_ok(l.port);
	chargen_expect(fd, 3 * PERIOD * LINE_BYTES + 17, &pos, "first periods");
	for (size_t off = 0; off < SENT; off += 10000) {
		ck_assert_int_eq(harness_send_all(fd, junk + off, 10000, IO_MS), 0);
		chargen_expect(fd, 20000, &pos, "while the client sends");
	}
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	/* RFC 864: it goes on until the client is gone. Read on until the
	 * server has read (and discarded) all we sent: a client that closes
	 * first resets the connection with input still unread, and on
	 * loopback all of the above can be over before the server's first
	 * read. */
	{
		uint64_t deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC;

		do {
			chargen_expect(fd, 64 * 1024, &pos, "after the client's half-close");
			ck_assert_int_eq(harness_counters(&d, "chargen", &c), 0);
		} while (c.bytes_in < SENT && now_usec() < deadline);
	}
	closep(&fd);
	c = counters_settled(&d, "chargen", SENT);
	ck_assert_msg(c.bytes_in == SENT && c.bytes_out >= pos && c.conns_total == 1,
		      "[%s] chargen: counters in %" PRIu64 " out %" PRIu64 " total %" PRIu64
		      ", want %d, >= %" PRIu64 ", 1",
		      cur->tcase, c.bytes_in, c.bytes_out, c.conns_total, SENT, pos);
	stop_clean(&d);
}
END_TEST

/* A client that stops reading holds the server at its bounded buffer; when
 * it reads again the stream goes on intact. Several at once are served
 * side by side. */
START_TEST(chargen_tcp_paused_reader_resumes_intact)
{
	enum { N = 4 };
	struct hdaemon d;
	struct hl_listener l;
	char buf[256];
	int fds[N];
	uint64_t pos[N] = { 0 }, bound;
	struct harness_counters c1, c2;

	start(&d, &l, buf, sizeof(buf), "chargen", NULL);
	/* Default socket buffers: a tiny SO_RCVBUF would make the server's
	 * TCP wait on its zero-window probe back-off after the pause. */
	for (int i = 0; i < N; i++) {
		fds[i] = connect_ok(l.port);
		chargen_expect(fds[i], 1000, &pos[i], "before the pause");
	}
	/* Paused: the server's output stops growing once the buffers are
	 * full. Two readings of the counters, the second after the
	 * first settled, must agree. */
	for (int tries = 0;; tries++) {
		ck_assert_int_eq(harness_counters(&d, "chargen", &c1), 0);
		ck_assert_int_eq(harness_counters(&d, "chargen", &c2), 0);
		if (c1.bytes_out == c2.bytes_out)
			break;
		ck_assert_msg(tries < 200, "[%s] chargen: output keeps growing without a reader (%" PRIu64 ")",
			      cur->tcase, c2.bytes_out);
	}
	/* What the kernel can hold per connection (the server's send and the
	 * client's receive buffer at their largest) plus the session's 64
	 * KiB, and what the clients read. */
	bound = N * (sysctl_max("/proc/sys/net/ipv4/tcp_wmem") +
		     sysctl_max("/proc/sys/net/ipv4/tcp_rmem") + 64 * 1024 + 1000);
	ck_assert_msg(c2.bytes_out <= bound,
		      "[%s] chargen: %" PRIu64 " bytes out to 4 clients that read 1000 each, more than %" PRIu64,
		      cur->tcase, c2.bytes_out, bound);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < N; i++)
			chargen_expect(fds[i], 50000, &pos[i], "after the pause");
	for (int i = 0; i < N; i++)
		close(fds[i]);
	stop_clean(&d);
}
END_TEST

/* idle_timeout: a client that neither reads nor writes is closed; one that
 * keeps reading is not, however long it takes. */
START_TEST(chargen_tcp_idle_timeout_means_neither_read_nor_written)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[256];
	_cleanup_(closep) int reader = -1, idle = -1;
	uint64_t pos = 0, until;

	start(&d, &l, buf, sizeof(buf), "chargen", "idle_timeout = 1;");
	idle = connect_ok(l.port);
	reader = connect_ok(l.port);
	/* 2.5 idle_timeouts of steady reading. */
	until = now_usec() + 2500 * USEC_PER_MSEC;
	while (now_usec() < until)
		chargen_expect(reader, 4096, &pos, "a steady reader");
	ck_assert_msg(harness_wait_log(&d, "connection closed (idle timeout)", IO_MS),
		      "[%s] chargen: the client that reads nothing was not closed", cur->tcase);
	/* Exactly one was: the reader goes on. */
	chargen_expect(reader, 4096, &pos, "a steady reader after the other's timeout");
	{
		_cleanup_(freep) char *log = harness_log_read(&d);
		const char *p = log ? strstr(log, "connection closed (idle timeout)") : NULL;

		ck_assert_msg(p && !strstr(p + 1, "connection closed (idle timeout)"),
			      "[%s] chargen: more than one idle timeout close", cur->tcase);
	}
	stop_clean(&d);
}
END_TEST

/* SIGTERM with a chargen client connected: the stream ends and the daemon
 * exits 0 within shutdown_timeout. */
START_TEST(chargen_tcp_clean_stop)
{
	struct hdaemon d;
	struct hl_listener l;
	char buf[256], tmp[65536];
	_cleanup_(closep) int fd = -1;
	uint64_t pos = 0, deadline;
	ssize_t n;
	int r;

	start(&d, &l, buf, sizeof(buf), "chargen", NULL);
	fd = connect_ok(l.port);
	chargen_expect(fd, 10000, &pos, "before the stop");
	ck_assert_int_eq(harness_signal(&d, SIGTERM), 0);
	/* Read until the server closes, bounded. */
	deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC;
	do
		n = harness_recv_timeout(fd, tmp, sizeof(tmp), IO_MS);
	while (n > 0 && now_usec() < deadline);
	ck_assert_msg(n == 0 || n == -ECONNRESET, "[%s] chargen: stream did not end on SIGTERM (%zd)",
		      cur->tcase, n);
	r = harness_wait_exit(&d, HARNESS_STOP_TIMEOUT_MS);
	ck_assert_msg(r == 0, "[%s] chargen: exit status %d after SIGTERM", cur->tcase, r);
	ck_assert_msg(harness_log_contains(&d, "connection closed (server stopping)"),
		      "[%s] chargen: close not logged as server stopping", cur->tcase);
	(void)harness_stop(&d, SIGTERM);
}
END_TEST

static Suite *
inetd_suite(void)
{
	Suite *s = suite_create("inetd");
	TCase *tc;

	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_TCP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, discard_tcp_reads_everything_sends_nothing);
		tcase_add_test(tc, discard_tcp_limits);
		tcase_add_test(tc, chargen_tcp_pattern_and_input_discarded);
		tcase_add_test(tc, chargen_tcp_paused_reader_resumes_intact);
		tcase_add_test(tc, chargen_tcp_idle_timeout_means_neither_read_nor_written);
		tcase_add_test(tc, chargen_tcp_clean_stop);
	}
	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, discard_udp_never_replies);
	}
	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(inetd_suite(), argc, argv);
}
