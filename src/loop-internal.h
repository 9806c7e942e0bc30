#pragma once

#include "loop.h"

struct loop_fd {
	loop_io_fn cb;
	void *userdata;
	unsigned events; /* 0 = not watched */
	int bidx;        /* backend's slot (poll's index), -1 if none */
	uint64_t batch;  /* loop.batch when added */
};

struct loop_fired {
	int fd;
	unsigned events;
};

struct loop_backend_ops {
	const char *name;
	int (*init)(struct loop *l);
	void (*done)(struct loop *l);
	/* Move fd from old to new event mask; either may be 0. */
	int (*update)(struct loop *l, int fd, unsigned old_events, unsigned new_events);
	/* Fill l->fired[], return the count or -errno. */
	int (*wait)(struct loop *l, int timeout_ms);
};

struct loop {
	const struct loop_backend_ops *ops;
	void *backend;
	struct loop_fd *fds; /* indexed by fd */
	int n_fds;           /* allocated entries */
	int max_fd;          /* highest watched fd, -1 when none */
	int n_watched;
	struct loop_fired *fired;
	int n_fired_alloc;
	struct loop_timer *timers;
	uint64_t timer_seq; /* counts loop_timer_set() arms */
	uint64_t now;
	uint64_t batch; /* counts waits, to tell fds added since the last one */
	bool quit;
};

/* Make room in l->fired for n events. */
int loop_reserve_fired(struct loop *l, int n);

extern const struct loop_backend_ops loop_select_ops;
extern const struct loop_backend_ops loop_poll_ops;
extern const struct loop_backend_ops loop_epoll_ops;
