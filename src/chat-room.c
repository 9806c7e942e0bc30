#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend-url.h"
#include "chat-backend.h"
#include "chat-internal.h"
#include "chat-wire.h"
#include "chat.h"
#include "linebuf.h"
#include "sanitize.h"
#include "util.h"

/* The stream (TCP) room of chat.h: members, their name deadlines, the
 * nick and rate-limit tables, the hold-back list and the room's lock.
 * What members say is handled by the shared protocol code (chat-proto.c)
 * through tcp_ops. */

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
	MEMBER_REMOTE,  /* a member of another instance (backend): no ctx */
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
	/* Backend: a claim of claim_name is under way (token), for the
	 * member's first name, a /nick, or again after an outage (reclaim,
	 * then suffix is the NAME-N tried); its input waits in held. */
	bool claiming;
	bool reclaim;
	unsigned suffix;
	uint64_t token;
	char claim_name[CHAT_NAME_MAX + 1];
	uint8_t *held;
	size_t held_len;
	/* MEMBER_REMOTE: its instance. */
	char instance[CHAT_WIRE_INSTANCE_LEN + 1];
};

/* Input a member sends while its name is claimed waits here, up to this. */
#define CHAT_HELD_MAX (64 * 1024)
/* Members of other instances the room remembers (the backend bounds its
 * own table the same way). */
#define CHAT_REMOTE_MAX 65536

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
	/* While one member's input is handled (chat_member_input), what it
	 * relays to everyone else is gathered here and goes to each of them
	 * as one send when the input is done: a read that brought 100 lines
	 * costs each receiver one write, not 100. Anything else the room
	 * sends, to anyone, sends the batch first, so every member sees the
	 * room's lines in the order they happened. */
	char *batch;
	size_t batch_len;
	struct chat_member *batch_from; /* NULL: no input is being handled */
	/* With a backend, the lines of one burst of other instances' events
	 * are gathered the same way, for every member (batch_from NULL), until
	 * the backend says the burst is over (b_flush). Whatever else happens
	 * in the room meanwhile sends the batch first, as above. */
	bool remote_batch;
	/* SPEC 12, with a backend: events of other instances are formatted
	 * in rsan/rout, large enough for any line the wire carries. */
	struct chat_backend *backend;
	bool backend_up;
	/* The backend said up or down once: until then a newcomer's name
	 * waits for its first connection (token 0), not refused. */
	bool backend_known;
	bool leaves_sent; /* our members' leaves are published (stopping) */
	uint64_t next_token;
	const char *quit_reason; /* of the /quit being handled */
	size_t quit_reason_len;
	char *rsan;
	size_t rsan_size;
	char *rout;
	size_t rout_size;
};

/* Large enough for a read's worth of relayed lines. */
#define CHAT_BATCH_SIZE (16 * 1024)

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
	free(m->held);
	free(m);
}

/* Backend helpers; the lock is held. */

static void
publish(struct chat_room *r, enum chat_wire_type t, const char *a, const char *b,
	const char *text, size_t len)
{
	/* Down or full: the event is lost, as SPEC 12 says it may be. */
	if (r->backend && !r->leaves_sent)
		(void)chat_backend_publish(r->backend, t, a, b, text, len);
}

/* A member of ours with a name leaves the room for everyone. */
static void
publish_leave(struct chat_room *r, struct chat_member *m, const char *reason, size_t len)
{
	if (!r->backend || r->leaves_sent)
		return;
	publish(r, CHAT_WIRE_LEAVE, m->nick, NULL, reason, len);
	chat_backend_release(r->backend, m->nick);
}

/* Give up a claim under way; its claim_done() then finds nobody. */
static void
unclaim(struct chat_room *r, struct chat_member *m)
{
	if (!m->claiming)
		return;
	m->claiming = false;
	if (r->backend && m->token != 0)
		chat_backend_release(r->backend, m->claim_name);
	free(m->held);
	m->held = NULL;
	m->held_len = 0;
}

/* Claim name for m; its input waits until claim_done(). -EEXIST: taken
 * (or being claimed) through this instance; other errors: unavailable. */
static int
claim(struct chat_room *r, struct chat_member *m, const char *name)
{
	uint64_t token = ++r->next_token;
	int k;

	if (!r->backend_up && !r->backend_known && m->state == MEMBER_UNNAMED) {
		m->claiming = true;
		m->token = 0;
		snprintf(m->claim_name, sizeof(m->claim_name), "%s", name);
		return 0;
	}
	if (!r->backend_up)
		return -ENOTCONN;
	k = chat_backend_claim(r->backend, name, m->host, token);
	if (k < 0)
		return k;
	m->claiming = true;
	m->token = token;
	snprintf(m->claim_name, sizeof(m->claim_name), "%s", name);
	return 0;
}

/* The ops the shared command code calls; the lock is held. */

static void
send_to_others(struct chat_room *r, const struct chat_member *except, const char *p, size_t len)
{
	for (struct chat_member *m = r->lists[MEMBER_NAMED].first; m; m = m->next)
		if (m != except) {
			r->t.send(m->ctx, p, len);
			note_behind(r, m);
		}
}

static void
batch_flush(struct chat_room *r)
{
	size_t len = r->batch_len;

	if (len == 0)
		return;
	r->batch_len = 0;
	send_to_others(r, r->batch_from, r->batch, len);
}

/* m's input is handled from here on: what it relays is gathered for the
 * others. A burst of other instances' lines still gathered goes first. */
static void
local_batch_begin(struct chat_room *r, struct chat_member *m)
{
	batch_flush(r);
	r->remote_batch = false;
	r->batch_from = m;
}

static void
tcp_send(void *room, void *m, const char *line, size_t len)
{
	struct chat_room *r = room;
	struct chat_member *to = m;

	batch_flush(r);
	r->t.send(to->ctx, line, len);
	note_behind(r, to);
}

static void
tcp_broadcast(void *room, void *except, const char *line, size_t len)
{
	struct chat_room *r = room;

	if (((r->batch_from && except == r->batch_from) || (r->remote_batch && !except)) &&
	    len <= CHAT_BATCH_SIZE) {
		if (r->batch_len + len > CHAT_BATCH_SIZE)
			batch_flush(r);
		memcpy(r->batch + r->batch_len, line, len);
		r->batch_len += len;
		return;
	}
	batch_flush(r);
	send_to_others(r, except, line, len);
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

/* Our members, then those of other instances. */
static void *
tcp_next(void *room, void *m)
{
	struct chat_member *mm = m;

	if (mm->next || mm->state != MEMBER_NAMED)
		return mm->next;
	return ((struct chat_room *)room)->lists[MEMBER_REMOTE].first;
}

static void *
tcp_first(void *room)
{
	struct chat_room *r = room;

	return r->lists[MEMBER_NAMED].first ? r->lists[MEMBER_NAMED].first
					    : r->lists[MEMBER_REMOTE].first;
}

static unsigned
tcp_online(void *room)
{
	struct chat_room *r = room;

	return r->lists[MEMBER_NAMED].n + r->lists[MEMBER_REMOTE].n;
}

static void
tcp_rename(void *room, void *m, const char *name)
{
	struct chat_room *r = room;
	struct chat_member *mm = m;
	char old[CHAT_NAME_MAX + 1];

	snprintf(old, sizeof(old), "%s", mm->nick);
	table_remove(r, &r->nicks, mm);
	snprintf(mm->nick, sizeof(mm->nick), "%s", name);
	table_put(r, &r->nicks, mm);
	if (r->backend && mm->state == MEMBER_NAMED) {
		publish(r, CHAT_WIRE_NICK, old, name, NULL, 0);
		if (!chat_name_equal(old, name))
			chat_backend_release(r->backend, old);
	}
}

static void
tcp_remove(void *room, void *m)
{
	struct chat_room *r = room;
	struct chat_member *mm = m;

	batch_flush(r);
	if (mm->state == MEMBER_NAMED) {
		table_remove(r, &r->nicks, mm);
		publish_leave(r, mm, r->quit_reason, r->quit_reason_len);
	}
	unclaim(r, mm);
	behind_unlink(r, mm);
	member_move(r, mm, MEMBER_GONE);
	linebuf_release(&mm->in);
}

static void
tcp_close(void *room, void *m, const char *reason)
{
	struct chat_room *r = room;
	struct chat_member *mm = m;

	batch_flush(r);
	mm->closing = true;
	r->t.close(mm->ctx, reason);
}

static void tell_taken(struct chat_room *r, struct chat_member *m, const char *name);
static void tell_unavailable(struct chat_room *r, struct chat_member *m, bool close);

static bool
tcp_claim_nick(void *room, void *m, const char *name)
{
	struct chat_room *r = room;
	struct chat_member *mm = m;
	int k;

	if (!r->backend)
		return false;
	/* Another case of one's own name: the claim is ours already. */
	if (chat_name_equal(mm->nick, name))
		return false;
	/* Its own name is being claimed again after an outage. */
	k = mm->claiming ? -EBUSY : claim(r, mm, name);
	if (k == -EEXIST)
		tell_taken(r, mm, name);
	else if (k < 0)
		tell_unavailable(r, mm, false);
	return true;
}

static bool
tcp_send_private(void *room, void *from, void *to, const char *text, size_t len)
{
	struct chat_room *r = room;
	struct chat_member *t = to, *f = from;

	if (t->state != MEMBER_REMOTE)
		return false;
	if (r->backend)
		(void)chat_backend_privmsg(r->backend, t->instance, f->nick, t->nick, text, len);
	return true;
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
	.claim_nick = tcp_claim_nick,
	.send_private = tcp_send_private,
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
		.stats = r->s.stats,
	};
}

/* Events of other instances are formatted in buffers that hold any line
 * the wire carries, and are not counted as messages of ours. */
static struct chat_ctx
remote_ctx(struct chat_room *r)
{
	struct chat_ctx c = room_ctx(r);

	c.out = r->rout;
	c.out_size = r->rout_size;
	c.stats = NULL;
	return c;
}

static uint64_t
mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void
tell_taken(struct chat_room *r, struct chat_member *m, const char *name)
{
	struct chat_ctx c = room_ctx(r);

	chat_send_taken(&c, m, name);
}

/* SPEC 12: the backend cannot be asked; a newcomer is let go. */
static void
tell_unavailable(struct chat_room *r, struct chat_member *m, bool close)
{
	struct chat_ctx c = room_ctx(r);

	chat_send_line(&c, m, "! room unavailable, try again later");
	if (!close)
		return;
	if (m->state != MEMBER_GONE)
		tcp_remove(r, m);
	tcp_close(r, m, "room unavailable");
}

static void
member_detach(struct chat_room *r, struct chat_member *m)
{
	table_remove(r, &r->nicks, m);
	list_unlink(&r->lists[m->state], m);
	member_free(m);
}

/* ---- the roster of other instances' members, for chat_remote_*() ---- */

static bool
tcp_is_remote(void *room, void *m)
{
	(void)room;
	return ((struct chat_member *)m)->state == MEMBER_REMOTE;
}

static const char *
tcp_instance(void *room, void *m)
{
	(void)room;
	return ((struct chat_member *)m)->instance;
}

static void
tcp_remote_update(void *room, void *m, const char *host, size_t host_len,
		  const char *instance)
{
	struct chat_member *mm = m;

	(void)room;
	snprintf(mm->instance, sizeof(mm->instance), "%s", instance);
	snprintf(mm->host, sizeof(mm->host), "%.*s", (int)host_len, host);
}

static void *
tcp_remote_add(void *room, const char *name, const char *host, size_t host_len,
	       const char *instance)
{
	struct chat_room *r = room;
	struct chat_member *m;

	if (r->lists[MEMBER_REMOTE].n >= CHAT_REMOTE_MAX ||
	    table_reserve(r, &r->nicks, r->nicks.n + 1) < 0)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->state = MEMBER_REMOTE;
	snprintf(m->nick, sizeof(m->nick), "%s", name);
	tcp_remote_update(r, m, host, host_len, instance);
	list_append(&r->lists[MEMBER_REMOTE], m);
	table_put(r, &r->nicks, m);
	return m;
}

static void
tcp_remote_forget(void *room, void *m)
{
	member_detach(room, m);
}

static void
tcp_remote_rename(void *room, void *m, const char *name)
{
	struct chat_room *r = room;
	struct chat_member *mm = m;

	table_remove(r, &r->nicks, mm);
	snprintf(mm->nick, sizeof(mm->nick), "%s", name);
	table_put(r, &r->nicks, mm);
}

static const struct chat_remote_ops tcp_remote_ops = {
	.is_remote = tcp_is_remote,
	.instance = tcp_instance,
	.add = tcp_remote_add,
	.update = tcp_remote_update,
	.forget = tcp_remote_forget,
	.rename = tcp_remote_rename,
};

static void
evict_remote(struct chat_room *r, const char *name)
{
	struct chat_ctx c = room_ctx(r);

	chat_remote_evict(&c, &tcp_remote_ops, name);
}

static struct chat_member *
find_claiming(struct chat_room *r, uint64_t token)
{
	static const enum member_state states[] = { MEMBER_UNNAMED, MEMBER_NAMED };

	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		for (struct chat_member *m = r->lists[states[i]].first; m; m = m->next)
			if (m->claiming && m->token == token)
				return m;
	return NULL;
}

static void feed(struct chat_room *r, struct chat_member *m, const uint8_t *p, size_t n,
		 uint64_t now_usec);

/* The claim is answered: what m sent meanwhile is handled now. */
static void
resume(struct chat_room *r, struct chat_member *m)
{
	uint8_t *p = m->held;
	size_t n = m->held_len;

	m->held = NULL;
	m->held_len = 0;
	if (p && m->state != MEMBER_GONE && !m->closing) {
		local_batch_begin(r, m);
		feed(r, m, p, n, mono_usec());
		batch_flush(r);
		r->batch_from = NULL;
	}
	free(p);
}

/* After an outage: m's name again, or the first free NAME-N. */
static void
reclaim_done(struct chat_room *r, struct chat_member *m, int result)
{
	struct chat_ctx c = room_ctx(r);
	char name[CHAT_NAME_MAX + 1];

	while (result == -EEXIST) {
		if (!chat_next_free_name(&c, m->nick, &m->suffix, name))
			break;
		result = claim(r, m, name);
		if (result == 0)
			return; /* answered later */
	}
	m->reclaim = false;
	if (result != 0)
		return; /* down again: the next up() tries again */
	if (strcmp(m->claim_name, m->nick) != 0) {
		char old[CHAT_NAME_MAX + 1];

		snprintf(old, sizeof(old), "%s", m->nick);
		/* Those that still list us under the old name forget it. */
		publish(r, CHAT_WIRE_LEAVE, old, NULL, NULL, 0);
		evict_remote(r, m->claim_name);
		table_remove(r, &r->nicks, m);
		snprintf(m->nick, sizeof(m->nick), "%s", m->claim_name);
		table_put(r, &r->nicks, m);
		chat_announce_renamed(&c, m, old, m->nick);
		tcp_send(r, m, c.out,
			 (size_t)snprintf(c.out, c.out_size, "* you are now %s\r\n", m->nick));
	}
	publish(r, CHAT_WIRE_JOIN, m->nick, m->host, NULL, 0);
}

static void
b_claim_done(void *ud, uint64_t token, int result)
{
	struct chat_room *r = ud;
	struct chat_ctx c = room_ctx(r);
	struct chat_member *m;

	pthread_mutex_lock(&r->lock);
	m = find_claiming(r, token);
	if (!m || r->shutdown) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	m->claiming = false;
	if (m->reclaim) {
		reclaim_done(r, m, result);
	} else if (m->state == MEMBER_UNNAMED) {
		if (result == 0) {
			evict_remote(r, m->claim_name);
			snprintf(m->nick, sizeof(m->nick), "%s", m->claim_name);
			member_move(r, m, MEMBER_NAMED);
			table_put(r, &r->nicks, m);
			chat_announce_join(&c, m);
			publish(r, CHAT_WIRE_JOIN, m->nick, m->host, NULL, 0);
		} else if (result == -EEXIST)
			tell_taken(r, m, m->claim_name);
		else
			tell_unavailable(r, m, true);
	} else {
		/* /nick */
		if (result == 0) {
			evict_remote(r, m->claim_name);
			chat_nick_done(&c, m, m->claim_name);
		} else if (result == -EEXIST)
			tell_taken(r, m, m->claim_name);
		else
			tell_unavailable(r, m, false);
	}
	if (!m->claiming)
		resume(r, m);
	chat_count_members(r->s.stats, r->lists[MEMBER_NAMED].n, false);
	pthread_mutex_unlock(&r->lock);
}

/* Names given before the backend's first word: claimed now that it is
 * up, or refused now that it is down. */
static void
deferred_claims(struct chat_room *r)
{
	struct chat_member *m, *next;

	for (m = r->lists[MEMBER_UNNAMED].first; m && !r->shutdown; m = next) {
		char name[CHAT_NAME_MAX + 1];
		int k;

		next = m->next;
		if (!m->claiming || m->token != 0)
			continue;
		m->claiming = false;
		snprintf(name, sizeof(name), "%s", m->claim_name);
		k = claim(r, m, name);
		if (k == 0)
			continue;
		if (k == -EEXIST)
			tell_taken(r, m, name);
		else
			tell_unavailable(r, m, true);
		resume(r, m);
	}
}

static void
b_up(void *ud, bool reconnected)
{
	struct chat_room *r = ud;
	struct chat_ctx c = room_ctx(r);

	pthread_mutex_lock(&r->lock);
	r->backend_up = true;
	r->backend_known = true;
	deferred_claims(r);
	for (struct chat_member *m = r->lists[MEMBER_NAMED].first; m && !r->shutdown;
	     m = m->next) {
		if (reconnected)
			chat_send_line(&c, m,
				       "* reconnected; messages sent while disconnected are lost");
		if (m->claiming)
			continue;
		m->reclaim = true;
		m->suffix = 1;
		if (claim(r, m, m->nick) < 0)
			m->reclaim = false;
	}
	pthread_mutex_unlock(&r->lock);
	if (r->s.backend_state)
		r->s.backend_state(r->s.backend_ud, true, 0, NULL);
}

static void
b_down(void *ud, int error, const char *reason)
{
	struct chat_room *r = ud;

	pthread_mutex_lock(&r->lock);
	r->backend_up = false;
	r->backend_known = true;
	deferred_claims(r);
	pthread_mutex_unlock(&r->lock);
	if (r->s.backend_state)
		r->s.backend_state(r->s.backend_ud, false, error, reason);
}

static void
b_event(void *ud, const struct chat_wire_event *ev)
{
	struct chat_room *r = ud;
	struct chat_ctx c = remote_ctx(r);

	pthread_mutex_lock(&r->lock);
	if (!r->shutdown) {
		/* Relays go to the batch until b_flush: a burst of 100 lines
		 * from Redis costs each member one write, not 100. */
		r->remote_batch = r->batch_from == NULL;
		chat_remote_event(&c, &tcp_remote_ops, ev, r->rsan, r->rsan_size);
	}
	pthread_mutex_unlock(&r->lock);
}

static void
b_lost(void *ud, const char *instance, const char *name)
{
	struct chat_room *r = ud;
	struct chat_ctx c = remote_ctx(r);

	pthread_mutex_lock(&r->lock);
	if (!r->shutdown)
		chat_remote_lost(&c, &tcp_remote_ops, instance, name);
	pthread_mutex_unlock(&r->lock);
}

/* The burst of events b_event gathered is over: send it. */
static void
b_flush(void *ud)
{
	struct chat_room *r = ud;

	pthread_mutex_lock(&r->lock);
	if (r->remote_batch) {
		batch_flush(r);
		r->remote_batch = false;
	}
	pthread_mutex_unlock(&r->lock);
}

static const struct chat_backend_ops backend_ops = {
	.up = b_up,
	.down = b_down,
	.event = b_event,
	.claim_done = b_claim_done,
	.lost = b_lost,
	.flush = b_flush,
};

/* Our members' leaves, before the backend stops (SPEC 12: the others
 * hear each of them leave). */
static void
publish_all_leaves(struct chat_room *r)
{
	if (!r->backend || r->leaves_sent)
		return;
	for (struct chat_member *m = r->lists[MEMBER_NAMED].first; m; m = m->next)
		publish_leave(r, m, NULL, 0);
	for (int i = 0; i < _MEMBER_STATE_MAX; i++)
		for (struct chat_member *m = r->lists[i].first; m; m = m->next)
			unclaim(r, m);
	r->leaves_sent = true;
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
	r->batch = malloc(CHAT_BATCH_SIZE);
	if (!r->listener || !r->san || !r->out || !r->batch) {
		free(r->listener);
		free(r->san);
		free(r->out);
		free(r->batch);
		free(r);
		return -ENOMEM;
	}
	r->s.listener = r->listener;
	r->s.room = NULL;
	chat_hash_key(r->hash_key);
	pthread_mutex_init(&r->lock, NULL);
	if (s->backend) {
		struct chat_backend_settings bs = {
			.url = s->backend,
			.room = s->room ? s->room : r->listener,
		};
		int k;

		r->rsan_size = SANITIZE_SIZE_MAX((size_t)CHAT_WIRE_TEXT_MAX);
		r->rsan = malloc(r->rsan_size);
		r->rout_size = r->rsan_size + 256;
		r->rout = malloc(r->rout_size);
		if (!r->rsan || !r->rout) {
			chat_room_free(r);
			return -ENOMEM;
		}
		/* Last: its ops may run at once. */
		k = chat_backend_start(&r->backend, &bs, &backend_ops, r);
		if (k < 0) {
			r->backend = NULL;
			chat_room_free(r);
			return k;
		}
	}
	*ret = r;
	return 0;
}

struct chat_room *
chat_room_free(struct chat_room *r)
{
	if (!r)
		return NULL;
	if (r->backend) {
		pthread_mutex_lock(&r->lock);
		publish_all_leaves(r);
		pthread_mutex_unlock(&r->lock);
		/* Never with the lock held: its ops take it. */
		chat_backend_stop(r->backend);
		r->backend = NULL;
	}
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
	free(r->batch);
	free(r->rsan);
	free(r->rout);
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
	if (r->backend && r->backend_known && !r->backend_up) {
		m->state = MEMBER_GONE;
		list_append(&r->lists[MEMBER_GONE], m);
		chat_send_line(&c, m, "! room unavailable, try again later");
		tcp_close(r, m, "room unavailable");
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
	if (r->backend) {
		char name[CHAT_NAME_MAX + 1];
		int k;

		/* The room's name first: "you are" once the backend says so. */
		snprintf(name, sizeof(name), "%s", m->nick);
		m->nick[0] = '\0';
		k = claim(r, m, name);
		if (k == -EEXIST)
			tell_taken(r, m, name);
		else if (k < 0)
			tell_unavailable(r, m, true);
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
		chat_count_rate_limited(r->s.stats);
		return;
	}
	if (m->state == MEMBER_UNNAMED) {
		unnamed_line(r, m, r->san, len);
		return;
	}
	if (r->backend) {
		struct chat_cmd_args a;
		enum chat_cmd cmd = chat_cmd_parse(r->san, len, &a);

		if (cmd == CHAT_CMD_QUIT) {
			r->quit_reason = a.text;
			r->quit_reason_len = a.text_len;
		}
		chat_handle_line(&c, m, r->san, len);
		r->quit_reason = NULL;
		r->quit_reason_len = 0;
		if (cmd == CHAT_CMD_TEXT || (cmd == CHAT_CMD_ME && a.text_len > 0))
			publish(r, cmd == CHAT_CMD_ME ? CHAT_WIRE_ME : CHAT_WIRE_MSG, m->nick, NULL,
				a.text, a.text_len);
		return;
	}
	chat_handle_line(&c, m, r->san, len);
}

/* While m's name is claimed its input waits, within a bound. */
static void
hold(struct chat_member *m, const uint8_t *p, size_t n)
{
	uint8_t *q;

	n = MIN(n, CHAT_HELD_MAX - m->held_len);
	if (n == 0)
		return;
	q = realloc(m->held, m->held_len + n);
	if (!q)
		return;
	memcpy(q + m->held_len, p, n);
	m->held = q;
	m->held_len += n;
}

static void
feed(struct chat_room *r, struct chat_member *m, const uint8_t *p, size_t n, uint64_t now_usec)
{
	struct chat_ctx c = room_ctx(r);

	while (!r->shutdown && m->state != MEMBER_GONE && !m->closing) {
		const uint8_t *line;
		size_t len;
		int k;

		if (m->claiming && !m->reclaim) {
			hold(m, p, n);
			break;
		}
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
}

void
chat_member_input(struct chat_room *r, struct chat_member *m, const uint8_t *p, size_t n,
		  uint64_t now_usec)
{
	pthread_mutex_lock(&r->lock);
	local_batch_begin(r, m);
	feed(r, m, p, n, now_usec);
	batch_flush(r);
	r->batch_from = NULL;
	chat_count_members(r->s.stats, r->lists[MEMBER_NAMED].n, false);
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
	unclaim(r, m);
	if (m->state == MEMBER_NAMED) {
		table_remove(r, &r->nicks, m);
		list_unlink(&r->lists[MEMBER_NAMED], m);
		publish_leave(r, m, NULL, 0);
		if (!r->shutdown)
			chat_announce_left(&c, m->nick, NULL, 0);
	} else
		list_unlink(&r->lists[m->state], m);
	source_unref(r, m->source);
	member_free(m);
	chat_count_members(r->s.stats, r->lists[MEMBER_NAMED].n, false);
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
		publish_all_leaves(r);
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
