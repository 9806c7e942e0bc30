#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "linebuf.h"
#include "util.h"

#define LINEBUF_MIN_ALLOC 128

static void
drop(struct linebuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
linebuf_init(struct linebuf *b, size_t max)
{
	*b = (struct linebuf){ .max = max };
}

void
linebuf_release(struct linebuf *b)
{
	drop(b);
	b->discarding = b->handed_out = false;
}

static int
append(struct linebuf *b, const uint8_t *p, size_t n)
{
	if (b->len + n > b->cap) {
		/* Grow geometrically, but never past max + 1. */
		size_t want = b->cap ? b->cap : LINEBUF_MIN_ALLOC;
		uint8_t *d;

		while (want < b->len + n)
			want *= 2;
		want = MIN(want, b->max + 1);
		d = realloc(b->data, want);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = want;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static void
advance(const uint8_t **p, size_t *n, size_t k)
{
	*p += k;
	*n -= k;
}

/* Start dropping the rest of the current line; report it as too long. */
static int
too_long(struct linebuf *b)
{
	drop(b);
	b->discarding = true;
	return LINEBUF_TOO_LONG;
}

int
linebuf_next(struct linebuf *b, const uint8_t **p, size_t *n, const uint8_t **ret_line,
	     size_t *ret_len)
{
	if (b->handed_out) {
		b->handed_out = false;
		b->len = 0;
	}

	while (*n > 0) {
		const uint8_t *lf = memchr(*p, '\n', *n);
		size_t chunk, take;
		int r;

		if (b->discarding) {
			if (!lf) {
				advance(p, n, *n);
				break;
			}
			advance(p, n, (size_t)(lf - *p) + 1);
			b->discarding = false;
			continue;
		}

		if (lf && b->len == 0) {
			/* A whole line in the input: no copy. */
			const uint8_t *line = *p;
			size_t len = (size_t)(lf - *p);

			advance(p, n, len + 1);
			if (len > 0 && line[len - 1] == '\r')
				len--;
			if (len > b->max)
				return LINEBUF_TOO_LONG;
			*ret_line = line;
			*ret_len = len;
			return LINEBUF_LINE;
		}

		chunk = lf ? (size_t)(lf - *p) : *n;
		take = MIN(chunk, b->max + 1 - b->len);
		r = append(b, *p, take);
		if (r < 0)
			return r;
		advance(p, n, take);
		if (take < chunk)
			/* More than max + 1 bytes without LF. */
			return too_long(b);

		if (lf) {
			size_t len = b->len;

			advance(p, n, 1);
			if (len > 0 && b->data[len - 1] == '\r')
				len--;
			if (len > b->max) {
				drop(b);
				return LINEBUF_TOO_LONG;
			}
			b->handed_out = true;
			*ret_line = b->data;
			*ret_len = len;
			return LINEBUF_LINE;
		}

		/* Input used up. max + 1 bytes can still make a line only if
		 * the last one is the CR of a CRLF. */
		if (b->len == b->max + 1 && b->data[b->max] != '\r')
			return too_long(b);
	}

	if (b->len == 0)
		drop(b);
	return LINEBUF_MORE;
}
