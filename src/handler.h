#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "listener-rt.h"
#include "loop.h"

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

/* Serve one stream connection on this thread or process until it ends,
 * session_start() to session_end(): the fork and thread models. wake_fd:
 * an eventfd that other threads write to (the session's want_write), or
 * -1. A stop is asked with session_request_stop() plus shutdown(fd,
 * SHUT_RD), which wakes a blocked read(). */
struct session;
void handler_serve_alone(struct session *s, int wake_fd);

/* A hub between an event loop model and its clients (fork model chat):
 * the loop serves what accept() hands back instead of the client. Each
 * accept() counts one child of the hub, which the loop reaps on SIGCHLD
 * (telling child_exited()) before it ends. */
struct conn_hub_ops {
	enum loop_backend backend; /* the hub's loop, instead of the model's */
	bool reaps_children;       /* SIGCHLD: waitpid, then child_exited() */
	/* Take the accepted client cfd: NULL with the fd the session serves
	 * (blocking or not) and the count of bytes the client's socket took
	 * (the session's delivered, NULL for its own), else the reason to
	 * refuse the client, cfd untouched. */
	const char *(*accept)(struct listener_rt *l, int cfd, int *ret_fd,
			      const _Atomic uint64_t **ret_delivered);
	/* The session that accept() set up is gone. */
	void (*release)(const _Atomic uint64_t *delivered);
	void (*child_exited)(pid_t pid);
};

extern const struct conn_hub_ops handler_fork_hub_ops;

/* Run the event loop model: no hub for the select, poll and epoll models
 * (handler_loop_ops), handler_fork_hub_ops for the fork model's chat. */
int handler_loop_run(struct listener_rt *l, const struct conn_hub_ops *hub);

/* The handler's stop signals, SIGTERM and SIGINT (and SIGCHLD for a model
 * that reaps), blocked and readable from the returned signalfd (flags:
 * SFD_NONBLOCK or 0; CLOEXEC always), or -errno. */
int handler_signalfd(bool sigchld, int flags);

/* The service's timed work (service_ops.tick): the next deadline, at most
 * HANDLER_TICK_USEC away. */
struct dgram;
uint64_t handler_tick(struct listener_rt *l, struct dgram *d, uint64_t now);

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
