#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdproto.h"

/* Fills *sa from a NOTIFY_SOCKET-style address: an absolute path, or
 * "@name" for the abstract namespace. Returns the address length. */
static int
unix_address(const char *p, struct sockaddr_un *sa, socklen_t *ret_len)
{
	size_t l = strlen(p);

	if ((p[0] != '/' && p[0] != '@') || l < 2 || l >= sizeof(sa->sun_path))
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, p, l);
	if (p[0] == '@') {
		/* Abstract: leading NUL, and the length ends the name. */
		sa->sun_path[0] = '\0';
		*ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l);
	} else
		*ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l + 1);
	return 0;
}

static ssize_t
sendmsg_retry(int fd, const struct msghdr *mh)
{
	ssize_t k;

	do
		k = sendmsg(fd, mh, MSG_NOSIGNAL);
	while (k < 0 && errno == EINTR);
	return k;
}

int
sdp_notify(const char *state)
{
	const char *e = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	struct iovec iov = { .iov_base = (void *)state, .iov_len = strlen(state) };
	struct msghdr mh = { .msg_name = &sa, .msg_iov = &iov, .msg_iovlen = 1 };
	socklen_t salen;
	int fd, r;

	if (!e || !*e)
		return 0;
	r = unix_address(e, &sa, &salen);
	if (r < 0)
		return r;
	mh.msg_namelen = salen;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = sendmsg_retry(fd, &mh) < 0 ? -errno : 1;
	(void)close(fd);
	return r;
}

int
sdp_notifyf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -ENOBUFS;
	return sdp_notify(buf);
}

/* A decimal number in [0, max] and nothing else. */
static int
parse_ulong(const char *s, unsigned long long max, unsigned long long *ret)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int
env_is_our_pid(const char *var)
{
	unsigned long long pid;

	if (parse_ulong(getenv(var), INT_MAX, &pid) < 0)
		return -EINVAL;
	if (pid == 0)
		return -ERANGE;
	return (pid_t)pid == getpid();
}

static void
free_names(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

/* LISTEN_FDNAMES split at ':' (empty names kept): n strings, or NULL. */
static char **
split_names(const char *e, size_t *ret_n)
{
	size_t n = *e ? 1 : 0, i = 0;
	char **v;

	for (const char *p = e; *p; p++)
		n += *p == ':';
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	for (const char *p = e; i < n; i++) {
		size_t l = strcspn(p, ":");

		v[i] = strndup(p, l);
		if (!v[i]) {
			free_names(v, i);
			return NULL;
		}
		p += l + (p[l] == ':');
	}
	*ret_n = n;
	return v;
}

int
sdp_listen_fds(char ***ret_names)
{
	const char *e = getenv("LISTEN_FDNAMES");
	unsigned long long n = 0;
	char **names = NULL;
	size_t n_names = 0;
	int r;

	*ret_names = NULL;
	if (!getenv("LISTEN_PID")) {
		r = 0;
		goto out;
	}
	/* Invalid (< 0), or meant for another process (0). */
	r = env_is_our_pid("LISTEN_PID");
	if (r <= 0)
		goto out;
	if (!getenv("LISTEN_FDS")) {
		r = 0;
		goto out;
	}
	r = parse_ulong(getenv("LISTEN_FDS"), INT_MAX - SDP_LISTEN_FDS_START, &n);
	if (r < 0 || n == 0) {
		r = -EINVAL;
		goto out;
	}
	for (int fd = SDP_LISTEN_FDS_START; fd < SDP_LISTEN_FDS_START + (int)n; fd++)
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
			r = -errno;
			goto out;
		}
	if (e) {
		names = split_names(e, &n_names);
		if (!names) {
			r = -ENOMEM;
			goto out;
		}
		if (n_names != n) {
			free_names(names, n_names);
			r = -EINVAL;
			goto out;
		}
	} else {
		names = calloc(n + 1, sizeof(*names));
		for (size_t i = 0; names && i < n; i++)
			if (!(names[i] = strdup("unknown"))) {
				free_names(names, i);
				names = NULL;
			}
		if (!names) {
			r = -ENOMEM;
			goto out;
		}
	}
	*ret_names = names;
	r = (int)n;
out:
	(void)unsetenv("LISTEN_PID");
	(void)unsetenv("LISTEN_FDS");
	(void)unsetenv("LISTEN_FDNAMES");
	return r;
}

int
sdp_watchdog_enabled(uint64_t *ret_usec)
{
	unsigned long long u;
	const char *s = getenv("WATCHDOG_USEC");
	int r;

	if (!s)
		return 0;
	if (parse_ulong(s, UINT64_MAX - 1, &u) < 0 || u == 0)
		return -EINVAL;
	if (getenv("WATCHDOG_PID")) {
		r = env_is_our_pid("WATCHDOG_PID");
		if (r <= 0)
			return r;
	}
	*ret_usec = u;
	return 1;
}

static const char *journal_path = "/run/systemd/journal/socket";
static atomic_int journal_fd = -1;

void
sdp_journal_set_socket(const char *path)
{
	journal_path = path ? path : "/run/systemd/journal/socket";
}

static int
journal_socket(void)
{
	int fd = atomic_load(&journal_fd), expect = -1, sndbuf = 8 * 1024 * 1024;

	if (fd >= 0)
		return fd;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Room for bursts, as libsystemd does; silently capped by wmem_max. */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (!atomic_compare_exchange_strong(&journal_fd, &expect, fd)) {
		/* Another thread was first: use its socket. */
		(void)close(fd);
		fd = expect;
	}
	return fd;
}

/* An entry too big for one datagram goes in a sealed memfd whose
 * descriptor is passed instead (the protocol's large-entry path). */
static int
send_memfd(int fd, struct msghdr *mh, const struct iovec *w, size_t nw)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct cmsghdr *cm;
	int mfd, r = 0;

	mfd = memfd_create("journal-data", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0)
		return -errno;
	for (size_t i = 0; i < nw && r == 0; i++) {
		const char *p = w[i].iov_base;
		size_t left = w[i].iov_len;

		while (left > 0) {
			ssize_t k = write(mfd, p, left);

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				r = k < 0 ? -errno : -EIO;
				break;
			}
			p += k;
			left -= (size_t)k;
		}
	}
	if (r == 0 && fcntl(mfd, F_ADD_SEALS,
			    F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)
		r = -errno;
	if (r == 0) {
		memset(&c, 0, sizeof(c));
		mh->msg_iov = NULL;
		mh->msg_iovlen = 0;
		mh->msg_control = c.buf;
		mh->msg_controllen = sizeof(c.buf);
		cm = CMSG_FIRSTHDR(mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &mfd, sizeof(int));
		r = sendmsg_retry(fd, mh) < 0 ? -errno : 0;
	}
	(void)close(mfd);
	return r;
}

#define JOURNAL_MAX_FIELDS 64

int
sdp_journal_sendv(const struct iovec *iov, size_t n)
{
	static const char nl = '\n';
	static const char ident[] = "SYSLOG_IDENTIFIER=netechod";
	struct iovec w[5 * JOURNAL_MAX_FIELDS + 2];
	uint64_t lens[JOURNAL_MAX_FIELDS];
	struct sockaddr_un sa;
	struct msghdr mh = { .msg_name = &sa };
	bool have_ident = false;
	socklen_t salen;
	size_t nw = 0;
	int fd, r;

	if (n == 0 || n > JOURNAL_MAX_FIELDS)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		const char *b = iov[i].iov_base;
		const char *eq = memchr(b, '=', iov[i].iov_len);
		const char *lf = memchr(b, '\n', iov[i].iov_len);
		size_t name_len = eq ? (size_t)(eq - b) : 0;

		if (!eq || eq == b || (lf && lf < eq))
			return -EINVAL;
		if (name_len == 17 && !memcmp(b, "SYSLOG_IDENTIFIER", 17))
			have_ident = true;
		if (!lf) {
			/* FIELD=value\n */
			w[nw++] = iov[i];
			w[nw++] = (struct iovec){ .iov_base = (void *)&nl, .iov_len = 1 };
			continue;
		}
		/* A value with a newline: FIELD\n, 64-bit little-endian
		 * length, the value, \n. */
		uint64_t vl = iov[i].iov_len - name_len - 1;

		lens[i] = htole64(vl);
		w[nw++] = (struct iovec){ .iov_base = (void *)b, .iov_len = name_len };
		w[nw++] = (struct iovec){ .iov_base = (void *)&nl, .iov_len = 1 };
		w[nw++] = (struct iovec){ .iov_base = &lens[i], .iov_len = 8 };
		w[nw++] = (struct iovec){ .iov_base = (void *)(eq + 1), .iov_len = vl };
		w[nw++] = (struct iovec){ .iov_base = (void *)&nl, .iov_len = 1 };
	}
	if (!have_ident) {
		w[nw++] = (struct iovec){ .iov_base = (void *)ident, .iov_len = sizeof(ident) - 1 };
		w[nw++] = (struct iovec){ .iov_base = (void *)&nl, .iov_len = 1 };
	}
	r = unix_address(journal_path, &sa, &salen);
	if (r < 0)
		return r;
	fd = journal_socket();
	if (fd < 0)
		return fd;
	mh.msg_namelen = salen;
	mh.msg_iov = w;
	mh.msg_iovlen = nw;
	if (sendmsg_retry(fd, &mh) >= 0)
		return 0;
	if (errno != EMSGSIZE && errno != ENOBUFS && errno != EAGAIN)
		return -errno;
	return send_memfd(fd, &mh, w, nw);
}
