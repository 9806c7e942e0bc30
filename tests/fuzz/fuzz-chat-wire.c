/* libFuzzer target for chat_wire_decode() and chat_wire_encode()
 * (src/chat-wire.h).
 *
 * The input is one pub/sub payload as another instance (or anyone who can
 * publish on the backend) sent it. Oracles, each an abort on failure:
 * - the result is 0 or -EBADMSG; *ret is written on success only; the
 *   same bytes decode the same again;
 * - a decoded event is sane: its fields point into the input, in order,
 *   a and b are what its type carries by their rules (chat_name_valid()
 *   for names), the text holds no CR, LF or NUL and ends the input;
 * - encoding it gives back exactly the input (one encoding per event),
 *   and -ENOSPC into a buffer one byte short;
 * - every prefix up to PREFIX_MAX bytes decodes to an event that encodes
 *   to that prefix, or is refused;
 * - the input read as an event's fields (type, then a, b and the text
 *   split at NULs): when the encoder takes it, its encoding decodes to
 *   the same fields. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-internal.h"
#include "chat-wire.h"
#include "util.h"

#define FAIL(...)                                                 \
	do {                                                      \
		fprintf(stderr, "fuzz-chat-wire: " __VA_ARGS__); \
		fputc('\n', stderr);                              \
		abort();                                          \
	} while (0)

#define POISON 0xA5
#define PREFIX_MAX 512

static char out[CHAT_WIRE_MAX + 1];

static void
poison(struct chat_wire_event *ev)
{
	memset(ev, POISON, sizeof(*ev));
}

static bool
poisoned(const struct chat_wire_event *ev)
{
	const uint8_t *b = (const uint8_t *)ev;

	for (size_t i = 0; i < sizeof(*ev); i++)
		if (b[i] != POISON)
			return false;
	return true;
}

static bool
same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static bool
same_event(const struct chat_wire_event *x, const struct chat_wire_event *y)
{
	return x->type == y->type && x->seq == y->seq && strcmp(x->instance, y->instance) == 0 &&
	       same_bytes(x->a, x->a_len, y->a, y->a_len) &&
	       same_bytes(x->b, x->b_len, y->b, y->b_len) &&
	       same_bytes(x->text, x->text_len, y->text, y->text_len);
}

/* Decode a copy of exactly n bytes, so that a read past them is caught;
 * the copy is *ret_copy, for the caller to free. */
static int
decode_copy(const char *p, size_t n, struct chat_wire_event *ev, char **ret_copy)
{
	char *copy = malloc(n ? n : 1);

	if (!copy)
		abort();
	memcpy(copy, p, n);
	*ret_copy = copy;
	return chat_wire_decode(copy, n, ev);
}

static void
check_field(const char *what, const char *p, size_t n, const char *f, size_t len,
	    const char **pos)
{
	if (!f) {
		if (len)
			FAIL("%s: NULL with %zu bytes", what, len);
		return;
	}
	if (f < *pos || f + len > p + n)
		FAIL("%s outside the input or out of order", what);
	*pos = f + len;
}

static void
check_sane(const char *p, size_t n, const struct chat_wire_event *ev)
{
	const char *pos = p;

	if ((unsigned)ev->type >= _CHAT_WIRE_TYPE_MAX)
		FAIL("type %d", (int)ev->type);
	if (strlen(ev->instance) != CHAT_WIRE_INSTANCE_LEN ||
	    strspn(ev->instance, "0123456789abcdef") != CHAT_WIRE_INSTANCE_LEN)
		FAIL("instance '%s'", ev->instance);
	check_field("a", p, n, ev->a, ev->a_len, &pos);
	check_field("b", p, n, ev->b, ev->b_len, &pos);
	check_field("text", p, n, ev->text, ev->text_len, &pos);
	if (ev->text && ev->text + ev->text_len != p + n)
		FAIL("text does not end the payload");
	for (size_t i = 0; i < ev->text_len; i++)
		if (ev->text[i] == '\r' || ev->text[i] == '\n' || ev->text[i] == '\0')
			FAIL("text holds CR, LF or NUL");
	switch (ev->type) {
	case CHAT_WIRE_HELLO:
	case CHAT_WIRE_BYE:
		if (ev->a_len || ev->b_len || ev->text_len)
			FAIL("hello or bye with fields");
		break;
	case CHAT_WIRE_JOIN:
		if (!chat_name_valid(ev->a, ev->a_len) || ev->b_len < 1 ||
		    ev->b_len > CHAT_WIRE_HOST_MAX || ev->text_len)
			FAIL("join with a bad name or host");
		break;
	case CHAT_WIRE_NICK:
	case CHAT_WIRE_PRIVMSG:
		if (!chat_name_valid(ev->a, ev->a_len) || !chat_name_valid(ev->b, ev->b_len) ||
		    (ev->type == CHAT_WIRE_NICK && ev->text_len))
			FAIL("nick or privmsg with a bad name");
		break;
	default:
		if (!chat_name_valid(ev->a, ev->a_len) || ev->b_len)
			FAIL("%s with a bad name", chat_wire_type_to_string(ev->type));
	}
}

/* Encoding ev gives back p[0..n) exactly. */
static void
check_reencode(const char *p, size_t n, const struct chat_wire_event *ev)
{
	int r = chat_wire_encode(out, sizeof(out), ev);

	if (r < 0 || !same_bytes(out, (size_t)r, p, n) || out[r] != '\0')
		FAIL("decoded %zu bytes, encoded back to %d others", n, r);
	if (chat_wire_encode(out, n, ev) != -ENOSPC)
		FAIL("encoded into %zu bytes without room for the NUL", n);
}

static void
check_prefixes(const char *p, size_t n)
{
	for (size_t k = 0; k < MIN(n, (size_t)PREFIX_MAX); k++) {
		struct chat_wire_event ev;
		char *copy;
		int r;

		poison(&ev);
		r = decode_copy(p, k, &ev, &copy);
		if (r == 0)
			check_reencode(copy, k, &ev);
		else if (r != -EBADMSG || !poisoned(&ev))
			FAIL("prefix of %zu bytes: %d", k, r);
		free(copy);
	}
}

/* The input as fields: type, seq, then a, b and text at NULs. */
static void
check_encode_fields(const char *p, size_t n)
{
	struct chat_wire_event ev = { 0 }, back;
	const char *end = p + n, *q;
	const char **f[] = { &ev.a, &ev.b, &ev.text };
	size_t *len[] = { &ev.a_len, &ev.b_len, &ev.text_len };
	int r;

	if (n < 2)
		return;
	ev.type = (enum chat_wire_type)((unsigned char)p[0] % (_CHAT_WIRE_TYPE_MAX + 1));
	ev.seq = (uint64_t)(unsigned char)p[1] * UINT64_C(0x0101010101010101);
	memcpy(ev.instance, "00000000deadbeef", CHAT_WIRE_INSTANCE_LEN + 1);
	p += 2;
	for (size_t i = 0; i < ELEMENTSOF(f) && p < end; i++) {
		q = i + 1 < ELEMENTSOF(f) ? memchr(p, '\0', (size_t)(end - p)) : NULL;
		*f[i] = p;
		*len[i] = (size_t)((q ? q : end) - p);
		p = q ? q + 1 : end;
	}
	r = chat_wire_encode(out, sizeof(out), &ev);
	if (r == -EINVAL || r == -EMSGSIZE)
		return;
	if (r < 0)
		FAIL("encode into CHAT_WIRE_MAX + 1 bytes: %d", r);
	poison(&back);
	if (chat_wire_decode(out, (size_t)r, &back) != 0)
		FAIL("an encoded event of %d bytes does not decode", r);
	/* An empty field is absent: decoded as NULL. */
	if (ev.a_len == 0)
		ev.a = NULL;
	if (ev.b_len == 0)
		ev.b = NULL;
	if (ev.text_len == 0)
		ev.text = NULL;
	if (!same_event(&ev, &back))
		FAIL("an encoded event decodes to another");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct chat_wire_event ev, again;
	char *copy, *copy2;
	int r, r2;

	poison(&ev);
	r = decode_copy(p, size, &ev, &copy);
	if (r != 0 && (r != -EBADMSG || !poisoned(&ev)))
		FAIL("result %d, or an error that wrote *ret", r);
	poison(&again);
	r2 = decode_copy(p, size, &again, &copy2);
	if (r2 != r)
		FAIL("decoded again: %d, then %d", r, r2);
	if (r == 0) {
		check_sane(copy, size, &ev);
		check_reencode(copy, size, &ev);
	}
	free(copy);
	free(copy2);
	check_prefixes(p, size);
	check_encode_fields(p, size);
	return 0;
}
