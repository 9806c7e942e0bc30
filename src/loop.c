#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "loop-internal.h"
#include "util.h"

static const struct loop_backend_ops *const backends[_LOOP_BACKEND_MAX] = {
	[LOOP_BACKEND_SELECT] = &loop_select_ops,
	[LOOP_BACKEND_POLL] = &loop_poll_ops,
	[LOOP_BACKEND_EPOLL] = &loop_epoll_ops,
};

int
loop_new(struct loop **ret, enum loop_backend backend)
{
	struct loop *l;
	int r;

	if ((unsigned)backend >= _LOOP_BACKEND_MAX)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->ops = backends[backend];
	l->max_fd = -1;
	l->now = now_usec();
	r = l->ops->init(l);
	if (r < 0) {
		free(l);
		return r;
	}
	*ret = l;
	return 0;
}

struct loop *
loop_free(struct loop *l)
{
	if (!l)
		return NULL;
	l->ops->done(l);
	free(l->fds);
	free(l->fired);
	free(l);
	return NULL;
}

int
loop_reserve_fired(struct loop *l, int n)
{
	struct loop_fired *f;

	if (n <= l->n_fired_alloc)
		return 0;
	f = realloc(l->fired, (size_t)n * sizeof(*f));
	if (!f)
		return -ENOMEM;
	l->fired = f;
	l->n_fired_alloc = n;
	return 0;
}

static int
grow_fds(struct loop *l, int fd)
{
	struct loop_fd *n;
	int want;

	if (fd < l->n_fds)
		return 0;
	want = l->n_fds ? l->n_fds : 64;
	while (want <= fd)
		want *= 2;
	n = realloc(l->fds, (size_t)want * sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (int i = l->n_fds; i < want; i++)
		n[i] = (struct loop_fd){ .bidx = -1 };
	l->fds = n;
	l->n_fds = want;
	return 0;
}

int
loop_add(struct loop *l, int fd, unsigned events, loop_io_fn cb, void *userdata)
{
	int r;

	if (fd < 0 || !cb)
		return -EINVAL;
	r = grow_fds(l, fd);
	if (r < 0)
		return r;
	if (l->fds[fd].cb)
		return -EEXIST;
	r = l->ops->update(l, fd, 0, events);
	if (r < 0)
		return r;
	l->fds[fd].cb = cb;
	l->fds[fd].userdata = userdata;
	l->fds[fd].events = events;
	l->fds[fd].batch = l->batch;
	l->n_watched++;
	if (fd > l->max_fd)
		l->max_fd = fd;
	return 0;
}

int
loop_set_events(struct loop *l, int fd, unsigned events)
{
	struct loop_fd *f;
	int r;

	if (fd < 0 || fd >= l->n_fds || !l->fds[fd].cb)
		return -ENOENT;
	f = &l->fds[fd];
	if (f->events == events)
		return 0;
	r = l->ops->update(l, fd, f->events, events);
	if (r < 0)
		return r;
	f->events = events;
	return 0;
}

void
loop_remove(struct loop *l, int fd)
{
	if (fd < 0 || fd >= l->n_fds || !l->fds[fd].cb)
		return;
	(void)l->ops->update(l, fd, l->fds[fd].events, 0);
	l->fds[fd] = (struct loop_fd){ .bidx = -1 };
	l->n_watched--;
	if (fd == l->max_fd) {
		while (l->max_fd >= 0 && !l->fds[l->max_fd].cb)
			l->max_fd--;
	}
}

void
loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t deadline, loop_timer_fn cb,
	       void *userdata)
{
	t->deadline = deadline;
	t->cb = cb;
	t->userdata = userdata;
	if (deadline)
		t->seq = ++l->timer_seq;
	if (deadline && !t->linked) {
		t->next = l->timers;
		l->timers = t;
		t->linked = true;
	} else if (!deadline && t->linked) {
		for (struct loop_timer **p = &l->timers; *p; p = &(*p)->next) {
			if (*p == t) {
				*p = t->next;
				break;
			}
		}
		t->linked = false;
		t->next = NULL;
	}
}

uint64_t
loop_now(const struct loop *l)
{
	return l->now;
}

static int
next_timeout(const struct loop *l, int timeout_ms)
{
	uint64_t earliest = 0;

	for (const struct loop_timer *t = l->timers; t; t = t->next) {
		if (t->deadline && (!earliest || t->deadline < earliest))
			earliest = t->deadline;
	}
	if (!earliest)
		return timeout_ms;
	if (earliest <= l->now)
		return 0;
	/* Round up so we do not wake a hair early and spin. */
	uint64_t ms = (earliest - l->now + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
	if (ms > INT_MAX)
		ms = INT_MAX;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < ms)
		return timeout_ms;
	return (int)ms;
}

static void
run_timers(struct loop *l)
{
	uint64_t armed_before = l->timer_seq;

	/* A callback may arm or disarm any timer, so walk again after each
	 * one that fires; timers are few (a handful per loop). Fire the
	 * earliest due first, and leave a timer armed during this walk (one
	 * re-armed for "now" by its own callback) to the next iteration, so
	 * it cannot spin here and starve the fds. */
	for (;;) {
		struct loop_timer *first = NULL;

		for (struct loop_timer *t = l->timers; t; t = t->next) {
			if (t->deadline && t->deadline <= l->now && t->seq <= armed_before &&
			    (!first || t->deadline < first->deadline))
				first = t;
		}
		if (!first)
			break;
		loop_timer_fn cb = first->cb;
		void *ud = first->userdata;

		loop_timer_set(l, first, 0, NULL, NULL);
		cb(l, first, ud);
	}
}

int
loop_run_once(struct loop *l, int timeout_ms)
{
	int n;

	n = l->ops->wait(l, next_timeout(l, timeout_ms));
	l->now = now_usec();
	l->batch++;
	if (n < 0) {
		if (n == -EINTR)
			return 0;
		return n;
	}
	for (int i = 0; i < n; i++) {
		int fd = l->fired[i].fd;
		struct loop_fd *f;
		unsigned ev;

		if (fd >= l->n_fds)
			continue;
		f = &l->fds[fd];
		/* A callback earlier in this batch may have removed or
		 * changed this fd, or closed it and added another that got
		 * its number: that one's readiness is not in this batch. */
		ev = l->fired[i].events & f->events & (LOOP_READ | LOOP_WRITE);
		if (!f->cb || !ev || f->batch == l->batch)
			continue;
		f->cb(l, fd, ev, f->userdata);
		if (l->quit)
			break;
	}
	run_timers(l);
	return 0;
}

int
loop_run(struct loop *l)
{
	l->quit = false;
	while (!l->quit) {
		int r = loop_run_once(l, -1);
		if (r < 0)
			return r;
	}
	return 0;
}

void
loop_quit(struct loop *l)
{
	l->quit = true;
}

