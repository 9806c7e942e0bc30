#pragma once

#include <stdbool.h>
#include <stdint.h>

/* One readiness loop per thread, with select, poll and epoll backends in
 * the manner of Redis's ae.c. A backend only translates readiness; timers,
 * ordering and callbacks live in loop.c. ERR/HUP count as readable and
 * writable, and the following read() tells what happened. */

struct loop;
struct loop_timer;

enum {
	LOOP_READ = 1u << 0,
	LOOP_WRITE = 1u << 1,
	/* epoll only: wake one of several loops sharing a listening fd. */
	LOOP_EXCLUSIVE = 1u << 2,
};

enum loop_backend {
	LOOP_BACKEND_SELECT,
	LOOP_BACKEND_POLL,
	LOOP_BACKEND_EPOLL,
	_LOOP_BACKEND_MAX,
};

typedef void (*loop_io_fn)(struct loop *l, int fd, unsigned events, void *userdata);
typedef void (*loop_timer_fn)(struct loop *l, struct loop_timer *t, void *userdata);

struct loop_timer {
	uint64_t deadline; /* CLOCK_MONOTONIC usec; 0 = disarmed */
	loop_timer_fn cb;
	void *userdata;
	struct loop_timer *next; /* loop.c's list of timers */
	uint64_t seq;            /* when armed, loop.c's count of arms */
	bool linked;
};

int loop_new(struct loop **ret, enum loop_backend backend);
struct loop *loop_free(struct loop *l);

/* Watch fd for events (LOOP_READ|LOOP_WRITE). -EMFILE when the backend
 * cannot hold fd (select and fd >= FD_SETSIZE). */
int loop_add(struct loop *l, int fd, unsigned events, loop_io_fn cb, void *userdata);
int loop_set_events(struct loop *l, int fd, unsigned events);
void loop_remove(struct loop *l, int fd);

/* Arm (deadline > 0) or disarm (0) a timer. The timer struct is owned by
 * the caller and must be disarmed before it is freed. */
void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t deadline,
		    loop_timer_fn cb, void *userdata);

/* Monotonic time cached at the last wake-up. */
uint64_t loop_now(const struct loop *l);

/* Run until loop_quit(); returns 0 or -errno of a failed wait. */
int loop_run(struct loop *l);
/* One iteration; timeout_ms -1 = until something happens. */
int loop_run_once(struct loop *l, int timeout_ms);
void loop_quit(struct loop *l);
