#pragma once

#include <stdbool.h>

struct listener_rt;
union sockaddr_any;

/* Who may connect, and how a connection is turned away: the rules every
 * model shares, in one place. Thread-safe. */

/* allow/deny. True when the peer may be served. */
bool admission_acl_ok(const struct listener_rt *l, const union sockaddr_any *peer);

/* Admission of a stream connection: allow/deny, then max_clients, then
 * per_source. NULL when admitted (then admission_release() must follow
 * the close), else the reason it was refused. */
const char *admission_admit(struct listener_rt *l, const union sockaddr_any *peer);
void admission_release(struct listener_rt *l, const union sockaddr_any *peer);

/* Turn away an accepted connection that was not admitted: count it, tell
 * the client what the service says for "server full" (chat), close fd,
 * log (rate-limited). */
void admission_refuse(struct listener_rt *l, int fd, const union sockaddr_any *peer,
		      const char *reason);
