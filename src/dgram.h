#pragma once

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util.h"

struct listener_rt;

/* The local end of a datagram: the socket it came in on and, on a
 * wildcard socket, the address it was sent to (IP_PKTINFO, IPV6_PKTINFO).
 * A reply sent from it leaves from that address, as SPEC section 4 wants,
 * so a client that connect()ed its socket accepts it. Plain data: the UDP
 * chat room keeps one per peer in shared memory. */
struct dgram_local {
	int fd;
	/* AF_INET (IPv4-mapped included), AF_INET6, or 0: no address
	 * known, the kernel picks the source as for any send. */
	int family;
	unsigned ifindex; /* IPv6: the interface the datagram came in on */
	union {
		struct in_addr in;
		struct in6_addr in6;
	} addr;
};

/* One received datagram as a service sees it. */
struct dgram {
	struct listener_rt *lst;
	struct dgram_local local;
	union sockaddr_any peer;
	const char *prefix; /* expanded for the serving worker, or NULL */
	size_t prefix_len;
};

/* Send a datagram to d->peer, from d->local. 0, or -errno (already
 * counted as dropped). */
int dgram_reply(struct dgram *d, const struct iovec *iov, int n_iov);
/* Send a datagram to another address, from `from` (a local end remembered
 * from an earlier datagram), or with from NULL (or without an fd) from
 * d's socket with the source the kernel picks. */
int dgram_send_to(struct dgram *d, const union sockaddr_any *to, const struct dgram_local *from,
		  const struct iovec *iov, int n_iov);
