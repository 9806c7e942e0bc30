#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct listener_rt;
struct session;
struct dgram;

/* A service speaks a protocol and never sees a socket or a model. Stream
 * services answer through session_send(); datagram services through
 * dgram_reply(). */
struct service_ops {
	const char *name;
	/* What the service needs from the model; models read these and never
	 * test which service they run. */
	/* Stream sessions of a listener send to each other (chat's room):
	 * with several threads the model gives sessions locks and wakes
	 * across threads, and the fork model serves the listener through a
	 * hub process that holds the room (one pump process per client). */
	bool shared_room;
	/* UDP: the worker enforces rate_limit as a per-source datagram budget
	 * before on_datagram(). False: the service applies rate_limit itself
	 * (chat: per member). */
	bool datagram_budget;
	/* Told to a stream client refused because the listener is full
	 * (max_clients), just before the close; NULL: closed without a word. */
	const char *full_text;
	/* Per-listener state in the serving process (the chat room). */
	int (*listener_init)(struct listener_rt *l);
	void (*listener_done)(struct listener_rt *l);
	/* A connection was accepted and admitted. */
	void (*on_open)(struct session *s);
	/* Input arrived; return how many bytes were consumed. What is not
	 * consumed is offered again once output drained. */
	size_t (*on_data)(struct session *s, const uint8_t *p, size_t n);
	/* Input of every stream session waits while this returns true
	 * (chat: a member that keeps reading is behind; the senders slow
	 * down, not the reader). May be NULL. Any thread; not with s's
	 * lock held. */
	bool (*hold_input)(struct session *s);
	/* The service sends without being asked (chargen): called whenever
	 * the session's output is empty and the socket can take more; it
	 * sends the next part. Such a service gets non-blocking sockets on
	 * every model, is not ended by a half-close, and output the client
	 * takes counts as activity for idle_timeout. NULL for the others. */
	void (*on_writable)(struct session *s);
	/* With on_writable: whether the service has more to send now
	 * (metrics: a response body); the session waits for the socket only
	 * then. NULL: always (chargen). */
	bool (*writable_pending)(struct session *s);
	/* The peer half-closed. */
	void (*on_eof)(struct session *s);
	/* The connection is going away (any reason). */
	void (*on_close)(struct session *s);
	/* The server is stopping: last words before the close. */
	void (*on_shutdown)(struct session *s);
	/* One datagram from d->peer. */
	void (*on_datagram)(struct dgram *d, const uint8_t *p, size_t n);
	/* Optional: the datagrams of a listener are handled one at a time,
	 * in the order its sockets gave them, whatever the workers (chat:
	 * one sender's lines reach the room in the order sent). Called with
	 * true before each receive and false after its on_datagram(), by
	 * every worker of every model (udp.c). */
	void (*datagram_order)(struct listener_rt *l, bool begin);
	/* Timed work (chat: naming timeout, forgetting idle UDP peers). d is
	 * a socket to send from (UDP) or NULL. Returns the next deadline
	 * (CLOCK_MONOTONIC usec), 0 when nothing is due. */
	uint64_t (*tick)(struct listener_rt *l, struct dgram *d, uint64_t now);
	/* The server stops (UDP): last words to every peer, once. */
	void (*on_udp_shutdown)(struct listener_rt *l, struct dgram *d);
};

extern const struct service_ops service_echo_ops;
extern const struct service_ops service_chat_ops;
extern const struct service_ops service_discard_ops;
extern const struct service_ops service_chargen_ops;
extern const struct service_ops service_metrics_ops;

const struct service_ops *service_get(enum service_kind k);
