#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* HTTP/1.x request heads for the metrics service (SPEC section 11). Pure:
 * no I/O, no allocation, no logging, no locale.
 *
 * The caller keeps the bytes received so far on a connection and passes
 * them all on every call; nothing is remembered between calls. Once a head
 * parses, the caller consumes head_len bytes and keeps the rest (pipelined
 * requests). Each call rescans from the start, so a head that trickles in
 * costs O(n) a call and at most HTTPREQ_HEAD_MAX bytes are ever looked at.
 *
 * Rules (RFC 9112 and 9110, strict):
 * - A head is the request line, the header field lines and an empty line.
 *   Lines end with CRLF or a bare LF; a CR anywhere else is malformed.
 *   Empty lines before the request line are skipped and count as part of
 *   the head.
 * - The head, those empty lines included, may be HTTPREQ_HEAD_MAX bytes
 *   (8 KiB) long; one longer is HTTPREQ_BAD_REQUEST (400, as SPEC says,
 *   not 431). So with HTTPREQ_HEAD_MAX bytes or more in hand the result is
 *   never HTTPREQ_MORE.
 * - Request line: method SP request-target SP HTTP-version, single spaces.
 *   The method is a token, compared case-sensitively: GET and HEAD are
 *   served, any other token is HTTPREQ_OTHER. The target is origin-form
 *   ("/path?query") or absolute-form ("http://host/path?query", scheme
 *   http or https in any case, non-empty authority without userinfo);
 *   anything else (asterisk-form "*", authority-form, a fragment, a byte
 *   outside RFC 3986, a bad %-escape) is malformed. The path is compared
 *   byte for byte, without %-decoding: only "/metrics" is the metrics
 *   path ("/metrics/", "/Metrics", "/%6detrics" are not); the query
 *   string, from the first '?', is ignored.
 * - HTTP-version is "HTTP/" DIGIT "." DIGIT, case-sensitive. 1.0 and 1.1
 *   are served; any other well-formed version (0.9, 1.2, 2.0) is
 *   HTTPREQ_BAD_VERSION (505), decided as soon as the request line is
 *   complete. A request line without a version (HTTP/0.9) is malformed.
 * - Field lines: name ":" OWS value OWS. The name is a token, matched
 *   case-insensitively; whitespace before the colon, a line starting with
 *   SP or HTAB (obs-fold) and any control byte but HTAB in a value are
 *   malformed; bytes 0x80-0xFF (obs-text) are allowed in values.
 * - Host: required in HTTP/1.1, at most one in any version, and its value
 *   (possibly empty) uses the characters of an RFC 3986 authority.
 * - Connection: a comma list of tokens (empty elements allowed) matched
 *   case-insensitively; several Connection lines add up. HTTP/1.1 keeps
 *   the connection unless "close" is listed; HTTP/1.0 closes it unless
 *   "keep-alive" is listed and "close" is not.
 * - No request body is accepted: Transfer-Encoding (any value), more than
 *   one Content-Length, or a Content-Length that is not all digits or not
 *   zero is malformed. "Content-Length: 0" is fine.
 * - Errors are decided from the bytes seen so far, left to right: once a
 *   prefix of the input gives an error, every longer input gives the same
 *   error, so a client that sends garbage is answered without waiting for
 *   the end of its head.
 *
 * What to answer (the caller's part):
 * - HTTPREQ_REQUEST: ret->status, 200, 404 (path not /metrics, whatever
 *   the method) or 405 (/metrics with a method other than GET and HEAD,
 *   with "Allow: GET, HEAD"), then keep the connection open when
 *   ret->keep_alive and parse what follows the head;
 * - HTTPREQ_BAD_REQUEST: 400, then close;
 * - HTTPREQ_BAD_VERSION: 505, then close. */

/* The longest request head, SPEC section 11. */
#define HTTPREQ_HEAD_MAX 8192

/* The Content-Type of the metrics body, SPEC section 11. */
#define HTTPREQ_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Room httpreq_format_head() ever needs, NUL included. */
#define HTTPREQ_RESPONSE_HEAD_MAX 256

enum httpreq_method {
	HTTPREQ_GET,
	HTTPREQ_HEAD,
	HTTPREQ_OTHER, /* any other token: 405 on /metrics */
	_HTTPREQ_METHOD_MAX,
};

enum httpreq_result {
	HTTPREQ_MORE,        /* incomplete head under the limit: read on, call again */
	HTTPREQ_REQUEST,     /* a complete head, described by *ret */
	HTTPREQ_BAD_REQUEST, /* malformed or over HTTPREQ_HEAD_MAX: 400, close */
	HTTPREQ_BAD_VERSION, /* an HTTP version other than 1.0 and 1.1: 505, close */
	_HTTPREQ_RESULT_MAX,
};

struct httpreq {
	size_t head_len;            /* bytes of the head, its empty line included */
	enum httpreq_method method;
	unsigned version_minor;     /* HTTP/1.0 or HTTP/1.1 */
	bool metrics;               /* the path is /metrics */
	bool keep_alive;            /* keep the connection after the response */
	int status;                 /* what to answer: 200, 404 or 405 */
};

const char *httpreq_method_to_string(enum httpreq_method m);
const char *httpreq_result_to_string(enum httpreq_result r);

/* Parse the n bytes at buf, the start of what a connection sent (or of
 * what is left after the heads consumed so far). Only for HTTPREQ_REQUEST
 * is *ret written. */
enum httpreq_result httpreq_parse(const void *buf, size_t n, struct httpreq *ret);

/* The reason phrase of a status this module answers with (200, 400, 404,
 * 405, 505), NULL for another. */
const char *httpreq_reason(int status);

/* Write a response head into buf: "HTTP/1.1 STATUS REASON", Date (from
 * now), Content-Type (HTTPREQ_METRICS_TYPE for 200, "text/plain;
 * charset=utf-8" otherwise), Content-Length, "Allow: GET, HEAD" for 405,
 * "Connection: keep-alive" or "close", and the empty line, NUL-terminated.
 * For HEAD, content_length is that of the body GET would get. Returns the
 * length without the NUL; -EINVAL for a status httpreq_reason() does not
 * know or a time outside years 0-9999; -ENOBUFS when size is too small
 * (HTTPREQ_RESPONSE_HEAD_MAX always suffices). */
int httpreq_format_head(char *buf, size_t size, int status, size_t content_length,
			bool keep_alive, time_t now);
