#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "acceptor.h"
#include "admission.h"
#include "listener-rt.h"
#include "log.h"
#include "proxyproto.h"
#include "session.h"
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

/* A connection whose PROXY header has not come whole yet. buf holds the
 * header bytes taken off the socket so far: only ever bytes of the header,
 * so what the client sends after it stays in the socket. */
struct proxy_wait {
	struct acceptor *a;
	int fd;
	bool watched; /* in a->loop */
	union sockaddr_any balancer;
	uint64_t deadline;
	struct proxy_wait *prev, *next;
	size_t have;
	uint8_t buf[PROXY_HEADER_MAX];
};

/* Hand an admitted connection to the model; on failure give back what
 * admission took and turn it away. */
static void
hand_over(struct acceptor *a, int fd, const struct conn_origin *o)
{
	const char *why = a->on_conn(a, &fd, o);

	if (why) {
		admission_release(a->lst, &o->peer);
		admission_refuse(a->lst, fd, &o->peer, o->proxied ? &o->via : NULL, why);
	}
}

static void wait_arm(struct acceptor *a);

static void
wait_unlink(struct proxy_wait *w)
{
	struct acceptor *a = w->a;

	if (w->prev)
		w->prev->next = w->next;
	else
		a->wait_head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		a->wait_tail = w->prev;
	w->prev = w->next = NULL;
	if (w->watched)
		loop_remove(a->loop, w->fd);
	w->watched = false;
}

/* No valid header: closed without a word, counted and logged as refused. */
static void
wait_fail(struct proxy_wait *w, const char *why)
{
	struct listener_rt *l = w->a->lst;
	char reason[96];

	wait_unlink(w);
	admission_release_accepted(l);
	snprintf(reason, sizeof(reason), "bad proxy header (%s)", why);
	admission_refuse(l, w->fd, &w->balancer, NULL, reason);
	free(w);
}

/* Take header bytes off the socket: peek at what is there, parse it with
 * what came before, and consume only what belongs to the header. 1 when
 * the header is complete (*info filled), 0 to wait for more, -1 when w
 * failed (and is gone). */
static int
wait_read(struct proxy_wait *w, struct proxy_info *info)
{
	const char *why = NULL;
	ssize_t n, want;
	int r;

	do
		n = recv(w->fd, w->buf + w->have, sizeof(w->buf) - w->have, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n <= 0) {
		wait_fail(w, n == 0 ? "closed before the header" : "connection error");
		return -1;
	}
	r = proxy_parse(w->buf, w->have + (size_t)n, info, &why);
	if (r < 0) {
		wait_fail(w, r == -EMSGSIZE ? "too long" : why ? why : "malformed");
		return -1;
	}
	/* Complete: consume the rest of the header. Not yet: consume all
	 * that was there, header bytes every one, so the socket is readable
	 * again only once more arrives. */
	want = r > 0 ? (ssize_t)((size_t)r - w->have) : n;
	do
		n = recv(w->fd, w->buf + w->have, (size_t)want, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n != want) {
		/* The bytes were there a moment ago. */
		wait_fail(w, "connection error");
		return -1;
	}
	w->have += (size_t)n;
	return r > 0;
}

/* The header is whole: admit its source and hand the connection over. */
static void
wait_done(struct proxy_wait *w, const struct proxy_info *info)
{
	struct acceptor *a = w->a;
	struct conn_origin o = {
		.proxied = true,
		.via = w->balancer,
		.health_check = info->local,
		.peer = info->local ? w->balancer : info->src,
	};
	const char *why;
	int fd = w->fd;

	wait_unlink(w);
	free(w);
	why = admission_admit_source(a->lst, &o.peer, o.health_check);
	if (why) {
		admission_refuse(a->lst, fd, &o.peer, &o.via, why);
		return;
	}
	hand_over(a, fd, &o);
}

static void
on_wait_io(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct proxy_wait *w = userdata;
	struct acceptor *a = w->a;
	struct proxy_info info;

	if (wait_read(w, &info) > 0)
		wait_done(w, &info);
	/* The oldest may have gone. */
	wait_arm(a);
}

static void
on_wait_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct acceptor *a = userdata;
	uint64_t now = loop_now(l);

	while (a->wait_head && a->wait_head->deadline <= now)
		wait_fail(a->wait_head, "none within 5 s");
	wait_arm(a);
}

static void
wait_arm(struct acceptor *a)
{
	if (a->wait_head)
		loop_timer_set(a->loop, &a->wait_timer, a->wait_head->deadline, on_wait_timer, a);
	else
		loop_timer_set(a->loop, &a->wait_timer, 0, NULL, NULL);
}

/* An admitted connection on a proxy_protocol listener: its header often
 * came with the handshake, so try at once; else watch it. */
static void
wait_start(struct acceptor *a, int fd, const union sockaddr_any *balancer)
{
	struct proxy_wait *w = malloc(sizeof(*w));
	struct proxy_info info;
	int r;

	if (!w) {
		admission_release_accepted(a->lst);
		admission_refuse(a->lst, fd, balancer, NULL, "out of memory");
		return;
	}
	*w = (struct proxy_wait){
		.a = a,
		.fd = fd,
		.balancer = *balancer,
		.deadline = loop_now(a->loop) + ACCEPTOR_PROXY_TIMEOUT_USEC,
		.prev = a->wait_tail,
	};
	/* Oldest first: deadlines only grow (loop_now() is monotonic). */
	if (a->wait_tail)
		a->wait_tail->next = w;
	else
		a->wait_head = w;
	a->wait_tail = w;
	r = wait_read(w, &info);
	if (r != 0) {
		/* Whole already, or failed (and w is gone). */
		if (r > 0)
			wait_done(w, &info);
		wait_arm(a);
		return;
	}
	r = loop_add(a->loop, fd, LOOP_READ, on_wait_io, w);
	if (r < 0) {
		wait_unlink(w);
		admission_release_accepted(a->lst);
		admission_refuse(a->lst, fd, balancer, NULL, "cannot watch the connection");
		free(w);
	} else
		w->watched = true;
	wait_arm(a);
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
			admission_refuse(a->lst, cfd, &peer, NULL, why);
			continue;
		}
		if (a->lst->cfg.proxy_protocol)
			wait_start(a, cfd, &peer);
		else
			hand_over(a, cfd, &(struct conn_origin){ .peer = peer });
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
	while (a->wait_head) {
		struct proxy_wait *w = a->wait_head;

		wait_unlink(w);
		admission_release_accepted(a->lst);
		safe_close(w->fd);
		free(w);
	}
	wait_arm(a);
}
