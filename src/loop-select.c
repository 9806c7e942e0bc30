#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "loop-internal.h"

struct select_state {
	fd_set rfds, wfds;
};

static int
select_init(struct loop *l)
{
	struct select_state *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	FD_ZERO(&s->rfds);
	FD_ZERO(&s->wfds);
	l->backend = s;
	return loop_reserve_fired(l, 64);
}

static void
select_done(struct loop *l)
{
	free(l->backend);
	l->backend = NULL;
}

static int
select_update(struct loop *l, int fd, unsigned old_events, unsigned new_events)
{
	struct select_state *s = l->backend;

	/* fd_set is a fixed bitmap: touching a bit at or past FD_SETSIZE
	 * corrupts memory, so such fds are refused outright. */
	if (fd >= FD_SETSIZE)
		return -EMFILE;
	if (new_events & LOOP_READ)
		FD_SET(fd, &s->rfds);
	else
		FD_CLR(fd, &s->rfds);
	if (new_events & LOOP_WRITE)
		FD_SET(fd, &s->wfds);
	else
		FD_CLR(fd, &s->wfds);
	(void)old_events;
	return 0;
}

static int
select_wait(struct loop *l, int timeout_ms)
{
	struct select_state *s = l->backend;
	struct timeval tv, *tvp = NULL;
	fd_set r, w;
	int n, k = 0, r2;

	memcpy(&r, &s->rfds, sizeof(r));
	memcpy(&w, &s->wfds, sizeof(w));
	if (timeout_ms >= 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
		tvp = &tv;
	}
	n = select(l->max_fd + 1, &r, &w, NULL, tvp);
	if (n < 0)
		return -errno;
	if (n == 0)
		return 0;
	r2 = loop_reserve_fired(l, l->n_watched);
	if (r2 < 0)
		return r2;
	for (int fd = 0; fd <= l->max_fd && k < n * 2 && k < l->n_fired_alloc; fd++) {
		unsigned ev = 0;

		if (FD_ISSET(fd, &r))
			ev |= LOOP_READ;
		if (FD_ISSET(fd, &w))
			ev |= LOOP_WRITE;
		if (ev)
			l->fired[k++] = (struct loop_fired){ .fd = fd, .events = ev };
	}
	return k;
}

const struct loop_backend_ops loop_select_ops = {
	.name = "select",
	.init = select_init,
	.done = select_done,
	.update = select_update,
	.wait = select_wait,
};
