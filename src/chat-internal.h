#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat-wire.h"
#include "chat.h"
#include "sanitize.h"

/* What the stream rooms (chat-room.c) and the datagram rooms (chat-udp.c)
 * share: name rules, command parsing, the rate bucket, the keyed hash, and
 * the command handling of SPEC section 5, written once against a small
 * ops table so both transports answer with the same bytes. Not for other
 * modules. Implemented in chat-proto.c. */

#define CHAT_HOST_MAX 72    /* SOCKADDR_STR_MAX: "addr%scope" */
#define CHAT_QUOTE_MAX 40   /* user text echoed back in an error, bytes */
#define CHAT_WHO_MAX 16384  /* longest /who reply, CRLF included */
/* Line buffers: a sanitized line, and a reply built around one. */
#define CHAT_SAN_SIZE(max_line) SANITIZE_SIZE_MAX((size_t)(max_line))
#define CHAT_OUT_SIZE(max_line)                                       \
	(CHAT_SAN_SIZE(max_line) + 256 > CHAT_WHO_MAX ? CHAT_SAN_SIZE(max_line) + 256 \
						      : CHAT_WHO_MAX)

/* Token bucket: rate lines per second, burst rate. Tokens are counted in
 * millionths of a line. */
struct chat_bucket {
	uint64_t tokens;
	uint64_t last_usec;
};

void chat_bucket_init(struct chat_bucket *b, unsigned rate, uint64_t now_usec);
bool chat_bucket_take(struct chat_bucket *b, unsigned rate, uint64_t now_usec);

/* SipHash-2-4 with a per-room random key, so that peers cannot pick
 * names or ports that collide in our tables. */
void chat_hash_key(uint64_t ret[2]);
uint64_t chat_hash(const uint64_t key[2], const void *p, size_t n);
/* Names are unique case-insensitively (ASCII): "Alice" is taken when
 * "alice" is online, so nobody can pass for somebody else. */
uint64_t chat_name_hash(const uint64_t key[2], const char *name);
bool chat_name_equal(const char *a, const char *b);
bool chat_name_valid(const char *s, size_t n);
/* The name in a naming line: bare "alice" or classic "NAME: alice" ("NAME"
 * in any case, blanks allowed around the colon), spaces and tabs around
 * it removed. */
void chat_name_candidate(const char *line, size_t n, const char **ret, size_t *ret_len);
/* Empty, or only spaces and tabs: such lines are ignored. */
bool chat_line_blank(const char *s, size_t n);

enum chat_cmd {
	CHAT_CMD_TEXT, /* a message; "//x" is the message "/x" */
	CHAT_CMD_WHO,
	CHAT_CMD_NICK,
	CHAT_CMD_ME,
	CHAT_CMD_MSG,
	CHAT_CMD_QUIT,
	CHAT_CMD_HELP,
	CHAT_CMD_JOIN, /* UDP only; the stream room treats it as unknown */
	CHAT_CMD_UNKNOWN,
	_CHAT_CMD_MAX,
};

struct chat_cmd_args {
	const char *word; /* the command as typed, "/x" */
	size_t word_len;
	const char *arg; /* NICK of /nick, /msg; TOKEN of /join */
	size_t arg_len;
	const char *text; /* message, /me and /msg text, /quit reason */
	size_t text_len;
};

enum chat_cmd chat_cmd_parse(const char *line, size_t n, struct chat_cmd_args *ret);

/* A room as the shared command code sees it. Members are opaque handles
 * valid for the duration of one call. */
struct chat_ops {
	void (*send)(void *room, void *m, const char *line, size_t len);
	/* To every member with a name except `except` (may be NULL). */
	void (*broadcast)(void *room, void *except, const char *line, size_t len);
	/* The member with a name equal to name (case-insensitively), or NULL. */
	void *(*find)(void *room, const char *name);
	const char *(*nick)(void *room, void *m);
	const char *(*host)(void *room, void *m, char buf[CHAT_HOST_MAX]);
	/* Members with a name in the order they got it. */
	void *(*first)(void *room);
	void *(*next)(void *room, void *m);
	unsigned (*online)(void *room);
	void (*rename)(void *room, void *m, const char *name);
	/* /quit: take m out of the room (no notice), then close it. */
	void (*remove)(void *room, void *m);
	void (*close)(void *room, void *m, const char *reason);
	/* Optional, for a room shared with other instances (SPEC 12). /nick
	 * of m to a free name: true when the room claims it first and calls
	 * chat_nick_done() later; false: rename now. */
	bool (*claim_nick)(void *room, void *m, const char *name);
	/* /msg from m to a member to: true when the room delivered it
	 * itself (to lives elsewhere); false: send the line to to. */
	bool (*send_private)(void *room, void *from, void *to, const char *text, size_t len);
};

struct chat_ctx {
	const struct chat_ops *ops;
	void *room;
	char *out; /* CHAT_OUT_SIZE(max_line) bytes */
	size_t out_size;
	unsigned max_line;
	struct listener_stats *stats; /* or NULL */
};

/* Error and notice lines shared by both room kinds. */
void chat_send_line(const struct chat_ctx *c, void *m, const char *text);
void chat_send_too_long(const struct chat_ctx *c, void *m);
void chat_send_help(const struct chat_ctx *c, void *m);
void chat_send_taken(const struct chat_ctx *c, void *m, const char *name);
/* SPEC section 5.1: "* welcome to LISTENER (N online); send your name". */
void chat_send_welcome(const struct chat_ctx *c, void *m, const char *listener);
/* Validate a name attempt (sanitized line) of m; on success copy the name
 * into ret and return true, else tell m why and return false. */
bool chat_name_attempt(const struct chat_ctx *c, void *m, const char *line, size_t n,
		       char ret[CHAT_NAME_MAX + 1]);
/* m just got its name and is in the room: "you are" to m, "joined" to
 * the others. */
void chat_announce_join(const struct chat_ctx *c, void *m);
/* "joined" only, to everyone but m (a member of another instance). */
void chat_announce_joined(const struct chat_ctx *c, void *m);
/* "* OLD is now NAME" to everyone but m. */
void chat_announce_renamed(const struct chat_ctx *c, void *m, const char *old,
			   const char *name);
/* m's /nick to name is granted: rename, tell the others and m. */
void chat_nick_done(const struct chat_ctx *c, void *m, const char *name);
/* A message ("<NAME> TEXT", or "* NAME TEXT" when me) to everyone but
 * except (may be NULL), counted once. text must be sanitized. */
void chat_relay(const struct chat_ctx *c, void *except, bool me, const char *name,
		const char *text, size_t len);
/* "<FROM> (private) TEXT" to to. */
void chat_send_private(const struct chat_ctx *c, void *to, const char *from, const char *text,
		       size_t len);
/* Repeat "you are" to m (UDP, when a /join is sent again). */
void chat_announce_self(const struct chat_ctx *c, void *m);
/* name is gone from the room already: "left" to everyone still in it. */
void chat_announce_left(const struct chat_ctx *c, const char *name, const char *reason,
			size_t reason_len);
/* Count a line over rate_limit ("! slow down"), and set the members
 * gauge (udp: also the joined peers, conns_now). stats may be NULL. */
void chat_count_rate_limited(struct listener_stats *stats);
void chat_count_members(struct listener_stats *stats, unsigned n, bool as_conns);
/* A sanitized, non-blank line of a member with a name. */
void chat_handle_line(const struct chat_ctx *c, void *m, const char *line, size_t n);

/* ---- a room shared with other instances (SPEC 12) ----
 *
 * Both room kinds keep a roster of the members of other instances and
 * handle the events the backend brings the same way: the handling is
 * here, written once against these ops (members are the same opaque
 * handles as in chat_ops; the room's lock is held). */
struct chat_remote_ops {
	/* Is m a member of another instance? */
	bool (*is_remote)(void *room, void *m);
	/* Its instance (remote m only). */
	const char *(*instance)(void *room, void *m);
	/* A new member of instance: NULL when the room remembers too many
	 * (or is out of memory); nobody is told. */
	void *(*add)(void *room, const char *name, const char *host, size_t host_len,
		     const char *instance);
	/* A member known already, seen again (a snapshot) or moved to
	 * another instance (the old one went unnoticed). */
	void (*update)(void *room, void *m, const char *host, size_t host_len,
		       const char *instance);
	/* Out of the roster, silently. */
	void (*forget)(void *room, void *m);
	/* Its new name, silently. */
	void (*rename)(void *room, void *m, const char *name);
};

/* An event of another instance (chat_backend_ops.event): the roster
 * follows it and the members hear it, as c says (c->stats NULL: relays
 * are not counted as messages of ours). san: a buffer of san_size for the
 * event's text, which is untrusted and sanitized as a member's line is. */
void chat_remote_event(const struct chat_ctx *c, const struct chat_remote_ops *r,
		       const struct chat_wire_event *ev, char *san, size_t san_size);
/* name of instance, an instance that died: "* NAME left (instance lost)". */
void chat_remote_lost(const struct chat_ctx *c, const struct chat_remote_ops *r,
		      const char *instance, const char *name);
/* A member of another instance still listed under a name the backend just
 * gave one of ours (its instance went away unnoticed): forgotten. */
void chat_remote_evict(const struct chat_ctx *c, const struct chat_remote_ops *r,
		       const char *name);
/* NAME-2, NAME-3, ... after *suffix: the first that nobody in the room has,
 * cut to fit the name rule; false after NAME-999. */
bool chat_next_free_name(const struct chat_ctx *c, const char *base, unsigned *suffix,
			 char ret[CHAT_NAME_MAX + 1]);
