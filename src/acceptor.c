#include <pthread.h>
#include <sys/socket.h>

#include "acceptor.h"
#include "admission.h"
#include "listener-rt.h"
#include "log.h"
#include "util.h"

#define ACCEPT_BATCH 64

static struct log_ratelimit accept_rl = LOG_RATELIMIT_INIT(10 * USEC_PER_SEC, 1);
static pthread_mutex_t accept_rl_lock = PTHREAD_MUTEX_INITIALIZER;

/* accept() failed: log rate-limited. True when the error means "out of fds
 * or memory" and accepting should pause for a while. */
static bool
accept_error(struct listener_rt *l, int error)
{
	unsigned suppressed = 0;
	bool ok;

	switch (error) {
	case -EINTR:
	case -EAGAIN:
	case -ECONNABORTED:
	case -EPROTO:
	case -EPERM:
		/* The connection went away before we took it, or a
		 * firewall said no: nothing to do. */
		return false;
	default:
		break;
	}
	pthread_mutex_lock(&accept_rl_lock);
	ok = log_ratelimit_ok(&accept_rl, now_usec(), &suppressed);
	pthread_mutex_unlock(&accept_rl_lock);
	if (ok)
		log_full_errno(LOG_WARNING, error, l->cfg.name, NULL,
			       "accept failed, pausing new connections for %u ms%s",
			       (unsigned)(ACCEPTOR_BACKOFF_USEC / USEC_PER_MSEC),
			       suppressed ? " (repeated)" : "");
	return true;
}

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
			if (accept_error(a->lst, -errno)) {
				/* Out of fds or memory: the listen queue
				 * stays readable, so stop watching it for a
				 * while instead of spinning. */
				set_all(a, 0);
				loop_timer_set(l, &a->pause_timer,
					       loop_now(l) + ACCEPTOR_BACKOFF_USEC, on_resume,
					       a);
				return;
			}
			continue;
		}
		why = admission_admit(a->lst, &peer);
		if (why) {
			admission_refuse(a->lst, cfd, &peer, why);
			continue;
		}
		why = a->on_conn(a, &cfd, &peer);
		if (why) {
			admission_release(a->lst, &peer);
			admission_refuse(a->lst, cfd, &peer, why);
		}
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
