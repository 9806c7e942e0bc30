/* netecho bench --chat (SPEC section 7) against the real netechod chat,
 * TCP and UDP on every model, and against a tiny relay in this test that
 * drops, duplicates or swaps one line: there netecho must fail and name
 * the kind of error. Only 127.0.0.1; every wait has a deadline. */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 90
#define HOST "127.0.0.1"
/* The relay gives up this long after it started, whatever happens. */
#define RELAY_MS 20000
#define RELAY_CLIENTS 8
#define RELAY_LINE 2048

static const struct harness_combo *cur;
static struct hdaemon srv;
static bool srv_started;

static void
setup(const struct harness_combo *c)
{
	cur = c;
	srv_started = false;
}

static void
teardown(void)
{
	int r;

	if (!srv_started)
		return;
	srv_started = false;
	r = harness_stop(&srv, SIGTERM);
	ck_assert_msg(r == 0, "[%s] netechod did not stop cleanly: %d", cur->tcase, r);
}

static uint16_t
start_chat(void)
{
	static struct hl_listener l;
	static char extra[256];
	int r;

	l = harness_combo_listener(cur, "room", "chat", "max_clients = 64;", extra, sizeof(extra));
	srv = (struct hdaemon){ 0 };
	r = harness_start(&srv, &l, 1, NULL);
	ck_assert_msg(r == 0, "[%s] netechod chat did not start: %s", cur->tcase, strerror(-r));
	srv_started = true;
	return l.port;
}

/* ---- running netecho ---- */

static struct harness_output
run_bench(const char *const *args)
{
	char *argv[24];
	size_t n = 0;
	struct harness_output r = { 0 };
	int e;

	argv[n++] = (char *)harness_netecho_bin();
	argv[n++] = (char *)"bench";
	argv[n++] = (char *)"--chat";
	for (; *args && n < ELEMENTSOF(argv) - 1; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	e = harness_run(argv, &r.out, &r.err, &r.status);
	ck_assert_msg(e == 0, "running netecho bench --chat: %s", strerror(-e));
	ck_assert_msg(r.out && r.err, "no output captured");
	return r;
}

/* The value of key in the summary, the last line of stdout. */
static unsigned long long
summary(const struct harness_output *r, const char *key)
{
	const char *last = r->out, *p;
	char pat[64];
	size_t len = strlen(r->out);

	/* the start of the last non-empty line */
	while (len > 0 && r->out[len - 1] == '\n')
		len--;
	for (size_t i = 0; i < len; i++)
		if (r->out[i] == '\n')
			last = r->out + i + 1;
	ck_assert_msg(strncmp(last, "bench mode=chat ", 16) == 0, "no summary line in '%s'",
		      r->out);
	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(last, pat);
	ck_assert_msg(p, "no %s in the summary '%s'", key, last);
	return strtoull(p + strlen(pat), NULL, 10);
}

static void
expect_clean(const struct harness_output *r, const char *what)
{
	ck_assert_msg(r->status == 0 && summary(r, "errors") == 0,
		      "[%s] %s: exit %d\nstdout: %s\nstderr: %s", cur ? cur->tcase : "-", what,
		      r->status, r->out, r->err);
}

/* ---- against netechod ---- */

/* 8 members, 3 of them sending 20 lines a second for 1 s: each sender
 * sends exactly 20 lines and each reaches the 7 others. */
START_TEST(chatbench_rate_limited_delivers_every_line_once)
{
	uint16_t port = start_chat();
	char p[8];
	struct harness_output r;

	snprintf(p, sizeof(p), "%u", port);
	r = run_bench((const char *const[]){ strcmp(cur->protocol, "udp") == 0 ? "-u" : "--chat",
					      "-c", "8", "-S", "3", "-r", "20", "-d", "1",
					      "-t", "3", HOST, p, NULL });
	expect_clean(&r, "rate-limited chat bench");
	ck_assert_msg(summary(&r, "sent") == 3 * 20, "[%s] sent %llu lines, expected 60\n%s",
		      cur->tcase, summary(&r, "sent"), r.out);
	ck_assert_msg(summary(&r, "deliveries") == 3 * 20 * 7,
		      "[%s] %llu deliveries, expected 420\n%s", cur->tcase,
		      summary(&r, "deliveries"), r.out);
	ck_assert_uint_eq(summary(&r, "joined"), 8);
	harness_output_free(&r);
}
END_TEST

/* As fast as the room takes them: whatever was sent reached everyone. */
START_TEST(chatbench_max_rate_delivers_every_line_once)
{
	uint16_t port = start_chat();
	unsigned long long sent, deliveries;
	char p[8];
	struct harness_output r;

	snprintf(p, sizeof(p), "%u", port);
	r = run_bench((const char *const[]){ strcmp(cur->protocol, "udp") == 0 ? "-u" : "--chat",
					      "-c", "6", "-S", "2", "-d", "0.5", "-s", "100",
					      "-t", "3", HOST, p, NULL });
	expect_clean(&r, "max-rate chat bench");
	sent = summary(&r, "sent");
	deliveries = summary(&r, "deliveries");
	ck_assert_msg(sent > 0 && deliveries == sent * 5,
		      "[%s] %llu lines sent, %llu deliveries (want 5 each)\n%s", cur->tcase, sent,
		      deliveries, r.out);
	harness_output_free(&r);
}
END_TEST

/* Members spread over HOST PORT and an --also that names the same room. */
START_TEST(chatbench_also_spreads_members_over_listeners)
{
	uint16_t port = start_chat();
	char p[8], also[32];
	struct harness_output r;

	snprintf(p, sizeof(p), "%u", port);
	snprintf(also, sizeof(also), "127.0.0.1:%u", port);
	r = run_bench((const char *const[]){ "--also", also, "-c", "5", "-S", "2", "-r", "20",
					      "-d", "0.5", "-t", "3", HOST, p, NULL });
	expect_clean(&r, "chat bench with --also");
	ck_assert_uint_eq(summary(&r, "listeners"), 2);
	ck_assert_uint_eq(summary(&r, "deliveries"), 2 * 10 * 4);
	harness_output_free(&r);
}
END_TEST

/* ---- against ngircd, when installed ---- */

static const char *
ngircd_bin(void)
{
	static const char *const paths[] = { "/usr/sbin/ngircd", "/usr/bin/ngircd",
					     "/usr/local/sbin/ngircd" };

	for (size_t i = 0; i < ELEMENTSOF(paths); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

struct ngircd {
	pid_t pid;
	uint16_t port;
	char dir[64];
	char conf[128];
};

static void
ngircd_start(struct ngircd *n)
{
	uint64_t deadline;
	FILE *f;
	int fd = -1;

	*n = (struct ngircd){ .pid = -1 };
	snprintf(n->dir, sizeof(n->dir), "/tmp/chatbench-ngircd.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(n->dir));
	snprintf(n->conf, sizeof(n->conf), "%s/ngircd.conf", n->dir);
	ck_assert_int_eq(harness_free_port(SOCK_STREAM, HOST, &n->port), 0);
	f = fopen(n->conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[Global]\n\tName = bench.irc.test\n\tPorts = %u\n\tListen = " HOST "\n"
		"\tMotdPhrase = test\n\tPidFile = %s/ngircd.pid\n"
		"[Limits]\n\tMaxConnectionsIP = 0\n\tMaxJoins = 0\n\tMaxPenaltyTime = 0\n"
		"[Options]\n\tDNS = no\n\tIdent = no\n\tPAM = no\n"
		"[Operator]\n\tName = bench\n\tPassword = benchpw\n",
		n->port, n->dir);
	ck_assert_int_eq(fclose(f), 0);
	n->pid = fork();
	ck_assert_int_ge(n->pid, 0);
	if (n->pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (null >= 0) {
			(void)dup2(null, STDIN_FILENO);
			(void)dup2(null, STDOUT_FILENO);
			(void)dup2(null, STDERR_FILENO);
		}
		execl(ngircd_bin(), "ngircd", "-n", "-f", n->conf, (char *)NULL);
		_exit(127);
	}
	/* Ready when the port accepts; nothing else says so. */
	deadline = now_usec() + HARNESS_START_TIMEOUT_MS * USEC_PER_MSEC;
	while (now_usec() < deadline) {
		struct pollfd none = { .fd = -1 };

		fd = harness_tcp_connect(n->port);
		if (fd >= 0)
			break;
		ck_assert_msg(waitpid(n->pid, NULL, WNOHANG) == 0, "ngircd exited at start-up");
		(void)poll(&none, 0, 20); /* a connect retry interval, not a synchronisation */
	}
	ck_assert_msg(fd >= 0, "ngircd did not listen on port %u", n->port);
	safe_close(fd);
}

static void
ngircd_stop(struct ngircd *n)
{
	uint64_t deadline = now_usec() + HARNESS_STOP_TIMEOUT_MS * USEC_PER_MSEC;
	char path[160];

	if (n->pid > 0) {
		(void)kill(n->pid, SIGTERM);
		while (waitpid(n->pid, NULL, WNOHANG) == 0) {
			struct pollfd none = { .fd = -1 };

			if (now_usec() >= deadline) {
				(void)kill(n->pid, SIGKILL);
				(void)waitpid(n->pid, NULL, 0);
				break;
			}
			(void)poll(&none, 0, 20);
		}
	}
	(void)unlink(n->conf);
	snprintf(path, sizeof(path), "%s/ngircd.pid", n->dir);
	(void)unlink(path);
	(void)rmdir(n->dir);
}

/* The same check over IRC: NICK/USER/JOIN #bench and PRIVMSG, the senders
 * OPER first. */
START_TEST(chatbench_irc_against_ngircd)
{
	struct ngircd n;
	char p[8];
	struct harness_output r;

	ngircd_start(&n);
	snprintf(p, sizeof(p), "%u", n.port);
	r = run_bench((const char *const[]){ "--irc", "--oper", "bench:benchpw", "-c", "6", "-S",
					      "2", "-r", "20", "-d", "1", "-t", "5", HOST, p,
					      NULL });
	ngircd_stop(&n);
	expect_clean(&r, "chat bench against ngircd");
	ck_assert_uint_eq(summary(&r, "deliveries"), 2 * 20 * 5);
	harness_output_free(&r);
}
END_TEST

/* ---- against a relay that gets one line wrong ---- */

enum fault {
	FAULT_NONE,
	FAULT_DROP,
	FAULT_DUPLICATE,
	FAULT_SWAP,
	_FAULT_MAX,
};

static const char *const fault_names[_FAULT_MAX] = {
	[FAULT_NONE] = "none",
	[FAULT_DROP] = "drop",
	[FAULT_DUPLICATE] = "duplicate",
	[FAULT_SWAP] = "swap",
};

/* Data line number FAULT_LINE (counted over the whole room, sync not
 * counted) is dropped for, sent twice to, or held back behind the next
 * line for the first member that is not its sender. */
#define FAULT_LINE 5

struct relay_client {
	int fd;
	bool named;
	char name[40];
	size_t len;
	char buf[RELAY_LINE];
};

struct relay {
	enum fault fault;
	int listen_fd;
	int stop[2];
	uint16_t port;
	pthread_t thread;
	struct relay_client c[RELAY_CLIENTS];
	size_t n;
	unsigned data_lines;
	char held[RELAY_LINE + 64]; /* FAULT_SWAP: the line held back */
	int held_for;
	char error[128];
};

static void
relay_send(struct relay *rl, int i, const char *s)
{
	if (rl->c[i].fd >= 0 && harness_send_all(rl->c[i].fd, s, strlen(s), 2000) < 0)
		rl->c[i].fd = safe_close(rl->c[i].fd);
}

/* SPEC section 5, as little of it as netecho needs: the name line, "you
 * are", and "<name> text" to every other member. */
static void
relay_line(struct relay *rl, int from, const char *text)
{
	struct relay_client *c = &rl->c[from];
	char out[RELAY_LINE + 64];
	int victim = -1;
	bool data;

	if (!c->named) {
		snprintf(c->name, sizeof(c->name), "%.32s", text);
		c->named = true;
		snprintf(out, sizeof(out), "* you are %s@127.0.0.1; %zu online\r\n", c->name, rl->n);
		relay_send(rl, from, out);
		return;
	}
	data = strcmp(text, "sync") != 0;
	if (data && ++rl->data_lines == FAULT_LINE && rl->fault != FAULT_NONE)
		for (size_t i = 0; i < rl->n && victim < 0; i++)
			if ((int)i != from && rl->c[i].named)
				victim = (int)i;
	snprintf(out, sizeof(out), "<%s> %s\r\n", c->name, text);
	for (size_t i = 0; i < rl->n; i++) {
		if ((int)i == from || !rl->c[i].named)
			continue;
		if ((int)i == victim && rl->fault == FAULT_DROP)
			continue;
		if ((int)i == victim && rl->fault == FAULT_SWAP) {
			memcpy(rl->held, out, sizeof(out));
			rl->held_for = victim;
			continue;
		}
		relay_send(rl, (int)i, out);
		if ((int)i == victim && rl->fault == FAULT_DUPLICATE)
			relay_send(rl, (int)i, out);
		if ((int)i == rl->held_for && data && rl->data_lines > FAULT_LINE) {
			relay_send(rl, (int)i, rl->held);
			rl->held_for = -1;
		}
	}
}

static void
relay_read(struct relay *rl, int i)
{
	struct relay_client *c = &rl->c[i];
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, MSG_DONTWAIT);
	char *start, *nl;

	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		c->fd = safe_close(c->fd);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	start = c->buf;
	while ((nl = strchr(start, '\n'))) {
		*nl = '\0';
		if (nl > start && nl[-1] == '\r')
			nl[-1] = '\0';
		relay_line(rl, i, start);
		start = nl + 1;
	}
	c->len -= (size_t)(start - c->buf);
	memmove(c->buf, start, c->len);
	if (c->len == sizeof(c->buf) - 1) {
		snprintf(rl->error, sizeof(rl->error), "a line too long for the relay");
		c->fd = safe_close(c->fd);
	}
}

static void *
relay_main(void *arg)
{
	struct relay *rl = arg;
	uint64_t deadline = now_usec() + RELAY_MS * USEC_PER_MSEC;

	while (now_usec() < deadline) {
		struct pollfd pfd[RELAY_CLIENTS + 2];
		size_t n = 0;
		int r;

		pfd[n++] = (struct pollfd){ .fd = rl->stop[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = rl->listen_fd, .events = POLLIN };
		for (size_t i = 0; i < rl->n; i++)
			pfd[n++] = (struct pollfd){ .fd = rl->c[i].fd, .events = POLLIN };
		r = poll(pfd, n, 100);
		if (r < 0 && errno != EINTR) {
			snprintf(rl->error, sizeof(rl->error), "poll: %s", strerror(errno));
			break;
		}
		if (r <= 0)
			continue;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN) {
			int fd = accept4(rl->listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0 && rl->n < RELAY_CLIENTS) {
				rl->c[rl->n] = (struct relay_client){ .fd = fd };
				rl->n++;
			} else
				safe_close(fd);
		}
		for (size_t i = 0; i < rl->n; i++)
			if (rl->c[i].fd >= 0 && pfd[2 + i].revents)
				relay_read(rl, (int)i);
	}
	for (size_t i = 0; i < rl->n; i++)
		rl->c[i].fd = safe_close(rl->c[i].fd);
	return NULL;
}

static void
relay_start(struct relay *rl, enum fault fault)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	*rl = (struct relay){ .fault = fault, .held_for = -1, .stop = { -1, -1 } };
	rl->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(rl->listen_fd, 0);
	ck_assert_int_eq(bind(rl->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(rl->listen_fd, 16), 0);
	ck_assert_int_eq(getsockname(rl->listen_fd, (struct sockaddr *)&sa, &len), 0);
	rl->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pipe2(rl->stop, O_CLOEXEC), 0);
	ck_assert_int_eq(pthread_create(&rl->thread, NULL, relay_main, rl), 0);
}

static void
relay_stop(struct relay *rl)
{
	(void)!write(rl->stop[1], "x", 1);
	(void)pthread_join(rl->thread, NULL);
	safe_close(rl->listen_fd);
	safe_close(rl->stop[0]);
	safe_close(rl->stop[1]);
	ck_assert_msg(!rl->error[0], "relay: %s", rl->error);
}

/* The relay itself is right when it is told to be: the faults below are
 * then netecho's findings, not the relay's mistakes. */
START_TEST(chatbench_passes_a_correct_relay)
{
	struct relay rl;
	char p[8];
	struct harness_output r;

	relay_start(&rl, FAULT_NONE);
	snprintf(p, sizeof(p), "%u", rl.port);
	r = run_bench((const char *const[]){ "-c", "3", "-S", "1", "-r", "20", "-d", "0.5",
					      "-t", "3", HOST, p, NULL });
	relay_stop(&rl);
	expect_clean(&r, "a correct relay");
	ck_assert_uint_eq(summary(&r, "deliveries"), 10 * 2);
	harness_output_free(&r);
}
END_TEST

static const struct {
	enum fault fault;
	const char *counter; /* the summary key that must be non-zero */
} fault_cases[] = {
	{ FAULT_DROP, "missing" },
	{ FAULT_DUPLICATE, "duplicate" },
	{ FAULT_SWAP, "out_of_order" },
};

START_TEST(chatbench_fails_on_a_relay_that_gets_one_line_wrong)
{
	enum fault fault = fault_cases[_i].fault;
	const char *counter = fault_cases[_i].counter;
	struct relay rl;
	char p[8];
	struct harness_output r;

	relay_start(&rl, fault);
	snprintf(p, sizeof(p), "%u", rl.port);
	r = run_bench((const char *const[]){ "-c", "3", "-S", "1", "-r", "20", "-d", "0.5",
					      "-t", "1", HOST, p, NULL });
	relay_stop(&rl);
	ck_assert_msg(r.status == 1, "%s: exit %d, expected 1\nstdout: %s\nstderr: %s",
		      fault_names[fault], r.status, r.out, r.err);
	ck_assert_msg(summary(&r, counter) == 1 && summary(&r, "errors") == 1,
		      "%s: expected %s=1 and errors=1\n%s", fault_names[fault], counter, r.out);
	ck_assert_msg(strstr(r.err, "first error"), "%s: no error described: %s",
		      fault_names[fault], r.err);
	harness_output_free(&r);
}
END_TEST

START_TEST(chatbench_rejects_bad_usage)
{
	static const char *const bad[][8] = {
		{ "-c", "1", HOST, "7", NULL },
		{ "-c", "4", "-S", "5", HOST, "7", NULL },
		{ "-s", "10", HOST, "7", NULL },
		{ "-u", "--irc", HOST, "7", NULL },
		{ "--oper", "a:b", HOST, "7", NULL },
		{ "--also", "nocolon", HOST, "7", NULL },
		{ HOST, NULL },
	};

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct harness_output r = run_bench(bad[i]);

		ck_assert_msg(r.status == 3, "case %zu: exit %d, expected 3 (usage)\n%s", i,
			      r.status, r.err);
		harness_output_free(&r);
	}
}
END_TEST

static Suite *
chatbench_suite(bool irc)
{
	Suite *s = suite_create("chatbench");
	TCase *tc;

	if (irc) {
		tc = harness_tcase(s, "irc", NULL, NULL, NULL, TCASE_TIMEOUT);
		tcase_add_test(tc, chatbench_irc_against_ngircd);
		return s;
	}
	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_TCP | HARNESS_COMBO_UDP) {
		tc = harness_combo_tcase(s, c, NULL, setup, teardown, TCASE_TIMEOUT);
		tcase_add_test(tc, chatbench_rate_limited_delivers_every_line_once);
		tcase_add_test(tc, chatbench_max_rate_delivers_every_line_once);
		if (strcmp(c->protocol, "tcp") == 0 && strcmp(c->model, "epoll") == 0)
			tcase_add_test(tc, chatbench_also_spreads_members_over_listeners);
	}
	tc = harness_tcase(s, "faults", NULL, NULL, NULL, TCASE_TIMEOUT);
	tcase_add_test(tc, chatbench_passes_a_correct_relay);
	tcase_add_loop_test(tc, chatbench_fails_on_a_relay_that_gets_one_line_wrong, 0,
			    (int)ELEMENTSOF(fault_cases));
	tcase_add_test(tc, chatbench_rejects_bad_usage);
	return s;
}

/* "irc": the case against a real ngircd, a meson test of its own
 * (chatbench-irc) that exits 77 (skip) where ngircd is not installed, so
 * that a host without it reports the case as not run. */
int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "irc") == 0) {
		if (!ngircd_bin()) {
			printf("ngircd not installed: the irc case is skipped\n");
			return HARNESS_EXIT_SKIP;
		}
		return harness_main(chatbench_suite(true), 1, argv);
	}
	return harness_main(chatbench_suite(false), argc, argv);
}
