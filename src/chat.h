#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backend_url;
union sockaddr_any;

/* The chat protocol of SPEC section 5 as a state machine fed with bytes
 * and lines. It never sees a socket: it answers through the transport
 * callbacks, so every model (and the unit tests) drive the same code.
 * Both kinds of room below answer with the shared protocol code of
 * chat-proto.c (chat-internal.h).
 *
 * Thread safety: every public function takes the room's own lock, so one
 * room may be shared by threads (thread model, several epoll loops). The
 * transport callbacks run with that lock held; they must not call back
 * into the room. */

#define CHAT_NAME_MAX 32
#define CHAT_NAME_TIMEOUT_USEC (30 * UINT64_C(1000000))
/* Unsent output beyond this disconnects a client (slow consumer). */
#define CHAT_OUT_MAX (64 * 1024)
/* A named member with more than this unsent that keeps reading holds every
 * sender back (chat_room_senders_wait()): under a flood the flooder slows
 * down to the pace of the readers, and nobody who reads is dropped... */
#define CHAT_HOLD_MIN (32 * 1024)
/* ...unless it took nothing for this long: a member that stopped reading
 * holds nobody back any more, and goes as a slow consumer. */
#define CHAT_HOLD_USEC UINT64_C(1000000)

struct listener_stats;

struct chat_settings {
	const char *listener; /* room name in the welcome line */
	unsigned max_clients;
	unsigned max_line;   /* longest accepted line, bytes, terminator excluded */
	unsigned rate_limit; /* lines per second per source address, 0 = none */
	unsigned idle_timeout; /* seconds, 0 = never (UDP peers; TCP is the handler's) */
	/* Counters the room keeps (members, messages, rate_limit refusals;
	 * udp: joined peers as conns_now), or NULL. */
	struct listener_stats *stats;
	/* The room lives on this Redis server too (SPEC section 12), under
	 * the name room; NULL: this process only. A stream room then runs a
	 * chat_backend thread of its own, and the transport callbacks are
	 * also called from that thread; a datagram room gets one with
	 * chat_udp_backend_start(). */
	const struct backend_url *backend;
	const char *room;
	/* With backend, or NULL: told once each time the backend comes up
	 * or goes down (error -errno and a short reason then, never the
	 * password), on the backend's thread, no lock of the room held. */
	void (*backend_state)(void *ud, bool up, int error, const char *reason);
	void *backend_ud;
};

/* ---------------- stream (TCP) rooms: chat-room.c ---------------- */

struct chat_room;
struct chat_member;

struct chat_transport {
	/* Queue one or more complete lines (CRLF included) for ctx's client. */
	void (*send)(void *ctx, const char *line, size_t len);
	/* Close ctx's connection once what was queued is sent. reason is a
	 * static string for the log ("quit", "name timeout", ...). */
	void (*close)(void *ctx, const char *reason);
	/* Both or neither (then the room never holds senders back): bytes
	 * queued for ctx's client that its socket has not taken yet, and how
	 * many it took so far. Called with the room's lock held. */
	size_t (*unsent)(void *ctx);
	uint64_t (*delivered)(void *ctx);
};

int chat_room_new(struct chat_room **ret, const struct chat_settings *s,
		  const struct chat_transport *t);
struct chat_room *chat_room_free(struct chat_room *r);

/* A client connected from host (numeric address, no port): it gets the
 * welcome line. Returns NULL on ENOMEM. */
struct chat_member *chat_room_join(struct chat_room *r, void *ctx, const char *host,
				   uint64_t now_usec);
/* Bytes from the client; framed into lines (LF or CRLF) and handled. */
void chat_member_input(struct chat_room *r, struct chat_member *m, const uint8_t *p, size_t n,
		       uint64_t now_usec);
/* The client is gone, for any reason: others hear "* NICK left; N online"
 * if it had a name and did not /quit already. Frees m. */
void chat_room_leave(struct chat_room *r, struct chat_member *m);
/* The server stops: "* server shutting down" to every client. */
void chat_room_shutdown(struct chat_room *r);
/* Close clients that sent no valid name within 30 s. Returns the next
 * deadline (CLOCK_MONOTONIC usec), 0 when none. */
uint64_t chat_room_tick(struct chat_room *r, uint64_t now_usec);
/* Named clients. */
unsigned chat_room_online(struct chat_room *r);
/* Should every member's input wait? True while a named member has more
 * than CHAT_HOLD_MIN unsent and its socket took some of it within the
 * last CHAT_HOLD_USEC. Cheap when nobody is behind. */
bool chat_room_senders_wait(struct chat_room *r, uint64_t now_usec);

/* ---------------- datagram (UDP) rooms: chat-udp.c ---------------- */

struct chat_udp;
struct dgram_local;

struct chat_udp_transport {
	/* Send one datagram (one line, CRLF included) to `to`, from the
	 * local end `to` last sent to (NULL: not known). ctx is what the
	 * caller passed to the function that triggered the send. */
	void (*send_to)(void *ctx, const union sockaddr_any *to, const struct dgram_local *from,
			const char *line, size_t len);
};

/* A UDP room is one flat, pointer-free block so that it can live in
 * shared memory for pre-forked workers: chat_udp_size() bytes, set up
 * with chat_udp_init() (process-shared lock). */
size_t chat_udp_size(const struct chat_settings *s);
int chat_udp_init(struct chat_udp *u, const struct chat_settings *s);
void chat_udp_done(struct chat_udp *u);
/* One datagram from `from`, sent to `local` (NULL: not known); handled
 * and answered through t. The sender's entry remembers `local`, so that
 * whatever it is sent later, a relay too, leaves from the address it
 * sent to (SPEC section 4). */
void chat_udp_datagram(struct chat_udp *u, const struct chat_udp_transport *t, void *ctx,
		       const union sockaddr_any *from, const struct dgram_local *local,
		       const uint8_t *p, size_t n, uint64_t now_usec);
/* Forget peers silent for idle_timeout (others hear "left"). Returns the
 * next deadline, 0 when none. */
uint64_t chat_udp_tick(struct chat_udp *u, const struct chat_udp_transport *t, void *ctx,
		       uint64_t now_usec);
void chat_udp_shutdown(struct chat_udp *u, const struct chat_udp_transport *t, void *ctx);
/* Workers of one room call it with true before each receive and false
 * once that datagram is handled: datagrams then reach the room in the
 * order the socket gave them, so one sender's lines stay in order with
 * several workers (SPEC 12). Never with the room's lock held. */
void chat_udp_order(struct chat_udp *u, bool begin);
/* Our peers (not those of other instances). */
unsigned chat_udp_online(struct chat_udp *u);

/* SPEC 12 for a datagram room set up with s->backend: start its backend
 * (a chat_backend thread and a relay thread) in THIS process, the one
 * that stays while the room is served (fork's pre-forked workers reach it
 * through the block; they must be forked after this). Sends the backend
 * causes (events of other instances, answers to claims) go through t
 * with ctx, from those threads: ctx must stay valid until
 * chat_udp_backend_stop(), and the sockets it sends from stay open in
 * this process. 0, -EINVAL, -ENOMEM, -errno. */
struct chat_udp_backend;
int chat_udp_backend_start(struct chat_udp_backend **ret, struct chat_udp *u,
			   const struct chat_settings *s, const struct chat_udp_transport *t,
			   void *ctx);
/* Our peers' leaves to the others, then stop both threads. Before
 * chat_udp_done(); NULL is fine. */
void chat_udp_backend_stop(struct chat_udp_backend *b);
