#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "proxyproto.h"
#include "util.h"

/* What a parse left in *ret when it must not write: a byte pattern. */
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

/* proxy_parse() of the first n bytes, copied to a buffer of exactly n bytes
 * so that the sanitizers catch a read past them. */
static int
parse(const uint8_t *p, size_t n, struct proxy_info *ret, const char **reterr)
{
	uint8_t *copy = malloc(n ? n : 1);
	int r;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, p, n);
	r = proxy_parse(copy, n, ret, reterr);
	free(copy);
	return r;
}

/* A header is len bytes of h: every strict prefix asks for more without
 * touching *ret, the whole gives len, and so does the whole followed by the
 * client's first bytes, which are not consumed. Leaves the result in *ret. */
static void
check_complete(const uint8_t *h, size_t len, struct proxy_info *ret)
{
	static const char client[] = "GET / HTTP/1.0\r\n\r\n";
	uint8_t buf[PROXY_HEADER_MAX + sizeof(client)];
	struct proxy_info info, again;
	const char *why = NULL;

	ck_assert_uint_le(len, PROXY_HEADER_MAX);
	for (size_t k = 0; k < len; k++) {
		poison(&info);
		ck_assert_msg(parse(h, k, &info, &why) == 0, "prefix of %zu bytes of %zu", k, len);
		ck_assert(poisoned(&info));
	}
	poison(&info);
	ck_assert_int_eq(parse(h, len, &info, &why), (int)len);

	memcpy(buf, h, len);
	memcpy(buf + len, client, sizeof(client) - 1);
	poison(&again);
	ck_assert_int_eq(parse(buf, len + sizeof(client) - 1, &again, &why), (int)len);
	ck_assert_mem_eq(&info, &again, sizeof(info));
	*ret = info;
}

static const char *
addr_str(const union sockaddr_any *sa, char *buf)
{
	return sockaddr_to_string(sa, buf, SOCKADDR_STR_MAX);
}

/* Valid v1 lines. src and dst are sockaddr_to_string() forms; NULL for a
 * health check. */
static const struct {
	const char *line;
	int family;
	const char *src, *dst;
} v1_ok[] = {
	{ "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n", AF_INET, "192.0.2.1:56324",
	  "198.51.100.7:443" },
	{ "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", AF_INET, "0.0.0.0:0",
	  "255.255.255.255:65535" },
	{ "PROXY TCP4 10.0.0.1 10.0.0.2 1 10\r\n", AF_INET, "10.0.0.1:1", "10.0.0.2:10" },
	{ "PROXY TCP6 2001:db8::1 2001:db8::2 4242 7\r\n", AF_INET6, "[2001:db8::1]:4242",
	  "[2001:db8::2]:7" },
	{ "PROXY TCP6 ::1 ::1 65535 0\r\n", AF_INET6, "[::1]:65535", "[::1]:0" },
	{ "PROXY TCP6 2001:DB8:0:0:0:0:0:1 fe80::aBcD 80 81\r\n", AF_INET6, "[2001:db8::1]:80",
	  "[fe80::abcd]:81" },
	/* IPv4-mapped stays IPv6 (sockaddr_to_string() shows it as IPv4) */
	{ "PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 5 6\r\n", AF_INET6, "192.0.2.1:5",
	  "192.0.2.2:6" },
	/* the longest line the document names: 107 bytes */
	{ "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	  AF_INET6, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
	  "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535" },
	{ "PROXY UNKNOWN\r\n", AF_UNSPEC, NULL, NULL },
	{ "PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", AF_UNSPEC, NULL, NULL },
	{ "PROXY UNKNOWN whatever the balancer \t\x01\xff says\r\n", AF_UNSPEC, NULL, NULL },
	{ "PROXY UNKNOWN \r\n", AF_UNSPEC, NULL, NULL },
	{ "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	  AF_UNSPEC, NULL, NULL },
};

START_TEST(v1_parses_every_family)
{
	const char *line = v1_ok[_i].line;
	struct proxy_info info;
	char buf[SOCKADDR_STR_MAX];

	check_complete((const uint8_t *)line, strlen(line), &info);
	ck_assert_uint_eq(info.version, 1);
	if (!v1_ok[_i].src) {
		ck_assert(info.local);
		ck_assert_int_eq(info.src.sa.sa_family, AF_UNSPEC);
		ck_assert_int_eq(info.dst.sa.sa_family, AF_UNSPEC);
		return;
	}
	ck_assert(!info.local);
	ck_assert_int_eq(info.src.sa.sa_family, v1_ok[_i].family);
	ck_assert_int_eq(info.dst.sa.sa_family, v1_ok[_i].family);
	ck_assert_str_eq(addr_str(&info.src, buf), v1_ok[_i].src);
	ck_assert_str_eq(addr_str(&info.dst, buf), v1_ok[_i].dst);
}
END_TEST

/* Malformed v1 lines: each fails with -EBADMSG and a reason, leaves *ret
 * alone, and fails the same with more bytes after it. */
static const char *const v1_bad[] = {
	"PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n",
	"PROXY TCP4 192.0.2.1  192.0.2.2 1 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2  1 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1  2\r\n",
	"PROXY  TCP4 192.0.2.1 192.0.2.2 1 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\rx",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2\r\n",
	"PROXY TCP4\r\n",
	"PROXY TCP4 \r\n",
	"PROXY\r\n",
	"PROXY \r\n",
	/* addresses */
	"PROXY TCP4 256.0.2.1 192.0.2.2 1 2\r\n",
	"PROXY TCP4 192.0.2 192.0.2.2 1 2\r\n",
	"PROXY TCP4 192.0.2.01 192.0.2.2 1 2\r\n",
	"PROXY TCP4 192.0.2.1.5 192.0.2.2 1 2\r\n",
	"PROXY TCP4 1234567890123456 192.0.2.2 1 2\r\n",
	"PROXY TCP4 localhost 192.0.2.2 1 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.x 1 2\r\n",
	"PROXY TCP6 2001:db8::1 2001:db8:::2 1 2\r\n",
	"PROXY TCP6 2001:db8::g 2001:db8::2 1 2\r\n",
	"PROXY TCP6 fe80::1%eth0 2001:db8::2 1 2\r\n",
	"PROXY TCP6 [2001:db8::1] 2001:db8::2 1 2\r\n",
	/* family mismatch */
	"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n",
	"PROXY TCP4 192.0.2.1 ::1 1 2\r\n",
	"PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n",
	"PROXY TCP6 ::1 192.0.2.2 1 2\r\n",
	/* ports */
	"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 65536\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 99999 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 100000 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 00\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 +1 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 -1 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 0x10 2\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 2x\r\n",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 \r\n",
	/* protocol */
	"PROXY TCP5 192.0.2.1 192.0.2.2 1 2\r\n",
	"PROXY tcp4 192.0.2.1 192.0.2.2 1 2\r\n",
	"PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n",
	"PROXY UNKNOWNX\r\n",
	"PROXY UNKNOWN\n",
	"PROXY UNKNOWN x\ny\r\n",
	"PROXY UNKNOWN x\rn",
	"PROXY TCP4\t192.0.2.1 192.0.2.2 1 2\r\n",
	/* not PROXY */
	"PROXY\t",
	"proxy TCP4 192.0.2.1 192.0.2.2 1 2\r\n",
	"PROXYTCP4 192.0.2.1 192.0.2.2 1 2\r\n",
	"GET / HTTP/1.1\r\n",
	"\0PROXY",
	" PROXY UNKNOWN\r\n",
	/* fail before the line ends: a token too long or a byte it cannot hold */
	"PROXY TCP4 1234567890123456",
	"PROXY TCP4 192.0.2.1x",
	"PROXY TCP6 0000000000000000000000000000000000000000000000",
	"PROXY TCP6 ::1 ::1 123456",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 ",
	"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\r",
	"PROXY X",
	"PROXY TCP7",
	"PROXY UNKNOWN\n",
	"PROXY UNKNOWN x\n",
	"PR0",
};

static void
check_fails(const uint8_t *h, size_t len, int err)
{
	uint8_t buf[PROXY_HEADER_MAX + 64];
	struct proxy_info info;
	const char *why = NULL;

	poison(&info);
	ck_assert_int_eq(parse(h, len, &info, &why), err);
	ck_assert_ptr_nonnull(why);
	ck_assert(poisoned(&info));
	ck_assert_uint_le(len, PROXY_HEADER_MAX);
	memcpy(buf, h, len);
	memset(buf + len, '\n', 64);
	why = NULL;
	ck_assert_int_eq(parse(buf, len + 64, &info, &why), err);
	ck_assert_ptr_nonnull(why);
	ck_assert(poisoned(&info));
	/* reterr may be NULL */
	ck_assert_int_eq(parse(h, len, &info, NULL), err);
}

START_TEST(v1_rejects_malformed)
{
	const char *line = v1_bad[_i];
	/* a string with a NUL in it: the table's one is 6 bytes */
	size_t len = line[0] == '\0' ? 6 : strlen(line);

	check_fails((const uint8_t *)line, len, -EBADMSG);
}
END_TEST

/* A wrong byte anywhere in "PROXY " fails as soon as it arrives. */
START_TEST(v1_wrong_signature_byte_fails_at_once)
{
	static const char line[] = "PROXY UNKNOWN\r\n";

	for (size_t v = 0; v < 256; v++) {
		uint8_t buf[sizeof(line)];

		if (v == (uint8_t)line[_i])
			continue;
		memcpy(buf, line, sizeof(line));
		buf[_i] = (uint8_t)v;
		/* "\r" at the start is v2's signature, which fails a byte later */
		if (_i == 0 && v == '\r') {
			ck_assert_int_eq(parse(buf, 1, &(struct proxy_info){ 0 }, NULL), 0);
			ck_assert_int_eq(parse(buf, 2, &(struct proxy_info){ 0 }, NULL), -EBADMSG);
			continue;
		}
		ck_assert_int_eq(parse(buf, (size_t)_i + 1, &(struct proxy_info){ 0 }, NULL),
				 -EBADMSG);
	}
}
END_TEST

START_TEST(v1_longer_than_107_bytes_is_too_long)
{
	struct proxy_info info;
	const char *why = NULL;
	char buf[300];

	/* 107 bytes with no CRLF yet: too long, not "read more"; 106: more */
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "PROXY UNKNOWN ", 14);
	ck_assert_int_eq(parse((uint8_t *)buf, 106, &info, &why), 0);
	for (size_t n = PROXY_V1_MAX; n <= sizeof(buf); n++) {
		why = NULL;
		ck_assert_int_eq(parse((uint8_t *)buf, n, &info, &why), -EMSGSIZE);
		ck_assert_ptr_nonnull(why);
	}

	/* the CRLF ending at byte 107 is fine, at 108 too late */
	memcpy(buf + 105, "\r\n", 2);
	check_complete((uint8_t *)buf, 107, &info);
	ck_assert(info.local);
	memcpy(buf + 105, "x\r\n", 3);
	ck_assert_int_eq(parse((uint8_t *)buf, 108, &info, NULL), -EMSGSIZE);
	ck_assert_int_eq(parse((uint8_t *)buf, 107, &info, NULL), -EMSGSIZE);
	ck_assert_int_eq(parse((uint8_t *)buf, 106, &info, NULL), 0);
}
END_TEST

/* TCP6 addresses inet_pton() takes can make a line over 107 bytes. */
START_TEST(v1_valid_fields_over_107_bytes_are_too_long)
{
	static const char line[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
				   "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 1 2\r\n";
	struct proxy_info info;

	ck_assert_uint_gt(sizeof(line) - 1, PROXY_V1_MAX);
	for (size_t n = 1; n < PROXY_V1_MAX; n++)
		ck_assert_int_eq(parse((const uint8_t *)line, n, &info, NULL), 0);
	for (size_t n = PROXY_V1_MAX; n <= sizeof(line) - 1; n++)
		ck_assert_int_eq(parse((const uint8_t *)line, n, &info, NULL), -EMSGSIZE);
}
END_TEST

START_TEST(parse_of_nothing_asks_for_more)
{
	struct proxy_info info;

	poison(&info);
	ck_assert_int_eq(proxy_parse((const uint8_t *)"", 0, &info, NULL), 0);
	ck_assert(poisoned(&info));
}
END_TEST

/* v2 */

static const uint8_t sig[12] = {
	'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n',
};

/* A v2 header: signature, ver_cmd, fam, a length field of len, then
 * body_len bytes: the size bytes of body, then zeros. Returns its size,
 * 16 + body_len. */
static size_t
v2(uint8_t *buf, uint8_t ver_cmd, uint8_t fam, size_t len, size_t body_len,
   const uint8_t *body, size_t size)
{
	memcpy(buf, sig, 12);
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = (uint8_t)(len >> 8);
	buf[15] = (uint8_t)len;
	memset(buf + 16, 0, body_len);
	if (body)
		memcpy(buf + 16, body, MIN(body_len, size));
	return 16 + body_len;
}

static const uint8_t inet_body[] = {
	192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb, /* 56324, 443 */
	/* a TLV: PP2_TYPE_AUTHORITY "example.com" */
	0x02, 0x00, 0x0b, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
};

static const uint8_t inet6_body[] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
	0x10, 0x92, 0x00, 0x07, /* 4242, 7 */
	/* PP2_TYPE_NOOP, 3 bytes */
	0x04, 0x00, 0x03, 0, 0, 0,
};

static const struct {
	const char *name;
	uint8_t ver_cmd, fam;
	size_t len;
	const uint8_t *body;
	size_t size;
	const char *src, *dst; /* NULL: local */
} v2_ok[] = {
	{ "inet", 0x21, 0x11, 12, inet_body, sizeof(inet_body),
	  "192.0.2.1:56324", "198.51.100.7:443" },
	{ "inet tlv", 0x21, 0x11, sizeof(inet_body), inet_body, sizeof(inet_body),
	  "192.0.2.1:56324", "198.51.100.7:443" },
	{ "inet6", 0x21, 0x21, 36, inet6_body, sizeof(inet6_body),
	  "[2001:db8::1]:4242", "[2001:db8::2]:7" },
	{ "inet6 tlv", 0x21, 0x21, sizeof(inet6_body), inet6_body, sizeof(inet6_body),
	  "[2001:db8::1]:4242", "[2001:db8::2]:7" },
	{ "inet longest", 0x21, 0x11, PROXY_V2_LEN_MAX, inet_body, sizeof(inet_body),
	  "192.0.2.1:56324", "198.51.100.7:443" },
	{ "local", 0x20, 0x00, 0, NULL, 0, NULL, NULL },
	{ "local inet", 0x20, 0x11, 12, inet_body, sizeof(inet_body), NULL, NULL },
	{ "local short", 0x20, 0x21, 12, inet_body, sizeof(inet_body), NULL, NULL },
	{ "local undefined family", 0x20, 0xff, 3, NULL, 0, NULL, NULL },
	{ "local longest", 0x20, 0x00, PROXY_V2_LEN_MAX, NULL, 0, NULL, NULL },
	{ "unspec", 0x21, 0x00, 0, NULL, 0, NULL, NULL },
	{ "unspec tlv", 0x21, 0x00, 7, NULL, 0, NULL, NULL },
	{ "inet unspec transport", 0x21, 0x10, 12, inet_body, sizeof(inet_body), NULL, NULL },
	{ "inet dgram", 0x21, 0x12, 12, inet_body, sizeof(inet_body), NULL, NULL },
	{ "inet6 dgram", 0x21, 0x22, 36, inet6_body, sizeof(inet6_body), NULL, NULL },
	{ "unix stream", 0x21, 0x31, 216, NULL, 0, NULL, NULL },
	{ "unix dgram", 0x21, 0x32, 230, NULL, 0, NULL, NULL },
};

START_TEST(v2_parses_every_family)
{
	uint8_t buf[PROXY_V2_MAX];
	struct proxy_info info;
	char s[SOCKADDR_STR_MAX];
	size_t n;

	n = v2(buf, v2_ok[_i].ver_cmd, v2_ok[_i].fam, v2_ok[_i].len, v2_ok[_i].len,
	       v2_ok[_i].body, v2_ok[_i].size);
	check_complete(buf, n, &info);
	ck_assert_uint_eq(info.version, 2);
	if (!v2_ok[_i].src) {
		ck_assert_msg(info.local, "%s", v2_ok[_i].name);
		ck_assert_int_eq(info.src.sa.sa_family, AF_UNSPEC);
		ck_assert_int_eq(info.dst.sa.sa_family, AF_UNSPEC);
		return;
	}
	ck_assert_msg(!info.local, "%s", v2_ok[_i].name);
	ck_assert_str_eq(addr_str(&info.src, s), v2_ok[_i].src);
	ck_assert_str_eq(addr_str(&info.dst, s), v2_ok[_i].dst);
	ck_assert_int_eq(info.src.sa.sa_family, v2_ok[_i].fam == 0x11 ? AF_INET : AF_INET6);
	ck_assert_int_eq(info.dst.sa.sa_family, info.src.sa.sa_family);
}
END_TEST

/* Bad v2 headers: the fixed 16 bytes (and body bytes as the length says,
 * up to the maximum) fail with err. */
static const struct {
	const char *name;
	uint8_t ver_cmd, fam;
	size_t len;
	int err;
} v2_bad[] = {
	{ "version 0", 0x01, 0x11, 12, -EBADMSG },
	{ "version 1", 0x11, 0x11, 12, -EBADMSG },
	{ "version 3", 0x31, 0x11, 12, -EBADMSG },
	{ "version 15", 0xf1, 0x11, 12, -EBADMSG },
	{ "command 2", 0x22, 0x11, 12, -EBADMSG },
	{ "command 15", 0x2f, 0x11, 12, -EBADMSG },
	{ "inet length lies", 0x21, 0x11, 11, -EBADMSG },
	{ "inet length zero", 0x21, 0x11, 0, -EBADMSG },
	{ "inet6 length lies", 0x21, 0x21, 35, -EBADMSG },
	{ "inet6 length of inet", 0x21, 0x21, 12, -EBADMSG },
	{ "inet6 dgram length lies", 0x21, 0x22, 35, -EBADMSG },
	{ "unix length lies", 0x21, 0x31, 215, -EBADMSG },
	{ "family 4", 0x21, 0x41, 36, -EBADMSG },
	{ "family 15", 0x21, 0xf1, 36, -EBADMSG },
	{ "transport 3", 0x21, 0x13, 12, -EBADMSG },
	{ "transport 15", 0x21, 0x1f, 12, -EBADMSG },
	{ "over the maximum", 0x21, 0x11, PROXY_V2_LEN_MAX + 1, -EMSGSIZE },
	{ "local over the maximum", 0x20, 0x00, PROXY_V2_LEN_MAX + 1, -EMSGSIZE },
	{ "length 65535", 0x21, 0x11, 65535, -EMSGSIZE },
};

START_TEST(v2_rejects_malformed)
{
	uint8_t buf[PROXY_V2_MAX];
	size_t n;

	/* the 16 bytes alone decide */
	n = v2(buf, v2_bad[_i].ver_cmd, v2_bad[_i].fam, v2_bad[_i].len, 0, NULL, 0);
	check_fails(buf, n, v2_bad[_i].err);
	n = v2(buf, v2_bad[_i].ver_cmd, v2_bad[_i].fam, v2_bad[_i].len,
	       MIN(v2_bad[_i].len, (size_t)PROXY_V2_LEN_MAX), inet6_body, sizeof(inet6_body));
	check_fails(buf, n, v2_bad[_i].err);
}
END_TEST

/* The version and the command fail with byte 13, an undefined family with
 * byte 14, without waiting for the length. */
START_TEST(v2_bad_fixed_byte_fails_at_once)
{
	uint8_t buf[16];
	struct proxy_info info;

	v2(buf, 0x31, 0x11, 12, 0, NULL, 0);
	ck_assert_int_eq(parse(buf, 13, &info, NULL), -EBADMSG);
	v2(buf, 0x23, 0x11, 12, 0, NULL, 0);
	ck_assert_int_eq(parse(buf, 13, &info, NULL), -EBADMSG);
	v2(buf, 0x21, 0x51, 12, 0, NULL, 0);
	ck_assert_int_eq(parse(buf, 13, &info, NULL), 0);
	ck_assert_int_eq(parse(buf, 14, &info, NULL), -EBADMSG);
	v2(buf, 0x21, 0x11, 11, 0, NULL, 0);
	ck_assert_int_eq(parse(buf, 15, &info, NULL), 0);
	ck_assert_int_eq(parse(buf, 16, &info, NULL), -EBADMSG);
	v2(buf, 0x21, 0x11, PROXY_V2_LEN_MAX + 1, 0, NULL, 0);
	ck_assert_int_eq(parse(buf, 15, &info, NULL), 0);
	ck_assert_int_eq(parse(buf, 16, &info, NULL), -EMSGSIZE);
}
END_TEST

/* A wrong byte at each position of the signature fails as soon as it is
 * there, whatever the byte (except 'P' at the start: that is v1's). */
START_TEST(v2_wrong_signature_byte_fails_at_once)
{
	struct proxy_info info;
	uint8_t buf[16];

	for (unsigned v = 0; v < 256; v++) {
		if (v == sig[_i])
			continue;
		v2(buf, 0x21, 0x11, 12, 0, NULL, 0);
		buf[_i] = (uint8_t)v;
		if (_i == 0 && v == 'P') {
			ck_assert_int_eq(parse(buf, 1, &info, NULL), 0);
			continue;
		}
		ck_assert_int_eq(parse(buf, (size_t)_i + 1, &info, NULL), -EBADMSG);
		check_fails(buf, 16, -EBADMSG);
	}
}
END_TEST

/* Whatever the bytes, NEED_MORE stops at the largest header. */
START_TEST(v2_never_asks_for_more_past_the_maximum)
{
	static uint8_t buf[PROXY_V2_MAX + 16];
	struct proxy_info info;

	for (size_t len = 0; len <= 0xffff; len += 97) {
		v2(buf, 0x21, 0x00, len, 0, NULL, 0);
		memset(buf + 16, 0x5a, sizeof(buf) - 16);
		ck_assert_int_ne(parse(buf, PROXY_V2_MAX, &info, NULL), 0);
	}
}
END_TEST

static Suite *
proxyproto_suite(void)
{
	Suite *s = suite_create("proxyproto");
	TCase *tc;

	tc = tcase_create("v1");
	tcase_add_loop_test(tc, v1_parses_every_family, 0, (int)ELEMENTSOF(v1_ok));
	tcase_add_loop_test(tc, v1_rejects_malformed, 0, (int)ELEMENTSOF(v1_bad));
	tcase_add_loop_test(tc, v1_wrong_signature_byte_fails_at_once, 0, 6);
	tcase_add_test(tc, v1_longer_than_107_bytes_is_too_long);
	tcase_add_test(tc, v1_valid_fields_over_107_bytes_are_too_long);
	suite_add_tcase(s, tc);

	tc = tcase_create("v2");
	tcase_add_loop_test(tc, v2_parses_every_family, 0, (int)ELEMENTSOF(v2_ok));
	tcase_add_loop_test(tc, v2_rejects_malformed, 0, (int)ELEMENTSOF(v2_bad));
	tcase_add_test(tc, v2_bad_fixed_byte_fails_at_once);
	tcase_add_loop_test(tc, v2_wrong_signature_byte_fails_at_once, 0, (int)sizeof(sig));
	tcase_add_test(tc, v2_never_asks_for_more_past_the_maximum);
	suite_add_tcase(s, tc);

	tc = tcase_create("detect");
	tcase_add_test(tc, parse_of_nothing_asks_for_more);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proxyproto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
