#pragma once

#include <stdbool.h>

struct listener_rt;
union sockaddr_any;

/* Who may connect, and how a connection is turned away: the rules every
 * model shares, in one place. Thread-safe. */

/* allow/deny. True when the peer may be served. */
bool admission_acl_ok(const struct listener_rt *l, const union sockaddr_any *peer);

/* Admission of a stream connection at accept: allow/deny, then
 * max_clients, then per_source. NULL when admitted (then
 * admission_release() must follow the close), else the reason it was
 * refused.
 *
 * A proxy_protocol listener (SPEC 10) admits in two steps: at accept the
 * peer, a balancer, must be in proxy_from and max_clients counts it;
 * allow/deny and per_source wait for the header's source address,
 * admission_admit_source(). Until then the connection holds only its
 * max_clients count: admission_release_accepted() gives it back if the
 * header never comes. */
const char *admission_admit(struct listener_rt *l, const union sockaddr_any *peer);
/* After the header: allow/deny and per_source for src, the client's
 * address. A health check (the header names no client, src is the
 * balancer) is admitted by proxy_from alone: allow/deny are about clients,
 * but per_source counts it. NULL when admitted (admission_release(l, src)
 * follows the close); else the reason, and the max_clients count was
 * given back. */
const char *admission_admit_source(struct listener_rt *l, const union sockaddr_any *src,
				   bool health_check);
void admission_release_accepted(struct listener_rt *l);
void admission_release(struct listener_rt *l, const union sockaddr_any *peer);

/* Turn away an accepted connection that was not admitted: count it, tell
 * the client what the service says for "server full" (chat; never on a
 * proxy_protocol listener, where nothing goes out before the header),
 * close fd, log (rate-limited). via: the balancer when peer came from a
 * PROXY header, else NULL. */
void admission_refuse(struct listener_rt *l, int fd, const union sockaddr_any *peer,
		      const union sockaddr_any *via, const char *reason);
