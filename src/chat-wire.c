#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "chat-internal.h"
#include "chat-wire.h"
#include "sanitize.h"
#include "util.h"

/* The encoding of chat-wire.h. The decoder walks the payload field by
 * field with a cursor; each fixed field is checked by its own rule, which
 * admits printable ASCII only, and the rest of the line only for CR, LF
 * and NUL (one scan of the whole payload, first). */

_Static_assert(CHAT_WIRE_TEXT_MAX >= SANITIZE_SIZE_MAX(65536),
	       "the wire must carry the longest sanitized line (max_line <= 65536)");
_Static_assert(CHAT_WIRE_HOST_MAX == CHAT_HOST_MAX, "HOST is what the rooms print");
_Static_assert(CHAT_WIRE_HEAD_MAX >= sizeof("v1 0123456789abcdef 18446744073709551615 join ") +
					     CHAT_NAME_MAX + 1 + CHAT_WIRE_HOST_MAX,
	       "the head of a join fits CHAT_WIRE_HEAD_MAX");

static const char *const type_names[_CHAT_WIRE_TYPE_MAX] = {
	[CHAT_WIRE_JOIN] = "join",   [CHAT_WIRE_LEAVE] = "leave",
	[CHAT_WIRE_MSG] = "msg",     [CHAT_WIRE_ME] = "me",
	[CHAT_WIRE_NICK] = "nick",   [CHAT_WIRE_PRIVMSG] = "privmsg",
	[CHAT_WIRE_HELLO] = "hello", [CHAT_WIRE_BYE] = "bye",
};

/* What each type carries: a and b (names, or a name and a host) and a
 * rest of the line. */
enum { F_NONE, F_NAME, F_HOST };
static const struct {
	unsigned a, b;
	bool text;
} type_fields[_CHAT_WIRE_TYPE_MAX] = {
	[CHAT_WIRE_JOIN] = { F_NAME, F_HOST, false },
	[CHAT_WIRE_LEAVE] = { F_NAME, F_NONE, true },
	[CHAT_WIRE_MSG] = { F_NAME, F_NONE, true },
	[CHAT_WIRE_ME] = { F_NAME, F_NONE, true },
	[CHAT_WIRE_NICK] = { F_NAME, F_NAME, false },
	[CHAT_WIRE_PRIVMSG] = { F_NAME, F_NAME, true },
	[CHAT_WIRE_HELLO] = { F_NONE, F_NONE, false },
	[CHAT_WIRE_BYE] = { F_NONE, F_NONE, false },
};

const char *
chat_wire_type_to_string(enum chat_wire_type t)
{
	if ((unsigned)t >= _CHAT_WIRE_TYPE_MAX)
		return NULL;
	return type_names[t];
}

int
chat_wire_type_from_string(const char *s, size_t n)
{
	for (unsigned t = 0; t < _CHAT_WIRE_TYPE_MAX; t++)
		if (strlen(type_names[t]) == n && memcmp(type_names[t], s, n) == 0)
			return (int)t;
	return -EINVAL;
}

static bool
instance_valid(const char *s, size_t n)
{
	if (n != CHAT_WIRE_INSTANCE_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool
host_valid(const char *s, size_t n)
{
	if (n < 1 || n > CHAT_WIRE_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f)
			return false;
	return true;
}

static bool
field_valid(unsigned kind, const char *s, size_t n)
{
	switch (kind) {
	case F_NAME:
		return chat_name_valid(s, n);
	case F_HOST:
		return host_valid(s, n);
	default:
		return n == 0;
	}
}

static bool
text_valid(const char *s, size_t n)
{
	if (n > 0 && !s)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return false;
	return true;
}

/* What is left of the payload; ended once the last field was taken. */
struct cursor {
	const char *p;
	size_t n;
	bool ended;
};

/* The next field, up to a space (taken too) or the end. */
static bool
take(struct cursor *c, const char **ret, size_t *ret_len)
{
	const char *sp;

	if (c->ended)
		return false;
	sp = memchr(c->p, ' ', c->n);
	*ret = c->p;
	if (!sp) {
		*ret_len = c->n;
		c->p += c->n;
		c->n = 0;
		c->ended = true;
	} else {
		*ret_len = (size_t)(sp - c->p);
		c->n -= *ret_len + 1;
		c->p = sp + 1;
	}
	return true;
}

static bool
parse_seq(const char *s, size_t n, uint64_t *ret)
{
	uint64_t v = 0;

	if (n == 0 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*ret = v;
	return true;
}

/* a, b and the rest of the line of a type: the fields after TYPE. */
static bool
decode_args(struct cursor *c, struct chat_wire_event *ev)
{
	unsigned ka = type_fields[ev->type].a, kb = type_fields[ev->type].b;

	if (ka != F_NONE && (!take(c, &ev->a, &ev->a_len) || !field_valid(ka, ev->a, ev->a_len)))
		return false;
	if (kb != F_NONE && (!take(c, &ev->b, &ev->b_len) || !field_valid(kb, ev->b, ev->b_len)))
		return false;
	if (type_fields[ev->type].text && !c->ended) {
		/* "msg alice " is malformed: the empty text has no separator. */
		if (c->n == 0)
			return false;
		ev->text = c->p;
		ev->text_len = c->n;
		c->ended = true;
	}
	return c->ended;
}

int
chat_wire_decode(const char *p, size_t n, struct chat_wire_event *ret)
{
	struct chat_wire_event ev = { 0 };
	struct cursor c = { .p = p, .n = n, .ended = n == 0 };
	const char *f;
	size_t len;
	int type;

	if (n > CHAT_WIRE_MAX || !text_valid(p, n))
		return -EBADMSG;
	if (!take(&c, &f, &len) || len != 2 || memcmp(f, "v1", 2) != 0)
		return -EBADMSG;
	if (!take(&c, &f, &len) || !instance_valid(f, len))
		return -EBADMSG;
	memcpy(ev.instance, f, len);
	ev.instance[len] = '\0';
	if (!take(&c, &f, &len) || !parse_seq(f, len, &ev.seq))
		return -EBADMSG;
	if (!take(&c, &f, &len) || (type = chat_wire_type_from_string(f, len)) < 0)
		return -EBADMSG;
	ev.type = (enum chat_wire_type)type;
	if (!decode_args(&c, &ev))
		return -EBADMSG;
	*ret = ev;
	return 0;
}

static bool
event_valid(const struct chat_wire_event *ev)
{
	unsigned t = (unsigned)ev->type;

	if (t >= _CHAT_WIRE_TYPE_MAX)
		return false;
	if (!instance_valid(ev->instance, strnlen(ev->instance, sizeof(ev->instance))))
		return false;
	if ((ev->a_len > 0 && !ev->a) || (ev->b_len > 0 && !ev->b))
		return false;
	if (!field_valid(type_fields[t].a, ev->a, ev->a_len) ||
	    !field_valid(type_fields[t].b, ev->b, ev->b_len))
		return false;
	if (!type_fields[t].text && ev->text_len > 0)
		return false;
	return text_valid(ev->text, ev->text_len);
}

static void
put(char *buf, size_t *k, const char *s, size_t n)
{
	if (n == 0)
		return;
	buf[(*k)++] = ' ';
	memcpy(buf + *k, s, n);
	*k += n;
}

int
chat_wire_encode(char *buf, size_t size, const struct chat_wire_event *ev)
{
	char head[CHAT_WIRE_HEAD_MAX];
	const char *type;
	size_t k, total;
	int len;

	if (!event_valid(ev))
		return -EINVAL;
	type = type_names[ev->type];
	len = snprintf(head, sizeof(head), "v1 %s %" PRIu64 " %s", ev->instance, ev->seq, type);
	if (len < 0 || (size_t)len >= sizeof(head))
		return -EINVAL; /* cannot be: the instance and type are checked */
	/* Each of a, b and the text is preceded by a space when present. */
	total = (size_t)len + (ev->a_len ? ev->a_len + 1 : 0) + (ev->b_len ? ev->b_len + 1 : 0) +
		(ev->text_len ? ev->text_len + 1 : 0);
	if (total > CHAT_WIRE_MAX)
		return -EMSGSIZE;
	if (total >= size)
		return -ENOSPC;
	memcpy(buf, head, (size_t)len);
	k = (size_t)len;
	put(buf, &k, ev->a, ev->a_len);
	put(buf, &k, ev->b, ev->b_len);
	put(buf, &k, ev->text, ev->text_len);
	buf[k] = '\0';
	return (int)k;
}
