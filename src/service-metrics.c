#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build-config.h"
#include "httpreq.h"
#include "listener-rt.h"
#include "metrics.h"
#include "service.h"
#include "session.h"
#include "stats.h"

/* SPEC section 11: the Prometheus text exposition over HTTP/1.x. Every
 * request is answered from a snapshot of the shared counters (stats.h),
 * so one scrape sees every listener whichever model serves this one.
 *
 * A body grows with the number of listeners and can be larger than the
 * session's output bound (SESSION_OUT_MAX): it is rendered whole into a
 * buffer of the connection (Content-Length must be known first) and fed
 * to the session as the client takes it (on_writable). Requests that
 * come in meanwhile (pipelining) wait in the connection's head buffer,
 * at most HTTPREQ_HEAD_MAX bytes; beyond that the session keeps them. */

struct metrics_conn {
	char in[HTTPREQ_HEAD_MAX];
	size_t in_len;
	char *body; /* what is left to send of a response body */
	size_t body_len, body_off;
	bool close_after; /* close once the body is out */
	bool eof;         /* the client half-closed */
	bool done;        /* closing: ignore further input */
};

static void process(struct session *s, struct metrics_conn *c);

static void
metrics_on_open(struct session *s)
{
	struct metrics_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		session_abort(s, "out of memory");
		return;
	}
	s->service_data = c;
}

static void
metrics_on_close(struct session *s)
{
	struct metrics_conn *c = s->service_data;

	if (!c)
		return;
	free(c->body);
	free(c);
	s->service_data = NULL;
}

static void
finish(struct session *s, struct metrics_conn *c, const char *reason)
{
	c->done = true;
	session_close(s, reason);
}

/* Feed the body while the session has room; once it is all queued, go on
 * with the next request or close. */
static void
send_body(struct session *s, struct metrics_conn *c)
{
	while (c->body && c->body_off < c->body_len) {
		size_t room = session_send_space(s), k;

		if (room == 0)
			return;
		k = MIN(room, c->body_len - c->body_off);
		session_send(s, c->body + c->body_off, k);
		c->body_off += k;
	}
	free(c->body);
	c->body = NULL;
	if (c->close_after) {
		finish(s, c, "done");
		return;
	}
	process(s, c);
}

static void
respond(struct session *s, struct metrics_conn *c, int status, bool head_only, bool keep_alive,
	char *body, size_t body_len)
{
	char h[HTTPREQ_RESPONSE_HEAD_MAX];
	int n = httpreq_format_head(h, sizeof(h), status, body_len, keep_alive, time(NULL));

	if (n < 0) {
		free(body);
		session_abort(s, "error");
		c->done = true;
		return;
	}
	session_send(s, h, (size_t)n);
	c->close_after = !keep_alive;
	if (head_only || body_len == 0) {
		free(body);
		body = NULL;
	}
	c->body = body;
	c->body_len = body_len;
	c->body_off = 0;
	if (c->body) {
		send_body(s, c);
	} else if (c->close_after) {
		finish(s, c, "done");
	}
}

static int
render(struct session *s, char **ret, size_t *ret_len)
{
	const struct stats_shared *sh = s->lst->shared_stats;
	struct stats_view *v;
	size_t n;
	int r;

	if (!sh)
		return -ENXIO;
	n = stats_snapshot_max(sh);
	v = malloc(MAX(n, (size_t)1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	n = stats_snapshot(sh, v, n);
	r = metrics_render(&(struct metrics_global){
				   .version = PACKAGE_VERSION,
				   .start_usec = sh->start_usec,
				   .reload_usec = atomic_load(&sh->reload_usec),
				   .reload_ok = atomic_load(&sh->reload_ok),
			   },
			   v, n, ret, ret_len);
	free(v);
	return r;
}

static char *
text_body(int status, size_t *ret_len)
{
	const char *reason = httpreq_reason(status);
	size_t n = strlen(reason) + 16;
	char *b = malloc(n);

	if (!b)
		return NULL;
	*ret_len = (size_t)snprintf(b, n, "%d %s\n", status, reason);
	return b;
}

/* Answer what the head buffer holds, one request at a time: a response
 * body still going out waits for send_body(). */
static void
process(struct session *s, struct metrics_conn *c)
{
	while (!c->body && !c->done) {
		struct httpreq req;
		enum httpreq_result r = httpreq_parse(c->in, c->in_len, &req);
		char *body = NULL;
		size_t len = 0;
		int status;

		if (r == HTTPREQ_MORE) {
			/* Half-closed with nothing (or half a head) left. */
			if (c->eof)
				finish(s, c, "eof");
			return;
		}
		if (r != HTTPREQ_REQUEST) {
			status = r == HTTPREQ_BAD_VERSION ? 505 : 400;
			body = text_body(status, &len);
			respond(s, c, status, false, false, body, body ? len : 0);
			return;
		}
		memmove(c->in, c->in + req.head_len, c->in_len - req.head_len);
		c->in_len -= req.head_len;
		status = req.status;
		if (status == 200 && render(s, &body, &len) < 0) {
			session_abort(s, "out of memory");
			c->done = true;
			return;
		}
		if (status != 200)
			body = text_body(status, &len);
		if (!body) {
			session_abort(s, "out of memory");
			c->done = true;
			return;
		}
		respond(s, c, status, req.method == HTTPREQ_HEAD, req.keep_alive && !c->eof, body,
			len);
	}
}

static size_t
metrics_on_data(struct session *s, const uint8_t *p, size_t n)
{
	struct metrics_conn *c = s->service_data;
	size_t k;

	if (!c || c->done)
		return n;
	k = MIN(n, sizeof(c->in) - c->in_len);
	memcpy(c->in + c->in_len, p, k);
	c->in_len += k;
	process(s, c);
	return k;
}

static void
metrics_on_writable(struct session *s)
{
	struct metrics_conn *c = s->service_data;

	if (c && c->body)
		send_body(s, c);
}

static bool
metrics_writable_pending(struct session *s)
{
	struct metrics_conn *c = s->service_data;

	return c && c->body;
}

static void
metrics_on_eof(struct session *s)
{
	struct metrics_conn *c = s->service_data;

	if (!c || c->done)
		return;
	c->eof = true;
	if (c->body)
		c->close_after = true;
	else
		process(s, c);
}

const struct service_ops service_metrics_ops = {
	.name = "metrics",
	.on_open = metrics_on_open,
	.on_data = metrics_on_data,
	.on_writable = metrics_on_writable,
	.writable_pending = metrics_writable_pending,
	.on_eof = metrics_on_eof,
	.on_close = metrics_on_close,
};
