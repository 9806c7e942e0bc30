#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

struct listener_rt;
union sockaddr_any;
struct acceptor;

/* Called with an admitted connection (admission_admit() said yes) in *fd.
 * NULL: the callee took it, and its session releases the admission when
 * it ends (session_end()). Else the reason the connection cannot be
 * served (out of memory, cannot fork, ...): the callee freed what it set
 * up, and the acceptor releases the admission and refuses the connection
 * (admission_refuse() closes *fd), the one way every model turns a
 * connection away. A callee that handed the client on (the fork model's
 * chat hub) leaves its own end of the connection in *fd instead. */
typedef const char *(*acceptor_fn)(struct acceptor *a, int *fd, const union sockaddr_any *peer);

/* How long accepting pauses after EMFILE and friends. */
#define ACCEPTOR_BACKOFF_USEC (100 * USEC_PER_MSEC)

/* The accept path every TCP model shares: bounded batches, EMFILE/ENFILE
 * back-off with a timer (never a busy loop), admission (allow/deny,
 * max_clients, per_source) and refusal. */
struct acceptor {
	struct listener_rt *lst;
	struct loop *loop;
	const int *fds;
	size_t n_fds;
	unsigned events;   /* LOOP_READ, maybe LOOP_EXCLUSIVE */
	int accept_flags;  /* SOCK_NONBLOCK for event loops */
	acceptor_fn on_conn;
	void *userdata;
	struct loop_timer pause_timer;
	bool stopped;
};

int acceptor_start(struct acceptor *a);
void acceptor_stop(struct acceptor *a);
