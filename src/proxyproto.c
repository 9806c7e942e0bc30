#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxyproto.h"
#include "util.h"

/* The v1 line is read by a small scanner over what has arrived. Each step
 * returns 1 when its part is complete, 0 when the bytes ran out while
 * everything so far could still be valid, or -EBADMSG with a reason. Since
 * a step looks only at bytes that are there, an error found in n bytes is
 * found the same in more, and a strict prefix of a valid line never fails. */
struct scan {
	const uint8_t *p;
	size_t n; /* the bytes we look at: never more than PROXY_V1_MAX */
	size_t pos;
	const char *why;
};

static int
bad(struct scan *s, const char *why)
{
	s->why = why;
	return -EBADMSG;
}

/* The literal lit, byte by byte. */
static int
expect(struct scan *s, const char *lit, const char *why)
{
	for (; *lit; lit++, s->pos++) {
		if (s->pos >= s->n)
			return 0;
		if (s->p[s->pos] != (uint8_t)*lit)
			return bad(s, why);
	}
	return 1;
}

/* A non-empty token of at most max bytes from set, ended by end (which is
 * consumed), into buf (max + 1 bytes, NUL-terminated). */
static int
token(struct scan *s, const char *set, size_t max, char end, char *buf, const char *why)
{
	size_t len = 0;

	for (;; s->pos++) {
		uint8_t c;

		if (s->pos >= s->n)
			return 0;
		c = s->p[s->pos];
		if (c == (uint8_t)end)
			break;
		if (c == '\0' || !strchr(set, c) || len == max)
			return bad(s, why);
		buf[len++] = (char)c;
	}
	if (len == 0)
		return bad(s, why);
	buf[len] = '\0';
	s->pos++;
	return 1;
}

#define TRY(expr)                      \
	do {                           \
		int _r_ = (expr);      \
		if (_r_ <= 0)          \
			return _r_;    \
	} while (0)

static int
address(struct scan *s, int family, void *addr, const char *why)
{
	char buf[INET6_ADDRSTRLEN];

	if (family == AF_INET)
		TRY(token(s, "0123456789.", INET_ADDRSTRLEN - 1, ' ', buf, why));
	else
		TRY(token(s, "0123456789abcdefABCDEF:.", INET6_ADDRSTRLEN - 1, ' ', buf, why));
	if (inet_pton(family, buf, addr) != 1)
		return bad(s, why);
	return 1;
}

/* Decimal 0-65535, no sign, no leading zero; into network order. */
static int
port(struct scan *s, char end, in_port_t *ret, const char *why)
{
	char buf[6];
	unsigned long v = 0;

	TRY(token(s, "0123456789", 5, end, buf, why));
	if (buf[0] == '0' && buf[1] != '\0')
		return bad(s, why);
	for (const char *c = buf; *c; c++)
		v = v * 10 + (unsigned long)(*c - '0');
	if (v > 65535)
		return bad(s, why);
	*ret = htons((uint16_t)v);
	return 1;
}

/* After "PROXY UNKNOWN": "\r\n", or a space and anything but CR and LF up
 * to "\r\n". */
static int
unknown_rest(struct scan *s)
{
	if (s->pos >= s->n)
		return 0;
	if (s->p[s->pos] == ' ') {
		for (s->pos++; s->pos < s->n; s->pos++)
			if (s->p[s->pos] == '\r' || s->p[s->pos] == '\n')
				break;
		if (s->pos >= s->n)
			return 0;
	}
	return expect(s, "\r\n", "v1 line not ended by CRLF");
}

/* "TCP4 ", "TCP6 " or "UNKNOWN": AF_INET, AF_INET6 or AF_UNSPEC. */
static int
protocol(struct scan *s, int *ret)
{
	static const struct {
		const char *lit;
		int family;
	} protos[] = {
		{ "TCP4 ", AF_INET },
		{ "TCP6 ", AF_INET6 },
		{ "UNKNOWN", AF_UNSPEC },
	};
	size_t start = s->pos;
	bool partial = false;

	for (size_t i = 0; i < ELEMENTSOF(protos); i++) {
		int r;

		s->pos = start;
		r = expect(s, protos[i].lit, NULL);
		if (r == 1) {
			*ret = protos[i].family;
			return 1;
		}
		partial |= r == 0;
	}
	return partial ? 0 : bad(s, "v1 protocol not TCP4, TCP6 or UNKNOWN");
}

static int
v1_body(struct scan *s, struct proxy_info *info)
{
	int family = AF_UNSPEC;

	TRY(expect(s, "PROXY ", "not a PROXY header"));
	TRY(protocol(s, &family));

	memset(info, 0, sizeof(*info));
	info->version = 1;
	if (family == AF_UNSPEC) {
		info->local = true;
		return unknown_rest(s);
	}

	if (family == AF_INET) {
		info->src.in.sin_family = info->dst.in.sin_family = AF_INET;
		TRY(address(s, AF_INET, &info->src.in.sin_addr, "v1 source address"));
		TRY(address(s, AF_INET, &info->dst.in.sin_addr, "v1 destination address"));
		TRY(port(s, ' ', &info->src.in.sin_port, "v1 source port"));
		TRY(port(s, '\r', &info->dst.in.sin_port, "v1 destination port"));
	} else {
		info->src.in6.sin6_family = info->dst.in6.sin6_family = AF_INET6;
		TRY(address(s, AF_INET6, &info->src.in6.sin6_addr, "v1 source address"));
		TRY(address(s, AF_INET6, &info->dst.in6.sin6_addr, "v1 destination address"));
		TRY(port(s, ' ', &info->src.in6.sin6_port, "v1 source port"));
		TRY(port(s, '\r', &info->dst.in6.sin6_port, "v1 destination port"));
	}
	return expect(s, "\n", "v1 line not ended by CRLF");
}

static int
parse_v1(const uint8_t *p, size_t n, struct proxy_info *ret, const char **why)
{
	struct scan s = { .p = p, .n = MIN(n, (size_t)PROXY_V1_MAX) };
	struct proxy_info info;
	int r;

	r = v1_body(&s, &info);
	if (r < 0) {
		*why = s.why;
		return r;
	}
	if (r == 0) {
		if (n < PROXY_V1_MAX)
			return 0;
		*why = "v1 line over 107 bytes";
		return -EMSGSIZE;
	}
	*ret = info;
	return (int)s.pos;
}

_Static_assert(PROXY_V1_MAX == 107, "the reasons name the limits");
_Static_assert(PROXY_V2_MAX == 1040, "the reasons name the limits");

static const uint8_t v2_signature[12] = {
	'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n',
};

enum {
	V2_LOCAL = 0x0,
	V2_PROXY = 0x1,
	V2_UNSPEC = 0x0,
	V2_INET = 0x1,
	V2_INET6 = 0x2,
	V2_UNIX = 0x3,
	V2_STREAM = 0x1,
	V2_DGRAM = 0x2,
};

static int
parse_v2(const uint8_t *p, size_t n, struct proxy_info *ret, const char **why)
{
	/* Address block sizes by family: UNSPEC, INET, INET6, UNIX. */
	static const size_t addr_len[] = { 0, 12, 36, 216 };
	struct proxy_info info;
	unsigned cmd, fam, transport;
	size_t len;

	if (memcmp(p, v2_signature, MIN(n, sizeof(v2_signature))) != 0) {
		*why = "not a PROXY header";
		return -EBADMSG;
	}
	if (n < 13)
		return 0;
	if (p[12] >> 4 != 2) {
		*why = "v2 version not 2";
		return -EBADMSG;
	}
	cmd = p[12] & 0x0f;
	if (cmd != V2_LOCAL && cmd != V2_PROXY) {
		*why = "v2 command not LOCAL or PROXY";
		return -EBADMSG;
	}
	if (n < 14)
		return 0;
	fam = p[13] >> 4;
	transport = p[13] & 0x0f;
	if (cmd == V2_PROXY && (fam >= ELEMENTSOF(addr_len) || transport > V2_DGRAM)) {
		*why = "v2 family or transport undefined";
		return -EBADMSG;
	}
	if (n < 16)
		return 0;
	len = (size_t)p[14] << 8 | p[15];
	if (len > PROXY_V2_LEN_MAX) {
		*why = "v2 header over 1040 bytes";
		return -EMSGSIZE;
	}
	if (cmd == V2_PROXY && len < addr_len[fam]) {
		*why = "v2 length too short for its addresses";
		return -EBADMSG;
	}
	if (n < 16 + len)
		return 0;

	memset(&info, 0, sizeof(info));
	info.version = 2;
	p += 16;
	if (cmd == V2_PROXY && fam == V2_INET && transport == V2_STREAM) {
		info.src.in.sin_family = info.dst.in.sin_family = AF_INET;
		memcpy(&info.src.in.sin_addr, p, 4);
		memcpy(&info.dst.in.sin_addr, p + 4, 4);
		memcpy(&info.src.in.sin_port, p + 8, 2);
		memcpy(&info.dst.in.sin_port, p + 10, 2);
	} else if (cmd == V2_PROXY && fam == V2_INET6 && transport == V2_STREAM) {
		info.src.in6.sin6_family = info.dst.in6.sin6_family = AF_INET6;
		memcpy(&info.src.in6.sin6_addr, p, 16);
		memcpy(&info.dst.in6.sin6_addr, p + 16, 16);
		memcpy(&info.src.in6.sin6_port, p + 32, 2);
		memcpy(&info.dst.in6.sin6_port, p + 34, 2);
	} else {
		info.local = true;
	}
	*ret = info;
	return (int)(16 + len);
}

int
proxy_parse(const uint8_t *p, size_t n, struct proxy_info *ret, const char **reterr)
{
	const char *why = NULL;
	int r;

	if (n == 0)
		return 0;
	if (p[0] == 'P')
		r = parse_v1(p, n, ret, &why);
	else if (p[0] == v2_signature[0])
		r = parse_v2(p, n, ret, &why);
	else {
		why = "not a PROXY header";
		r = -EBADMSG;
	}
	if (r < 0 && reterr)
		*reterr = why;
	return r;
}
