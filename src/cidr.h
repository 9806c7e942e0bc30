#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

union sockaddr_any;

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned prefixlen;
};

/* Longest cidr_to_string() output with its NUL: INET6_ADDRSTRLEN + "/128". */
#define CIDR_STR_MAX 50

/* Parse "a.b.c.d/len", "v6/len", or a bare address (full length). IPv4-mapped
 * IPv6 prefixes (::ffff:a.b.c.d/len with len >= 96) become IPv4. Host bits
 * beyond the prefix must be zero. 0 or -EINVAL. */
int cidr_parse(const char *s, struct cidr *ret);
const char *cidr_to_string(const struct cidr *c, char *buf, size_t len);
/* IPv4-mapped sources match IPv4 entries. */
bool cidr_match(const struct cidr *c, const union sockaddr_any *sa);
bool cidr_list_match(const struct cidr *list, size_t n, const union sockaddr_any *sa);
bool cidr_equal(const struct cidr *a, const struct cidr *b);
