#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "acceptor.h"
#include "handler.h"
#include "log.h"
#include "loop.h"
#include "service.h"
#include "session.h"
#include "udp.h"

/* The select, poll and epoll models: one event loop per worker (select and
 * poll have exactly one), non-blocking sockets, sessions kept in an LRU
 * list so one timer per loop serves every idle timeout. */

struct lworker;

struct lconn {
	struct session s;
	struct lworker *w;
};

struct lworker {
	struct listener_rt *lst;
	struct loop *loop;
	const int *fds; /* listening sockets this worker watches */
	size_t n_fds;
	int stop_fd;   /* signalfd (worker 0) or eventfd (others) */
	bool is_main;
	bool stopping;
	struct lconn *lru_head, *lru_tail;
	size_t n_conns;
	struct loop_timer idle_timer;
	struct acceptor acceptor;
	struct loop_timer drain_timer;
	struct udp_worker udp;
	pthread_t thread;
	bool thread_started;
	struct lworker *all; /* worker 0 only: every worker */
	size_t n_all;
	uint8_t scratch[SESSION_READ_CHUNK];
};

static void conn_update(struct lconn *c);

static void
lru_unlink(struct lworker *w, struct lconn *c)
{
	struct session *s = &c->s;

	if (!s->in_idle_list)
		return;
	if (s->idle_prev)
		container_of(s->idle_prev, struct lconn, s)->s.idle_next = s->idle_next;
	else
		w->lru_head = s->idle_next ? container_of(s->idle_next, struct lconn, s) : NULL;
	if (s->idle_next)
		container_of(s->idle_next, struct lconn, s)->s.idle_prev = s->idle_prev;
	else
		w->lru_tail = s->idle_prev ? container_of(s->idle_prev, struct lconn, s) : NULL;
	s->idle_prev = s->idle_next = NULL;
	s->in_idle_list = false;
}

static void
lru_append(struct lworker *w, struct lconn *c)
{
	struct session *s = &c->s;

	s->idle_prev = w->lru_tail ? &w->lru_tail->s : NULL;
	s->idle_next = NULL;
	if (w->lru_tail)
		w->lru_tail->s.idle_next = s;
	else
		w->lru_head = c;
	w->lru_tail = c;
	s->in_idle_list = true;
}

static void idle_fire(struct loop *l, struct loop_timer *t, void *userdata);

static void
idle_arm(struct lworker *w)
{
	uint64_t idle = (uint64_t)w->lst->cfg.idle_timeout * USEC_PER_SEC;

	if (!idle || !w->lru_head || w->idle_timer.deadline)
		return;
	loop_timer_set(w->loop, &w->idle_timer, w->lru_head->s.last_active + idle, idle_fire, w);
}

static void
touch(struct lworker *w, struct lconn *c)
{
	c->s.last_active = loop_now(w->loop);
	if (w->lru_tail != c) {
		lru_unlink(w, c);
		lru_append(w, c);
	}
	idle_arm(w);
}

static void
conn_free(struct lconn *c)
{
	struct lworker *w = c->w;
	struct session *s = &c->s;

	if (w->lst->service->on_close)
		w->lst->service->on_close(s);
	loop_remove(w->loop, s->fd);
	lru_unlink(w, c);
	session_log_close(s);
	safe_close(s->fd);
	handler_release(w->lst, &s->peer);
	session_done(s);
	free(c);
	w->n_conns--;
	if (w->stopping && w->n_conns == 0)
		loop_quit(w->loop);
}

static void
idle_fire(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct lworker *w = userdata;
	uint64_t idle = (uint64_t)w->lst->cfg.idle_timeout * USEC_PER_SEC;
	uint64_t now = loop_now(l);

	while (w->lru_head && w->lru_head->s.last_active + idle <= now) {
		struct lconn *c = w->lru_head;

		/* Take it off the list so it is not seen twice; closing
		 * an idle session drops what it could not send. */
		lru_unlink(w, c);
		session_abort(&c->s, "idle timeout");
		conn_update(c);
	}
	idle_arm(w);
}

static void
conn_update(struct lconn *c)
{
	struct session *s = &c->s;
	unsigned ev;

	if (session_finished(s)) {
		conn_free(c);
		return;
	}
	ev = (session_wants_read(s) ? LOOP_READ : 0) | (session_wants_write(s) ? LOOP_WRITE : 0);
	if (!ev) {
		/* Kept input the service will not take while nothing is
		 * left to send: it can never progress. */
		session_abort(s, "stalled");
		conn_free(c);
		return;
	}
	(void)loop_set_events(c->w->loop, s->fd, ev);
}

static void
conn_io(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct lconn *c = userdata;
	struct session *s = &c->s;
	struct lworker *w = c->w;

	if (events & LOOP_WRITE)
		(void)session_flush(s);
	if ((events & LOOP_READ) && session_wants_read(s))
		(void)session_read(s, w->scratch, sizeof(w->scratch));
	if (!s->broken)
		touch(w, c);
	conn_update(c);
}

static void
conn_want_write(struct session *s)
{
	struct lconn *c = container_of(s, struct lconn, s);

	(void)loop_set_events(c->w->loop, s->fd, loop_get_events(c->w->loop, s->fd) | LOOP_WRITE);
}

static const struct session_driver loop_driver = {
	.want_write = conn_want_write,
};

static void
on_conn(struct acceptor *a, int cfd, const union sockaddr_any *peer)
{
	struct lworker *w = a->userdata;
	struct listener_rt *lst = w->lst;
	struct lconn *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		handler_release(lst, peer);
		handler_refuse(lst, cfd, peer, "out of memory");
		return;
	}
	c->w = w;
	session_init(&c->s, cfd, lst, &loop_driver, peer);
	r = loop_add(w->loop, cfd, LOOP_READ, conn_io, c);
	if (r < 0) {
		handler_release(lst, peer);
		free(c);
		handler_refuse(lst, cfd, peer,
			       r == -EMFILE ? "descriptor beyond FD_SETSIZE, use model poll or epoll"
					    : "cannot watch the connection");
		return;
	}
	handler_tune_stream(cfd);
	w->n_conns++;
	session_log_open(&c->s);
	c->s.last_active = loop_now(w->loop);
	lru_append(w, c);
	idle_arm(w);
	if (lst->service->on_open)
		lst->service->on_open(&c->s);
	conn_update(c);
}

static void
on_datagram(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct lworker *w = userdata;
	int r;

	/* A batch per wake-up keeps one busy socket from starving the rest. */
	r = udp_worker_serve(&w->udp, fd, 64);
	if (r < 0 && r != -EAGAIN && r != -EINTR)
		log_full_errno(LOG_ERR, r, w->lst->cfg.name, NULL, "receive failed");
}

static void drain_deadline(struct loop *l, struct loop_timer *t, void *userdata);

static void
worker_stop(struct lworker *w)
{
	struct lconn *c, *next;

	if (w->stopping)
		return;
	w->stopping = true;
	if (w->lst->cfg.protocol == PROTOCOL_TCP)
		acceptor_stop(&w->acceptor);
	else
		for (size_t i = 0; i < w->n_fds; i++)
			loop_remove(w->loop, w->fds[i]);
	/* Stop reading; say goodbye (chat); flush what is owed. */
	for (c = w->lru_head; c; c = next) {
		next = c->s.idle_next ? container_of(c->s.idle_next, struct lconn, s) : NULL;
		if (w->lst->service->on_shutdown)
			w->lst->service->on_shutdown(&c->s);
		session_close(&c->s, "server stopping");
		conn_update(c);
	}
	if (w->n_conns == 0) {
		loop_quit(w->loop);
		return;
	}
	loop_timer_set(w->loop, &w->drain_timer,
		       loop_now(w->loop) + (uint64_t)w->lst->shutdown_timeout * USEC_PER_SEC,
		       drain_deadline, w);
}

static void
drain_deadline(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct lworker *w = userdata;

	while (w->lru_head) {
		struct lconn *c = w->lru_head;

		session_abort(&c->s, "shutdown timeout");
		conn_free(c);
	}
	loop_quit(l);
}

static void
on_stop_signal(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct lworker *w = userdata;
	struct signalfd_siginfo si;
	uint64_t v;

	if (w->is_main) {
		if (read(fd, &si, sizeof(si)) != sizeof(si))
			return;
		/* Wake the other workers first so they drain in parallel. */
		for (size_t i = 1; i < w->n_all; i++) {
			v = 1;
			(void)!write(w->all[i].stop_fd, &v, sizeof(v));
		}
	} else if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	loop_remove(l, fd);
	worker_stop(w);
}

static int
worker_setup(struct lworker *w)
{
	struct listener_rt *lst = w->lst;
	static const enum loop_backend backend_of[_MODEL_MAX] = {
		[MODEL_SELECT] = LOOP_BACKEND_SELECT,
		[MODEL_POLL] = LOOP_BACKEND_POLL,
		[MODEL_EPOLL] = LOOP_BACKEND_EPOLL,
	};
	unsigned events;
	int r;

	r = loop_new(&w->loop, backend_of[lst->cfg.model]);
	if (r < 0)
		return r;
	events = LOOP_READ | (lst->shared && lst->cfg.workers > 1 ? LOOP_EXCLUSIVE : 0);
	if (lst->cfg.protocol == PROTOCOL_TCP) {
		w->acceptor = (struct acceptor){
			.lst = lst,
			.loop = w->loop,
			.fds = w->fds,
			.n_fds = w->n_fds,
			.events = events,
			.accept_flags = SOCK_NONBLOCK,
			.on_conn = on_conn,
			.userdata = w,
		};
		r = acceptor_start(&w->acceptor);
		if (r < 0)
			return r;
	} else {
		r = udp_worker_init(&w->udp, lst);
		if (r < 0)
			return r;
		for (size_t i = 0; i < w->n_fds; i++) {
			r = fd_set_nonblock(w->fds[i], true);
			if (r < 0)
				return r;
			r = loop_add(w->loop, w->fds[i], events, on_datagram, w);
			if (r < 0)
				return r;
		}
	}
	return loop_add(w->loop, w->stop_fd, LOOP_READ, on_stop_signal, w);
}

static void
worker_done(struct lworker *w)
{
	if (w->lst->cfg.protocol == PROTOCOL_UDP)
		udp_worker_done(&w->udp);
	w->loop = loop_free(w->loop);
	if (!w->is_main)
		w->stop_fd = safe_close(w->stop_fd);
}

static void *
worker_thread(void *arg)
{
	struct lworker *w = arg;
	int r;

	r = loop_run(w->loop);
	if (r < 0)
		log_full_errno(LOG_ERR, r, w->lst->cfg.name, NULL, "event loop failed");
	return NULL;
}

static int
loop_model_run(struct listener_rt *lst)
{
	unsigned n = lst->cfg.workers;
	struct lworker *workers;
	sigset_t mask;
	int sfd, r = 0, ret = 0;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		return log_full_errno(LOG_ERR, errno, lst->cfg.name, NULL, "signalfd failed"), 1;

	/* Worker structs hold a 16 KiB scratch buffer each: heap, not stack. */
	workers = calloc(n, sizeof(*workers));
	if (!workers) {
		safe_close(sfd);
		return 1;
	}
	for (unsigned i = 0; i < n; i++) {
		struct lworker *w = &workers[i];

		w->lst = lst;
		w->is_main = i == 0;
		w->all = workers;
		w->n_all = n;
		w->n_fds = lst->n_addrs;
		w->fds = lst->shared ? lst->fds : lst->fds + (size_t)i * lst->n_addrs;
		w->stop_fd = i == 0 ? sfd : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->stop_fd < 0) {
			r = -errno;
			break;
		}
		r = worker_setup(w);
		if (r < 0)
			break;
	}
	if (r < 0) {
		log_full_errno(LOG_ERR, r, lst->cfg.name, NULL, "cannot set up the event loop");
		ret = 1;
		goto out;
	}

	/* Worker threads take no signals; the main thread's signalfd does. */
	for (unsigned i = 1; i < n; i++) {
		sigset_t all, old;

		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		r = -pthread_create(&workers[i].thread, NULL, worker_thread, &workers[i]);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r < 0) {
			log_full_errno(LOG_ERR, r, lst->cfg.name, NULL, "cannot start worker thread");
			ret = 1;
			/* Stop the ones already running. */
			for (unsigned j = 1; j < i; j++) {
				uint64_t v = 1;
				(void)!write(workers[j].stop_fd, &v, sizeof(v));
			}
			n = i;
			goto join;
		}
		workers[i].thread_started = true;
	}

	handler_notify_ready(lst);
	r = loop_run(workers[0].loop);
	if (r < 0) {
		log_full_errno(LOG_ERR, r, lst->cfg.name, NULL, "event loop failed");
		ret = 1;
	}
join:
	for (unsigned i = 1; i < n; i++)
		if (workers[i].thread_started)
			pthread_join(workers[i].thread, NULL);
out:
	for (unsigned i = 0; i < lst->cfg.workers; i++)
		if (workers[i].loop || workers[i].stop_fd > 0)
			worker_done(&workers[i]);
	free(workers);
	safe_close(sfd);
	return ret;
}

const struct model_ops handler_loop_ops = {
	.name = "event loop",
	.run = loop_model_run,
};
