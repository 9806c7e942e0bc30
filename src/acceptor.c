#include <sys/socket.h>

#include "acceptor.h"
#include "handler.h"
#include "util.h"

#define ACCEPT_BATCH 64

static void
set_all(struct acceptor *a, unsigned events)
{
	for (size_t i = 0; i < a->n_fds; i++)
		(void)loop_set_events(a->loop, a->fds[i], events);
}

static void
on_resume(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct acceptor *a = userdata;

	if (!a->stopped)
		set_all(a, a->events);
}

static void
on_listen(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct acceptor *a = userdata;

	/* Take what is queued, but let established connections be served
	 * between bursts. */
	for (int i = 0; i < ACCEPT_BATCH && !a->stopped; i++) {
		union sockaddr_any peer;
		socklen_t alen = sizeof(peer);
		const char *why;
		int cfd;

		cfd = accept4(fd, &peer.sa, &alen, SOCK_CLOEXEC | a->accept_flags);
		if (cfd < 0) {
			if (errno == EAGAIN)
				return;
			if (handler_accept_error(a->lst, -errno)) {
				/* Out of fds or memory: the listen queue
				 * stays readable, so stop watching it for a
				 * while instead of spinning. */
				set_all(a, 0);
				loop_timer_set(l, &a->pause_timer,
					       loop_now(l) + HANDLER_ACCEPT_BACKOFF_USEC, on_resume,
					       a);
				return;
			}
			continue;
		}
		why = handler_admit(a->lst, &peer);
		if (why) {
			handler_refuse(a->lst, cfd, &peer, why);
			continue;
		}
		a->on_conn(a, cfd, &peer);
	}
}

int
acceptor_start(struct acceptor *a)
{
	int r;

	for (size_t i = 0; i < a->n_fds; i++) {
		r = fd_set_nonblock(a->fds[i], true);
		if (r < 0)
			return r;
		r = loop_add(a->loop, a->fds[i], a->events, on_listen, a);
		if (r < 0)
			return r;
	}
	return 0;
}

void
acceptor_stop(struct acceptor *a)
{
	if (a->stopped)
		return;
	a->stopped = true;
	for (size_t i = 0; i < a->n_fds; i++)
		loop_remove(a->loop, a->fds[i]);
	loop_timer_set(a->loop, &a->pause_timer, 0, NULL, NULL);
}
