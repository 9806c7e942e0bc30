#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "dgram.h"
#include "admission.h"
#include "handler.h"
#include "listener.h"
#include "log.h"
#include "prefix.h"
#include "service.h"
#include "udp.h"

int
udp_worker_init(struct udp_worker *w, struct listener_rt *l)
{
	*w = (struct udp_worker){ .lst = l };
	w->buf = malloc(DGRAM_MAX);
	if (!w->buf)
		return -ENOMEM;
	w->prefix_len = prefix_expand(l->cfg.prefix, l->cfg.name, w->prefix, sizeof(w->prefix));
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

/* refused: a REFUSE_ reason (deny), else dropped with drop_why. */
static void
drop(struct udp_worker *w, const union sockaddr_any *src, const char *why, bool refused,
     enum drop_reason drop_why)
{
	char peer[SOCKADDR_STR_MAX];

	if (refused)
		STATS_ADD(w->lst, refused[REFUSE_DENY], 1);
	else
		STATS_ADD(w->lst, dropped[drop_why], 1);
	if (log_get_max_level() < LOG_WARNING || !udp_worker_log_ok(w, src, now_usec()))
		return;
	log_listener(LOG_WARNING, w->lst->cfg.name,
		     sockaddr_to_string(src, peer, sizeof(peer)),
		     "datagram dropped: %s (further drops from this source are not logged for a minute)",
		     why);
}

int
udp_enable_pktinfo(int fd)
{
	union sockaddr_any a;
	socklen_t len = sizeof(a);
	int one = 1, v6only = 0;
	socklen_t vl = sizeof(v6only);

	if (getsockname(fd, &a.sa, &len) < 0)
		return -errno;
	/* A socket bound to one address sends from it anyway; only a
	 * wildcard one needs to be told each datagram's destination. */
	if (a.sa.sa_family == AF_INET) {
		if (a.in.sin_addr.s_addr != htonl(INADDR_ANY))
			return 0;
		if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
			return -errno;
		return 1;
	}
	if (a.sa.sa_family != AF_INET6 || !IN6_IS_ADDR_UNSPECIFIED(&a.in6.sin6_addr))
		return 0;
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0)
		return -errno;
	/* Dual-stack: IPv4 datagrams also get IP_PKTINFO, whose
	 * ipi_spec_dst is the right source even for one sent to a
	 * broadcast address. Kernels that refuse it still give IPV6_PKTINFO
	 * with the v4-mapped destination. */
	if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &vl) == 0 && !v6only)
		(void)setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	return 1;
}

static bool
reply_source_ok_v4(struct in_addr a)
{
	uint32_t h = ntohl(a.s_addr);

	/* Never a source: what the kernel would refuse to send from. */
	return h != INADDR_ANY && h != INADDR_BROADCAST && !IN_MULTICAST(h);
}

/* Where the datagram was sent to, from its control messages; local->family
 * stays 0 when they say nothing usable. */
static void
local_from_cmsg(struct msghdr *mh, struct dgram_local *local)
{
	bool have_v4 = false;

	if (mh->msg_flags & MSG_CTRUNC)
		/* Cut short: whatever is there may be partial. The reply
		 * goes out with the source the kernel picks. */
		return;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO &&
		    cm->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			if (!reply_source_ok_v4(pi.ipi_spec_dst))
				continue;
			local->family = AF_INET;
			local->addr.in = pi.ipi_spec_dst;
			local->ifindex = 0;
			have_v4 = true;
		} else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO &&
			   cm->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo)) && !have_v4) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			if (IN6_IS_ADDR_V4MAPPED(&pi.ipi6_addr)) {
				struct in_addr v4;

				memcpy(&v4, &pi.ipi6_addr.s6_addr[12], sizeof(v4));
				if (!reply_source_ok_v4(v4))
					continue;
				local->family = AF_INET;
				local->addr.in = v4;
				local->ifindex = 0;
			} else if (!IN6_IS_ADDR_MULTICAST(&pi.ipi6_addr) &&
				   !IN6_IS_ADDR_UNSPECIFIED(&pi.ipi6_addr)) {
				local->family = AF_INET6;
				local->addr.in6 = pi.ipi6_addr;
				local->ifindex = (unsigned)pi.ipi6_ifindex;
			}
		}
	}
}

/* Receive and handle one datagram: 1, 0 (nothing usable: an ICMP error
 * surfaced), or -errno (-EAGAIN: none waiting). */
static int
serve_one(struct udp_worker *w, int fd)
{
	struct listener_rt *l = w->lst;
	struct dgram d = {
		.lst = l,
		.local = { .fd = fd },
		.prefix = w->prefix_len ? w->prefix : NULL,
		.prefix_len = w->prefix_len,
	};
	/* Both kinds fit: a dual-stack socket may attach both. */
	union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(struct in_pktinfo)) +
			    CMSG_SPACE(sizeof(struct in6_pktinfo))];
	} ctl;
	struct iovec iov = { .iov_base = w->buf, .iov_len = DGRAM_MAX };
	struct msghdr mh = {
		.msg_name = &d.peer,
		.msg_namelen = sizeof(d.peer),
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	enum udpguard_verdict v;
	ssize_t n;

	n = recvmsg(fd, &mh, 0);
	if (n < 0) {
		if (errno == EWOULDBLOCK)
			return -EAGAIN;
		/* ICMP errors from earlier sends surface here
		 * (ECONNREFUSED and friends): not ours to act on. */
		if (errno == ECONNREFUSED || errno == EHOSTUNREACH ||
		    errno == ENETUNREACH || errno == EMSGSIZE)
			return 0;
		return -errno;
	}
	STATS_ADD(l, bytes_in, (uint64_t)n);
	STATS_ADD(l, dgrams_in, 1);
	/* Only a wildcard socket has pktinfo on (udp_enable_pktinfo). */
	if (mh.msg_controllen > 0)
		local_from_cmsg(&mh, &d.local);
	v = udpguard_check(&l->guard, &d.peer);
	if (v != UDPGUARD_OK) {
		drop(w, &d.peer, udpguard_verdict_to_string(v), false, DROP_GUARD);
		return 1;
	}
	if (!admission_acl_ok(l, &d.peer)) {
		drop(w, &d.peer, "source not allowed", true, DROP_GUARD);
		return 1;
	}
	if (l->ratelimit && !ratelimit_allow(l->ratelimit, &d.peer, now_usec())) {
		drop(w, &d.peer, "rate limit exceeded", false, DROP_RATE_LIMIT);
		return 1;
	}
	l->service->on_datagram(&d, w->buf, (size_t)n);
	return 1;
}

int
udp_worker_serve(struct udp_worker *w, int fd, unsigned max)
{
	void (*order)(struct listener_rt *l, bool begin) = w->lst->service->datagram_order;
	unsigned got = 0;

	while (got < max) {
		int r;

		if (order)
			order(w->lst, true);
		r = serve_one(w, fd);
		if (order)
			order(w->lst, false);
		if (r == -EAGAIN || r == -EINTR)
			return got ? (int)got : r;
		if (r < 0)
			return r;
		got += (unsigned)r;
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
	struct dgram d = { .lst = w->lst, .local = { .fd = fd } };
	uint64_t now;

	if (!svc->tick)
		return;
	now = now_usec();
	if (now < w->next_tick)
		return;
	w->next_tick = handler_tick(w->lst, &d, now);
}

void
udp_shutdown_notice(struct listener_rt *l)
{
	struct dgram d = { .lst = l, .local = { .fd = l->fds[0] } };

	if (l->service->on_udp_shutdown)
		l->service->on_udp_shutdown(l, &d);
}
