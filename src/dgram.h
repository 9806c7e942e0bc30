#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util.h"

struct listener_rt;

/* One received datagram as a service sees it. */
struct dgram {
	struct listener_rt *lst;
	int fd;
	union sockaddr_any peer;
	const char *prefix; /* expanded for the serving worker, or NULL */
	size_t prefix_len;
};

/* Send a datagram to d->peer. 0, or -errno (already counted as dropped). */
int dgram_reply(struct dgram *d, const struct iovec *iov, int n_iov);
/* Send a datagram to another address from the same socket. */
int dgram_send_to(struct dgram *d, const union sockaddr_any *to, const struct iovec *iov,
		  int n_iov);
