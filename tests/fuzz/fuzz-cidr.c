/* libFuzzer target for cidr_parse() and cidr_to_string() (src/cidr.h).
 *
 * The input is one string (cut at the first NUL). When it parses:
 * - the result is IPv4 or IPv6 with a prefix length that fits, no host
 *   bit set past the prefix, and never an IPv4-mapped IPv6 prefix of 96
 *   bits or more (those are stored as IPv4);
 * - cidr_to_string() gives a string that parses back to the same value,
 *   and prints the same again;
 * - the network address matches its own prefix, as IPv4-mapped IPv6 too
 *   when IPv4, and an address with one bit flipped inside the prefix
 *   does not. */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "util.h"

#define FAIL(...)                                           \
	do {                                                \
		fprintf(stderr, "fuzz-cidr: " __VA_ARGS__); \
		fputc('\n', stderr);                        \
		abort();                                    \
	} while (0)

static union sockaddr_any
sockaddr_of(int family, const uint8_t *addr)
{
	union sockaddr_any sa;

	memset(&sa, 0, sizeof(sa));
	if (family == AF_INET) {
		sa.in.sin_family = AF_INET;
		sa.in.sin_port = htons(4242);
		memcpy(&sa.in.sin_addr, addr, 4);
	} else {
		sa.in6.sin6_family = AF_INET6;
		sa.in6.sin6_port = htons(4242);
		memcpy(&sa.in6.sin6_addr, addr, 16);
	}
	return sa;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t mapped_head[12] = { [10] = 0xff, [11] = 0xff };
	char *s = malloc(size + 1), buf[CIDR_STR_MAX], buf2[CIDR_STR_MAX];
	struct cidr c, back;
	union sockaddr_any sa;
	unsigned bits, bytes;
	int r;

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	memset(&c, 0xA5, sizeof(c));
	r = cidr_parse(s, &c);
	if (r != 0) {
		if (r != -EINVAL)
			FAIL("cidr_parse('%s') returned %d, not 0 or -EINVAL", s, r);
		free(s);
		return 0;
	}

	if (c.family != AF_INET && c.family != AF_INET6)
		FAIL("'%s': family %d", s, c.family);
	bits = c.family == AF_INET ? 32 : 128;
	bytes = bits / 8;
	if (c.prefixlen > bits)
		FAIL("'%s': prefix length %u for a %u-bit address", s, c.prefixlen, bits);
	for (unsigned i = 0; i < bits; i++)
		if (i >= c.prefixlen && (c.addr[i / 8] & (0x80 >> (i % 8))))
			FAIL("'%s': host bit %u is set past /%u", s, i, c.prefixlen);
	if (c.family == AF_INET6 && c.prefixlen >= 96 &&
	    memcmp(c.addr, mapped_head, sizeof(mapped_head)) == 0)
		FAIL("'%s': IPv4-mapped prefix kept as IPv6", s);

	cidr_to_string(&c, buf, sizeof(buf));
	if (strlen(buf) >= CIDR_STR_MAX - 1)
		FAIL("'%s': printed form '%s' fills CIDR_STR_MAX", s, buf);
	memset(&back, 0x5A, sizeof(back));
	if (cidr_parse(buf, &back) != 0)
		FAIL("'%s' printed as '%s', which does not parse", s, buf);
	if (!cidr_equal(&c, &back) || back.family != c.family || back.prefixlen != c.prefixlen ||
	    memcmp(back.addr, c.addr, bytes) != 0)
		FAIL("'%s' printed as '%s', which parses to another value", s, buf);
	cidr_to_string(&back, buf2, sizeof(buf2));
	if (strcmp(buf, buf2) != 0)
		FAIL("'%s': printed '%s', then '%s'", s, buf, buf2);

	sa = sockaddr_of(c.family, c.addr);
	if (!cidr_match(&c, &sa) || !cidr_list_match(&c, 1, &sa))
		FAIL("'%s': its own network address does not match", s);
	if (c.family == AF_INET) {
		uint8_t m[16];

		memcpy(m, mapped_head, sizeof(mapped_head));
		memcpy(m + 12, c.addr, 4);
		sa = sockaddr_of(AF_INET6, m);
		if (!cidr_match(&c, &sa))
			FAIL("'%s': the IPv4-mapped form of its address does not match", s);
	}
	if (c.prefixlen > 0) {
		uint8_t other[16];
		/* Some bit inside the prefix, chosen by the input. */
		unsigned bit = (unsigned)(size ? data[size - 1] : 0) % c.prefixlen;

		memcpy(other, c.addr, 16);
		other[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
		sa = sockaddr_of(c.family, other);
		if (cidr_match(&c, &sa))
			FAIL("'%s' matches an address that differs in prefix bit %u", s, bit);
	}
	free(s);
	return 0;
}
