#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A line framer with bounded memory. Lines end with LF; a CR right before
 * the LF is part of the terminator, any other CR is part of the line. A
 * line longer than max bytes (terminator excluded) is reported once as
 * too long and the rest of it, up to its LF, is dropped.
 *
 * The buffer holds at most max + 1 bytes (a full line plus a CR that may
 * turn out to be half of a CRLF). It is allocated when a partial line has
 * to be kept and released as soon as nothing is buffered, so an idle
 * client costs no buffer memory. A line that arrives whole in one chunk of
 * input is handed out without being copied. Pure: no logging. */

struct linebuf {
	uint8_t *data;
	size_t len;       /* bytes buffered */
	size_t cap;       /* bytes allocated, never more than max + 1 */
	size_t max;       /* longest line, terminator excluded */
	bool discarding;  /* dropping the rest of a line that was too long */
	bool handed_out;  /* data holds the line returned last */
};

enum linebuf_event {
	LINEBUF_MORE,     /* input used up, waiting for more */
	LINEBUF_LINE,     /* a complete line, terminator stripped */
	LINEBUF_TOO_LONG, /* a line over max bytes; its bytes are dropped */
	_LINEBUF_EVENT_MAX,
};

void linebuf_init(struct linebuf *b, size_t max);
void linebuf_release(struct linebuf *b);

/* Consume input from *p (*n bytes; both are advanced) until an event.
 * Returns an enum linebuf_event or -ENOMEM. For LINEBUF_LINE, *ret_line
 * and *ret_len describe the line; it points into the input or the buffer
 * and stays valid until the next call on b or until the input goes away.
 * Call again until LINEBUF_MORE to drain the input. */
int linebuf_next(struct linebuf *b, const uint8_t **p, size_t *n, const uint8_t **ret_line,
		 size_t *ret_len);

/* Bytes of an unfinished line held. */
static inline size_t
linebuf_pending(const struct linebuf *b)
{
	return b->len;
}
