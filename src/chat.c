#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "chat-internal.h"
#include "chat.h"
#include "linebuf.h"
#include "sanitize.h"
#include "util.h"

/* ------------------------------------------------------------------ */
/* Shared by the stream and the datagram rooms (chat-internal.h).      */
/* ------------------------------------------------------------------ */

void
chat_bucket_init(struct chat_bucket *b, unsigned rate, uint64_t now_usec)
{
	b->tokens = (uint64_t)rate * USEC_PER_SEC;
	b->last_usec = now_usec;
}

bool
chat_bucket_take(struct chat_bucket *b, unsigned rate, uint64_t now_usec)
{
	uint64_t cap = (uint64_t)rate * USEC_PER_SEC;

	/* Callers on other threads may pass a slightly older time: no
	 * refill then, rather than a huge one. */
	if (now_usec > b->last_usec) {
		uint64_t elapsed = now_usec - b->last_usec;

		if (elapsed >= USEC_PER_SEC)
			b->tokens = cap;
		else
			b->tokens = MIN(cap, b->tokens + elapsed * rate);
		b->last_usec = now_usec;
	}
	if (b->tokens < USEC_PER_SEC)
		return false;
	b->tokens -= USEC_PER_SEC;
	return true;
}

void
chat_hash_key(uint64_t ret[2])
{
	if (getrandom(ret, 2 * sizeof(uint64_t), GRND_NONBLOCK) == 2 * sizeof(uint64_t))
		return;
	/* Only flooding resistance depends on this key; never fail over it. */
	ret[0] = now_usec() ^ (uint64_t)(uintptr_t)ret;
	ret[1] = realtime_usec() * UINT64_C(0x9E3779B97F4A7C15);
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void
sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = ROTL(v[1], 13);
	v[1] ^= v[0];
	v[0] = ROTL(v[0], 32);
	v[2] += v[3];
	v[3] = ROTL(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = ROTL(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = ROTL(v[1], 17);
	v[1] ^= v[2];
	v[2] = ROTL(v[2], 32);
}

uint64_t
chat_hash(const uint64_t key[2], const void *p, size_t n)
{
	const uint8_t *s = p;
	uint64_t v[4] = {
		key[0] ^ UINT64_C(0x736f6d6570736575),
		key[1] ^ UINT64_C(0x646f72616e646f6d),
		key[0] ^ UINT64_C(0x6c7967656e657261),
		key[1] ^ UINT64_C(0x7465646279746573),
	};
	uint64_t m, last = (uint64_t)n << 56;
	size_t i;

	for (; n >= 8; n -= 8, s += 8) {
		m = 0;
		for (i = 0; i < 8; i++)
			m |= (uint64_t)s[i] << (8 * i);
		v[3] ^= m;
		sip_round(v);
		sip_round(v);
		v[0] ^= m;
	}
	for (i = 0; i < n; i++)
		last |= (uint64_t)s[i] << (8 * i);
	v[3] ^= last;
	sip_round(v);
	sip_round(v);
	v[0] ^= last;
	v[2] ^= 0xff;
	for (i = 0; i < 4; i++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

uint64_t
chat_name_hash(const uint64_t key[2], const char *name)
{
	char folded[CHAT_NAME_MAX];
	size_t n;

	for (n = 0; n < sizeof(folded) && name[n]; n++)
		folded[n] = ascii_lower(name[n]);
	return chat_hash(key, folded, n);
}

bool
chat_name_equal(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (ascii_lower(*a) != ascii_lower(*b))
			return false;
	return *a == *b;
}

static bool
name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

bool
chat_name_valid(const char *s, size_t n)
{
	if (n < 1 || n > CHAT_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return false;
	return true;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static void
skip_blanks(const char **s, size_t *n)
{
	while (*n > 0 && is_blank(**s)) {
		(*s)++;
		(*n)--;
	}
}

static void
trim_blanks(const char **s, size_t *n)
{
	skip_blanks(s, n);
	while (*n > 0 && is_blank((*s)[*n - 1]))
		(*n)--;
}

bool
chat_line_blank(const char *s, size_t n)
{
	trim_blanks(&s, &n);
	return n == 0;
}

void
chat_name_candidate(const char *line, size_t n, const char **ret, size_t *ret_len)
{
	static const char word[] = "name";
	size_t i;

	trim_blanks(&line, &n);
	for (i = 0; i < sizeof(word) - 1; i++)
		if (i >= n || ascii_lower(line[i]) != word[i])
			break;
	if (i == sizeof(word) - 1) {
		while (i < n && is_blank(line[i]))
			i++;
		if (i < n && line[i] == ':') {
			line += i + 1;
			n -= i + 1;
			trim_blanks(&line, &n);
		}
	}
	*ret = line;
	*ret_len = n;
}

static const char *const cmd_words[_CHAT_CMD_MAX] = {
	[CHAT_CMD_WHO] = "/who",   [CHAT_CMD_NICK] = "/nick", [CHAT_CMD_ME] = "/me",
	[CHAT_CMD_MSG] = "/msg",   [CHAT_CMD_QUIT] = "/quit", [CHAT_CMD_HELP] = "/help",
	[CHAT_CMD_JOIN] = "/join",
};

enum chat_cmd
chat_cmd_parse(const char *line, size_t n, struct chat_cmd_args *ret)
{
	struct chat_cmd_args a = { 0 };
	const char *rest;
	size_t rest_len, w = 0;
	enum chat_cmd cmd = CHAT_CMD_UNKNOWN;

	if (n == 0 || line[0] != '/' || (n >= 2 && line[1] == '/')) {
		/* A message; "//" escapes a leading slash. */
		bool escaped = n > 0 && line[0] == '/';

		a.text = escaped ? line + 1 : line;
		a.text_len = escaped ? n - 1 : n;
		*ret = a;
		return CHAT_CMD_TEXT;
	}

	while (w < n && !is_blank(line[w]))
		w++;
	a.word = line;
	a.word_len = w;
	rest = line + w;
	rest_len = n - w;
	trim_blanks(&rest, &rest_len);

	for (int i = 0; i < _CHAT_CMD_MAX; i++) {
		const char *word = cmd_words[i];

		if (word && strlen(word) == w && memcmp(word, line, w) == 0) {
			cmd = (enum chat_cmd)i;
			break;
		}
	}

	switch (cmd) {
	case CHAT_CMD_NICK:
	case CHAT_CMD_JOIN:
		a.arg = rest;
		a.arg_len = rest_len;
		break;
	case CHAT_CMD_MSG:
		a.arg = rest;
		while (a.arg_len < rest_len && !is_blank(rest[a.arg_len]))
			a.arg_len++;
		a.text = rest + a.arg_len;
		a.text_len = rest_len - a.arg_len;
		skip_blanks(&a.text, &a.text_len);
		break;
	case CHAT_CMD_ME:
	case CHAT_CMD_QUIT:
		a.text = rest;
		a.text_len = rest_len;
		break;
	default:
		break;
	}
	*ret = a;
	return cmd;
}

/* Format one line into c->out, CRLF appended; returns its length. Lines
 * are sized to fit (CHAT_OUT_SIZE); were one not to, it would be cut, but
 * still end with CRLF. */
_printf_(2, 3) static size_t
format(const struct chat_ctx *c, const char *fmt, ...)
{
	size_t room = c->out_size - 2, len;
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(c->out, room, fmt, ap);
	va_end(ap);
	len = k < 0 ? 0 : MIN((size_t)k, room - 1);
	memcpy(c->out + len, "\r\n", 2);
	return len + 2;
}

static void
reply(const struct chat_ctx *c, void *m, size_t len)
{
	c->ops->send(c->room, m, c->out, len);
}

static void
others(const struct chat_ctx *c, void *m, size_t len)
{
	c->ops->broadcast(c->room, m, c->out, len);
}

/* User text echoed in an error: at most CHAT_QUOTE_MAX bytes, cut at a
 * character boundary (the text is sanitized, so valid UTF-8), "..." marks
 * a cut. */
static int
quote_len(const char *s, size_t n, const char **ret_ellipsis)
{
	*ret_ellipsis = "";
	if (n > CHAT_QUOTE_MAX) {
		n = CHAT_QUOTE_MAX;
		while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80)
			n--;
		*ret_ellipsis = "...";
	}
	return (int)n;
}

void
chat_send_line(const struct chat_ctx *c, void *m, const char *text)
{
	reply(c, m, format(c, "%s", text));
}

void
chat_send_too_long(const struct chat_ctx *c, void *m)
{
	reply(c, m, format(c, "! line too long (max %u bytes)", c->max_line));
}

static const char *const help_lines[] = {
	"* commands:",
	"* /who - list who is online",
	"* /nick NAME - change your name",
	"* /me TEXT - say that you do something",
	"* /msg NICK TEXT - send TEXT to NICK only",
	"* /quit [REASON] - leave",
	"* /help - this list",
	"* //TEXT - send a message that starts with /",
	"* anything else is sent to everyone",
};

void
chat_send_help(const struct chat_ctx *c, void *m)
{
	for (size_t i = 0; i < ELEMENTSOF(help_lines); i++)
		chat_send_line(c, m, help_lines[i]);
}

void
chat_send_welcome(const struct chat_ctx *c, void *m, const char *listener)
{
	reply(c, m,
	      format(c, "* welcome to %s (%u online); send your name", listener,
		     c->ops->online(c->room)));
}

void
chat_send_taken(const struct chat_ctx *c, void *m, const char *name)
{
	reply(c, m, format(c, "! name \"%s\" is taken", name));
}

static bool
check_name(const struct chat_ctx *c, void *m, const char *s, size_t n,
	   char ret[CHAT_NAME_MAX + 1])
{
	char name[CHAT_NAME_MAX + 1];
	const char *ellipsis;
	void *holder;

	if (!chat_name_valid(s, n)) {
		int k = quote_len(s, n, &ellipsis);

		reply(c, m,
		      format(c, "! invalid name \"%.*s%s\"; use 1-32 of A-Z a-z 0-9 _ . -", k, s,
			     ellipsis));
		return false;
	}
	memcpy(name, s, n);
	name[n] = '\0';
	holder = c->ops->find(c->room, name);
	if (holder && holder != m) {
		chat_send_taken(c, m, name);
		return false;
	}
	memcpy(ret, name, n + 1);
	return true;
}

bool
chat_name_attempt(const struct chat_ctx *c, void *m, const char *line, size_t n,
		  char ret[CHAT_NAME_MAX + 1])
{
	const char *s;
	size_t k;

	chat_name_candidate(line, n, &s, &k);
	return check_name(c, m, s, k, ret);
}

void
chat_announce_self(const struct chat_ctx *c, void *m)
{
	char host[CHAT_HOST_MAX];

	reply(c, m,
	      format(c, "* you are %s@%s; %u online", c->ops->nick(c->room, m),
		     c->ops->host(c->room, m, host), c->ops->online(c->room)));
}

void
chat_announce_join(const struct chat_ctx *c, void *m)
{
	char host[CHAT_HOST_MAX];

	chat_announce_self(c, m);
	others(c, m,
	       format(c, "* %s@%s joined; %u online", c->ops->nick(c->room, m),
		      c->ops->host(c->room, m, host), c->ops->online(c->room)));
}

void
chat_announce_left(const struct chat_ctx *c, const char *name, const char *reason,
		   size_t reason_len)
{
	size_t len;

	if (reason_len > 0)
		len = format(c, "* %s left (%.*s); %u online", name, (int)reason_len, reason,
			     c->ops->online(c->room));
	else
		len = format(c, "* %s left; %u online", name, c->ops->online(c->room));
	others(c, NULL, len);
}

/* "* N online: a@h, b@h" in join order. A room too big for one line of
 * CHAT_WHO_MAX bytes ends the list with ", ... and K more". */
static void
who(const struct chat_ctx *c, void *m)
{
	static const char more_fmt[] = ", ... and %u more";
	size_t limit = MIN(c->out_size, (size_t)CHAT_WHO_MAX) - 2;
	size_t len, tail = sizeof(more_fmt) + 16;
	unsigned online = c->ops->online(c->room), listed = 0;
	int k;

	k = snprintf(c->out, limit, "* %u online: ", online);
	len = (size_t)k;
	for (void *p = c->ops->first(c->room); p; p = c->ops->next(c->room, p)) {
		char host[CHAT_HOST_MAX];
		const char *sep = listed ? ", " : "";

		k = snprintf(c->out + len, limit - len, "%s%s@%s", sep, c->ops->nick(c->room, p),
			     c->ops->host(c->room, p, host));
		if (k < 0 || len + (size_t)k + tail >= limit) {
			c->out[len] = '\0';
			break;
		}
		len += (size_t)k;
		listed++;
	}
	if (listed < online)
		len += (size_t)snprintf(c->out + len, limit - len, more_fmt, online - listed);
	memcpy(c->out + len, "\r\n", 2);
	reply(c, m, len + 2);
}

static void
nick_change(const struct chat_ctx *c, void *m, const struct chat_cmd_args *a)
{
	char old[CHAT_NAME_MAX + 1], name[CHAT_NAME_MAX + 1];

	if (a->arg_len == 0) {
		chat_send_line(c, m, "! usage: /nick NAME");
		return;
	}
	if (!check_name(c, m, a->arg, a->arg_len, name))
		return;
	snprintf(old, sizeof(old), "%s", c->ops->nick(c->room, m));
	if (strcmp(old, name) != 0) {
		c->ops->rename(c->room, m, name);
		others(c, m, format(c, "* %s is now %s", old, name));
	}
	reply(c, m, format(c, "* you are now %s", name));
}

static void
private_message(const struct chat_ctx *c, void *m, const struct chat_cmd_args *a)
{
	char name[CHAT_NAME_MAX + 1];
	const char *ellipsis;
	void *to = NULL;

	if (a->arg_len == 0 || a->text_len == 0) {
		chat_send_line(c, m, "! usage: /msg NICK TEXT");
		return;
	}
	if (chat_name_valid(a->arg, a->arg_len)) {
		memcpy(name, a->arg, a->arg_len);
		name[a->arg_len] = '\0';
		to = c->ops->find(c->room, name);
	}
	if (!to) {
		int k = quote_len(a->arg, a->arg_len, &ellipsis);

		reply(c, m, format(c, "! no such user \"%.*s%s\"", k, a->arg, ellipsis));
		return;
	}
	reply(c, to,
	      format(c, "<%s> (private) %.*s", c->ops->nick(c->room, m), (int)a->text_len,
		     a->text));
}

static void
quit(const struct chat_ctx *c, void *m, const struct chat_cmd_args *a)
{
	char name[CHAT_NAME_MAX + 1];

	snprintf(name, sizeof(name), "%s", c->ops->nick(c->room, m));
	c->ops->remove(c->room, m);
	chat_announce_left(c, name, a->text, a->text_len);
	c->ops->close(c->room, m, "quit");
}

void
chat_handle_line(const struct chat_ctx *c, void *m, const char *line, size_t n)
{
	struct chat_cmd_args a;
	const char *ellipsis;
	int k;

	switch (chat_cmd_parse(line, n, &a)) {
	case CHAT_CMD_TEXT:
		others(c, m,
		       format(c, "<%s> %.*s", c->ops->nick(c->room, m), (int)a.text_len, a.text));
		break;
	case CHAT_CMD_WHO:
		who(c, m);
		break;
	case CHAT_CMD_NICK:
		nick_change(c, m, &a);
		break;
	case CHAT_CMD_ME:
		if (a.text_len == 0)
			chat_send_line(c, m, "! usage: /me TEXT");
		else
			others(c, m,
			       format(c, "* %s %.*s", c->ops->nick(c->room, m), (int)a.text_len,
				      a.text));
		break;
	case CHAT_CMD_MSG:
		private_message(c, m, &a);
		break;
	case CHAT_CMD_QUIT:
		quit(c, m, &a);
		break;
	case CHAT_CMD_HELP:
		chat_send_help(c, m);
		break;
	default:
		k = quote_len(a.word, a.word_len, &ellipsis);
		reply(c, m,
		      format(c, "! unknown command \"%.*s%s\"; try /help", k, a.word, ellipsis));
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Stream rooms.                                                       */
/* ------------------------------------------------------------------ */

/* Rate-limit state of one source address, shared by its connections and
 * kept only while one of them is in the room. */
struct chat_source {
	struct chat_bucket bucket;
	unsigned refs;
	char host[CHAT_HOST_MAX];
};

enum member_state {
	MEMBER_UNNAMED, /* waiting for a name; on the name-deadline list */
	MEMBER_NAMED,   /* in the room */
	MEMBER_GONE,    /* quit or timed out; waits for chat_room_leave() */
	_MEMBER_STATE_MAX,
};

struct chat_member {
	struct chat_member *prev, *next; /* on r->lists[state] */
	enum member_state state;
	void *ctx;
	struct chat_source *source; /* NULL without rate_limit */
	struct linebuf in;
	uint64_t deadline_usec; /* for a name */
	bool closing;           /* close requested, input ignored */
	/* On r->behind: more than CHAT_HOLD_MIN unsent when last looked at. */
	bool behind;
	struct chat_member *behind_prev, *behind_next;
	bool timed;              /* looked at since: the two below are set */
	uint64_t seen_delivered; /* its transport's delivered() then */
	uint64_t progress_usec;  /* when that last grew */
	char nick[CHAT_NAME_MAX + 1];
	char host[CHAT_HOST_MAX];
};

struct member_list {
	struct chat_member *first, *last;
	unsigned n;
};

/* Open addressing, linear probing, backward-shift deletion; at most half
 * full. Entries are found by a string key (nick or host). */
struct table {
	void **slots;
	size_t cap; /* a power of two, or 0 */
	size_t n;
	bool fold; /* keys compare case-insensitively */
	size_t key_offset;
};

struct chat_room {
	pthread_mutex_t lock;
	struct chat_settings s;
	char *listener;
	struct chat_transport t;
	struct member_list lists[_MEMBER_STATE_MAX];
	struct table nicks;   /* named members */
	struct table sources; /* struct chat_source, with rate_limit */
	uint64_t hash_key[2];
	char *san; /* sanitized input line */
	size_t san_size;
	char *out; /* reply being built */
	size_t out_size;
	bool shutdown;
	/* Named members that may hold the senders back. n_behind is also read
	 * without the lock, for the common answer "nobody". */
	struct chat_member *behind;
	_Atomic unsigned n_behind;
};

static const char *
table_key(const struct table *t, const void *e)
{
	return (const char *)e + t->key_offset;
}

static size_t
table_slot(const struct chat_room *r, const struct table *t, const char *key)
{
	uint64_t h = t->fold ? chat_name_hash(r->hash_key, key)
			     : chat_hash(r->hash_key, key, strlen(key));

	return (size_t)h & (t->cap - 1);
}

static bool
table_key_equal(const struct table *t, const char *a, const char *b)
{
	return t->fold ? chat_name_equal(a, b) : strcmp(a, b) == 0;
}

static void *
table_find(const struct chat_room *r, const struct table *t, const char *key)
{
	if (t->n == 0)
		return NULL;
	for (size_t i = table_slot(r, t, key);; i = (i + 1) & (t->cap - 1)) {
		if (!t->slots[i])
			return NULL;
		if (table_key_equal(t, table_key(t, t->slots[i]), key))
			return t->slots[i];
	}
}

static void
table_put(const struct chat_room *r, struct table *t, void *e)
{
	size_t i = table_slot(r, t, table_key(t, e));

	while (t->slots[i])
		i = (i + 1) & (t->cap - 1);
	t->slots[i] = e;
	t->n++;
}

/* Make room for `want` entries, so that inserting never fails. */
static int
table_reserve(const struct chat_room *r, struct table *t, size_t want)
{
	void **old = t->slots;
	size_t old_cap = t->cap, cap = t->cap ? t->cap : 16;

	while (cap < 2 * want)
		cap *= 2;
	if (cap == t->cap)
		return 0;
	t->slots = calloc(cap, sizeof(void *));
	if (!t->slots) {
		t->slots = old;
		return -ENOMEM;
	}
	t->cap = cap;
	t->n = 0;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i])
			table_put(r, t, old[i]);
	free(old);
	return 0;
}

static void
table_remove(const struct chat_room *r, struct table *t, void *e)
{
	size_t mask = t->cap - 1, i = table_slot(r, t, table_key(t, e)), j;

	while (t->slots[i] != e)
		i = (i + 1) & mask;
	t->n--;
	/* Shift later entries of the probe run back over the hole. */
	for (j = (i + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
		size_t home = table_slot(r, t, table_key(t, t->slots[j]));

		/* Leave it if its home lies cyclically in (i, j]. */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		t->slots[i] = t->slots[j];
		i = j;
	}
	t->slots[i] = NULL;
}

static void
list_append(struct member_list *l, struct chat_member *m)
{
	m->prev = l->last;
	m->next = NULL;
	if (l->last)
		l->last->next = m;
	else
		l->first = m;
	l->last = m;
	l->n++;
}

static void
list_unlink(struct member_list *l, struct chat_member *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		l->first = m->next;
	if (m->next)
		m->next->prev = m->prev;
	else
		l->last = m->prev;
	m->prev = m->next = NULL;
	l->n--;
}

static void
member_move(struct chat_room *r, struct chat_member *m, enum member_state to)
{
	list_unlink(&r->lists[m->state], m);
	m->state = to;
	list_append(&r->lists[to], m);
}

static void
source_unref(struct chat_room *r, struct chat_source *src)
{
	if (!src || --src->refs > 0)
		return;
	table_remove(r, &r->sources, src);
	free(src);
}

static struct chat_source *
source_ref(struct chat_room *r, const char *host, uint64_t now_usec)
{
	struct chat_source *src = table_find(r, &r->sources, host);

	if (src) {
		src->refs++;
		return src;
	}
	if (table_reserve(r, &r->sources, r->sources.n + 1) < 0)
		return NULL;
	src = calloc(1, sizeof(*src));
	if (!src)
		return NULL;
	src->refs = 1;
	snprintf(src->host, sizeof(src->host), "%s", host);
	chat_bucket_init(&src->bucket, r->s.rate_limit, now_usec);
	table_put(r, &r->sources, src);
	return src;
}

static void
behind_unlink(struct chat_room *r, struct chat_member *m)
{
	if (!m->behind)
		return;
	if (m->behind_prev)
		m->behind_prev->behind_next = m->behind_next;
	else
		r->behind = m->behind_next;
	if (m->behind_next)
		m->behind_next->behind_prev = m->behind_prev;
	m->behind_prev = m->behind_next = NULL;
	m->behind = false;
	atomic_fetch_sub_explicit(&r->n_behind, 1, memory_order_relaxed);
}

/* After output to m: list it when it fell behind. Its 1 s clock starts at
 * the next look, so a member that just fell behind holds the room. */
static void
note_behind(struct chat_room *r, struct chat_member *m)
{
	if (m->behind || m->state != MEMBER_NAMED || !r->t.unsent ||
	    r->t.unsent(m->ctx) <= CHAT_HOLD_MIN)
		return;
	m->behind = true;
	m->timed = false;
	m->behind_prev = NULL;
	m->behind_next = r->behind;
	if (r->behind)
		r->behind->behind_prev = m;
	r->behind = m;
	atomic_fetch_add_explicit(&r->n_behind, 1, memory_order_relaxed);
}

static void
member_free(struct chat_member *m)
{
	linebuf_release(&m->in);
	free(m);
}

/* The ops the shared command code calls; the lock is held. */

static void
tcp_send(void *room, void *m, const char *line, size_t len)
{
	struct chat_room *r = room;
	struct chat_member *to = m;

	r->t.send(to->ctx, line, len);
	note_behind(r, to);
}

static void
tcp_broadcast(void *room, void *except, const char *line, size_t len)
{
	struct chat_room *r = room;

	for (struct chat_member *m = r->lists[MEMBER_NAMED].first; m; m = m->next)
		if (m != except) {
			r->t.send(m->ctx, line, len);
			note_behind(r, m);
		}
}

static void *
tcp_find(void *room, const char *name)
{
	struct chat_room *r = room;

	return table_find(r, &r->nicks, name);
}

static const char *
tcp_nick(void *room, void *m)
{
	(void)room;
	return ((struct chat_member *)m)->nick;
}

static const char *
tcp_host(void *room, void *m, char buf[CHAT_HOST_MAX])
{
	(void)room;
	(void)buf;
	return ((struct chat_member *)m)->host;
}

static void *
tcp_first(void *room)
{
	return ((struct chat_room *)room)->lists[MEMBER_NAMED].first;
}

static void *
tcp_next(void *room, void *m)
{
	(void)room;
	return ((struct chat_member *)m)->next;
}

static unsigned
tcp_online(void *room)
{
	return ((struct chat_room *)room)->lists[MEMBER_NAMED].n;
}

static void
tcp_rename(void *room, void *m, const char *name)
{
	struct chat_room *r = room;
	struct chat_member *mm = m;

	table_remove(r, &r->nicks, mm);
	snprintf(mm->nick, sizeof(mm->nick), "%s", name);
	table_put(r, &r->nicks, mm);
}

static void
tcp_remove(void *room, void *m)
{
	struct chat_room *r = room;
	struct chat_member *mm = m;

	if (mm->state == MEMBER_NAMED)
		table_remove(r, &r->nicks, mm);
	behind_unlink(r, mm);
	member_move(r, mm, MEMBER_GONE);
	linebuf_release(&mm->in);
}

static void
tcp_close(void *room, void *m, const char *reason)
{
	struct chat_room *r = room;
	struct chat_member *mm = m;

	mm->closing = true;
	r->t.close(mm->ctx, reason);
}

static const struct chat_ops tcp_ops = {
	.send = tcp_send,
	.broadcast = tcp_broadcast,
	.find = tcp_find,
	.nick = tcp_nick,
	.host = tcp_host,
	.first = tcp_first,
	.next = tcp_next,
	.online = tcp_online,
	.rename = tcp_rename,
	.remove = tcp_remove,
	.close = tcp_close,
};

static struct chat_ctx
room_ctx(struct chat_room *r)
{
	return (struct chat_ctx){
		.ops = &tcp_ops,
		.room = r,
		.out = r->out,
		.out_size = r->out_size,
		.max_line = r->s.max_line,
	};
}

int
chat_room_new(struct chat_room **ret, const struct chat_settings *s,
	      const struct chat_transport *t)
{
	struct chat_room *r;

	if (!s || !t || !t->send || !t->close || !t->unsent != !t->delivered ||
	    s->max_line == 0)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->s = *s;
	r->t = *t;
	r->nicks = (struct table){ .fold = true, .key_offset = offsetof(struct chat_member, nick) };
	r->sources = (struct table){ .key_offset = offsetof(struct chat_source, host) };
	r->listener = strdup(s->listener ? s->listener : "");
	r->san_size = CHAT_SAN_SIZE(s->max_line);
	r->san = malloc(r->san_size);
	r->out_size = CHAT_OUT_SIZE(s->max_line);
	r->out = malloc(r->out_size);
	if (!r->listener || !r->san || !r->out) {
		free(r->listener);
		free(r->san);
		free(r->out);
		free(r);
		return -ENOMEM;
	}
	r->s.listener = r->listener;
	chat_hash_key(r->hash_key);
	pthread_mutex_init(&r->lock, NULL);
	*ret = r;
	return 0;
}

struct chat_room *
chat_room_free(struct chat_room *r)
{
	if (!r)
		return NULL;
	for (int i = 0; i < _MEMBER_STATE_MAX; i++)
		while (r->lists[i].first) {
			struct chat_member *m = r->lists[i].first;

			list_unlink(&r->lists[i], m);
			member_free(m);
		}
	for (size_t i = 0; i < r->sources.cap; i++)
		free(r->sources.slots[i]);
	free(r->sources.slots);
	free(r->nicks.slots);
	free(r->listener);
	free(r->san);
	free(r->out);
	pthread_mutex_destroy(&r->lock);
	free(r);
	return NULL;
}

struct chat_member *
chat_room_join(struct chat_room *r, void *ctx, const char *host, uint64_t now_usec)
{
	struct chat_ctx c = room_ctx(r);
	struct member_list *waiting = &r->lists[MEMBER_UNNAMED];
	struct chat_member *m;
	unsigned members = 0;

	pthread_mutex_lock(&r->lock);
	for (int i = 0; i < _MEMBER_STATE_MAX; i++)
		members += r->lists[i].n;
	m = calloc(1, sizeof(*m));
	/* Reserve the name slot now, so that naming never runs out of memory. */
	if (!m || table_reserve(r, &r->nicks, (size_t)members + 1) < 0)
		goto fail;
	m->ctx = ctx;
	snprintf(m->host, sizeof(m->host), "%s", host ? host : "?");
	linebuf_init(&m->in, r->s.max_line);
	if (r->s.rate_limit > 0) {
		m->source = source_ref(r, m->host, now_usec);
		if (!m->source)
			goto fail;
	}

	if (r->shutdown) {
		m->state = MEMBER_GONE;
		list_append(&r->lists[MEMBER_GONE], m);
		chat_send_line(&c, m, "* server shutting down");
		goto out;
	}
	/* Keep the list sorted by deadline even if callers on different
	 * threads pass times slightly out of order. */
	m->deadline_usec = now_usec + CHAT_NAME_TIMEOUT_USEC;
	if (waiting->last && waiting->last->deadline_usec > m->deadline_usec)
		m->deadline_usec = waiting->last->deadline_usec;
	m->state = MEMBER_UNNAMED;
	list_append(waiting, m);
	chat_send_welcome(&c, m, r->listener);
out:
	pthread_mutex_unlock(&r->lock);
	return m;
fail:
	free(m);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void
unnamed_line(struct chat_room *r, struct chat_member *m, const char *line, size_t n)
{
	struct chat_ctx c = room_ctx(r);
	struct chat_cmd_args a;

	/* Before a name, lines are name attempts; only /quit and /help are
	 * understood as commands. */
	switch (chat_cmd_parse(line, n, &a)) {
	case CHAT_CMD_QUIT:
		tcp_remove(r, m);
		tcp_close(r, m, "quit");
		return;
	case CHAT_CMD_HELP:
		chat_send_help(&c, m);
		return;
	default:
		break;
	}
	if (!chat_name_attempt(&c, m, line, n, m->nick)) {
		m->nick[0] = '\0';
		return;
	}
	member_move(r, m, MEMBER_NAMED);
	table_put(r, &r->nicks, m);
	chat_announce_join(&c, m);
}

static void
member_line(struct chat_room *r, struct chat_member *m, const uint8_t *p, size_t n,
	    uint64_t now_usec)
{
	struct chat_ctx c = room_ctx(r);
	size_t len = sanitize_line(p, n, r->san, r->san_size);

	if (chat_line_blank(r->san, len))
		return;
	if (m->source && !chat_bucket_take(&m->source->bucket, r->s.rate_limit, now_usec)) {
		chat_send_line(&c, m, "! slow down");
		return;
	}
	if (m->state == MEMBER_UNNAMED)
		unnamed_line(r, m, r->san, len);
	else
		chat_handle_line(&c, m, r->san, len);
}

void
chat_member_input(struct chat_room *r, struct chat_member *m, const uint8_t *p, size_t n,
		  uint64_t now_usec)
{
	struct chat_ctx c = room_ctx(r);

	pthread_mutex_lock(&r->lock);
	while (!r->shutdown && m->state != MEMBER_GONE && !m->closing) {
		const uint8_t *line;
		size_t len;
		int k;

		k = linebuf_next(&m->in, &p, &n, &line, &len);
		if (k == LINEBUF_MORE)
			break;
		if (k == LINEBUF_LINE)
			member_line(r, m, line, len, now_usec);
		else if (k == LINEBUF_TOO_LONG)
			chat_send_too_long(&c, m);
		else {
			/* Out of memory for a partial line: let the client go.
			 * A named one leaves through chat_room_leave() as usual. */
			if (m->state == MEMBER_UNNAMED)
				tcp_remove(r, m);
			linebuf_release(&m->in);
			tcp_close(r, m, "out of memory");
		}
	}
	pthread_mutex_unlock(&r->lock);
}

void
chat_room_leave(struct chat_room *r, struct chat_member *m)
{
	struct chat_ctx c = room_ctx(r);

	if (!m)
		return;
	pthread_mutex_lock(&r->lock);
	behind_unlink(r, m);
	if (m->state == MEMBER_NAMED) {
		table_remove(r, &r->nicks, m);
		list_unlink(&r->lists[MEMBER_NAMED], m);
		if (!r->shutdown)
			chat_announce_left(&c, m->nick, NULL, 0);
	} else
		list_unlink(&r->lists[m->state], m);
	source_unref(r, m->source);
	member_free(m);
	pthread_mutex_unlock(&r->lock);
}

void
chat_room_shutdown(struct chat_room *r)
{
	struct chat_ctx c = room_ctx(r);

	pthread_mutex_lock(&r->lock);
	if (!r->shutdown) {
		r->shutdown = true;
		for (struct chat_member *m = r->lists[MEMBER_UNNAMED].first; m; m = m->next)
			chat_send_line(&c, m, "* server shutting down");
		for (struct chat_member *m = r->lists[MEMBER_NAMED].first; m; m = m->next)
			chat_send_line(&c, m, "* server shutting down");
	}
	pthread_mutex_unlock(&r->lock);
}

uint64_t
chat_room_tick(struct chat_room *r, uint64_t now_usec)
{
	struct chat_ctx c = room_ctx(r);
	struct member_list *waiting = &r->lists[MEMBER_UNNAMED];
	uint64_t next;

	pthread_mutex_lock(&r->lock);
	while (!r->shutdown && waiting->first && waiting->first->deadline_usec <= now_usec) {
		struct chat_member *m = waiting->first;

		chat_send_line(&c, m, "! no name given within 30 s");
		tcp_remove(r, m);
		tcp_close(r, m, "name timeout");
	}
	next = !r->shutdown && waiting->first ? waiting->first->deadline_usec : 0;
	pthread_mutex_unlock(&r->lock);
	return next;
}

unsigned
chat_room_online(struct chat_room *r)
{
	unsigned n;

	pthread_mutex_lock(&r->lock);
	n = r->lists[MEMBER_NAMED].n;
	pthread_mutex_unlock(&r->lock);
	return n;
}

bool
chat_room_senders_wait(struct chat_room *r, uint64_t now_usec)
{
	struct chat_member *m, *next;
	bool wait = false;

	if (atomic_load_explicit(&r->n_behind, memory_order_relaxed) == 0)
		return false;
	pthread_mutex_lock(&r->lock);
	for (m = r->behind; m && !r->shutdown; m = next) {
		uint64_t done;

		next = m->behind_next;
		if (r->t.unsent(m->ctx) <= CHAT_HOLD_MIN) {
			behind_unlink(r, m);
			continue;
		}
		done = r->t.delivered(m->ctx);
		if (!m->timed || done != m->seen_delivered) {
			m->timed = true;
			m->seen_delivered = done;
			m->progress_usec = now_usec;
		}
		/* Other threads may pass a slightly older time. */
		if (now_usec < m->progress_usec + CHAT_HOLD_USEC)
			wait = true;
	}
	pthread_mutex_unlock(&r->lock);
	return wait;
}
