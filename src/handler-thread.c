#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>

#include "acceptor.h"
#include "handler.h"
#include "log.h"
#include "loop.h"
#include "prefix.h"
#include "service.h"
#include "session.h"
#include "udp.h"

/* The thread model. TCP: an acceptor thread and one thread per connection
 * on a blocking socket. UDP: `workers` threads blocking in recvmsg() on
 * the one socket. Worker threads block every signal; the main thread reads
 * SIGTERM/SIGINT from a signalfd. */

#define THREAD_STACK_SIZE (256 * 1024)
/* How often blocked UDP workers look at the stop flag. */
#define UDP_WAKE_USEC (200 * USEC_PER_MSEC)

struct tmodel;

struct tconn {
	struct session s;
	struct tmodel *m;
	struct tconn *prev, *next;
	/* Chat: other threads queue output here and wake us. */
	pthread_mutex_t lock;
	int efd;
};

struct tmodel {
	struct listener_rt *lst;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when a thread ends */
	struct tconn *conns; /* live connections, under lock */
	unsigned n_threads;  /* under lock */
	atomic_bool stopping;
	pthread_attr_t attr;
};

static void
tconn_wake(struct session *s)
{
	struct tconn *c = container_of(s, struct tconn, s);
	uint64_t v = 1;

	/* Called with the session lock held, from any thread. */
	(void)!write(c->efd, &v, sizeof(v));
}

/* Unlist before the close, so the stopper never shuts down an fd number
 * that was reused. */
static void
tconn_detach(struct session *s)
{
	struct tconn *c = container_of(s, struct tconn, s);
	struct tmodel *m = c->m;

	pthread_mutex_lock(&m->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&m->lock);
}

/* A session other threads write to (chat) gets a non-blocking socket, a
 * lock and an eventfd: a receiver that does not read never blocks a
 * sender, which only appends to its bounded queue and wakes it. */
static const struct session_driver shared_driver = {
	.want_write = tconn_wake,
	.detach = tconn_detach,
};

static const struct session_driver own_driver = {
	.detach = tconn_detach,
};

static void
tconn_free(struct tconn *c)
{
	if (c->s.lock) {
		pthread_mutex_destroy(&c->lock);
		safe_close(c->efd);
	}
	free(c);
}

static void *
conn_thread(void *arg)
{
	struct tconn *c = arg;
	struct tmodel *m = c->m;

	handler_serve_alone(&c->s, c->efd);
	tconn_free(c);
	pthread_mutex_lock(&m->lock);
	m->n_threads--;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static const char *
on_conn(struct acceptor *a, int *fd, const struct conn_origin *o)
{
	int cfd = *fd;
	struct tmodel *m = a->userdata;
	struct listener_rt *lst = m->lst;
	struct tconn *c;
	pthread_t th;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return "out of memory";
	c->m = m;
	c->efd = -1;
	session_init(&c->s, cfd, lst, &own_driver, o, loop_now(a->loop));
	if (lst->service->shared_room) {
		c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (c->efd < 0) {
			free(c);
			return "out of file descriptors";
		}
		pthread_mutex_init(&c->lock, NULL);
		c->s.lock = &c->lock;
		c->s.driver = &shared_driver;
	}

	pthread_mutex_lock(&m->lock);
	c->next = m->conns;
	if (m->conns)
		m->conns->prev = c;
	m->conns = c;
	m->n_threads++;
	r = -pthread_create(&th, &m->attr, conn_thread, c);
	if (r < 0) {
		m->conns = c->next;
		if (m->conns)
			m->conns->prev = NULL;
		m->n_threads--;
	}
	pthread_mutex_unlock(&m->lock);
	if (r < 0) {
		session_done(&c->s);
		tconn_free(c);
		return "cannot start a thread";
	}
	return NULL;
}

static void
on_tick(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct tmodel *m = userdata;
	uint64_t now = loop_now(l), next;

	next = handler_tick(m->lst, NULL, now);
	loop_timer_set(l, t, next, on_tick, m);
}

static void
on_signal(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) == sizeof(si))
		loop_quit(l);
}

/* Wait until n_threads is 0 or the deadline (CLOCK_MONOTONIC usec). */
static bool
wait_threads(struct tmodel *m, uint64_t deadline)
{
	bool done;

	pthread_mutex_lock(&m->lock);
	while (m->n_threads > 0) {
		uint64_t now = now_usec();
		struct timespec ts;

		if (now >= deadline)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)((deadline - now) / USEC_PER_SEC);
		ts.tv_nsec += (long)((deadline - now) % USEC_PER_SEC * 1000);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	}
	done = m->n_threads == 0;
	pthread_mutex_unlock(&m->lock);
	return done;
}

/* how: SHUT_RD to drain, SHUT_RDWR when shutdown_timeout ran out. The
 * shutdown wakes a session blocked in read() or write(). */
static void
shutdown_all(struct tmodel *m, int how)
{
	pthread_mutex_lock(&m->lock);
	for (struct tconn *c = m->conns; c; c = c->next) {
		session_request_stop(&c->s, how == SHUT_RD ? SESSION_STOP_DRAIN : SESSION_STOP_NOW);
		(void)shutdown(c->s.fd, how);
	}
	pthread_mutex_unlock(&m->lock);
}

static void *
udp_thread(void *arg)
{
	struct udp_worker *w = arg;
	struct tmodel *m = w->owner;

	/* %t is this thread, not the one that set the worker up. */
	w->prefix_len = prefix_expand(w->lst->cfg.prefix, w->lst->cfg.name, w->prefix,
				      sizeof(w->prefix));
	while (!atomic_load(&m->stopping)) {
		int r = udp_worker_block(w, w->lst->fds, w->lst->n_addrs, 200);

		if (r < 0 && r != -EAGAIN && r != -EINTR) {
			log_full_errno(LOG_ERR, r, w->lst->cfg.name, NULL, "receive failed");
			atomic_store(&m->stopping, true);
		}
		udp_worker_tick(w, w->lst->fds[0]);
	}
	return NULL;
}

static int
run_udp(struct tmodel *m, int sfd)
{
	struct listener_rt *lst = m->lst;
	unsigned n = lst->cfg.workers;
	struct udp_worker *ws;
	pthread_t *ths;
	unsigned started = 0;
	struct signalfd_siginfo si;
	int ret = 0;

	ws = calloc(n, sizeof(*ws));
	ths = calloc(n, sizeof(*ths));
	if (!ws || !ths) {
		free(ws);
		free(ths);
		return 1;
	}
	for (size_t i = 0; i < lst->n_addrs; i++) {
		struct timeval tv = { .tv_usec = UDP_WAKE_USEC };

		/* Several addresses make one thread serve several sockets:
		 * then it must not block on any single one. */
		(void)fd_set_nonblock(lst->fds[i], lst->n_addrs > 1);
		(void)setsockopt(lst->fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	for (unsigned i = 0; i < n; i++) {
		if (udp_worker_init(&ws[i], lst) < 0) {
			ret = 1;
			break;
		}
		ws[i].owner = m;
		int e = pthread_create(&ths[i], &m->attr, udp_thread, &ws[i]);

		if (e != 0) {
			/* pthread_create returns the error; errno is not set. */
			log_full_errno(LOG_ERR, e, lst->cfg.name, NULL, "cannot start worker thread");
			udp_worker_done(&ws[i]);
			ret = 1;
			break;
		}
		started++;
	}
	if (ret == 0) {
		handler_notify_ready(lst);
		for (;;) {
			ssize_t k = read(sfd, &si, sizeof(si));

			if (k == sizeof(si) || (k < 0 && errno != EINTR))
				break;
		}
	}
	atomic_store(&m->stopping, true);
	for (unsigned i = 0; i < started; i++) {
		pthread_join(ths[i], NULL);
		udp_worker_done(&ws[i]);
	}
	udp_shutdown_notice(lst);
	free(ws);
	free(ths);
	return ret;
}

static int
run_tcp(struct tmodel *m, int sfd)
{
	struct listener_rt *lst = m->lst;
	struct loop_timer tick = { 0 };
	struct acceptor acc;
	struct loop *l = NULL;
	uint64_t deadline;
	int r;

	r = loop_new(&l, LOOP_BACKEND_POLL);
	if (r < 0)
		return log_full_errno(LOG_ERR, r, lst->cfg.name, NULL, "cannot create loop"), 1;
	acc = (struct acceptor){
		.lst = lst,
		.loop = l,
		.fds = lst->fds,
		.n_fds = lst->n_addrs,
		.events = LOOP_READ,
		.on_conn = on_conn,
		.userdata = m,
	};
	r = acceptor_start(&acc);
	if (r >= 0)
		r = loop_add(l, sfd, LOOP_READ, on_signal, m);
	if (r < 0) {
		loop_free(l);
		return log_full_errno(LOG_ERR, r, lst->cfg.name, NULL, "cannot set up"), 1;
	}
	if (lst->service->tick)
		loop_timer_set(l, &tick, loop_now(l) + HANDLER_TICK_USEC, on_tick, m);
	handler_notify_ready(lst);
	r = loop_run(l);
	loop_free(l);
	if (r < 0)
		log_full_errno(LOG_ERR, r, lst->cfg.name, NULL, "event loop failed");

	/* Stop: no new connections; connection threads stop reading, send
	 * what they owe and end. */
	atomic_store(&m->stopping, true);
	shutdown_all(m, SHUT_RD);
	deadline = now_usec() + (uint64_t)lst->shutdown_timeout * USEC_PER_SEC;
	if (!wait_threads(m, deadline)) {
		log_listener(LOG_WARNING, lst->cfg.name, NULL,
			     "connections still open after %u s, closing them",
			     lst->shutdown_timeout);
		shutdown_all(m, SHUT_RDWR);
		if (!wait_threads(m, now_usec() + USEC_PER_SEC)) {
			/* Returning would free what those threads still use
			 * (m is on our caller's stack, the room, the tables). */
			log_listener(LOG_ERR, lst->cfg.name, NULL,
				     "connection threads did not end; exiting");
			_exit(1);
		}
	}
	return r < 0 ? 1 : 0;
}

static int
thread_model_run(struct listener_rt *lst)
{
	struct tmodel m = { .lst = lst };
	int sfd, ret;

	sfd = handler_signalfd(false, 0);
	if (sfd < 0)
		return log_full_errno(LOG_ERR, sfd, lst->cfg.name, NULL, "signalfd failed"), 1;
	pthread_mutex_init(&m.lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&m.cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_attr_init(&m.attr);
	pthread_attr_setstacksize(&m.attr, THREAD_STACK_SIZE);
	if (lst->cfg.protocol == PROTOCOL_TCP)
		pthread_attr_setdetachstate(&m.attr, PTHREAD_CREATE_DETACHED);

	/* Threads inherit the mask: every signal stays blocked in them
	 * (the dispatcher blocked the ones we care about before fork). */
	handler_block_signals();
	ret = lst->cfg.protocol == PROTOCOL_TCP ? run_tcp(&m, sfd) : run_udp(&m, sfd);

	pthread_attr_destroy(&m.attr);
	safe_close(sfd);
	return ret;
}

const struct model_ops handler_thread_ops = {
	.name = "thread",
	.run = thread_model_run,
};
