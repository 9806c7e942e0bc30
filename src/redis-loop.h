#pragma once

#include <stddef.h>
#include <stdint.h>

/* hiredis's async API (0.14 or later) on our own loop (loop.h), the way
 * hiredis's bundled adapters (adapters/ae.h) plug it into theirs: one fd
 * watched for what hiredis asks, and the timers hiredis 0.14 lacks
 * (connect and command timeouts) made with loop timers.
 *
 * Lifetime: the adapter state lives from redis_loop_attach() until hiredis
 * frees the context (redisAsyncFree(), a failed connect, an error or a
 * timeout), wherever that happens, a reply callback included; the loop
 * then no longer knows the fd. Free every context before its loop. */

struct loop;
struct redisAsyncContext;

/* status: 0, or -errno: -ECONNREFUSED and the like from the socket,
 * -ETIMEDOUT (our timers), -ECONNRESET (the server closed), -EPROTO (bad
 * reply), -EMSGSIZE (a reply over the limit), -ENOMEM, -EIO (anything
 * else). errstr: hiredis's (or our) text for it, "" when status is 0.
 *
 * on_connect with an error: the context is freed right after it returns;
 * do not free it there. With 0, do not free it there either (hiredis goes
 * on using it): send a command or arm a timer. on_disconnect: the context
 * is being freed; reply callbacks still pending got a NULL reply before. */
typedef void (*redis_loop_connect_fn)(struct redisAsyncContext *ac, int status,
				      const char *errstr, void *userdata);
typedef void (*redis_loop_disconnect_fn)(struct redisAsyncContext *ac, int status,
					 const char *errstr, void *userdata);

struct redis_loop_callbacks {
	redis_loop_connect_fn on_connect;       /* may be NULL */
	redis_loop_disconnect_fn on_disconnect; /* may be NULL */
	void *userdata;
};

/* Plug ac (connected or connecting, ac->c.fd open) into l. -EEXIST when ac
 * has an adapter already, -EMFILE when the backend cannot hold the fd
 * (select, fd >= FD_SETSIZE), -ENOMEM. On failure ac is unchanged and
 * still the caller's. Sets FD_CLOEXEC on the fd (hiredis 0.14 does not). */
int redis_loop_attach(struct redisAsyncContext *ac, struct loop *l);

/* max_reply of a redis_loop_connect() context until set otherwise: hiredis
 * 0.14 abort()s when an allocation fails, and an array header alone makes
 * it allocate its element count, so a context without a limit can be
 * made to crash the process by what the server sends. */
#define REDIS_LOOP_DEFAULT_MAX_REPLY ((size_t)16 << 20)

/* Start a non-blocking connection to unix_path when it is not NULL, else
 * to host:port (an address literal: hiredis resolves a name with a
 * blocking getaddrinfo()), attached to l. on_connect runs once, with
 * -ETIMEDOUT when connect_timeout_usec (0: none) passes first. Returns 0
 * with the context in *ret, or -errno when it failed at once (then no
 * callback runs and nothing is left to free). */
int redis_loop_connect(struct redisAsyncContext **ret, struct loop *l, const char *host,
		       uint16_t port, const char *unix_path, uint64_t connect_timeout_usec,
		       const struct redis_loop_callbacks *cbs);

/* Bounds for an attached context (redis_loop_attach() sets none). command_timeout_usec (0: none): while
 * commands wait for replies or to be sent, the server must make progress
 * (bytes arrive) at least this often, or the context is freed with
 * -ETIMEDOUT; an idle subscriber never times out. max_reply (0: none):
 * bytes the reader may hold unparsed, i.e. about the largest reply; more
 * frees the context with -EMSGSIZE. -ENOENT when ac is not attached. */
int redis_loop_set_limits(struct redisAsyncContext *ac, uint64_t command_timeout_usec,
			  size_t max_reply);

/* Bytes of commands hiredis holds, not yet written (its output buffer,
 * which has no bound of its own): what a caller checks before queueing
 * more to a server that does not keep up. */
size_t redis_loop_queued(const struct redisAsyncContext *ac);
