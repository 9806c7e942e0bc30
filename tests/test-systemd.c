/* netechod as systemd sees it (SPEC section 6): the sd_notify sequence on
 * start, reload and stop, the watchdog, supervision of handler processes,
 * the SIGUSR1 counters, socket activation (through the harness and through
 * the real systemd-socket-activate) and the plain stderr log format.
 *
 * The daemon runs under the harness: sockets through LISTEN_FDS, readiness
 * on a NOTIFY_SOCKET the test owns. Where a test needs an environment the
 * harness does not build (WATCHDOG_USEC, JOURNAL_STREAM, a real
 * systemd-socket-activate in front), NETECHOD_BIN points the harness at a
 * small /bin/sh wrapper that sets it up and execs netechod in the same
 * process, so the pid the harness watches is the daemon's pid.
 *
 * Nothing sleeps to synchronize: tests wait for notify messages, log lines
 * (inotify on the log), echoes and process exits, each with a deadline. */

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 60
#define IO_MS HARNESS_IO_TIMEOUT_MS
/* Notify messages and log lines the daemon owes us arrive well within this. */
#define EVENT_MS 5000
/* How long something that must not answer gets to (wrongly) answer. */
#define NO_REPLY_MS 300
/* A killed handler must serve again within this (first restart: 1 s). */
#define RESTART_MS 5000
/* Drains on stop and on listener removal are bounded by this. */
#define GLOBALS "shutdown_timeout = 2;"
#define SHUTDOWN_TIMEOUT_MS 2000

static char real_bin[HARNESS_PATH_MAX];

/* ---- small helpers ---- */

static int
ms_left(uint64_t deadline)
{
	uint64_t now = now_usec();

	return now >= deadline ? 0 : (int)MIN((deadline - now + 999) / 1000, (uint64_t)INT_MAX);
}

static uint64_t
deadline_in(int ms)
{
	return now_usec() + (uint64_t)ms * USEC_PER_MSEC;
}

/* Every notify message so far, then the log: the context a failure needs. */
static void
dump_daemon(struct hdaemon *d)
{
	size_t n = harness_notify_count(d);

	fprintf(stderr, "---- %zu notify messages ----\n", n);
	for (size_t i = 0; i < n; i++) {
		_cleanup_(freep) char *m = harness_notify_get(d, i);

		for (char *p = m; p && *p; p++)
			if (*p == '\n')
				*p = '|';
		fprintf(stderr, "[%zu] %s\n", i, m ? m : "(null)");
	}
	harness_log_dump(d);
}

#define check_d(d, cond, ...)                     \
	do {                                      \
		if (!(cond)) {                    \
			dump_daemon(d);           \
			ck_abort_msg(__VA_ARGS__); \
		}                                 \
	} while (0)

static void
start_ok(struct hdaemon *d, struct hl_listener *ls, size_t n, unsigned flags)
{
	int r;

	*d = (struct hdaemon){ .flags = flags };
	r = harness_start(d, ls, n, GLOBALS);
	ck_assert_msg(r == 0, "netechod did not start: %s", strerror(-r));
}

static void
stop_ok(struct hdaemon *d)
{
	int r = harness_stop(d, SIGTERM);

	check_d(d, r == 0, "netechod stopped with %d (%s), expected exit status 0", r,
		r < 0 ? strerror(-r) : "exit status");
}

static int
tcp_ok(const char *what, uint16_t port)
{
	int fd = harness_tcp_connect(port);

	ck_assert_msg(fd >= 0, "%s: connect to 127.0.0.1:%u: %s", what, port, strerror(-fd));
	return fd;
}

static void
tcp_echo(int fd, const char *what, const char *msg)
{
	size_t len = strlen(msg);
	char got[256] = "";
	ssize_t n;
	int r;

	ck_assert(len < sizeof(got));
	r = harness_send_all(fd, msg, len, IO_MS);
	ck_assert_msg(r == 0, "%s: send '%s': %s", what, msg, strerror(-r));
	n = harness_recv_exact(fd, got, len, IO_MS);
	ck_assert_msg(n == (ssize_t)len && memcmp(got, msg, len) == 0,
		      "%s: sent '%s', got %zd bytes '%.*s' (%s)", what, msg, n,
		      n > 0 ? (int)n : 0, got, n < 0 ? strerror((int)-n) : "short");
}

static void
tcp_connect_echo(const char *what, uint16_t port, const char *msg)
{
	_cleanup_(closep) int fd = tcp_ok(what, port);

	tcp_echo(fd, what, msg);
}

static void
udp_echo(const char *what, uint16_t port, const char *msg)
{
	_cleanup_(closep) int fd = harness_udp_socket(port);
	size_t len = strlen(msg);
	char got[256] = "";
	ssize_t n;

	ck_assert_msg(fd >= 0, "%s: udp socket: %s", what, strerror(-fd));
	n = harness_udp_roundtrip(fd, msg, len, got, sizeof(got) - 1, IO_MS);
	ck_assert_msg(n == (ssize_t)len && memcmp(got, msg, len) == 0,
		      "%s: udp 127.0.0.1:%u: sent '%s', got %zd bytes '%.*s' (%s)", what, port,
		      msg, n, n > 0 ? (int)MIN((size_t)n, sizeof(got) - 1) : 0, got,
		      n < 0 ? strerror((int)-n) : "wrong reply");
}

/* Serve check for any listener of the table. */
static void
listener_echo(const struct hl_listener *l, const char *what)
{
	char msg[96];

	snprintf(msg, sizeof(msg), "%s says hello to %s", what, l->name);
	if (strcmp(l->protocol, "tcp") == 0)
		tcp_connect_echo(l->name, l->port, msg);
	else
		udp_echo(l->name, l->port, msg);
}

/* Refused, or accepted by nobody: no byte comes back. */
static void
tcp_not_served(const char *what, uint16_t port)
{
	_cleanup_(closep) int fd = harness_tcp_connect(port);
	char c;
	ssize_t n;
	int r;

	if (fd == -ECONNREFUSED)
		return;
	ck_assert_msg(fd >= 0, "%s: connect to 127.0.0.1:%u: %s", what, port, strerror(-fd));
	r = harness_send_all(fd, "x", 1, IO_MS);
	if (r < 0)
		return;
	n = harness_recv_timeout(fd, &c, 1, NO_REPLY_MS);
	ck_assert_msg(n <= 0, "%s: 127.0.0.1:%u still echoes", what, port);
}

/* ---- notify messages ---- */

/* Value of the first line of msg starting with key ("MONOTONIC_USEC="),
 * malloc()ed, or NULL. */
static char *
msg_value(const char *msg, const char *key)
{
	size_t klen = strlen(key);

	for (const char *line = msg; line && *line;) {
		const char *end = strchrnul(line, '\n');

		if ((size_t)(end - line) >= klen && memcmp(line, key, klen) == 0)
			return strndup(line + klen, (size_t)(end - line) - klen);
		line = *end ? end + 1 : end;
	}
	return NULL;
}

static size_t
count_notify(struct hdaemon *d, const char *pattern, size_t from, size_t to)
{
	size_t n = 0;

	for (size_t i = from; i < to; i++) {
		int k = harness_notify_find(d, pattern, i);

		if (k < 0 || (size_t)k >= to)
			break;
		n++;
		i = (size_t)k;
	}
	return n;
}

/* STATUS= text of the last STATUS= message in [from, to), malloc()ed. */
static char *
last_status(struct hdaemon *d, size_t from, size_t to)
{
	char *s = NULL;

	for (size_t i = from; i < to; i++) {
		int k = harness_notify_find(d, "STATUS=", i);
		_cleanup_(freep) char *m = NULL;

		if (k < 0 || (size_t)k >= to)
			break;
		m = harness_notify_get(d, (size_t)k);
		free(s);
		s = m ? msg_value(m, "STATUS=") : NULL;
		i = (size_t)k;
	}
	return s;
}

/* Waits for a STATUS= message at or after from whose text contains sub. */
static char *
wait_status(struct hdaemon *d, size_t from, const char *sub, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);

	for (;;) {
		int k = harness_wait_notify_from(d, "STATUS=", from, ms_left(deadline));
		_cleanup_(freep) char *m = NULL;
		char *v;

		if (k < 0)
			return NULL;
		m = harness_notify_get(d, (size_t)k);
		v = m ? msg_value(m, "STATUS=") : NULL;
		if (v && strstr(v, sub))
			return v;
		free(v);
		from = (size_t)k + 1;
	}
}

/* ---- log ---- */

/* The first whole line at or after byte offset from that contains s1 and
 * (when not NULL) s2; malloc()ed or NULL. */
static char *
find_line(const char *text, size_t from, const char *s1, const char *s2)
{
	size_t len = text ? strlen(text) : 0;

	for (const char *line = text ? text + MIN(from, len) : NULL; line && *line;) {
		const char *end = strchrnul(line, '\n');
		_cleanup_(freep) char *l = NULL;

		if (!*end)
			break; /* not complete yet */
		l = strndup(line, (size_t)(end - line));
		if (l && strstr(l, s1) && (!s2 || strstr(l, s2)))
			return TAKE_PTR(l);
		line = end + 1;
	}
	return NULL;
}

static size_t
log_size(struct hdaemon *d)
{
	_cleanup_(freep) char *text = harness_log_read(d);

	return text ? strlen(text) : 0;
}

/* Waits (inotify on the log file, with a deadline) for such a line. */
static char *
wait_log_line(struct hdaemon *d, size_t from, const char *s1, const char *s2, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);
	_cleanup_(closep) int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

	if (ifd >= 0 && inotify_add_watch(ifd, d->log_path, IN_MODIFY) < 0)
		ifd = safe_close(ifd);
	for (;;) {
		_cleanup_(freep) char *text = harness_log_read(d);
		char *line = find_line(text, from, s1, s2);
		struct pollfd pfd = { .fd = ifd, .events = POLLIN };
		char buf[4096];

		if (line)
			return line;
		if (ms_left(deadline) == 0)
			return NULL;
		/* A bound on each wait too, in case an event was missed. */
		(void)poll(&pfd, 1, MIN(ms_left(deadline), 100));
		while (ifd >= 0 && read(ifd, buf, sizeof(buf)) > 0)
			;
	}
}

static char *
expect_log_line(struct hdaemon *d, size_t from, const char *s1, const char *s2, const char *what)
{
	char *line = wait_log_line(d, from, s1, s2, EVENT_MS);

	check_d(d, line, "%s: no log line with '%s'%s%s%s within %d ms", what, s1,
		s2 ? " and '" : "", s2 ? s2 : "", s2 ? "'" : "", EVENT_MS);
	return line;
}

/* ---- wrappers: an environment the harness does not build ---- */

static void
fixture_setup(void)
{
	const char *bin = harness_netechod_bin();

	ck_assert_msg(bin && access(bin, X_OK) == 0, "netechod binary %s not executable",
		      bin ? bin : "(NETECHOD_BIN unset)");
	snprintf(real_bin, sizeof(real_bin), "%s", bin);
}

/* harness_start() through "/bin/sh WRAPPER -c CONF": the script removes
 * itself, then runs body, which must end in an exec of "$REAL" "$@" (or of
 * something that execs it in the same process). */
static int
start_wrapped(struct hdaemon *d, struct hl_listener *ls, size_t n, unsigned flags,
	      const char *body)
{
	char dir[HARNESS_DIR_MAX], path[HARNESS_PATH_MAX];
	struct stat st;
	FILE *f;
	int r;

	snprintf(dir, sizeof(dir), "/tmp/netechod-sdwrap.XXXXXX");
	ck_assert_msg(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/netechod", dir);
	f = fopen(path, "we");
	ck_assert_msg(f, "%s: %s", path, strerror(errno));
	fprintf(f, "#!/bin/sh\nrm -rf -- '%s'\nREAL='%s'\n%s\n", dir, real_bin, body);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, 0755), 0);

	ck_assert_int_eq(setenv("NETECHOD_BIN", path, 1), 0);
	*d = (struct hdaemon){ .flags = flags };
	r = harness_start(d, ls, n, GLOBALS);
	ck_assert_int_eq(setenv("NETECHOD_BIN", real_bin, 1), 0);
	/* Otherwise the script removes itself (maybe not yet: with
	 * HARNESS_NO_WAIT_READY the shell may not have opened it). */
	if (r < 0 && stat(dir, &st) == 0) {
		(void)unlink(path);
		(void)rmdir(dir);
	}
	return r;
}

static const char *
socket_activate_bin(void)
{
	static const char *const paths[] = {
		"/usr/bin/systemd-socket-activate",
		"/bin/systemd-socket-activate",
		"/usr/local/bin/systemd-socket-activate",
	};

	for (size_t i = 0; i < ELEMENTSOF(paths); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

/* ---- start ---- */

START_TEST(systemd_ready_only_once_every_listener_serves)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "tcp-poll", .protocol = "tcp", .model = "poll" },
		{ .name = "tcp-fork", .protocol = "tcp", .model = "fork" },
		{ .name = "tcp-thread", .protocol = "tcp", .model = "thread" },
		{ .name = "tcp-select", .protocol = "tcp", .model = "select" },
		{ .name = "tcp-epoll", .protocol = "tcp", .model = "epoll",
		  .extra = "workers = 2;" },
		{ .name = "udp-poll", .protocol = "udp", .model = "poll" },
		{ .name = "udp-fork", .protocol = "udp", .model = "fork", .extra = "workers = 2;" },
		{ .name = "udp-thread", .protocol = "udp", .model = "thread" },
		{ .name = "udp-select", .protocol = "udp", .model = "select" },
		{ .name = "udp-epoll", .protocol = "udp", .model = "epoll" },
		/* Bound by netechod itself: nothing queues for them before
		 * they exist, so these show READY=1 came late enough. */
		{ .name = "own-tcp", .protocol = "tcp", .model = "poll", .no_fd = true },
		{ .name = "own-udp", .protocol = "udp", .model = "epoll", .no_fd = true },
	};
	_cleanup_(freep) char *status = NULL;
	char want[32];
	size_t ready;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	/* Right after READY=1, before anything else. */
	for (size_t i = 0; i < ELEMENTSOF(ls); i++)
		listener_echo(&ls[i], "right after READY=1");

	ready = d.notify_cursor;
	check_d(&d, ready > 0, "READY=1 not seen");
	check_d(&d, count_notify(&d, "READY=1", 0, ready) == 1,
		"more than one READY=1 at start-up");
	check_d(&d, harness_notify_find(&d, "RELOADING=1", 0) < 0 &&
			    harness_notify_find(&d, "STOPPING=1", 0) < 0,
		"RELOADING=1 or STOPPING=1 during a plain start");
	status = last_status(&d, 0, ready);
	snprintf(want, sizeof(want), "%zu listeners", ELEMENTSOF(ls));
	check_d(&d, status && strstr(status, want),
		"the STATUS= sent up to READY=1 is '%s'; expected it to mention '%s'",
		status ? status : "(none)", want);
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_status_counts_clients)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "a", .protocol = "tcp", .model = "poll" },
		{ .name = "b", .protocol = "tcp", .model = "thread" },
	};
	_cleanup_(closep) int fa = -1, fb = -1;
	_cleanup_(freep) char *s = NULL;
	size_t from;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	from = harness_notify_count(&d);
	fa = tcp_ok("a", ls[0].port);
	fb = tcp_ok("b", ls[1].port);
	tcp_echo(fa, "a", "one");
	tcp_echo(fb, "b", "two");
	/* STATUS= is refreshed while it runs. */
	s = wait_status(&d, from, "2 clients", EVENT_MS);
	check_d(&d, s, "no STATUS= mentioning '2 clients' within %d ms of opening two connections",
		EVENT_MS);
	check_d(&d, strstr(s, "2 listeners"), "STATUS='%s' does not mention '2 listeners'", s);
	stop_ok(&d);
}
END_TEST

/* ---- reload ---- */

START_TEST(systemd_reload_applies_changes_and_keeps_the_rest)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "a", .protocol = "tcp", .model = "poll" },   /* unchanged */
		{ .name = "b", .protocol = "tcp", .model = "thread" }, /* removed */
		{ .name = "d", .protocol = "tcp", .model = "fork" },   /* changed */
		{ .name = "e", .protocol = "udp", .model = "select" }, /* unchanged */
	};
	struct hl_listener ls2[4];
	_cleanup_(closep) int fa = -1, fb = -1, fd1 = -1, fd2 = -1;
	_cleanup_(freep) char *reloading = NULL, *mono = NULL, *status = NULL;
	pid_t pid, pa, pa2;
	uint64_t t0, t1;
	unsigned long usec;
	size_t from;
	int r, y;
	char c;
	ssize_t n;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	pid = d.pid;
	pa = harness_handler_pid(pid, "tcp", ls[0].port);
	check_d(&d, pa > 0, "no handler process of listener a found below pid %d", (int)pid);
	fa = tcp_ok("a before reload", ls[0].port);
	tcp_echo(fa, "a before reload", "before");
	fb = tcp_ok("b before reload", ls[1].port);
	tcp_echo(fb, "b before reload", "before");

	ls2[0] = ls[0];
	ls2[1] = (struct hl_listener){ .name = "c", .protocol = "udp", .model = "poll",
				       .no_fd = true };
	r = harness_free_port(SOCK_DGRAM, "127.0.0.1", &ls2[1].port);
	ck_assert_msg(r == 0, "no free udp port: %s", strerror(-r));
	ls2[2] = ls[2];
	ls2[2].extra = "max_clients = 1;";
	ls2[3] = ls[3];
	r = harness_write_config(&d, ls2, ELEMENTSOF(ls2), GLOBALS);
	ck_assert_msg(r == 0, "write config: %s", strerror(-r));

	from = harness_notify_count(&d);
	t0 = now_usec();
	ck_assert_int_eq(harness_signal(&d, SIGHUP), 0);
	r = harness_wait_notify_from(&d, "RELOADING=1", from, EVENT_MS);
	check_d(&d, r >= 0, "no RELOADING=1 within %d ms of SIGHUP: %s", EVENT_MS, strerror(-r));
	t1 = now_usec();
	reloading = harness_notify_get(&d, (size_t)r);
	mono = reloading ? msg_value(reloading, "MONOTONIC_USEC=") : NULL;
	check_d(&d, mono, "the RELOADING=1 message has no MONOTONIC_USEC= line");
	check_d(&d, parse_uint(mono, ULONG_MAX, &usec) == 0,
		"MONOTONIC_USEC='%s' is not a number", mono);
	check_d(&d, usec + 1000 >= t0 && usec <= t1 + 1000,
		"MONOTONIC_USEC=%lu is not CLOCK_MONOTONIC between SIGHUP (%" PRIu64
		") and RELOADING=1 (%" PRIu64 ")",
		usec, t0, t1);
	y = harness_wait_notify_from(&d, "READY=1", (size_t)r + 1, EVENT_MS);
	check_d(&d, y >= 0, "no READY=1 after RELOADING=1 within %d ms: %s", EVENT_MS,
		strerror(-y));
	status = last_status(&d, (size_t)r, (size_t)y + 1);
	check_d(&d, status && strstr(status, "4 listeners") && !strstr(status, "failed"),
		"STATUS= after the reload is '%s'; expected '4 listeners' and no failure",
		status ? status : "(none)");

	/* a: unchanged, same handler, the connection from before works. */
	tcp_echo(fa, "a: connection opened before the reload", "after");
	pa2 = harness_handler_pid(pid, "tcp", ls[0].port);
	check_d(&d, pa2 == pa, "listener a (unchanged) has handler pid %d, was %d", (int)pa2,
		(int)pa);
	tcp_connect_echo("a: new connection", ls[0].port, "new");
	/* b: removed. */
	tcp_not_served("b (removed)", ls[1].port);
	/* c: added. */
	udp_echo("c (added)", ls2[1].port, "hello c");
	/* d: changed; the new max_clients applies. */
	fd1 = tcp_ok("d (changed) first client", ls[2].port);
	tcp_echo(fd1, "d (changed) first client", "first");
	fd2 = tcp_ok("d (changed) second client", ls[2].port);
	(void)harness_send_all(fd2, "second", 6, IO_MS);
	n = harness_recv_timeout(fd2, &c, 1, IO_MS);
	check_d(&d, n == 0 || n == -ECONNRESET,
		"d (changed to max_clients = 1): a second client got %zd (%s), not closed",
		n, n < 0 ? strerror((int)-n) : "data");
	/* e: unchanged udp. */
	udp_echo("e (unchanged)", ls[3].port, "hello e");

	/* b's connection ends within the drain time. */
	n = harness_recv_timeout(fb, &c, 1, SHUTDOWN_TIMEOUT_MS + EVENT_MS);
	check_d(&d, n == 0 || n == -ECONNRESET,
		"b (removed): its open connection got %zd (%s) instead of being closed", n,
		n < 0 ? strerror((int)-n) : "data");

	check_d(&d, harness_running(&d) && d.pid == pid, "the daemon did not survive the reload");
	stop_ok(&d);
}
END_TEST

struct bad_config {
	const char *what;
	const char *text; /* @PORT@: port of listener a */
	unsigned line;    /* where the error is */
};

/* A listener renamed by a reload keeps its port served: the new one takes
 * over the socket the old one still holds while it drains, instead of
 * failing to bind it. */
START_TEST(systemd_reload_rename_keeps_the_port_served)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "old", .protocol = "tcp", .model = "thread" },
		{ .name = "old-u", .protocol = "udp", .model = "poll" },
	};
	struct hl_listener ls2[2];
	_cleanup_(freep) char *status = NULL;
	size_t from;
	int r, y;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	tcp_connect_echo("old before reload", ls[0].port, "before");
	ls2[0] = ls[0];
	ls2[0].name = "new";
	ls2[0].model = "epoll";
	ls2[1] = ls[1];
	ls2[1].name = "new-u";
	r = harness_write_config(&d, ls2, ELEMENTSOF(ls2), GLOBALS);
	ck_assert_msg(r == 0, "write config: %s", strerror(-r));

	from = harness_notify_count(&d);
	ck_assert_int_eq(harness_signal(&d, SIGHUP), 0);
	r = harness_wait_notify_from(&d, "RELOADING=1", from, EVENT_MS);
	check_d(&d, r >= 0, "no RELOADING=1 within %d ms of SIGHUP: %s", EVENT_MS, strerror(-r));
	y = harness_wait_notify_from(&d, "READY=1", (size_t)r + 1, EVENT_MS);
	check_d(&d, y >= 0, "no READY=1 after RELOADING=1: %s", strerror(-y));
	status = last_status(&d, (size_t)r, (size_t)y + 1);
	check_d(&d, status && strstr(status, "2 listeners") && !strstr(status, "could not"),
		"STATUS= after the rename is '%s'; expected '2 listeners' and no failure",
		status ? status : "(none)");
	check_d(&d, !harness_log_contains(&d, "cannot listen"),
		"the renamed listener could not bind its port");
	tcp_connect_echo("new (renamed, same port)", ls[0].port, "after");
	udp_echo("new-u (renamed, same port)", ls[1].port, "after");
	ck_assert_int_eq(harness_stop(&d, SIGTERM), 0);
}
END_TEST

static const struct bad_config bad_configs[] = {
	{ "syntax error",
	  "# broken on purpose\n"
	  "shutdown_timeout = 2;\n"
	  "listeners = (\n"
	  "  { name = \"a\"; protocol = \"tcp\"; address = \"127.0.0.1\"; port = @PORT@;\n"
	  "    model = \"poll\"; service = \"echo\"; }\n"
	  "  @@@ this is not libconfig\n"
	  ");\n",
	  6 },
	{ "validation error",
	  "# broken on purpose\n"
	  "shutdown_timeout = 2;\n"
	  "listeners = (\n"
	  "  {\n"
	  "    name = \"a\";\n"
	  "    protocol = \"tcp\";\n"
	  "    address = \"127.0.0.1\";\n"
	  "    port = @PORT@;\n"
	  "    model = \"spin\";\n"
	  "    service = \"echo\";\n"
	  "  }\n"
	  ");\n",
	  9 },
};

/* text with @PORT@ replaced by port. */
static void
fill_port(char *buf, size_t len, const char *text, uint16_t port)
{
	const char *at = strstr(text, "@PORT@");

	ck_assert_ptr_nonnull(at);
	snprintf(buf, len, "%.*s%u%s", (int)(at - text), text, port, at + strlen("@PORT@"));
}

static void
write_file(const char *path, const char *text)
{
	char tmp[HARNESS_PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "we");
	ck_assert_msg(f, "%s: %s", tmp, strerror(errno));
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_msg(rename(tmp, path) == 0, "rename %s: %s", tmp, strerror(errno));
}

START_TEST(systemd_reload_with_bad_config_keeps_running_config)
{
	const struct bad_config *bc = &bad_configs[_i];
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "a", .protocol = "tcp", .model = "poll" },
		{ .name = "e", .protocol = "udp", .model = "select" },
	};
	_cleanup_(closep) int fa = -1;
	_cleanup_(freep) char *status = NULL, *line = NULL, *status2 = NULL;
	char text[2048], where[64];
	size_t from, logpos;
	pid_t pid;
	int r, y;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	pid = d.pid;
	fa = tcp_ok("a", ls[0].port);
	tcp_echo(fa, "a before the bad reload", "before");

	fill_port(text, sizeof(text), bc->text, ls[0].port);
	write_file(d.conf_path, text);
	/* The full path or the file name, followed by the line. */
	snprintf(where, sizeof(where), "netechod.conf:%u", bc->line);

	from = harness_notify_count(&d);
	logpos = log_size(&d);
	ck_assert_int_eq(harness_signal(&d, SIGHUP), 0);
	r = harness_wait_notify_from(&d, "RELOADING=1", from, EVENT_MS);
	check_d(&d, r >= 0, "[%s] no RELOADING=1 within %d ms of SIGHUP", bc->what, EVENT_MS);
	{
		_cleanup_(freep) char *m = harness_notify_get(&d, (size_t)r);
		_cleanup_(freep) char *mono = m ? msg_value(m, "MONOTONIC_USEC=") : NULL;

		check_d(&d, mono, "[%s] RELOADING=1 without MONOTONIC_USEC= in the same message",
			bc->what);
	}
	y = harness_wait_notify_from(&d, "READY=1", (size_t)r + 1, EVENT_MS);
	check_d(&d, y >= 0, "[%s] no READY=1 after the failed reload within %d ms", bc->what,
		EVENT_MS);
	status = last_status(&d, (size_t)r, (size_t)y + 1);
	check_d(&d, status && strstr(status, "reload failed") && strstr(status, where),
		"[%s] STATUS= after the failed reload is '%s'; expected 'reload failed' and '%s'",
		bc->what, status ? status : "(none)", where);
	line = expect_log_line(&d, logpos, where, NULL, bc->what);

	/* Everything still serves with the old configuration. */
	tcp_echo(fa, "a: connection opened before the bad reload", "still here");
	tcp_connect_echo("a: new connection", ls[0].port, "new");
	udp_echo("e", ls[1].port, "hello e");
	check_d(&d, harness_running(&d) && d.pid == pid, "[%s] the daemon did not survive",
		bc->what);

	/* A good reload afterwards clears the error from STATUS=. */
	r = harness_write_config(&d, ls, ELEMENTSOF(ls), GLOBALS);
	ck_assert_int_eq(r, 0);
	from = harness_notify_count(&d);
	ck_assert_int_eq(harness_signal(&d, SIGHUP), 0);
	r = harness_wait_notify_from(&d, "RELOADING=1", from, EVENT_MS);
	check_d(&d, r >= 0, "[%s] no RELOADING=1 for the good reload", bc->what);
	y = harness_wait_notify_from(&d, "READY=1", (size_t)r + 1, EVENT_MS);
	check_d(&d, y >= 0, "[%s] no READY=1 for the good reload", bc->what);
	status2 = last_status(&d, (size_t)r, (size_t)y + 1);
	check_d(&d, status2 && !strstr(status2, "failed"),
		"[%s] STATUS= after a good reload still is '%s'", bc->what,
		status2 ? status2 : "(none)");
	tcp_echo(fa, "a: after the good reload", "again");
	stop_ok(&d);
}
END_TEST

/* ---- stop ---- */

static const int stop_signals[] = { SIGTERM, SIGINT };

START_TEST(systemd_stop_signal_sends_stopping_and_exits_0)
{
	int sig = stop_signals[_i];
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "a", .protocol = "tcp", .model = "poll" },
		{ .name = "e", .protocol = "udp", .model = "epoll" },
	};
	_cleanup_(closep) int fa = -1;
	_cleanup_(freep) char *line = NULL, *text = NULL;
	int r, stopping, extend;
	char c, why[32];
	ssize_t n;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	fa = tcp_ok("a", ls[0].port);
	tcp_echo(fa, "a", "hello");
	r = harness_stop(&d, sig);
	check_d(&d, r == 0, "%s: exit status %d (%s), expected 0", strsignal(sig), r,
		r < 0 ? strerror(-r) : "exit status");
	stopping = harness_notify_find(&d, "STOPPING=1", 0);
	check_d(&d, stopping >= 0, "%s: no STOPPING=1", strsignal(sig));
	check_d(&d, harness_notify_find(&d, "READY=1", (size_t)stopping + 1) < 0,
		"%s: READY=1 after STOPPING=1", strsignal(sig));
	extend = harness_notify_find(&d, "EXTEND_TIMEOUT_USEC=", 0);
	check_d(&d, extend < 0 || extend >= stopping,
		"%s: EXTEND_TIMEOUT_USEC= before STOPPING=1", strsignal(sig));
	snprintf(why, sizeof(why), "%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	text = harness_log_read(&d);
	line = find_line(text, 0, "stopping", why);
	check_d(&d, line, "%s: the log does not say it is stopping because of %s", why, why);
	/* The open connection was closed, not left hanging. */
	n = harness_recv_timeout(fa, &c, 1, IO_MS);
	ck_assert_msg(n == 0 || n == -ECONNRESET, "%s: open connection got %zd (%s), not EOF",
		      why, n, n < 0 ? strerror((int)-n) : "data");
}
END_TEST

/* ---- watchdog ---- */

START_TEST(systemd_watchdog_pings_at_half_watchdog_usec)
{
	struct hdaemon d;
	struct hl_listener ls[] = { { .name = "a", .protocol = "tcp", .model = "poll" } };
	uint64_t deadline;
	size_t count = 0;
	int r, first;

	r = start_wrapped(&d, ls, ELEMENTSOF(ls), 0,
			  "export WATCHDOG_USEC=200000 WATCHDOG_PID=$$\nexec \"$REAL\" \"$@\"");
	ck_assert_msg(r == 0, "netechod did not start: %s", strerror(-r));
	first = harness_wait_notify_from(&d, "WATCHDOG=1", 0, 1000);
	check_d(&d, first >= 0, "no WATCHDOG=1 within 1 s with WATCHDOG_USEC=200000");
	/* 1 s at one ping per 100 ms: about 10. */
	deadline = deadline_in(1000);
	for (size_t from = (size_t)first + 1; ms_left(deadline) > 0;) {
		int k = harness_wait_notify_from(&d, "WATCHDOG=1", from, ms_left(deadline));

		if (k < 0)
			break;
		count++;
		from = (size_t)k + 1;
	}
	check_d(&d, count >= 5 && count <= 20,
		"%zu WATCHDOG=1 in 1 s with WATCHDOG_USEC=200000; expected about 10", count);
	/* Still pinging through a reload. */
	{
		size_t from = harness_notify_count(&d);

		ck_assert_int_eq(harness_signal(&d, SIGHUP), 0);
		r = harness_wait_notify_from(&d, "READY=1", from, EVENT_MS);
		check_d(&d, r >= 0, "no READY=1 after SIGHUP");
		r = harness_wait_notify_from(&d, "WATCHDOG=1", (size_t)r + 1, 1000);
		check_d(&d, r >= 0, "no WATCHDOG=1 within 1 s after a reload");
	}
	tcp_connect_echo("a", ls[0].port, "hello");
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_no_watchdog_without_watchdog_usec)
{
	struct hdaemon d;
	struct hl_listener ls[] = { { .name = "a", .protocol = "tcp", .model = "poll" } };
	int r;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	r = harness_wait_notify_from(&d, "WATCHDOG=1", 0, 1000);
	check_d(&d, r == -ETIMEDOUT, "WATCHDOG=1 sent without WATCHDOG_USEC (%d)", r);
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_no_watchdog_when_watchdog_pid_is_another_process)
{
	struct hdaemon d;
	struct hl_listener ls[] = { { .name = "a", .protocol = "tcp", .model = "poll" } };
	int r;

	/* WATCHDOG_PID names someone else (a parent that set up the
	 * watchdog for itself): this process must not ping. */
	r = start_wrapped(&d, ls, ELEMENTSOF(ls), 0,
			  "export WATCHDOG_USEC=200000 WATCHDOG_PID=1\nexec \"$REAL\" \"$@\"");
	ck_assert_msg(r == 0, "netechod did not start: %s", strerror(-r));
	r = harness_wait_notify_from(&d, "WATCHDOG=1", 0, 1000);
	check_d(&d, r == -ETIMEDOUT, "WATCHDOG=1 sent although WATCHDOG_PID=1 (%d)", r);
	stop_ok(&d);
}
END_TEST

/* ---- supervision ---- */

/* Kills x's handler, keeps y (tcp, open connection) and z (udp) busy until
 * x echoes again on a connection made while it was down. Returns the time
 * from the kill until that echo, in ms. */
static unsigned
kill_handler_and_wait(struct hdaemon *d, const struct hl_listener *x, int fy, uint16_t zport,
		      pid_t *ret_killed)
{
	static const char msg[] = "are you back?";
	_cleanup_(closep) int fx = -1;
	char got[sizeof(msg)] = "";
	size_t have = 0;
	uint64_t t0, deadline;
	pid_t px;
	int r;

	px = harness_handler_pid(d->pid, "tcp", x->port);
	check_d(d, px > 0, "no handler process holding x's socket below pid %d", (int)d->pid);
	ck_assert_int_eq(kill(px, SIGKILL), 0);
	t0 = now_usec();
	deadline = deadline_in(RESTART_MS);
	/* The socket stays with the dispatcher: this waits in the backlog
	 * until the new handler takes it. */
	fx = tcp_ok("x while its handler is dead", x->port);
	r = harness_send_all(fx, msg, strlen(msg), IO_MS);
	ck_assert_msg(r == 0, "x: send: %s", strerror(-r));
	while (have < strlen(msg)) {
		ssize_t n;

		check_d(d, ms_left(deadline) > 0,
			"x did not serve again within %d ms of SIGKILL to its handler %d",
			RESTART_MS, (int)px);
		/* The others keep serving throughout. */
		tcp_echo(fy, "y (open connection) while x is down", "still fine");
		udp_echo("z while x is down", zport, "z too");
		n = harness_recv_timeout(fx, got + have, strlen(msg) - have,
					 MIN(ms_left(deadline), 100));
		if (n == -ETIMEDOUT)
			continue;
		check_d(d, n > 0, "x: connection made while it was down got %zd (%s)", n,
			n < 0 ? strerror((int)-n) : "EOF");
		have += (size_t)n;
	}
	check_d(d, memcmp(got, msg, strlen(msg)) == 0, "x: wrong echo '%s'", got);
	*ret_killed = px;
	return (unsigned)((now_usec() - t0) / USEC_PER_MSEC);
}

START_TEST(systemd_killed_handler_restarts_others_unaffected)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "x", .protocol = "tcp", .model = "poll" },
		{ .name = "y", .protocol = "tcp", .model = "thread" },
		{ .name = "z", .protocol = "udp", .model = "select" },
	};
	_cleanup_(closep) int fy = -1;
	_cleanup_(freep) char *line = NULL;
	char needle[64];
	pid_t pid, killed, px2;
	size_t logpos;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	pid = d.pid;
	fy = tcp_ok("y", ls[1].port);
	tcp_echo(fy, "y before", "hello");
	logpos = log_size(&d);
	(void)kill_handler_and_wait(&d, &ls[0], fy, ls[2].port, &killed);

	snprintf(needle, sizeof(needle), "%d", (int)killed);
	line = expect_log_line(&d, logpos, " x: ", "restart", "restart of x");
	check_d(&d, strstr(line, needle), "the restart line '%s' does not name pid %s", line,
		needle);
	px2 = harness_handler_pid(pid, "tcp", ls[0].port);
	check_d(&d, px2 > 0 && px2 != killed, "x's handler after the restart is %d (killed: %d)",
		(int)px2, (int)killed);
	tcp_echo(fy, "y after", "still open");
	tcp_connect_echo("x after", ls[0].port, "x is back");
	check_d(&d, harness_running(&d) && d.pid == pid, "the daemon itself died");
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_handler_restart_backs_off)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "x", .protocol = "tcp", .model = "poll" },
		{ .name = "y", .protocol = "tcp", .model = "thread" },
		{ .name = "z", .protocol = "udp", .model = "select" },
	};
	_cleanup_(closep) int fy = -1;
	_cleanup_(freep) char *s = NULL;
	unsigned t1, t2;
	size_t from;
	pid_t killed;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	fy = tcp_ok("y", ls[1].port);
	tcp_echo(fy, "y before", "hello");
	from = harness_notify_count(&d);
	t1 = kill_handler_and_wait(&d, &ls[0], fy, ls[2].port, &killed);
	/* STATUS= said a listener was restarting. */
	s = wait_status(&d, from, "restart", 0);
	check_d(&d, s && strstr(s, " x "), "no STATUS= about x restarting after its handler died");
	t2 = kill_handler_and_wait(&d, &ls[0], fy, ls[2].port, &killed);
	/* 1 s, then 2 s (SPEC: restarted with backoff). */
	check_d(&d, t1 >= 800 && t1 < 2000, "first restart after %u ms, expected about 1 s", t1);
	check_d(&d, t2 >= 1800 && t2 < 3500, "second restart after %u ms, expected about 2 s", t2);
	stop_ok(&d);
}
END_TEST

/* ---- SIGUSR1 ---- */

struct counters {
	uint64_t now, total, in, out;
};

static bool
parse_counters(const char *line, struct counters *ret)
{
	const char *p = strstr(line, "connections now ");
	const char *q = strstr(line, "bytes in ");

	return p && q &&
	       sscanf(p, "connections now %" SCNu64 " total %" SCNu64, &ret->now, &ret->total) ==
		       2 &&
	       sscanf(q, "bytes in %" SCNu64 " out %" SCNu64, &ret->in, &ret->out) == 2;
}

START_TEST(systemd_sigusr1_logs_counters_per_listener)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "tcpc", .protocol = "tcp", .model = "poll" },
		{ .name = "udpc", .protocol = "udp", .model = "select" },
		{ .name = "idle", .protocol = "tcp", .model = "thread" },
	};
	struct counters c[ELEMENTSOF(ls)];
	_cleanup_(closep) int open_fd = -1;
	size_t logpos;
	char peer[64];

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	{
		/* 11 bytes each way, then closed; counted at close. */
		_cleanup_(closep) int fd = tcp_ok("tcpc", ls[0].port);
		union sockaddr_any sa;
		socklen_t len = sizeof(sa);
		_cleanup_(freep) char *line = NULL;

		tcp_echo(fd, "tcpc", "hello world");
		ck_assert_int_eq(getsockname(fd, &sa.sa, &len), 0);
		snprintf(peer, sizeof(peer), "127.0.0.1:%u ", sockaddr_port(&sa));
		fd = safe_close(fd);
		line = expect_log_line(&d, 0, peer, "closed", "close of the tcpc connection");
	}
	for (int i = 0; i < 3; i++)
		udp_echo("udpc", ls[1].port, "four");
	open_fd = tcp_ok("idle", ls[2].port);
	tcp_echo(open_fd, "idle", "z");

	logpos = log_size(&d);
	ck_assert_int_eq(harness_signal(&d, SIGUSR1), 0);
	for (size_t i = 0; i < ELEMENTSOF(ls); i++) {
		char who[48];
		_cleanup_(freep) char *line = NULL;

		snprintf(who, sizeof(who), " %s: ", ls[i].name);
		line = expect_log_line(&d, logpos, who, "bytes", "SIGUSR1 counters");
		check_d(&d, parse_counters(line, &c[i]),
			"counters line for %s unreadable: '%s'", ls[i].name, line);
	}
	check_d(&d, c[0].in == 11 && c[0].out == 11 && c[0].total == 1 && c[0].now == 0,
		"tcpc: bytes in %" PRIu64 " out %" PRIu64 ", total %" PRIu64 " now %" PRIu64
		"; expected 11/11, 1 connection, 0 open",
		c[0].in, c[0].out, c[0].total, c[0].now);
	check_d(&d, c[1].in == 12 && c[1].out == 12,
		"udpc: bytes in %" PRIu64 " out %" PRIu64 "; expected 12/12", c[1].in, c[1].out);
	check_d(&d, c[2].now == 1 && c[2].total == 1,
		"idle: connections now %" PRIu64 " total %" PRIu64 "; expected 1 and 1", c[2].now,
		c[2].total);
	check_d(&d, harness_running(&d), "SIGUSR1 stopped the daemon");
	stop_ok(&d);
}
END_TEST

/* ---- socket activation ---- */

START_TEST(systemd_activation_matches_protocol_address_port_without_names)
{
	struct hdaemon d;
	struct hl_listener ls[3] = {
		{ .name = "t", .protocol = "tcp", .model = "poll" },
		{ .name = "u", .protocol = "udp", .model = "select" },
		{ .name = "t2", .protocol = "tcp", .model = "thread" },
	};
	_cleanup_(freep) char *line = NULL, *text = NULL;
	uint16_t port = 0;
	int r = -EADDRINUSE;

	/* tcp and udp on the same port: only the protocol tells the fds apart. */
	for (int attempt = 0; attempt < 16 && r < 0; attempt++) {
		int probe;

		r = harness_free_port(SOCK_STREAM, "127.0.0.1", &port);
		ck_assert_msg(r == 0, "no free port: %s", strerror(-r));
		probe = harness_udp_socket_addr("127.0.0.1", port, port);
		r = probe < 0 ? probe : 0;
		safe_close(probe);
	}
	ck_assert_msg(r == 0, "no port free for both tcp and udp");
	ls[0].port = ls[1].port = port;
	start_ok(&d, ls, ELEMENTSOF(ls), HARNESS_NO_FDNAMES | HARNESS_REVERSE_FDS);
	for (size_t i = 0; i < ELEMENTSOF(ls); i++)
		listener_echo(&ls[i], "unnamed fds");
	text = harness_log_read(&d);
	line = find_line(text, 0, "received 3 socket", NULL);
	check_d(&d, line, "the log does not say it received the 3 sockets");
	check_d(&d, !harness_log_contains(&d, "cannot listen"),
		"it bound a socket itself instead of using the passed one");
	stop_ok(&d);
}
END_TEST

/* netechod behind the real systemd-socket-activate; sockets listed in
 * ssa_args. Starts the daemon by triggering the first socket (tcp: connect
 * and echo, udp: a datagram) and waits for READY=1. */
static void
start_socket_activated(struct hdaemon *d, struct hl_listener *ls, size_t n,
		       const char *ssa_args, uint16_t trigger_port, bool trigger_udp)
{
	const char *ssa = socket_activate_bin();
	char body[1024], listening[64];
	_cleanup_(freep) char *line = NULL;
	int r;

	/* Part of the systemd package that scripts/deps.sh installs: a
	 * missing one is a broken test set-up, not a pass. */
	ck_assert_msg(ssa, "systemd-socket-activate is not installed (package systemd)");
	/* Without --accept it execs netechod in its own process on the
	 * first connection, so LISTEN_PID and the harness's pid match. It
	 * passes on only the variables given with -E. */
	snprintf(body, sizeof(body),
		 "exec %s %s -E NOTIFY_SOCKET=\"$NOTIFY_SOCKET\" \"$REAL\" \"$@\"", ssa, ssa_args);
	r = start_wrapped(d, ls, n, HARNESS_NO_WAIT_READY, body);
	ck_assert_msg(r == 0, "systemd-socket-activate did not start: %s", strerror(-r));
	snprintf(listening, sizeof(listening), "Listening on 127.0.0.1:%u", trigger_port);
	line = expect_log_line(d, 0, listening, NULL, "systemd-socket-activate");
	if (trigger_udp)
		udp_echo("first datagram (starts netechod)", trigger_port, "wake up");
	else
		tcp_connect_echo("first connection (starts netechod)", trigger_port, "wake up");
	r = harness_wait_notify(d, "READY=1", EVENT_MS);
	check_d(d, r >= 0, "no READY=1 from the socket-activated netechod: %s", strerror(-r));
}

START_TEST(systemd_socket_activate_tcp_by_name)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "act", .protocol = "tcp", .model = "poll", .no_fd = true },
	};
	char args[128];
	int r;

	r = harness_free_port(SOCK_STREAM, "127.0.0.1", &ls[0].port);
	ck_assert_int_eq(r, 0);
	snprintf(args, sizeof(args), "-l 127.0.0.1:%u --fdname=act", ls[0].port);
	start_socket_activated(&d, ls, ELEMENTSOF(ls), args, ls[0].port, false);
	tcp_connect_echo("act", ls[0].port, "second connection");
	check_d(&d, harness_log_contains(&d, "received 1 socket"),
		"the log does not say it received a socket");
	check_d(&d, !harness_log_contains(&d, "cannot listen"), "it tried to bind the port itself");
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_socket_activate_udp_by_name)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "actu", .protocol = "udp", .model = "select", .no_fd = true },
	};
	char args[128];
	int r;

	r = harness_free_port(SOCK_DGRAM, "127.0.0.1", &ls[0].port);
	ck_assert_int_eq(r, 0);
	snprintf(args, sizeof(args), "-d -l 127.0.0.1:%u --fdname=actu", ls[0].port);
	start_socket_activated(&d, ls, ELEMENTSOF(ls), args, ls[0].port, true);
	udp_echo("actu", ls[0].port, "second datagram");
	check_d(&d, harness_log_contains(&d, "received 1 socket"),
		"the log does not say it received a socket");
	check_d(&d, !harness_log_contains(&d, "cannot listen"), "it tried to bind the port itself");
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_socket_activate_tcp_by_address_without_name)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "whatever", .protocol = "tcp", .model = "thread", .no_fd = true },
	};
	char args[128];
	int r;

	r = harness_free_port(SOCK_STREAM, "127.0.0.1", &ls[0].port);
	ck_assert_int_eq(r, 0);
	snprintf(args, sizeof(args), "-l 127.0.0.1:%u", ls[0].port);
	start_socket_activated(&d, ls, ELEMENTSOF(ls), args, ls[0].port, false);
	tcp_connect_echo("whatever", ls[0].port, "second connection");
	check_d(&d, !harness_log_contains(&d, "cannot listen"), "it tried to bind the port itself");
	check_d(&d, !harness_log_contains(&d, "matches no enabled listener"),
		"the unnamed socket was not matched by address and port");
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_socket_activate_extra_fd_closed_with_warning)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "act", .protocol = "tcp", .model = "poll", .no_fd = true },
	};
	_cleanup_(freep) char *line = NULL;
	uint16_t extra_port;
	char args[160];
	int r, fd;

	r = harness_free_port(SOCK_STREAM, "127.0.0.1", &ls[0].port);
	ck_assert_int_eq(r, 0);
	do {
		r = harness_free_port(SOCK_STREAM, "127.0.0.1", &extra_port);
		ck_assert_int_eq(r, 0);
	} while (extra_port == ls[0].port);
	snprintf(args, sizeof(args), "-l 127.0.0.1:%u -l 127.0.0.1:%u --fdname=act:stray",
		 ls[0].port, extra_port);
	start_socket_activated(&d, ls, ELEMENTSOF(ls), args, ls[0].port, false);
	line = expect_log_line(&d, 0, " warning ", "stray", "the unmatched fd");
	/* Closed: no one listens on that port any more. */
	fd = harness_tcp_connect(extra_port);
	safe_close(fd);
	check_d(&d, fd == -ECONNREFUSED,
		"the unmatched socket 127.0.0.1:%u still accepts connections (%s)", extra_port,
		fd >= 0 ? "connected" : strerror(-fd));
	tcp_connect_echo("act", ls[0].port, "matched one still works");
	stop_ok(&d);
}
END_TEST

/* Two different free ports for socktype on 127.0.0.1. */
static void
two_free_ports(int socktype, uint16_t *ret_a, uint16_t *ret_b)
{
	int r;

	r = harness_free_port(socktype, "127.0.0.1", ret_a);
	ck_assert_msg(r == 0, "no free port: %s", strerror(-r));
	for (int attempt = 0; attempt < 16; attempt++) {
		r = harness_free_port(socktype, "127.0.0.1", ret_b);
		ck_assert_msg(r == 0, "no free port: %s", strerror(-r));
		if (*ret_b != *ret_a)
			return;
	}
	ck_abort_msg("no second free port besides %u", *ret_a);
}

/* First line the server sends on a fresh chat connection (tcp), or its
 * reply to a nickname datagram (udp). */
static void
chat_first_reply(struct hdaemon *d, bool udp, uint16_t port, char *buf, size_t len)
{
	_cleanup_(closep) int fd = udp ? harness_udp_socket(port) : tcp_ok("chat", port);
	size_t got = 0;
	ssize_t n;

	ck_assert_msg(fd >= 0, "udp socket: %s", strerror(-fd));
	ck_assert(len > 1);
	if (udp) {
		n = harness_udp_roundtrip(fd, "alice", 5, buf, len - 1, IO_MS);
		check_d(d, n > 0, "udp 127.0.0.1:%u: no reply to a nickname (%s)", port,
			n < 0 ? strerror((int)-n) : "empty");
		buf[MIN((size_t)n, len - 1)] = 0;
		return;
	}
	while (got < len - 1 && !memchr(buf, '\n', got)) {
		n = harness_recv_timeout(fd, buf + got, len - 1 - got, IO_MS);
		check_d(d, n > 0, "tcp 127.0.0.1:%u: first line cut short after '%.*s' (%s)", port,
			(int)got, buf, n < 0 ? strerror((int)-n) : "EOF");
		got += (size_t)n;
	}
	buf[got] = 0;
}

struct swap_case {
	const char *protocol;
	const char *ssa_flags; /* systemd-socket-activate: -d for datagram sockets */
	const char *chat_model;
	const char *chat_reply; /* how chat listener b answers first */
};

static const struct swap_case swap_cases[] = {
	{ "tcp", "", "thread", "* welcome to b " },
	{ "udp", "-d ", "select", "* to join as alice, send: /join " },
};

/* netechod(8), SOCKET ACTIVATION: a socket whose FileDescriptorName= is a
 * listener's name goes to that listener whatever its address, before any
 * socket is matched by address. Sockets "a" (port p1) and "b" (port p2)
 * come with a config that puts listener a on p2 and b on p1: matched by
 * address each would get the other's socket. a is echo and b is chat, so
 * the replies show which listener serves which port. */
START_TEST(systemd_socket_activate_name_beats_address)
{
	const struct swap_case *sc = &swap_cases[_i];
	bool udp = strcmp(sc->protocol, "udp") == 0;
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "a", .protocol = sc->protocol, .model = "poll", .service = "echo",
		  .no_fd = true },
		{ .name = "b", .protocol = sc->protocol, .model = sc->chat_model,
		  .service = "chat", .no_fd = true },
	};
	_cleanup_(freep) char *text = NULL, *line = NULL;
	char args[160], reply[256];
	uint16_t p1, p2;

	two_free_ports(udp ? SOCK_DGRAM : SOCK_STREAM, &p1, &p2);
	ls[0].port = p2;
	ls[1].port = p1;
	snprintf(args, sizeof(args), "%s-l 127.0.0.1:%u -l 127.0.0.1:%u --fdname=a:b",
		 sc->ssa_flags, p1, p2);
	/* The trigger is an echo on p1: only listener a echoes. */
	start_socket_activated(&d, ls, ELEMENTSOF(ls), args, p1, udp);
	if (udp)
		udp_echo("a (socket 'a', b's port in the config)", p1, "served by a");
	else
		tcp_connect_echo("a (socket 'a', b's port in the config)", p1, "served by a");
	chat_first_reply(&d, udp, p2, reply, sizeof(reply));
	check_d(&d, strncmp(reply, sc->chat_reply, strlen(sc->chat_reply)) == 0,
		"[%s] port %u (socket 'b', a's port in the config) answered '%s'; expected chat listener b: '%s...'",
		sc->protocol, p2, reply, sc->chat_reply);
	text = harness_log_read(&d);
	line = find_line(text, 0, "received 2 socket", NULL);
	check_d(&d, line, "[%s] the log does not say it received the 2 sockets", sc->protocol);
	check_d(&d, !harness_log_contains(&d, "matches no enabled listener"),
		"[%s] a named socket was closed as unmatched", sc->protocol);
	check_d(&d, !harness_log_contains(&d, "cannot listen"),
		"[%s] it tried to bind a configured port itself", sc->protocol);
	stop_ok(&d);
}
END_TEST

/* A socket named after a listener but of the other type (a datagram
 * socket named like a tcp listener) is not given to it: a warning says so,
 * the listener binds its configured address itself, and the socket, now
 * matching no listener, is closed with a warning (netechod(8), SOCKET
 * ACTIVATION). Start-up goes on; it is not an error. */
START_TEST(systemd_socket_activate_named_socket_of_wrong_type_not_used)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "t", .protocol = "tcp", .model = "poll", .no_fd = true },
		{ .name = "u", .protocol = "udp", .model = "select", .no_fd = true },
	};
	_cleanup_(freep) char *warn = NULL, *closed = NULL;
	unsigned long inodes[4];
	uint16_t wrong;
	char args[160];
	int r;

	r = harness_free_port(SOCK_STREAM, "127.0.0.1", &ls[0].port);
	ck_assert_msg(r == 0, "no free tcp port: %s", strerror(-r));
	two_free_ports(SOCK_DGRAM, &wrong, &ls[1].port);
	/* -d: both are datagram sockets; "t" is the wrong type for t. */
	snprintf(args, sizeof(args), "-d -l 127.0.0.1:%u -l 127.0.0.1:%u --fdname=t:u", wrong,
		 ls[1].port);
	start_socket_activated(&d, ls, ELEMENTSOF(ls), args, ls[1].port, true);
	warn = expect_log_line(&d, 0, " warning t: ", "not a tcp socket", "the wrong-type socket");
	closed = expect_log_line(&d, 0, "matches no enabled listener", "name t",
				 "closing the wrong-type socket");
	check_d(&d, strstr(closed, " warning "), "not logged as a warning: '%s'", closed);
	/* t bound its own address, u kept its socket. */
	tcp_connect_echo("t (bound by netechod)", ls[0].port, "self-bound");
	udp_echo("u (named udp socket)", ls[1].port, "still named");
	check_d(&d, harness_socket_inodes("udp", wrong, inodes, ELEMENTSOF(inodes)) == 0,
		"the datagram socket named 't' (127.0.0.1:%u) is still open", wrong);
	check_d(&d, harness_running(&d), "the daemon exited");
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_socket_activate_mixed_with_self_bound)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "act", .protocol = "tcp", .model = "poll", .no_fd = true },
		{ .name = "own", .protocol = "tcp", .model = "thread", .no_fd = true },
		{ .name = "ownu", .protocol = "udp", .model = "epoll", .no_fd = true },
	};
	char args[128];
	int r;

	r = harness_free_port(SOCK_STREAM, "127.0.0.1", &ls[0].port);
	ck_assert_int_eq(r, 0);
	snprintf(args, sizeof(args), "-l 127.0.0.1:%u --fdname=act", ls[0].port);
	start_socket_activated(&d, ls, ELEMENTSOF(ls), args, ls[0].port, false);
	for (size_t i = 0; i < ELEMENTSOF(ls); i++)
		listener_echo(&ls[i], "mixed");
	check_d(&d, harness_log_contains(&d, "received 1 socket"),
		"the log does not say it received exactly one socket");
	stop_ok(&d);
}
END_TEST

/* ---- logging ---- */

static void
check_line_format(struct hdaemon *d, const char *text)
{
	regex_t re;
	int r;

	r = regcomp(&re,
		    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?"
		    "(Z|[+-][0-9]{2}:?[0-9]{2})? "
		    "(debug|info|notice|warning|error|critical|alert|emerg) "
		    "[A-Za-z0-9_.-]+: [^ ].*$",
		    REG_EXTENDED | REG_NOSUB);
	ck_assert_int_eq(r, 0);
	for (const char *line = text; line && *line;) {
		const char *end = strchrnul(line, '\n');
		_cleanup_(freep) char *l = strndup(line, (size_t)(end - line));

		check_d(d, l && regexec(&re, l, 0, NULL, 0) == 0,
			"log line is not 'TIME LEVEL LISTENER: message': '%s'", l ? l : "");
		line = *end ? end + 1 : end;
	}
	regfree(&re);
}

/* The level and the listener (2nd and 3rd words) of a log line. */
static void
line_level_listener(const char *line, char *level, char *listener)
{
	ck_assert_int_eq(sscanf(line, "%*s %15s %63[^:]:", level, listener), 2);
}

static void
check_open_close_lines(struct hdaemon *d, const char *text, const char *name, const char *peer,
		       const char *reason, unsigned bytes)
{
	_cleanup_(freep) char *open = find_line(text, 0, peer, "open");
	_cleanup_(freep) char *close = find_line(text, 0, peer, "close");
	char level[16], listener[64], in[32], out[32];

	check_d(d, open, "no connection open line for %s", peer);
	check_d(d, close, "no connection close line for %s", peer);
	line_level_listener(open, level, listener);
	check_d(d, strcmp(level, "info") == 0 && strcmp(listener, name) == 0,
		"open line '%s': expected level info and listener %s", open, name);
	line_level_listener(close, level, listener);
	check_d(d, strcmp(level, "info") == 0 && strcmp(listener, name) == 0,
		"close line '%s': expected level info and listener %s", close, name);
	check_d(d, strstr(close, reason), "close line '%s' does not give the reason '%s'", close,
		reason);
	snprintf(in, sizeof(in), "%u bytes in", bytes);
	snprintf(out, sizeof(out), "%u bytes out", bytes);
	check_d(d, strstr(close, in) && strstr(close, out),
		"close line '%s' does not count %u bytes each way", close, bytes);
}

static void
client_peer(int fd, char *buf, size_t len)
{
	union sockaddr_any sa;
	socklen_t sl = sizeof(sa);

	ck_assert_int_eq(getsockname(fd, &sa.sa, &sl), 0);
	/* A trailing space, so :1234 does not match :12345. */
	snprintf(buf, len, "127.0.0.1:%u ", sockaddr_port(&sa));
}

START_TEST(systemd_stderr_log_lines_without_journal)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "tcpl", .protocol = "tcp", .model = "poll" },
		{ .name = "udpl", .protocol = "udp", .model = "select" },
	};
	_cleanup_(freep) char *line = NULL, *text = NULL;
	char peer[64];

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	{
		_cleanup_(closep) int fd = tcp_ok("tcpl", ls[0].port);

		client_peer(fd, peer, sizeof(peer));
		tcp_echo(fd, "tcpl", "hello");
	}
	udp_echo("udpl", ls[1].port, "hi");
	line = expect_log_line(&d, 0, peer, "close", "close line");
	stop_ok(&d);

	text = harness_log_read(&d);
	ck_assert_ptr_nonnull(text);
	check_line_format(&d, text);
	check_open_close_lines(&d, text, "tcpl", peer, "eof", 5);
}
END_TEST

START_TEST(systemd_log_close_reason_idle_timeout)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "idler", .protocol = "tcp", .model = "thread",
		  .extra = "idle_timeout = 1;" },
	};
	_cleanup_(closep) int fd = -1;
	_cleanup_(freep) char *line = NULL, *text = NULL;
	char peer[64], c;
	ssize_t n;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	fd = tcp_ok("idler", ls[0].port);
	client_peer(fd, peer, sizeof(peer));
	tcp_echo(fd, "idler", "abc");
	n = harness_recv_timeout(fd, &c, 1, 1000 + EVENT_MS);
	check_d(&d, n == 0 || n == -ECONNRESET, "idle connection not closed: %zd", n);
	line = expect_log_line(&d, 0, peer, "close", "close line");
	text = harness_log_read(&d);
	check_open_close_lines(&d, text, "idler", peer, "idle", 3);
	stop_ok(&d);
}
END_TEST

START_TEST(systemd_log_ignores_journal_stream_of_another_file)
{
	struct hdaemon d;
	struct hl_listener ls[] = { { .name = "tcpl", .protocol = "tcp", .model = "poll" } };
	_cleanup_(freep) char *line = NULL, *text = NULL;
	char peer[64];
	int r;

	/* JOURNAL_STREAM names some other stream (a shell redirect in
	 * ExecStart=): stderr is not the journal, lines stay plain. */
	r = start_wrapped(&d, ls, ELEMENTSOF(ls), 0,
			  "export JOURNAL_STREAM=1:1\nexec \"$REAL\" \"$@\"");
	ck_assert_msg(r == 0, "netechod did not start: %s", strerror(-r));
	{
		_cleanup_(closep) int fd = tcp_ok("tcpl", ls[0].port);

		client_peer(fd, peer, sizeof(peer));
		tcp_echo(fd, "tcpl", "hello");
	}
	line = expect_log_line(&d, 0, peer, "close", "close line on stderr");
	stop_ok(&d);
	text = harness_log_read(&d);
	check_line_format(&d, text);
	check_open_close_lines(&d, text, "tcpl", peer, "eof", 5);
}
END_TEST

/* A fork-model connection outlives its crashed listener process (the
 * dispatcher adopts it). When it ends, the count the dispatcher reset for
 * the new listener must stay right: it used to wrap to 2^64 - 1. */
START_TEST(systemd_orphaned_fork_connection_keeps_counters_right)
{
	struct hdaemon d;
	struct hl_listener ls[] = {
		{ .name = "x", .protocol = "tcp", .model = "fork" },
		{ .name = "y", .protocol = "tcp", .model = "thread" },
		{ .name = "z", .protocol = "udp", .model = "select" },
	};
	_cleanup_(closep) int fy = -1, fo = -1;
	struct counters c = { 0 };
	pid_t px, orphan = -1, killed;
	uint64_t deadline;
	DIR *dir;
	struct dirent *e;

	start_ok(&d, ls, ELEMENTSOF(ls), 0);
	fy = tcp_ok("y", ls[1].port);
	tcp_echo(fy, "y before", "hello");
	fo = tcp_ok("x", ls[0].port);
	tcp_echo(fo, "x before", "soon orphaned");
	px = harness_handler_pid(d.pid, "tcp", ls[0].port);
	check_d(&d, px > 0, "no handler for x");
	dir = opendir("/proc");
	ck_assert_ptr_nonnull(dir);
	while ((e = readdir(dir)) && orphan < 0) {
		pid_t p = (pid_t)atoi(e->d_name);

		if (p > 0 && harness_proc_ppid(p) == px)
			orphan = p;
	}
	closedir(dir);
	check_d(&d, orphan > 0, "no connection child under x's handler %d", (int)px);

	(void)kill_handler_and_wait(&d, &ls[0], fy, ls[2].port, &killed);
	tcp_echo(fo, "x's orphaned connection", "still served");
	fo = safe_close(fo);
	deadline = deadline_in(EVENT_MS);
	while (kill(orphan, 0) == 0) {
		check_d(&d, ms_left(deadline) > 0, "orphan %d not reaped within %d ms",
			(int)orphan, EVENT_MS);
		(void)poll(NULL, 0, 20);
	}
	/* The new handler may still be reaping the connection made while x
	 * was down: 1 for a moment, never more, then 0. */
	deadline = deadline_in(EVENT_MS);
	do {
		_cleanup_(freep) char *line = NULL;
		size_t logpos = log_size(&d);

		check_d(&d, ms_left(deadline) > 0, "x's open connections stayed at %" PRIu64, c.now);
		ck_assert_int_eq(harness_signal(&d, SIGUSR1), 0);
		line = expect_log_line(&d, logpos, " x: ", "bytes", "SIGUSR1 counters");
		check_d(&d, parse_counters(line, &c), "counters line unreadable: '%s'", line);
		check_d(&d, c.now <= 1, "x's open connections after the orphan closed: %" PRIu64
			" (expected 0)", c.now);
		if (c.now)
			(void)poll(NULL, 0, 50);
	} while (c.now != 0);
	stop_ok(&d);
}
END_TEST

static Suite *
systemd_suite(void)
{
	Suite *s = suite_create("systemd");
	TCase *tc;

	tc = tcase_create("start");
	tcase_add_checked_fixture(tc, fixture_setup, NULL);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, systemd_ready_only_once_every_listener_serves);
	tcase_add_test(tc, systemd_status_counts_clients);
	suite_add_tcase(s, tc);

	tc = tcase_create("reload");
	tcase_add_checked_fixture(tc, fixture_setup, NULL);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, systemd_reload_applies_changes_and_keeps_the_rest);
	tcase_add_test(tc, systemd_reload_rename_keeps_the_port_served);
	tcase_add_loop_test(tc, systemd_reload_with_bad_config_keeps_running_config, 0,
			    ELEMENTSOF(bad_configs));
	suite_add_tcase(s, tc);

	tc = tcase_create("stop");
	tcase_add_checked_fixture(tc, fixture_setup, NULL);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_loop_test(tc, systemd_stop_signal_sends_stopping_and_exits_0, 0,
			    ELEMENTSOF(stop_signals));
	suite_add_tcase(s, tc);

	tc = tcase_create("watchdog");
	tcase_add_checked_fixture(tc, fixture_setup, NULL);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, systemd_watchdog_pings_at_half_watchdog_usec);
	tcase_add_test(tc, systemd_no_watchdog_without_watchdog_usec);
	tcase_add_test(tc, systemd_no_watchdog_when_watchdog_pid_is_another_process);
	suite_add_tcase(s, tc);

	tc = tcase_create("supervision");
	tcase_add_checked_fixture(tc, fixture_setup, NULL);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, systemd_killed_handler_restarts_others_unaffected);
	tcase_add_test(tc, systemd_orphaned_fork_connection_keeps_counters_right);
	tcase_add_test(tc, systemd_handler_restart_backs_off);
	suite_add_tcase(s, tc);

	tc = tcase_create("counters");
	tcase_add_checked_fixture(tc, fixture_setup, NULL);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, systemd_sigusr1_logs_counters_per_listener);
	suite_add_tcase(s, tc);

	tc = tcase_create("activation");
	tcase_add_checked_fixture(tc, fixture_setup, NULL);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, systemd_activation_matches_protocol_address_port_without_names);
	tcase_add_test(tc, systemd_socket_activate_tcp_by_name);
	tcase_add_test(tc, systemd_socket_activate_udp_by_name);
	tcase_add_test(tc, systemd_socket_activate_tcp_by_address_without_name);
	tcase_add_test(tc, systemd_socket_activate_extra_fd_closed_with_warning);
	tcase_add_test(tc, systemd_socket_activate_mixed_with_self_bound);
	tcase_add_loop_test(tc, systemd_socket_activate_name_beats_address, 0,
			    ELEMENTSOF(swap_cases));
	tcase_add_test(tc, systemd_socket_activate_named_socket_of_wrong_type_not_used);
	suite_add_tcase(s, tc);

	tc = tcase_create("logging");
	tcase_add_checked_fixture(tc, fixture_setup, NULL);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, systemd_stderr_log_lines_without_journal);
	tcase_add_test(tc, systemd_log_close_reason_idle_timeout);
	tcase_add_test(tc, systemd_log_ignores_journal_stream_of_another_file);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(systemd_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
