#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

struct listener_rt;
struct conn_origin;
struct acceptor;
struct proxy_wait;

/* Called with an admitted connection (admission_admit() said yes) in *fd.
 * NULL: the callee took it, and its session releases the admission when
 * it ends (session_end()). Else the reason the connection cannot be
 * served (out of memory, cannot fork, ...): the callee freed what it set
 * up, and the acceptor releases the admission and refuses the connection
 * (admission_refuse() closes *fd), the one way every model turns a
 * connection away. A callee that handed the client on (the fork model's
 * chat hub) leaves its own end of the connection in *fd instead. */
typedef const char *(*acceptor_fn)(struct acceptor *a, int *fd, const struct conn_origin *o);

/* How long accepting pauses after EMFILE and friends. */
#define ACCEPTOR_BACKOFF_USEC (100 * USEC_PER_MSEC)
/* SPEC 10: the PROXY header must arrive whole this soon after the accept. */
#define ACCEPTOR_PROXY_TIMEOUT_USEC (5 * USEC_PER_SEC)

/* The accept path every TCP model shares: bounded batches, EMFILE/ENFILE
 * back-off with a timer (never a busy loop), admission (allow/deny,
 * max_clients, per_source) and refusal.
 *
 * On a proxy_protocol listener the acceptor also waits for each
 * connection's PROXY header, in its own loop beside the listening
 * sockets, so that a balancer that connects and sends nothing holds up no
 * one: it reads only header bytes (peeking, so what follows stays in the
 * socket for the session), closes what has no valid header within
 * ACCEPTOR_PROXY_TIMEOUT_USEC, admits the header's source and only then
 * hands the connection to on_conn, with the client as the peer. The
 * model and the session never see a header. */
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
	/* Connections waiting for their PROXY header, oldest first (so in
	 * deadline order); one timer for the oldest. */
	struct proxy_wait *wait_head, *wait_tail;
	struct loop_timer wait_timer;
};

int acceptor_start(struct acceptor *a);
/* Stops accepting and closes the connections still waiting for a header
 * (without a word: they were never served). */
void acceptor_stop(struct acceptor *a);
