#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include "cidr.h"
#include "util.h"

static unsigned
family_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

static bool
is_v4mapped(const uint8_t addr[16])
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	return memcmp(addr, mapped, sizeof(mapped)) == 0;
}

/* True when every bit of addr after the first prefixlen bits is zero. */
static bool
host_bits_clear(const uint8_t *addr, unsigned bytes, unsigned prefixlen)
{
	for (unsigned i = prefixlen / 8; i < bytes; i++) {
		uint8_t mask = 0xff;

		if (i == prefixlen / 8)
			mask = (uint8_t)(0xff >> (prefixlen % 8));
		if (addr[i] & mask)
			return false;
	}
	return true;
}

/* True when the first prefixlen bits of a and b are equal. */
static bool
prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefixlen)
{
	unsigned full = prefixlen / 8, rest = prefixlen % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

int
cidr_parse(const char *s, struct cidr *ret)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash;
	struct cidr c = { 0 };
	unsigned long len;
	size_t n;
	int r;

	if (!s)
		return -EINVAL;
	slash = strchr(s, '/');
	n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';

	if (inet_pton(AF_INET, host, c.addr) == 1)
		c.family = AF_INET;
	else if (inet_pton(AF_INET6, host, c.addr) == 1)
		c.family = AF_INET6;
	else
		return -EINVAL;

	len = family_bits(c.family);
	if (slash) {
		r = parse_uint(slash + 1, family_bits(c.family), &len);
		if (r < 0 || len > family_bits(c.family))
			return -EINVAL;
	}
	c.prefixlen = (unsigned)len;

	/* ::ffff:a.b.c.d/len is an IPv4 prefix in disguise; sources are compared
	 * as IPv4 (sockaddr_addr_bytes), so store it as one. */
	if (c.family == AF_INET6 && c.prefixlen >= 96 && is_v4mapped(c.addr)) {
		memmove(c.addr, c.addr + 12, 4);
		memset(c.addr + 4, 0, 12);
		c.family = AF_INET;
		c.prefixlen -= 96;
	}

	if (!host_bits_clear(c.addr, c.family == AF_INET ? 4 : 16, c.prefixlen))
		return -EINVAL;

	*ret = c;
	return 0;
}

const char *
cidr_to_string(const struct cidr *c, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(c->family, c->addr, a, sizeof(a))) {
		snprintf(buf, len, "?");
		return buf;
	}
	snprintf(buf, len, "%s/%u", a, c->prefixlen);
	return buf;
}

bool
cidr_match(const struct cidr *c, const union sockaddr_any *sa)
{
	uint8_t bytes[16];
	int family;

	family = sockaddr_addr_bytes(sa, bytes);
	if (family == 0 || family != c->family)
		return false;
	return prefix_equal(c->addr, bytes, c->prefixlen);
}

bool
cidr_list_match(const struct cidr *list, size_t n, const union sockaddr_any *sa)
{
	for (size_t i = 0; i < n; i++)
		if (cidr_match(&list[i], sa))
			return true;
	return false;
}

bool
cidr_equal(const struct cidr *a, const struct cidr *b)
{
	return a->family == b->family && a->prefixlen == b->prefixlen &&
	       memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}
