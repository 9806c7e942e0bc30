#include <string.h>

#include "dgram.h"
#include "listener-rt.h"
#include "prefix.h"
#include "service.h"
#include "session.h"

/* RFC 862 echo. Without a prefix every byte goes back as it came, and the
 * service never buffers more than the session lets it. With a prefix the
 * echo is line-oriented: the prefix goes in front of each line as the
 * line's first byte passes through, so nothing waits for a newline. */

struct echo_state {
	bool at_line_start;
	size_t prefix_len;
	char prefix[];
};

static void
echo_on_open(struct session *s)
{
	char buf[PREFIX_MAX * 4 + 64];
	struct echo_state *e;
	size_t len;

	if (!s->lst->cfg.prefix)
		return;
	len = prefix_expand(s->lst->cfg.prefix, s->lst->cfg.name, buf, sizeof(buf));
	e = malloc(sizeof(*e) + len);
	if (!e) {
		session_abort(s, "out of memory");
		return;
	}
	e->at_line_start = true;
	e->prefix_len = len;
	memcpy(e->prefix, buf, len);
	s->service_data = e;
}

static size_t
echo_prefixed(struct session *s, struct echo_state *e, const uint8_t *p, size_t n)
{
	size_t used = 0;

	while (used < n) {
		size_t space = session_send_space(s), chunk;
		const uint8_t *nl;
		struct iovec iov[2];
		int k = 0;

		if (e->at_line_start) {
			if (space < e->prefix_len + 1)
				break;
			iov[k++] = (struct iovec){ e->prefix, e->prefix_len };
			space -= e->prefix_len;
		} else if (space == 0)
			break;
		nl = memchr(p + used, '\n', n - used);
		chunk = nl ? (size_t)(nl - (p + used)) + 1 : n - used;
		if (chunk > space)
			chunk = space;
		iov[k++] = (struct iovec){ (void *)(p + used), chunk };
		session_sendv(s, iov, k);
		used += chunk;
		e->at_line_start = p[used - 1] == '\n';
		if (s->broken)
			return n;
	}
	return used;
}

static size_t
echo_on_data(struct session *s, const uint8_t *p, size_t n)
{
	size_t m;

	if (s->service_data)
		return echo_prefixed(s, s->service_data, p, n);
	m = MIN(n, session_send_space(s));
	session_send(s, p, m);
	return m;
}

static void
echo_on_close(struct session *s)
{
	/* Only a prefix keeps state: skip free(NULL) (see buffer_release). */
	if (s->service_data)
		free(s->service_data);
	s->service_data = NULL;
}

static void
echo_on_datagram(struct dgram *d, const uint8_t *p, size_t n)
{
	struct iovec iov[2];
	int k = 0;

	if (d->prefix_len)
		iov[k++] = (struct iovec){ (void *)d->prefix, d->prefix_len };
	iov[k++] = (struct iovec){ (void *)p, n };
	(void)dgram_reply(d, iov, k);
}

const struct service_ops service_echo_ops = {
	.name = "echo",
	.datagram_budget = true,
	.on_open = echo_on_open,
	.on_data = echo_on_data,
	.on_close = echo_on_close,
	.on_datagram = echo_on_datagram,
};
