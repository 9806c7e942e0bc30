#pragma once

#include <stddef.h>
#include <stdint.h>

/* A byte FIFO whose memory is allocated on demand and released as soon as
 * it is empty, so an idle connection costs no buffer memory. Limits are the
 * owner's business (session.c enforces them). */
struct buffer {
	uint8_t *data;
	size_t start; /* offset of the first unread byte */
	size_t len;   /* bytes held */
	size_t cap;   /* bytes allocated */
};

int buffer_append(struct buffer *b, const void *p, size_t n);
void buffer_consume(struct buffer *b, size_t n);
void buffer_release(struct buffer *b);

static inline const uint8_t *
buffer_data(const struct buffer *b)
{
	return b->data + b->start;
}

static inline size_t
buffer_len(const struct buffer *b)
{
	return b->len;
}
