#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "chat-internal.h"
#include "stats.h"
#include "util.h"

/* The chat protocol of SPEC section 5 that the stream rooms (chat-room.c)
 * and the datagram rooms (chat-udp.c) share: name rules, command parsing,
 * the rate bucket, the keyed hash, and the lines that naming and the
 * commands answer with. It keeps no state: members are opaque handles of
 * the room that calls, and every answer goes out through that room's
 * chat_ops (chat-internal.h). */

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

/* netechod_chat_messages_total: a line relayed, once however many get it. */
static void
count_message(const struct chat_ctx *c)
{
	if (c->stats)
		atomic_fetch_add_explicit(&c->stats->chat_messages, 1, memory_order_relaxed);
}

void
chat_count_rate_limited(struct listener_stats *stats)
{
	if (stats)
		atomic_fetch_add_explicit(&stats->refused[REFUSE_RATE_LIMIT], 1,
					  memory_order_relaxed);
}

void
chat_count_members(struct listener_stats *stats, unsigned n, bool as_conns)
{
	if (!stats)
		return;
	atomic_store_explicit(&stats->chat_members, n, memory_order_relaxed);
	if (as_conns)
		atomic_store_explicit(&stats->conns_now, n, memory_order_relaxed);
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
chat_announce_joined(const struct chat_ctx *c, void *m)
{
	char host[CHAT_HOST_MAX];

	others(c, m,
	       format(c, "* %s@%s joined; %u online", c->ops->nick(c->room, m),
		      c->ops->host(c->room, m, host), c->ops->online(c->room)));
}

void
chat_announce_join(const struct chat_ctx *c, void *m)
{
	chat_announce_self(c, m);
	chat_announce_joined(c, m);
}

void
chat_announce_renamed(const struct chat_ctx *c, void *m, const char *old, const char *name)
{
	others(c, m, format(c, "* %s is now %s", old, name));
}

void
chat_relay(const struct chat_ctx *c, void *except, bool me, const char *name, const char *text,
	   size_t len)
{
	count_message(c);
	if (me)
		others(c, except, format(c, "* %s %.*s", name, (int)len, text));
	else
		others(c, except, format(c, "<%s> %.*s", name, (int)len, text));
}

void
chat_send_private(const struct chat_ctx *c, void *to, const char *from, const char *text,
		  size_t len)
{
	reply(c, to, format(c, "<%s> (private) %.*s", from, (int)len, text));
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
	/* A room shared with other instances claims the name first, and
	 * finishes with chat_nick_done() once it has it. */
	snprintf(old, sizeof(old), "%s", c->ops->nick(c->room, m));
	if (c->ops->claim_nick && strcmp(old, name) != 0 && c->ops->claim_nick(c->room, m, name))
		return;
	chat_nick_done(c, m, name);
}

void
chat_nick_done(const struct chat_ctx *c, void *m, const char *name)
{
	char old[CHAT_NAME_MAX + 1];

	snprintf(old, sizeof(old), "%s", c->ops->nick(c->room, m));
	if (strcmp(old, name) != 0) {
		c->ops->rename(c->room, m, name);
		chat_announce_renamed(c, m, old, name);
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
	count_message(c);
	if (c->ops->send_private &&
	    c->ops->send_private(c->room, m, to, a->text, a->text_len))
		return;
	chat_send_private(c, to, c->ops->nick(c->room, m), a->text, a->text_len);
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
		chat_relay(c, m, false, c->ops->nick(c->room, m), a.text, a.text_len);
		break;
	case CHAT_CMD_WHO:
		who(c, m);
		break;
	case CHAT_CMD_NICK:
		nick_change(c, m, &a);
		break;
	case CHAT_CMD_ME:
		if (a.text_len == 0) {
			chat_send_line(c, m, "! usage: /me TEXT");
		} else {
			chat_relay(c, m, true, c->ops->nick(c->room, m), a.text, a.text_len);
		}
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

/* ---- events of other instances (SPEC 12) ---- */

/* The member of instance named name (len bytes), or NULL. */
static void *
remote_find(const struct chat_ctx *c, const struct chat_remote_ops *r, const char *name,
	    size_t len, const char *instance)
{
	char n[CHAT_NAME_MAX + 1];
	void *m;

	if (len > CHAT_NAME_MAX)
		return NULL;
	memcpy(n, name, len);
	n[len] = '\0';
	m = c->ops->find(c->room, n);
	if (!m || !r->is_remote(c->room, m) || strcmp(r->instance(c->room, m), instance) != 0)
		return NULL;
	return m;
}

static void
remote_left(const struct chat_ctx *c, const struct chat_remote_ops *r, void *m,
	    const char *reason, size_t len)
{
	char name[CHAT_NAME_MAX + 1];

	snprintf(name, sizeof(name), "%s", c->ops->nick(c->room, m));
	r->forget(c->room, m);
	chat_announce_left(c, name, reason, len);
}

static void
remote_join(const struct chat_ctx *c, const struct chat_remote_ops *r,
	    const struct chat_wire_event *ev)
{
	char name[CHAT_NAME_MAX + 1];
	void *m;

	if (ev->a_len > CHAT_NAME_MAX)
		return;
	memcpy(name, ev->a, ev->a_len);
	name[ev->a_len] = '\0';
	m = c->ops->find(c->room, name);
	if (m) {
		/* A snapshot repeats what we know; a name that moved to
		 * another instance follows. One of ours: the backend gave
		 * the name to us. */
		if (r->is_remote(c->room, m))
			r->update(c->room, m, ev->b, ev->b_len, ev->instance);
		return;
	}
	m = r->add(c->room, name, ev->b, ev->b_len, ev->instance);
	if (m)
		chat_announce_joined(c, m);
}

static void
remote_nick(const struct chat_ctx *c, const struct chat_remote_ops *r,
	    const struct chat_wire_event *ev)
{
	void *m = remote_find(c, r, ev->a, ev->a_len, ev->instance), *other;
	char old[CHAT_NAME_MAX + 1], name[CHAT_NAME_MAX + 1];

	if (!m || ev->b_len > CHAT_NAME_MAX)
		return;
	memcpy(name, ev->b, ev->b_len);
	name[ev->b_len] = '\0';
	other = c->ops->find(c->room, name);
	if (other && other != m) {
		if (!r->is_remote(c->room, other))
			return; /* ours: the backend gave it to us */
		r->forget(c->room, other);
	}
	snprintf(old, sizeof(old), "%s", c->ops->nick(c->room, m));
	r->rename(c->room, m, name);
	if (strcmp(old, name) != 0)
		chat_announce_renamed(c, m, old, name);
}

void
chat_remote_event(const struct chat_ctx *c, const struct chat_remote_ops *r,
		  const struct chat_wire_event *ev, char *san, size_t san_size)
{
	char name[CHAT_NAME_MAX + 1];
	size_t len = 0;
	void *m;

	if (ev->text)
		len = sanitize_line((const uint8_t *)ev->text, ev->text_len, san, san_size);
	switch (ev->type) {
	case CHAT_WIRE_JOIN:
		remote_join(c, r, ev);
		break;
	case CHAT_WIRE_LEAVE:
		m = remote_find(c, r, ev->a, ev->a_len, ev->instance);
		if (m)
			remote_left(c, r, m, san, len);
		break;
	case CHAT_WIRE_NICK:
		remote_nick(c, r, ev);
		break;
	case CHAT_WIRE_MSG:
	case CHAT_WIRE_ME:
		if (ev->a_len > CHAT_NAME_MAX || chat_line_blank(san, len))
			break;
		memcpy(name, ev->a, ev->a_len);
		name[ev->a_len] = '\0';
		chat_relay(c, NULL, ev->type == CHAT_WIRE_ME, name, san, len);
		break;
	case CHAT_WIRE_PRIVMSG:
		if (ev->a_len > CHAT_NAME_MAX || ev->b_len > CHAT_NAME_MAX)
			break;
		memcpy(name, ev->b, ev->b_len);
		name[ev->b_len] = '\0';
		m = c->ops->find(c->room, name);
		if (!m || r->is_remote(c->room, m))
			break;
		memcpy(name, ev->a, ev->a_len);
		name[ev->a_len] = '\0';
		chat_send_private(c, m, name, san, len);
		break;
	default:
		break;
	}
}

void
chat_remote_lost(const struct chat_ctx *c, const struct chat_remote_ops *r,
		 const char *instance, const char *name)
{
	void *m = remote_find(c, r, name, strlen(name), instance);

	if (m)
		remote_left(c, r, m, "instance lost", strlen("instance lost"));
}

void
chat_remote_evict(const struct chat_ctx *c, const struct chat_remote_ops *r, const char *name)
{
	void *m = c->ops->find(c->room, name);

	if (m && r->is_remote(c->room, m))
		r->forget(c->room, m);
}

bool
chat_next_free_name(const struct chat_ctx *c, const char *base, unsigned *suffix,
		    char ret[CHAT_NAME_MAX + 1])
{
	while (++*suffix < 1000) {
		char tail[8];
		int k = snprintf(tail, sizeof(tail), "-%u", *suffix);
		int n = (int)MIN(strlen(base), (size_t)(CHAT_NAME_MAX - k));

		snprintf(ret, CHAT_NAME_MAX + 1, "%.*s%s", n, base, tail);
		if (!c->ops->find(c->room, ret))
			return true;
	}
	return false;
}
