#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

#define BUFFER_MIN_ALLOC 1024

int
buffer_append(struct buffer *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (b->len + n < b->len)
		return -ENOMEM;

	if (b->start + b->len + n > b->cap) {
		if (b->len + n <= b->cap && b->start > 0) {
			/* Enough room once the consumed head is dropped. */
			memmove(b->data, b->data + b->start, b->len);
			b->start = 0;
		} else {
			size_t want = b->cap ? b->cap * 2 : BUFFER_MIN_ALLOC;
			uint8_t *d;

			while (want < b->len + n)
				want *= 2;
			if (b->start > 0) {
				memmove(b->data, b->data + b->start, b->len);
				b->start = 0;
			}
			d = realloc(b->data, want);
			if (!d)
				return -ENOMEM;
			b->data = d;
			b->cap = want;
		}
	}
	memcpy(b->data + b->start + b->len, p, n);
	b->len += n;
	return 0;
}

void
buffer_consume(struct buffer *b, size_t n)
{
	if (n >= b->len) {
		buffer_release(b);
		return;
	}
	b->start += n;
	b->len -= n;
}

void
buffer_release(struct buffer *b)
{
	/* Not free(NULL): a fork child that never buffered would fault in
	 * free()'s code page just to do nothing. */
	if (b->data)
		free(b->data);
	b->data = NULL;
	b->start = b->len = b->cap = 0;
}
