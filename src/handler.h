#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "listener-rt.h"

union sockaddr_any;

/* How a model serves a listener: run until SIGTERM, return the exit code. */
struct model_ops {
	const char *name;
	int (*run)(struct listener_rt *l);
};

extern const struct model_ops handler_fork_ops;
extern const struct model_ops handler_thread_ops;
extern const struct model_ops handler_loop_ops;

/* Entry point of a listener's handler process. */
int handler_main(struct listener_rt *l);

/* Tell the dispatcher the listener is serving. */
void handler_notify_ready(struct listener_rt *l);

/* allow/deny. True when the peer may be served. */
bool handler_acl_ok(const struct listener_rt *l, const union sockaddr_any *peer);

/* Admission of a stream connection: allow/deny, then max_clients. NULL
 * when admitted (then handler_release() must follow the close), else the
 * reason it was refused. Thread-safe. */
const char *handler_admit(struct listener_rt *l, const union sockaddr_any *peer);
void handler_release(struct listener_rt *l, const union sockaddr_any *peer);
/* Refuse an accepted connection: count, log (rate-limited), tell a chat
 * client the server is full, close fd. */
void handler_refuse(struct listener_rt *l, int fd, const union sockaddr_any *peer,
		    const char *reason);
/* Accept failed: log rate-limited. True when the error means "out of fds
 * or memory" and accepting should pause for a while. */
bool handler_accept_error(struct listener_rt *l, int error);
/* How long accepting pauses after EMFILE and friends. */
#define HANDLER_ACCEPT_BACKOFF_USEC (100 * USEC_PER_MSEC)

/* Serve one stream connection on a blocking socket until it ends: the
 * driver of the fork and thread models. Logs open and close. A stop is
 * requested from outside with shutdown(fd, SHUT_RD). */
struct session;
void handler_serve_blocking(struct session *s);

/* Fork model chat: fork a child that pumps bytes between the client cfd
 * (closed here) and a socketpair whose other end (*ret_hub_fd, for the
 * hub's session) comes back. *ret_delivered counts the bytes the child
 * wrote to the client (memory shared with it: the session's delivered);
 * it stays valid until both handler_fork_pump_done() for it and
 * handler_fork_pump_reaped() for the child were called. */
int handler_fork_pump(struct listener_rt *l, int cfd, int *ret_hub_fd, pid_t *ret_pid,
		      const _Atomic uint64_t **ret_delivered);
void handler_fork_pump_done(const _Atomic uint64_t *delivered);
void handler_fork_pump_reaped(pid_t pid);

/* Block every signal in the calling thread (worker threads). */
void handler_block_signals(void);

/* Tune a freshly accepted stream socket (TCP_NODELAY, CLOEXEC already). */
void handler_tune_stream(int fd);

/* Period of the service's timed work (chat timeouts). */
#define HANDLER_TICK_USEC USEC_PER_SEC

/* Sources a rate_limit table remembers (set-associative, bounded). */
#define HANDLER_RATELIMIT_SLOTS 4096

/* Receive buffer for one datagram (+ NUL room). */
#define DGRAM_MAX 65536
