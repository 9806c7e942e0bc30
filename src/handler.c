#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "handler.h"
#include "log.h"
#include "service.h"
#include "session.h"
#include "udp.h"

static const struct model_ops *const models[_MODEL_MAX] = {
	[MODEL_FORK] = &handler_fork_ops,
	[MODEL_THREAD] = &handler_thread_ops,
	[MODEL_SELECT] = &handler_loop_ops,
	[MODEL_POLL] = &handler_loop_ops,
	[MODEL_EPOLL] = &handler_loop_ops,
};

void
handler_notify_ready(struct listener_rt *l)
{
	if (l->ready_fd < 0)
		return;
	(void)write_all(l->ready_fd, "R", 1);
	l->ready_fd = safe_close(l->ready_fd);
}

int
handler_signalfd(bool sigchld, int flags)
{
	sigset_t mask;
	int fd;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigchld)
		sigaddset(&mask, SIGCHLD);
	/* The dispatcher blocked them before fork (SIGCHLD it does not):
	 * blocked, they wait for the signalfd. */
	(void)sigprocmask(SIG_BLOCK, &mask, NULL);
	fd = signalfd(-1, &mask, flags | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

uint64_t
handler_tick(struct listener_rt *l, struct dgram *d, uint64_t now)
{
	uint64_t next = l->service->tick(l, d, now);

	/* At least once a second, so new deadlines are never missed by
	 * more than that. */
	if (!next || next > now + HANDLER_TICK_USEC)
		next = now + HANDLER_TICK_USEC;
	return next;
}

void
handler_block_signals(void)
{
	sigset_t all;

	sigfillset(&all);
	(void)pthread_sigmask(SIG_BLOCK, &all, NULL);
}

void
handler_tune_stream(int fd)
{
	int one = 1;

	/* Echo answers small writes at once; Nagle would only add delay. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int
handler_main(struct listener_rt *l)
{
	const struct model_ops *m;
	int r;

	/* Die with the dispatcher, whatever killed it. */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		return 1;

	l->service = service_get(l->cfg.service);
	l->guard.port_map = l->udp_port_map;
	if (l->cfg.protocol == PROTOCOL_UDP) {
		r = udpguard_load_broadcast(&l->guard);
		if (r < 0)
			log_full_errno(LOG_WARNING, r, l->cfg.name, NULL,
				       "cannot list interface broadcast addresses");
		/* Here, not at bind: socket-activated fds need it too. */
		for (size_t i = 0; i < l->n_fds; i++) {
			r = udp_enable_pktinfo(l->fds[i]);
			if (r < 0)
				log_full_errno(LOG_WARNING, r, l->cfg.name, NULL,
					       "cannot learn datagram destinations; replies may leave from another address");
		}
	}
	if (l->service->listener_init) {
		r = l->service->listener_init(l);
		if (r < 0)
			return log_full_errno(LOG_ERR, r, l->cfg.name, NULL,
					      "cannot set up the %s service",
					      l->service->name),
			       1;
	}
	if (l->cfg.per_source > 0 && l->cfg.protocol == PROTOCOL_TCP) {
		r = srccount_new(&l->per_source, l->cfg.max_clients);
		if (r < 0)
			return log_full_errno(LOG_ERR, r, l->cfg.name, NULL, "out of memory"), 1;
	}
	if (l->cfg.rate_limit > 0 && l->cfg.protocol == PROTOCOL_UDP &&
	    l->service->datagram_budget) {
		/* Shared memory: pre-forked workers share one budget. */
		r = ratelimit_new(&l->ratelimit, l->cfg.rate_limit, HANDLER_RATELIMIT_SLOTS, true);
		if (r < 0)
			return log_full_errno(LOG_ERR, r, l->cfg.name, NULL, "out of memory"), 1;
	}
	m = models[l->cfg.model];
	log_listener(LOG_DEBUG, l->cfg.name, NULL, "serving %s/%s with model %s",
		     protocol_to_string(l->cfg.protocol), l->service->name, m->name);
	r = m->run(l);
	if (l->service->listener_done)
		l->service->listener_done(l);
	l->per_source = srccount_free(l->per_source);
	l->ratelimit = ratelimit_free(l->ratelimit);
	return r;
}

static void
set_timeouts(int fd, unsigned seconds)
{
	struct timeval tv = { .tv_sec = seconds };

	/* 0 = block forever, which is what idle_timeout = 0 means and
	 * what a freshly accepted socket already does. */
	if (seconds == 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Wait for what ev names with poll(), also for wake_fd (>= 0) and the
 * idle deadline; step the session with what is ready. */
static unsigned
poll_step(struct session *s, unsigned ev, int wake_fd, uint8_t *scratch, size_t size)
{
	struct pollfd p[2] = {
		{ .fd = s->fd, .events = (short)((ev & SESSION_READ ? POLLIN : 0) |
						 (ev & SESSION_WRITE ? POLLOUT : 0)) },
		{ .fd = wake_fd, .events = POLLIN },
	};
	uint64_t now = now_usec(), due = session_idle_deadline(s);
	unsigned ready = 0;
	int timeout = -1, r;

	if (session_expire(s, now))
		return session_next(s);
	if (due)
		timeout = (int)MIN((due - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC,
				   (uint64_t)INT32_MAX);
	if (ev & SESSION_HELD) {
		int recheck = (int)(SESSION_HOLD_RECHECK_USEC / USEC_PER_MSEC);

		timeout = timeout < 0 ? recheck : MIN(timeout, recheck);
		/* A hang-up must not make poll() return at once meanwhile. */
		if (!p[0].events)
			p[0].fd = -1;
	}
	r = poll(p, wake_fd >= 0 ? 2 : 1, timeout);
	if (r < 0) {
		/* EINTR: a stop signal (fork model); the rest cannot be. */
		if (errno != EINTR)
			session_abort(s, "error");
		return session_next(s);
	}
	if (wake_fd >= 0 && p[1].revents) {
		uint64_t v;

		(void)!read(wake_fd, &v, sizeof(v));
	}
	if (p[0].revents & (POLLOUT | POLLERR | POLLHUP))
		ready |= SESSION_WRITE;
	if (p[0].revents & (POLLIN | POLLERR | POLLHUP))
		ready |= SESSION_READ;
	return session_step(s, ready, scratch, size, now_usec());
}

void
handler_serve_alone(struct session *s, int wake_fd)
{
	uint8_t scratch[SESSION_READ_CHUNK];
	unsigned ev;

	/* Blocking I/O, with idle_timeout as the socket's timeouts, where
	 * nothing but the client wakes the session and it waits one way at a
	 * time: the fewest system calls per message. Else poll(). */
	s->blocking = wake_fd < 0 && !s->lst->service->on_writable;
	(void)fd_set_nonblock(s->fd, !s->blocking);
	if (s->blocking)
		set_timeouts(s->fd, s->lst->cfg.idle_timeout);
	handler_tune_stream(s->fd);
	ev = session_start(s);
	while (!(ev & SESSION_DONE)) {
		if (!s->blocking)
			ev = poll_step(s, ev, wake_fd, scratch, sizeof(scratch));
		else if (ev & (SESSION_READ | SESSION_WRITE))
			/* The socket timeouts keep the idle clock: no `now`. */
			ev = session_step(s, ev, scratch, sizeof(scratch), 0);
		else {
			/* Only held: look again soon. */
			(void)poll(NULL, 0, (int)(SESSION_HOLD_RECHECK_USEC / USEC_PER_MSEC));
			ev = session_next(s);
		}
	}
	session_end(s);
}
