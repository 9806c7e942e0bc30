#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include "loop.h"
#include "redis-loop.h"
#include "util.h"

/* What hiredis's ev.data points at. It outlives the context's cleanup hook
 * when hiredis still has to call the disconnect callback, or when our own
 * fd or timer callback is on the stack: freed by maybe_free() once neither
 * holds. */
struct redis_loop_ev {
	redisAsyncContext *ac; /* NULL once hiredis cleaned up */
	struct loop *loop;
	int fd;
	unsigned events;
	unsigned depth;        /* our callbacks on the stack that use this */
	bool cleaned;          /* hiredis ran the cleanup hook */
	bool await_disconnect; /* ... and will call on_disconnect_cb next */
	bool connect_done;     /* on_connect reported */
	int error;             /* ours (-ETIMEDOUT, -EMSGSIZE, ...), wins over hiredis's */
	struct loop_timer connect_timer, command_timer, fail_timer;
	uint64_t command_timeout;
	size_t max_reply, reply_bytes;
	redisReplyObjectFunctions *orig_fn; /* the reader's, when we wrap it */
	struct redis_loop_callbacks cbs;
};

static void
maybe_free(struct redis_loop_ev *e)
{
	if (e->cleaned && !e->await_disconnect && e->depth == 0)
		free(e);
}

/* hiredis's error as -errno. An I/O error's errno is gone by the time a
 * callback runs (other code ran since), except in the connect callback,
 * which gets it as saved_errno; the text, strerror()'s, still names it. */
static int
status_of(const redisAsyncContext *ac, int saved_errno)
{
	static const int known[] = { ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, ENOENT,
				     EACCES, EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL,
				     ECONNABORTED };
	const char *s = ac->errstr ? ac->errstr : ac->c.errstr;

	switch (ac->err ? ac->err : ac->c.err) {
	case 0:
		return 0;
	case REDIS_ERR_EOF:
		return -ECONNRESET;
	case REDIS_ERR_PROTOCOL:
		return -EPROTO;
	case REDIS_ERR_OOM:
		return -ENOMEM;
	case REDIS_ERR_IO:
		if (saved_errno > 0 && strstr(s, strerror(saved_errno)))
			return -saved_errno;
		for (size_t i = 0; i < ELEMENTSOF(known); i++)
			if (strstr(s, strerror(known[i])))
				return -known[i];
		return -EIO;
	default:
		return -EIO;
	}
}

static void
update(struct redis_loop_ev *e, unsigned events);

static void
hook_add_read(void *privdata)
{
	struct redis_loop_ev *e = privdata;

	update(e, e->events | LOOP_READ);
}

static void
hook_del_read(void *privdata)
{
	struct redis_loop_ev *e = privdata;

	update(e, e->events & ~LOOP_READ);
}

static bool
pending(const struct redis_loop_ev *e)
{
	return e->ac && (e->ac->replies.head || (e->events & LOOP_WRITE));
}

static void command_timeout_cb(struct loop *l, struct loop_timer *t, void *userdata);

static void
arm_command_timer(struct redis_loop_ev *e)
{
	loop_timer_set(e->loop, &e->command_timer, now_usec() + e->command_timeout,
		       command_timeout_cb, e);
}

static void
hook_add_write(void *privdata)
{
	struct redis_loop_ev *e = privdata;

	update(e, e->events | LOOP_WRITE);
	/* A new command: the clock starts unless it already runs. */
	if (e->command_timeout && !e->command_timer.deadline)
		arm_command_timer(e);
}

static void
hook_del_write(void *privdata)
{
	struct redis_loop_ev *e = privdata;

	update(e, e->events & ~LOOP_WRITE);
}

static void on_disconnect_cb(const redisAsyncContext *cac, int status);

static void
hook_cleanup(void *privdata)
{
	struct redis_loop_ev *e = privdata;
	redisAsyncContext *ac = e->ac;

	loop_remove(e->loop, e->fd);
	loop_timer_set(e->loop, &e->connect_timer, 0, NULL, NULL);
	loop_timer_set(e->loop, &e->command_timer, 0, NULL, NULL);
	loop_timer_set(e->loop, &e->fail_timer, 0, NULL, NULL);
	if (e->orig_fn) {
		ac->c.reader->fn = e->orig_fn;
		ac->c.reader->privdata = NULL;
	}
	/* hiredis 0.14 calls the disconnect callback after this hook, for a
	 * context that was connected; it finds us through ev.data. */
	e->await_disconnect = (ac->c.flags & REDIS_CONNECTED) && ac->onDisconnect == on_disconnect_cb;
	ac->ev.addRead = ac->ev.delRead = NULL;
	ac->ev.addWrite = ac->ev.delWrite = NULL;
	ac->ev.cleanup = NULL;
	e->ac = NULL;
	e->cleaned = true;
	maybe_free(e);
}

/* Free ac with our own error: pending reply callbacks get NULL, then
 * on_connect (not connected yet) or on_disconnect report err. Never called
 * from inside hiredis (only from our fd and timer callbacks). */
static void
fail(struct redis_loop_ev *e, int err, const char *msg)
{
	redisAsyncContext *ac = e->ac;

	if (!ac)
		return;
	if (!e->error)
		e->error = err;
	ac->c.err = REDIS_ERR_OTHER;
	snprintf(ac->c.errstr, sizeof(ac->c.errstr), "%s", msg);
	ac->err = ac->c.err;
	ac->errstr = ac->c.errstr;
	e->depth++;
	if (!(ac->c.flags & REDIS_CONNECTED) && !e->connect_done) {
		e->connect_done = true;
		loop_timer_set(e->loop, &e->connect_timer, 0, NULL, NULL);
		if (e->cbs.on_connect)
			e->cbs.on_connect(ac, e->error, ac->errstr, e->cbs.userdata);
	}
	redisAsyncFree(ac);
	e->depth--;
	maybe_free(e);
}

static void
fail_timer_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct redis_loop_ev *e = userdata;

	fail(e, e->error ? e->error : -EIO, "cannot watch the connection");
}

static void
command_timeout_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct redis_loop_ev *e = userdata;

	if (pending(e))
		fail(e, -ETIMEDOUT, "Redis command timed out");
}

static void
connect_timeout_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct redis_loop_ev *e = userdata;

	if (e->ac && !(e->ac->c.flags & REDIS_CONNECTED))
		fail(e, -ETIMEDOUT, "Connection timed out");
}

/* hiredis's hooks return nothing, and freeing the context from inside one
 * would pull it from under hiredis: a failure to watch the fd (epoll_ctl
 * out of memory) frees it from a timer instead, on the next iteration. */
static void
update(struct redis_loop_ev *e, unsigned events)
{
	int r;

	if (e->cleaned || e->events == events)
		return;
	r = loop_set_events(e->loop, e->fd, events);
	if (r < 0) {
		if (!e->error) {
			e->error = r;
			loop_timer_set(e->loop, &e->fail_timer, loop_now(e->loop), fail_timer_cb, e);
		}
		return;
	}
	e->events = events;
}

static void
on_io(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct redis_loop_ev *e = userdata;
	const redisReader *rd;

	e->depth++;
	if (events & LOOP_READ)
		redisAsyncHandleRead(e->ac);
	/* A reply callback may have freed the context (hiredis frees it once
	 * the callback returns), or hiredis itself on an error. */
	if (!e->cleaned && (events & LOOP_WRITE) && (e->events & LOOP_WRITE))
		redisAsyncHandleWrite(e->ac);
	e->depth--;
	if (e->cleaned) {
		maybe_free(e);
		return;
	}
	rd = e->ac->c.reader;
	if (e->max_reply && rd->len - rd->pos > e->max_reply) {
		fail(e, -EMSGSIZE, "Redis reply too large");
		return;
	}
	/* Bytes came, or went: progress. */
	if (e->command_timeout && pending(e))
		arm_command_timer(e);
	else if (e->command_timer.deadline)
		loop_timer_set(l, &e->command_timer, 0, NULL, NULL);
}

/* The reader's object functions, wrapped to count what one reply costs:
 * hiredis 0.14's reader has no limit of its own (an array header alone
 * allocates its element count). The reply's root resets the count. */
static bool
account(const redisReadTask *task, size_t cost)
{
	struct redis_loop_ev *e = task->privdata;

	if (!task->parent)
		e->reply_bytes = 0;
	e->reply_bytes += cost;
	if (e->max_reply && e->reply_bytes > e->max_reply) {
		if (!e->error)
			e->error = -EMSGSIZE;
		return false;
	}
	return true;
}

static void *
limited_string(const redisReadTask *task, char *str, size_t len)
{
	struct redis_loop_ev *e = task->privdata;

	if (!account(task, sizeof(redisReply) + len))
		return NULL;
	return e->orig_fn->createString(task, str, len);
}

static void *
limited_array(const redisReadTask *task, int elements)
{
	struct redis_loop_ev *e = task->privdata;
	size_t n = elements > 0 ? (size_t)elements : 0;

	if (!account(task, sizeof(redisReply) + n * sizeof(redisReply *)))
		return NULL;
	return e->orig_fn->createArray(task, elements);
}

static void *
limited_integer(const redisReadTask *task, long long value)
{
	struct redis_loop_ev *e = task->privdata;

	if (!account(task, sizeof(redisReply)))
		return NULL;
	return e->orig_fn->createInteger(task, value);
}

static void *
limited_nil(const redisReadTask *task)
{
	struct redis_loop_ev *e = task->privdata;

	if (!account(task, sizeof(redisReply)))
		return NULL;
	return e->orig_fn->createNil(task);
}

static void
limited_free(void *reply)
{
	freeReplyObject(reply);
}

static redisReplyObjectFunctions limited_fns = {
	.createString = limited_string,
	.createArray = limited_array,
	.createInteger = limited_integer,
	.createNil = limited_nil,
	.freeObject = limited_free,
};

int
redis_loop_attach(redisAsyncContext *ac, struct loop *l)
{
	struct redis_loop_ev *e;
	int fd = ac->c.fd, flags, r;

	if (ac->ev.data)
		return -EEXIST;
	if (fd < 0)
		return -EBADF;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	/* Watched with no events yet: this is where select's FD_SETSIZE
	 * refuses, while the caller can still take the context back. */
	r = loop_add(l, fd, 0, on_io, e);
	if (r < 0) {
		free(e);
		return r;
	}
	flags = fcntl(fd, F_GETFD);
	if (flags >= 0)
		(void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
	e->ac = ac;
	e->loop = l;
	e->fd = fd;
	ac->ev.data = e;
	ac->ev.addRead = hook_add_read;
	ac->ev.delRead = hook_del_read;
	ac->ev.addWrite = hook_add_write;
	ac->ev.delWrite = hook_del_write;
	ac->ev.cleanup = hook_cleanup;
	return 0;
}

static void
on_connect_cb(const redisAsyncContext *cac, int status)
{
	int saved_errno = errno;
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct redis_loop_ev *e = ac->ev.data;
	int r = 0;

	if (e->connect_done)
		return;
	e->connect_done = true;
	loop_timer_set(e->loop, &e->connect_timer, 0, NULL, NULL);
	if (status != REDIS_OK) {
		r = status_of(ac, saved_errno);
		if (r == 0)
			r = -EIO;
	}
	if (e->cbs.on_connect)
		e->cbs.on_connect(ac, r, r ? ac->errstr : "", e->cbs.userdata);
}

static void
on_disconnect_cb(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct redis_loop_ev *e = ac->ev.data;
	int r = e->error;

	/* hiredis says REDIS_OK for any redisAsyncFree(), ours included. */
	if (!r && status != REDIS_OK) {
		r = status_of(ac, 0);
		if (r == 0)
			r = -EIO;
	}
	if (e->cbs.on_disconnect)
		e->cbs.on_disconnect(ac, r, r ? (ac->errstr ? ac->errstr : ac->c.errstr) : "",
				     e->cbs.userdata);
	e->await_disconnect = false;
	maybe_free(e);
}

int
redis_loop_connect(redisAsyncContext **ret, struct loop *l, const char *host, uint16_t port,
		   const char *unix_path, uint64_t connect_timeout_usec,
		   const struct redis_loop_callbacks *cbs)
{
	redisAsyncContext *ac;
	struct redis_loop_ev *e;
	int r, saved_errno;

	if (!unix_path && !host)
		return -EINVAL;
	errno = 0;
	ac = unix_path ? redisAsyncConnectUnix(unix_path) : redisAsyncConnect(host, port);
	saved_errno = errno;
	if (!ac)
		return -ENOMEM;
	if (ac->err) {
		r = status_of(ac, saved_errno);
		redisAsyncFree(ac);
		return r ? r : -EIO;
	}
	r = redis_loop_attach(ac, l);
	if (r < 0) {
		redisAsyncFree(ac);
		return r;
	}
	e = ac->ev.data;
	if (cbs)
		e->cbs = *cbs;
	/* Both always ours: the disconnect one is what tells hook_cleanup
	 * that hiredis will come back, and the connect one arms the first
	 * write watch (hiredis 0.14 waits for writability to see the
	 * connect complete). */
	(void)redisAsyncSetDisconnectCallback(ac, on_disconnect_cb);
	(void)redisAsyncSetConnectCallback(ac, on_connect_cb);
	(void)redis_loop_set_limits(ac, 0, REDIS_LOOP_DEFAULT_MAX_REPLY);
	if (connect_timeout_usec)
		loop_timer_set(l, &e->connect_timer, now_usec() + connect_timeout_usec,
			       connect_timeout_cb, e);
	*ret = ac;
	return 0;
}

int
redis_loop_set_limits(redisAsyncContext *ac, uint64_t command_timeout_usec, size_t max_reply)
{
	struct redis_loop_ev *e = ac->ev.data;
	redisReader *rd = ac->c.reader;

	if (!e || ac->ev.cleanup != hook_cleanup)
		return -ENOENT;
	e->command_timeout = command_timeout_usec;
	e->max_reply = max_reply;
	/* Wrap only hiredis's own functions, whose free is freeReplyObject. */
	if (max_reply && !e->orig_fn && rd->fn && rd->fn->freeObject == freeReplyObject) {
		e->orig_fn = rd->fn;
		rd->fn = &limited_fns;
		rd->privdata = e;
	}
	if (!command_timeout_usec)
		loop_timer_set(e->loop, &e->command_timer, 0, NULL, NULL);
	else if (pending(e))
		arm_command_timer(e);
	return 0;
}

size_t
redis_loop_queued(const redisAsyncContext *ac)
{
	return ac->c.obuf ? sdslen(ac->c.obuf) : 0;
}
