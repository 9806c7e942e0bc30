#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "buffer.h"
#include "util.h"

struct listener_rt;
struct session;

/* Unsent output beyond this closes a connection as a slow consumer (chat)
 * or pauses reading (echo). "Unsent" is what the client's socket has not
 * taken yet, wherever it waits: in this session's queue, or (fork model
 * chat) in a socketpair and the pump process behind it. */
#define SESSION_OUT_MAX (64 * 1024)
/* While the service holds input back (service_ops.hold_input), drivers
 * look again this often. */
#define SESSION_HOLD_RECHECK_USEC (5 * USEC_PER_MSEC)
/* Largest read() of stream input. */
#define SESSION_READ_CHUNK (16 * 1024)
/* Most iovecs one session_sendv() takes. */
#define SESSION_IOV_MAX 8

/* What session_start(), session_step() and session_next() tell the
 * model: the readiness to wait for next, or that the session is done. */
#define SESSION_READ 1u  /* input */
#define SESSION_WRITE 2u /* room to write */
/* The service holds input back (service_ops.hold_input): look again
 * within SESSION_HOLD_RECHECK_USEC even if nothing is ready. */
#define SESSION_HELD 4u
#define SESSION_DONE 8u /* call session_end() */

/* A stop the model asks for (session_request_stop()); the session applies
 * it at its next step. */
enum session_stop {
	SESSION_STOP_NONE,
	SESSION_STOP_DRAIN, /* last words, flush what is owed, close */
	SESSION_STOP_NOW,   /* shutdown_timeout ran out: close, drop output */
};

/* Where an accepted connection comes from. Behind a balancer (SPEC 10)
 * the PROXY header's source is the peer everywhere: admission, logs,
 * chat's HOST; the balancer is only logged, as PROXY=. */
struct conn_origin {
	union sockaddr_any peer; /* the client */
	union sockaddr_any via;  /* the balancer, when proxied */
	bool proxied;
	/* Proxied, and the header named no client (v1 UNKNOWN, v2 LOCAL):
	 * a health check, served as coming from the balancer (peer). Its
	 * open and close are logged at debug. */
	bool health_check;
};

/* What the model (driver) does for a session. Both may be NULL. */
struct session_driver {
	/* Output is pending that could not be written through, or the
	 * session was closed or asked to stop, outside the driver's own
	 * step of it: call session_next() soon. May be called from another
	 * thread when the session is shared (chat relays), with the
	 * session's lock held; then it must be thread-safe. */
	void (*want_write)(struct session *s);
	/* session_end(): the service has let go of the session; take it
	 * off the model's lists and watches before its fd is closed. */
	void (*detach)(struct session *s);
	/* Output another session's step sends to this one (a chat relay) is
	 * only queued, and want_write() called: the driver flushes each such
	 * session once, soon after that step, so that what one read brought
	 * leaves as one write per receiver instead of one per line. False:
	 * it is written through at once when nothing is queued before it. */
	bool flush_later;
};

/* One stream connection as a service sees it. Services never touch the
 * socket: they read what on_data() hands them and answer through
 * session_send(); the handler decides how bytes move. */
struct session {
	/* Hot: touched for every message. Kept together at the front so an
	 * event costs one or two cache lines per connection, not four. */
	int fd;
	bool blocking;   /* fd is blocking: sends complete before returning */
	/* conns_now/conns_total and the admission are kept by the process
	 * that owns the connection's lifetime (the fork model's listener),
	 * not here. */
	bool counted_elsewhere;
	bool read_eof;   /* the peer half-closed */
	bool closing;    /* flush what is queued, then close */
	bool broken;     /* close now, nothing more can be sent */
	/* Set when other threads may send to this session (chat relays):
	 * guards out, the flags and close_reason. NULL otherwise. */
	pthread_mutex_t *lock;
	struct listener_rt *lst;
	const struct session_driver *driver;
	/* Bytes the client's socket took, counted by whoever writes to it:
	 * the fork model's pump, in shared memory. NULL: this session
	 * writes to the client itself and bytes_out is that count. */
	const _Atomic uint64_t *delivered;
	/* The last session_wants_read() said no because the service holds
	 * input back: the driver looks again within
	 * SESSION_HOLD_RECHECK_USEC. Owner thread only. */
	bool held;
	void *service_data;
	struct buffer in;  /* input the service has not consumed yet */
	struct buffer out; /* output the socket has not taken yet */
	uint64_t bytes_in, bytes_out;
	uint64_t last_active;
	/* enum session_stop, set from another thread or a signal handler;
	 * the close is then logged as "server stopping". stop_applied: the
	 * owner acted on SESSION_STOP_DRAIN. */
	_Atomic int stop_requested;
	bool stop_applied;

	/* Cold: set at open, read at close. */
	const char *close_reason;
	uint64_t start_usec;
	union sockaddr_any peer;
	bool proxied, health_check; /* as in struct conn_origin */
	union sockaddr_any via;
	/* Formatted on first use (session_peer_str, session_host_str):
	 * a connection that logs nothing never pays for inet_ntop. */
	char peer_str[SOCKADDR_STR_MAX];
	char host_str[SOCKADDR_STR_MAX];
	char via_str[SOCKADDR_STR_MAX];
};

/* Sets fields; calls nothing. `now` (now_usec(), or the accepting loop's
 * clock) starts the duration and idle clocks. */
void session_init(struct session *s, int fd, struct listener_rt *lst,
		  const struct session_driver *driver, const struct conn_origin *origin,
		  uint64_t now);
/* Frees buffers; does not close the fd. */
void session_done(struct session *s);
/* "address:port" and "address" of the peer. Owner thread only. */
const char *session_peer_str(struct session *s);
const char *session_host_str(struct session *s);
/* The balancer's "address:port", NULL when not proxied. */
const char *session_via_str(struct session *s);

/* Bytes the service may still queue before hitting SESSION_OUT_MAX.
 * Owner thread only (echo). */
size_t session_send_space(const struct session *s);
/* Output the client's socket has not taken yet, and what it took so far
 * (it grows while the client reads). Any thread. */
size_t session_unsent(struct session *s);
uint64_t session_delivered(struct session *s);
/* Queue (or write through) output. Beyond SESSION_OUT_MAX unsent the
 * session is closed as a slow consumer. */
void session_send(struct session *s, const void *p, size_t n);
void session_sendv(struct session *s, const struct iovec *iov, int n_iov);
/* Flush, then close. reason is a static string ("quit", "eof", ...). */
void session_close(struct session *s, const char *reason);
/* Close now, dropping pending output. */
void session_abort(struct session *s, const char *reason);

/* The driver side: a connection's whole life is
 *
 *	ev = session_start(s);
 *	while (!(ev & SESSION_DONE))
 *		ev = session_step(s, <what of ev is ready>, scratch, size, now);
 *	session_end(s);
 *
 * where each model only waits, its own way, for the readiness ev names
 * (SESSION_HELD: or SESSION_HOLD_RECHECK_USEC), for the idle deadline
 * (then session_expire()) and for want_write (then session_next()). Every
 * rule about a connection lives in these functions, for every model. */

/* Count and log the open, call the service's on_open; what to wait for. */
unsigned session_start(struct session *s);
/* Given readiness (SESSION_READ/SESSION_WRITE), flush, read once and feed
 * the service; on a blocking socket (s->blocking) a timed-out read or
 * write is the idle timeout. `now` stamps activity. Then session_next(). */
unsigned session_step(struct session *s, unsigned ready, uint8_t *scratch, size_t size,
		      uint64_t now);
/* What to wait for now, after the state changed outside a step (a relay
 * queued output, a timer closed it, a stop was asked): applies a stop,
 * aborts a session that can never progress ("stalled"). */
unsigned session_next(struct session *s);
/* The service's on_close, the driver's detach, the close log and
 * counters, close(fd), the admission's release (unless
 * counted_elsewhere), buffers freed. The model frees what holds s. */
void session_end(struct session *s);

/* Activity (input, and for services that stream output also output the
 * client took) moves the idle deadline: CLOCK_MONOTONIC usec, 0 = never
 * (idle_timeout = 0). */
uint64_t session_idle_deadline(const struct session *s);
/* Past the idle deadline at `now`: abort it ("idle timeout"), true. */
bool session_expire(struct session *s, uint64_t now);
/* Ask the session to stop (thread-safe): SESSION_STOP_DRAIN when the
 * server stops, SESSION_STOP_NOW when shutdown_timeout ran out. Wakes the
 * driver through want_write; a model whose sessions block in read() also
 * shuts the socket down for reading. Not from a signal handler (there:
 * store to stop_requested, which is async-signal-safe). */
void session_request_stop(struct session *s, enum session_stop how);

/* The steps' parts, for tests and for session_step() itself. */

/* Hand input to the service; what it does not consume is kept in s->in. */
void session_feed(struct session *s, const uint8_t *p, size_t n);
/* Re-offer kept input once output drained. */
void session_resume(struct session *s);
/* read() once into scratch and feed. >0 bytes read, 0 EOF (handled),
 * -EAGAIN nothing to read, other -errno an error (session broken). */
ssize_t session_read(struct session *s, uint8_t *scratch, size_t size);
/* Write queued output. 0 all written, -EAGAIN some left, -errno error. */
int session_flush(struct session *s);
/* Should the driver poll for input? No also while the service holds input
 * back; then s->held is set and the driver asks again within
 * SESSION_HOLD_RECHECK_USEC. Owner thread only. */
bool session_wants_read(struct session *s);
bool session_wants_write(struct session *s);
/* Nothing more to do: close it. */
bool session_finished(struct session *s);
/* Log the close with REASON/BYTES_IN/BYTES_OUT/DURATION_USEC and update
 * counters; called by every driver exactly once per session. */
void session_log_close(struct session *s);
void session_log_open(struct session *s);
