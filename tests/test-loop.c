#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "loop.h"

/* Every case runs once per backend (tcase_add_loop_test over
 * enum loop_backend, the loop index is _i). No wait is unbounded: each
 * loop_run_once() gets a timeout, each case a Check timeout, and an alarm()
 * kills a case that hangs even when CK_FORK=no turns the Check timeout off. */

#define TEST_ALARM_SEC 10
/* Upper bound for "wait until this happens" loops: one iteration each. */
#define MAX_ITERATIONS 1000
#define WAIT_MS 1000

static const char *const backend_names[_LOOP_BACKEND_MAX] = {
	[LOOP_BACKEND_SELECT] = "select",
	[LOOP_BACKEND_POLL] = "poll",
	[LOOP_BACKEND_EPOLL] = "epoll",
};

static void
setup(void)
{
	(void)signal(SIGPIPE, SIG_IGN);
	alarm(TEST_ALARM_SEC);
}

static void
teardown(void)
{
	alarm(0);
}

static uint64_t
mono_usec(void)
{
	struct timespec ts;

	ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct loop *
new_loop(int backend)
{
	struct loop *l = NULL;
	int r = loop_new(&l, (enum loop_backend)backend);

	ck_assert_msg(r == 0, "loop_new(%s): %s", backend_names[backend], strerror(-r));
	return l;
}

static void
make_pair(int sv[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
			 0);
}

static void
make_pipe(int p[2])
{
	ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void
put_byte(int fd)
{
	ck_assert_int_eq(write(fd, "x", 1), 1);
}

static void
drain(int fd)
{
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* What the callbacks saw. */
#define MAX_CALLS 64
struct record {
	struct loop *l;
	int n;
	int fd[MAX_CALLS];
	unsigned events[MAX_CALLS];
	char tag[MAX_CALLS];
	/* for the cases that act on another fd or timer */
	int other_fd[2];
	int reuse_src;
	struct loop_timer *other_timer[2];
	bool quit_on_call;
};

static void
note(struct record *rec, int fd, unsigned events, char tag)
{
	ck_assert_int_lt(rec->n, MAX_CALLS);
	rec->fd[rec->n] = fd;
	rec->events[rec->n] = events;
	rec->tag[rec->n] = tag;
	rec->n++;
}

static void
on_io(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct record *rec = userdata;

	note(rec, fd, events, 'f');
	if (rec->quit_on_call)
		loop_quit(l);
}

/* Run iterations until rec has at least n calls; fail, never hang, if it
 * does not come. */
static void
run_until_calls(struct loop *l, struct record *rec, int n)
{
	for (int i = 0; rec->n < n; i++) {
		ck_assert_msg(i < MAX_ITERATIONS, "only %d of %d callbacks after %d iterations",
			      rec->n, n, i);
		ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	}
}

/* ---- readiness ---- */

START_TEST(loop_dispatches_readable)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	int sv[2];

	make_pair(sv);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 0);

	put_byte(sv[1]);
	run_until_calls(l, &rec, 1);
	ck_assert_int_eq(rec.n, 1);
	ck_assert_int_eq(rec.fd[0], sv[0]);
	ck_assert_uint_eq(rec.events[0], LOOP_READ);

	/* Level-triggered: unread data fires again. */
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 2);

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(loop_dispatches_writable)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	int sv[2];

	make_pair(sv);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ | LOOP_WRITE, on_io, &rec), 0);
	run_until_calls(l, &rec, 1);
	/* Nothing to read: only WRITE is reported. */
	ck_assert_uint_eq(rec.events[0], LOOP_WRITE);

	put_byte(sv[1]);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 2);
	ck_assert_uint_eq(rec.events[1], LOOP_READ | LOOP_WRITE);

	/* Narrowed to READ, writability is no longer reported. */
	ck_assert_int_eq(loop_set_events(l, sv[0], LOOP_READ), 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 3);
	ck_assert_uint_eq(rec.events[2], LOOP_READ);

	/* Mask 0: watched but silent. */
	ck_assert_int_eq(loop_set_events(l, sv[0], 0), 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 3);
	ck_assert_int_eq(loop_set_events(l, sv[0], LOOP_WRITE), 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 4);
	ck_assert_uint_eq(rec.events[3], LOOP_WRITE);

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(loop_rejects_bad_registrations)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	int sv[2];

	make_pair(sv);
	ck_assert_int_eq(loop_add(l, -1, LOOP_READ, on_io, &rec), -EINVAL);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, NULL, &rec), -EINVAL);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), -EEXIST);
	ck_assert_int_eq(loop_set_events(l, sv[1], LOOP_READ), -ENOENT);
	ck_assert_int_eq(loop_set_events(l, 100000, LOOP_READ), -ENOENT);
	loop_remove(l, sv[1]);  /* not watched: harmless */
	loop_remove(l, 100000); /* beyond the table: harmless */
	loop_remove(l, sv[0]);
	loop_remove(l, sv[0]); /* twice: harmless */
	put_byte(sv[1]);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 0);
	/* Removed, it may be added again. */
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 1);

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* More ready fds than any backend's first allocation (64) or epoll's
 * batch (256): each is dispatched, exactly once, as it removes itself. */
#define MANY_FDS 300

static void
on_io_remove_self(struct loop *l, int fd, unsigned events, void *userdata)
{
	int *seen = userdata;

	ck_assert_uint_eq(events, LOOP_READ);
	(*seen)++;
	loop_remove(l, fd);
}

START_TEST(loop_dispatches_every_ready_fd)
{
	struct loop *l = new_loop(_i);
	int pairs[MANY_FDS][2];
	int seen[MANY_FDS] = { 0 };
	int total = 0;

	for (int i = 0; i < MANY_FDS; i++) {
		make_pair(pairs[i]);
		ck_assert_int_eq(loop_add(l, pairs[i][0], LOOP_READ, on_io_remove_self, &seen[i]),
				 0);
		put_byte(pairs[i][1]);
	}
	for (int it = 0; total < MANY_FDS; it++) {
		ck_assert_int_lt(it, 10);
		ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
		total = 0;
		for (int i = 0; i < MANY_FDS; i++)
			total += seen[i];
	}
	for (int i = 0; i < MANY_FDS; i++)
		ck_assert_msg(seen[i] == 1, "fd %d dispatched %d times", pairs[i][0], seen[i]);

	loop_free(l);
	for (int i = 0; i < MANY_FDS; i++) {
		close(pairs[i][0]);
		close(pairs[i][1]);
	}
}
END_TEST

/* ---- ERR and HUP ---- */

START_TEST(loop_reports_peer_close_as_readable)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	char c;
	int sv[2];

	make_pair(sv);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	close(sv[1]);
	run_until_calls(l, &rec, 1);
	ck_assert_uint_eq(rec.events[0] & LOOP_READ, LOOP_READ);
	/* ... and read() then tells what happened. */
	ck_assert_int_eq(read(sv[0], &c, 1), 0);

	loop_free(l);
	close(sv[0]);
}
END_TEST

START_TEST(loop_reports_pipe_hup_as_readable)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	char c;
	int p[2];

	/* An empty pipe whose write end is gone polls POLLHUP without
	 * POLLIN: a backend that maps only POLLIN would miss it. */
	make_pipe(p);
	ck_assert_int_eq(loop_add(l, p[0], LOOP_READ, on_io, &rec), 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 0);
	close(p[1]);
	run_until_calls(l, &rec, 1);
	ck_assert_uint_eq(rec.events[0], LOOP_READ);
	ck_assert_int_eq(read(p[0], &c, 1), 0);

	loop_free(l);
	close(p[0]);
}
END_TEST

START_TEST(loop_reports_pipe_err_as_writable)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	char buf[4096];
	int p[2];

	/* A full pipe: not writable. Its reader goes away: POLLERR, which
	 * must reach a WRITE watcher so write() can report EPIPE. */
	make_pipe(p);
	memset(buf, 'x', sizeof(buf));
	while (write(p[1], buf, sizeof(buf)) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(loop_add(l, p[1], LOOP_WRITE, on_io, &rec), 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 0);
	close(p[0]);
	run_until_calls(l, &rec, 1);
	ck_assert_uint_eq(rec.events[0], LOOP_WRITE);
	ck_assert_int_eq(write(p[1], "x", 1), -1);
	ck_assert_int_eq(errno, EPIPE);

	loop_free(l);
	close(p[1]);
}
END_TEST

START_TEST(loop_reports_peer_close_to_blocked_writer)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	char buf[4096];
	int sv[2];

	/* A writer stuck on a full socket, watching WRITE only, learns of
	 * the peer's close from a WRITE event. */
	make_pair(sv);
	memset(buf, 'x', sizeof(buf));
	while (write(sv[0], buf, sizeof(buf)) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_WRITE, on_io, &rec), 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 0);
	close(sv[1]);
	run_until_calls(l, &rec, 1);
	ck_assert_uint_eq(rec.events[0], LOOP_WRITE);
	ck_assert_int_eq(write(sv[0], "x", 1), -1);
	ck_assert_int_eq(errno, EPIPE);

	loop_free(l);
	close(sv[0]);
}
END_TEST

/* ---- changes made by callbacks in the same batch ---- */

/* Whichever of the two fires first removes the other (the order within a
 * batch is the backend's); the other must not be dispatched. */
static void
on_io_remove_other(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct record *rec = userdata;

	note(rec, fd, events, 'f');
	drain(fd);
	for (int i = 0; i < 2; i++) {
		if (rec->other_fd[i] != fd)
			loop_remove(l, rec->other_fd[i]);
	}
}

START_TEST(loop_skips_fd_removed_in_same_batch)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	int a[2], b[2];

	make_pair(a);
	make_pair(b);
	rec.other_fd[0] = a[0];
	rec.other_fd[1] = b[0];
	ck_assert_int_eq(loop_add(l, a[0], LOOP_READ, on_io_remove_other, &rec), 0);
	ck_assert_int_eq(loop_add(l, b[0], LOOP_READ, on_io_remove_other, &rec), 0);
	put_byte(a[1]);
	put_byte(b[1]);
	/* Both are ready before the wait, so both are in its one batch. */
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_int_eq(rec.n, 1);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 1);

	loop_free(l);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
}
END_TEST

static void
on_io_stale(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct record *rec = userdata;

	(void)l;
	note(rec, fd, events, 's');
}

/* The first to fire removes and closes the other, and a new, idle fd takes
 * its number and is watched with a new callback: the old fd's readiness
 * in this batch must not reach it. */
static void
on_io_close_reuse_other(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct record *rec = userdata;

	note(rec, fd, events, 'f');
	for (int i = 0; i < 2; i++) {
		int other = rec->other_fd[i];

		if (other == fd)
			continue;
		loop_remove(l, other);
		ck_assert_int_eq(dup2(rec->reuse_src, other), other);
		ck_assert_int_eq(loop_add(l, other, LOOP_READ, on_io_stale, rec), 0);
	}
	loop_remove(l, fd);
}

START_TEST(loop_skips_stale_event_for_reused_fd)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	int a[2], b[2], idle[2];

	make_pair(a);
	make_pair(b);
	make_pipe(idle); /* idle[0] never becomes readable until written */
	rec.other_fd[0] = a[0];
	rec.other_fd[1] = b[0];
	rec.reuse_src = idle[0];
	ck_assert_int_eq(loop_add(l, a[0], LOOP_READ, on_io_close_reuse_other, &rec), 0);
	ck_assert_int_eq(loop_add(l, b[0], LOOP_READ, on_io_close_reuse_other, &rec), 0);
	put_byte(a[1]);
	put_byte(b[1]);
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_msg(rec.n == 1, "%d callbacks, the last one %s", rec.n,
		      rec.n > 1 && rec.tag[rec.n - 1] == 's' ? "a stale event for the reused fd"
							     : "unexpected");
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 1);

	/* The new fd is watched for real: its own readiness gets through. */
	put_byte(idle[1]);
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_int_eq(rec.n, 2);
	ck_assert_int_eq(rec.tag[1], 's');

	loop_free(l);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	close(idle[0]);
	close(idle[1]);
}
END_TEST

/* ---- timers ---- */

struct tagged_timer {
	struct loop_timer t;
	char tag;
	uint64_t armed_for;
	struct record *rec;
};

static void
on_tagged_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct tagged_timer *tt = userdata;

	ck_assert_uint_eq(t->deadline, 0);
	ck_assert_msg(loop_now(l) >= tt->armed_for, "timer %c fired %llu usec early", tt->tag,
		      (unsigned long long)(tt->armed_for - loop_now(l)));
	note(tt->rec, -1, 0, tt->tag);
	if (tt->rec->quit_on_call)
		loop_quit(l);
}

static void
arm(struct loop *l, struct tagged_timer *tt, struct record *rec, char tag, uint64_t deadline)
{
	tt->tag = tag;
	tt->rec = rec;
	tt->armed_for = deadline;
	loop_timer_set(l, &tt->t, deadline, on_tagged_timer, tt);
}

static void
disarm(struct loop *l, struct tagged_timer *tt)
{
	loop_timer_set(l, &tt->t, 0, NULL, NULL);
}

START_TEST(loop_fires_timers_in_deadline_order)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	struct tagged_timer t[3] = { 0 };
	uint64_t now = loop_now(l);

	/* Armed out of order, 5 ms apart: fired by deadline, none early. */
	arm(l, &t[0], &rec, 'c', now + 15000);
	arm(l, &t[1], &rec, 'a', now + 5000);
	arm(l, &t[2], &rec, 'b', now + 10000);
	run_until_calls(l, &rec, 3);
	ck_assert_int_eq(rec.n, 3);
	ck_assert_int_eq(memcmp(rec.tag, "abc", 3), 0);
	ck_assert_uint_ge(mono_usec(), now + 15000);

	loop_free(l);
}
END_TEST

START_TEST(loop_fires_due_timers_in_deadline_order)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	struct tagged_timer t[4] = { 0 };
	uint64_t now = loop_now(l);

	/* All four are due at the next wake-up, so one iteration runs them
	 * all; still by deadline, not by the order they were armed in. */
	arm(l, &t[0], &rec, 'a', 1);
	arm(l, &t[1], &rec, 'b', now - 2);
	arm(l, &t[2], &rec, 'd', now);
	arm(l, &t[3], &rec, 'c', now - 1);
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_int_eq(rec.n, 4);
	ck_assert_msg(memcmp(rec.tag, "abcd", 4) == 0, "fired in order %.4s", rec.tag);

	loop_free(l);
}
END_TEST

/* Re-arms itself rec->other_fd[0] times, for "now": due again at once. */
static void
on_timer_rearm_now(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct record *rec = userdata;

	note(rec, -1, 0, 'r');
	if (rec->n < rec->other_fd[0])
		loop_timer_set(l, t, loop_now(l), on_timer_rearm_now, rec);
}

START_TEST(loop_timer_rearmed_from_own_callback)
{
	struct loop *l = new_loop(_i);
	struct record rec = { .other_fd = { 3, 0 } };
	struct loop_timer t = { 0 };

	/* Due again at once, it runs at the next iteration, not in a loop
	 * inside this one that would starve every fd (or never end). */
	loop_timer_set(l, &t, loop_now(l), on_timer_rearm_now, &rec);
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_int_eq(rec.n, 1);
	ck_assert(t.deadline != 0);
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_int_eq(rec.n, 2);
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_int_eq(rec.n, 3);
	/* The third did not re-arm. */
	ck_assert_uint_eq(t.deadline, 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 3);

	loop_free(l);
}
END_TEST

/* Re-arms itself 2 ms ahead until it has run three times, then quits. */
static void
on_timer_periodic(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct record *rec = userdata;

	note(rec, -1, 0, 'p');
	if (rec->n < 3)
		loop_timer_set(l, t, loop_now(l) + 2000, on_timer_periodic, rec);
	else
		loop_quit(l);
}

START_TEST(loop_timer_rearmed_ahead_from_own_callback)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	struct loop_timer t = { 0 };
	uint64_t start = loop_now(l);

	loop_timer_set(l, &t, start + 2000, on_timer_periodic, &rec);
	/* loop_run() has no timeout; the alarm bounds it. */
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(rec.n, 3);
	ck_assert_uint_ge(loop_now(l), start + 6000);
	ck_assert_uint_eq(t.deadline, 0);

	loop_free(l);
}
END_TEST

/* Whichever fires first cancels the other. */
static void
on_timer_cancel_other(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct record *rec = userdata;

	note(rec, -1, 0, 'x');
	for (int i = 0; i < 2; i++) {
		if (rec->other_timer[i] != t)
			loop_timer_set(l, rec->other_timer[i], 0, NULL, NULL);
	}
}

START_TEST(loop_timer_cancelled_by_other_timer)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	struct loop_timer a = { 0 }, b = { 0 };

	rec.other_timer[0] = &a;
	rec.other_timer[1] = &b;
	/* Both due in the same iteration. */
	loop_timer_set(l, &a, 1, on_timer_cancel_other, &rec);
	loop_timer_set(l, &b, 1, on_timer_cancel_other, &rec);
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_int_eq(rec.n, 1);
	ck_assert_uint_eq(a.deadline, 0);
	ck_assert_uint_eq(b.deadline, 0);
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 1);

	loop_free(l);
}
END_TEST

static void
on_io_cancel_timer(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct record *rec = userdata;

	note(rec, fd, events, 'f');
	loop_timer_set(l, rec->other_timer[0], 0, NULL, NULL);
}

START_TEST(loop_timer_cancelled_by_fd_callback)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	struct tagged_timer t = { 0 };
	int sv[2];

	make_pair(sv);
	rec.other_timer[0] = &t.t;
	/* Due in the same iteration as the fd, which runs first and
	 * cancels it. */
	arm(l, &t, &rec, 't', 1);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io_cancel_timer, &rec), 0);
	put_byte(sv[1]);
	ck_assert_int_eq(loop_run_once(l, WAIT_MS), 0);
	ck_assert_int_eq(rec.n, 1);
	ck_assert_int_eq(rec.tag[0], 'f');
	ck_assert_int_eq(loop_run_once(l, 0), 0);
	ck_assert_int_eq(rec.n, 2); /* the fd again, level-triggered */
	ck_assert_int_eq(rec.tag[1], 'f');

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(loop_runs_timer_and_fd_in_one_iteration)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	struct tagged_timer t = { 0 };
	int sv[2];

	make_pair(sv);
	put_byte(sv[1]);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	arm(l, &t, &rec, 't', 1);
	/* A due timer makes even an unbounded wait return at once. */
	ck_assert_int_eq(loop_run_once(l, -1), 0);
	ck_assert_int_eq(rec.n, 2);
	ck_assert_int_eq(rec.tag[0], 'f');
	ck_assert_int_eq(rec.tag[1], 't');

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(loop_timer_wakes_idle_wait)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	struct tagged_timer t = { 0 };
	uint64_t start = mono_usec();
	int sv[2];

	/* An fd that never fires and an unbounded wait: the timer alone
	 * ends it, no sooner than its deadline. */
	make_pair(sv);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	arm(l, &t, &rec, 't', loop_now(l) + 20000);
	for (int i = 0; rec.n == 0; i++) {
		ck_assert_int_lt(i, MAX_ITERATIONS);
		ck_assert_int_eq(loop_run_once(l, -1), 0);
	}
	ck_assert_int_eq(rec.n, 1);
	ck_assert_int_eq(rec.tag[0], 't');
	ck_assert_uint_ge(mono_usec(), start + 20000);
	disarm(l, &t);

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(loop_run_once_honours_timeout)
{
	struct loop *l = new_loop(_i);
	struct record rec = { 0 };
	uint64_t start = mono_usec();
	int sv[2];

	make_pair(sv);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	ck_assert_int_eq(loop_run_once(l, 30), 0);
	ck_assert_int_eq(rec.n, 0);
	/* select and poll round down to the clock tick at worst. */
	ck_assert_uint_ge(mono_usec(), start + 25000);
	ck_assert_uint_ge(loop_now(l), start + 25000);

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- loop_quit ---- */

START_TEST(loop_quit_from_fd_callback)
{
	struct loop *l = new_loop(_i);
	struct record rec = { .quit_on_call = true };
	int sv[2];

	make_pair(sv);
	put_byte(sv[1]);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(rec.n, 1);
	/* loop_run() again runs again, until the next quit. */
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(rec.n, 2);

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(loop_quit_from_timer_callback)
{
	struct loop *l = new_loop(_i);
	struct record rec = { .quit_on_call = true };
	struct tagged_timer t = { 0 };
	int sv[2];

	/* Nothing else would ever wake the loop. */
	make_pair(sv);
	ck_assert_int_eq(loop_add(l, sv[0], LOOP_READ, on_io, &rec), 0);
	arm(l, &t, &rec, 't', loop_now(l) + 5000);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(rec.n, 1);
	ck_assert_int_eq(rec.tag[0], 't');

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- waking a loop from another thread ---- */

/* loop.h offers no wake call of its own; a loop is woken from another
 * thread by writing to an eventfd it watches (as handler-loop.c does).
 * This checks that a blocked wait in each backend sees that write. */
static void *
wake_thread(void *userdata)
{
	uint64_t v = 1;

	ck_assert_int_eq(write(*(int *)userdata, &v, sizeof(v)), (ssize_t)sizeof(v));
	return NULL;
}

START_TEST(loop_woken_by_eventfd_from_other_thread)
{
	struct loop *l = new_loop(_i);
	struct record rec = { .quit_on_call = true };
	pthread_t th;
	uint64_t v;
	int efd;

	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(loop_add(l, efd, LOOP_READ, on_io, &rec), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, wake_thread, &efd), 0);
	/* Unbounded but for the alarm: only the thread's write ends it. */
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(rec.n, 1);
	ck_assert_int_eq(rec.fd[0], efd);
	ck_assert_int_eq(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	ck_assert_uint_eq(v, 1);

	loop_free(l);
	close(efd);
}
END_TEST

/* ---- descriptors select(2) cannot hold ---- */

/* Make the soft RLIMIT_NOFILE reach past want, within the hard limit. */
static void
ensure_nofile(int want)
{
	struct rlimit rl;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > (rlim_t)want)
		return;
	ck_assert_msg(rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)want,
		      "RLIMIT_NOFILE hard limit %llu leaves no fd %d to test FD_SETSIZE %d with",
		      (unsigned long long)rl.rlim_max, want, FD_SETSIZE);
	rl.rlim_cur = (rlim_t)want + 1;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

START_TEST(loop_handles_fds_at_fd_setsize)
{
	/* FD_SETSIZE - 1 is select's last; FD_SETSIZE its first refusal;
	 * 4 * FD_SETSIZE lies past the whole fd_set pair, where a stray
	 * FD_SET() would scribble over the heap. */
	static const int high[] = { FD_SETSIZE - 1, FD_SETSIZE, FD_SETSIZE + 1, 4 * FD_SETSIZE };
	struct loop *l = new_loop(_i);
	int sv[2], low[2];

	ensure_nofile(4 * FD_SETSIZE);
	make_pair(sv);
	make_pair(low);
	for (size_t i = 0; i < sizeof(high) / sizeof(high[0]); i++) {
		struct record rec = { 0 };
		int fd = high[i], r;
		bool refuse = _i == LOOP_BACKEND_SELECT && fd >= FD_SETSIZE;

		ck_assert_int_eq(dup2(sv[0], fd), fd);
		r = loop_add(l, fd, LOOP_READ | LOOP_WRITE, on_io, &rec);
		if (refuse) {
			ck_assert_msg(r == -EMFILE, "select took fd %d (FD_SETSIZE %d): %d", fd,
				      FD_SETSIZE, r);
			ck_assert_int_eq(loop_set_events(l, fd, LOOP_READ), -ENOENT);
			loop_remove(l, fd); /* never added: harmless */
		} else {
			ck_assert_msg(r == 0, "%s refused fd %d: %s", backend_names[_i], fd,
				      strerror(-r));
			run_until_calls(l, &rec, 1);
			ck_assert_int_eq(rec.fd[0], fd);
			ck_assert_uint_eq(rec.events[0], LOOP_WRITE);
			loop_remove(l, fd);
		}
		close(fd);

		/* The loop still serves a low fd, and nothing else. */
		rec = (struct record){ 0 };
		ck_assert_int_eq(loop_add(l, low[0], LOOP_READ, on_io, &rec), 0);
		put_byte(low[1]);
		run_until_calls(l, &rec, 1);
		ck_assert_int_eq(rec.n, 1);
		ck_assert_int_eq(rec.fd[0], low[0]);
		char c;
		ck_assert_int_eq(read(low[0], &c, 1), 1);
		loop_remove(l, low[0]);
	}

	loop_free(l);
	close(sv[0]);
	close(sv[1]);
	close(low[0]);
	close(low[1]);
}
END_TEST

static void
add_loop_case(Suite *s, const char *name, const TTest *test)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TEST_ALARM_SEC);
	tcase_add_loop_test(tc, test, 0, _LOOP_BACKEND_MAX);
	suite_add_tcase(s, tc);
}

static Suite *
loop_suite(void)
{
	Suite *s = suite_create("loop");

	add_loop_case(s, "readable", loop_dispatches_readable);
	add_loop_case(s, "writable", loop_dispatches_writable);
	add_loop_case(s, "registrations", loop_rejects_bad_registrations);
	add_loop_case(s, "many_fds", loop_dispatches_every_ready_fd);
	add_loop_case(s, "peer_close", loop_reports_peer_close_as_readable);
	add_loop_case(s, "pipe_hup", loop_reports_pipe_hup_as_readable);
	add_loop_case(s, "pipe_err", loop_reports_pipe_err_as_writable);
	add_loop_case(s, "blocked_writer_hup", loop_reports_peer_close_to_blocked_writer);
	add_loop_case(s, "removed_mid_batch", loop_skips_fd_removed_in_same_batch);
	add_loop_case(s, "reused_mid_batch", loop_skips_stale_event_for_reused_fd);
	add_loop_case(s, "timer_order", loop_fires_timers_in_deadline_order);
	add_loop_case(s, "timer_order_due", loop_fires_due_timers_in_deadline_order);
	add_loop_case(s, "timer_rearm_now", loop_timer_rearmed_from_own_callback);
	add_loop_case(s, "timer_rearm_ahead", loop_timer_rearmed_ahead_from_own_callback);
	add_loop_case(s, "timer_cancel_timer", loop_timer_cancelled_by_other_timer);
	add_loop_case(s, "timer_cancel_fd", loop_timer_cancelled_by_fd_callback);
	add_loop_case(s, "timer_and_fd", loop_runs_timer_and_fd_in_one_iteration);
	add_loop_case(s, "timer_wakes", loop_timer_wakes_idle_wait);
	add_loop_case(s, "timeout", loop_run_once_honours_timeout);
	add_loop_case(s, "quit_fd", loop_quit_from_fd_callback);
	add_loop_case(s, "quit_timer", loop_quit_from_timer_callback);
	add_loop_case(s, "wake_thread", loop_woken_by_eventfd_from_other_thread);
	add_loop_case(s, "fd_setsize", loop_handles_fds_at_fd_setsize);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(loop_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
