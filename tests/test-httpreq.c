#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "httpreq.h"
#include "util.h"

#define H11 " HTTP/1.1\r\nHost: x\r\n"

#define GET HTTPREQ_GET
#define HEAD HTTPREQ_HEAD
#define OTHER HTTPREQ_OTHER

/* Whole heads, and what they ask for. */
static const struct {
	const char *input;
	int status;
	enum httpreq_method method;
	unsigned minor;
	bool keep_alive;
} requests[] = {
	/* served */
	{ "GET /metrics HTTP/1.1\r\nHost: localhost:9100\r\n\r\n", 200, GET, 1, true },
	{ "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, HEAD, 1, true },
	{ "GET /metrics HTTP/1.0\r\n\r\n", 200, GET, 0, false },
	{ "HEAD /metrics HTTP/1.0\r\n\r\n", 200, HEAD, 0, false },
	{ "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n", 200, GET, 0, false },
	/* Prometheus's own request */
	{ "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: Prometheus/2.45.0\r\n"
	  "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
	  "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
	  200, GET, 1, true },
	/* keep-alive rules */
	{ "GET /metrics" H11 "Connection: close\r\n\r\n", 200, GET, 1, false },
	{ "GET /metrics" H11 "Connection: CLOSE\r\n\r\n", 200, GET, 1, false },
	{ "GET /metrics" H11 "Connection: keep-alive\r\n\r\n", 200, GET, 1, true },
	{ "GET /metrics" H11 "Connection: upgrade, close\r\n\r\n", 200, GET, 1, false },
	{ "GET /metrics" H11 "Connection: ,, close ,\r\n\r\n", 200, GET, 1, false },
	{ "GET /metrics" H11 "Connection: closed\r\n\r\n", 200, GET, 1, true },
	{ "GET /metrics" H11 "Connection:\r\n\r\n", 200, GET, 1, true },
	{ "GET /metrics" H11 "Connection: te\r\nConnection: close\r\n\r\n", 200, GET, 1, false },
	{ "GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, GET, 0, true },
	{ "GET /metrics HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n", 200, GET, 0, true },
	{ "GET /metrics HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 200, GET, 0, false },
	{ "GET /metrics HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
	  200, GET, 0, false },
	{ "GET /metrics HTTP/1.0\r\nConnection: upgrade\r\n\r\n", 200, GET, 0, false },
	{ "GET /metrics HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", 200, GET, 0, false },
	/* header names in any case, OWS around values */
	{ "GET /metrics HTTP/1.1\r\nhOsT: x\r\n\r\n", 200, GET, 1, true },
	{ "GET /metrics HTTP/1.1\r\nHOST:x\r\nCONNECTION:\t close \t\r\n\r\n", 200, GET, 1, false },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Obs-Text: caf\xc3\xa9\r\n\r\n",
	  200, GET, 1, true },
	{ "GET /metrics HTTP/1.1\r\nHost:\r\n\r\n", 200, GET, 1, true },
	{ "GET /metrics HTTP/1.1\r\nHost: [::1]:9100\r\n\r\n", 200, GET, 1, true },
	/* bare LF line ends, mixed too; empty lines before the request line */
	{ "GET /metrics HTTP/1.0\n\n", 200, GET, 0, false },
	{ "GET /metrics HTTP/1.1\nHost: x\r\n\n", 200, GET, 1, true },
	{ "\r\n\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, GET, 1, true },
	/* query strings are ignored; the path must be /metrics exactly */
	{ "GET /metrics?" H11 "\r\n", 200, GET, 1, true },
	{ "GET /metrics?name%5B%5D=up&x=%2F/?:@" H11 "\r\n", 200, GET, 1, true },
	{ "HEAD /metrics?a=b HTTP/1.0\r\n\r\n", 200, HEAD, 0, false },
	{ "GET /" H11 "\r\n", 404, GET, 1, true },
	{ "GET /metrics/" H11 "\r\n", 404, GET, 1, true },
	{ "GET /Metrics" H11 "\r\n", 404, GET, 1, true },
	{ "GET /%6detrics" H11 "\r\n", 404, GET, 1, true },
	{ "GET //metrics" H11 "\r\n", 404, GET, 1, true },
	{ "GET /metricsx?metrics" H11 "\r\n", 404, GET, 1, true },
	{ "GET /x?/metrics HTTP/1.0\r\n\r\n", 404, GET, 0, false },
	/* absolute-form */
	{ "GET http://localhost:9100/metrics" H11 "\r\n", 200, GET, 1, true },
	{ "GET HTTPS://[::1]/metrics?x" H11 "\r\n", 200, GET, 1, true },
	{ "GET http://host" H11 "\r\n", 404, GET, 1, true },
	{ "GET http://host?q" H11 "\r\n", 404, GET, 1, true },
	/* another method: 405 on /metrics, 404 elsewhere; keep-alive honoured */
	{ "POST /metrics" H11 "\r\n", 405, OTHER, 1, true },
	{ "get /metrics" H11 "\r\n", 405, OTHER, 1, true },
	{ "OPTIONS /metrics HTTP/1.0\r\n\r\n", 405, OTHER, 0, false },
	{ "DELETE /metrics" H11 "Content-Length: 0\r\n\r\n", 405, OTHER, 1, true },
	{ "GETS /metrics" H11 "\r\n", 405, OTHER, 1, true },
	{ "POST /other" H11 "\r\n", 404, OTHER, 1, true },
	/* Content-Length: 0 is no body */
	{ "GET /metrics" H11 "Content-Length: 0\r\n\r\n", 200, GET, 1, true },
	{ "GET /metrics" H11 "Content-Length: 000\r\n\r\n", 200, GET, 1, true },
};

#define MORE HTTPREQ_MORE
#define BAD HTTPREQ_BAD_REQUEST
#define VERSION HTTPREQ_BAD_VERSION

/* Inputs that are not a request, or not yet one. */
static const struct {
	const char *input;
	enum httpreq_result result;
} others[] = {
	/* HTTP versions */
	{ "GET /metrics HTTP/1.2\r\nHost: x\r\n\r\n", VERSION },
	{ "GET /metrics HTTP/2.0\r\n\r\n", VERSION },
	{ "GET /metrics HTTP/0.9\r\n\r\n", VERSION },
	{ "GET /metrics HTTP/9.9\n", VERSION },
	{ "GET /metrics\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.1.1\r\n\r\n", BAD },
	{ "GET /metrics HTTP/11.1\r\n\r\n", BAD },
	{ "GET /metrics http/1.1\r\nHost: x\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n", BAD },
	{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", BAD },

	/* malformed request lines */
	{ " GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", BAD },
	{ "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", BAD },
	{ "GET /metrics  HTTP/1.1\r\nHost: x\r\n\r\n", BAD },
	{ "GET\t/metrics HTTP/1.1\r\nHost: x\r\n\r\n", BAD },
	{ "G(T /metrics" H11 "\r\n", BAD },
	{ "GET" H11 "\r\n", BAD },
	{ "GET metrics" H11 "\r\n", BAD },
	{ "OPTIONS *" H11 "\r\n", BAD },
	{ "CONNECT host:9100" H11 "\r\n", BAD },
	{ "GET /metrics#frag" H11 "\r\n", BAD },
	{ "GET /met rics" H11 "\r\n", BAD },
	{ "GET /metrics?a\"b" H11 "\r\n", BAD },
	{ "GET /metrics?a%2" H11 "\r\n", BAD },
	{ "GET /metrics?a%zz" H11 "\r\n", BAD },
	{ "GET /[x]" H11 "\r\n", BAD },
	{ "GET /metrics?a[]=b" H11 "\r\n", BAD },
	{ "GET /caf\xc3\xa9" H11 "\r\n", BAD },
	{ "GET http:///metrics" H11 "\r\n", BAD },
	{ "GET http://user@host/metrics" H11 "\r\n", BAD },
	{ "GET ftp://host/metrics" H11 "\r\n", BAD },
	{ "GET /metrics HTTP/1.1\rHost: x\r\n\r\n", BAD },
	{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", BAD },
	{ "\r\r\nGET /metrics HTTP/1.0\r\n\r\n", BAD },
	{ " \r\nGET /metrics HTTP/1.0\r\n\r\n", BAD },

	/* malformed field lines */
	{ "GET /metrics" H11 " folded\r\n\r\n", BAD },
	{ "GET /metrics" H11 "\tfolded\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.1\r\n Host: x\r\n\r\n", BAD },
	{ "GET /metrics" H11 "X-A : b\r\n\r\n", BAD },
	{ "GET /metrics" H11 ": b\r\n\r\n", BAD },
	{ "GET /metrics" H11 "X-A\r\n\r\n", BAD },
	{ "GET /metrics" H11 "X(A): b\r\n\r\n", BAD },
	{ "GET /metrics" H11 "X-\xc3\xa9: b\r\n\r\n", BAD },
	{ "GET /metrics" H11 "X-A: b\x01" "c\r\n\r\n", BAD },
	{ "GET /metrics" H11 "X-A: b\x7f\r\n\r\n", BAD },
	{ "GET /metrics" H11 "X-A: b\rc\r\n\r\n", BAD },
	{ "GET /metrics" H11 "\r\r\n", BAD },
	{ "GET /metrics" H11 "\rX\r\n\r\n", BAD },
	/* Host */
	{ "GET /metrics HTTP/1.1\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.1\r\nX-Host: x\r\n\r\n", BAD },
	{ "GET http://x/metrics HTTP/1.1\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Host: x\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.0\r\nHost: x\r\nhost: y\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.1\r\nHost: a b\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.1\r\nHost: user@x\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.1\r\nHost: x/y\r\n\r\n", BAD },
	/* Connection */
	{ "GET /metrics" H11 "Connection: close;x\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Connection: keep alive\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Connection: \"close\"\r\n\r\n", BAD },
	/* bodies */
	{ "POST /metrics" H11 "Content-Length: 5\r\n\r\nhello", BAD },
	{ "GET /metrics" H11 "Content-Length: 1\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Content-Length: 0\r\nContent-Length: 0\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Content-Length: 0, 0\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Content-Length:\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Content-Length: -0\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Content-Length: 0x0\r\n\r\n", BAD },
	{ "GET /metrics" H11 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BAD },
	{ "GET /metrics" H11 "transfer-encoding: identity\r\n\r\n", BAD },
	{ "GET /metrics HTTP/1.0\r\nTransfer-Encoding:\r\n\r\n", BAD },

	/* incomplete */
	{ "", MORE },
	{ "\r\n", MORE },
	{ "\r", MORE },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n", MORE },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r", MORE },
	{ "GET /metrics HTTP/1.1\nHost: x\n", MORE },
};

START_TEST(httpreq_parses_requests)
{
	const char *in = requests[_i].input;
	size_t n = strlen(in);
	struct httpreq req;
	enum httpreq_result r;

	memset(&req, 0xA5, sizeof(req));
	r = httpreq_parse(in, n, &req);
	ck_assert_msg(r == HTTPREQ_REQUEST, "'%s': %s", in, httpreq_result_to_string(r));
	ck_assert_uint_eq(req.head_len, n);
	ck_assert_int_eq(req.status, requests[_i].status);
	ck_assert_int_eq(req.method, requests[_i].method);
	ck_assert_uint_eq(req.version_minor, requests[_i].minor);
	ck_assert_int_eq(req.keep_alive, requests[_i].keep_alive);
	ck_assert_int_eq(req.metrics, requests[_i].status != 404);
}
END_TEST

START_TEST(httpreq_refuses_others)
{
	const char *in = others[_i].input;
	struct httpreq req;
	enum httpreq_result r;

	r = httpreq_parse(in, strlen(in), &req);
	ck_assert_msg(r == others[_i].result, "'%s': %s, expected %s", in,
		      httpreq_result_to_string(r), httpreq_result_to_string(others[_i].result));
}
END_TEST

START_TEST(httpreq_failure_leaves_result_alone)
{
	static const char *const in[] = {
		"GET /metrics HTTP/1.1\r\n",
		"GET /metrics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/2.0\r\n\r\n",
	};

	for (size_t k = 0; k < ELEMENTSOF(in); k++) {
		struct httpreq req = { .head_len = 77, .status = 7, .keep_alive = true };

		ck_assert_int_ne(httpreq_parse(in[k], strlen(in[k]), &req), HTTPREQ_REQUEST);
		ck_assert_uint_eq(req.head_len, 77);
		ck_assert_int_eq(req.status, 7);
		ck_assert(req.keep_alive);
	}
}
END_TEST

/* Whole heads that are cut at every byte. */
static const char *const heads[] = {
	"GET /metrics HTTP/1.1\r\nHost: localhost:9100\r\nConnection: close\r\n\r\n",
	"HEAD /metrics?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET /metrics HTTP/1.0\n\n",
	"\r\n\r\nPOST http://h/metrics HTTP/1.1\nHost: h\nContent-Length: 0\n\n",
	"GET /nope HTTP/1.1\r\nhost:\r\nX-Long: a b c d e f g\r\n\r\n",
};

START_TEST(httpreq_every_prefix_needs_more)
{
	const char *in = heads[_i];
	size_t n = strlen(in);
	struct httpreq req;

	for (size_t k = 0; k < n; k++)
		ck_assert_msg(httpreq_parse(in, k, &req) == HTTPREQ_MORE, "'%s' cut at %zu: %s", in,
			      k, httpreq_result_to_string(httpreq_parse(in, k, &req)));
	ck_assert_int_eq(httpreq_parse(in, n, &req), HTTPREQ_REQUEST);
	ck_assert_uint_eq(req.head_len, n);
}
END_TEST

/* Errors are found as soon as the offending byte is in. */
START_TEST(httpreq_errors_are_early)
{
	static const struct {
		const char *input;
		enum httpreq_result result;
	} early[] = {
		{ "\x16", HTTPREQ_BAD_REQUEST },
		{ "GET /a b", HTTPREQ_BAD_REQUEST },
		{ "GET /a%zz ", HTTPREQ_BAD_REQUEST },
		{ "GET / HTTQ", HTTPREQ_BAD_REQUEST },
		{ "GET / HTTP/1.1x", HTTPREQ_BAD_REQUEST },
		{ "GET / HTTP/2.0\r\n", HTTPREQ_BAD_VERSION },
		{ "GET / HTTP/1.1\r\n ", HTTPREQ_BAD_REQUEST },
		{ "GET / HTTP/1.1\r\nX-A:\x01", HTTPREQ_BAD_REQUEST },
		{ "GET / HTTP/1.1\r\nX-A: b\rc", HTTPREQ_BAD_REQUEST },
		{ "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", HTTPREQ_BAD_REQUEST },
	};
	struct httpreq req;

	for (size_t k = 0; k < ELEMENTSOF(early); k++)
		ck_assert_msg(httpreq_parse(early[k].input, strlen(early[k].input), &req) ==
				      early[k].result,
			      "'%s'", early[k].input);
}
END_TEST

START_TEST(httpreq_rejects_nul)
{
	static const char in[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: b\0c\r\n\r\n";
	static const char line[] = "GET /metrics\0 HTTP/1.0\r\n\r\n";
	struct httpreq req;

	ck_assert_int_eq(httpreq_parse(in, sizeof(in) - 1, &req), HTTPREQ_BAD_REQUEST);
	ck_assert_int_eq(httpreq_parse(line, sizeof(line) - 1, &req), HTTPREQ_BAD_REQUEST);
}
END_TEST

START_TEST(httpreq_nothing_needs_more)
{
	struct httpreq req;

	ck_assert_int_eq(httpreq_parse(NULL, 0, &req), HTTPREQ_MORE);
}
END_TEST

START_TEST(httpreq_pipelined_rest_is_left)
{
	static const char first[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char in[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
				 "HEAD /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
				 "GET /met";
	size_t n = sizeof(in) - 1, used;
	struct httpreq req;

	ck_assert_int_eq(httpreq_parse(in, n, &req), HTTPREQ_REQUEST);
	ck_assert_uint_eq(req.head_len, sizeof(first) - 1);
	ck_assert_int_eq(req.status, 200);
	ck_assert(req.keep_alive);
	used = req.head_len;

	ck_assert_int_eq(httpreq_parse(in + used, n - used, &req), HTTPREQ_REQUEST);
	ck_assert_int_eq(req.method, HTTPREQ_HEAD);
	ck_assert_int_eq(req.status, 404);
	ck_assert(!req.keep_alive);
	used += req.head_len;
	ck_assert_str_eq(in + used, "GET /met");

	ck_assert_int_eq(httpreq_parse(in + used, n - used, &req), HTTPREQ_MORE);
}
END_TEST

/* A head of exactly len bytes: the request line, Host and one filler field
 * that makes up the length. */
static size_t
make_head(char *buf, size_t len, const char *eol)
{
	const char *start = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Fill: ";
	size_t s = strlen(start), e = strlen(eol);

	ck_assert_uint_ge(len, s + 2 * e);
	memcpy(buf, start, s);
	memset(buf + s, 'a', len - s - 2 * e);
	memcpy(buf + len - 2 * e, eol, e);
	memcpy(buf + len - e, eol, e);
	return len;
}

START_TEST(httpreq_head_limit)
{
	static const char *const eols[] = { "\r\n", "\n" };
	static char buf[HTTPREQ_HEAD_MAX + 64];
	const char *eol = eols[_i];
	struct httpreq req;
	size_t n;

	/* limit - 1 and limit: parsed, with pipelined bytes after them too */
	for (size_t len = HTTPREQ_HEAD_MAX - 1; len <= HTTPREQ_HEAD_MAX; len++) {
		n = make_head(buf, len, eol);
		ck_assert_int_eq(httpreq_parse(buf, n, &req), HTTPREQ_REQUEST);
		ck_assert_uint_eq(req.head_len, len);
		memcpy(buf + n, "GET ", 4);
		ck_assert_int_eq(httpreq_parse(buf, n + 4, &req), HTTPREQ_REQUEST);
		ck_assert_uint_eq(req.head_len, len);
		ck_assert_int_eq(httpreq_parse(buf, n - 1, &req), HTTPREQ_MORE);
	}

	/* limit + 1: too long, whether or not it came whole */
	n = make_head(buf, HTTPREQ_HEAD_MAX + 1, eol);
	for (size_t k = HTTPREQ_HEAD_MAX; k <= n; k++)
		ck_assert_int_eq(httpreq_parse(buf, k, &req), HTTPREQ_BAD_REQUEST);
	ck_assert_int_eq(httpreq_parse(buf, HTTPREQ_HEAD_MAX - 1, &req), HTTPREQ_MORE);
}
END_TEST

/* With the limit in hand there is never more to wait for: a valid start,
 * then a pattern repeated that keeps the head incomplete. */
static const struct {
	const char *start;
	const char *fill;
} unfinished[] = {
	{ "", "\r\n" },
	{ "GET /", "a" },
	{ "GET /metrics?", "a=b&" },
	{ "GET /metrics HTTP/1.1\r\nX", "a" },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\nX: ", "a" },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n", "X: y\r\n" },
	{ "GET /metrics HTTP/1.0\n", "Connection: close\n" },
};

START_TEST(httpreq_never_more_at_limit)
{
	static char buf[HTTPREQ_HEAD_MAX + 1];
	const char *fill = unfinished[_i].fill;
	size_t k = strlen(unfinished[_i].start), f = strlen(fill);
	struct httpreq req;

	memcpy(buf, unfinished[_i].start, k);
	for (size_t i = k; i < sizeof(buf); i++)
		buf[i] = fill[(i - k) % f];
	ck_assert_int_eq(httpreq_parse(buf, HTTPREQ_HEAD_MAX - 1, &req), HTTPREQ_MORE);
	ck_assert_int_eq(httpreq_parse(buf, HTTPREQ_HEAD_MAX, &req), HTTPREQ_BAD_REQUEST);
	ck_assert_int_eq(httpreq_parse(buf, HTTPREQ_HEAD_MAX + 1, &req), HTTPREQ_BAD_REQUEST);
}
END_TEST

START_TEST(httpreq_format_head_metrics)
{
	char buf[HTTPREQ_RESPONSE_HEAD_MAX];
	const char *want = "HTTP/1.1 200 OK\r\n"
			   "Date: Thu, 03 Dec 2026 16:41:17 GMT\r\n"
			   "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
			   "Content-Length: 1234\r\n"
			   "Connection: keep-alive\r\n"
			   "\r\n";

	ck_assert_int_eq(httpreq_format_head(buf, sizeof(buf), 200, 1234, true, 1796316077),
			 (int)strlen(want));
	ck_assert_str_eq(buf, want);
}
END_TEST

START_TEST(httpreq_format_head_errors)
{
	char buf[HTTPREQ_RESPONSE_HEAD_MAX];

	ck_assert_int_gt(httpreq_format_head(buf, sizeof(buf), 405, 0, false, 0), 0);
	ck_assert_str_eq(buf, "HTTP/1.1 405 Method Not Allowed\r\n"
			      "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
			      "Content-Type: text/plain; charset=utf-8\r\n"
			      "Content-Length: 0\r\n"
			      "Allow: GET, HEAD\r\n"
			      "Connection: close\r\n"
			      "\r\n");
	ck_assert_int_gt(httpreq_format_head(buf, sizeof(buf), 400, 12, false, 951782400), 0);
	ck_assert_str_eq(buf, "HTTP/1.1 400 Bad Request\r\n"
			      "Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n"
			      "Content-Type: text/plain; charset=utf-8\r\n"
			      "Content-Length: 12\r\n"
			      "Connection: close\r\n"
			      "\r\n");
	ck_assert_int_eq(httpreq_format_head(buf, sizeof(buf), 302, 0, false, 0), -EINVAL);
	ck_assert_int_eq(httpreq_format_head(buf, sizeof(buf), 200, 0, false, 253402300800),
			 -EINVAL);
	ck_assert_int_eq(httpreq_format_head(buf, 10, 200, 0, false, 0), -ENOBUFS);
	ck_assert_int_eq(httpreq_format_head(NULL, 0, 404, 0, false, 0), -ENOBUFS);
}
END_TEST

START_TEST(httpreq_format_head_longest_fits)
{
	static const int statuses[] = { 200, 400, 404, 405, 505 };
	char buf[HTTPREQ_RESPONSE_HEAD_MAX];

	for (size_t k = 0; k < ELEMENTSOF(statuses); k++) {
		int n = httpreq_format_head(buf, sizeof(buf), statuses[k], SIZE_MAX, true,
					    253402300799);

		ck_assert_int_gt(n, 0);
		ck_assert_int_lt(n, HTTPREQ_RESPONSE_HEAD_MAX);
		ck_assert_str_eq(buf + n - 4, "\r\n\r\n");
		ck_assert_ptr_nonnull(strstr(buf, httpreq_reason(statuses[k])));
	}
}
END_TEST

START_TEST(httpreq_names)
{
	ck_assert_str_eq(httpreq_method_to_string(HTTPREQ_GET), "GET");
	ck_assert_str_eq(httpreq_method_to_string(HTTPREQ_HEAD), "HEAD");
	ck_assert_str_eq(httpreq_method_to_string(HTTPREQ_OTHER), "other");
	ck_assert_ptr_null(httpreq_method_to_string(_HTTPREQ_METHOD_MAX));
	for (int r = 0; r < _HTTPREQ_RESULT_MAX; r++)
		ck_assert_ptr_nonnull(httpreq_result_to_string(r));
	ck_assert_ptr_null(httpreq_result_to_string(_HTTPREQ_RESULT_MAX));
	ck_assert_str_eq(httpreq_reason(505), "HTTP Version Not Supported");
	ck_assert_ptr_null(httpreq_reason(431));
}
END_TEST

static Suite *
httpreq_suite(void)
{
	Suite *s = suite_create("httpreq");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, httpreq_parses_requests, 0, (int)ELEMENTSOF(requests));
	tcase_add_loop_test(tc, httpreq_refuses_others, 0, (int)ELEMENTSOF(others));
	tcase_add_test(tc, httpreq_failure_leaves_result_alone);
	tcase_add_test(tc, httpreq_errors_are_early);
	tcase_add_test(tc, httpreq_rejects_nul);
	tcase_add_test(tc, httpreq_nothing_needs_more);
	suite_add_tcase(s, tc);

	tc = tcase_create("incremental");
	tcase_add_loop_test(tc, httpreq_every_prefix_needs_more, 0, (int)ELEMENTSOF(heads));
	tcase_add_test(tc, httpreq_pipelined_rest_is_left);
	suite_add_tcase(s, tc);

	tc = tcase_create("limit");
	tcase_add_loop_test(tc, httpreq_head_limit, 0, 2);
	tcase_add_loop_test(tc, httpreq_never_more_at_limit, 0, (int)ELEMENTSOF(unfinished));
	suite_add_tcase(s, tc);

	tc = tcase_create("response");
	tcase_add_test(tc, httpreq_format_head_metrics);
	tcase_add_test(tc, httpreq_format_head_errors);
	tcase_add_test(tc, httpreq_format_head_longest_fits);
	tcase_add_test(tc, httpreq_names);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(httpreq_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
