#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <time.h>

#include "util.h"

uint64_t
now_usec(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

uint64_t
now_nsec(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t
realtime_usec(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

int
fd_set_nonblock(int fd, bool nonblock)
{
	int flags, nflags;

	flags = fcntl(fd, F_GETFL, 0);
	if (flags < 0)
		return -errno;
	nflags = nonblock ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
	if (nflags != flags && fcntl(fd, F_SETFL, nflags) < 0)
		return -errno;
	return 0;
}

int
write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static bool
is_v4mapped(const union sockaddr_any *sa)
{
	return sa->sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&sa->in6.sin6_addr);
}

const char *
sockaddr_host_to_string(const union sockaddr_any *sa, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	switch (sa->sa.sa_family) {
	case AF_INET:
		if (!inet_ntop(AF_INET, &sa->in.sin_addr, a, sizeof(a)))
			break;
		snprintf(buf, len, "%s", a);
		return buf;
	case AF_INET6:
		if (is_v4mapped(sa)) {
			if (!inet_ntop(AF_INET, &sa->in6.sin6_addr.s6_addr[12], a, sizeof(a)))
				break;
		} else if (!inet_ntop(AF_INET6, &sa->in6.sin6_addr, a, sizeof(a)))
			break;
		if (sa->in6.sin6_scope_id && !is_v4mapped(sa))
			snprintf(buf, len, "%s%%%u", a, sa->in6.sin6_scope_id);
		else
			snprintf(buf, len, "%s", a);
		return buf;
	default:
		break;
	}
	snprintf(buf, len, "?");
	return buf;
}

const char *
sockaddr_to_string(const union sockaddr_any *sa, char *buf, size_t len)
{
	char h[SOCKADDR_STR_MAX];

	sockaddr_host_to_string(sa, h, sizeof(h));
	if (sa->sa.sa_family == AF_INET6 && !is_v4mapped(sa))
		snprintf(buf, len, "[%s]:%u", h, sockaddr_port(sa));
	else
		snprintf(buf, len, "%s:%u", h, sockaddr_port(sa));
	return buf;
}

uint16_t
sockaddr_port(const union sockaddr_any *sa)
{
	if (sa->sa.sa_family == AF_INET)
		return ntohs(sa->in.sin_port);
	if (sa->sa.sa_family == AF_INET6)
		return ntohs(sa->in6.sin6_port);
	return 0;
}

socklen_t
sockaddr_len(const union sockaddr_any *sa)
{
	return sa->sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					    : sizeof(struct sockaddr_in);
}

int
sockaddr_addr_bytes(const union sockaddr_any *sa, uint8_t ret[16])
{
	if (sa->sa.sa_family == AF_INET) {
		memcpy(ret, &sa->in.sin_addr, 4);
		return AF_INET;
	}
	if (sa->sa.sa_family == AF_INET6) {
		if (is_v4mapped(sa)) {
			memcpy(ret, &sa->in6.sin6_addr.s6_addr[12], 4);
			return AF_INET;
		}
		memcpy(ret, &sa->in6.sin6_addr, 16);
		return AF_INET6;
	}
	return 0;
}

bool
sockaddr_equal(const union sockaddr_any *a, const union sockaddr_any *b)
{
	uint8_t x[16], y[16];
	int fx, fy;

	fx = sockaddr_addr_bytes(a, x);
	fy = sockaddr_addr_bytes(b, y);
	if (fx == 0 || fx != fy || sockaddr_port(a) != sockaddr_port(b))
		return false;
	return memcmp(x, y, fx == AF_INET ? 4 : 16) == 0;
}

int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
parse_uint(const char *s, unsigned long max, unsigned long *ret)
{
	unsigned long v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (max - (unsigned long)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	*ret = v;
	return 0;
}
