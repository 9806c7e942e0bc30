#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#include "loop-internal.h"

/* A dense pollfd array; each watched fd remembers its slot in
 * loop_fd.bidx so updates and removals are O(1). */
struct poll_state {
	struct pollfd *pfds;
	int n, alloc;
};

static int
poll_init(struct loop *l)
{
	struct poll_state *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	l->backend = s;
	return loop_reserve_fired(l, 64);
}

static void
poll_done(struct loop *l)
{
	struct poll_state *s = l->backend;

	if (s)
		free(s->pfds);
	free(s);
	l->backend = NULL;
}

static short
to_poll(unsigned ev)
{
	return (short)(((ev & LOOP_READ) ? POLLIN : 0) | ((ev & LOOP_WRITE) ? POLLOUT : 0));
}

static int
poll_update(struct loop *l, int fd, unsigned old_events, unsigned new_events)
{
	struct poll_state *s = l->backend;
	struct loop_fd *f = &l->fds[fd];

	if (new_events && f->bidx < 0) {
		if (s->n == s->alloc) {
			int want = s->alloc ? s->alloc * 2 : 64;
			struct pollfd *p = realloc(s->pfds, (size_t)want * sizeof(*p));

			if (!p)
				return -ENOMEM;
			s->pfds = p;
			s->alloc = want;
			if (loop_reserve_fired(l, want) < 0)
				return -ENOMEM;
		}
		f->bidx = s->n++;
		s->pfds[f->bidx] = (struct pollfd){ .fd = fd };
	}
	if (new_events) {
		s->pfds[f->bidx].events = to_poll(new_events);
		return 0;
	}
	if (f->bidx >= 0) {
		/* Move the last slot into the hole. */
		int last = --s->n;

		if (f->bidx != last) {
			s->pfds[f->bidx] = s->pfds[last];
			l->fds[s->pfds[f->bidx].fd].bidx = f->bidx;
		}
		f->bidx = -1;
	}
	(void)old_events;
	return 0;
}

static int
poll_wait(struct loop *l, int timeout_ms)
{
	struct poll_state *s = l->backend;
	int n, k = 0;

	n = poll(s->pfds, (nfds_t)s->n, timeout_ms);
	if (n < 0)
		return -errno;
	for (int i = 0; i < s->n && k < n; i++) {
		short re = s->pfds[i].revents;
		unsigned ev = 0;

		if (!re)
			continue;
		if (re & (POLLIN | POLLERR | POLLHUP | POLLNVAL))
			ev |= LOOP_READ;
		if (re & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))
			ev |= LOOP_WRITE;
		l->fired[k++] = (struct loop_fired){ .fd = s->pfds[i].fd, .events = ev };
	}
	return k;
}

const struct loop_backend_ops loop_poll_ops = {
	.name = "poll",
	.init = poll_init,
	.done = poll_done,
	.update = poll_update,
	.wait = poll_wait,
};
