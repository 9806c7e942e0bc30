#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
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

bool
handler_acl_ok(const struct listener_rt *l, const union sockaddr_any *peer)
{
	if (l->cfg.n_deny && cidr_list_match(l->cfg.deny, l->cfg.n_deny, peer))
		return false;
	if (l->cfg.has_allow && !cidr_list_match(l->cfg.allow, l->cfg.n_allow, peer))
		return false;
	return true;
}

const char *
handler_admit(struct listener_rt *l, const union sockaddr_any *peer)
{
	if (!handler_acl_ok(l, peer))
		return "not allowed";
	if (atomic_fetch_add(&l->clients, 1) >= l->cfg.max_clients) {
		atomic_fetch_sub(&l->clients, 1);
		return "server full";
	}
	if (l->per_source && !srccount_acquire(l->per_source, peer, l->cfg.per_source)) {
		atomic_fetch_sub(&l->clients, 1);
		return "too many connections from this source";
	}
	return NULL;
}

void
handler_release(struct listener_rt *l, const union sockaddr_any *peer)
{
	if (l->per_source)
		srccount_release(l->per_source, peer);
	atomic_fetch_sub(&l->clients, 1);
}

/* One limiter per process is enough: refusals are rare and this only
 * keeps a flood from flooding the log. */
static struct log_ratelimit refuse_rl = LOG_RATELIMIT_INIT(USEC_PER_SEC, 10);
static pthread_mutex_t refuse_lock = PTHREAD_MUTEX_INITIALIZER;

void
handler_refuse(struct listener_rt *l, int fd, const union sockaddr_any *peer,
	       const char *reason)
{
	const char *full = l->service->full_text;
	char p[SOCKADDR_STR_MAX];
	unsigned suppressed = 0;
	bool ok;

	STATS_ADD(l, refused, 1);
	if (full && strcmp(reason, "server full") == 0)
		(void)send(fd, full, strlen(full), MSG_NOSIGNAL | MSG_DONTWAIT);
	safe_close(fd);

	pthread_mutex_lock(&refuse_lock);
	ok = log_ratelimit_ok(&refuse_rl, now_usec(), &suppressed);
	pthread_mutex_unlock(&refuse_lock);
	if (!ok)
		return;
	if (suppressed)
		log_listener(LOG_WARNING, l->cfg.name, NULL,
			     "%u more refused connections were not logged", suppressed);
	log_listener(LOG_WARNING, l->cfg.name, sockaddr_to_string(peer, p, sizeof(p)),
		     "connection refused: %s", reason);
}

static struct log_ratelimit accept_rl = LOG_RATELIMIT_INIT(10 * USEC_PER_SEC, 1);

bool
handler_accept_error(struct listener_rt *l, int error)
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
	pthread_mutex_lock(&refuse_lock);
	ok = log_ratelimit_ok(&accept_rl, now_usec(), &suppressed);
	pthread_mutex_unlock(&refuse_lock);
	if (ok)
		log_full_errno(LOG_WARNING, error, l->cfg.name, NULL,
			       "accept failed, pausing new connections for %u ms%s",
			       (unsigned)(HANDLER_ACCEPT_BACKOFF_USEC / USEC_PER_MSEC),
			       suppressed ? " (repeated)" : "");
	return true;
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

void
handler_serve_blocking(struct session *s)
{
	const struct service_ops *svc = s->lst->service;
	uint8_t scratch[SESSION_READ_CHUNK];

	s->blocking = true;
	(void)fd_set_nonblock(s->fd, false);
	set_timeouts(s->fd, s->lst->cfg.idle_timeout);
	handler_tune_stream(s->fd);
	session_log_open(s);
	if (svc->on_open)
		svc->on_open(s);
	while (!session_finished(s)) {
		ssize_t n;

		if (session_wants_write(s) && session_flush(s) == -EAGAIN) {
			/* SO_SNDTIMEO ran out: the peer read nothing for
			 * idle_timeout seconds. */
			session_abort(s, "idle timeout");
			break;
		}
		if (!session_wants_read(s)) {
			if (s->held) {
				/* The service holds input back; look again soon. */
				(void)poll(NULL, 0, (int)(SESSION_HOLD_RECHECK_USEC / USEC_PER_MSEC));
				continue;
			}
			if (!session_wants_write(s) && !session_finished(s)) {
				session_resume(s);
				if (!session_wants_write(s))
					session_abort(s, "stalled");
			}
			continue;
		}
		n = session_read(s, scratch, sizeof(scratch));
		if (n == -EAGAIN)
			session_abort(s, "idle timeout");
	}
	if (svc->on_close)
		svc->on_close(s);
	session_log_close(s);
}
