/* Abuse and limits, end to end (SPEC sections 3, 4 and 5): access lists,
 * per_source, max_clients, idle_timeout, descriptor exhaustion, resets,
 * clients that never read, the UDP loop and reflection guard, rate_limit,
 * and garbage. Every check runs against the real netechod under the
 * harness, once per concurrency model where the behaviour applies: TCase
 * "tcp-poll" runs the TCP checks against model poll, and so on (the
 * harness's matrix, without its multi-worker rows); each test gets the
 * model from the TCase's combination and repeats its name in every message.
 *
 * Sources: 127.0.0.1, plus 127.0.0.2 as a second loopback source (Linux
 * routes all of 127.0.0.0/8 to lo; a check that needs it fails where it
 * cannot be bound), and ::1 in the cases tagged ipv6 (meson test
 * abuse-ipv6, skipped without it); source port 1023 in abuse-root. Every wait
 * has a deadline; nothing sleeps to synchronize. The one fixed wait is the
 * one-second window over which the CPU time of a handler out of file
 * descriptors is measured, and the second a rate limit takes to refill. */

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 120
#define IO_MS HARNESS_IO_TIMEOUT_MS
/* Bound every stop: a test never waits the default 5 s for a drain. */
#define GLOBAL "shutdown_timeout = 1;"
#define SECOND_SOURCE "127.0.0.2"

/* Name of the running combination, for messages: "tcp-poll". */
static const char *cur;

/* The fixture of a combination's TCase (harness_combo_tcase()). */
static void
use_combo(const struct harness_combo *c)
{
	cur = c->tcase;
}

/* The model the running test is to use: its combination's. */
static const char *
combo_model(void)
{
	const struct harness_combo *c = harness_combo_current();

	ck_assert_msg(c, "a test of the matrix runs outside its TCase");
	return c->model;
}

/* ---- daemon ---- */

static void
start(struct hdaemon *d, struct hl_listener *ls, size_t n)
{
	int r;

	*d = (struct hdaemon){ 0 };
	r = harness_start(d, ls, n, GLOBAL);
	ck_assert_msg(r == 0, "[%s] netechod did not start: %s", cur, strerror(-r));
}

static void
stop_clean(struct hdaemon *d)
{
	int r = harness_stop(d, SIGTERM);

	ck_assert_msg(r == 0, "[%s] netechod stopped with %d (%s), expected exit status 0", cur, r,
		      r < 0 ? strerror(-r) : "exit status");
}

/* ---- /proc ---- */

/* Parent pid and utime+stime (clock ticks) from /proc/PID/stat. */
static int
proc_stat(pid_t pid, pid_t *ret_ppid, uint64_t *ret_ticks)
{
	char path[64], buf[1024], *p;
	unsigned long long utime = 0, stime = 0;
	int ppid = 0, n, fd;
	ssize_t k;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	k = read(fd, buf, sizeof(buf) - 1);
	safe_close(fd);
	if (k <= 0)
		return -EIO;
	buf[k] = 0;
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	/* Fields 3 (state) to 15 (stime), counted from after the comm. */
	n = sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ppid, &utime,
		   &stime);
	if (n != 3)
		return -EIO;
	if (ret_ppid)
		*ret_ppid = ppid;
	if (ret_ticks)
		*ret_ticks = utime + stime;
	return 0;
}

/* Children of ppid, sorted; returns how many (at most max). */
static size_t
children_of(pid_t ppid, pid_t *ret, size_t max)
{
	DIR *dir = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	ck_assert_ptr_nonnull(dir);
	while ((de = readdir(dir)) && n < max) {
		pid_t pid, parent;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)strtol(de->d_name, NULL, 10);
		if (proc_stat(pid, &parent, NULL) == 0 && parent == ppid)
			ret[n++] = pid;
	}
	closedir(dir);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && ret[j - 1] > ret[j]; j--) {
			pid_t t = ret[j];
			ret[j] = ret[j - 1];
			ret[j - 1] = t;
		}
	return n;
}

/* The handler processes of netechod: its children, one per listener. */
struct pidset {
	pid_t pid[16];
	size_t n;
};

static struct pidset
handlers_of(struct hdaemon *d)
{
	struct pidset s;

	s.n = children_of(d->pid, s.pid, ELEMENTSOF(s.pid));
	return s;
}

/* Same handlers as before: none crashed or was restarted. */
static void
expect_same_handlers(struct hdaemon *d, const struct pidset *before, const char *what)
{
	struct pidset now = handlers_of(d);

	ck_assert_msg(harness_running(d), "[%s] %s: netechod exited (status %d)", cur, what,
		      d->exit_status);
	ck_assert_msg(now.n == before->n && memcmp(now.pid, before->pid,
						   before->n * sizeof(pid_t)) == 0,
		      "[%s] %s: the handler processes changed (%zu before, first %d; %zu now, first %d): one crashed and was restarted",
		      cur, what, before->n, before->n ? (int)before->pid[0] : 0, now.n,
		      now.n ? (int)now.pid[0] : 0);
	ck_assert_msg(!harness_log_contains(d, "killed by signal") &&
			      !harness_log_contains(d, "restarting in"),
		      "[%s] %s: the log reports a killed or restarted process", cur, what);
}

/* Open descriptors of pid. */
static int
count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

static long
rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* ---- counters (SIGUSR1) ---- */

/* Ask for the counters and read listener's "refused N, dropped N". */
static void
counters(struct hdaemon *d, const char *listener, uint64_t *ret_refused, uint64_t *ret_dropped)
{
	struct harness_counters k;
	int r = harness_counters(d, listener, &k);

	ck_assert_msg(r == 0, "[%s] no counters for listener %s: %s", cur, listener, strerror(-r));
	*ret_refused = k.refused;
	*ret_dropped = k.dropped;
}

/* netechod has read and discarded (refused or dropped) at least min
 * datagrams on listener: what proves a silence without waiting for one. */
static struct harness_counters
wait_discarded(struct hdaemon *d, const char *listener, uint64_t min)
{
	struct harness_counters k = { 0 };
	int r = harness_wait_discarded(d, listener, min, IO_MS, &k);

	ck_assert_msg(r == 0, "[%s] listener %s discarded %llu datagrams, expected %llu: %s", cur,
		      listener, (unsigned long long)(k.refused + k.dropped),
		      (unsigned long long)min, strerror(-r));
	return k;
}

/* ---- clients ---- */

static void
set_io_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_MS / 1000, .tv_usec = (IO_MS % 1000) * 1000 };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int
sockaddr_in_of(const char *ip, uint16_t port, union sockaddr_any *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (inet_pton(AF_INET, ip, &ret->in.sin_addr) == 1) {
		ret->in.sin_family = AF_INET;
		ret->in.sin_port = htons(port);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &ret->in6.sin6_addr) == 1) {
		ret->in6.sin6_family = AF_INET6;
		ret->in6.sin6_port = htons(port);
		return 0;
	}
	return -EINVAL;
}

/* A socket bound to src:src_port and connected to dst:port. reuse sets
 * SO_REUSEADDR and SO_REUSEPORT before the bind. -errno on failure. */
static int
socket_from(int type, const char *src, uint16_t src_port, const char *dst, uint16_t port,
	    bool reuse)
{
	_cleanup_(closep) int fd = -1;
	union sockaddr_any s, t;
	int one = 1;

	if (sockaddr_in_of(src, src_port, &s) < 0 || sockaddr_in_of(dst, port, &t) < 0)
		return -EINVAL;
	fd = socket(s.sa.sa_family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (reuse && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0))
		return -errno;
	if (bind(fd, &s.sa, sockaddr_len(&s)) < 0)
		return -errno;
	set_io_timeouts(fd);
	if (connect(fd, &t.sa, sockaddr_len(&t)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

/* Linux routes all of 127.0.0.0/8 to lo: a host where 127.0.0.2 cannot
 * be a source fails the checks that need it rather than passing them. */
static void
need_second_source(void)
{
	int fd = socket_from(SOCK_DGRAM, SECOND_SOURCE, 0, "127.0.0.1", 9, false);

	ck_assert_msg(fd >= 0, "[%s] cannot use %s as a source: %s", cur, SECOND_SOURCE,
		      strerror(-fd));
	safe_close(fd);
}

static int
tcp_from(const char *src, const char *dst, uint16_t port)
{
	int fd = socket_from(SOCK_STREAM, src, 0, dst, port, false);

	ck_assert_msg(fd >= 0, "[%s] connect from %s to %s port %u: %s", cur, src, dst, port,
		      strerror(-fd));
	return fd;
}

static int
tcp_connect_ok(uint16_t port)
{
	return tcp_from("127.0.0.1", "127.0.0.1", port);
}

/* One small round trip: true when echoed, false when closed or reset. */
static bool
tcp_try_echo(int fd, const char *msg)
{
	size_t len = strlen(msg);
	char got[64];
	ssize_t n;

	ck_assert_uint_lt(len, sizeof(got));
	if (harness_send_all(fd, msg, len, IO_MS) < 0)
		return false;
	n = harness_recv_exact(fd, got, len, IO_MS);
	ck_assert_msg(n >= 0 || n == -ECONNRESET || n == -EPIPE,
		      "[%s] '%s': neither an echo nor a close within %d ms (%s)", cur, msg, IO_MS,
		      strerror((int)-n));
	return n == (ssize_t)len && memcmp(got, msg, len) == 0;
}

static void
expect_served(int fd, const char *what)
{
	ck_assert_msg(tcp_try_echo(fd, what), "[%s] %s: expected an echo, the connection was closed",
		      cur, what);
}

/* Closed (or reset) without one byte of echo. */
static void
expect_refused(int fd, const char *what)
{
	char got[16];
	ssize_t n;

	(void)harness_send_all(fd, "refuse me", 9, IO_MS);
	n = harness_recv_timeout(fd, got, sizeof(got), IO_MS);
	ck_assert_msg(n == 0 || n == -ECONNRESET,
		      "[%s] %s: expected a close without echo, got %s (%zd)", cur, what,
		      n > 0 ? "an echo" : n == -ETIMEDOUT ? "no answer at all" : strerror((int)-n),
		      n);
}

/* A slot freed by a close is seen by the server asynchronously: try a new
 * client from src until one is served (bounded). */
static void
expect_served_again(uint16_t port, const char *src, const char *what)
{
	uint64_t deadline = now_usec() + 5 * USEC_PER_SEC;
	bool served = false;

	while (!served && now_usec() < deadline) {
		_cleanup_(closep) int fd = tcp_from(src, "127.0.0.1", port);

		served = tcp_try_echo(fd, "again");
		if (!served)
			(void)poll(NULL, 0, 20); /* retry pacing */
	}
	ck_assert_msg(served, "[%s] %s: no new client from %s was served within 5 s", cur, what,
		      src);
}

/* Read a CRLF-terminated line (chat) into buf. */
static void
expect_line_prefix(int fd, const char *prefix, const char *what)
{
	char buf[512];
	size_t len = 0;

	while (len < sizeof(buf) - 1) {
		ssize_t n = harness_recv_timeout(fd, buf + len, 1, IO_MS);

		ck_assert_msg(n == 1, "[%s] %s: line cut after '%.*s' (%s)", cur, what, (int)len, buf,
			      n == 0 ? "EOF" : strerror((int)-n));
		len++;
		if (len >= 2 && buf[len - 2] == '\r' && buf[len - 1] == '\n')
			break;
	}
	buf[len] = 0;
	ck_assert_msg(strncmp(buf, prefix, strlen(prefix)) == 0, "[%s] %s: expected '%s...', got '%s'",
		      cur, what, prefix, buf);
}

static int
udp_from(const char *src, uint16_t src_port, uint16_t port, bool reuse)
{
	return socket_from(SOCK_DGRAM, src, src_port, "127.0.0.1", port, reuse);
}

static int
udp_ok(uint16_t port)
{
	int fd = udp_from("127.0.0.1", 0, port, false);

	ck_assert_msg(fd >= 0, "[%s] udp socket: %s", cur, strerror(-fd));
	return fd;
}

static void
udp_expect_echo(int fd, const char *msg, const char *what)
{
	char got[128];
	ssize_t n = harness_udp_roundtrip(fd, msg, strlen(msg), got, sizeof(got), IO_MS);

	ck_assert_msg(n == (ssize_t)strlen(msg) && memcmp(got, msg, strlen(msg)) == 0,
		      "[%s] %s: expected the datagram back, got %zd (%s)", cur, what, n,
		      n < 0 ? strerror((int)-n) : "other bytes");
}

/* After a flood the server's receive queue may still be full, and a
 * datagram that finds it full is lost: UDP promises nothing. Serving
 * again means answering one of several tries, within IO_MS. */
static ssize_t
udp_roundtrip_retrying(int fd, const char *msg, char *got, size_t got_size)
{
	uint64_t deadline = now_usec() + IO_MS * USEC_PER_MSEC;
	ssize_t n;

	do
		n = harness_udp_roundtrip(fd, msg, strlen(msg), got, got_size, 250);
	while (n == -ETIMEDOUT && now_usec() < deadline);
	return n;
}

/* fds must stay silent for timeout_ms, all watched at once. */
static void
udp_expect_silence(const int *fds, size_t n, int timeout_ms, const char *what)
{
	struct pollfd pfd[16];
	int r;

	ck_assert(n <= ELEMENTSOF(pfd));
	for (size_t i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	r = poll(pfd, (nfds_t)n, timeout_ms);
	ck_assert_int_ge(r, 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(!(pfd[i].revents & POLLIN), "[%s] %s: datagram %zu was answered", cur,
			      what, i);
}

/* Replies on fd until timeout_ms of silence, at most max. */
static int
udp_count_replies(int fd, int max, int timeout_ms)
{
	char got[64];
	int n = 0;

	while (n < max && harness_recv_timeout(fd, got, sizeof(got), timeout_ms) >= 0)
		n++;
	return n;
}

static void
raise_nofile(rlim_t want, bool *ret_ok)
{
	struct rlimit rl;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	*ret_ok = rl.rlim_cur >= want;
	/* Fail rather than pass untested: raise the hard limit (ulimit -Hn). */
	ck_assert_msg(*ret_ok, "[%s] RLIMIT_NOFILE is %llu (hard %llu), below the %llu needed",
		      cur, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
		      (unsigned long long)want);
}

/* ================= TCP, every model ================= */

START_TEST(abuse_tcp_allow_and_deny_by_source)
{
	const char *model = combo_model();
	struct hl_listener ls[2] = {
		{ .name = "allow1", .protocol = "tcp", .model = model,
		  .extra = "allow = [ \"127.0.0.1/32\" ];" },
		{ .name = "denywins", .protocol = "tcp", .model = model,
		  .extra = "allow = [ \"127.0.0.0/8\" ]; deny = [ \"127.0.0.2/32\" ];" },
	};
	struct hdaemon d;

	need_second_source();
	start(&d, ls, 2);
	for (size_t i = 0; i < 2; i++) {
		_cleanup_(closep) int other = tcp_from(SECOND_SOURCE, "127.0.0.1", ls[i].port);
		_cleanup_(closep) int ok = tcp_connect_ok(ls[i].port);
		char what[96];

		snprintf(what, sizeof(what), "listener %s, source %s", ls[i].name, SECOND_SOURCE);
		expect_refused(other, what);
		snprintf(what, sizeof(what), "listener %s, source 127.0.0.1", ls[i].name);
		expect_served(ok, what);
	}
	ck_assert_msg(harness_wait_log(&d, "not allowed", IO_MS),
		      "[%s] refused sources were not logged", cur);
	stop_clean(&d);
}
END_TEST

START_TEST(abuse_tcp_ipv4_mapped_sources_get_ipv4_rules)
{
	const char *model = combo_model();
	/* "*" is one dual-stack socket: IPv4 clients arrive as ::ffff:a.b.c.d.
	 * The deny entry is written IPv4-mapped and must act as IPv4 too. */
	struct hl_listener l = {
		.name = "mapped", .protocol = "tcp", .model = model, .address = "*", .no_fd = true,
		.extra = "allow = [ \"127.0.0.0/8\" ]; deny = [ \"::ffff:127.0.0.2/128\" ];",
	};
	_cleanup_(closep) int v4 = -1, v6 = -1, other = -1;
	struct hdaemon d;
	int r;

	need_second_source();
	r = harness_free_port(SOCK_STREAM, "localhost", &l.port);
	ck_assert_msg(r == 0, "[%s] no free port on localhost: %s", cur, strerror(-r));
	start(&d, &l, 1);
	v4 = tcp_connect_ok(l.port);
	expect_served(v4, "127.0.0.1 through a dual-stack listener");
	other = tcp_from(SECOND_SOURCE, "127.0.0.1", l.port);
	expect_refused(other, "::ffff:127.0.0.2, denied as ::ffff:127.0.0.2/128");
	v6 = tcp_from("::1", "::1", l.port);
	expect_refused(v6, "::1, outside the IPv4-only allow list");
	stop_clean(&d);
}
END_TEST

START_TEST(abuse_tcp_per_source_refuses_third_from_one_address)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "persrc", .protocol = "tcp", .model = model,
				 .extra = "per_source = 2;" };
	_cleanup_(closep) int c1 = -1, c2 = -1, c3 = -1, c4 = -1;
	uint64_t refused, dropped;
	struct hdaemon d;

	need_second_source();
	start(&d, &l, 1);
	c1 = tcp_connect_ok(l.port);
	expect_served(c1, "1st from 127.0.0.1");
	c2 = tcp_connect_ok(l.port);
	expect_served(c2, "2nd from 127.0.0.1");
	c3 = tcp_connect_ok(l.port);
	expect_refused(c3, "3rd from 127.0.0.1 with per_source = 2");
	c4 = tcp_from(SECOND_SOURCE, "127.0.0.1", l.port);
	expect_served(c4, "1st from " SECOND_SOURCE " while 127.0.0.1 is at its limit");
	expect_served(c1, "1st from 127.0.0.1 after the refusal");
	counters(&d, "persrc", &refused, &dropped);
	ck_assert_msg(refused >= 1, "[%s] refused counter %" PRIu64 " after a per_source refusal",
		      cur, refused);

	c1 = safe_close(c1);
	c3 = safe_close(c3);
	expect_served_again(l.port, "127.0.0.1", "after one of two from 127.0.0.1 left");
	stop_clean(&d);
}
END_TEST

START_TEST(abuse_tcp_max_clients_refuses_then_recovers)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "maxc", .protocol = "tcp", .model = model,
				 .extra = "max_clients = 3;" };
	int c[4] = { -1, -1, -1, -1 };
	uint64_t refused, dropped;
	struct hdaemon d;

	start(&d, &l, 1);
	for (int i = 0; i < 3; i++) {
		char what[32];

		snprintf(what, sizeof(what), "client %d of 3", i + 1);
		c[i] = tcp_connect_ok(l.port);
		expect_served(c[i], what);
	}
	c[3] = tcp_connect_ok(l.port);
	expect_refused(c[3], "4th client with max_clients = 3");
	for (int i = 0; i < 3; i++)
		expect_served(c[i], "admitted client after the refusal");
	counters(&d, "maxc", &refused, &dropped);
	ck_assert_msg(refused >= 1, "[%s] refused counter %" PRIu64 " after max_clients refusal",
		      cur, refused);

	c[1] = safe_close(c[1]);
	c[3] = safe_close(c[3]);
	expect_served_again(l.port, "127.0.0.1", "after one of 3 clients left");
	for (int i = 0; i < 4; i++)
		c[i] = safe_close(c[i]);
	stop_clean(&d);
}
END_TEST

START_TEST(abuse_tcp_idle_timeout_closes_only_silent_client)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "idle", .protocol = "tcp", .model = model,
				 .extra = "idle_timeout = 1;" };
	_cleanup_(closep) int silent = -1, active = -1;
	uint64_t t0, closed_ms = 0, elapsed_ms = 0;
	struct hdaemon d;
	bool closed = false;

	start(&d, &l, 1);
	silent = tcp_connect_ok(l.port);
	active = tcp_connect_ok(l.port);
	expect_served(silent, "silent client before going silent");
	expect_served(active, "active client");
	t0 = now_usec();
	/* The active client talks every 250 ms for 2.5 s, well past the
	 * timeout; the silent one must be closed within 4 s. */
	while (elapsed_ms < 4000 && (!closed || elapsed_ms < 2500)) {
		struct pollfd pfd = { .fd = silent, .events = POLLIN };
		char c;

		if (!closed && poll(&pfd, 1, 250) > 0) {
			ssize_t n = recv(silent, &c, 1, MSG_DONTWAIT);

			ck_assert_msg(n <= 0, "[%s] the silent client got unexpected data", cur);
			if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				closed = true;
				closed_ms = (now_usec() - t0) / USEC_PER_MSEC;
			}
		} else if (closed)
			(void)poll(NULL, 0, 250); /* pacing of the active client */
		elapsed_ms = (now_usec() - t0) / USEC_PER_MSEC;
		if (elapsed_ms < 2500)
			expect_served(active, "active client while the other one is idle");
	}
	ck_assert_msg(closed, "[%s] idle_timeout = 1: the silent client was not closed within 4 s",
		      cur);
	ck_assert_msg(closed_ms >= 800, "[%s] idle_timeout = 1: closed after only %" PRIu64 " ms",
		      cur, closed_ms);
	expect_served(active, "active client after 2.5 s with idle_timeout = 1");
	stop_clean(&d);
}
END_TEST

static void
rst_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	safe_close(fd);
}

/* Send up to len without reading; stop when the socket takes nothing for
 * stall_ms. Returns the bytes sent; *ret_blocked tells why it stopped. */
static uint64_t
send_without_reading(int fd, uint64_t len, int stall_ms, bool *ret_blocked)
{
	_cleanup_(freep) uint8_t *chunk = malloc(65536);
	uint64_t sent = 0, deadline = now_usec() + 60 * USEC_PER_SEC;

	ck_assert_ptr_nonnull(chunk);
	harness_fill_pattern(chunk, 65536, 99);
	*ret_blocked = false;
	ck_assert_int_eq(fd_set_nonblock(fd, true), 0);
	while (sent < len && now_usec() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		ssize_t n;

		if (poll(&pfd, 1, stall_ms) == 0) {
			*ret_blocked = true;
			break;
		}
		n = send(fd, chunk, (size_t)MIN(len - sent, (uint64_t)65536),
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			ck_assert_msg(errno == EAGAIN || errno == EINTR,
				      "[%s] send after %" PRIu64 " bytes: %s", cur, sent,
				      strerror(errno));
			continue;
		}
		sent += (uint64_t)n;
	}
	return sent;
}

START_TEST(abuse_tcp_reset_mid_transfer_keeps_serving)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "rst", .protocol = "tcp", .model = model };
	struct pidset before;
	struct hdaemon d;

	start(&d, &l, 1);
	before = handlers_of(&d);
	ck_assert_msg(before.n == 1, "[%s] expected one handler process, found %zu", cur, before.n);
	for (int k = 0; k < 3; k++) {
		int fd = tcp_connect_ok(l.port);
		bool blocked;

		expect_served(fd, "before the reset");
		/* 1 MiB goes out while the echo piles up unread, then RST. */
		(void)send_without_reading(fd, 1 << 20, 1000, &blocked);
		rst_close(fd);
	}
	{
		_cleanup_(closep) int fd = tcp_connect_ok(l.port);

		expect_served(fd, "new client after three resets mid-transfer");
	}
	expect_same_handlers(&d, &before, "after resets mid-transfer");
	stop_clean(&d);
}
END_TEST

/* RSS of pids, summed, in KiB; every pid must still exist. */
static long
rss_sum(const pid_t *pids, size_t n)
{
	long sum = 0;

	for (size_t i = 0; i < n; i++) {
		long k = rss_kib(pids[i]);

		ck_assert_msg(k >= 0, "[%s] process %d is gone", cur, (int)pids[i]);
		sum += k;
	}
	return sum;
}

START_TEST(abuse_tcp_non_reading_client_bounded_memory)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "flood", .protocol = "tcp", .model = model };
	_cleanup_(closep) int flood = -1, other = -1;
	pid_t pids[32];
	size_t n;
	long base, after;
	uint64_t sent;
	bool blocked;
	struct hdaemon d;

	start(&d, &l, 1);
	flood = tcp_connect_ok(l.port);
	/* A first echo: the connection is set up (under fork, its process
	 * exists) before the baseline is taken. */
	expect_served(flood, "before the flood");
	n = children_of(d.pid, pids, 1);
	ck_assert_msg(n == 1, "[%s] expected one handler process, found %zu", cur, n);
	n += children_of(pids[0], pids + 1, ELEMENTSOF(pids) - 1);
	base = rss_sum(pids, n);

	sent = send_without_reading(flood, UINT64_C(64) << 20, 2000, &blocked);
	ck_assert_msg(blocked,
		      "[%s] a client that never reads sent %" PRIu64 " bytes without blocking", cur,
		      sent);
	after = rss_sum(pids, n);
	ck_assert_msg(after - base < 8 * 1024,
		      "[%s] handler RSS grew by %ld KiB (from %ld to %ld KiB over %zu processes) while a client sent %" PRIu64 " bytes without reading",
		      cur, after - base, base, after, n, sent);

	other = tcp_connect_ok(l.port);
	expect_served(other, "another client while one floods without reading");
	flood = safe_close(flood);
	other = safe_close(other);
	stop_clean(&d);
}
END_TEST

enum garbage_kind {
	GARBAGE_RANDOM,
	GARBAGE_NUL_HEAVY,
	GARBAGE_LONG_LINE,
	_GARBAGE_MAX,
};

static const char *const garbage_names[_GARBAGE_MAX] = {
	"random bytes",
	"NUL-heavy bytes",
	"one line without LF",
};

static void
garbage_fill(uint8_t *buf, size_t len, enum garbage_kind k, uint32_t seed)
{
	harness_fill_pattern(buf, len, seed);
	for (size_t i = 0; i < len; i++)
		if (k == GARBAGE_NUL_HEAVY && buf[i] % 8 != 0)
			buf[i] = 0;
		else if (k == GARBAGE_LONG_LINE)
			buf[i] = (uint8_t)('a' + buf[i] % 26);
}

/* Send len bytes while reading and dropping whatever comes back; the
 * server may close an abusive client at any point. Then half-close and
 * read to EOF (bounded). Returns the bytes the server took. */
static size_t
blast(int fd, const uint8_t *buf, size_t len)
{
	uint64_t deadline = now_usec() + 30 * USEC_PER_SEC;
	size_t sent = 0;
	bool open = true;
	char sink[65536];

	ck_assert_int_eq(fd_set_nonblock(fd, true), 0);
	while (open && now_usec() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN | (sent < len ? POLLOUT : 0) };
		int r = poll(&pfd, 1, 2000);
		ssize_t n;

		if (r == 0) {
			/* Nothing moves either way: done sending, or stuck. */
			ck_assert_msg(sent == len, "[%s] garbage stalled after %zu of %zu bytes", cur,
				      sent, len);
			break;
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				open = false;
		}
		if (open && sent < len && (pfd.revents & POLLOUT)) {
			n = send(fd, buf + sent, MIN(len - sent, (size_t)65536),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				open = false;
			if (sent == len)
				(void)shutdown(fd, SHUT_WR);
		}
	}
	ck_assert_msg(!open || now_usec() < deadline,
		      "[%s] garbage exchange did not end within 30 s", cur);
	return sent;
}

static void
garbage_to_tcp(struct hdaemon *d, const struct hl_listener *l, const struct pidset *before)
{
	const size_t len = 1 << 20;
	_cleanup_(freep) uint8_t *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	for (int k = 0; k < _GARBAGE_MAX; k++) {
		_cleanup_(closep) int fd = tcp_connect_ok(l->port);
		char what[96];

		garbage_fill(buf, len, (enum garbage_kind)k, (uint32_t)(7 + k));
		if (strcmp(l->service, "echo") == 0) {
			const void *bufs[1] = { buf };
			char err[256] = "";
			int r;

			/* Echo owes every byte back, garbage or not. */
			r = harness_tcp_exchange(&fd, 1, bufs, &len, 30000, err, sizeof(err));
			ck_assert_msg(r == 0, "[%s] 1 MiB of %s to echo: %s", cur, garbage_names[k],
				      err);
		} else
			(void)blast(fd, buf, len);
		snprintf(what, sizeof(what), "after 1 MiB of %s to %s", garbage_names[k],
			 l->service);
		expect_same_handlers(d, before, what);
	}
}

START_TEST(abuse_tcp_garbage_to_echo_keeps_serving)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "gecho", .protocol = "tcp", .model = model,
				 .service = "echo" };
	_cleanup_(closep) int fd = -1;
	struct pidset before;
	struct hdaemon d;

	start(&d, &l, 1);
	before = handlers_of(&d);
	garbage_to_tcp(&d, &l, &before);
	fd = tcp_connect_ok(l.port);
	expect_served(fd, "a normal client after the garbage");
	fd = safe_close(fd);
	stop_clean(&d);
}
END_TEST

START_TEST(abuse_tcp_garbage_to_chat_keeps_serving)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "gchat", .protocol = "tcp", .model = model,
				 .service = "chat", .extra = "max_line = 512;" };
	_cleanup_(closep) int fd = -1;
	struct pidset before;
	struct hdaemon d;

	start(&d, &l, 1);
	before = handlers_of(&d);
	garbage_to_tcp(&d, &l, &before);
	fd = tcp_connect_ok(l.port);
	expect_line_prefix(fd, "* welcome to gchat ", "welcome after the garbage");
	ck_assert_int_eq(harness_send_all(fd, "alice\r\n", 7, IO_MS), 0);
	expect_line_prefix(fd, "* you are alice@127.0.0.1", "naming after the garbage");
	fd = safe_close(fd);
	stop_clean(&d);
}
END_TEST

/* ================= UDP, every model ================= */

START_TEST(abuse_udp_allow_and_deny_by_source)
{
	const char *model = combo_model();
	struct hl_listener ls[2] = {
		{ .name = "allow1", .protocol = "udp", .model = model,
		  .extra = "allow = [ \"127.0.0.1/32\" ];" },
		{ .name = "denywins", .protocol = "udp", .model = model,
		  .extra = "allow = [ \"127.0.0.0/8\" ]; deny = [ \"127.0.0.2/32\" ];" },
	};
	int others[2] = { -1, -1 };
	uint64_t refused, dropped;
	struct hdaemon d;

	need_second_source();
	start(&d, ls, 2);
	for (size_t i = 0; i < 2; i++) {
		others[i] = udp_from(SECOND_SOURCE, 0, ls[i].port, false);
		ck_assert_int_ge(others[i], 0);
		ck_assert_int_eq(send(others[i], "ignore me", 9, 0), 9);
	}
	/* Both read and refused; then allowed clients get their echoes. */
	for (size_t i = 0; i < 2; i++)
		ck_assert_uint_ge(wait_discarded(&d, ls[i].name, 1).refused, 1);
	for (size_t i = 0; i < 2; i++) {
		_cleanup_(closep) int ok = udp_ok(ls[i].port);

		udp_expect_echo(ok, "allowed", "127.0.0.1 on a listener with an access list");
	}
	udp_expect_silence(others, 2, 0, "datagram from " SECOND_SOURCE);
	counters(&d, "denywins", &refused, &dropped);
	ck_assert_msg(refused >= 1, "[%s] refused counter %" PRIu64 " after a denied datagram",
		      cur, refused);
	for (size_t i = 0; i < 2; i++)
		safe_close(others[i]);
	stop_clean(&d);
}
END_TEST

START_TEST(abuse_udp_ipv4_mapped_sources_get_ipv4_rules)
{
	const char *model = combo_model();
	struct hl_listener l = {
		.name = "mapped", .protocol = "udp", .model = model, .address = "*", .no_fd = true,
		.extra = "allow = [ \"127.0.0.0/8\" ]; deny = [ \"::ffff:127.0.0.2/128\" ];",
	};
	_cleanup_(closep) int v4 = -1, v6 = -1, other = -1;
	int quiet[2];
	struct hdaemon d;
	int r;

	need_second_source();
	r = harness_free_port(SOCK_DGRAM, "localhost", &l.port);
	ck_assert_msg(r == 0, "[%s] no free port on localhost: %s", cur, strerror(-r));
	start(&d, &l, 1);
	other = udp_from(SECOND_SOURCE, 0, l.port, false);
	v6 = socket_from(SOCK_DGRAM, "::1", 0, "::1", l.port, false);
	ck_assert(other >= 0 && v6 >= 0);
	ck_assert_int_eq(send(other, "denied", 6, 0), 6);
	ck_assert_int_eq(send(v6, "not allowed", 11, 0), 11);
	quiet[0] = other;
	quiet[1] = v6;
	ck_assert_uint_ge(wait_discarded(&d, "mapped", 2).refused, 2);
	v4 = udp_ok(l.port);
	udp_expect_echo(v4, "mapped", "127.0.0.1 through a dual-stack listener");
	udp_expect_silence(quiet, 2, 0, "::ffff:127.0.0.2 (denied) and ::1 (not allowed)");
	stop_clean(&d);
}
END_TEST

/* 1023 stands for the privileged ports; binding it needs root. */
static const uint16_t guarded_ports[] = { 1900, 2049, 3702, 5353, 5683, 11211 };
static const uint16_t guarded_root_ports[] = { 1023 };

/* Every port must bind: a check that sent from none of them would pass on
 * the ordinary client alone. The dropped counter shows each datagram was
 * read and discarded; an ordinary client's echo comes after that. */
static void
guard_drops(const char *model, const uint16_t *ports, size_t n)
{
	struct hl_listener l = { .name = "guard", .protocol = "udp", .model = model };
	int fds[8];
	struct hdaemon d;

	ck_assert(n <= ELEMENTSOF(fds));
	start(&d, &l, 1);
	for (size_t i = 0; i < n; i++) {
		fds[i] = udp_from("127.0.0.1", ports[i], l.port, true);
		ck_assert_msg(fds[i] >= 0, "[%s] cannot bind source port %u: %s", cur, ports[i],
			      strerror(-fds[i]));
		ck_assert_int_eq(send(fds[i], "ping", 4, 0), 4);
	}
	ck_assert_msg(wait_discarded(&d, "guard", n).dropped >= n,
		      "[%s] %zu guarded datagrams not counted as dropped", cur, n);
	{
		_cleanup_(closep) int good = udp_ok(l.port);

		udp_expect_echo(good, "ping", "datagram from an ordinary port");
	}
	udp_expect_silence(fds, n, 0, "datagram from a guarded source port");
	for (size_t i = 0; i < n; i++)
		safe_close(fds[i]);
	stop_clean(&d);
}

START_TEST(abuse_udp_guard_drops_reflection_source_ports)
{
	guard_drops(combo_model(), guarded_ports, ELEMENTSOF(guarded_ports));
}
END_TEST

START_TEST(abuse_udp_guard_drops_privileged_source_port)
{
	guard_drops(combo_model(), guarded_root_ports, ELEMENTSOF(guarded_root_ports));
}
END_TEST

START_TEST(abuse_udp_guard_drops_own_listener_port)
{
	const char *model = combo_model();
	/* The second listener sits on 127.0.0.2, so its port is free on
	 * 127.0.0.1: a datagram from 127.0.0.1:THAT-PORT looks exactly like
	 * one sent by the other listener (the guard looks at ports). */
	struct hl_listener ls[2] = {
		{ .name = "one", .protocol = "udp", .model = model },
		{ .name = "two", .protocol = "udp", .model = model, .address = SECOND_SOURCE },
	};
	_cleanup_(closep) int loop1 = -1, loop2 = -1, shared = -1;
	int quiet[3];
	uint64_t dropped;
	struct hdaemon d;

	need_second_source();
	start(&d, ls, 2);
	/* The literal case, the other listener's own address and port, cannot
	 * be bound: netechod's socket has no SO_REUSEADDR/SO_REUSEPORT. */
	shared = socket_from(SOCK_DGRAM, SECOND_SOURCE, ls[1].port, "127.0.0.1", ls[0].port, true);
	if (shared < 0)
		fprintf(stderr, "[%s] %s:%u is held by netechod (%s), as expected; using 127.0.0.1:%u\n",
			cur, SECOND_SOURCE, ls[1].port, strerror(-shared), ls[1].port);
	loop1 = udp_from("127.0.0.1", ls[1].port, ls[0].port, true);
	ck_assert_msg(loop1 >= 0, "[%s] cannot bind 127.0.0.1:%u: %s", cur, ls[1].port,
		      strerror(-loop1));
	loop2 = socket_from(SOCK_DGRAM, SECOND_SOURCE, ls[0].port, SECOND_SOURCE, ls[1].port, true);
	ck_assert_msg(loop2 >= 0, "[%s] cannot bind %s:%u: %s", cur, SECOND_SOURCE, ls[0].port,
		      strerror(-loop2));
	ck_assert_int_eq(send(loop1, "loop?", 5, 0), 5);
	ck_assert_int_eq(send(loop2, "loop?", 5, 0), 5);
	if (shared >= 0)
		ck_assert_int_eq(send(shared, "loop?", 5, 0), 5);
	quiet[0] = loop1;
	quiet[1] = loop2;
	quiet[2] = shared;
	dropped = wait_discarded(&d, "one", shared >= 0 ? 2 : 1).dropped;
	ck_assert_msg(dropped >= 1, "[%s] dropped counter %" PRIu64 " after an own-port datagram",
		      cur, dropped);
	(void)wait_discarded(&d, "two", 1);
	{
		_cleanup_(closep) int good = udp_ok(ls[0].port);

		udp_expect_echo(good, "ping", "datagram from an ordinary port");
	}
	udp_expect_silence(quiet, shared >= 0 ? 3 : 2, 0, "datagram from the other listener's port");
	stop_clean(&d);
}
END_TEST

START_TEST(abuse_udp_rate_limit_per_source)
{
	enum { RATE = 10, BURST = 50 };
	const char *model = combo_model();
	struct hl_listener l = { .name = "rl", .protocol = "udp", .model = model,
				 .extra = "rate_limit = 10;" };
	_cleanup_(closep) int a = -1, b = -1;
	struct harness_counters k = { 0 };
	uint64_t t0, last = 0, deadline;
	int replies = 0, most;
	char got[64];
	struct hdaemon d;

	start(&d, &l, 1);
	a = udp_ok(l.port);
	t0 = now_usec();
	for (int i = 0; i < BURST; i++)
		ck_assert_int_eq(send(a, "burst", 5, 0), 5);
	/* Within the burst's own time the budget may grow by one per 100 ms
	 * (a slow machine). Each datagram is answered or counted as dropped:
	 * count until the two add up to BURST, then take what is queued. */
	deadline = now_usec() + IO_MS * USEC_PER_MSEC;
	for (;;) {
		while (replies < BURST && harness_recv_timeout(a, got, sizeof(got), 0) >= 0) {
			replies++;
			last = now_usec();
		}
		if ((uint64_t)replies + k.dropped >= BURST || now_usec() >= deadline)
			break;
		k = wait_discarded(&d, "rl", 0);
	}
	ck_assert_msg((uint64_t)replies + k.dropped >= BURST,
		      "[%s] a burst of %d: %d replies and %" PRIu64 " dropped within %d ms", cur,
		      BURST, replies, k.dropped, IO_MS);
	most = RATE + 1 + (int)((last > t0 ? last - t0 : 0) / (100 * USEC_PER_MSEC));
	ck_assert_msg(replies >= RATE && replies <= most,
		      "[%s] rate_limit = %d: a burst of %d datagrams got %d replies within %" PRIu64
		      " ms, expected %d-%d",
		      cur, RATE, BURST, replies, (last - t0) / USEC_PER_MSEC, RATE, most);
	need_second_source();
	b = udp_from(SECOND_SOURCE, 0, l.port, false);
	ck_assert_int_ge(b, 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(send(b, "other", 5, 0), 5);
	replies = udp_count_replies(b, 5, IO_MS);
	ck_assert_msg(replies == 5,
		      "[%s] another source got %d of 5 replies while the first was limited", cur,
		      replies);
	/* The budget refills over a second: the limit is a rate, not a ban.
	 * Waiting for it is the behaviour under test. */
	ck_assert_int_eq(udp_count_replies(a, 1, 1100), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(send(a, "later", 5, 0), 5);
	replies = udp_count_replies(a, 5, IO_MS);
	ck_assert_msg(replies == 5, "[%s] 1.1 s after the burst, 5 datagrams got %d replies", cur,
		      replies);
	stop_clean(&d);
}
END_TEST

static void
garbage_datagrams(uint16_t port)
{
	_cleanup_(freep) uint8_t *buf = malloc(65507);
	_cleanup_(closep) int fd = udp_ok(port);
	uint32_t x = 12345;

	ck_assert_ptr_nonnull(buf);
	for (int i = 0; i < 200; i++) {
		size_t len;

		x = x * 1103515245u + 12345u;
		/* Mostly short, some near the largest datagram. */
		len = i % 20 == 0 ? 65507 - (x >> 20) % 64 : (x >> 16) % 2048;
		garbage_fill(buf, len, (enum garbage_kind)(i % _GARBAGE_MAX), x);
		if (i % 7 == 0 && len > 0)
			buf[0] = '/';
		/* A full socket buffer may refuse one; UDP promises nothing. */
		(void)send(fd, buf, len, MSG_DONTWAIT);
	}
}

START_TEST(abuse_udp_garbage_to_echo_keeps_serving)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "gecho", .protocol = "udp", .model = model };
	_cleanup_(closep) int fd = -1;
	struct pidset before;
	struct hdaemon d;
	char got[64];
	ssize_t n;

	start(&d, &l, 1);
	before = handlers_of(&d);
	garbage_datagrams(l.port);
	fd = udp_ok(l.port);
	n = udp_roundtrip_retrying(fd, "after the garbage", got, sizeof(got));
	ck_assert_msg(n == 17 && memcmp(got, "after the garbage", 17) == 0,
		      "[%s] a normal datagram after 200 random ones: no echo within %d ms (%zd, %s)",
		      cur, IO_MS, n, n < 0 ? strerror((int)-n) : "other bytes");
	expect_same_handlers(&d, &before, "after random datagrams to echo");
	stop_clean(&d);
}
END_TEST

START_TEST(abuse_udp_garbage_to_chat_keeps_serving)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "gchat", .protocol = "udp", .model = model,
				 .service = "chat", .extra = "max_line = 512;" };
	_cleanup_(closep) int fd = -1;
	static const char want[] = "* to join as bob, send: /join ";
	char got[256];
	struct pidset before;
	struct hdaemon d;
	ssize_t n;

	start(&d, &l, 1);
	before = handlers_of(&d);
	garbage_datagrams(l.port);
	fd = udp_ok(l.port);
	n = udp_roundtrip_retrying(fd, "bob", got, sizeof(got) - 1);
	ck_assert_msg(n > 0, "[%s] naming after the garbage: no reply (%s)", cur,
		      strerror((int)-n));
	got[MIN((size_t)n, sizeof(got) - 1)] = 0;
	ck_assert_msg(strncmp(got, want, strlen(want)) == 0,
		      "[%s] naming after the garbage: expected '%s...', got '%s'", cur, want, got);
	expect_same_handlers(&d, &before, "after random datagrams to chat");
	stop_clean(&d);
}
END_TEST

/* One UDP chat datagram and its one reply, as a C string. */
static void
udp_chat_say(int fd, const char *line, char *reply, size_t size, const char *what)
{
	ssize_t n = harness_udp_roundtrip(fd, line, strlen(line), reply, size - 1, IO_MS);

	ck_assert_msg(n > 0, "[%s] %s: '%s' got no reply (%s)", cur, what, line,
		      n == 0 ? "empty datagram" : strerror((int)-n));
	reply[MIN((size_t)n, size - 1)] = 0;
}

/* Name, token, /join: the UDP chat handshake (SPEC section 5). */
static void
udp_chat_join(int fd, const char *name)
{
	char reply[256], want[64], line[128];
	const char *tok;

	snprintf(want, sizeof(want), "* to join as %s, send: /join ", name);
	udp_chat_say(fd, name, reply, sizeof(reply), "naming");
	ck_assert_msg(strncmp(reply, want, strlen(want)) == 0, "[%s] naming as %s: got '%s'", cur,
		      name, reply);
	tok = reply + strlen(want);
	snprintf(line, sizeof(line), "/join %.*s", (int)strcspn(tok, "\r\n"), tok);
	udp_chat_say(fd, line, reply, sizeof(reply), "joining");
	snprintf(want, sizeof(want), "* you are %s@", name);
	ck_assert_msg(strncmp(reply, want, strlen(want)) == 0, "[%s] %s: got '%s'", cur, line,
		      reply);
}

START_TEST(abuse_udp_chat_max_clients_refuses_then_recovers)
{
	const char *model = combo_model();
	struct hl_listener l = { .name = "full", .protocol = "udp", .model = model,
				 .service = "chat", .extra = "max_clients = 2;" };
	_cleanup_(closep) int a = -1, b = -1, c = -1;
	char reply[256];
	struct hdaemon d;

	start(&d, &l, 1);
	a = udp_ok(l.port);
	b = udp_ok(l.port);
	c = udp_ok(l.port);
	udp_chat_join(a, "alice");
	udp_chat_join(b, "bob");
	ck_assert_int_eq(udp_count_replies(a, 1, IO_MS), 1); /* "bob joined" */
	udp_chat_say(c, "carol", reply, sizeof(reply), "a third peer with max_clients = 2");
	ck_assert_msg(strncmp(reply, "! server full", 13) == 0,
		      "[%s] a third peer with max_clients = 2: got '%s'", cur, reply);
	/* A peer leaves: the room has space again. */
	ck_assert_int_eq(send(a, "/quit", 5, 0), 5);
	ck_assert_int_eq(udp_count_replies(b, 1, IO_MS), 1); /* "alice left" */
	udp_chat_join(c, "carol");
	stop_clean(&d);
}
END_TEST

/* ================= limits of the machine ================= */

START_TEST(abuse_select_1200_connections_over_max_clients)
{
	enum { N = 1200, MAX = 960 };
	struct hl_listener l = { .name = "many", .protocol = "tcp", .model = "select",
				 .extra = "max_clients = 960;" };
	_cleanup_(freep) int *fds = calloc(N, sizeof(int));
	_cleanup_(freep) struct pollfd *pfd = calloc(N, sizeof(*pfd));
	_cleanup_(freep) signed char *state = calloc(N, 1); /* 0 open, 1 echoed, -1 closed */
	size_t served = 0, refused = 0, open = N;
	uint64_t deadline;
	struct pidset before;
	struct hdaemon d;
	bool ok;

	cur = "tcp-select";
	ck_assert(fds && pfd && state);
	raise_nofile(2500, &ok);
	if (!ok)
		return;
	start(&d, &l, 1);
	before = handlers_of(&d);
	for (size_t i = 0; i < N; i++) {
		fds[i] = tcp_connect_ok(l.port);
		ck_assert_int_eq(fd_set_nonblock(fds[i], true), 0);
		ck_assert_int_eq(send(fds[i], "x", 1, MSG_NOSIGNAL), 1);
	}
	/* Every connection is either echoed (admitted) or closed (refused). */
	deadline = now_usec() + 30 * USEC_PER_SEC;
	while (open > 0 && now_usec() < deadline) {
		size_t k = 0;

		for (size_t i = 0; i < N; i++)
			if (state[i] == 0)
				pfd[k++] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		ck_assert_int_ge(poll(pfd, (nfds_t)k, 1000), 0);
		for (size_t i = 0, j = 0; i < N; i++) {
			char c;
			ssize_t n;

			if (state[i] != 0)
				continue;
			if (!pfd[j++].revents)
				continue;
			n = recv(fds[i], &c, 1, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			state[i] = n == 1 && c == 'x' ? 1 : -1;
			if (state[i] == 1)
				served++;
			else
				refused++;
			open--;
		}
	}
	ck_assert_msg(served == MAX && refused == N - MAX,
		      "[%s] %d connections with max_clients = %d: %zu served, %zu refused, %zu undecided after 30 s",
		      cur, N, MAX, served, refused, open);
	expect_same_handlers(&d, &before, "after 1200 connections");
	for (size_t i = 0; i < N; i++)
		safe_close(fds[i]);
	expect_served_again(l.port, "127.0.0.1", "after 1200 connections closed");
	stop_clean(&d);
}
END_TEST

static const char *const exhaust_combos[] = { "tcp-thread", "tcp-poll", "tcp-epoll" };

START_TEST(abuse_fd_exhaustion_backs_off_and_recovers)
{
	enum { N = 100, NOFILE = 64 };
	const struct harness_combo *combo = harness_combo_find(exhaust_combos[_i]);
	const char *model = combo->model;
	struct hl_listener l = { .name = "nofd", .protocol = "tcp", .model = model };
	struct rlimit low = { .rlim_cur = NOFILE, .rlim_max = NOFILE };
	int fds[N], open_fds;
	uint64_t t0, t1, wall0, wall1, deadline;
	long hz = sysconf(_SC_CLK_TCK);
	struct pidset before;
	struct hdaemon d;
	double cpu;

	cur = combo->tcase;
	start(&d, &l, 1);
	before = handlers_of(&d);
	ck_assert_msg(before.n == 1, "[%s] expected one handler process, found %zu", cur, before.n);
	ck_assert_msg(prlimit(before.pid[0], RLIMIT_NOFILE, &low, NULL) == 0,
		      "[%s] prlimit on handler %d: %s", cur, (int)before.pid[0], strerror(errno));

	/* More clients than the handler has descriptors: the rest wait in
	 * the listen queue (128 deep) while accept() fails with EMFILE. */
	for (int i = 0; i < N; i++)
		fds[i] = tcp_connect_ok(l.port);
	deadline = now_usec() + IO_MS * USEC_PER_MSEC;
	while ((open_fds = count_fds(before.pid[0])) < NOFILE && now_usec() < deadline)
		(void)poll(NULL, 0, 20);
	ck_assert_msg(open_fds >= NOFILE,
		      "[%s] %d clients against RLIMIT_NOFILE %d: the handler holds only %d descriptors",
		      cur, N, NOFILE, open_fds);

	/* Out of descriptors with connections queued: the handler must not
	 * spin on a listen socket that stays readable. */
	ck_assert_int_eq(proc_stat(before.pid[0], NULL, &t0), 0);
	wall0 = now_usec();
	(void)poll(NULL, 0, 1000); /* the measurement window */
	ck_assert_int_eq(proc_stat(before.pid[0], NULL, &t1), 0);
	wall1 = now_usec();
	cpu = (double)(t1 - t0) / (double)hz;
	ck_assert_msg(cpu < 0.3,
		      "[%s] out of descriptors, the handler used %.2f s of CPU in %.2f s: a busy loop",
		      cur, cpu, (double)(wall1 - wall0) / 1e6);

	for (int i = 0; i < N; i++)
		safe_close(fds[i]);
	expect_served_again(l.port, "127.0.0.1", "after the descriptor shortage ended");
	expect_same_handlers(&d, &before, "after running out of descriptors");
	stop_clean(&d);
}
END_TEST

static Suite *
abuse_suite(void)
{
	Suite *s = suite_create("abuse");
	TCase *tc;

	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_TCP) {
		tc = harness_combo_tcase(s, c, NULL, use_combo, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, abuse_tcp_allow_and_deny_by_source);
		tcase_add_test(tc, abuse_tcp_per_source_refuses_third_from_one_address);
		tcase_add_test(tc, abuse_tcp_max_clients_refuses_then_recovers);
		tcase_add_test(tc, abuse_tcp_idle_timeout_closes_only_silent_client);
		tcase_add_test(tc, abuse_tcp_reset_mid_transfer_keeps_serving);
		tcase_add_test(tc, abuse_tcp_non_reading_client_bounded_memory);
		tcase_add_test(tc, abuse_tcp_garbage_to_echo_keeps_serving);
		tcase_add_test(tc, abuse_tcp_garbage_to_chat_keeps_serving);
	}
	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_UDP) {
		tc = harness_combo_tcase(s, c, NULL, use_combo, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, abuse_udp_allow_and_deny_by_source);
		tcase_add_test(tc, abuse_udp_guard_drops_reflection_source_ports);
		tcase_add_test(tc, abuse_udp_guard_drops_own_listener_port);
		tcase_add_test(tc, abuse_udp_rate_limit_per_source);
		tcase_add_test(tc, abuse_udp_garbage_to_echo_keeps_serving);
		tcase_add_test(tc, abuse_udp_garbage_to_chat_keeps_serving);
		tcase_add_test(tc, abuse_udp_chat_max_clients_refuses_then_recovers);
	}

	/* Cases that need root or IPv6: abuse-root, abuse-ipv6 (harness_main),
	 * model by model. */
	HARNESS_FOR_EACH_COMBO(t, HARNESS_COMBO_TCP) {
		char udp[32];
		const struct harness_combo *u;

		tc = harness_combo_tcase(s, t, "-ipv6", use_combo, NULL, TCASE_TIMEOUT);
		tcase_set_tags(tc, HARNESS_TAG_IPV6);
		tcase_add_test(tc, abuse_tcp_ipv4_mapped_sources_get_ipv4_rules);

		snprintf(udp, sizeof(udp), "udp-%s", t->label);
		u = harness_combo_find(udp);
		tc = harness_combo_tcase(s, u, "-ipv6", use_combo, NULL, TCASE_TIMEOUT);
		tcase_set_tags(tc, HARNESS_TAG_IPV6);
		tcase_add_test(tc, abuse_udp_ipv4_mapped_sources_get_ipv4_rules);

		tc = harness_combo_tcase(s, u, "-root", use_combo, NULL, TCASE_TIMEOUT);
		tcase_set_tags(tc, HARNESS_TAG_ROOT);
		tcase_add_test(tc, abuse_udp_guard_drops_privileged_source_port);
	}

	tc = harness_tcase(s, "limits", NULL, NULL, NULL, TCASE_TIMEOUT);
	tcase_add_test(tc, abuse_select_1200_connections_over_max_clients);
	tcase_add_loop_test(tc, abuse_fd_exhaustion_backs_off_and_recovers, 0,
			    ELEMENTSOF(exhaust_combos));
	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(abuse_suite(), argc, argv);
}
