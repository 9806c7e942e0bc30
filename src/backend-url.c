#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend-url.h"
#include "util.h"

#define ROOM_MAX 32

/* A parse error: the reason, and -EINVAL. */
#define FAIL(why)                 \
	do {                      \
		*reterr = (why);  \
		return -EINVAL;   \
	} while (0)

/* Decode p[0..n) with %XX into out (BACKEND_CRED_MAX + 1 bytes). */
static int
decode_cred(const char *p, size_t n, char *out, const char *too_long, const char **reterr)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '%') {
			int hi, lo;

			if (n - i < 3 || (hi = hex_value(p[i + 1])) < 0 ||
			    (lo = hex_value(p[i + 2])) < 0)
				FAIL("bad percent escape in user or password");
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0)
				FAIL("user or password contains %00");
			i += 2;
		} else if (c <= ' ' || c == 0x7f) {
			FAIL("user or password must percent-encode spaces and control characters");
		}
		if (len == BACKEND_CRED_MAX)
			FAIL(too_long);
		out[len++] = (char)c;
	}
	out[len] = '\0';
	return 0;
}

static int
parse_creds(const char *p, size_t n, struct backend_url *u, const char **reterr)
{
	const char *colon = memchr(p, ':', n);
	size_t ulen;
	int r;

	if (!colon)
		FAIL("credentials must be USER:PASSWORD (USER may be empty)");
	ulen = (size_t)(colon - p);
	if (ulen + 1 == n)
		FAIL("empty password");
	r = decode_cred(p, ulen, u->user, "user too long (at most 255 bytes)", reterr);
	if (r < 0)
		return r;
	return decode_cred(colon + 1, n - ulen - 1, u->password,
			   "password too long (at most 255 bytes)", reterr);
}

static bool
host_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-';
}

/* A name or an IPv4 address, p[0..n). */
static int
parse_host_name(const char *p, size_t n, struct backend_url *u, const char **reterr)
{
	bool numeric = true;
	struct in_addr a4;

	if (n == 0)
		FAIL("host missing");
	if (n > BACKEND_HOST_MAX)
		FAIL("host name too long");
	for (size_t i = 0; i < n; i++) {
		if (!host_char(p[i]))
			FAIL("host must be a name of A-Z a-z 0-9 . - or an address");
		if (p[i] == '.' && (i == 0 || p[i - 1] == '.'))
			FAIL("host name has an empty label");
		if (p[i] != '.' && (p[i] < '0' || p[i] > '9'))
			numeric = false;
	}
	memcpy(u->host, p, n);
	u->host[n] = '\0';
	if (numeric && inet_pton(AF_INET, u->host, &a4) != 1)
		FAIL("bad IPv4 address");
	return 0;
}

/* "[ADDR]", p[0..n) with p[0] == '['. */
static int
parse_host_v6(const char *p, size_t n, struct backend_url *u, const char **reterr)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	size_t len;

	if (n < 2 || p[n - 1] != ']')
		FAIL("bad IPv6 address");
	len = n - 2;
	if (len == 0 || len >= sizeof(buf))
		FAIL("bad IPv6 address");
	memcpy(buf, p + 1, len);
	buf[len] = '\0';
	if (strchr(buf, ']') || inet_pton(AF_INET6, buf, &a6) != 1)
		FAIL("bad IPv6 address");
	memcpy(u->host, buf, len + 1);
	return 0;
}

/* Decimal digits only, at most max. -EINVAL: not a number, -ERANGE: over. */
static int
parse_num(const char *p, size_t n, unsigned long max, unsigned long *ret)
{
	unsigned long v = 0;

	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
		if (v > (max - (unsigned long)(p[i] - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	*ret = v;
	return 0;
}

static int
parse_db(const char *p, size_t n, struct backend_url *u, const char **reterr)
{
	unsigned long db;

	if (parse_num(p, n, BACKEND_DB_MAX, &db) < 0)
		FAIL("database must be 0-15");
	u->db = (unsigned)db;
	return 0;
}

/* HOST[:PORT][/DB], p[0..n). */
static int
parse_hostport(const char *p, size_t n, struct backend_url *u, const char **reterr)
{
	const char *end = p + n, *slash, *colon;
	unsigned long port = 0;
	int r;

	if (n > 0 && p[0] == '[') {
		const char *close = memchr(p, ']', n);

		if (!close)
			FAIL("bad IPv6 address");
		slash = memchr(close, '/', (size_t)(end - close));
		colon = memchr(close, ':', (size_t)((slash ? slash : end) - close));
	} else {
		slash = memchr(p, '/', n);
		colon = memchr(p, ':', (size_t)((slash ? slash : end) - p));
	}
	if (slash) {
		r = parse_db(slash + 1, (size_t)(end - slash - 1), u, reterr);
		if (r < 0)
			return r;
		end = slash;
	}
	if (colon) {
		r = parse_num(colon + 1, (size_t)(end - colon - 1), 65535, &port);
		if (r == -EINVAL)
			FAIL("port must be a number");
		if (r < 0 || port == 0)
			FAIL("port out of range");
		u->port = (uint16_t)port;
		end = colon;
	}
	if (end > p && p[0] == '[')
		return parse_host_v6(p, (size_t)(end - p), u, reterr);
	return parse_host_name(p, (size_t)(end - p), u, reterr);
}

static int
parse_redis(const char *s, struct backend_url *u, const char **reterr)
{
	const char *at = strrchr(s, '@');
	int r;

	u->kind = BACKEND_TCP;
	u->port = BACKEND_PORT_DEFAULT;
	if (at) {
		r = parse_creds(s, (size_t)(at - s), u, reterr);
		if (r < 0)
			return r;
		s = at + 1;
	}
	return parse_hostport(s, strlen(s), u, reterr);
}

static int
parse_unix(const char *s, struct backend_url *u, const char **reterr)
{
	const char *q = strchr(s, '?');
	size_t len = q ? (size_t)(q - s) : strlen(s);

	u->kind = BACKEND_UNIX;
	if (len == 0 || s[0] != '/')
		FAIL("unix socket path must be absolute");
	if (len >= BACKEND_PATH_MAX)
		FAIL("unix socket path too long (at most 107 bytes)");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < ' ' || s[i] == 0x7f)
			FAIL("unix socket path has a control character");
	memcpy(u->path, s, len);
	u->path[len] = '\0';
	if (!q)
		return 0;
	if (strncmp(q, "?db=", 4) != 0)
		FAIL("only ?db=N may follow the unix socket path");
	return parse_db(q + 4, strlen(q + 4), u, reterr);
}

int
backend_url_parse(const char *s, struct backend_url *ret, const char **reterr)
{
	struct backend_url u;
	const char *dummy;
	int r;

	if (!reterr)
		reterr = &dummy;
	memset(&u, 0, sizeof(u));
	if (!s)
		FAIL("backend missing");
	if (strncmp(s, "redis://", 8) == 0)
		r = parse_redis(s + 8, &u, reterr);
	else if (strncmp(s, "unix:", 5) == 0)
		r = parse_unix(s + 5, &u, reterr);
	else if (strncmp(s, "rediss://", 9) == 0)
		FAIL("rediss:// (TLS) is not supported");
	else
		FAIL("must be redis://[USER:PASSWORD@]HOST[:PORT][/DB] or unix:PATH[?db=N]");
	if (r == 0)
		*ret = u;
	/* The password, whole or in part, leaves no copy on the stack. */
	explicit_bzero(&u, sizeof(u));
	return r;
}

/* What a user may hold unencoded and still parse back the same. */
static bool
user_char_plain(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != '%' && c != ':' && c != '@' && c != '/' &&
	       c != '?' && c != '[' && c != ']';
}

const char *
backend_url_redacted(const struct backend_url *u, char *buf, size_t size)
{
	char user[3 * BACKEND_CRED_MAX + 1];
	size_t k = 0;
	bool v6 = strchr(u->host, ':') != NULL;

	if (size == 0)
		return buf;
	if (u->kind == BACKEND_UNIX) {
		snprintf(buf, size, "unix:%s?db=%u", u->path, u->db);
		return buf;
	}
	for (const char *p = u->user; *p && k + 3 < sizeof(user); p++) {
		unsigned char c = (unsigned char)*p;

		if (user_char_plain(c))
			user[k++] = (char)c;
		else
			k += (size_t)snprintf(user + k, sizeof(user) - k, "%%%02X", c);
	}
	user[k] = '\0';
	snprintf(buf, size, "redis://%s%s%s%s%s:%u/%u", user, u->user[0] || u->password[0] ? ":***@" : "",
		 v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
	return buf;
}

bool
backend_room_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > ROOM_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!host_char(s[i]) && s[i] != '_')
			return false;
	return true;
}
