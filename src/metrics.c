#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "stats.h"
#include "util.h"

/* A growing text buffer; failure sticks, so callers check once. */
struct out {
	char *p;
	size_t len, size;
	bool oom;
};

_printf_(2, 3) static void
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	size_t want;
	char *q;
	int n;

	if (o->oom)
		return;
	for (;;) {
		size_t room = o->size - o->len;

		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = true;
			return;
		}
		if ((size_t)n < room) {
			o->len += (size_t)n;
			return;
		}
		want = MAX(o->size * 2, o->len + (size_t)n + 1);
		q = realloc(o->p, want);

		if (!q) {
			o->oom = true;
			return;
		}
		o->p = q;
		o->size = want;
	}
}

size_t
metrics_escape_label(const char *value, char *buf, size_t size)
{
	size_t n = 0;

	for (const char *s = value; *s; s++) {
		const char *e = NULL;
		char c[2] = { *s, '\0' };

		if (*s == '\\')
			e = "\\\\";
		else if (*s == '"')
			e = "\\\"";
		else if (*s == '\n')
			e = "\\n";
		else
			e = c;
		for (; *e; e++, n++)
			if (n + 1 < size)
				buf[n] = *e;
	}
	if (size)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}

/* An escaped label value; the longest we render is an address
 * (STATS_ADDRESS_MAX), each byte at most two. */
struct label {
	char s[2 * STATS_ADDRESS_MAX + 1];
};

static const char *
esc(struct label *l, const char *value)
{
	(void)metrics_escape_label(value, l->s, sizeof(l->s));
	return l->s;
}

static void
family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
seconds(struct out *o, const char *name, uint64_t usec)
{
	put(o, "%s %" PRIu64 ".%06" PRIu64 "\n", name, usec / 1000000, usec % 1000000);
}

enum which {
	ALL,
	UDP,
	CHAT,
};

static bool
applies(const struct stats_view *v, enum which w)
{
	switch (w) {
	case UDP:
		return strcmp(v->info.protocol, "udp") == 0;
	case CHAT:
		return strcmp(v->info.service, "chat") == 0;
	default:
		return true;
	}
}

/* One sample a listener, value picked by offset into struct stats_view. */
static void
per_listener(struct out *o, const struct stats_view *v, size_t n, const char *name,
	     const char *type, const char *help, enum which w, size_t offset)
{
	family(o, name, type, help);
	for (size_t i = 0; i < n; i++) {
		struct label l;
		uint64_t val;

		if (!applies(&v[i], w))
			continue;
		memcpy(&val, (const char *)&v[i] + offset, sizeof(val));
		put(o, "%s{listener=\"%s\"} %" PRIu64 "\n", name, esc(&l, v[i].info.name), val);
	}
}

#define FIELD(f) offsetof(struct stats_view, f)

/* Over 80 lines: one call per family of SPEC 11's table, in its order, so
 * the output reads as the table does. */
int
metrics_render(const struct metrics_global *g, const struct stats_view *v, size_t n,
	       char **ret, size_t *ret_len)
{
	struct out o = { .size = 4096 + n * 2048 };
	struct label a, b, c;

	o.p = malloc(o.size);
	if (!o.p)
		return -ENOMEM;
	o.p[0] = '\0';

	family(&o, "netechod_build_info", "gauge", "Always 1; the version label names the netechod build.");
	put(&o, "netechod_build_info{version=\"%s\"} 1\n", esc(&a, g->version));
	family(&o, "netechod_start_time_seconds", "gauge", "Unix time the daemon started.");
	seconds(&o, "netechod_start_time_seconds", g->start_usec);
	family(&o, "netechod_config_last_reload_successful", "gauge",
	       "1 when the last reload (SIGHUP) applied the configuration, 0 when it failed; 1 before any.");
	put(&o, "netechod_config_last_reload_successful %d\n", g->reload_ok ? 1 : 0);
	family(&o, "netechod_config_last_reload_timestamp_seconds", "gauge",
	       "Unix time of the last reload attempt; the start time before any.");
	seconds(&o, "netechod_config_last_reload_timestamp_seconds", g->reload_usec);

	family(&o, "netechod_listener_info", "gauge", "Always 1; labels describe each enabled listener.");
	for (size_t i = 0; i < n; i++) {
		struct label nm, sv;

		put(&o,
		    "netechod_listener_info{listener=\"%s\",protocol=\"%s\",address=\"%s\",port=\"%u\",model=\"%s\",service=\"%s\"} 1\n",
		    esc(&nm, v[i].info.name), esc(&a, v[i].info.protocol),
		    esc(&b, v[i].info.address), (unsigned)v[i].info.port,
		    esc(&c, v[i].info.model), esc(&sv, v[i].info.service));
	}
	per_listener(&o, v, n, "netechod_connections_active", "gauge",
		     "Open tcp connections; udp chat: joined peers.", ALL, FIELD(conns_now));
	per_listener(&o, v, n, "netechod_connections_total", "counter",
		     "TCP connections accepted and served.", ALL, FIELD(conns_total));
	per_listener(&o, v, n, "netechod_received_bytes_total", "counter",
		     "Payload bytes received from clients.", ALL, FIELD(bytes_in));
	per_listener(&o, v, n, "netechod_sent_bytes_total", "counter",
		     "Payload bytes sent to clients.", ALL, FIELD(bytes_out));
	per_listener(&o, v, n, "netechod_datagrams_received_total", "counter",
		     "UDP datagrams received.", UDP, FIELD(dgrams_in));
	per_listener(&o, v, n, "netechod_datagrams_sent_total", "counter",
		     "UDP datagrams sent.", UDP, FIELD(dgrams_out));

	family(&o, "netechod_refused_total", "counter",
	       "Connections, chat lines and datagrams turned away, by reason.");
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < _REFUSE_MAX; k++) {
			struct label nm;

			put(&o, "netechod_refused_total{listener=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
			    esc(&nm, v[i].info.name), refuse_reason_to_string((enum refuse_reason)k),
			    v[i].refused[k]);
		}
	family(&o, "netechod_dropped_total", "counter",
	       "UDP datagrams not answered, by reason.");
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < _DROP_MAX && applies(&v[i], UDP); k++) {
			struct label nm;

			put(&o, "netechod_dropped_total{listener=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
			    esc(&nm, v[i].info.name), drop_reason_to_string((enum drop_reason)k),
			    v[i].dropped[k]);
		}
	per_listener(&o, v, n, "netechod_chat_members", "gauge",
		     "Chat members with a name on this listener.", CHAT, FIELD(chat_members));
	per_listener(&o, v, n, "netechod_chat_messages_total", "counter",
		     "Chat lines relayed (once per line, not per receiver).", CHAT,
		     FIELD(chat_messages));
	per_listener(&o, v, n, "netechod_handler_restarts_total", "counter",
		     "Restarts of the listener's handler after it died.", ALL, FIELD(restarts));
	/* Chat listeners with a backend (SPEC section 12) get a sample here;
	 * without any, the family is announced and empty. */
	family(&o, "netechod_backend_up", "gauge",
	       "Chat listeners with a backend: 1 connected to it, 0 not.");
	for (size_t i = 0; i < n; i++) {
		struct label l;

		if (v[i].backend == STATS_BACKEND_NONE)
			continue;
		put(&o, "netechod_backend_up{listener=\"%s\"} %d\n", esc(&l, v[i].info.name),
		    v[i].backend == STATS_BACKEND_UP);
	}

	if (o.oom) {
		free(o.p);
		return -ENOMEM;
	}
	*ret = o.p;
	*ret_len = o.len;
	return 0;
}
