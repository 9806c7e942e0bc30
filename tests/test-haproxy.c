/* A real HAProxy (Debian's haproxy) in front of netechod, on every tcp
 * model: send-proxy (v1) and send-proxy-v2, echo and chat through it with
 * the real client's address, allow/deny and per_source applied to the
 * client, and HAProxy's health checks served without a line at info.
 * HAProxy runs in the foreground (-db) on loopback ports from its own
 * config in the test's directory and is stopped by its pid. Clients bind
 * 127.0.0.5 and friends so that the client HAProxy reports differs from
 * HAProxy's own address. Without haproxy the binary exits 77 (skip). */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 90
#define IO_MS HARNESS_IO_TIMEOUT_MS

static const struct harness_combo *cur;
static const char *haproxy_bin;

struct haproxy {
	pid_t pid;
	char dir[64];
	uint16_t v1_port, v2_port; /* frontends: send-proxy, send-proxy-v2 */
};

static void
setup(const struct harness_combo *c)
{
	cur = c;
}

static const char *
find_haproxy(void)
{
	static const char *const where[] = { "/usr/sbin/haproxy", "/usr/bin/haproxy",
					     "/usr/local/sbin/haproxy" };

	for (size_t i = 0; i < ELEMENTSOF(where); i++)
		if (access(where[i], X_OK) == 0)
			return where[i];
	return NULL;
}

/* Is something listening on 127.0.0.1:port (a free port we picked)? A
 * bind() tells, where a connect() to HAProxy would reach netechod and
 * count there. */
static bool
port_taken(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	ck_assert_int_ge(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	safe_close(fd);
	return r < 0 && errno == EADDRINUSE;
}

/* HAProxy with two frontends in front of backend_port: v1 and v2. With
 * checks, every 100 ms, v1 without check-send-proxy (HAProxy then sends a
 * v1 line naming its own address), v2 with it (a LOCAL header). A test of
 * per_source goes without: the checks of both backends come from HAProxy's
 * own address, per_source counts them (netechod.conf(5)), so two at once
 * are one over per_source = 1, a refusal the test did not make. */
static void
haproxy_start(struct haproxy *h, uint16_t backend_port, bool checks)
{
	const char *chk = checks ? " check inter 100ms" : "";
	char path[128], log[128];
	FILE *f;
	uint64_t deadline;

	*h = (struct haproxy){ 0 };
	snprintf(h->dir, sizeof(h->dir), "/tmp/netechod-haproxy.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(h->dir));
	ck_assert_int_eq(harness_free_port(SOCK_STREAM, "127.0.0.1", &h->v1_port), 0);
	ck_assert_int_eq(harness_free_port(SOCK_STREAM, "127.0.0.1", &h->v2_port), 0);
	snprintf(path, sizeof(path), "%s/haproxy.cfg", h->dir);
	f = fopen(path, "we");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"global\n"
		"  maxconn 200\n"
		"defaults\n"
		"  mode tcp\n"
		"  timeout connect 2s\n"
		"  timeout client 20s\n"
		"  timeout server 20s\n"
		"frontend v1\n"
		"  bind 127.0.0.1:%u\n"
		"  default_backend nv1\n"
		"backend nv1\n"
		"  server n1 127.0.0.1:%u send-proxy%s\n"
		"frontend v2\n"
		"  bind 127.0.0.1:%u\n"
		"  default_backend nv2\n"
		"backend nv2\n"
		"  server n2 127.0.0.1:%u send-proxy-v2%s%s\n",
		h->v1_port, backend_port, chk, h->v2_port, backend_port, chk,
		checks ? " check-send-proxy" : "");
	ck_assert_int_eq(fclose(f), 0);
	snprintf(log, sizeof(log), "%s/haproxy.log", h->dir);
	h->pid = fork();
	ck_assert_int_ge(h->pid, 0);
	if (h->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd >= 0) {
			(void)dup2(fd, STDOUT_FILENO);
			(void)dup2(fd, STDERR_FILENO);
		}
		execl(haproxy_bin, "haproxy", "-db", "-f", path, (char *)NULL);
		_exit(127);
	}
	/* Up when both frontends accept. */
	deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC;
	while (!(port_taken(h->v1_port) && port_taken(h->v2_port))) {
		int status;

		ck_assert_msg(waitpid(h->pid, &status, WNOHANG) == 0,
			      "[%s] haproxy exited at start (see %s)", cur->tcase, log);
		ck_assert_msg(now_usec() < deadline, "[%s] haproxy did not listen within %d ms",
			      cur->tcase, IO_MS);
		(void)poll(NULL, 0, 20);
	}
}

static void
haproxy_stop(struct haproxy *h)
{
	char cmd[128];
	int status;

	if (h->pid > 0) {
		(void)kill(h->pid, SIGTERM);
		(void)waitpid(h->pid, &status, 0);
		h->pid = 0;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	if (h->dir[0])
		(void)system(cmd);
}

static void
netechod_start(struct hdaemon *d, struct hl_listener *l, char *buf, size_t len,
	       const char *service, const char *extra)
{
	char conf[512];
	int r;

	snprintf(conf, sizeof(conf), "proxy_protocol = true; proxy_from = [ \"127.0.0.1/32\" ]; %s",
		 extra ? extra : "");
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

/* A client at src (a loopback address) of HAProxy's frontend port. */
static int
client(const char *src, uint16_t port)
{
	int fd = harness_tcp_connect_from(src, port);

	ck_assert_msg(fd >= 0, "[%s] connect from %s to haproxy port %u: %s", cur->tcase, src,
		      port, strerror(-fd));
	return fd;
}

static void
send_str(int fd, const char *s)
{
	int r = harness_send_all(fd, s, strlen(s), IO_MS);

	ck_assert_msg(r == 0, "[%s] send: %s", cur->tcase, strerror(-r));
}

static void
expect_echo(int fd, const char *what, const char *want)
{
	char got[256];
	ssize_t n = harness_recv_exact(fd, got, strlen(want), IO_MS);

	ck_assert_msg(n == (ssize_t)strlen(want) && memcmp(got, want, strlen(want)) == 0,
		      "[%s] %s: expected the echo '%s', got %zd (%s)", cur->tcase, what, want, n,
		      n < 0 ? strerror((int)-n) : "short or different");
}

/* HAProxy closes the client's side once netechod closed its own. */
static void
expect_closed_silent(int fd, const char *what)
{
	_cleanup_(freep) char *got = NULL;
	ssize_t n = harness_recv_until_eof(fd, &got, 4096, IO_MS);

	ck_assert_msg(n == 0 || n == -ECONNRESET,
		      "[%s] %s: expected a close without data, got %zd", cur->tcase, what, n);
}

/* Read until a line contains want (whatever came before it is dropped). */
static void
expect_line(struct harness_reader *r, const char *what, const char *want)
{
	int n = harness_reader_expect_line(r, want, IO_MS);

	ck_assert_msg(n == 0, "[%s] %s: no '%s' (%s), so far '%s'", cur->tcase, what, want,
		      strerror(-n), r->buf);
}

START_TEST(haproxy_echo_and_chat_see_the_real_client)
{
	struct hdaemon d;
	struct hl_listener l;
	struct haproxy h;
	struct harness_reader ra = { 0 }, rb = { 0 };
	char buf[512];
	int fd, a, b;

	/* Echo through both frontends. */
	netechod_start(&d, &l, buf, sizeof(buf), "echo", NULL);
	haproxy_start(&h, l.port, true);
	fd = client("127.0.0.5", h.v1_port);
	send_str(fd, "through send-proxy\n");
	expect_echo(fd, "echo via v1", "through send-proxy\n");
	safe_close(fd);
	fd = client("127.0.0.6", h.v2_port);
	send_str(fd, "through send-proxy-v2\n");
	expect_echo(fd, "echo via v2", "through send-proxy-v2\n");
	safe_close(fd);
	ck_assert_msg(harness_wait_log(&d, "lb: 127.0.0.5:", IO_MS) &&
			      harness_wait_log(&d, "lb: 127.0.0.6:", IO_MS),
		      "[%s] the log does not name the real clients", cur->tcase);
	ck_assert_msg(harness_log_contains(&d, " PROXY=127.0.0.1:"),
		      "[%s] the log does not name the balancer", cur->tcase);
	haproxy_stop(&h);
	stop_clean(&d);

	/* Chat: HOST and /who are the clients'. */
	netechod_start(&d, &l, buf, sizeof(buf), "chat", NULL);
	haproxy_start(&h, l.port, true);
	a = client("127.0.0.5", h.v1_port);
	b = client("127.0.0.6", h.v2_port);
	ra.fd = a;
	rb.fd = b;
	expect_line(&ra, "alice's welcome", "* welcome to lb");
	send_str(a, "alice\n");
	expect_line(&ra, "alice named", "* you are alice@127.0.0.5");
	expect_line(&rb, "bob's welcome", "* welcome to lb");
	send_str(b, "bob\n/who\n");
	expect_line(&rb, "bob named", "* you are bob@127.0.0.6");
	expect_line(&rb, "/who", "alice@127.0.0.5");
	send_str(b, "hello alice\n");
	expect_line(&ra, "bob's line", "<bob> hello alice");
	safe_close(a);
	safe_close(b);
	haproxy_stop(&h);
	stop_clean(&d);
}
END_TEST

START_TEST(haproxy_allow_and_per_source_apply_to_the_client)
{
	struct hdaemon d;
	struct hl_listener l;
	struct haproxy h;
	char buf[512];
	struct harness_counters c;
	int a, fd;
	uint64_t deadline;

	netechod_start(&d, &l, buf, sizeof(buf), "echo",
		       "allow = [ \"127.0.0.5/32\", \"127.0.0.6/32\" ]; per_source = 1; ");
	haproxy_start(&h, l.port, false);
	a = client("127.0.0.5", h.v1_port);
	send_str(a, "first\n");
	expect_echo(a, "127.0.0.5, allowed", "first\n");
	/* The same client through the other frontend: over per_source,
	 * although HAProxy's own address has two connections open. */
	fd = client("127.0.0.5", h.v2_port);
	send_str(fd, "second\n");
	expect_closed_silent(fd, "127.0.0.5 again, per_source = 1");
	safe_close(fd);
	fd = client("127.0.0.6", h.v2_port);
	send_str(fd, "other\n");
	expect_echo(fd, "127.0.0.6, allowed", "other\n");
	safe_close(fd);
	fd = client("127.0.0.7", h.v1_port);
	send_str(fd, "stranger\n");
	expect_closed_silent(fd, "127.0.0.7, not in allow");
	safe_close(fd);
	safe_close(a);
	deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC;
	do
		ck_assert_int_eq(harness_counters(&d, "lb", &c), 0);
	while (c.refused < 2 && now_usec() < deadline && poll(NULL, 0, 20) == 0);
	ck_assert_msg(c.refused == 2, "[%s] refused %" PRIu64 ", expected 2", cur->tcase,
		      c.refused);
	ck_assert_msg(harness_log_contains(&d, "connection refused: too many connections from this source") &&
			      harness_log_contains(&d, "connection refused: not allowed"),
		      "[%s] refusals not logged", cur->tcase);
	ck_assert_msg(harness_log_contains(&d, "127.0.0.7:"),
		      "[%s] the allow refusal does not name the client", cur->tcase);
	haproxy_stop(&h);
	stop_clean(&d);
}
END_TEST

/* Checks every 100 ms on both backends: served (counted), but not one
 * line at info, and no warning. */
START_TEST(haproxy_health_checks_make_no_noise)
{
	struct hdaemon d;
	struct hl_listener l;
	struct haproxy h;
	char buf[512];
	struct harness_counters c;
	_cleanup_(freep) char *log = NULL;
	uint64_t deadline;

	netechod_start(&d, &l, buf, sizeof(buf), "chat", "allow = [ \"192.0.2.0/24\" ]; ");
	haproxy_start(&h, l.port, true);
	deadline = now_usec() + (uint64_t)IO_MS * 2 * USEC_PER_MSEC;
	do
		ck_assert_int_eq(harness_counters(&d, "lb", &c), 0);
	while (c.conns_total < 10 && now_usec() < deadline && poll(NULL, 0, 50) == 0);
	ck_assert_msg(c.conns_total >= 10, "[%s] %" PRIu64 " health checks served in %d ms",
		      cur->tcase, c.conns_total, IO_MS * 2);
	ck_assert_msg(c.refused == 0, "[%s] %" PRIu64 " health checks refused", cur->tcase,
		      c.refused);
	/* The log as it is while HAProxy runs: stopping it aborts a check in
	 * flight, a connection closed before its header, which is a refusal
	 * like any other (netechod.conf(5), PROXY PROTOCOL). */
	log = harness_log_read(&d);
	haproxy_stop(&h);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(!strstr(log, "connection opened") && !strstr(log, "connection closed"),
		      "[%s] health checks logged at info:\n%.2000s", cur->tcase, log);
	ck_assert_msg(!strstr(log, "warning"), "[%s] health checks left warnings:\n%.2000s",
		      cur->tcase, log);
	stop_clean(&d);
}
END_TEST

static Suite *
haproxy_suite(void)
{
	Suite *s = suite_create("haproxy");
	TCase *tc;

	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_TCP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, haproxy_echo_and_chat_see_the_real_client);
		tcase_add_test(tc, haproxy_allow_and_per_source_apply_to_the_client);
		tcase_add_test(tc, haproxy_health_checks_make_no_noise);
	}
	return s;
}

int
main(int argc, char **argv)
{
	haproxy_bin = find_haproxy();
	if (!haproxy_bin) {
		printf("haproxy is not installed (Debian: apt-get install haproxy): skipped\n");
		return HARNESS_EXIT_SKIP;
	}
	return harness_main(haproxy_suite(), argc, argv);
}
