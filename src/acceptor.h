#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

struct listener_rt;
union sockaddr_any;
struct acceptor;

/* Called with an admitted connection (handler_admit() said yes); the
 * callee owns fd and must handler_release() when it ends. */
typedef void (*acceptor_fn)(struct acceptor *a, int fd, const union sockaddr_any *peer);

/* The accept path every TCP model shares: bounded batches, EMFILE/ENFILE
 * back-off with a timer (never a busy loop), allow/deny and max_clients. */
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
