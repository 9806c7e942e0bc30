#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netecho-common.h"
#include "util.h"

int
netecho_parse_seconds(const char *s, double max, uint64_t *ret_usec)
{
	char *end = NULL;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || !end || *end || end == s || !isfinite(v))
		return -EINVAL;
	if (v <= 0 || v > max)
		return -ERANGE;
	v *= (double)USEC_PER_SEC;
	*ret_usec = v < 1 ? 1 : (uint64_t)v;
	return 0;
}

int
netecho_parse_count(const char *s, unsigned long min, unsigned long max, unsigned long *ret)
{
	unsigned long v;
	int r;

	r = parse_uint(s, max, &v);
	if (r < 0)
		return r;
	if (v < min)
		return -ERANGE;
	*ret = v;
	return 0;
}

int
netecho_resolve(const char *host, const char *port, int socktype, struct addrinfo **ret,
		char *reterr, size_t reterr_len)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = socktype,
	};
	int r;

	r = getaddrinfo(host, port, &hints, ret);
	if (r == 0)
		return 0;
	if (r == EAI_SYSTEM) {
		int e = errno ? errno : EIO;

		snprintf(reterr, reterr_len, "cannot resolve '%s' port '%s': %s", host, port,
			 strerror(e));
		return -e;
	}
	snprintf(reterr, reterr_len, "cannot resolve '%s' port '%s': %s", host, port,
		 gai_strerror(r));
	switch (r) {
	case EAI_NONAME:
	case EAI_SERVICE:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY:
#endif
		return -ENOENT;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

int
netecho_ms_until(uint64_t deadline)
{
	uint64_t now = now_usec();

	if (now >= deadline)
		return 0;
	return (int)MIN((deadline - now + 999) / USEC_PER_MSEC, (uint64_t)INT32_MAX);
}

int
netecho_wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int r;

		r = poll(&pfd, 1, netecho_ms_until(deadline));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r > 0)
			return pfd.revents;
		if (now_usec() >= deadline)
			return -ETIMEDOUT;
	}
}

int
netecho_connect_result(int fd)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

static int
connect_one(const struct addrinfo *ai, uint64_t deadline, int *ret_fd)
{
	_cleanup_(closep) int fd = -1;
	int one = 1, r;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS && errno != EINTR)
			return -errno;
		r = netecho_wait_fd(fd, POLLOUT, deadline);
		if (r < 0)
			return r;
	}
	r = netecho_connect_result(fd);
	if (r < 0)
		return r;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int
netecho_tcp_connect(const struct addrinfo *ai, uint64_t deadline, int *ret_fd,
		    union sockaddr_any *ret_peer)
{
	int r = -EADDRNOTAVAIL;

	for (; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		memset(ret_peer, 0, sizeof(*ret_peer));
		memcpy(ret_peer, ai->ai_addr, MIN((size_t)ai->ai_addrlen, sizeof(*ret_peer)));
		r = connect_one(ai, deadline, ret_fd);
		if (r == 0 || r == -ETIMEDOUT)
			return r;
	}
	return r;
}

void
netecho_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = getrandom(p + done, len - done, GRND_NONBLOCK);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (done < len) {
		/* No entropy yet (early boot): uniqueness is all we need. */
		uint64_t x = now_usec() ^ ((uint64_t)getpid() << 32);

		for (; done < len; done++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[done] = (uint8_t)x;
		}
	}
}

const char *
netecho_ai_to_string(const struct addrinfo *ai, char *buf, size_t len)
{
	union sockaddr_any sa;

	memset(&sa, 0, sizeof(sa));
	memcpy(&sa, ai->ai_addr, MIN((size_t)ai->ai_addrlen, sizeof(sa)));
	return sockaddr_to_string(&sa, buf, len);
}

int
netecho_usage_error(const char *cmd, void (*usage)(FILE *f), const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "netecho %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return NETECHO_EXIT_USAGE;
}

int
netecho_usage_getopt(const char *cmd, void (*usage)(FILE *f), int c, char **argv)
{
	if (c == 'h') {
		usage(stdout);
		return NETECHO_EXIT_OK;
	}
	if (c == ':')
		return netecho_usage_error(cmd, usage, "option '%s' needs an argument",
					   argv[optind - 1]);
	return netecho_usage_error(cmd, usage, "unknown option '%s'", argv[optind - 1]);
}

int
netecho_proxy_from_string(const char *s, enum netecho_proxy *ret)
{
	if (strcmp(s, "v1") == 0)
		*ret = NETECHO_PROXY_V1;
	else if (strcmp(s, "v2") == 0)
		*ret = NETECHO_PROXY_V2;
	else
		return -EINVAL;
	return 0;
}

/* The v2 signature, then version 2 with command PROXY. */
static const uint8_t proxy_v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
#define PROXY_V2_VER_PROXY 0x21
#define PROXY_V2_INET_STREAM 0x11
#define PROXY_V2_INET6_STREAM 0x21

static int
proxy_v1(int family, const uint8_t src[16], const uint8_t dst[16], uint16_t sport,
	 uint16_t dport, uint8_t *buf, size_t size)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	int n;

	if (!inet_ntop(family, src, s, sizeof(s)) || !inet_ntop(family, dst, d, sizeof(d)))
		return -errno;
	n = snprintf((char *)buf, size, "PROXY %s %s %s %u %u\r\n",
		     family == AF_INET ? "TCP4" : "TCP6", s, d, sport, dport);
	if (n < 0)
		return -EIO;
	if ((size_t)n >= size)
		return -ENOBUFS;
	return n;
}

static int
proxy_v2(int family, const uint8_t src[16], const uint8_t dst[16], uint16_t sport,
	 uint16_t dport, uint8_t *buf, size_t size)
{
	size_t alen = family == AF_INET ? 4 : 16;
	size_t len = 2 * alen + 4;
	uint8_t *p = buf;

	if (size < 16 + len)
		return -ENOBUFS;
	memcpy(p, proxy_v2_sig, sizeof(proxy_v2_sig));
	p += sizeof(proxy_v2_sig);
	*p++ = PROXY_V2_VER_PROXY;
	*p++ = family == AF_INET ? PROXY_V2_INET_STREAM : PROXY_V2_INET6_STREAM;
	*p++ = (uint8_t)(len >> 8);
	*p++ = (uint8_t)len;
	memcpy(p, src, alen);
	p += alen;
	memcpy(p, dst, alen);
	p += alen;
	*p++ = (uint8_t)(sport >> 8);
	*p++ = (uint8_t)sport;
	*p++ = (uint8_t)(dport >> 8);
	*p++ = (uint8_t)dport;
	return (int)(p - buf);
}

int
netecho_proxy_header(enum netecho_proxy version, int fd, uint8_t *buf, size_t size)
{
	union sockaddr_any local, peer;
	socklen_t llen = sizeof(local), plen = sizeof(peer);
	uint8_t src[16], dst[16];
	int fs, fp;

	memset(&local, 0, sizeof(local));
	memset(&peer, 0, sizeof(peer));
	if (getsockname(fd, &local.sa, &llen) < 0 || getpeername(fd, &peer.sa, &plen) < 0)
		return -errno;
	/* IPv4-mapped addresses come out as AF_INET here. */
	fs = sockaddr_addr_bytes(&local, src);
	fp = sockaddr_addr_bytes(&peer, dst);
	if (fs == 0 || fs != fp)
		return -EAFNOSUPPORT;
	switch (version) {
	case NETECHO_PROXY_V1:
		return proxy_v1(fs, src, dst, sockaddr_port(&local), sockaddr_port(&peer), buf,
				size);
	case NETECHO_PROXY_V2:
		return proxy_v2(fs, src, dst, sockaddr_port(&local), sockaddr_port(&peer), buf,
				size);
	default:
		return -EINVAL;
	}
}

int
netecho_raise_fd_limit(rlim_t need, rlim_t *reterr_hard)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		*reterr_hard = rl.rlim_max;
		return -EMFILE;
	}
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	return 0;
}
