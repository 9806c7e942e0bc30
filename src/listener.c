#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

#include "listener.h"

static int
socktype(const struct listener_config *cfg)
{
	return cfg->protocol == PROTOCOL_TCP ? SOCK_STREAM : SOCK_DGRAM;
}

static bool
ipv6_available(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	safe_close(fd);
	return true;
}

int
listener_resolve(const struct listener_config *cfg, union sockaddr_any ret[LISTENER_ADDRS_MAX],
		 int *reterr_gai)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	char port[8];
	int n = 0, r;

	if (strcmp(cfg->address, "*") == 0) {
		memset(&ret[0], 0, sizeof(ret[0]));
		if (ipv6_available()) {
			ret[0].in6.sin6_family = AF_INET6;
			ret[0].in6.sin6_addr = in6addr_any;
			ret[0].in6.sin6_port = htons(cfg->port);
		} else {
			ret[0].in.sin_family = AF_INET;
			ret[0].in.sin_addr.s_addr = htonl(INADDR_ANY);
			ret[0].in.sin_port = htons(cfg->port);
		}
		return 1;
	}

	snprintf(port, sizeof(port), "%u", cfg->port);
	hints.ai_socktype = socktype(cfg);
	hints.ai_flags = AI_NUMERICSERV;
	r = getaddrinfo(cfg->address, port, &hints, &res);
	if (r != 0) {
		if (reterr_gai)
			*reterr_gai = r;
		return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	}
	for (struct addrinfo *ai = res; ai && n < LISTENER_ADDRS_MAX; ai = ai->ai_next) {
		union sockaddr_any a = { 0 };
		bool dup = false;

		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(a))
			continue;
		memcpy(&a, ai->ai_addr, ai->ai_addrlen);
		for (int i = 0; i < n; i++)
			dup = dup || sockaddr_equal(&ret[i], &a);
		if (!dup)
			ret[n++] = a;
	}
	freeaddrinfo(res);
	return n > 0 ? n : -EADDRNOTAVAIL;
}

int
listener_bind(const struct listener_config *cfg, const union sockaddr_any *addr, bool reuseport,
	      int *ret_fd)
{
	int fd, one = 1, zero = 0;

	fd = socket(addr->sa.sa_family, socktype(cfg) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (cfg->protocol == PROTOCOL_TCP)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (addr->sa.sa_family == AF_INET6) {
		/* "*" is dual-stack; a specific v6 address only itself. */
		int v6only = IN6_IS_ADDR_UNSPECIFIED(&addr->in6.sin6_addr) ? zero : one;

		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
			goto fail;
	}
	if (bind(fd, &addr->sa, sockaddr_len(addr)) < 0)
		goto fail;
	if (cfg->protocol == PROTOCOL_TCP && listen(fd, (int)cfg->backlog) < 0)
		goto fail;
	*ret_fd = fd;
	return 0;
fail:
	{
		int r = -errno;
		safe_close(fd);
		return r;
	}
}

bool
listener_fd_matches(int fd, const struct listener_config *cfg, const union sockaddr_any *addrs,
		    size_t n_addrs)
{
	union sockaddr_any a;
	socklen_t len = sizeof(a);
	int type = 0, listening = 0;
	socklen_t tl = sizeof(type), ll = sizeof(listening);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != socktype(cfg))
		return false;
	if (cfg->protocol == PROTOCOL_TCP &&
	    (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 || !listening))
		return false;
	if (getsockname(fd, &a.sa, &len) < 0 || sockaddr_port(&a) != cfg->port)
		return false;
	for (size_t i = 0; i < n_addrs; i++) {
		uint8_t x[16], y[16];
		int fx = sockaddr_addr_bytes(&a, x), fy = sockaddr_addr_bytes(&addrs[i], y);

		if (fx == fy && memcmp(x, y, fx == AF_INET ? 4 : 16) == 0)
			return true;
		/* "*" may come as [::] or as 0.0.0.0. */
		if (strcmp(cfg->address, "*") == 0) {
			static const uint8_t zero16[16];

			if (memcmp(x, zero16, fx == AF_INET ? 4 : 16) == 0)
				return true;
		}
	}
	return false;
}

const char *
listener_format_bind(const struct listener_config *cfg, char *buf, size_t len)
{
	if (strchr(cfg->address, ':'))
		snprintf(buf, len, "[%s]:%u", cfg->address, cfg->port);
	else
		snprintf(buf, len, "%s:%u", cfg->address, cfg->port);
	return buf;
}
