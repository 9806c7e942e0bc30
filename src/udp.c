#include <poll.h>
#include <sys/socket.h>

#include "dgram.h"
#include "handler.h"
#include "listener.h"
#include "log.h"
#include "service.h"
#include "udp.h"

int
udp_worker_init(struct udp_worker *w, struct listener_rt *l)
{
	*w = (struct udp_worker){ .lst = l };
	w->buf = malloc(DGRAM_MAX);
	if (!w->buf)
		return -ENOMEM;
	w->prefix_len = handler_expand_prefix(l, w->prefix, sizeof(w->prefix));
	return 0;
}

void
udp_worker_done(struct udp_worker *w)
{
	free(w->buf);
	w->buf = NULL;
}

bool
udp_worker_log_ok(struct udp_worker *w, const union sockaddr_any *src, uint64_t now)
{
	uint8_t a[16] = { 0 };
	uint32_t h = 2166136261u;
	unsigned slot;

	(void)sockaddr_addr_bytes(src, a);
	for (size_t i = 0; i < sizeof(a); i++)
		h = (h ^ a[i]) * 16777619u;
	slot = h % UDP_LOGSEEN_SLOTS;
	if (w->logseen[slot].when && memcmp(w->logseen[slot].addr, a, 16) == 0 &&
	    now - w->logseen[slot].when < 60 * USEC_PER_SEC)
		return false;
	memcpy(w->logseen[slot].addr, a, 16);
	w->logseen[slot].when = now;
	return true;
}

static void
drop(struct udp_worker *w, const union sockaddr_any *src, const char *why, bool refused)
{
	char peer[SOCKADDR_STR_MAX];

	if (refused)
		STATS_ADD(w->lst, refused, 1);
	else
		STATS_ADD(w->lst, dropped, 1);
	if (log_get_max_level() < LOG_WARNING || !udp_worker_log_ok(w, src, now_usec()))
		return;
	log_listener(LOG_WARNING, w->lst->cfg.name,
		     sockaddr_to_string(src, peer, sizeof(peer)),
		     "datagram dropped: %s (further drops from this source are not logged for a minute)",
		     why);
}

int
udp_worker_serve(struct udp_worker *w, int fd, unsigned max)
{
	struct listener_rt *l = w->lst;
	unsigned got = 0;

	while (got < max) {
		struct dgram d = {
			.lst = l,
			.fd = fd,
			.prefix = w->prefix_len ? w->prefix : NULL,
			.prefix_len = w->prefix_len,
		};
		socklen_t alen = sizeof(d.peer);
		enum udpguard_verdict v;
		ssize_t n;

		n = recvfrom(fd, w->buf, DGRAM_MAX, 0, &d.peer.sa, &alen);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return got ? (int)got : -EAGAIN;
			if (errno == EINTR)
				return got ? (int)got : -EINTR;
			/* ICMP errors from earlier sends surface here
			 * (ECONNREFUSED and friends): not ours to act on. */
			if (errno == ECONNREFUSED || errno == EHOSTUNREACH ||
			    errno == ENETUNREACH || errno == EMSGSIZE)
				continue;
			return -errno;
		}
		got++;
		STATS_ADD(l, bytes_in, (uint64_t)n);
		v = udpguard_check(&l->guard, &d.peer);
		if (v != UDPGUARD_OK) {
			drop(w, &d.peer, udpguard_verdict_to_string(v), false);
			continue;
		}
		if (!handler_acl_ok(l, &d.peer)) {
			drop(w, &d.peer, "source not allowed", true);
			continue;
		}
		if (l->ratelimit && !ratelimit_allow(l->ratelimit, &d.peer, now_usec())) {
			drop(w, &d.peer, "rate limit exceeded", false);
			continue;
		}
		l->service->on_datagram(&d, w->buf, (size_t)n);
	}
	return (int)got;
}

int
udp_worker_block(struct udp_worker *w, const int *fds, size_t n, int timeout_ms)
{
	struct pollfd p[LISTENER_ADDRS_MAX];
	int r, served = 0;

	if (n == 1)
		return udp_worker_serve(w, fds[0], 1);
	n = MIN(n, ELEMENTSOF(p));
	for (size_t i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	r = poll(p, (nfds_t)n, timeout_ms);
	if (r < 0)
		return -errno;
	for (size_t i = 0; i < n; i++) {
		if (!p[i].revents)
			continue;
		r = udp_worker_serve(w, fds[i], 16);
		if (r > 0)
			served += r;
		else if (r != -EAGAIN && r != -EINTR)
			return r;
	}
	return served ? served : -EAGAIN;
}

void
udp_worker_tick(struct udp_worker *w, int fd)
{
	const struct service_ops *svc = w->lst->service;
	struct dgram d = { .lst = w->lst, .fd = fd };
	uint64_t now, next;

	if (!svc->tick)
		return;
	now = now_usec();
	if (now < w->next_tick)
		return;
	next = svc->tick(w->lst, &d, now);
	if (!next || next > now + HANDLER_TICK_USEC)
		next = now + HANDLER_TICK_USEC;
	w->next_tick = next;
}

void
udp_shutdown_notice(struct listener_rt *l)
{
	struct dgram d = { .lst = l, .fd = l->fds[0] };

	if (l->service->on_udp_shutdown)
		l->service->on_udp_shutdown(l, &d);
}
