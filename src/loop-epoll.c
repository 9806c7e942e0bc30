#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop-internal.h"
#include "util.h"

#define EPOLL_BATCH 256

struct epoll_state {
	int epfd;
	struct epoll_event events[EPOLL_BATCH];
};

static int
epoll_init(struct loop *l)
{
	struct epoll_state *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0) {
		int r = -errno;
		free(s);
		return r;
	}
	l->backend = s;
	return loop_reserve_fired(l, EPOLL_BATCH);
}

static void
epoll_done(struct loop *l)
{
	struct epoll_state *s = l->backend;

	if (s)
		safe_close(s->epfd);
	free(s);
	l->backend = NULL;
}

static int
epoll_update(struct loop *l, int fd, unsigned old_events, unsigned new_events)
{
	struct epoll_state *s = l->backend;
	struct epoll_event ev = { .data.fd = fd };
	int op;

	ev.events = ((new_events & LOOP_READ) ? EPOLLIN : 0) |
		    ((new_events & LOOP_WRITE) ? EPOLLOUT : 0);
	if (new_events & LOOP_EXCLUSIVE)
		ev.events |= EPOLLEXCLUSIVE;

	if (!(old_events & (LOOP_READ | LOOP_WRITE)) && (new_events & (LOOP_READ | LOOP_WRITE)))
		op = EPOLL_CTL_ADD;
	else if (!(new_events & (LOOP_READ | LOOP_WRITE)))
		op = EPOLL_CTL_DEL;
	else if ((old_events | new_events) & LOOP_EXCLUSIVE) {
		/* EPOLLEXCLUSIVE cannot be modified: delete and add. */
		(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
		op = EPOLL_CTL_ADD;
	} else
		op = EPOLL_CTL_MOD;

	if (epoll_ctl(s->epfd, op, fd, &ev) < 0) {
		/* The fd may already be closed by the caller on removal. */
		if (op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT))
			return 0;
		return -errno;
	}
	return 0;
}

static int
epoll_wait_events(struct loop *l, int timeout_ms)
{
	struct epoll_state *s = l->backend;
	int n;

	n = epoll_wait(s->epfd, s->events, EPOLL_BATCH, timeout_ms);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		uint32_t re = s->events[i].events;
		unsigned ev = 0;

		if (re & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
			ev |= LOOP_READ;
		if (re & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			ev |= LOOP_WRITE;
		l->fired[i] = (struct loop_fired){ .fd = s->events[i].data.fd, .events = ev };
	}
	return n;
}

const struct loop_backend_ops loop_epoll_ops = {
	.name = "epoll",
	.init = epoll_init,
	.done = epoll_done,
	.update = epoll_update,
	.wait = epoll_wait_events,
};
