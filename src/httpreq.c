#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "httpreq.h"

/* What the header field lines said, as far as a server cares. */
struct fields {
	bool host;
	bool content_length;
	bool close;
	bool keep_alive;
};

/* ASCII only: no locale. */
static bool
is_alpha(uint8_t c)
{
	return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static bool
is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool
is_hex(uint8_t c)
{
	return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

static uint8_t
lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c | 0x20) : c;
}

static bool
in_set(uint8_t c, const char *set)
{
	return c != 0 && strchr(set, c) != NULL;
}

/* RFC 9110 tchar. */
static bool
is_tchar(uint8_t c)
{
	return is_alpha(c) || is_digit(c) || in_set(c, "!#$%&'*+-.^_`|~");
}

/* RFC 3986 unreserved and sub-delims. */
static bool
is_plain(uint8_t c)
{
	return is_alpha(c) || is_digit(c) || in_set(c, "-._~!$&'()*+,;=");
}

/* A byte that may appear somewhere in a request-target; the structure is
 * checked once the target is whole. */
static bool
is_target_char(uint8_t c)
{
	return is_plain(c) || in_set(c, ":@/?%[]");
}

/* A byte of a field value: VCHAR, obs-text, SP, HTAB. */
static bool
is_field_char(uint8_t c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool
is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static bool
equal_nocase(const uint8_t *s, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	if (len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(s[i]) != (uint8_t)lit[i])
			return false;
	return true;
}

/* A %-escape at s[i] has two hex digits after it. */
static bool
escape_ok(const uint8_t *s, size_t len, size_t i)
{
	return i + 2 < len && is_hex(s[i + 1]) && is_hex(s[i + 2]);
}

/* An RFC 3986 authority without userinfo: reg-name, IP literal or IPv4
 * address and an optional port, by character set only. Also the Host
 * field's value. */
static bool
authority_ok(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && !escape_ok(s, len, i))
			return false;
		if (!is_plain(s[i]) && !in_set(s[i], "%:[]"))
			return false;
	}
	return true;
}

/* path-abempty [ "?" query ], the path being the bytes before the '?'.
 * Sets *ret_metrics when the path is /metrics. */
static bool
path_query_ok(const uint8_t *s, size_t len, bool *ret_metrics)
{
	size_t path_len = len;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '?' && path_len == len)
			path_len = i;
		if (s[i] == '%' && !escape_ok(s, len, i))
			return false;
		if (!is_plain(s[i]) && !in_set(s[i], "%:@/?"))
			return false;
	}
	*ret_metrics = path_len == 8 && memcmp(s, "/metrics", 8) == 0;
	return true;
}

/* origin-form or absolute-form (RFC 9112 section 3.2). */
static bool
target_ok(const uint8_t *s, size_t len, bool *ret_metrics)
{
	size_t i, a;

	if (len > 0 && s[0] == '/')
		return path_query_ok(s, len, ret_metrics);

	if (len >= 7 && equal_nocase(s, 7, "http://"))
		a = 7;
	else if (len >= 8 && equal_nocase(s, 8, "https://"))
		a = 8;
	else
		return false;
	for (i = a; i < len && s[i] != '/' && s[i] != '?'; i++)
		;
	if (i == a || !authority_ok(s + a, i - a))
		return false;
	return path_query_ok(s + i, len - i, ret_metrics);
}

/* A request line, without its terminator; whole says whether the
 * terminator followed. HTTPREQ_REQUEST when it is fine so far. */
static enum httpreq_result
request_line(const uint8_t *s, size_t len, bool whole, struct httpreq *req)
{
	static const char version[] = "HTTP/D.D";
	size_t i = 0, t;
	bool metrics;

	while (i < len && is_tchar(s[i]))
		i++;
	if (i == len)
		return whole ? HTTPREQ_BAD_REQUEST : HTTPREQ_MORE;
	if (i == 0 || s[i] != ' ')
		return HTTPREQ_BAD_REQUEST;
	if (i == 3 && memcmp(s, "GET", 3) == 0)
		req->method = HTTPREQ_GET;
	else if (i == 4 && memcmp(s, "HEAD", 4) == 0)
		req->method = HTTPREQ_HEAD;
	else
		req->method = HTTPREQ_OTHER;

	t = ++i;
	while (i < len && is_target_char(s[i]))
		i++;
	if (i == len)
		return whole ? HTTPREQ_BAD_REQUEST : HTTPREQ_MORE;
	if (i == t || s[i] != ' ' || !target_ok(s + t, i - t, &metrics))
		return HTTPREQ_BAD_REQUEST;
	req->metrics = metrics;

	i++;
	for (size_t k = 0; k < 8 && i + k < len; k++) {
		uint8_t c = s[i + k];

		if (version[k] == 'D' ? !is_digit(c) : c != (uint8_t)version[k])
			return HTTPREQ_BAD_REQUEST;
	}
	if (len > i + 8 || (whole && len < i + 8))
		return HTTPREQ_BAD_REQUEST;
	if (!whole)
		return HTTPREQ_MORE;
	if (s[i + 5] != '1' || s[i + 7] > '1')
		return HTTPREQ_BAD_VERSION;
	req->version_minor = (unsigned)(s[i + 7] - '0');
	return HTTPREQ_REQUEST;
}

static bool
connection_ok(const uint8_t *s, size_t len, struct fields *f)
{
	size_t i = 0;

	while (i <= len) {
		size_t a, b;

		while (i < len && is_ows(s[i]))
			i++;
		a = i;
		while (i < len && is_tchar(s[i]))
			i++;
		b = i;
		while (i < len && is_ows(s[i]))
			i++;
		if (i < len && s[i] != ',')
			return false;
		if (equal_nocase(s + a, b - a, "close"))
			f->close = true;
		else if (equal_nocase(s + a, b - a, "keep-alive"))
			f->keep_alive = true;
		i++;
	}
	return true;
}

/* A field line's name and its value, OWS trimmed. */
static enum httpreq_result
field(const uint8_t *name, size_t name_len, const uint8_t *v, size_t len, struct fields *f)
{
	if (equal_nocase(name, name_len, "host")) {
		if (f->host || !authority_ok(v, len))
			return HTTPREQ_BAD_REQUEST;
		f->host = true;
	} else if (equal_nocase(name, name_len, "content-length")) {
		/* Only "no body" is accepted: digits, all zero. */
		if (f->content_length || len == 0)
			return HTTPREQ_BAD_REQUEST;
		for (size_t i = 0; i < len; i++)
			if (v[i] != '0')
				return HTTPREQ_BAD_REQUEST;
		f->content_length = true;
	} else if (equal_nocase(name, name_len, "transfer-encoding")) {
		return HTTPREQ_BAD_REQUEST;
	} else if (equal_nocase(name, name_len, "connection")) {
		if (!connection_ok(v, len, f))
			return HTTPREQ_BAD_REQUEST;
	}
	return HTTPREQ_REQUEST;
}

/* A field line, without its terminator; whole says whether the terminator
 * followed. HTTPREQ_REQUEST when it is fine so far. */
static enum httpreq_result
field_line(const uint8_t *s, size_t len, bool whole, struct fields *f)
{
	size_t i = 0, v, e;

	/* A line that starts with SP or HTAB (obs-fold) stops here too. */
	while (i < len && is_tchar(s[i]))
		i++;
	if (i == len)
		return whole ? HTTPREQ_BAD_REQUEST : HTTPREQ_MORE;
	if (i == 0 || s[i] != ':')
		return HTTPREQ_BAD_REQUEST;
	for (size_t k = i + 1; k < len; k++)
		if (!is_field_char(s[k]))
			return HTTPREQ_BAD_REQUEST;
	if (!whole)
		return HTTPREQ_MORE;
	for (v = i + 1; v < len && is_ows(s[v]); v++)
		;
	for (e = len; e > v && is_ows(s[e - 1]); e--)
		;
	return field(s, i, s + v, e - v, f);
}

/* The head within the first end bytes of b; HTTPREQ_MORE when it goes on
 * past them. */
static enum httpreq_result
parse(const uint8_t *b, size_t end, struct httpreq *req)
{
	struct fields f = { 0 };
	bool started = false;
	size_t i = 0;

	for (;;) {
		const uint8_t *lf;
		size_t next, eol;
		enum httpreq_result r;

		if (i == end)
			return HTTPREQ_MORE;
		lf = memchr(b + i, '\n', end - i);
		next = lf ? (size_t)(lf - b) + 1 : end;
		eol = lf ? next - 1 : end;
		/* A CR right before the LF (or before the end of what came
		 * so far, where the LF may follow) is part of the
		 * terminator; any other CR is a control byte the line
		 * parsers refuse. */
		if (eol > i && b[eol - 1] == '\r')
			eol--;
		if (eol == i) {
			if (!lf)
				return HTTPREQ_MORE;
			i = next;
			if (!started)
				continue; /* an empty line before the request line */
			break;
		}
		if (!started)
			r = request_line(b + i, eol - i, lf != NULL, req);
		else
			r = field_line(b + i, eol - i, lf != NULL, &f);
		if (r != HTTPREQ_REQUEST)
			return r;
		started = true;
		i = next;
	}

	if (req->version_minor == 1 && !f.host)
		return HTTPREQ_BAD_REQUEST;
	req->head_len = i;
	if (req->version_minor == 1)
		req->keep_alive = !f.close;
	else
		req->keep_alive = f.keep_alive && !f.close;
	if (!req->metrics)
		req->status = 404;
	else if (req->method == HTTPREQ_OTHER)
		req->status = 405;
	else
		req->status = 200;
	return HTTPREQ_REQUEST;
}

enum httpreq_result
httpreq_parse(const void *buf, size_t n, struct httpreq *ret)
{
	struct httpreq req = { 0 };
	enum httpreq_result r;

	r = parse(buf, n < HTTPREQ_HEAD_MAX ? n : HTTPREQ_HEAD_MAX, &req);
	if (r == HTTPREQ_MORE && n >= HTTPREQ_HEAD_MAX)
		return HTTPREQ_BAD_REQUEST;
	if (r == HTTPREQ_REQUEST)
		*ret = req;
	return r;
}

const char *
httpreq_method_to_string(enum httpreq_method m)
{
	static const char *const names[_HTTPREQ_METHOD_MAX] = {
		[HTTPREQ_GET] = "GET",
		[HTTPREQ_HEAD] = "HEAD",
		[HTTPREQ_OTHER] = "other",
	};

	return (unsigned)m < _HTTPREQ_METHOD_MAX ? names[m] : NULL;
}

const char *
httpreq_result_to_string(enum httpreq_result r)
{
	static const char *const names[_HTTPREQ_RESULT_MAX] = {
		[HTTPREQ_MORE] = "more",
		[HTTPREQ_REQUEST] = "request",
		[HTTPREQ_BAD_REQUEST] = "bad request",
		[HTTPREQ_BAD_VERSION] = "bad version",
	};

	return (unsigned)r < _HTTPREQ_RESULT_MAX ? names[r] : NULL;
}

const char *
httpreq_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return NULL;
	}
}

int
httpreq_format_head(char *buf, size_t size, int status, size_t content_length,
		    bool keep_alive, time_t now)
{
	/* RFC 9110 IMF-fixdate, in English whatever the locale. */
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	const char *reason = httpreq_reason(status);
	struct tm tm;
	int n;

	if (!reason || !gmtime_r(&now, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
		return -EINVAL;
	n = snprintf(buf, size,
		     "HTTP/1.1 %d %s\r\n"
		     "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n"
		     "Content-Type: %s\r\n"
		     "Content-Length: %zu\r\n"
		     "%s"
		     "Connection: %s\r\n"
		     "\r\n",
		     status, reason,
		     days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
		     tm.tm_hour, tm.tm_min, tm.tm_sec,
		     status == 200 ? HTTPREQ_METRICS_TYPE : "text/plain; charset=utf-8",
		     content_length,
		     status == 405 ? "Allow: GET, HEAD\r\n" : "",
		     keep_alive ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= size)
		return -ENOBUFS;
	return n;
}
