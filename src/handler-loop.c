#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "acceptor.h"
#include "handler.h"
#include "log.h"
#include "loop.h"
#include "dgram.h"
#include "prefix.h"
#include "service.h"
#include "session.h"
#include "udp.h"

/* The select, poll and epoll models: one event loop per worker (select and
 * poll have exactly one), non-blocking sockets, sessions kept in an LRU
 * list so one timer per loop serves every idle timeout. With a hub (struct
 * conn_hub_ops) the sessions serve what the hub's accept() returns. */

struct lworker;

struct lconn {
	struct lworker *w; /* first: read with the session's hot fields */
	/* On w's LRU list (owner thread only): one timer serves every idle
	 * timeout. */
	struct lconn *idle_prev, *idle_next;
	bool in_idle_list;
	struct session s;
	struct lconn *pending_next; /* on w->pending, under pending_lock */
	bool queued;
	struct lconn *held_next; /* on w->held (owner thread only) */
	bool on_held;
	pthread_mutex_t lock; /* shared sessions only */
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
	struct loop_timer tick_timer;
	struct acceptor acceptor;
	struct loop_timer drain_timer;
	struct udp_worker udp;
	pthread_t thread;
	bool thread_started;
	struct lworker *all; /* worker 0 only: every worker */
	size_t n_all;
	/* Sessions whose state changed outside their own callback (a chat
	 * relay filled them, a timeout closed them): looked at soon. With
	 * several chat workers other threads add to it and wake us. */
	struct lconn *current;
	struct lconn *pending;
	pthread_mutex_t pending_lock;
	struct loop_timer pending_timer;
	/* Sessions whose input the service holds back: looked at again
	 * every SESSION_HOLD_RECHECK_USEC, or at once when another session
	 * finds input free again. */
	struct lconn *held;
	struct loop_timer hold_timer;
	bool shared;   /* sessions are reachable from other threads */
	int wake_fd;   /* eventfd, shared only */
	pthread_t owner;
	/* Between us and the clients, or NULL: sessions serve what its
	 * accept() returns. n_children: its children not yet reaped. */
	const struct conn_hub_ops *hub;
	size_t n_children;
	uint8_t scratch[SESSION_READ_CHUNK];
};

static void conn_update(struct lconn *c);

static void
lru_unlink(struct lworker *w, struct lconn *c)
{
	if (!c->in_idle_list)
		return;
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		w->lru_head = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	else
		w->lru_tail = c->idle_prev;
	c->idle_prev = c->idle_next = NULL;
	c->in_idle_list = false;
}

static void
lru_append(struct lworker *w, struct lconn *c)
{
	c->idle_prev = w->lru_tail;
	c->idle_next = NULL;
	if (w->lru_tail)
		w->lru_tail->idle_next = c;
	else
		w->lru_head = c;
	w->lru_tail = c;
	c->in_idle_list = true;
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

/* c was active (session_step() moved its last_active): to the LRU's
 * tail. */
static void
touch(struct lworker *w, struct lconn *c)
{
	if (w->lru_tail != c) {
		lru_unlink(w, c);
		lru_append(w, c);
	}
	idle_arm(w);
}

static void
pending_unlink(struct lworker *w, struct lconn *c)
{
	if (w->shared)
		pthread_mutex_lock(&w->pending_lock);
	if (c->queued) {
		for (struct lconn **p = &w->pending; *p; p = &(*p)->pending_next)
			if (*p == c) {
				*p = c->pending_next;
				break;
			}
		c->queued = false;
	}
	if (w->shared)
		pthread_mutex_unlock(&w->pending_lock);
}

static void
held_unlink(struct lworker *w, struct lconn *c)
{
	if (!c->on_held)
		return;
	for (struct lconn **p = &w->held; *p; p = &(*p)->held_next)
		if (*p == c) {
			*p = c->held_next;
			break;
		}
	c->on_held = false;
}

static bool
worker_done_draining(struct lworker *w)
{
	return w->stopping && w->n_conns == 0 && w->n_children == 0;
}

/* session_end(): off every list and watch before the fd closes. The
 * service left the room before this: no other thread sends to us now. */
static void
conn_detach(struct session *s)
{
	struct lconn *c = container_of(s, struct lconn, s);
	struct lworker *w = c->w;

	pending_unlink(w, c);
	held_unlink(w, c);
	loop_remove(w->loop, s->fd);
	lru_unlink(w, c);
	if (w->hub)
		w->hub->release(s->delivered);
}

static void
conn_free(struct lconn *c)
{
	struct lworker *w = c->w;

	session_end(&c->s);
	if (c->s.lock)
		pthread_mutex_destroy(&c->lock);
	free(c);
	w->n_conns--;
	if (worker_done_draining(w))
		loop_quit(w->loop);
}

static void
idle_fire(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct lworker *w = userdata;
	uint64_t now = loop_now(l);

	/* Oldest activity first: stop at the first that is not due. */
	while (w->lru_head) {
		struct lconn *c = w->lru_head;

		if (!session_expire(&c->s, now))
			break;
		/* Off the list so it is not seen twice. */
		lru_unlink(w, c);
		conn_update(c);
	}
	idle_arm(w);
}

static void
on_hold_recheck(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct lworker *w = userdata;
	struct lconn *list = w->held;

	w->held = NULL;
	for (struct lconn *c = list; c; c = c->held_next)
		c->on_held = false;
	while (list) {
		struct lconn *c = list;

		list = c->held_next;
		conn_update(c);
	}
}

/* Wait for what the session asked (session_start/step/next said ev). */
static void
conn_apply(struct lconn *c, unsigned ev)
{
	struct lworker *w = c->w;

	if (ev & SESSION_DONE) {
		conn_free(c);
		return;
	}
	if (ev & SESSION_HELD) {
		if (!c->on_held) {
			c->on_held = true;
			c->held_next = w->held;
			w->held = c;
		}
		if (!w->hold_timer.deadline)
			loop_timer_set(w->loop, &w->hold_timer,
				       loop_now(w->loop) + SESSION_HOLD_RECHECK_USEC, on_hold_recheck,
				       w);
	} else if ((ev & SESSION_READ) && w->held && w->hold_timer.deadline > 1)
		/* Input is free again: the held ones need not wait for the
		 * timer. */
		loop_timer_set(w->loop, &w->hold_timer, 1, on_hold_recheck, w);
	(void)loop_set_events(w->loop, c->s.fd, ev & (LOOP_READ | LOOP_WRITE));
}

/* The session's state changed outside its own callback. */
static void
conn_update(struct lconn *c)
{
	struct lworker *w = c->w;
	unsigned ev;

	w->current = c;
	ev = session_next(&c->s);
	w->current = NULL;
	conn_apply(c, ev);
}

static void
conn_io(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct lconn *c = userdata;
	struct session *s = &c->s;
	struct lworker *w = c->w;
	uint64_t active = s->last_active;
	unsigned ev;

	w->current = c;
	ev = session_step(s, events, w->scratch, sizeof(w->scratch), loop_now(l));
	w->current = NULL;
	if (s->last_active != active && !(ev & SESSION_DONE))
		touch(w, c);
	conn_apply(c, ev);
}

static void
on_pending(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct lworker *w = userdata;
	struct lconn *list;

	if (w->shared)
		pthread_mutex_lock(&w->pending_lock);
	list = w->pending;
	w->pending = NULL;
	if (w->shared)
		pthread_mutex_unlock(&w->pending_lock);
	/* Each gets one write for all that was relayed to it since the last
	 * pass (flush_later), as if the socket had said it was writable.
	 * An entry stays queued until it is taken off here, under the lock:
	 * another thread's conn_want_write() meanwhile neither relinks it
	 * (which cut the rest of this list off: those sessions then waited,
	 * unwritten, for a wake that had come already) nor needs to, and one
	 * after it queues it again. */
	while (list) {
		struct lconn *c = list;

		if (w->shared)
			pthread_mutex_lock(&w->pending_lock);
		list = c->pending_next;
		c->queued = false;
		if (w->shared)
			pthread_mutex_unlock(&w->pending_lock);
		conn_io(l, c->s.fd, LOOP_WRITE, c);
	}
}

static void
on_wake(struct loop *l, int fd, unsigned events, void *userdata)
{
	uint64_t v;

	(void)!read(fd, &v, sizeof(v));
	on_pending(l, NULL, userdata);
}

/* The session has output, or was closed, outside its own callback. Called
 * with the session's lock held (shared sessions), from any thread. */
static void
conn_want_write(struct session *s)
{
	struct lconn *c = container_of(s, struct lconn, s);
	struct lworker *w = c->w;
	bool mine = !w->shared || pthread_equal(pthread_self(), w->owner);

	/* Its own callback ends with conn_update() anyway. */
	if (mine && w->current == c)
		return;
	if (w->shared)
		pthread_mutex_lock(&w->pending_lock);
	if (!c->queued) {
		c->queued = true;
		c->pending_next = w->pending;
		w->pending = c;
	}
	if (w->shared)
		pthread_mutex_unlock(&w->pending_lock);
	if (mine) {
		if (!w->pending_timer.deadline)
			loop_timer_set(w->loop, &w->pending_timer, 1, on_pending, w);
	} else {
		uint64_t v = 1;

		(void)!write(w->wake_fd, &v, sizeof(v));
	}
}

static const struct session_driver loop_driver = {
	.want_write = conn_want_write,
	.detach = conn_detach,
	.flush_later = true,
};

static const char *
on_conn(struct acceptor *a, int *cfd, const struct conn_origin *o)
{
	struct lworker *w = a->userdata;
	struct listener_rt *lst = w->lst;
	const _Atomic uint64_t *delivered = NULL;
	struct lconn *c;
	int fd = *cfd, r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return "out of memory";
	c->w = w;
	if (w->hub) {
		const char *reason = w->hub->accept(lst, *cfd, &fd, &delivered);

		if (reason) {
			free(c);
			return reason;
		}
		(void)fd_set_nonblock(fd, true);
		w->n_children++;
	} else
		handler_tune_stream(fd);
	session_init(&c->s, fd, lst, &loop_driver, o, loop_now(a->loop));
	c->s.delivered = delivered;
	if (w->shared) {
		pthread_mutex_init(&c->lock, NULL);
		c->s.lock = &c->lock;
	}
	r = loop_add(w->loop, fd, LOOP_READ, conn_io, c);
	if (r < 0) {
		/* The hub's accept() took the client: refusing closes our
		 * end, and the child goes with it. */
		if (w->hub) {
			w->hub->release(delivered);
			*cfd = fd;
		}
		if (c->s.lock)
			pthread_mutex_destroy(&c->lock);
		free(c);
		return r == -EMFILE ? "descriptor beyond FD_SETSIZE, use model poll or epoll"
				    : "cannot watch the connection";
	}
	w->n_conns++;
	lru_append(w, c);
	idle_arm(w);
	w->current = c;
	r = (int)session_start(&c->s);
	w->current = NULL;
	conn_apply(c, (unsigned)r);
	return NULL;
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

static struct dgram
worker_dgram(struct lworker *w)
{
	return (struct dgram){ .lst = w->lst, .local = { .fd = w->fds[0] } };
}

static void
on_tick(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct lworker *w = userdata;
	struct dgram d = worker_dgram(w);
	uint64_t now = loop_now(l), next;

	next = handler_tick(w->lst, w->lst->cfg.protocol == PROTOCOL_UDP ? &d : NULL, now);
	loop_timer_set(l, t, next, on_tick, w);
}

static void
worker_stop(struct lworker *w)
{
	struct lconn *c, *next;

	if (w->stopping)
		return;
	w->stopping = true;
	loop_timer_set(w->loop, &w->tick_timer, 0, NULL, NULL);
	loop_timer_set(w->loop, &w->hold_timer, 0, NULL, NULL);
	if (w->lst->cfg.protocol == PROTOCOL_TCP)
		acceptor_stop(&w->acceptor);
	else {
		for (size_t i = 0; i < w->n_fds; i++)
			loop_remove(w->loop, w->fds[i]);
		if (w->is_main)
			udp_shutdown_notice(w->lst);
	}
	/* Stop reading; say goodbye (chat); flush what is owed. */
	for (c = w->lru_head; c; c = next) {
		next = c->idle_next;
		session_request_stop(&c->s, SESSION_STOP_DRAIN);
		conn_update(c);
	}
	if (worker_done_draining(w)) {
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

		session_request_stop(&c->s, SESSION_STOP_NOW);
		conn_update(c);
	}
	loop_quit(l);
}

static void
reap_children(struct lworker *w)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		w->hub->child_exited(pid);
		if (w->n_children > 0)
			w->n_children--;
		if (WIFSIGNALED(status))
			log_listener(LOG_WARNING, w->lst->cfg.name, NULL,
				     "connection process %ld killed by signal %d", (long)pid,
				     WTERMSIG(status));
	}
	if (worker_done_draining(w))
		loop_quit(w->loop);
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
		if (si.ssi_signo == SIGCHLD) {
			reap_children(w);
			return;
		}
		/* Wake the other workers first so they drain in parallel. */
		for (size_t i = 1; i < w->n_all; i++) {
			v = 1;
			(void)!write(w->all[i].stop_fd, &v, sizeof(v));
		}
	} else if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	/* Worker 0 keeps its signalfd: a hub still reaps its children. */
	if (!w->is_main)
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

	r = loop_new(&w->loop, w->hub ? w->hub->backend : backend_of[lst->cfg.model]);
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
	if (w->is_main && lst->service->tick)
		loop_timer_set(w->loop, &w->tick_timer, loop_now(w->loop) + HANDLER_TICK_USEC, on_tick, w);
	if (w->shared) {
		w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->wake_fd < 0)
			return -errno;
		r = loop_add(w->loop, w->wake_fd, LOOP_READ, on_wake, w);
		if (r < 0)
			return r;
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
	if (w->shared) {
		w->wake_fd = safe_close(w->wake_fd);
		pthread_mutex_destroy(&w->pending_lock);
	}
}

static void *
worker_thread(void *arg)
{
	struct lworker *w = arg;
	int r;

	w->owner = pthread_self();
	/* %t is this thread, not the one that set the worker up. */
	if (w->lst->cfg.protocol == PROTOCOL_UDP)
		w->udp.prefix_len = prefix_expand(w->lst->cfg.prefix, w->lst->cfg.name, w->udp.prefix,
						  sizeof(w->udp.prefix));
	r = loop_run(w->loop);
	if (r < 0)
		log_full_errno(LOG_ERR, r, w->lst->cfg.name, NULL, "event loop failed");
	return NULL;
}

/* Start workers 1..n-1 on their own threads. False when one could not
 * start; then the ones started are told to stop (and must be joined). */
static bool
start_workers(struct lworker *workers, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		sigset_t all, old;
		int r;

		/* Worker threads take no signals; the main thread's signalfd
		 * does. */
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		r = -pthread_create(&workers[i].thread, NULL, worker_thread, &workers[i]);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r < 0) {
			log_full_errno(LOG_ERR, r, workers[0].lst->cfg.name, NULL,
				       "cannot start worker thread");
			for (unsigned j = 1; j < i; j++) {
				uint64_t v = 1;

				(void)!write(workers[j].stop_fd, &v, sizeof(v));
			}
			return false;
		}
		workers[i].thread_started = true;
	}
	return true;
}

int
handler_loop_run(struct listener_rt *lst, const struct conn_hub_ops *hub)
{
	unsigned n = lst->cfg.workers;
	struct lworker *workers;
	int sfd, r = 0, ret = 0;

	sfd = handler_signalfd(hub && hub->reaps_children, SFD_NONBLOCK);
	if (sfd < 0)
		return log_full_errno(LOG_ERR, sfd, lst->cfg.name, NULL, "signalfd failed"), 1;

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
		w->wake_fd = -1;
		w->hub = hub;
		/* A shared room (chat) spans the workers: sessions get locks. */
		w->shared = (n > 1 || lst->foreign_senders) && lst->service->shared_room;
		if (w->shared)
			pthread_mutex_init(&w->pending_lock, NULL);
		w->owner = pthread_self();
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

	if (!start_workers(workers, n)) {
		ret = 1;
		goto join;
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

static int
loop_model_run(struct listener_rt *lst)
{
	return handler_loop_run(lst, NULL);
}

const struct model_ops handler_loop_ops = {
	.name = "event loop",
	.run = loop_model_run,
};
