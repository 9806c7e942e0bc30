/* libFuzzer target for httpreq_parse() and httpreq_format_head()
 * (src/httpreq.h).
 *
 * The input is the bytes a client sent. Oracles, each an abort on failure:
 * - the result is one of the four; HTTPREQ_MORE only below
 *   HTTPREQ_HEAD_MAX bytes;
 * - a request's head is 1 to min(n, HTTPREQ_HEAD_MAX) bytes, ends with an
 *   empty line, holds no control byte but HTAB, CR and LF, starts (after
 *   empty lines) with its method, and its status agrees with its method
 *   and path;
 * - parsing again gives the same, and so does parsing exactly the head;
 * - every prefix gives HTTPREQ_MORE or the same result as the whole
 *   (the same request once the head is in), so an error never turns into
 *   something else with more input; each prefix is parsed from a buffer of
 *   its own size, so reading past the end is caught;
 * - the response head for a request fits HTTPREQ_RESPONSE_HEAD_MAX. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpreq.h"

#define FAIL(...)                                           \
	do {                                                \
		fprintf(stderr, "fuzz-http: " __VA_ARGS__); \
		fputc('\n', stderr);                        \
		abort();                                    \
	} while (0)

static bool
same_request(const struct httpreq *a, const struct httpreq *b)
{
	return a->head_len == b->head_len && a->method == b->method &&
	       a->version_minor == b->version_minor && a->metrics == b->metrics &&
	       a->keep_alive == b->keep_alive && a->status == b->status;
}

/* httpreq_parse() of the first k bytes, from a buffer of exactly k bytes. */
static enum httpreq_result
parse_prefix(const uint8_t *data, size_t k, struct httpreq *ret)
{
	uint8_t *copy = malloc(k ? k : 1);
	enum httpreq_result r;

	if (!copy)
		abort();
	memcpy(copy, data, k);
	r = httpreq_parse(copy, k, ret);
	free(copy);
	return r;
}

static void
check_request(const uint8_t *data, size_t size, const struct httpreq *req)
{
	static const char *const methods[] = { [HTTPREQ_GET] = "GET ", [HTTPREQ_HEAD] = "HEAD " };
	char buf[HTTPREQ_RESPONSE_HEAD_MAX];
	size_t len = req->head_len, i = 0;
	int n;

	if (len == 0 || len > size || len > HTTPREQ_HEAD_MAX)
		FAIL("head of %zu bytes in %zu", len, size);
	if (data[len - 1] != '\n' ||
	    !(len >= 2 && (data[len - 2] == '\n' || (len >= 3 && data[len - 2] == '\r' &&
						     data[len - 3] == '\n'))))
		FAIL("head of %zu bytes does not end with an empty line", len);
	for (size_t k = 0; k < len; k++)
		if ((data[k] < 0x20 && data[k] != '\t' && data[k] != '\r' && data[k] != '\n') ||
		    data[k] == 0x7f)
			FAIL("control byte 0x%02x at %zu in a head", data[k], k);
	while (i < len && (data[i] == '\r' || data[i] == '\n'))
		i++;
	if (req->method == HTTPREQ_GET || req->method == HTTPREQ_HEAD) {
		const char *m = methods[req->method];

		if (len - i < strlen(m) || memcmp(data + i, m, strlen(m)) != 0)
			FAIL("%s request that starts otherwise", httpreq_method_to_string(req->method));
	} else if (req->method != HTTPREQ_OTHER) {
		FAIL("method %d", (int)req->method);
	}
	if (req->version_minor > 1)
		FAIL("HTTP/1.%u served", req->version_minor);
	if (req->status != (!req->metrics ? 404 : req->method == HTTPREQ_OTHER ? 405 : 200))
		FAIL("status %d for method %s, metrics %d", req->status,
		     httpreq_method_to_string(req->method), req->metrics);

	n = httpreq_format_head(buf, sizeof(buf), req->status, len, req->keep_alive, 0);
	if (n <= 0 || (size_t)n >= sizeof(buf) || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0)
		FAIL("response head for status %d: %d", req->status, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpreq req, again, part;
	enum httpreq_result r, r2;
	size_t cuts[8], ncuts = 0;
	bool all = size <= 512;

	memset(&req, 0xA5, sizeof(req));
	r = httpreq_parse(data, size, &req);
	if ((int)r < 0 || (int)r >= _HTTPREQ_RESULT_MAX)
		FAIL("result %d", (int)r);
	if (r == HTTPREQ_MORE && size >= HTTPREQ_HEAD_MAX)
		FAIL("more wanted with %zu bytes in hand", size);
	if (r == HTTPREQ_REQUEST)
		check_request(data, size, &req);

	memset(&again, 0x5A, sizeof(again));
	r2 = httpreq_parse(data, size, &again);
	if (r2 != r || (r == HTTPREQ_REQUEST && !same_request(&req, &again)))
		FAIL("second parse: %s, first %s", httpreq_result_to_string(r2),
		     httpreq_result_to_string(r));

	if (r == HTTPREQ_REQUEST) {
		r2 = parse_prefix(data, req.head_len, &again);
		if (r2 != HTTPREQ_REQUEST || !same_request(&req, &again))
			FAIL("the head alone (%zu bytes): %s", req.head_len,
			     httpreq_result_to_string(r2));
		r2 = parse_prefix(data, req.head_len - 1, &again);
		if (r2 != HTTPREQ_MORE)
			FAIL("the head but its last byte: %s", httpreq_result_to_string(r2));
	}

	/* Every prefix of a short input; a few of a long one. */
	if (!all) {
		cuts[ncuts++] = size / 2;
		cuts[ncuts++] = size - 1;
		cuts[ncuts++] = HTTPREQ_HEAD_MAX < size ? HTTPREQ_HEAD_MAX : size / 3;
		for (size_t k = 0; k < 5; k++)
			cuts[ncuts++] = ((size_t)data[k] << 8 | data[size - 1 - k]) % size;
	}
	for (size_t k = 0; k < (all ? size : ncuts); k++) {
		size_t cut = all ? k : cuts[k];

		r2 = parse_prefix(data, cut, &part);
		if (r2 == HTTPREQ_MORE) {
			if (r == HTTPREQ_REQUEST && cut >= req.head_len)
				FAIL("%zu bytes: more, though the head is %zu", cut, req.head_len);
			continue;
		}
		if (r2 != r)
			FAIL("%zu bytes: %s, all %zu: %s", cut, httpreq_result_to_string(r2), size,
			     httpreq_result_to_string(r));
		if (r == HTTPREQ_REQUEST && !same_request(&req, &part))
			FAIL("%zu bytes: another request than all %zu", cut, size);
	}
	return 0;
}
