#pragma once

#include <stddef.h>
#include <stdint.h>

/* The chat events that netechod instances exchange over Redis pub/sub, for
 * the coming Redis backend (SPEC section 12). A pure codec: no I/O, no
 * allocation; decoded fields point into the caller's buffer.
 *
 * One event is one pub/sub message payload: a single line of text with no
 * CR, LF or NUL in it and no line ending, fields separated by one space,
 * so that `redis-cli subscribe` shows it as it is:
 *
 *   v1 INSTANCE SEQ TYPE ARGS...
 *
 *   INSTANCE  16 lowercase hex digits, drawn at random when a listener
 *             starts: who sent it
 *   SEQ       decimal uint64, no sign, no leading zero ("0" itself is
 *             fine): the sender's counter, strictly increasing per
 *             INSTANCE (the sender's duty; the decoder only parses it)
 *   TYPE ARGS:
 *     join NAME HOST           HOST: the member's numeric address, 1-72
 *                              bytes of '!'-'~' (CHAT_HOST_MAX)
 *     leave NAME [REASON]      REASON: the rest of the line
 *     msg NAME [TEXT]          TEXT: the rest of the line
 *     me NAME [TEXT]
 *     nick OLD NEW
 *     privmsg FROM TO [TEXT]   sent on the recipient instance's own channel
 *     hello                    an instance (re)connected
 *     bye                      an instance stops; its members' leaves
 *                              were sent before
 *
 * NAME, OLD, NEW, FROM and TO follow the chat name rule (chat_name_valid(),
 * SPEC section 5). A rest-of-line field is absent when empty: "msg alice"
 * carries "", and "msg alice " (a separator with nothing after it) is
 * malformed, so every event has exactly one encoding and decoding then
 * encoding gives back the same bytes. The rest of the line may hold any
 * byte but CR, LF and NUL: it is untrusted, and the receiving room
 * sanitizes it before members see it. Every other field is printable
 * ASCII by its own rule. An unknown version or TYPE, a missing or extra
 * field and anything longer than CHAT_WIRE_MAX is malformed: the receiver
 * drops the event (a newer instance must bump the version).
 *
 * CHAT_WIRE_MAX: a member's line is at most max_line bytes (at most 65536,
 * SPEC section 3) and sanitizing may triple it (SANITIZE_SIZE_MAX); the
 * wire carries the longest sanitized line with room for the head, so that
 * any line a member may send reaches every member of the room whole, as
 * SPEC section 12 asks ("members see one room"). A smaller bound (4 KiB)
 * would make long lines reach the sender's own instance only. The bound
 * is what a subscriber must be able to hold, and what it refuses above. */

/* The longest TEXT (or REASON) that always fits. */
#define CHAT_WIRE_TEXT_MAX (3 * 65536)
/* The longest head: "v1 " INSTANCE " " SEQ " privmsg " FROM " " TO " ". */
#define CHAT_WIRE_HEAD_MAX 256
/* The longest payload, without a NUL. */
#define CHAT_WIRE_MAX (CHAT_WIRE_HEAD_MAX + CHAT_WIRE_TEXT_MAX)
#define CHAT_WIRE_INSTANCE_LEN 16
#define CHAT_WIRE_HOST_MAX 72

enum chat_wire_type {
	CHAT_WIRE_JOIN,
	CHAT_WIRE_LEAVE,
	CHAT_WIRE_MSG,
	CHAT_WIRE_ME,
	CHAT_WIRE_NICK,
	CHAT_WIRE_PRIVMSG,
	CHAT_WIRE_HELLO,
	CHAT_WIRE_BYE,
	_CHAT_WIRE_TYPE_MAX,
};

/* "join", ... or NULL for a value out of range. */
const char *chat_wire_type_to_string(enum chat_wire_type t);
/* The type named s[0..n), or -EINVAL. */
int chat_wire_type_from_string(const char *s, size_t n);

struct chat_wire_event {
	enum chat_wire_type type;
	char instance[CHAT_WIRE_INSTANCE_LEN + 1]; /* NUL-terminated */
	uint64_t seq;
	/* join, leave, msg, me: NAME; nick: OLD; privmsg: FROM */
	const char *a;
	size_t a_len;
	/* join: HOST; nick: NEW; privmsg: TO */
	const char *b;
	size_t b_len;
	/* leave: REASON; msg, me, privmsg: TEXT. May be NULL when empty. */
	const char *text;
	size_t text_len;
};

/* Decode the payload p[0..n) (not NUL-terminated; n == 0 is fine). Returns
 * 0 and fills *ret, its pointers into p, or -EBADMSG when p is malformed;
 * *ret is only written on success. Fields a type does not carry are NULL
 * with length 0. */
int chat_wire_decode(const char *p, size_t n, struct chat_wire_event *ret);

/* Encode ev into buf, NUL-terminated (the NUL is not part of the payload).
 * Returns the payload's length, -EINVAL when the event is one that
 * chat_wire_decode() would refuse (fields a type does not carry must be
 * empty), -EMSGSIZE when it would be longer than CHAT_WIRE_MAX (not when
 * its TEXT is at most CHAT_WIRE_TEXT_MAX), or -ENOSPC when buf is too
 * small (CHAT_WIRE_MAX + 1 always suffices). */
int chat_wire_encode(char *buf, size_t size, const struct chat_wire_event *ev);
