/* The systemd protocols netechod speaks itself (src/sdproto.c), checked
 * against the wire formats and against libsystemd, the reference
 * implementation: the same environment must give the same answer. */

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <systemd/sd-daemon.h>

#include "sdproto.h"

/* A datagram socket we own, bound to `addr` ("/path" or "@abstract"). */
static int
bind_dgram(const char *addr)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t l = strlen(addr);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l);
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memcpy(sa.sun_path, addr, l);
	if (addr[0] == '@')
		sa.sun_path[0] = '\0';
	else
		len++;
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	/* Bounded wait: a missing datagram fails the test, not hangs it. */
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

static ssize_t
recv_one(int fd, char *buf, size_t size)
{
	ssize_t n = recv(fd, buf, size, 0);

	ck_assert_msg(n >= 0, "recv: %s", strerror(errno));
	return n;
}

static void
notify_both_ways(const char *addr)
{
	const char *msg = "READY=1\nSTATUS=2 listeners, 0 clients\nMAINPID=1";
	char ours[256], theirs[256];
	ssize_t n1, n2;
	int fd = bind_dgram(addr);

	setenv("NOTIFY_SOCKET", addr, 1);
	ck_assert_int_eq(sdp_notify(msg), 1);
	n1 = recv_one(fd, ours, sizeof(ours));
	ck_assert_int_gt(sd_notify(0, msg), 0);
	n2 = recv_one(fd, theirs, sizeof(theirs));
	ck_assert_int_eq(n1, (ssize_t)strlen(msg));
	ck_assert_int_eq(n1, n2);
	ck_assert(memcmp(ours, theirs, (size_t)n1) == 0);
	/* The environment stays for the next notification. */
	ck_assert_str_eq(getenv("NOTIFY_SOCKET"), addr);

	ck_assert_int_eq(sdp_notifyf("EXTEND_TIMEOUT_USEC=%d", 1500000), 1);
	n1 = recv_one(fd, ours, sizeof(ours));
	ck_assert_int_eq(n1, (ssize_t)strlen("EXTEND_TIMEOUT_USEC=1500000"));
	ck_assert(memcmp(ours, "EXTEND_TIMEOUT_USEC=1500000", (size_t)n1) == 0);
	close(fd);
}

START_TEST(notify_path_socket)
{
	char dir[] = "/tmp/sdproto-XXXXXX", path[64];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	notify_both_ways(path);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(notify_abstract_socket)
{
	char addr[64];

	snprintf(addr, sizeof(addr), "@netechod-sdproto-%ld", (long)getpid());
	notify_both_ways(addr);
}
END_TEST

START_TEST(notify_without_socket)
{
	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(sdp_notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	ck_assert_int_eq(sdp_notify("READY=1"), 0);
	/* Not an AF_UNIX address: refused, as libsystemd refuses it. */
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	ck_assert_int_lt(sdp_notify("READY=1"), 0);
	ck_assert_int_lt(sd_notify(0, "READY=1"), 0);
	/* A socket nobody listens on is an error, not a silent success. */
	setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
	ck_assert_int_eq(sdp_notify("READY=1"), -ENOENT);
}
END_TEST

/* One socket activation case, run in a child where fds 3.. are ours to
 * replace: our answer and libsystemd's for the same environment. */
struct lf_case {
	const char *pid; /* "self", "other" or a literal */
	const char *fds;
	const char *names; /* NULL: unset */
	int n_sockets;     /* sockets put at 3.. */
};

static void
lf_setenv(const struct lf_case *c)
{
	char pid[32];

	if (!strcmp(c->pid, "self"))
		snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	else if (!strcmp(c->pid, "other"))
		snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	else
		snprintf(pid, sizeof(pid), "%s", c->pid);
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", c->fds, 1);
	if (c->names)
		setenv("LISTEN_FDNAMES", c->names, 1);
	else
		unsetenv("LISTEN_FDNAMES");
}

static int
lf_child(const struct lf_case *c)
{
	char **ours = NULL, **theirs = NULL;
	int r1, r2;

	for (int i = 0; i < c->n_sockets; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (s < 0 || dup2(s, SDP_LISTEN_FDS_START + i) < 0)
			return 10;
		if (s != SDP_LISTEN_FDS_START + i)
			close(s);
		/* Not close-on-exec yet: taking them must set it. */
		if (fcntl(SDP_LISTEN_FDS_START + i, F_SETFD, 0) < 0)
			return 11;
	}
	lf_setenv(c);
	r1 = sdp_listen_fds(&ours);
	if (getenv("LISTEN_PID") || getenv("LISTEN_FDS") || getenv("LISTEN_FDNAMES"))
		return 12; /* the environment must be gone */
	if (r1 > 0)
		for (int i = 0; i < r1; i++)
			if (!(fcntl(SDP_LISTEN_FDS_START + i, F_GETFD) & FD_CLOEXEC))
				return 13;
	lf_setenv(c);
	r2 = sd_listen_fds_with_names(1, &theirs);
	if (r1 != r2) {
		fprintf(stderr, "ours %d, libsystemd %d\n", r1, r2);
		return 14;
	}
	if ((r1 > 0) != (ours != NULL) || (r2 > 0) != (theirs != NULL))
		return 15;
	for (int i = 0; i < r1; i++)
		if (!ours[i] || !theirs[i] || strcmp(ours[i], theirs[i])) {
			fprintf(stderr, "name %d: ours '%s', libsystemd '%s'\n", i,
				ours[i] ? ours[i] : "(null)", theirs[i] ? theirs[i] : "(null)");
			return 16;
		}
	if (r1 > 0 && (ours[r1] || theirs[r2]))
		return 17;
	return 0;
}

/* Each case runs in its own child (listen_fds_like_libsystemd); the
 * expected answers are in listen_fds_counts. */
static const struct lf_case lf_cases[] = {
	{ "self", "2", "echo-tcp:echo-udp", 2 },
	{ "self", "2", NULL, 2 },          /* no names: "unknown" */
	{ "self", "3", "a::c", 3 },        /* an empty name is kept */
	{ "other", "2", "a:b", 2 },        /* for another process: 0 */
	{ "self", "2", "only-one", 2 },    /* names do not match: error */
	{ "self", "0", NULL, 0 },
	{ "self", "two", NULL, 0 },
	{ "self", "-1", NULL, 0 },
	{ "0", "1", NULL, 1 },             /* libsystemd: -ERANGE */
	{ "x12", "1", NULL, 1 },
};

START_TEST(listen_fds_like_libsystemd)
{
	const struct lf_case *c = &lf_cases[_i];
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(lf_child(c));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "case %d (LISTEN_PID=%s LISTEN_FDS=%s LISTEN_FDNAMES=%s): child status %d",
		      _i, c->pid, c->fds, c->names ? c->names : "(unset)", status);
}
END_TEST

START_TEST(listen_fds_counts)
{
	/* The expected results, stated once without libsystemd. */
	static const int want[] = { 2, 2, 3, 0, -EINVAL, -EINVAL, -EINVAL, -EINVAL, -ERANGE,
				    -EINVAL };
	int status;

	ck_assert_uint_eq(sizeof(want) / sizeof(want[0]), sizeof(lf_cases) / sizeof(lf_cases[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			char **names = NULL;

			for (int k = 0; k < lf_cases[i].n_sockets; k++)
				if (dup2(0, SDP_LISTEN_FDS_START + k) < 0)
					_exit(100);
			lf_setenv(&lf_cases[i]);
			_exit(sdp_listen_fds(&names) == want[i] ? 0 : 1);
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "case %zu", i);
	}
}
END_TEST

START_TEST(listen_fds_none)
{
	char **names = (char **)1;

	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	ck_assert_int_eq(sdp_listen_fds(&names), 0);
	ck_assert_ptr_null(names);
}
END_TEST

START_TEST(watchdog_like_libsystemd)
{
	static const struct {
		const char *usec, *pid; /* pid: NULL unset, "self", "other" */
		int want;
	} c[] = {
		{ "30000000", NULL, 1 },
		{ "30000000", "self", 1 },
		{ "30000000", "other", 0 },
		{ "0", NULL, -EINVAL },
		{ "abc", NULL, -EINVAL },
		{ NULL, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint64_t ours = 0;
		uint64_t theirs = 0;
		char pid[32];
		int r1, r2;

		if (c[i].usec)
			setenv("WATCHDOG_USEC", c[i].usec, 1);
		else
			unsetenv("WATCHDOG_USEC");
		if (c[i].pid) {
			snprintf(pid, sizeof(pid), "%ld",
				 (long)getpid() + (strcmp(c[i].pid, "self") ? 1 : 0));
			setenv("WATCHDOG_PID", pid, 1);
		} else
			unsetenv("WATCHDOG_PID");
		r1 = sdp_watchdog_enabled(&ours);
		r2 = sd_watchdog_enabled(0, &theirs);
		ck_assert_msg(r1 == c[i].want, "case %zu: %d, want %d", i, r1, c[i].want);
		ck_assert_msg(r1 == r2, "case %zu: ours %d, libsystemd %d", i, r1, r2);
		if (r1 > 0)
			ck_assert_uint_eq(ours, theirs);
	}
}
END_TEST

#define IOV(s) { .iov_base = (void *)(s), .iov_len = sizeof(s) - 1 }

static int
journal_socket(char *dir, char *path, size_t size)
{
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, size, "%s/socket", dir);
	sdp_journal_set_socket(path);
	return bind_dgram(path);
}

START_TEST(journal_native_format)
{
	char dir[] = "/tmp/sdproto-XXXXXX", path[64], buf[512];
	struct iovec iov[] = {
		IOV("MESSAGE=tcp-echo: 127.0.0.1:4000 connection opened"),
		IOV("PRIORITY=6"),
		IOV("LISTENER=tcp-echo"),
		IOV("EMPTY="),
		IOV("SYSLOG_IDENTIFIER=netechod"),
	};
	static const char want[] = "MESSAGE=tcp-echo: 127.0.0.1:4000 connection opened\n"
				   "PRIORITY=6\nLISTENER=tcp-echo\nEMPTY=\n"
				   "SYSLOG_IDENTIFIER=netechod\n";
	int fd = journal_socket(dir, path, sizeof(path));
	ssize_t n;

	ck_assert_int_eq(sdp_journal_sendv(iov, 5), 0);
	n = recv_one(fd, buf, sizeof(buf));
	ck_assert_int_eq(n, (ssize_t)sizeof(want) - 1);
	ck_assert(memcmp(buf, want, (size_t)n) == 0);
	close(fd);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(journal_binary_value_and_identifier)
{
	char dir[] = "/tmp/sdproto-XXXXXX", path[64], buf[512], want[512];
	struct iovec iov[] = { IOV("MESSAGE=two\nlines"), IOV("PRIORITY=3") };
	uint64_t le = htole64(9);
	size_t w = 0;
	int fd = journal_socket(dir, path, sizeof(path));
	ssize_t n;

	/* MESSAGE\n <le64 9> two\nlines \n, then the plain field, then the
	 * identifier libsystemd adds when the caller gave none. */
	memcpy(want + w, "MESSAGE\n", 8);
	w += 8;
	memcpy(want + w, &le, 8);
	w += 8;
	snprintf(want + w, sizeof(want) - w, "two\nlines\nPRIORITY=3\nSYSLOG_IDENTIFIER=netechod\n");
	w += strlen(want + w);
	ck_assert_int_eq(sdp_journal_sendv(iov, 2), 0);
	n = recv_one(fd, buf, sizeof(buf));
	ck_assert_int_eq(n, (ssize_t)w);
	ck_assert(memcmp(buf, want, w) == 0);
	close(fd);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(journal_rejects_bad_fields)
{
	struct iovec no_eq[] = { IOV("MESSAGE") };
	struct iovec empty_name[] = { IOV("=x") };
	struct iovec nl_in_name[] = { IOV("MES\nSAGE=x") };

	sdp_journal_set_socket("/nonexistent/journal");
	ck_assert_int_eq(sdp_journal_sendv(no_eq, 1), -EINVAL);
	ck_assert_int_eq(sdp_journal_sendv(empty_name, 1), -EINVAL);
	ck_assert_int_eq(sdp_journal_sendv(nl_in_name, 1), -EINVAL);
	ck_assert_int_eq(sdp_journal_sendv(no_eq, 0), -EINVAL);
	/* No journald: an error, so the caller can fall back to stderr. */
	{
		struct iovec ok[] = { IOV("MESSAGE=x") };

		ck_assert_int_eq(sdp_journal_sendv(ok, 1), -ENOENT);
	}
}
END_TEST

START_TEST(journal_large_entry_in_memfd)
{
	char dir[] = "/tmp/sdproto-XXXXXX", path[64], dummy;
	unsigned long wmem_max = 212992;
	FILE *f = fopen("/proc/sys/net/core/wmem_max", "r");
	size_t big, got = 0;
	char *field, *back;
	struct cmsghdr *cm;
	struct iovec iov[2];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct iovec riov = { .iov_base = &dummy, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &riov, .msg_iovlen = 1, .msg_control = c.buf,
			     .msg_controllen = sizeof(c.buf) };
	int fd = journal_socket(dir, path, sizeof(path)), mfd;
	ssize_t n;

	/* Bigger than any send buffer the sender can get (twice wmem_max). */
	if (f) {
		if (fscanf(f, "%lu", &wmem_max) != 1)
			wmem_max = 212992;
		fclose(f);
	}
	big = 2 * wmem_max + 65536;
	field = malloc(big);
	back = malloc(big + 64);
	ck_assert_ptr_nonnull(field);
	ck_assert_ptr_nonnull(back);
	memcpy(field, "MESSAGE=", 8);
	memset(field + 8, 'x', big - 8);
	iov[0] = (struct iovec){ .iov_base = field, .iov_len = big };
	iov[1] = (struct iovec)IOV("SYSLOG_IDENTIFIER=netechod");
	/* Too big for a datagram: the entry travels as a sealed memfd. */
	ck_assert_int_eq(sdp_journal_sendv(iov, 2), 0);
	n = recvmsg(fd, &mh, 0);
	ck_assert_int_eq(n, 0);
	cm = CMSG_FIRSTHDR(&mh);
	ck_assert_ptr_nonnull(cm);
	if (!cm)
		return;
	ck_assert_int_eq(cm->cmsg_type, SCM_RIGHTS);
	memcpy(&mfd, CMSG_DATA(cm), sizeof(int));
	ck_assert_int_ge(fcntl(mfd, F_GET_SEALS) & F_SEAL_WRITE, 1);
	while ((n = pread(mfd, back + got, big + 64 - got, (off_t)got)) > 0)
		got += (size_t)n;
	ck_assert_uint_eq(got, big + 1 + 27);
	ck_assert(memcmp(back, field, big) == 0);
	ck_assert(memcmp(back + big, "\nSYSLOG_IDENTIFIER=netechod\n", 28) == 0);
	close(mfd);
	close(fd);
	unlink(path);
	rmdir(dir);
	free(field);
	free(back);
}
END_TEST

static Suite *
sdproto_suite(void)
{
	Suite *s = suite_create("sdproto");
	TCase *t = tcase_create("notify");

	tcase_add_test(t, notify_path_socket);
	tcase_add_test(t, notify_abstract_socket);
	tcase_add_test(t, notify_without_socket);
	suite_add_tcase(s, t);

	t = tcase_create("listen-fds");
	tcase_add_loop_test(t, listen_fds_like_libsystemd, 0,
			    (int)(sizeof(lf_cases) / sizeof(lf_cases[0])));
	tcase_add_test(t, listen_fds_counts);
	tcase_add_test(t, listen_fds_none);
	suite_add_tcase(s, t);

	t = tcase_create("watchdog");
	tcase_add_test(t, watchdog_like_libsystemd);
	suite_add_tcase(s, t);

	t = tcase_create("journal");
	tcase_add_test(t, journal_native_format);
	tcase_add_test(t, journal_binary_value_and_identifier);
	tcase_add_test(t, journal_rejects_bad_fields);
	tcase_add_test(t, journal_large_entry_in_memfd);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sdproto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
