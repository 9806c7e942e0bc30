#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "dgram.h"
#include "listener-rt.h"

/* The datagram transport services answer through: a reply leaves from the
 * address the datagram came in on (IP_PKTINFO, IPV6_PKTINFO). */

/* Room for one IP_PKTINFO or IPV6_PKTINFO control message, aligned. */
union pktinfo_ctl {
	struct cmsghdr align;
	uint8_t buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
};

/* The control message that makes a datagram leave from `from`. An IPv4
 * source goes as IP_PKTINFO also on a dual-stack socket: a v4-mapped
 * destination takes the IPv4 path, which reads it there. ifindex stays 0
 * for IPv4: it would replace the address with the interface's primary
 * one. Returns the control length, 0 for none. */
static size_t
pktinfo_build(const struct dgram_local *from, union pktinfo_ctl *ctl)
{
	struct cmsghdr *cm = &ctl->align;

	memset(ctl, 0, sizeof(*ctl));
	if (from->family == AF_INET) {
		struct in_pktinfo pi = { .ipi_spec_dst = from->addr.in };

		cm->cmsg_level = IPPROTO_IP;
		cm->cmsg_type = IP_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		return CMSG_SPACE(sizeof(pi));
	}
	if (from->family == AF_INET6) {
		struct in6_pktinfo pi = { .ipi6_addr = from->addr.in6,
					  .ipi6_ifindex = from->ifindex };

		cm->cmsg_level = IPPROTO_IPV6;
		cm->cmsg_type = IPV6_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		return CMSG_SPACE(sizeof(pi));
	}
	return 0;
}

static int
send_datagram(struct listener_rt *l, const struct dgram_local *from,
	      const union sockaddr_any *to, const struct iovec *iov, int n_iov)
{
	union pktinfo_ctl ctl;
	struct msghdr mh = {
		.msg_name = (void *)&to->sa,
		.msg_namelen = sockaddr_len(to),
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = (size_t)n_iov,
	};
	ssize_t n;

	if (from->family) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = pktinfo_build(from, &ctl);
		if (!mh.msg_controllen)
			mh.msg_control = NULL;
	}
	for (;;) {
		n = sendmsg(from->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0 || errno != EINTR)
			break;
	}
	if (n < 0 && mh.msg_control && (errno == EINVAL || errno == EADDRNOTAVAIL)) {
		/* The address went away since the datagram came in: a
		 * reply from another one still serves a client that did
		 * not connect() its socket. */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
		do
			n = sendmsg(from->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
	}
	if (n < 0) {
		/* A full socket buffer or an unreachable peer: UDP gives no
		 * guarantee, so the datagram is dropped and counted. */
		STATS_ADD(l, dropped[DROP_ERROR], 1);
		return -errno;
	}
	STATS_ADD(l, bytes_out, (uint64_t)n);
	STATS_ADD(l, dgrams_out, 1);
	return 0;
}

int
dgram_reply(struct dgram *d, const struct iovec *iov, int n_iov)
{
	return send_datagram(d->lst, &d->local, &d->peer, iov, n_iov);
}

int
dgram_send_to(struct dgram *d, const union sockaddr_any *to, const struct dgram_local *from,
	      const struct iovec *iov, int n_iov)
{
	struct dgram_local any = { .fd = d->local.fd };

	if (!from || from->fd < 0)
		from = &any;
	return send_datagram(d->lst, from, to, iov, n_iov);
}
