/* netecho(1), the client, against servers this test runs itself on
 * 127.0.0.1 (and ::1 when the host has it): an echo server and one that
 * alters bytes (a forked child each), a server that never answers (a
 * socket nobody reads), a closed port, and scripted chat servers (a
 * thread). netechod is not involved. The real netecho binary is run
 * (NETECHO_BIN); every wait has a deadline. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "proxyproto.h"
#include "util.h"

#define TCASE_TIMEOUT 60
#define IO_MS HARNESS_IO_TIMEOUT_MS
/* How long a chat client gets to (wrongly) talk before the welcome line.
 * A fixed window, because no sentinel can prove this silence: netecho
 * sends nothing we could ask for that must come after its name, and once
 * the welcome is out, an early name and a correct one look the same. */
#define QUIET_MS 200
/* A scripted server gives up on a silent client after this long. */
#define SCRIPT_MS 8000

/* ---- servers ---- */

enum server_kind {
	SERVER_ECHO,
	SERVER_ALTER, /* flips the lowest bit of the first byte of every read */
	_SERVER_KIND_MAX,
};

/* What a forked server has done, in memory it shares with the test. */
struct server_counts {
	uint64_t accepted; /* TCP connections */
	uint64_t tcp_bytes; /* TCP bytes read (and echoed) */
};

struct server {
	pid_t pid;
	struct server_counts *counts;
	uint16_t tcp_port;
	uint16_t udp_port;
	uint16_t tcp6_port; /* 0: no IPv6 */
	uint16_t udp6_port;
};

/* The fixture's servers; ports of a never-answering server and of
 * nothing at all. */
static struct server echo_srv, alter_srv;
static int silent_tcp = -1, silent_udp = -1;
static uint16_t silent_tcp_port, silent_udp_port;
static uint16_t closed_tcp_port, closed_udp_port;

static int
bound_socket(int type, const char *address, uint16_t *ret_port)
{
	_cleanup_(closep) int fd = -1;
	union sockaddr_any sa;
	socklen_t len = sizeof(sa);
	int one = 1;

	memset(&sa, 0, sizeof(sa));
	if (strchr(address, ':')) {
		sa.in6.sin6_family = AF_INET6;
		sa.in6.sin6_addr = in6addr_loopback;
	} else {
		sa.in.sin_family = AF_INET;
		sa.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	fd = socket(sa.sa.sa_family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sa.sa.sa_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, &sa.sa, sockaddr_len(&sa)) < 0)
		return -errno;
	if (type == SOCK_STREAM && listen(fd, 128) < 0)
		return -errno;
	if (getsockname(fd, &sa.sa, &len) < 0)
		return -errno;
	*ret_port = sockaddr_port(&sa);
	return TAKE_FD(fd);
}

#define MAX_SERVER_FDS 256

/* The forked server: one poll() loop over the listeners, the UDP sockets
 * and the clients. Clients are blocking with a send timeout; netecho
 * always reads, so a write never waits long. */
static _Noreturn void
server_main(enum server_kind kind, const int *tcp, const int *udp, size_t n,
	    struct server_counts *counts)
{
	struct pollfd pfd[MAX_SERVER_FDS];
	static uint8_t buf[65536];
	size_t n_pfd = 0;

	for (size_t i = 0; i < n; i++) {
		pfd[n_pfd++] = (struct pollfd){ .fd = tcp[i], .events = POLLIN };
		pfd[n_pfd++] = (struct pollfd){ .fd = udp[i], .events = POLLIN };
	}
	for (;;) {
		size_t fixed = 2 * n;

		if (poll(pfd, n_pfd, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		for (size_t i = 0; i < n_pfd; i++) {
			union sockaddr_any from;
			socklen_t from_len = sizeof(from);
			ssize_t got;

			if (!pfd[i].revents)
				continue;
			if (i < fixed && i % 2 == 0) {
				struct timeval tv = { .tv_sec = 5 };
				int fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC);

				if (fd < 0)
					continue;
				__atomic_add_fetch(&counts->accepted, 1, __ATOMIC_RELAXED);
				if (n_pfd == MAX_SERVER_FDS) {
					close(fd);
					continue;
				}
				(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
				pfd[n_pfd++] = (struct pollfd){ .fd = fd, .events = POLLIN };
				continue;
			}
			if (i < fixed) {
				got = recvfrom(pfd[i].fd, buf, sizeof(buf), MSG_DONTWAIT, &from.sa,
					       &from_len);
				if (got < 0)
					continue;
				if (kind == SERVER_ALTER && got > 0)
					buf[0] ^= 1;
				(void)sendto(pfd[i].fd, buf, (size_t)got, 0, &from.sa, from_len);
				continue;
			}
			got = recv(pfd[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got > 0) {
				__atomic_add_fetch(&counts->tcp_bytes, (uint64_t)got,
						   __ATOMIC_RELAXED);
				if (kind == SERVER_ALTER)
					buf[0] ^= 1;
				if (write_all(pfd[i].fd, buf, (size_t)got) == 0)
					continue;
			}
			close(pfd[i].fd);
			pfd[i--] = pfd[--n_pfd];
		}
	}
}

static void
server_start(struct server *s, enum server_kind kind)
{
	int tcp[2] = { -1, -1 }, udp[2] = { -1, -1 };
	size_t n = 1;

	*s = (struct server){ 0 };
	s->counts = mmap(NULL, sizeof(*s->counts), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_msg(s->counts != MAP_FAILED, "mmap: %s", strerror(errno));
	tcp[0] = bound_socket(SOCK_STREAM, "127.0.0.1", &s->tcp_port);
	udp[0] = bound_socket(SOCK_DGRAM, "127.0.0.1", &s->udp_port);
	ck_assert_msg(tcp[0] >= 0 && udp[0] >= 0, "cannot bind test servers on 127.0.0.1");
	if (harness_have_ipv6()) {
		tcp[1] = bound_socket(SOCK_STREAM, "::1", &s->tcp6_port);
		udp[1] = bound_socket(SOCK_DGRAM, "::1", &s->udp6_port);
		ck_assert_msg(tcp[1] >= 0 && udp[1] >= 0, "cannot bind test servers on ::1");
		n = 2;
	}
	s->pid = fork();
	ck_assert_msg(s->pid >= 0, "fork: %s", strerror(errno));
	if (s->pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* A server that outlives its test by accident still ends. */
		alarm(2 * TCASE_TIMEOUT);
		server_main(kind, tcp, udp, n, s->counts);
	}
	for (size_t i = 0; i < 2; i++) {
		safe_close(tcp[i]);
		safe_close(udp[i]);
	}
}

static void
server_stop(struct server *s)
{
	if (s->pid > 0) {
		(void)kill(s->pid, SIGKILL);
		(void)waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
	if (s->counts && s->counts != MAP_FAILED)
		(void)munmap(s->counts, sizeof(*s->counts));
	s->counts = NULL;
}

static void
setup(void)
{
	server_start(&echo_srv, SERVER_ECHO);
	server_start(&alter_srv, SERVER_ALTER);
	/* Listening but never accepting: connect works, no byte comes back. */
	silent_tcp = bound_socket(SOCK_STREAM, "127.0.0.1", &silent_tcp_port);
	silent_udp = bound_socket(SOCK_DGRAM, "127.0.0.1", &silent_udp_port);
	ck_assert(silent_tcp >= 0 && silent_udp >= 0);
	/* Bound to learn a free port, then closed. */
	ck_assert(harness_free_port(SOCK_STREAM, "127.0.0.1", &closed_tcp_port) == 0);
	ck_assert(harness_free_port(SOCK_DGRAM, "127.0.0.1", &closed_udp_port) == 0);
}

static void
teardown(void)
{
	server_stop(&echo_srv);
	server_stop(&alter_srv);
	silent_tcp = safe_close(silent_tcp);
	silent_udp = safe_close(silent_udp);
}

/* ---- running netecho ---- */

struct run {
	int status;
	char *out;
	char *err;
	uint64_t usec; /* how long it ran */
};

static void
run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	*r = (struct run){ 0 };
}

/* Run netecho with up to 15 arguments (NULL-terminated). */
static struct run
run_netecho(const char *arg, ...)
{
	char *argv[17];
	size_t n = 0;
	struct run r = { 0 };
	uint64_t start;
	va_list ap;
	int e;

	argv[n++] = (char *)harness_netecho_bin();
	va_start(ap, arg);
	for (const char *a = arg; a && n < ELEMENTSOF(argv) - 1; a = va_arg(ap, const char *))
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;

	start = now_usec();
	e = harness_run(argv, &r.out, &r.err, &r.status);
	r.usec = now_usec() - start;
	ck_assert_msg(e == 0, "running %s %s: %s", argv[0], argv[1], strerror(-e));
	return r;
}

static const char *
port_str(uint16_t port)
{
	/* A few live at once in one call's arguments. */
	static char bufs[4][8];
	static unsigned next;
	char *b = bufs[next++ % ELEMENTSOF(bufs)];

	snprintf(b, sizeof(bufs[0]), "%u", port);
	return b;
}

static void
expect_status(const struct run *r, int want, const char *what)
{
	ck_assert_msg(r->status == want, "%s: exit status %d, expected %d\nstdout: %s\nstderr: %s",
		      what, r->status, want, r->out, r->err);
}

static void
expect_prefix(const char *s, const char *prefix, const char *what)
{
	ck_assert_msg(strncmp(s, prefix, strlen(prefix)) == 0, "%s: expected '%s...', got '%s'",
		      what, prefix, s);
}

/* "ECHO OK - N bytes in T ms|time=Ss;;;0 size=NB\n", exactly. */
static void
expect_echo_ok(const struct run *r, size_t len, const char *what)
{
	unsigned long n = 0, n2 = 0;
	double ms = -1, s = -1;
	int used = 0;

	expect_status(r, 0, what);
	ck_assert_msg(sscanf(r->out, "ECHO OK - %lu bytes in %lf ms|time=%lfs;;;0 size=%luB\n%n",
			     &n, &ms, &s, &n2, &used) == 4 &&
			      used > 0 && r->out[used] == '\0',
		      "%s: unexpected output '%s'", what, r->out);
	ck_assert_msg(n == len && n2 == len, "%s: %lu/%lu bytes reported, sent %zu", what, n, n2,
		      len);
	ck_assert_msg(ms >= 0 && s >= 0 && ms < 10000, "%s: odd time in '%s'", what, r->out);
}

/* The last line of bench's stdout is "bench key=value ..."; return one value. */
static unsigned long long
summary_get(const char *out, const char *key)
{
	const char *last = out, *p;
	char pat[64];

	for (p = out; *p; p++)
		if (*p == '\n' && p[1])
			last = p + 1;
	ck_assert_msg(strncmp(last, "bench ", 6) == 0, "no summary as the last line:\n%s", out);
	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(last, pat);
	ck_assert_msg(p, "summary lacks %s: %s", key, last);
	return strtoull(p + strlen(pat), NULL, 10);
}

/* ---- usage ---- */

static const struct {
	const char *args[8];
	int status;
	const char *out_prefix; /* NULL: not checked */
} usage_cases[] = {
	{ { NULL }, 3, NULL },
	{ { "frobnicate", NULL }, 3, NULL },
	{ { "--bogus", NULL }, 3, NULL },
	{ { "-h", NULL }, 0, "Usage: netecho" },
	{ { "--help", NULL }, 0, "Usage: netecho" },
	{ { "-V", NULL }, 0, "netecho " },
	{ { "--version", NULL }, 0, "netecho " },
	{ { "echo", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "127.0.0.1", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "-x", "127.0.0.1", "7", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "-t", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "-t", "abc", "127.0.0.1", "7", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "-t", "0", "127.0.0.1", "7", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "-t", "-1", "127.0.0.1", "7", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "127.0.0.1", "7", "a", "b", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "127.0.0.1", "7", "", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "-h", NULL }, 0, "Usage: netecho echo" },
	{ { "chat", "127.0.0.1", "7", NULL }, 3, NULL },
	{ { "chat", "-x", "127.0.0.1", "7", "bob", NULL }, 3, NULL },
	{ { "chat", "-h", NULL }, 0, "Usage: netecho chat" },
	{ { "bench", "127.0.0.1", NULL }, 3, NULL },
	{ { "bench", "127.0.0.1", "7", "-c", "0", NULL }, 3, NULL },
	{ { "bench", "127.0.0.1", "7", "-s", "x", NULL }, 3, NULL },
	{ { "bench", "127.0.0.1", "7", "-d", "0", NULL }, 3, NULL },
	{ { "bench", "127.0.0.1", "7", "-P", "0", NULL }, 3, NULL },
	{ { "bench", "-u", "--connect", "127.0.0.1", "7", NULL }, 3, NULL },
	{ { "bench", "-u", "-s", "70000", "127.0.0.1", "7", NULL }, 3, NULL },
	{ { "echo", "--proxy", "v3", "127.0.0.1", "7", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "--proxy", "127.0.0.1", "7", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "-u", "--proxy", "v1", "127.0.0.1", "7", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "echo", "--proxy", "v2", "--udp", "127.0.0.1", "7", NULL }, 3, "ECHO UNKNOWN - " },
	{ { "bench", "--proxy", "v3", "127.0.0.1", "7", NULL }, 3, NULL },
	{ { "bench", "--proxy", "V1", "127.0.0.1", "7", NULL }, 3, NULL },
	{ { "bench", "-u", "--proxy", "v1", "127.0.0.1", "7", NULL }, 3, NULL },
	{ { "bench", "--proxy", "v2", "-u", "127.0.0.1", "7", NULL }, 3, NULL },
	{ { "bench", "-h", NULL }, 0, "Usage: netecho bench" },
};

START_TEST(usage_errors_exit_3_and_help_exits_0)
{
	const char *const *a = usage_cases[_i].args;
	struct run r = run_netecho(a[0], a[1], a[2], a[3], a[4], a[5], a[6], NULL);
	char what[128] = "netecho";

	for (size_t i = 0; a[i]; i++) {
		strncat(what, " ", sizeof(what) - strlen(what) - 1);
		strncat(what, a[i], sizeof(what) - strlen(what) - 1);
	}
	expect_status(&r, usage_cases[_i].status, what);
	if (usage_cases[_i].out_prefix)
		expect_prefix(r.out, usage_cases[_i].out_prefix, what);
	if (usage_cases[_i].status == 3 && !usage_cases[_i].out_prefix)
		ck_assert_msg(strstr(r.err, "Usage:"), "%s: no usage on stderr: '%s'", what, r.err);
	run_free(&r);
}
END_TEST

/* ---- echo ---- */

START_TEST(echo_tcp_ok_default_message)
{
	struct run r = run_netecho("echo", "127.0.0.1", port_str(echo_srv.tcp_port), NULL);

	/* "netecho probe " + 16 hex digits + "\n" */
	expect_echo_ok(&r, 31, "echo tcp");
	run_free(&r);
}
END_TEST

START_TEST(echo_tcp_ok_given_message)
{
	struct run r = run_netecho("echo", "-t", "5", "127.0.0.1", port_str(echo_srv.tcp_port),
				   "hello, world", NULL);

	expect_echo_ok(&r, 12, "echo tcp message");
	run_free(&r);
}
END_TEST

START_TEST(echo_tcp_ok_large_message)
{
	_cleanup_(freep) char *msg = malloc(100001);

	ck_assert_ptr_nonnull(msg);
	for (size_t i = 0; i < 100000; i++)
		msg[i] = (char)('a' + i % 26);
	msg[100000] = 0;

	struct run r = run_netecho("echo", "127.0.0.1", port_str(echo_srv.tcp_port), msg, NULL);

	expect_echo_ok(&r, 100000, "echo tcp 100000 bytes");
	run_free(&r);
}
END_TEST

START_TEST(echo_udp_ok)
{
	struct run r = run_netecho("echo", "-u", "127.0.0.1", port_str(echo_srv.udp_port), NULL);

	expect_echo_ok(&r, 31, "echo udp");
	run_free(&r);

	r = run_netecho("echo", "--udp", "127.0.0.1", port_str(echo_srv.udp_port), "", NULL);
	expect_echo_ok(&r, 0, "echo udp empty datagram");
	run_free(&r);
}
END_TEST

START_TEST(echo_ipv6_ok)
{
	struct run r;

	/* Tagged ipv6: runs as netecho-ipv6, which skips without ::1. */
	ck_assert_msg(echo_srv.tcp6_port && echo_srv.udp6_port, "no test server on ::1");
	r = run_netecho("echo", "::1", port_str(echo_srv.tcp6_port), NULL);
	expect_echo_ok(&r, 31, "echo tcp ::1");
	run_free(&r);
	r = run_netecho("echo", "-u", "::1", port_str(echo_srv.udp6_port), NULL);
	expect_echo_ok(&r, 31, "echo udp ::1");
	run_free(&r);
}
END_TEST

START_TEST(echo_host_name_ok)
{
	/* "localhost" may resolve to ::1 first; netecho tries the next
	 * address when one refuses. */
	struct run r = run_netecho("echo", "localhost", port_str(echo_srv.tcp_port), NULL);

	expect_echo_ok(&r, 31, "echo tcp localhost");
	run_free(&r);
}
END_TEST

START_TEST(echo_tcp_mismatch_is_critical)
{
	struct run r = run_netecho("echo", "127.0.0.1", port_str(alter_srv.tcp_port), "abcdef",
				   NULL);

	expect_status(&r, 2, "echo tcp altered");
	expect_prefix(r.out, "ECHO CRITICAL - ", "echo tcp altered");
	ck_assert_msg(strstr(r.out, "differs at byte 0"), "no offset in '%s'", r.out);
	run_free(&r);
}
END_TEST

START_TEST(echo_udp_mismatch_is_critical)
{
	struct run r = run_netecho("echo", "-u", "127.0.0.1", port_str(alter_srv.udp_port), NULL);

	expect_status(&r, 2, "echo udp altered");
	expect_prefix(r.out, "ECHO CRITICAL - ", "echo udp altered");
	run_free(&r);
}
END_TEST

START_TEST(echo_tcp_timeout_is_critical)
{
	struct run r = run_netecho("echo", "-t", "0.5", "127.0.0.1", port_str(silent_tcp_port),
				   NULL);

	expect_status(&r, 2, "echo tcp silent");
	expect_prefix(r.out, "ECHO CRITICAL - timeout", "echo tcp silent");
	ck_assert_msg(r.usec >= 400 * USEC_PER_MSEC && r.usec < 3 * USEC_PER_SEC,
		      "-t 0.5 took %llu ms", (unsigned long long)(r.usec / 1000));
	run_free(&r);
}
END_TEST

START_TEST(echo_udp_timeout_is_critical)
{
	struct run r = run_netecho("echo", "-u", "-t", "0.5", "127.0.0.1",
				   port_str(silent_udp_port), NULL);

	expect_status(&r, 2, "echo udp silent");
	expect_prefix(r.out, "ECHO CRITICAL - no reply", "echo udp silent");
	ck_assert_msg(r.usec >= 400 * USEC_PER_MSEC && r.usec < 3 * USEC_PER_SEC,
		      "-t 0.5 took %llu ms", (unsigned long long)(r.usec / 1000));
	run_free(&r);
}
END_TEST

START_TEST(echo_closed_port_is_critical)
{
	struct run r = run_netecho("echo", "127.0.0.1", port_str(closed_tcp_port), NULL);

	expect_status(&r, 2, "echo tcp closed port");
	expect_prefix(r.out, "ECHO CRITICAL - ", "echo tcp closed port");
	ck_assert_msg(strstr(r.out, "refused"), "no 'refused' in '%s'", r.out);
	run_free(&r);

	r = run_netecho("echo", "-u", "-t", "2", "127.0.0.1", port_str(closed_udp_port), NULL);
	expect_status(&r, 2, "echo udp closed port");
	expect_prefix(r.out, "ECHO CRITICAL - ", "echo udp closed port");
	run_free(&r);
}
END_TEST

/* ---- chat ---- */

/* A netecho child with its stdin and stdout on pipes. */
struct child {
	pid_t pid;
	int pidfd;
	int in;  /* its stdin; -1 once closed */
	int out; /* its stdout */
	int err; /* its stderr */
	char buf[8192];
	size_t len;
};

static void
child_start(struct child *c, const char *const *args)
{
	int in[2], out[2], err[2];
	char *argv[16];
	size_t n = 0;

	argv[n++] = (char *)harness_netecho_bin();
	for (; *args && n < ELEMENTSOF(argv) - 1; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;

	ck_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 &&
		  pipe2(err, O_CLOEXEC) == 0);
	*c = (struct child){ .in = in[1], .out = out[0], .err = err[0] };
	c->pid = fork();
	ck_assert(c->pid >= 0);
	if (c->pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	c->pidfd = pidfd_open(c->pid, 0);
	ck_assert_msg(c->pidfd >= 0, "pidfd_open: %s", strerror(errno));
}

/* Read the child's stdout until it contains want, or EOF or the deadline. */
static bool
child_wait_output(struct child *c, const char *want, int timeout_ms)
{
	uint64_t deadline = now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC;

	for (;;) {
		struct pollfd pfd = { .fd = c->out, .events = POLLIN };
		uint64_t now = now_usec();
		ssize_t n;

		c->buf[c->len] = 0;
		if (want && strstr(c->buf, want))
			return true;
		if (c->len + 1 >= sizeof(c->buf) || now >= deadline)
			return false;
		if (poll(&pfd, 1, (int)((deadline - now + 999) / 1000)) <= 0)
			return false;
		n = read(c->out, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (n <= 0)
			return false;
		c->len += (size_t)n;
	}
}

/* Wait for the exit; collects the rest of stdout. Exit code or -ETIMEDOUT. */
static int
child_wait_exit(struct child *c, int timeout_ms)
{
	struct pollfd pfd = { .fd = c->pidfd, .events = POLLIN };
	int status = 0;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	(void)waitpid(c->pid, &status, 0);
	c->pid = 0;
	(void)child_wait_output(c, NULL, 500);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void
child_free(struct child *c)
{
	if (c->pid > 0) {
		(void)kill(c->pid, SIGKILL);
		(void)waitpid(c->pid, NULL, 0);
	}
	safe_close(c->in);
	safe_close(c->out);
	safe_close(c->err);
	safe_close(c->pidfd);
}

static void
child_write(struct child *c, const char *s)
{
	ck_assert(write_all(c->in, s, strlen(s)) == 0);
}

static char *
child_stderr(struct child *c)
{
	static char buf[2048];
	struct pollfd pfd = { .fd = c->err, .events = POLLIN };
	ssize_t n = 0;

	if (poll(&pfd, 1, 100) > 0)
		n = read(c->err, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

enum chat_ending {
	END_ON_QUIT,  /* like netechod: closes after "/quit" */
	END_AT_ONCE,  /* closes right after the name, leaving a line unterminated */
	END_NO_WELCOME, /* closes before saying anything */
};

/* A scripted chat server speaking SPEC section 5 for one client. */
struct chat_script {
	bool udp;
	enum chat_ending ending;
	int fd; /* listening TCP socket, or the UDP socket */
	uint16_t port;
	pthread_t thread;
	/* Results. */
	bool early; /* the client spoke before the welcome line */
	char lines[8][128];
	size_t n_lines;
	const char *error;
};

static int
script_send(struct chat_script *s, int fd, const char *text, const union sockaddr_any *to)
{
	if (s->udp) {
		if (sendto(fd, text, strlen(text), 0, &to->sa, sockaddr_len(to)) < 0)
			return -errno;
		return 0;
	}
	return harness_send_all(fd, text, strlen(text), IO_MS);
}

/* Next line from a TCP client (without CR/LF) or datagram; false on EOF
 * or timeout. */
static bool
script_line(struct chat_script *s, int fd, char *buf, size_t size, union sockaddr_any *from)
{
	size_t len = 0;

	if (s->udp) {
		socklen_t fl = sizeof(*from);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, SCRIPT_MS) <= 0)
			return false;
		n = recvfrom(fd, buf, size - 1, 0, &from->sa, &fl);
		if (n < 0)
			return false;
		buf[n] = 0;
		return true;
	}
	while (len + 1 < size) {
		ssize_t n = harness_recv_timeout(fd, buf + len, 1, SCRIPT_MS);

		if (n <= 0)
			return false;
		if (buf[len] == '\n') {
			if (len > 0 && buf[len - 1] == '\r')
				len--;
			buf[len] = 0;
			return true;
		}
		len++;
	}
	return false;
}

static void
script_record(struct chat_script *s, const char *line)
{
	if (s->n_lines < ELEMENTSOF(s->lines))
		snprintf(s->lines[s->n_lines++], sizeof(s->lines[0]), "%s", line);
}

static void *
script_fail(struct chat_script *s, const char *error)
{
	s->error = error;
	return NULL;
}

static void *
script_run(void *arg)
{
	struct chat_script *s = arg;
	_cleanup_(closep) int fd = -1;
	union sockaddr_any peer;
	char line[128];

	if (s->udp) {
		/* Datagram chat: NAME, the /join challenge, then lines. */
		fd = TAKE_FD(s->fd);
		if (!script_line(s, fd, line, sizeof(line), &peer))
			return script_fail(s, "no name datagram");
		script_record(s, line);
		(void)script_send(s, fd, "* to join as alice, send: /join t0k3n\r\n", &peer);
		if (!script_line(s, fd, line, sizeof(line), &peer))
			return script_fail(s, "no /join datagram");
		script_record(s, line);
		(void)script_send(s, fd, "* you are alice@127.0.0.1; 1 online\r\n", &peer);
		(void)script_send(s, fd, "<bob> hi there\r\n", &peer);
		while (script_line(s, fd, line, sizeof(line), &peer)) {
			script_record(s, line);
			if (strcmp(line, "/quit") == 0)
				break;
		}
		return NULL;
	}

	{
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };

		if (poll(&pfd, 1, SCRIPT_MS) <= 0)
			return script_fail(s, "no connection");
	}
	fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return script_fail(s, "accept failed");
	if (s->ending == END_NO_WELCOME)
		return NULL;
	/* A client must wait for the welcome line before it talks. */
	s->early = harness_recv_timeout(fd, line, sizeof(line), QUIET_MS) != -ETIMEDOUT;
	(void)script_send(s, fd, "* welcome to lobby (0 online); send your name\r\n", NULL);
	if (!script_line(s, fd, line, sizeof(line), NULL))
		return script_fail(s, "no name line");
	script_record(s, line);
	(void)script_send(s, fd, "* you are alice@127.0.0.1; 1 online\r\n", NULL);
	(void)script_send(s, fd, "<bob> hi there\r\n", NULL);
	if (s->ending == END_AT_ONCE) {
		(void)script_send(s, fd, "* server shutting down\r\nno newline", NULL);
		return NULL;
	}
	while (script_line(s, fd, line, sizeof(line), NULL)) {
		script_record(s, line);
		if (strcmp(line, "/quit") == 0) {
			(void)script_send(s, fd, "* bye\r\n", NULL);
			return NULL;
		}
	}
	return script_fail(s, "no /quit line");
}

static void
script_start(struct chat_script *s, bool udp, enum chat_ending ending)
{
	*s = (struct chat_script){ .udp = udp, .ending = ending };
	s->fd = bound_socket(udp ? SOCK_DGRAM : SOCK_STREAM, "127.0.0.1", &s->port);
	ck_assert_msg(s->fd >= 0, "bind: %s", strerror(-s->fd));
	ck_assert(pthread_create(&s->thread, NULL, script_run, s) == 0);
}

static void
script_join(struct chat_script *s)
{
	/* The script's own waits are bounded by SCRIPT_MS. */
	ck_assert(pthread_join(s->thread, NULL) == 0);
	safe_close(s->fd);
}

START_TEST(chat_sends_name_first_relays_lines_and_quits_on_eof)
{
	struct chat_script s;
	struct child c;
	int status;

	script_start(&s, false, END_ON_QUIT);
	child_start(&c, (const char *const[]){ "chat", "127.0.0.1", port_str(s.port), "alice",
					       NULL });
	/* Typed before the welcome line: must wait until NAME is sent. */
	child_write(&c, "hello from alice\n");
	ck_assert_msg(child_wait_output(&c, "<bob> hi there\n", IO_MS),
		      "server line not relayed; stdout so far: '%s', stderr: '%s'", c.buf,
		      child_stderr(&c));
	child_write(&c, "second line\r\n");
	c.in = safe_close(c.in);
	status = child_wait_exit(&c, IO_MS);
	script_join(&s);

	ck_assert_msg(status == 0, "exit status %d on stdin EOF; stderr: %s", status,
		      child_stderr(&c));
	ck_assert_msg(!s.error, "script: %s", s.error);
	ck_assert_msg(!s.early, "the client spoke before the welcome line");
	ck_assert_msg(s.n_lines == 4, "server got %zu lines", s.n_lines);
	ck_assert_str_eq(s.lines[0], "alice");
	ck_assert_str_eq(s.lines[1], "hello from alice");
	ck_assert_str_eq(s.lines[2], "second line");
	ck_assert_str_eq(s.lines[3], "/quit");
	ck_assert_str_eq(c.buf, "* welcome to lobby (0 online); send your name\n"
				"* you are alice@127.0.0.1; 1 online\n"
				"<bob> hi there\n"
				"* bye\n");
	child_free(&c);
}
END_TEST

START_TEST(chat_exits_0_when_server_closes)
{
	struct chat_script s;
	struct child c;
	int status;

	script_start(&s, false, END_AT_ONCE);
	child_start(&c, (const char *const[]){ "chat", "127.0.0.1", port_str(s.port), "alice",
					       NULL });
	/* stdin stays open: the server's close alone must end it. */
	status = child_wait_exit(&c, IO_MS);
	script_join(&s);

	ck_assert_msg(status == 0, "exit status %d on server close; stderr: %s", status,
		      child_stderr(&c));
	ck_assert_msg(!s.error, "script: %s", s.error);
	ck_assert_str_eq(s.lines[0], "alice");
	ck_assert_str_eq(c.buf, "* welcome to lobby (0 online); send your name\n"
				"* you are alice@127.0.0.1; 1 online\n"
				"<bob> hi there\n"
				"* server shutting down\n"
				"no newline\n");
	child_free(&c);
}
END_TEST

START_TEST(chat_fails_when_server_closes_before_welcome)
{
	struct chat_script s;
	struct child c;
	int status;

	script_start(&s, false, END_NO_WELCOME);
	child_start(&c, (const char *const[]){ "chat", "127.0.0.1", port_str(s.port), "alice",
					       NULL });
	status = child_wait_exit(&c, IO_MS);
	script_join(&s);
	ck_assert_msg(status == 1, "exit status %d, expected 1", status);
	ck_assert_msg(strstr(child_stderr(&c), "netecho: "), "no error message");
	child_free(&c);
}
END_TEST

START_TEST(chat_fails_on_closed_port)
{
	struct run r = run_netecho("chat", "127.0.0.1", port_str(closed_tcp_port), "alice", NULL);

	expect_status(&r, 1, "chat to a closed port");
	ck_assert_msg(strstr(r.err, "refused"), "no 'refused' in '%s'", r.err);
	run_free(&r);
}
END_TEST

START_TEST(chat_udp_joins_and_relays)
{
	struct chat_script s;
	struct child c;
	int status;

	script_start(&s, true, END_ON_QUIT);
	child_start(&c, (const char *const[]){ "chat", "-u", "127.0.0.1", port_str(s.port),
					       "alice", NULL });
	ck_assert_msg(child_wait_output(&c, "<bob> hi there\n", IO_MS),
		      "server line not relayed; stdout so far: '%s', stderr: '%s'", c.buf,
		      child_stderr(&c));
	child_write(&c, "hello\n");
	c.in = safe_close(c.in);
	status = child_wait_exit(&c, IO_MS);
	script_join(&s);

	ck_assert_msg(status == 0, "exit status %d; stderr: %s", status, child_stderr(&c));
	ck_assert_msg(!s.error, "script: %s", s.error);
	ck_assert_msg(s.n_lines == 4, "server got %zu datagrams", s.n_lines);
	ck_assert_str_eq(s.lines[0], "alice");
	ck_assert_str_eq(s.lines[1], "/join t0k3n");
	ck_assert_str_eq(s.lines[2], "hello");
	ck_assert_str_eq(s.lines[3], "/quit");
	child_free(&c);
}
END_TEST

/* ---- bench ---- */

static void
expect_bench_ok(struct run *r, const char *what)
{
	expect_status(r, 0, what);
	ck_assert_msg(summary_get(r->out, "errors") == 0, "%s: errors in %s", what, r->out);
	ck_assert_msg(summary_get(r->out, "msgs") > 0, "%s: no messages in %s", what, r->out);
	ck_assert_msg(r->usec < 8 * USEC_PER_SEC, "%s: -d 1 took %llu ms", what,
		      (unsigned long long)(r->usec / 1000));
}

START_TEST(bench_tcp_pingpong_ok)
{
	struct run r = run_netecho("bench", "127.0.0.1", port_str(echo_srv.tcp_port), "-c", "4",
				   "-d", "1", NULL);

	expect_bench_ok(&r, "bench tcp");
	ck_assert_msg(strstr(r.out, "bench mode=pingpong proto=tcp conns=4 size=64 "),
		      "summary: %s", r.out);
	ck_assert_msg(summary_get(r.out, "p50_us") <= summary_get(r.out, "p99_us") &&
			      summary_get(r.out, "p99_us") <= summary_get(r.out, "p999_us"),
		      "percentiles out of order: %s", r.out);
	run_free(&r);
}
END_TEST

START_TEST(bench_tcp_pipeline_ok)
{
	struct run r = run_netecho("bench", "127.0.0.1", port_str(echo_srv.tcp_port), "-c", "3",
				   "-s", "3000", "-P", "4", "-T", "2", "-d", "1", NULL);

	expect_bench_ok(&r, "bench tcp -P 4");
	ck_assert_msg(strstr(r.out, " mode=pipeline "), "summary: %s", r.out);
	run_free(&r);
}
END_TEST

START_TEST(bench_tcp_connect_ok)
{
	struct run r = run_netecho("bench", "--connect", "127.0.0.1", port_str(echo_srv.tcp_port),
				   "-c", "2", "-d", "1", NULL);

	expect_bench_ok(&r, "bench --connect");
	ck_assert_msg(strstr(r.out, " mode=connect "), "summary: %s", r.out);
	run_free(&r);
}
END_TEST

/* The server has accepted at least want connections, within IO_MS; the
 * count it ends with. */
static uint64_t
server_wait_accepted(const struct server *s, uint64_t want)
{
	uint64_t deadline = now_usec() + (uint64_t)IO_MS * 1000;
	uint64_t got;

	while ((got = __atomic_load_n(&s->counts->accepted, __ATOMIC_RELAXED)) < want &&
	       now_usec() < deadline)
		(void)poll(NULL, 0, 10);
	return got;
}

/* --connect -P 4: every connection carries four messages, and netecho's
 * connects are the connections the server accepted. */
START_TEST(bench_tcp_connect_pipeline_ok)
{
	struct run r = run_netecho("bench", "--connect", "-P", "4", "127.0.0.1",
				   port_str(echo_srv.tcp_port), "-c", "2", "-d", "1", NULL);
	unsigned long long msgs, connects, bytes, accepted;

	expect_bench_ok(&r, "bench --connect -P 4");
	ck_assert_msg(strstr(r.out, "bench mode=connect proto=tcp conns=2 size=64 pipeline=4 "),
		      "summary: %s", r.out);
	msgs = summary_get(r.out, "msgs");
	connects = summary_get(r.out, "connects");
	ck_assert_msg(connects >= 2, "connects: %s", r.out);
	/* Each of the 2 slots has at most one cycle unfinished at the end. */
	ck_assert_msg(msgs <= 4 * connects && msgs >= 4 * (connects - 2),
		      "%llu messages on %llu connections: %s", msgs, connects, r.out);
	/* Plus the one netecho opens first to pick an address that answers. */
	accepted = server_wait_accepted(&echo_srv, connects + 1);
	ck_assert_msg(accepted == connects + 1,
		      "server accepted %llu connections, netecho says %llu and a probe", accepted,
		      connects);
	/* All echoes were read back, so the server has read every byte: four
	 * whole messages per connection, or none (opened just at the end). */
	bytes = __atomic_load_n(&echo_srv.counts->tcp_bytes, __ATOMIC_RELAXED);
	ck_assert_msg(bytes % (4 * 64) == 0 && bytes >= msgs * 64 && bytes <= connects * 4 * 64,
		      "server read %llu bytes for %llu messages on %llu connections", bytes, msgs,
		      connects);
	run_free(&r);
}
END_TEST

/* connects= and connects_per_s= are in every summary, and count the
 * connections the server accepted. */
START_TEST(bench_summary_counts_connects)
{
	struct run r = run_netecho("bench", "127.0.0.1", port_str(echo_srv.tcp_port), "-c", "3",
				   "-d", "0.5", NULL);
	unsigned long long per_s;

	expect_bench_ok(&r, "bench tcp");
	/* No errors: the 3 connections stayed up for the whole run. */
	ck_assert_msg(summary_get(r.out, "connects") == 3, "summary: %s", r.out);
	per_s = summary_get(r.out, "connects_per_s");
	ck_assert_msg(per_s >= 3 && per_s <= 7, "3 connects in 0.5 s at %llu/s: %s", per_s, r.out);
	ck_assert_msg(strstr(r.out, "\n  connects  3 ("), "report: %s", r.out);
	/* And the probe that picked the address. */
	ck_assert_uint_eq(server_wait_accepted(&echo_srv, 4), 4);
	run_free(&r);

	r = run_netecho("bench", "-u", "127.0.0.1", port_str(echo_srv.udp_port), "-c", "2", "-d",
			"0.5", NULL);
	expect_bench_ok(&r, "bench udp");
	ck_assert_msg(summary_get(r.out, "connects") == 0 &&
			      summary_get(r.out, "connects_per_s") == 0,
		      "UDP has no connects: %s", r.out);
	run_free(&r);
}
END_TEST

/* --connect -P: a bad echo or a silent server is an error, and the slot
 * connects again. */
START_TEST(bench_tcp_connect_pipeline_errors_counted)
{
	struct run r = run_netecho("bench", "--connect", "-P", "3", "127.0.0.1",
				   port_str(alter_srv.tcp_port), "-c", "2", "-d", "1", NULL);
	unsigned long long errors;

	expect_status(&r, 1, "bench --connect -P 3 altered");
	errors = summary_get(r.out, "errors");
	ck_assert_msg(errors > 0, "no errors: %s", r.out);
	ck_assert_msg(strstr(r.err, "differs"), "first error not shown: '%s'", r.err);
	/* Every error closes the connection; the slot connects again. */
	ck_assert_msg(summary_get(r.out, "connects") > 2, "no reconnects: %s", r.out);
	run_free(&r);

	r = run_netecho("bench", "--connect", "-P", "3", "127.0.0.1", port_str(silent_tcp_port),
			"-c", "2", "-d", "0.5", "-t", "0.3", NULL);
	expect_status(&r, 1, "bench --connect -P 3 silent");
	ck_assert_msg(summary_get(r.out, "errors") > 0, "no errors: %s", r.out);
	ck_assert_msg(summary_get(r.out, "msgs") == 0, "messages from nowhere: %s", r.out);
	ck_assert_msg(strstr(r.err, "no echo"), "first error not shown: '%s'", r.err);
	run_free(&r);
}
END_TEST

START_TEST(bench_udp_ok)
{
	struct run r = run_netecho("bench", "-u", "127.0.0.1", port_str(echo_srv.udp_port), "-c",
				   "2", "-P", "2", "-d", "1", NULL);

	expect_bench_ok(&r, "bench udp");
	ck_assert_msg(strstr(r.out, " proto=udp "), "summary: %s", r.out);
	run_free(&r);
}
END_TEST

START_TEST(bench_tcp_altered_bytes_are_errors)
{
	struct run r = run_netecho("bench", "127.0.0.1", port_str(alter_srv.tcp_port), "-c", "2",
				   "-d", "1", NULL);

	expect_status(&r, 1, "bench tcp altered");
	ck_assert_msg(summary_get(r.out, "errors") > 0, "no errors: %s", r.out);
	ck_assert_msg(strstr(r.err, "differs"), "first error not shown: '%s'", r.err);
	run_free(&r);
}
END_TEST

START_TEST(bench_udp_altered_bytes_are_errors)
{
	struct run r = run_netecho("bench", "-u", "127.0.0.1", port_str(alter_srv.udp_port), "-c",
				   "2", "-d", "1", NULL);

	expect_status(&r, 1, "bench udp altered");
	ck_assert_msg(summary_get(r.out, "errors") > 0, "no errors: %s", r.out);
	run_free(&r);
}
END_TEST

START_TEST(bench_tcp_silent_server_times_out)
{
	struct run r = run_netecho("bench", "127.0.0.1", port_str(silent_tcp_port), "-c", "2", "-d",
				   "0.5", "-t", "0.3", NULL);

	expect_status(&r, 1, "bench tcp silent");
	ck_assert_msg(summary_get(r.out, "errors") > 0, "no errors: %s", r.out);
	ck_assert_msg(summary_get(r.out, "msgs") == 0, "messages from nowhere: %s", r.out);
	run_free(&r);
}
END_TEST

START_TEST(bench_udp_silent_server_counts_lost)
{
	struct run r = run_netecho("bench", "-u", "127.0.0.1", port_str(silent_udp_port), "-c", "2",
				   "-d", "0.5", "-t", "0.2", NULL);

	/* Lost datagrams are not errors, but a run with no echo at all fails. */
	expect_status(&r, 1, "bench udp silent");
	ck_assert_msg(summary_get(r.out, "errors") == 0, "errors: %s", r.out);
	ck_assert_msg(summary_get(r.out, "lost") > 0, "nothing lost: %s", r.out);
	run_free(&r);
}
END_TEST

START_TEST(bench_closed_port_fails_with_summary)
{
	struct run r = run_netecho("bench", "127.0.0.1", port_str(closed_tcp_port), "-d", "1",
				   NULL);

	expect_status(&r, 1, "bench closed port");
	ck_assert_msg(summary_get(r.out, "errors") > 0, "no errors: %s", r.out);
	run_free(&r);
}
END_TEST

/* ---- --proxy: a listener behind a balancer ---- */

/* A listener in a thread of the test: it accepts, reads each
 * connection's first bytes until proxy_parse() (the daemon's parser)
 * takes a header, checks it against what accept() saw, and echoes what
 * follows. Results are read after px_stop() has joined the thread. */
#define PX_MAX_CONNS 64

struct px_conn {
	int fd;
	union sockaddr_any peer; /* accept()'s */
	uint8_t buf[PROXY_HEADER_MAX];
	size_t len;
	bool parsed;
};

struct px_server {
	int lfd;
	int stop[2];
	uint16_t port;
	union sockaddr_any addr; /* the listener's */
	unsigned want_version;
	int want_family; /* of the header's addresses */
	pthread_t thread;
	struct px_conn conns[PX_MAX_CONNS];
	size_t n_conns;
	/* results */
	unsigned accepted, good, bad;
	char error[256];
};

static void _printf_(2, 3)
px_bad(struct px_server *s, const char *fmt, ...)
{
	va_list ap;

	s->bad++;
	if (s->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
}

static void
px_check(struct px_server *s, struct px_conn *c, const struct proxy_info *pi)
{
	char a[SOCKADDR_STR_MAX], b[SOCKADDR_STR_MAX];

	if (pi->version != s->want_version || pi->local)
		px_bad(s, "header v%u%s, expected v%u PROXY", pi->version,
		       pi->local ? " LOCAL" : "", s->want_version);
	else if (pi->src.sa.sa_family != s->want_family)
		px_bad(s, "source family %d, expected %d", pi->src.sa.sa_family, s->want_family);
	else if (!sockaddr_equal(&pi->src, &c->peer))
		px_bad(s, "source %s, but accept() saw %s",
		       sockaddr_to_string(&pi->src, a, sizeof(a)),
		       sockaddr_to_string(&c->peer, b, sizeof(b)));
	else if (!sockaddr_equal(&pi->dst, &s->addr))
		px_bad(s, "destination %s, but the listener is %s",
		       sockaddr_to_string(&pi->dst, a, sizeof(a)),
		       sockaddr_to_string(&s->addr, b, sizeof(b)));
	else
		s->good++;
}

/* Read what c has; false when it is done (EOF, error or a bad header). */
static bool
px_readable(struct px_server *s, struct px_conn *c)
{
	uint8_t tmp[65536], *p = tmp;
	struct proxy_info pi;
	const char *why = NULL;
	ssize_t n;
	int r;

	if (!c->parsed) {
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		if (n == 0) {
			px_bad(s, "closed after %zu bytes, before a whole header", c->len);
			return false;
		}
		c->len += (size_t)n;
		r = proxy_parse(c->buf, c->len, &pi, &why);
		if (r < 0 || (r == 0 && c->len == sizeof(c->buf))) {
			px_bad(s, "bad header (%s) in %zu bytes", why ? why : "too long", c->len);
			return false;
		}
		if (r == 0)
			return true;
		c->parsed = true;
		px_check(s, c, &pi);
		p = c->buf + r;
		n = (ssize_t)(c->len - (size_t)r);
	} else {
		n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		if (n == 0)
			return false;
	}
	return n == 0 || write_all(c->fd, p, (size_t)n) == 0;
}

static void
px_accept_all(struct px_server *s)
{
	for (;;) {
		struct timeval tv = { .tv_sec = 5 };
		struct px_conn *c;
		union sockaddr_any peer;
		socklen_t len = sizeof(peer);
		int fd;

		memset(&peer, 0, sizeof(peer));
		fd = accept4(s->lfd, &peer.sa, &len, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		s->accepted++;
		if (s->n_conns == PX_MAX_CONNS) {
			px_bad(s, "more than %d connections at once", PX_MAX_CONNS);
			close(fd);
			continue;
		}
		/* Blocking with a send timeout: netecho always reads. */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		c = &s->conns[s->n_conns++];
		*c = (struct px_conn){ .fd = fd, .peer = peer };
	}
}

static int
px_ms_left(uint64_t deadline)
{
	uint64_t now = now_usec();

	return now >= deadline ? 0 : (int)((deadline - now + 999) / 1000);
}

/* Runs until px_stop(), then takes what is still queued: netecho has
 * exited by then, so every connection it made is in the accept queue or
 * open here with its bytes and EOF already arrived. Bounded by SCRIPT_MS. */
static void *
px_run(void *arg)
{
	struct px_server *s = arg;
	uint64_t deadline = now_usec() + (uint64_t)SCRIPT_MS * 1000;
	bool stopping = false;

	for (;;) {
		struct pollfd pfd[2 + PX_MAX_CONNS];
		size_t n = 0;
		int r;

		if (stopping) {
			px_accept_all(s);
			if (s->n_conns == 0)
				break;
		}
		pfd[n++] = (struct pollfd){ .fd = stopping ? -1 : s->stop[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		for (size_t i = 0; i < s->n_conns; i++)
			pfd[n++] = (struct pollfd){ .fd = s->conns[i].fd, .events = POLLIN };
		r = poll(pfd, n, px_ms_left(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			px_bad(s, "%s", r < 0 ? strerror(errno) : "listener timed out");
			break;
		}
		if (pfd[0].revents)
			stopping = true;
		if (pfd[1].revents)
			px_accept_all(s);
		/* Back to front: a finished connection takes the last one's slot. */
		for (size_t i = n - 2; i-- > 0;) {
			struct px_conn *c = &s->conns[i];

			if (!pfd[2 + i].revents || px_readable(s, c))
				continue;
			close(c->fd);
			*c = s->conns[--s->n_conns];
		}
	}
	for (size_t i = 0; i < s->n_conns; i++)
		close(s->conns[i].fd);
	s->n_conns = 0;
	return NULL;
}

/* A listener on address (IPv4, IPv6, or IPv4-mapped on a dual-stack
 * socket) expecting version headers whose addresses are of family. */
static void
px_start(struct px_server *s, const char *address, unsigned version, int family)
{
	socklen_t len = sizeof(s->addr);
	int zero = 0, one = 1;

	*s = (struct px_server){ .lfd = -1, .stop = { -1, -1 }, .want_version = version,
				 .want_family = family };
	memset(&s->addr, 0, sizeof(s->addr));
	if (inet_pton(AF_INET, address, &s->addr.in.sin_addr) == 1)
		s->addr.in.sin_family = AF_INET;
	else {
		ck_assert(inet_pton(AF_INET6, address, &s->addr.in6.sin6_addr) == 1);
		s->addr.in6.sin6_family = AF_INET6;
	}
	s->lfd = socket(s->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_msg(s->lfd >= 0, "socket: %s", strerror(errno));
	if (s->addr.sa.sa_family == AF_INET6) {
		bool mapped = IN6_IS_ADDR_V4MAPPED(&s->addr.in6.sin6_addr);

		(void)setsockopt(s->lfd, IPPROTO_IPV6, IPV6_V6ONLY, mapped ? &zero : &one,
				 sizeof(int));
	}
	ck_assert_msg(bind(s->lfd, &s->addr.sa, sockaddr_len(&s->addr)) == 0 &&
			      listen(s->lfd, 128) == 0 &&
			      getsockname(s->lfd, &s->addr.sa, &len) == 0,
		      "listener on %s: %s", address, strerror(errno));
	s->port = sockaddr_port(&s->addr);
	ck_assert(pipe2(s->stop, O_CLOEXEC) == 0);
	ck_assert(pthread_create(&s->thread, NULL, px_run, s) == 0);
}

static void
px_stop(struct px_server *s)
{
	(void)!write(s->stop[1], "x", 1);
	ck_assert(pthread_join(s->thread, NULL) == 0);
	s->lfd = safe_close(s->lfd);
	s->stop[0] = safe_close(s->stop[0]);
	s->stop[1] = safe_close(s->stop[1]);
}

static const char *const px_versions[] = { "v1", "v2" };

/* netecho echo --proxy: one connection, one good header, and the same OK
 * line as without it (the header is not counted as payload). */
static void
px_echo(const char *address, int family)
{
	for (unsigned v = 1; v <= 2; v++) {
		struct px_server s;
		struct run r;
		char what[96];

		snprintf(what, sizeof(what), "echo --proxy %s %s", px_versions[v - 1], address);
		px_start(&s, address, v, family);
		r = run_netecho("echo", "--proxy", px_versions[v - 1], address, port_str(s.port),
				"hello, balancer", NULL);
		px_stop(&s);
		ck_assert_msg(s.bad == 0, "%s: %u bad of %u: %s", what, s.bad, s.accepted,
			      s.error);
		ck_assert_msg(s.accepted == 1 && s.good == 1, "%s: %u accepted, %u good", what,
			      s.accepted, s.good);
		expect_echo_ok(&r, strlen("hello, balancer"), what);
		run_free(&r);

		/* The default message too. */
		px_start(&s, address, v, family);
		r = run_netecho("echo", "--proxy", px_versions[v - 1], "-t", "5", address,
				port_str(s.port), NULL);
		px_stop(&s);
		ck_assert_msg(s.bad == 0 && s.good == 1, "%s: %u good, %u bad: %s", what, s.good,
			      s.bad, s.error);
		expect_echo_ok(&r, 31, what);
		run_free(&r);
	}
}

START_TEST(echo_proxy_sends_header_first)
{
	px_echo("127.0.0.1", AF_INET);
}
END_TEST

START_TEST(echo_proxy_ipv6_and_mapped)
{
	if (!harness_have_ipv6())
		return;
	px_echo("::1", AF_INET6);
	/* An IPv6 socket to an IPv4-mapped address sends TCP4 / AF_INET. */
	px_echo("::ffff:127.0.0.1", AF_INET);
}
END_TEST

/* bench --connect --proxy: every connection, the probe that picks the
 * address included, starts with a good header; no error, and msgs count
 * the payload only. */
START_TEST(bench_connect_proxy_header_on_every_connection)
{
	for (unsigned v = 1; v <= 2; v++) {
		struct px_server s;
		struct run r;
		unsigned long long connects, msgs;
		char what[64];

		snprintf(what, sizeof(what), "bench --connect --proxy %s", px_versions[v - 1]);
		px_start(&s, "127.0.0.1", v, AF_INET);
		r = run_netecho("bench", "--connect", "--proxy", px_versions[v - 1], "-P", "2",
				"127.0.0.1", port_str(s.port), "-c", "2", "-d", "0.5", NULL);
		px_stop(&s);
		ck_assert_msg(s.bad == 0, "%s: %u bad of %u: %s", what, s.bad, s.accepted,
			      s.error);
		expect_bench_ok(&r, what);
		connects = summary_get(r.out, "connects");
		msgs = summary_get(r.out, "msgs");
		ck_assert_msg(connects >= 2 && s.accepted == connects + 1 && s.good == s.accepted,
			      "%s: %u accepted, %u good headers, netecho says %llu connects and a probe",
			      what, s.accepted, s.good, connects);
		ck_assert_msg(msgs <= 2 * connects && msgs >= 2 * (connects - 2),
			      "%s: %llu messages on %llu connections", what, msgs, connects);
		run_free(&r);
	}
}
END_TEST

/* Without --connect too: the header once per long-lived connection. */
START_TEST(bench_pingpong_proxy_header_once)
{
	struct px_server s;
	struct run r;

	px_start(&s, "127.0.0.1", 2, AF_INET);
	r = run_netecho("bench", "--proxy", "v2", "127.0.0.1", port_str(s.port), "-c", "3", "-s",
			"100", "-d", "0.5", NULL);
	px_stop(&s);
	ck_assert_msg(s.bad == 0, "%u bad of %u: %s", s.bad, s.accepted, s.error);
	expect_bench_ok(&r, "bench --proxy v2");
	ck_assert_msg(s.accepted == 4 && s.good == 4, "%u accepted, %u good", s.accepted, s.good);
	ck_assert_uint_eq(summary_get(r.out, "connects"), 3);
	run_free(&r);
}
END_TEST

static Suite *
netecho_suite(void)
{
	Suite *s = suite_create("netecho");
	TCase *tc;

	tc = tcase_create("usage");
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_loop_test(tc, usage_errors_exit_3_and_help_exits_0, 0, ELEMENTSOF(usage_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("echo");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, echo_tcp_ok_default_message);
	tcase_add_test(tc, echo_tcp_ok_given_message);
	tcase_add_test(tc, echo_tcp_ok_large_message);
	tcase_add_test(tc, echo_udp_ok);
	tcase_add_test(tc, echo_host_name_ok);
	tcase_add_test(tc, echo_tcp_mismatch_is_critical);
	tcase_add_test(tc, echo_udp_mismatch_is_critical);
	tcase_add_test(tc, echo_tcp_timeout_is_critical);
	tcase_add_test(tc, echo_udp_timeout_is_critical);
	tcase_add_test(tc, echo_closed_port_is_critical);
	suite_add_tcase(s, tc);

	/* Needs ::1: the netecho-ipv6 test (harness_main). */
	tc = tcase_create("echo-ipv6");
	tcase_set_tags(tc, HARNESS_TAG_IPV6);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, echo_ipv6_ok);
	tcase_add_test(tc, echo_proxy_ipv6_and_mapped);
	suite_add_tcase(s, tc);

	tc = tcase_create("proxy");
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, echo_proxy_sends_header_first);
	tcase_add_test(tc, bench_connect_proxy_header_on_every_connection);
	tcase_add_test(tc, bench_pingpong_proxy_header_once);
	suite_add_tcase(s, tc);

	tc = tcase_create("chat");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, chat_sends_name_first_relays_lines_and_quits_on_eof);
	tcase_add_test(tc, chat_exits_0_when_server_closes);
	tcase_add_test(tc, chat_fails_when_server_closes_before_welcome);
	tcase_add_test(tc, chat_fails_on_closed_port);
	tcase_add_test(tc, chat_udp_joins_and_relays);
	suite_add_tcase(s, tc);

	tc = tcase_create("bench");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, bench_tcp_pingpong_ok);
	tcase_add_test(tc, bench_tcp_pipeline_ok);
	tcase_add_test(tc, bench_tcp_connect_ok);
	tcase_add_test(tc, bench_tcp_connect_pipeline_ok);
	tcase_add_test(tc, bench_summary_counts_connects);
	tcase_add_test(tc, bench_tcp_connect_pipeline_errors_counted);
	tcase_add_test(tc, bench_udp_ok);
	tcase_add_test(tc, bench_tcp_altered_bytes_are_errors);
	tcase_add_test(tc, bench_udp_altered_bytes_are_errors);
	tcase_add_test(tc, bench_tcp_silent_server_times_out);
	tcase_add_test(tc, bench_udp_silent_server_counts_lost);
	tcase_add_test(tc, bench_closed_port_fails_with_summary);
	suite_add_tcase(s, tc);

	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(netecho_suite(), argc, argv);
}
