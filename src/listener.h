#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "util.h"

/* Turning a listener's address into sockets. Never logs. */

/* Most sockets one listener's address may expand to. */
#define LISTENER_ADDRS_MAX 16

/* "*" is one dual-stack [::] socket (0.0.0.0 where IPv6 is off); a
 * literal is itself; a host name is every address it resolves to.
 * Returns the number of addresses, or -errno; name resolution errors come
 * back as -EADDRNOTAVAIL with *reterr_gai set to the EAI_ code. */
int listener_resolve(const struct listener_config *cfg, union sockaddr_any ret[LISTENER_ADDRS_MAX],
		     int *reterr_gai);

/* Create, bind (and listen, tcp) one socket. reuseport for epoll workers. */
int listener_bind(const struct listener_config *cfg, const union sockaddr_any *addr,
		  bool reuseport, int *ret_fd);

/* Is fd a socket of cfg's protocol bound to addr (or, with addr NULL, to
 * cfg's port on an address cfg's address would produce)? */
bool listener_fd_matches(int fd, const struct listener_config *cfg,
			 const union sockaddr_any *addrs, size_t n_addrs);

/* "127.0.0.1:7007", "[::1]:7007", "*:7007", "localhost:7007". */
const char *listener_format_bind(const struct listener_config *cfg, char *buf, size_t len);
