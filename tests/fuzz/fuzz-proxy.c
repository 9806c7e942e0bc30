/* libFuzzer target for proxy_parse() (src/proxyproto.h).
 *
 * The input is the first bytes of a connection. Oracles, each an abort on
 * failure:
 * - the result is a length, 0 (read more), -EBADMSG or -EMSGSIZE; an error
 *   comes with a reason; *ret is written on success only; a NULL reterr
 *   changes nothing; the same bytes parse the same again;
 * - over the prefixes p[0..k) for k = 0, 1, ... the results are 0 up to
 *   some k, then one value for every longer prefix: a header's strict
 *   prefixes ask for more, the bytes after a header or a fault change
 *   nothing; and 0 never comes once k reaches the version's maximum;
 * - a header's length fits n and its version's maximum; v1 ends in CRLF,
 *   v2's is 16 plus its length field;
 * - addresses are both AF_INET or both AF_INET6, or both AF_UNSPEC for a
 *   health check; printed back as a canonical v1 line and as a v2 header,
 *   they parse to the same result. */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"
#include "util.h"

#define FAIL(...)                                            \
	do {                                                 \
		fprintf(stderr, "fuzz-proxy: " __VA_ARGS__); \
		fputc('\n', stderr);                         \
		abort();                                     \
	} while (0)

#define POISON 0xA5

static void
poison(struct proxy_info *info)
{
	memset(info, POISON, sizeof(*info));
}

static bool
poisoned(const struct proxy_info *info)
{
	const uint8_t *b = (const uint8_t *)info;

	for (size_t i = 0; i < sizeof(*info); i++)
		if (b[i] != POISON)
			return false;
	return true;
}

static bool
same_addr(const union sockaddr_any *a, const union sockaddr_any *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return memcmp(&a->in, &b->in, sizeof(a->in)) == 0;
	if (a->sa.sa_family == AF_INET6)
		return memcmp(&a->in6, &b->in6, sizeof(a->in6)) == 0;
	return a->sa.sa_family == AF_UNSPEC;
}

static bool
same_info(const struct proxy_info *a, const struct proxy_info *b)
{
	return a->version == b->version && a->local == b->local && same_addr(&a->src, &b->src) &&
	       same_addr(&a->dst, &b->dst);
}

/* Parse a copy of exactly n bytes, so that a read past them is caught. */
static int
parse_copy(const uint8_t *p, size_t n, struct proxy_info *ret, const char **reterr)
{
	uint8_t *copy = malloc(n ? n : 1);
	int r;

	if (!copy)
		abort();
	memcpy(copy, p, n);
	r = proxy_parse(copy, n, ret, reterr);
	free(copy);
	return r;
}

/* The header that info came from, printed anew in the given version;
 * returns its length. */
static size_t
reprint(const struct proxy_info *info, unsigned version, uint8_t *buf, size_t size)
{
	static const uint8_t sig[12] = {
		'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n',
	};
	int family = info->src.sa.sa_family;

	if (version == 1) {
		char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
		const void *sa, *da;
		unsigned sp, dp;
		int len;

		if (info->local)
			return (size_t)snprintf((char *)buf, size, "PROXY UNKNOWN\r\n");
		sa = family == AF_INET ? (const void *)&info->src.in.sin_addr
				       : (const void *)&info->src.in6.sin6_addr;
		da = family == AF_INET ? (const void *)&info->dst.in.sin_addr
				       : (const void *)&info->dst.in6.sin6_addr;
		sp = ntohs(family == AF_INET ? info->src.in.sin_port : info->src.in6.sin6_port);
		dp = ntohs(family == AF_INET ? info->dst.in.sin_port : info->dst.in6.sin6_port);
		if (!inet_ntop(family, sa, s, sizeof(s)) || !inet_ntop(family, da, d, sizeof(d)))
			FAIL("inet_ntop failed on a parsed address");
		len = snprintf((char *)buf, size, "PROXY %s %s %s %u %u\r\n",
			       family == AF_INET ? "TCP4" : "TCP6", s, d, sp, dp);
		if (len < 0 || (size_t)len >= size)
			FAIL("reprinted v1 line does not fit");
		return (size_t)len;
	}

	memcpy(buf, sig, sizeof(sig));
	buf[12] = info->local ? 0x20 : 0x21;
	buf[14] = 0;
	if (info->local) {
		buf[13] = 0x00;
		buf[15] = 0;
		return 16;
	}
	if (family == AF_INET) {
		buf[13] = 0x11;
		buf[15] = 12;
		memcpy(buf + 16, &info->src.in.sin_addr, 4);
		memcpy(buf + 20, &info->dst.in.sin_addr, 4);
		memcpy(buf + 24, &info->src.in.sin_port, 2);
		memcpy(buf + 26, &info->dst.in.sin_port, 2);
		return 28;
	}
	buf[13] = 0x21;
	buf[15] = 36;
	memcpy(buf + 16, &info->src.in6.sin6_addr, 16);
	memcpy(buf + 32, &info->dst.in6.sin6_addr, 16);
	memcpy(buf + 48, &info->src.in6.sin6_port, 2);
	memcpy(buf + 50, &info->dst.in6.sin6_port, 2);
	return 52;
}

static void
check_header(const uint8_t *p, size_t n, int r, const struct proxy_info *info)
{
	uint8_t buf[PROXY_V1_MAX + 64];
	struct proxy_info back;
	int family = info->src.sa.sa_family;

	if ((size_t)r > n)
		FAIL("header of %d bytes in %zu", r, n);
	if (p[0] == 'P') {
		if (info->version != 1 || r > PROXY_V1_MAX || r < 2 || p[r - 2] != '\r' ||
		    p[r - 1] != '\n')
			FAIL("v1 header of %d bytes, version %u, not ended by CRLF", r,
			     info->version);
	} else {
		if (info->version != 2 || r > PROXY_V2_MAX || r < 16 ||
		    (size_t)r != 16 + ((size_t)p[14] << 8 | p[15]))
			FAIL("v2 header of %d bytes, version %u", r, info->version);
	}
	if (info->dst.sa.sa_family != family)
		FAIL("source family %d, destination family %d", family, info->dst.sa.sa_family);
	if (info->local != (family == AF_UNSPEC) ||
	    (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
		FAIL("local %d with family %d", info->local, family);

	for (unsigned v = 1; v <= 2; v++) {
		size_t len = reprint(info, v, buf, sizeof(buf));
		int r2;

		poison(&back);
		r2 = parse_copy(buf, len, &back, NULL);
		if (r2 != (int)len)
			FAIL("v%u reprint of %zu bytes parses to %d", v, len, r2);
		back.version = info->version;
		if (!same_info(info, &back))
			FAIL("v%u reprint parses to other addresses", v);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_info info, again;
	const char *why = NULL;
	size_t limit, first = 0;
	int r, r2;

	poison(&info);
	r = parse_copy(data, size, &info, &why);
	if (r < 0) {
		if (r != -EBADMSG && r != -EMSGSIZE)
			FAIL("error %d", r);
		if (!why)
			FAIL("error %d without a reason", r);
	}
	if (r <= 0 && !poisoned(&info))
		FAIL("result %d wrote *ret", r);
	if (r == 0 && size >= (size > 0 && data[0] == 'P' ? PROXY_V1_MAX : PROXY_V2_MAX))
		FAIL("asks for more with %zu bytes", size);

	poison(&again);
	r2 = parse_copy(data, size, &again, NULL);
	if (r2 != r)
		FAIL("parsed again: %d, then %d", r, r2);
	if (r > 0) {
		if (!same_info(&info, &again))
			FAIL("parsed again: other addresses");
		check_header(data, size, r, &info);
	}

	/* Zeros, then one value: the value of the whole input. Past the
	 * largest header nothing can change. */
	limit = MIN(size, (size_t)PROXY_HEADER_MAX + 1);
	for (size_t k = 0; k <= limit; k++) {
		poison(&again);
		r2 = proxy_parse(data, k, &again, NULL);
		if (r2 == 0 && first == 0)
			continue;
		if (first == 0)
			first = k;
		if (r2 != r)
			FAIL("the first %zu bytes give %d, all %zu give %d", k, r2, size, r);
		if (r > 0 && !same_info(&info, &again))
			FAIL("%zu bytes give other addresses than %zu", k, size);
	}
	if (r > 0 && first != (size_t)r)
		FAIL("header of %d bytes, but %zu bytes already give it", r, first);
	return 0;
}
