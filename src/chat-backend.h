#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat-wire.h"

/* The one module through which a chat room talks to Redis (SPEC section
 * 12). A backend runs on a thread of its own with its own loop (epoll),
 * so that it works the same under every model and the room never waits
 * on Redis: the chat_backend_*() calls below only take a short mutex and
 * enqueue work into a bounded queue (woken by an eventfd); when the queue
 * is full or the backend is down they fail at once and count a drop.
 *
 * Threads: chat_backend_start() and chat_backend_stop() from one thread;
 * every other call from any thread. The ops run ON THE BACKEND THREAD,
 * never with a lock of ours held: the room takes its own lock in them and
 * may call any chat_backend_*() function there except chat_backend_stop().
 * So chat_backend_stop() must never be called with that lock held: it
 * waits for the thread, which may be waiting for the lock in an op.
 *
 * Redis layout (Redis 6 or later; every key and channel starts with
 * "netechod:"; ROOM is the `room` setting, INST an instance id, 16 hex
 * digits drawn at start, LOWERNAME a name in lower case):
 *
 *   channel netechod:room:ROOM          room events, chat-wire lines
 *   channel netechod:room:ROOM:to:INST  events for one instance (privmsg)
 *   key  netechod:room:ROOM:name:LOWERNAME = "INST HOST"  a claimed name,
 *        with the key ttl, refreshed every heartbeat while the member is
 *        there, deleted on release only while it is still INST's
 *   key  netechod:room:ROOM:inst:INST = unix time  with the key ttl,
 *        refreshed every heartbeat: INST is alive
 *   set  netechod:room:ROOM:instances  the instance ids (SADD on register,
 *        SREM on stop or by whoever finds INST's key gone)
 *   hash netechod:room:ROOM:members:INST  NAME -> HOST of INST's members,
 *        kept in step with claims and releases, with the key ttl
 *
 * Pub/sub ignores SELECT: the db of the URL separates the keys only, two
 * rooms of one name in different dbs share their channels.
 *
 * Claims deviate from a plain SET NX: a Lua script (EVAL) takes the name
 * when it is free OR already held by this instance, and updates the
 * members hash in the same step. After a short outage our own keys are
 * still there; SET NX would refuse the room's re-claim of its own members.
 * Two members of one instance are kept apart by the table below (and by
 * the room's own check), not by Redis.
 *
 * Lost instances: every heartbeat the backend checks the instances of the
 * set and the ones it knows members of; one whose inst key is gone is
 * lost: ops->lost() for each of its members this backend learned (from
 * join, leave and nick events and the snapshot), frees their name keys
 * while they still name INST (a name claimed after INST's last heartbeat
 * would outlive its inst key), then SREM. So "lost
 * after" is the key ttl plus at most a heartbeat.
 *
 * Snapshot on every (re)connect, after up(): for each instance of the set
 * its members hash is read and reported as join events (seq 0) for names
 * not known yet, and as leave events for known names the hash no longer
 * has (they left while we were away). The room must treat a join of a
 * name it already has from that instance as a no-op. Everything read from
 * Redis (messages, set members, hash fields) goes through
 * chat_wire_decode() before the room sees it; the remote state we keep is
 * bounded (max_instances, oldest evicted; max_remote_members).
 *
 * Ordering: every event we publish (hello and bye included) takes its
 * SEQ under the queue's lock and goes out on one connection in queue
 * order, so the receivers' "SEQ must grow" check never drops a good one.
 * Whatever is queued when the connection drops is lost (SPEC: "messages
 * sent while disconnected are lost"); so is a release (the key then
 * expires after the key ttl).
 *
 * Deviations from the design sketch: down() carries the error and a
 * reason, so that the caller can log the one warning per outage itself
 * (helper modules stay silent above debug); lost instances are reported
 * from what this backend learned, not from the dead instance's members
 * hash (which a faster instance may already have let expire), and the
 * backend names no instance lost that it never heard a member of.
 *
 * An instance that finds its own inst key gone at a heartbeat (it
 * stalled past the key ttl, so the others announced its members lost)
 * starts over as after an outage: down(-ETIMEDOUT), then
 * up(reconnected), and the room claims and announces its members again.
 *
 * Known limits: a live leave that races the snapshot read of the same instance
 * is handled (the snapshot's leaves are skipped for that instance), a
 * live join is not needed (joins are idempotent for the room). */

struct backend_url;
struct chat_backend;

struct chat_backend_settings {
	const struct backend_url *url; /* copied */
	const char *room;              /* backend_room_valid(); copied */
	/* 0 takes the default. */
	uint64_t heartbeat_usec;       /* 5 s */
	uint64_t key_ttl_usec;         /* 30 s: names, members, inst key */
	uint64_t backoff_max_usec;     /* 5 s; starts at 100 ms, doubling */
	uint64_t connect_timeout_usec; /* 2 s */
	uint64_t command_timeout_usec; /* 5 s */
	uint64_t stop_timeout_usec;    /* 1 s: chat_backend_stop()'s bound */
	size_t queue_max;              /* 4096 jobs */
	size_t queue_bytes_max;        /* 8 MiB of payloads */
	size_t max_instances;          /* 1024 remote instances remembered */
	size_t max_remote_members;     /* 65536, over all remote instances */
	size_t max_names;              /* 65536 of our own claims */
};

struct chat_backend_ops {
	/* Connected, registered and subscribed. reconnected: it was up before;
	 * the backend then forgot every claim and the room claims its members
	 * again. */
	void (*up)(void *ud, bool reconnected);
	/* Could not connect, or lost the connection: once per outage, also
	 * when the first attempt fails. error: -errno; reason: a short text
	 * (hiredis's or the server's, never the password). The backend stays
	 * silent above debug: the caller logs, with backend_url_redacted(). */
	void (*down)(void *ud, int error, const char *reason);
	/* An event from ANOTHER instance (ours filtered out, per-sender SEQ
	 * checked: duplicates and out-of-order ones dropped), or a snapshot
	 * join/leave (seq 0). Pointers valid during the call only. privmsg
	 * only ever comes from our own channel. */
	void (*event)(void *ud, const struct chat_wire_event *ev);
	/* The answer to a chat_backend_claim() that returned 0: exactly once.
	 * result: 0 the name is ours, -EEXIST taken elsewhere, -ENOTCONN the
	 * backend went down first (or stops), -EIO an error reply. */
	void (*claim_done)(void *ud, uint64_t token, int result);
	/* A member of an instance that died (its heartbeat expired): the room
	 * announces "* NAME left (instance lost)". */
	void (*lost)(void *ud, const char *instance, const char *name);
	/* Optional: the events of one wake-up of the backend (what one read
	 * of the subscriber connection brought) have all been passed to
	 * event(). A room may gather what they relay and send it here, one
	 * write per member for the whole burst, as it does for one read of a
	 * local member. */
	void (*flush)(void *ud);
};

/* Counters, for metrics and tests. */
struct chat_backend_stats {
	uint64_t published; /* events handed to Redis */
	uint64_t dropped;   /* refused: queue full or backend down */
	uint64_t malformed; /* received, not a valid event (or a wrong channel) */
	uint64_t own;       /* received with our own instance id */
	uint64_t stale;     /* received with a SEQ not above the sender's last */
	uint64_t received;  /* handed to ops->event */
};

/* Start the backend thread; it connects in the background (up() or
 * down() tells). -EINVAL for a bad room or settings, -ENOMEM, or -errno
 * of eventfd()/pthread_create(). */
int chat_backend_start(struct chat_backend **ret, const struct chat_backend_settings *s,
		       const struct chat_backend_ops *ops, void *ud);

/* Flush what is queued, release our names, publish bye, remove our keys
 * (when up), then join the thread and free b: at most about
 * stop_timeout_usec. Pending claims get claim_done(-ENOTCONN) before it
 * returns. NULL is fine. */
void chat_backend_stop(struct chat_backend *b);

/* Our instance id: 16 lowercase hex digits. */
const char *chat_backend_instance(const struct chat_backend *b);
bool chat_backend_up(const struct chat_backend *b);
void chat_backend_get_stats(const struct chat_backend *b, struct chat_backend_stats *ret);

/* Claim name (chat_name_valid()) for a member at host (1-72 bytes of
 * '!'-'~'). 0: queued, claim_done(token) follows. Otherwise no callback:
 * -EINVAL, -EEXIST (already claimed or being claimed through b),
 * -ENOTCONN (down), -ENOBUFS (queue or name table full), -ENOMEM. */
int chat_backend_claim(struct chat_backend *b, const char *name, const char *host,
		       uint64_t token);

/* Give a claimed (or pending) name up. Never fails: when the backend is
 * down the key expires by itself after the key ttl. */
void chat_backend_release(struct chat_backend *b, const char *name);

/* Publish a room event (not privmsg, hello, bye: the backend sends those)
 * with our instance id and the next SEQ. Fields as chat_wire_encode()
 * wants them (a, bb NUL-terminated or NULL; text may hold any byte but
 * CR, LF, NUL). 0, -EINVAL, -EMSGSIZE, -ENOTCONN, -ENOBUFS, -ENOMEM. */
int chat_backend_publish(struct chat_backend *b, enum chat_wire_type t, const char *a,
			 const char *bb, const char *text, size_t text_len);

/* A privmsg from our member from to the member to of to_instance, on that
 * instance's own channel. Returns as chat_backend_publish(). */
int chat_backend_privmsg(struct chat_backend *b, const char *to_instance, const char *from,
			 const char *to, const char *text, size_t len);
