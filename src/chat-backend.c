#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "backend-url.h"
#include "chat-backend.h"
#include "chat-wire.h"
#include "log.h"
#include "loop.h"
#include "redis-loop.h"
#include "util.h"

#define NAME_MAX_LEN 32 /* CHAT_NAME_MAX */
#define BACKOFF_MIN_USEC (100 * USEC_PER_MSEC)
/* What hiredis may hold unsent before the queue stops draining into it. */
#define OUT_MAX ((size_t)1 << 20)
#define KICK_USEC (10 * USEC_PER_MSEC)
/* A subscriber must hold the longest event; bigger payloads are dropped by
 * the decoder, far bigger ones (over this) cost a reconnect. */
#define SUB_MAX_REPLY ((size_t)4 << 20)
#define KEY_MAX 192
/* Name comparisons one snapshot reply may cost for its leaves. */
#define SNAPSHOT_WORK_MAX (UINT64_C(1) << 22)

/* Take the name when it is free or ours already; keep the members hash in
 * step. KEYS: name key, members hash. ARGV: INST, HOST, ttl ms, NAME. */
static const char claim_lua[] =
	"local v = redis.call('GET', KEYS[1]) "
	"if v and string.sub(v, 1, 17) ~= ARGV[1] .. ' ' then return 0 end "
	"redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3]) "
	"redis.call('HSET', KEYS[2], ARGV[4], ARGV[2]) "
	"redis.call('PEXPIRE', KEYS[2], ARGV[3]) "
	"return 1";
/* Delete the name only while it is ours. KEYS as above; ARGV: INST, NAME. */
static const char release_lua[] =
	"local v = redis.call('GET', KEYS[1]) "
	"if v and string.sub(v, 1, 17) == ARGV[1] .. ' ' then redis.call('DEL', KEYS[1]) end "
	"redis.call('HDEL', KEYS[2], ARGV[2]) "
	"return 1";

enum job_type {
	JOB_PUBLISH,
	JOB_CLAIM,
	JOB_RELEASE,
};

struct job {
	struct job *next;
	enum job_type type;
	uint64_t token;
	char to[CHAT_WIRE_INSTANCE_LEN + 1]; /* privmsg: the instance; else "" */
	char name[NAME_MAX_LEN + 1];
	char host[CHAT_WIRE_HOST_MAX + 1];
	size_t len;
	char data[]; /* the payload */
};

struct name_entry {
	char lname[NAME_MAX_LEN + 1];
	char name[NAME_MAX_LEN + 1];
	char host[CHAT_WIRE_HOST_MAX + 1];
	uint64_t token;
	bool owned;
};

struct member {
	char name[NAME_MAX_LEN + 1];
};

struct peer {
	char id[CHAT_WIRE_INSTANCE_LEN + 1];
	uint64_t last_seq;
	bool have_seq;
	bool checked;
	uint64_t used; /* LRU tick */
	uint64_t live; /* live events seen */
	struct member *members;
	size_t n_members, cap;
};

enum state {
	ST_IDLE,
	ST_CONNECTING,
	ST_UP,
	ST_STOPPING,
};

struct chat_backend {
	struct backend_url url;
	char room[64];
	struct chat_backend_settings s;
	const struct chat_backend_ops *ops;
	void *ud;
	char instance[CHAT_WIRE_INSTANCE_LEN + 1];
	char prefix[96];  /* netechod:room:ROOM */
	char ch_inst[128]; /* PREFIX:to:INST */

	pthread_t thread;
	bool thread_started;
	int wake_fd;
	struct loop *loop;

	pthread_mutex_t lock;
	/* Under lock. */
	struct job *head, *tail;
	size_t n_jobs, job_bytes;
	bool stopping;
	uint64_t seq;
	struct name_entry *names;
	size_t n_names, names_cap;

	atomic_bool up;
	atomic_uint_fast64_t st_published, st_dropped, st_malformed, st_own, st_stale,
		st_received;

	/* Backend thread only. */
	redisAsyncContext *cmd, *sub;
	enum state state;
	bool cmd_ready;
	int sub_count;
	bool ever_up, down_reported, teardown_armed, stop_begun;
	int fail_error;
	char fail_reason[128];
	uint64_t backoff;
	struct loop_timer retry_timer, heartbeat_timer, kick_timer, teardown_timer, stop_timer;
	/* Armed at the loop's "now" by the first event of a wake-up: it runs
	 * after this wake-up's I/O callbacks (loop.c runs timers last), so
	 * ops->flush follows the burst. */
	struct loop_timer flush_timer;
	struct peer *peers;
	size_t n_peers;
	uint64_t tick;
	size_t n_remote_members;
};

/* A reply's privdata: the backend and what the command was about. */
struct req {
	struct chat_backend *b;
	uint64_t token;
	uint64_t live;
	char id[CHAT_WIRE_INSTANCE_LEN + 1];
	char lname[NAME_MAX_LEN + 1];
};

static void fail(struct chat_backend *b, int error, const char *reason);
static void instances_key(const struct chat_backend *b, char k[KEY_MAX]);
static void start_connect(struct chat_backend *b);
static void process_queue(struct chat_backend *b);

/* ---- small helpers ---- */

static void
lower(char *dst, const char *src, size_t size)
{
	size_t i;

	for (i = 0; i + 1 < size && src[i]; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

static struct req *
req_new(struct chat_backend *b)
{
	struct req *r = calloc(1, sizeof(*r));

	if (r)
		r->b = b;
	return r;
}

static void
key(const struct chat_backend *b, char buf[KEY_MAX], const char *kind, const char *what)
{
	snprintf(buf, KEY_MAX, "%s:%s:%s", b->prefix, kind, what);
}

static bool
id_valid(const char *s, size_t n)
{
	struct chat_wire_event ev;
	char line[64];
	int k;

	if (n != CHAT_WIRE_INSTANCE_LEN)
		return false;
	k = snprintf(line, sizeof(line), "v1 %.*s 0 hello", (int)n, s);
	return chat_wire_decode(line, (size_t)k, &ev) == 0;
}

static void
job_fail(struct chat_backend *b, struct job *j)
{
	if (j->type == JOB_CLAIM) {
		pthread_mutex_lock(&b->lock);
		for (size_t i = 0; i < b->n_names; i++)
			if (b->names[i].token == j->token &&
			    strcasecmp(b->names[i].name, j->name) == 0) {
				b->names[i] = b->names[--b->n_names];
				break;
			}
		pthread_mutex_unlock(&b->lock);
		b->ops->claim_done(b->ud, j->token, -ENOTCONN);
	}
	else if (j->type == JOB_PUBLISH)
		atomic_fetch_add(&b->st_dropped, 1);
	free(j);
}

/* ---- the names table (under lock) ---- */

static ssize_t
name_find(const struct chat_backend *b, const char *lname)
{
	for (size_t i = 0; i < b->n_names; i++)
		if (strcmp(b->names[i].lname, lname) == 0)
			return (ssize_t)i;
	return -1;
}

static void
name_remove_at(struct chat_backend *b, size_t i)
{
	b->names[i] = b->names[--b->n_names];
}

static int
name_add(struct chat_backend *b, const char *name, const char *host, uint64_t token)
{
	struct name_entry *e;

	if (b->n_names >= b->s.max_names)
		return -ENOBUFS;
	if (b->n_names == b->names_cap) {
		size_t cap = b->names_cap ? 2 * b->names_cap : 16;
		struct name_entry *n = realloc(b->names, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		b->names = n;
		b->names_cap = cap;
	}
	e = &b->names[b->n_names++];
	*e = (struct name_entry){ .token = token };
	snprintf(e->name, sizeof(e->name), "%s", name);
	lower(e->lname, name, sizeof(e->lname));
	snprintf(e->host, sizeof(e->host), "%s", host);
	return 0;
}

/* ---- the queue ---- */

/* Append j (under lock). Releases may exceed the bound: each one matches
 * a name entry it removed, and those are bounded. */
static int
enqueue_locked(struct chat_backend *b, struct job *j, bool bounded)
{
	uint64_t one = 1;

	if (bounded && (b->n_jobs >= b->s.queue_max ||
			b->job_bytes + j->len > b->s.queue_bytes_max))
		return -ENOBUFS;
	j->next = NULL;
	if (b->tail)
		b->tail->next = j;
	else
		b->head = j;
	b->tail = j;
	b->n_jobs++;
	b->job_bytes += j->len;
	if (write(b->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno; /* cannot happen with an eventfd; the job stays queued */
	return 0;
}

static struct job *
dequeue(struct chat_backend *b)
{
	struct job *j;

	pthread_mutex_lock(&b->lock);
	j = b->head;
	if (j) {
		b->head = j->next;
		if (!b->head)
			b->tail = NULL;
		b->n_jobs--;
		b->job_bytes -= j->len;
	}
	pthread_mutex_unlock(&b->lock);
	return j;
}

/* ---- remote instances ---- */

static struct peer *
peer_find(struct chat_backend *b, const char *id)
{
	for (size_t i = 0; i < b->n_peers; i++)
		if (strcmp(b->peers[i].id, id) == 0) {
			b->peers[i].used = ++b->tick;
			return &b->peers[i];
		}
	return NULL;
}

static void
peer_remove(struct chat_backend *b, struct peer *p)
{
	b->n_remote_members -= p->n_members;
	free(p->members);
	*p = b->peers[--b->n_peers];
}

/* Find or add id, evicting the least recently used when full. NULL only
 * when out of memory. */
static struct peer *
peer_get(struct chat_backend *b, const char *id)
{
	struct peer *p = peer_find(b, id);

	if (p)
		return p;
	if (!b->peers) {
		b->peers = calloc(b->s.max_instances, sizeof(*b->peers));
		if (!b->peers)
			return NULL;
	}
	if (b->n_peers == b->s.max_instances) {
		struct peer *old = &b->peers[0];

		for (size_t i = 1; i < b->n_peers; i++)
			if (b->peers[i].used < old->used)
				old = &b->peers[i];
		peer_remove(b, old);
	}
	p = &b->peers[b->n_peers++];
	*p = (struct peer){ .used = ++b->tick };
	snprintf(p->id, sizeof(p->id), "%s", id);
	return p;
}

static ssize_t
member_find(const struct peer *p, const char *name, size_t n)
{
	for (size_t i = 0; i < p->n_members; i++)
		if (strlen(p->members[i].name) == n && strncasecmp(p->members[i].name, name, n) == 0)
			return (ssize_t)i;
	return -1;
}

static void
member_add(struct chat_backend *b, struct peer *p, const char *name, size_t n)
{
	if (member_find(p, name, n) >= 0 || b->n_remote_members >= b->s.max_remote_members ||
	    n > NAME_MAX_LEN)
		return;
	if (p->n_members == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 8;
		struct member *m = realloc(p->members, cap * sizeof(*m));

		if (!m)
			return; /* forgotten: only its loss would go unannounced */
		p->members = m;
		p->cap = cap;
	}
	snprintf(p->members[p->n_members++].name, NAME_MAX_LEN + 1, "%.*s", (int)n, name);
	b->n_remote_members++;
}

static void
member_remove(struct chat_backend *b, struct peer *p, const char *name, size_t n)
{
	ssize_t i = member_find(p, name, n);

	if (i < 0)
		return;
	p->members[i] = p->members[--p->n_members];
	b->n_remote_members--;
}

/* Keep what we know of p's members in step with ev. */
static void
flush_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct chat_backend *b = userdata;

	(void)l;
	(void)t;
	b->ops->flush(b->ud);
}

/* Hand ev to the room, and have the burst it is part of flushed. */
static void
deliver(struct chat_backend *b, const struct chat_wire_event *ev)
{
	b->ops->event(b->ud, ev);
	if (b->ops->flush && !b->flush_timer.deadline)
		loop_timer_set(b->loop, &b->flush_timer, loop_now(b->loop), flush_cb, b);
}

static void
track(struct chat_backend *b, struct peer *p, const struct chat_wire_event *ev)
{
	switch (ev->type) {
	case CHAT_WIRE_JOIN:
		member_add(b, p, ev->a, ev->a_len);
		break;
	case CHAT_WIRE_LEAVE:
		member_remove(b, p, ev->a, ev->a_len);
		break;
	case CHAT_WIRE_NICK:
		member_remove(b, p, ev->a, ev->a_len);
		member_add(b, p, ev->b, ev->b_len);
		break;
	case CHAT_WIRE_BYE:
		b->n_remote_members -= p->n_members;
		p->n_members = 0;
		break;
	default:
		break;
	}
}

/* ---- events from Redis ---- */

static void
on_payload(struct chat_backend *b, bool own_channel, const char *s, size_t n)
{
	struct chat_wire_event ev;
	struct peer *p;

	if (chat_wire_decode(s, n, &ev) < 0 || own_channel != (ev.type == CHAT_WIRE_PRIVMSG)) {
		atomic_fetch_add(&b->st_malformed, 1);
		return;
	}
	if (strcmp(ev.instance, b->instance) == 0) {
		atomic_fetch_add(&b->st_own, 1);
		return;
	}
	p = peer_get(b, ev.instance);
	if (!p)
		return;
	if (p->have_seq && ev.seq <= p->last_seq) {
		atomic_fetch_add(&b->st_stale, 1);
		return;
	}
	p->last_seq = ev.seq;
	p->have_seq = true;
	p->live++;
	track(b, p, &ev);
	atomic_fetch_add(&b->st_received, 1);
	deliver(b, &ev);
}

static void
sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct chat_backend *b = privdata;
	redisReply *r = reply;
	const redisReply *kind;

	(void)ac;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || b->state == ST_IDLE)
		return;
	kind = r->element[0];
	if (kind->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(kind->str, "subscribe") == 0) {
		if (++b->sub_count == 2 && b->state == ST_CONNECTING)
			process_queue(b); /* checks whether we are registered now */
		return;
	}
	if (strcmp(kind->str, "message") != 0 || r->element[1]->type != REDIS_REPLY_STRING ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;
	on_payload(b, strcmp(r->element[1]->str, b->ch_inst) == 0, r->element[2]->str,
		   r->element[2]->len);
}

/* ---- sending ---- */

static int
send_publish(struct chat_backend *b, const char *to, const char *data, size_t len)
{
	char ch[KEY_MAX];

	if (to && *to)
		key(b, ch, "to", to);
	else
		snprintf(ch, sizeof(ch), "%s", b->prefix);
	if (redisAsyncCommand(b->cmd, NULL, NULL, "PUBLISH %s %b", ch, data, len) != REDIS_OK) {
		atomic_fetch_add(&b->st_dropped, 1);
		return -ENOTCONN;
	}
	atomic_fetch_add(&b->st_published, 1);
	return 0;
}

/* Encode and publish an event of the backend's own (hello, bye). */
static void
publish_own(struct chat_backend *b, enum chat_wire_type t)
{
	struct chat_wire_event ev = { .type = t };
	char buf[CHAT_WIRE_HEAD_MAX];
	int n;

	snprintf(ev.instance, sizeof(ev.instance), "%s", b->instance);
	pthread_mutex_lock(&b->lock);
	ev.seq = ++b->seq;
	n = chat_wire_encode(buf, sizeof(buf), &ev);
	if (n >= 0)
		(void)send_publish(b, NULL, buf, (size_t)n);
	pthread_mutex_unlock(&b->lock);
}

static int
send_claim(struct chat_backend *b, const char *name, const char *host,
	   redisCallbackFn *fn, void *privdata)
{
	char k_name[KEY_MAX], k_members[KEY_MAX], lname[NAME_MAX_LEN + 1], ttl[32];

	lower(lname, name, sizeof(lname));
	key(b, k_name, "name", lname);
	key(b, k_members, "members", b->instance);
	snprintf(ttl, sizeof(ttl), "%" PRIu64, b->s.key_ttl_usec / USEC_PER_MSEC);
	return redisAsyncCommand(b->cmd, fn, privdata, "EVAL %s 2 %s %s %s %s %s %s", claim_lua,
				 k_name, k_members, b->instance, host, ttl, name) == REDIS_OK
		       ? 0
		       : -ENOTCONN;
}

/* Free name while instance (ours, or one found lost) holds it. */
static void
send_release_of(struct chat_backend *b, const char *instance, const char *name)
{
	char k_name[KEY_MAX], k_members[KEY_MAX], lname[NAME_MAX_LEN + 1];

	lower(lname, name, sizeof(lname));
	key(b, k_name, "name", lname);
	key(b, k_members, "members", instance);
	(void)redisAsyncCommand(b->cmd, NULL, NULL, "EVAL %s 2 %s %s %s %s", release_lua, k_name,
				k_members, instance, name);
}

static void
send_release(struct chat_backend *b, const char *name)
{
	send_release_of(b, b->instance, name);
}

static void
claim_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct req *q = privdata;
	struct chat_backend *b = q->b;
	redisReply *r = reply;
	int result;
	ssize_t i;
	char name[NAME_MAX_LEN + 1] = "";

	(void)ac;
	if (!r)
		result = -ENOTCONN;
	else if (r->type == REDIS_REPLY_INTEGER)
		result = r->integer == 1 ? 0 : -EEXIST;
	else
		result = -EIO;
	pthread_mutex_lock(&b->lock);
	i = name_find(b, q->lname);
	if (i >= 0 && b->names[i].token == q->token) {
		if (result == 0)
			b->names[i].owned = true;
		else
			name_remove_at(b, (size_t)i);
	} else if (result == 0) {
		/* Released while the claim was on its way: give it back. */
		snprintf(name, sizeof(name), "%s", q->lname);
	}
	pthread_mutex_unlock(&b->lock);
	if (*name && b->cmd)
		send_release(b, name);
	b->ops->claim_done(b->ud, q->token, result);
	free(q);
}

static void
run_job(struct chat_backend *b, struct job *j)
{
	struct req *q;

	switch (j->type) {
	case JOB_PUBLISH:
		(void)send_publish(b, j->to, j->data, j->len);
		break;
	case JOB_CLAIM:
		q = req_new(b);
		if (!q || send_claim(b, j->name, j->host, claim_reply, q) < 0) {
			free(q);
			/* Keep the contract: one claim_done, and no entry left. */
			pthread_mutex_lock(&b->lock);
			ssize_t i = name_find(b, j->name);
			if (i >= 0 && b->names[i].token == j->token)
				name_remove_at(b, (size_t)i);
			pthread_mutex_unlock(&b->lock);
			b->ops->claim_done(b->ud, j->token, -ENOTCONN);
			break;
		}
		q->token = j->token;
		lower(q->lname, j->name, sizeof(q->lname));
		break;
	case JOB_RELEASE:
		send_release(b, j->name);
		break;
	}
	free(j);
}

/* ---- registration, heartbeat, lost instances, snapshot ---- */

static void
instance_lost(struct chat_backend *b, const char *id)
{
	struct peer *p = peer_find(b, id);
	char k[KEY_MAX];

	if (p) {
		/* Copy: a callback may not touch the table, but stay safe. */
		size_t n = p->n_members;
		struct member *m = p->members;

		p->members = NULL;
		p->n_members = p->cap = 0;
		b->n_remote_members -= n;
		peer_remove(b, p);
		for (size_t i = 0; i < n; i++) {
			/* Its names are free once it is announced lost, also
			 * one claimed after its last heartbeat (which would
			 * live up to a heartbeat longer than its inst key). */
			if (b->cmd)
				send_release_of(b, id, m[i].name);
			b->ops->lost(b->ud, id, m[i].name);
		}
		free(m);
	}
	instances_key(b, k);
	if (b->cmd)
		(void)redisAsyncCommand(b->cmd, NULL, NULL, "SREM %s %s", k, id);
}

static void
exists_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct req *q = privdata;
	redisReply *r = reply;

	(void)ac;
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0 && q->b->state == ST_UP)
		instance_lost(q->b, q->id);
	free(q);
}

static void
check_instance(struct chat_backend *b, const char *id)
{
	struct req *q = req_new(b);
	char k[KEY_MAX];

	if (!q)
		return;
	snprintf(q->id, sizeof(q->id), "%s", id);
	key(b, k, "inst", id);
	if (redisAsyncCommand(b->cmd, exists_reply, q, "EXISTS %s", k) != REDIS_OK)
		free(q);
}

/* The set's instances, and those we know members of, whose key is gone. */
static void
lost_check_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct chat_backend *b = privdata;
	redisReply *r = reply;

	(void)ac;
	if (!r || r->type != REDIS_REPLY_ARRAY || b->state != ST_UP)
		return;
	for (size_t i = 0; i < b->n_peers; i++)
		b->peers[i].checked = false;
	for (size_t i = 0; i < r->elements && i < b->s.max_instances; i++) {
		const redisReply *e = r->element[i];
		struct peer *p;

		if (e->type != REDIS_REPLY_STRING || !id_valid(e->str, e->len) ||
		    strcmp(e->str, b->instance) == 0)
			continue;
		p = peer_find(b, e->str);
		if (p)
			p->checked = true;
		check_instance(b, e->str);
	}
	for (size_t i = 0; i < b->n_peers; i++)
		if (!b->peers[i].checked && b->peers[i].n_members > 0)
			check_instance(b, b->peers[i].id);
}

/* One member of a snapshot: through the decoder, as everything from Redis. */
static void
snapshot_member(struct chat_backend *b, struct peer *p, const redisReply *name,
		const redisReply *host)
{
	struct chat_wire_event ev;
	char line[CHAT_WIRE_HEAD_MAX];
	int n;

	if (name->type != REDIS_REPLY_STRING || host->type != REDIS_REPLY_STRING ||
	    name->len > NAME_MAX_LEN || host->len > CHAT_WIRE_HOST_MAX)
		goto bad;
	n = snprintf(line, sizeof(line), "v1 %s 0 join %.*s %.*s", p->id, (int)name->len,
		     name->str, (int)host->len, host->str);
	if (n < 0 || (size_t)n >= sizeof(line) || chat_wire_decode(line, (size_t)n, &ev) < 0)
		goto bad;
	if (member_find(p, ev.a, ev.a_len) >= 0)
		return;
	member_add(b, p, ev.a, ev.a_len);
	deliver(b, &ev);
	return;
bad:
	atomic_fetch_add(&b->st_malformed, 1);
}

/* Known members the hash no longer has left while we were away; unless
 * live events of p arrived meanwhile (then the hash may be older). */
static void
snapshot_leaves(struct chat_backend *b, struct peer *p, const redisReply *r)
{
	for (size_t i = 0; i < p->n_members;) {
		bool found = false;
		struct chat_wire_event ev;
		char line[CHAT_WIRE_HEAD_MAX];
		int n;

		for (size_t k = 0; k + 1 < r->elements && !found; k += 2)
			found = r->element[k]->type == REDIS_REPLY_STRING &&
				strcasecmp(r->element[k]->str, p->members[i].name) == 0;
		if (found) {
			i++;
			continue;
		}
		n = snprintf(line, sizeof(line), "v1 %s 0 leave %s", p->id, p->members[i].name);
		p->members[i] = p->members[--p->n_members];
		b->n_remote_members--;
		if (chat_wire_decode(line, (size_t)n, &ev) == 0)
			deliver(b, &ev);
	}
}

static void
snapshot_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct req *q = privdata;
	struct chat_backend *b = q->b;
	redisReply *r = reply;
	struct peer *p;

	(void)ac;
	if (!r || r->type != REDIS_REPLY_ARRAY || b->state != ST_UP)
		goto out;
	p = peer_get(b, q->id);
	if (!p)
		goto out;
	for (size_t i = 0; i + 1 < r->elements && i / 2 < b->s.max_remote_members; i += 2)
		snapshot_member(b, p, r->element[i], r->element[i + 1]);
	/* The reconcile is quadratic: only for tables of a sane size. */
	if (p->live == q->live && (uint64_t)p->n_members * (r->elements / 2) <= SNAPSHOT_WORK_MAX)
		snapshot_leaves(b, p, r);
out:
	free(q);
}

static void
snapshot_list_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct chat_backend *b = privdata;
	redisReply *r = reply;

	(void)ac;
	if (!r || r->type != REDIS_REPLY_ARRAY || b->state != ST_UP)
		return;
	for (size_t i = 0; i < r->elements && i < b->s.max_instances; i++) {
		const redisReply *e = r->element[i];
		struct peer *p;
		struct req *q;
		char k[KEY_MAX];

		if (e->type != REDIS_REPLY_STRING || !id_valid(e->str, e->len) ||
		    strcmp(e->str, b->instance) == 0)
			continue;
		q = req_new(b);
		if (!q)
			return;
		snprintf(q->id, sizeof(q->id), "%s", e->str);
		p = peer_find(b, e->str);
		q->live = p ? p->live : 0;
		key(b, k, "members", e->str);
		if (redisAsyncCommand(b->cmd, snapshot_reply, q, "HGETALL %s", k) != REDIS_OK)
			free(q);
	}
}

static void
instances_key(const struct chat_backend *b, char k[KEY_MAX])
{
	snprintf(k, KEY_MAX, "%s:instances", b->prefix);
}

static void heartbeat_cb(struct loop *l, struct loop_timer *t, void *userdata);

/* Our inst key gone while we stayed connected (we stalled past the key
 * ttl, or someone deleted it): the others have announced our members
 * lost. Start over as after an outage, so that the room claims and
 * announces them again. */
static void
alive_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct chat_backend *b = privdata;
	redisReply *r = reply;

	(void)ac;
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0 && b->state == ST_UP)
		fail(b, -ETIMEDOUT, "our heartbeat key expired: presumed lost");
}

/* Our keys, our names refreshed, and the check for lost instances. */
static void
heartbeat(struct chat_backend *b, bool first)
{
	char k_inst[KEY_MAX], k_set[KEY_MAX], k_members[KEY_MAX], now[32];
	uint64_t ttl = b->s.key_ttl_usec / USEC_PER_MSEC;

	key(b, k_inst, "inst", b->instance);
	key(b, k_members, "members", b->instance);
	instances_key(b, k_set);
	snprintf(now, sizeof(now), "%" PRIu64, realtime_usec() / USEC_PER_SEC);
	if (!first)
		(void)redisAsyncCommand(b->cmd, alive_reply, b, "EXISTS %s", k_inst);
	/* Names before the inst key: they then expire before it, so when the
	 * others find us lost our names are free for their members. */
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < b->n_names; i++)
		if (b->names[i].owned)
			(void)send_claim(b, b->names[i].name, b->names[i].host, NULL, NULL);
	pthread_mutex_unlock(&b->lock);
	(void)redisAsyncCommand(b->cmd, NULL, NULL, "SET %s %s PX %" PRIu64, k_inst, now, ttl);
	(void)redisAsyncCommand(b->cmd, NULL, NULL, "SADD %s %s", k_set, b->instance);
	(void)redisAsyncCommand(b->cmd, NULL, NULL, "PEXPIRE %s %" PRIu64, k_members, ttl);
	(void)redisAsyncCommand(b->cmd, lost_check_reply, b, "SMEMBERS %s", k_set);
	loop_timer_set(b->loop, &b->heartbeat_timer, now_usec() + b->s.heartbeat_usec,
		       heartbeat_cb, b);
}

static void
heartbeat_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct chat_backend *b = userdata;

	(void)l;
	(void)t;
	if (b->state == ST_UP)
		heartbeat(b, false);
}

static void
registered(struct chat_backend *b)
{
	char k_set[KEY_MAX];
	bool was = b->ever_up;

	struct job *j;

	b->state = ST_UP;
	b->backoff = BACKOFF_MIN_USEC;
	b->ever_up = true;
	b->down_reported = false;
	/* Whatever slipped in around the outage is older than hello: SEQ
	 * order must be send order. Only then may the room publish again. */
	while ((j = dequeue(b)))
		job_fail(b, j);
	publish_own(b, CHAT_WIRE_HELLO);
	atomic_store(&b->up, true);
	heartbeat(b, true);
	b->ops->up(b->ud, was);
	instances_key(b, k_set);
	(void)redisAsyncCommand(b->cmd, snapshot_list_reply, b, "SMEMBERS %s", k_set);
}

/* ---- connection ---- */

static void
setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct chat_backend *b = privdata;
	redisReply *r = reply;

	if (b->state != ST_CONNECTING)
		return;
	if (!r)
		return; /* the disconnect reports */
	if (r->type == REDIS_REPLY_ERROR) {
		fail(b, -EACCES, r->str);
		return;
	}
	if (ac == b->cmd && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) {
		b->cmd_ready = true;
		process_queue(b);
	}
}

static void
on_connect(redisAsyncContext *ac, int status, const char *errstr, void *userdata)
{
	struct chat_backend *b = userdata;
	char ch[KEY_MAX];

	if (status) {
		if (ac == b->cmd)
			b->cmd = NULL;
		else if (ac == b->sub)
			b->sub = NULL;
		fail(b, status, errstr);
		return;
	}
	if (b->url.password[0]) {
		if (b->url.user[0])
			(void)redisAsyncCommand(ac, setup_reply, b, "AUTH %s %s", b->url.user,
						b->url.password);
		else
			(void)redisAsyncCommand(ac, setup_reply, b, "AUTH %s", b->url.password);
	}
	if (ac == b->cmd) {
		if (b->url.db)
			(void)redisAsyncCommand(ac, setup_reply, b, "SELECT %u", b->url.db);
		(void)redisAsyncCommand(ac, setup_reply, b, "PING");
		return;
	}
	snprintf(ch, sizeof(ch), "%s", b->prefix);
	(void)redisAsyncCommand(ac, sub_reply, b, "SUBSCRIBE %s %s", ch, b->ch_inst);
}

static void
on_disconnect(redisAsyncContext *ac, int status, const char *errstr, void *userdata)
{
	struct chat_backend *b = userdata;

	if (ac != b->cmd && ac != b->sub)
		return; /* one we free ourselves */
	if (ac == b->cmd)
		b->cmd = NULL;
	else
		b->sub = NULL;
	fail(b, status ? status : -ECONNRESET, status ? errstr : "connection closed");
}

static void
free_contexts(struct chat_backend *b)
{
	redisAsyncContext *ac;

	ac = TAKE_PTR(b->cmd);
	if (ac)
		redisAsyncFree(ac);
	ac = TAKE_PTR(b->sub);
	if (ac)
		redisAsyncFree(ac);
}

static void
retry_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	(void)l;
	(void)t;
	start_connect(userdata);
}

/* After a failure, outside hiredis's callbacks: free what is left, tell
 * the room once per outage, fail what waits, and retry later. */
static void
teardown_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct chat_backend *b = userdata;
	struct job *j;

	(void)t;
	b->teardown_armed = false;
	free_contexts(b);
	pthread_mutex_lock(&b->lock);
	b->n_names = 0; /* the room claims again after up(reconnected) */
	pthread_mutex_unlock(&b->lock);
	if (!b->down_reported && b->state != ST_STOPPING) {
		b->down_reported = true;
		b->ops->down(b->ud, b->fail_error, b->fail_reason);
	}
	while ((j = dequeue(b)))
		job_fail(b, j);
	if (b->state == ST_STOPPING) {
		loop_quit(l);
		return;
	}
	loop_timer_set(l, &b->retry_timer, now_usec() + b->backoff, retry_cb, b);
	b->backoff = MIN(2 * b->backoff, b->s.backoff_max_usec);
}

static void
fail(struct chat_backend *b, int error, const char *reason)
{
	if (b->teardown_armed || b->state == ST_IDLE)
		return;
	log_debug("chat backend %s: %s", b->instance, reason ? reason : "");
	b->fail_error = error < 0 ? error : -EIO;
	snprintf(b->fail_reason, sizeof(b->fail_reason), "%s", reason ? reason : "");
	if (b->state != ST_STOPPING)
		b->state = ST_IDLE;
	atomic_store(&b->up, false);
	loop_timer_set(b->loop, &b->heartbeat_timer, 0, NULL, NULL);
	b->teardown_armed = true;
	loop_timer_set(b->loop, &b->teardown_timer, now_usec(), teardown_cb, b);
}

/* An address literal for redis_loop_connect(): a name is resolved here,
 * with a blocking getaddrinfo() that stalls this thread only. */
static int
resolve(const char *host, char *buf, size_t size)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	unsigned char tmp[sizeof(struct in6_addr)];
	int r;

	if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1) {
		snprintf(buf, size, "%s", host);
		return 0;
	}
	r = getaddrinfo(host, NULL, &hints, &ai);
	if (r != 0)
		return -EHOSTUNREACH;
	r = getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, (socklen_t)size, NULL, 0, NI_NUMERICHOST);
	freeaddrinfo(ai);
	return r == 0 ? 0 : -EHOSTUNREACH;
}

static int
connect_one(struct chat_backend *b, redisAsyncContext **ret, const char *host, size_t max_reply)
{
	const struct redis_loop_callbacks cbs = {
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.userdata = b,
	};
	bool unix_sock = b->url.kind == BACKEND_UNIX;
	int r;

	r = redis_loop_connect(ret, b->loop, host, b->url.port, unix_sock ? b->url.path : NULL,
			       b->s.connect_timeout_usec, &cbs);
	if (r < 0)
		return r;
	return redis_loop_set_limits(*ret, b->s.command_timeout_usec, max_reply);
}

static void
start_connect(struct chat_backend *b)
{
	char host[NI_MAXHOST] = "";
	int r = 0;

	b->state = ST_CONNECTING;
	b->cmd_ready = false;
	b->sub_count = 0;
	if (b->url.kind == BACKEND_TCP)
		r = resolve(b->url.host, host, sizeof(host));
	if (r == 0)
		r = connect_one(b, &b->cmd, host, REDIS_LOOP_DEFAULT_MAX_REPLY);
	if (r == 0)
		r = connect_one(b, &b->sub, host, SUB_MAX_REPLY);
	if (r < 0)
		fail(b, r, r == -EHOSTUNREACH ? "cannot resolve host" : strerror(-r));
}

/* ---- the thread ---- */

static void
stop_timeout_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	(void)t;
	(void)userdata;
	loop_quit(l);
}

static void
stop_done(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct chat_backend *b = privdata;

	(void)ac;
	(void)reply;
	loop_quit(b->loop);
}

/* Release our names, say bye, remove our keys, then quit once Redis
 * answered (or the stop timeout passed). */
static void
begin_stop(struct chat_backend *b)
{
	char k[KEY_MAX];

	b->stop_begun = true;
	loop_timer_set(b->loop, &b->stop_timer, now_usec() + b->s.stop_timeout_usec,
		       stop_timeout_cb, b);
	if (b->state != ST_UP) {
		b->state = ST_STOPPING;
		loop_quit(b->loop);
		return;
	}
	b->state = ST_STOPPING;
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < b->n_names; i++)
		send_release(b, b->names[i].name);
	b->n_names = 0;
	pthread_mutex_unlock(&b->lock);
	publish_own(b, CHAT_WIRE_BYE);
	key(b, k, "inst", b->instance);
	(void)redisAsyncCommand(b->cmd, NULL, NULL, "DEL %s", k);
	key(b, k, "members", b->instance);
	(void)redisAsyncCommand(b->cmd, NULL, NULL, "DEL %s", k);
	instances_key(b, k);
	(void)redisAsyncCommand(b->cmd, NULL, NULL, "SREM %s %s", k, b->instance);
	if (redisAsyncCommand(b->cmd, stop_done, b, "PING") != REDIS_OK)
		loop_quit(b->loop);
}

static void
kick_cb(struct loop *l, struct loop_timer *t, void *userdata)
{
	(void)l;
	(void)t;
	process_queue(userdata);
}

/* Drain the queue into hiredis while up and hiredis keeps up; fail it
 * while down; registers once both contexts are ready. */
static void
process_queue(struct chat_backend *b)
{
	struct job *j;
	bool stopping, full = false;

	if (b->state == ST_CONNECTING && b->cmd_ready && b->sub_count == 2)
		registered(b);
	pthread_mutex_lock(&b->lock);
	stopping = b->stopping;
	pthread_mutex_unlock(&b->lock);
	for (;;) {
		if (!full && b->state == ST_UP && b->cmd && redis_loop_queued(b->cmd) >= OUT_MAX) {
			/* Stopping must not wait for a server that does not read:
			 * what hiredis cannot take now is dropped. */
			if (!stopping) {
				loop_timer_set(b->loop, &b->kick_timer, now_usec() + KICK_USEC,
					       kick_cb, b);
				return;
			}
			full = true;
		}
		j = dequeue(b);
		if (!j)
			break;
		if (b->state == ST_UP && b->cmd && !full)
			run_job(b, j);
		else
			job_fail(b, j);
	}
	if (stopping && !b->stop_begun)
		begin_stop(b);
}

static void
wake_cb(struct loop *l, int fd, unsigned events, void *userdata)
{
	uint64_t v;

	(void)l;
	(void)events;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	process_queue(userdata);
}

static void *
thread_main(void *userdata)
{
	struct chat_backend *b = userdata;
	struct job *j;

	start_connect(b);
	if (loop_run(b->loop) < 0)
		log_debug("chat backend %s: loop failed", b->instance);
	b->state = ST_STOPPING;
	free_contexts(b); /* pending claims get -ENOTCONN */
	while ((j = dequeue(b)))
		job_fail(b, j);
	loop_timer_set(b->loop, &b->retry_timer, 0, NULL, NULL);
	loop_timer_set(b->loop, &b->heartbeat_timer, 0, NULL, NULL);
	loop_timer_set(b->loop, &b->kick_timer, 0, NULL, NULL);
	loop_timer_set(b->loop, &b->teardown_timer, 0, NULL, NULL);
	loop_timer_set(b->loop, &b->stop_timer, 0, NULL, NULL);
	if (b->flush_timer.deadline) {
		loop_timer_set(b->loop, &b->flush_timer, 0, NULL, NULL);
		b->ops->flush(b->ud);
	}
	atomic_store(&b->up, false);
	return NULL;
}

/* ---- the API ---- */

static void
apply_defaults(struct chat_backend_settings *s)
{
	if (!s->heartbeat_usec)
		s->heartbeat_usec = 5 * USEC_PER_SEC;
	if (!s->key_ttl_usec)
		s->key_ttl_usec = 30 * USEC_PER_SEC;
	if (!s->backoff_max_usec)
		s->backoff_max_usec = 5 * USEC_PER_SEC;
	if (!s->connect_timeout_usec)
		s->connect_timeout_usec = 2 * USEC_PER_SEC;
	if (!s->command_timeout_usec)
		s->command_timeout_usec = 5 * USEC_PER_SEC;
	if (!s->stop_timeout_usec)
		s->stop_timeout_usec = USEC_PER_SEC;
	if (!s->queue_max)
		s->queue_max = 4096;
	if (!s->queue_bytes_max)
		s->queue_bytes_max = (size_t)8 << 20;
	if (!s->max_instances)
		s->max_instances = 1024;
	if (!s->max_remote_members)
		s->max_remote_members = 65536;
	if (!s->max_names)
		s->max_names = 65536;
}

static void
backend_free(struct chat_backend *b)
{
	struct job *j;

	if (!b)
		return;
	while ((j = b->head)) {
		b->head = j->next;
		free(j);
	}
	for (size_t i = 0; i < b->n_peers; i++)
		free(b->peers[i].members);
	free(b->peers);
	free(b->names);
	if (b->loop) {
		if (b->wake_fd >= 0)
			loop_remove(b->loop, b->wake_fd);
		loop_free(b->loop);
	}
	safe_close(b->wake_fd);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static int
new_instance_id(char ret[CHAT_WIRE_INSTANCE_LEN + 1])
{
	uint64_t v;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		return -errno;
	snprintf(ret, CHAT_WIRE_INSTANCE_LEN + 1, "%016" PRIx64, v);
	return 0;
}

static int
spawn(struct chat_backend *b)
{
	sigset_t all, old;
	int r;

	/* The thread blocks every signal (STYLE.md); SIGPIPE from hiredis's
	 * write()s then only makes them fail with EPIPE. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&b->thread, NULL, thread_main, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

int
chat_backend_start(struct chat_backend **ret, const struct chat_backend_settings *s,
		   const struct chat_backend_ops *ops, void *ud)
{
	struct chat_backend *b;
	int r;

	if (!s || !s->url || !s->room || !backend_room_valid(s->room) || !ops || !ops->up ||
	    !ops->down || !ops->event || !ops->claim_done || !ops->lost ||
	    s->url->kind >= _BACKEND_KIND_MAX)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->wake_fd = -1;
	pthread_mutex_init(&b->lock, NULL);
	b->url = *s->url;
	snprintf(b->room, sizeof(b->room), "%s", s->room);
	b->s = *s;
	b->s.url = &b->url;
	b->s.room = b->room;
	apply_defaults(&b->s);
	b->ops = ops;
	b->ud = ud;
	b->backoff = BACKOFF_MIN_USEC;
	r = new_instance_id(b->instance);
	if (r < 0)
		goto fail;
	snprintf(b->prefix, sizeof(b->prefix), "netechod:room:%s", b->room);
	snprintf(b->ch_inst, sizeof(b->ch_inst), "%s:to:%s", b->prefix, b->instance);
	b->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->wake_fd < 0) {
		r = -errno;
		goto fail;
	}
	r = loop_new(&b->loop, LOOP_BACKEND_EPOLL);
	if (r >= 0)
		r = loop_add(b->loop, b->wake_fd, LOOP_READ, wake_cb, b);
	if (r >= 0)
		r = spawn(b);
	if (r < 0)
		goto fail;
	b->thread_started = true;
	*ret = b;
	return 0;
fail:
	backend_free(b);
	return r;
}

void
chat_backend_stop(struct chat_backend *b)
{
	uint64_t one = 1;

	if (!b)
		return;
	if (b->thread_started) {
		pthread_mutex_lock(&b->lock);
		b->stopping = true;
		pthread_mutex_unlock(&b->lock);
		if (write(b->wake_fd, &one, sizeof(one)) < 0)
			log_debug("chat backend %s: cannot wake the thread", b->instance);
		pthread_join(b->thread, NULL);
	}
	backend_free(b);
}

const char *
chat_backend_instance(const struct chat_backend *b)
{
	return b->instance;
}

bool
chat_backend_up(const struct chat_backend *b)
{
	return atomic_load(&b->up);
}

void
chat_backend_get_stats(const struct chat_backend *b, struct chat_backend_stats *ret)
{
	*ret = (struct chat_backend_stats){
		.published = atomic_load(&b->st_published),
		.dropped = atomic_load(&b->st_dropped),
		.malformed = atomic_load(&b->st_malformed),
		.own = atomic_load(&b->st_own),
		.stale = atomic_load(&b->st_stale),
		.received = atomic_load(&b->st_received),
	};
}

static struct job *
job_new(enum job_type t, size_t len)
{
	struct job *j = calloc(1, sizeof(*j) + len + 1);

	if (j)
		j->type = t;
	return j;
}

int
chat_backend_claim(struct chat_backend *b, const char *name, const char *host, uint64_t token)
{
	struct chat_wire_event ev = { .type = CHAT_WIRE_JOIN, .instance = "0000000000000000" };
	char buf[CHAT_WIRE_HEAD_MAX], lname[NAME_MAX_LEN + 1];
	struct job *j;
	int r;

	/* The codec's rules for NAME and HOST are ours. */
	ev.a = name;
	ev.a_len = name ? strlen(name) : 0;
	ev.b = host;
	ev.b_len = host ? strlen(host) : 0;
	if (!name || !host || chat_wire_encode(buf, sizeof(buf), &ev) < 0)
		return -EINVAL;
	if (!chat_backend_up(b))
		return -ENOTCONN;
	j = job_new(JOB_CLAIM, 0);
	if (!j)
		return -ENOMEM;
	j->token = token;
	lower(lname, name, sizeof(lname));
	snprintf(j->name, sizeof(j->name), "%s", name);
	snprintf(j->host, sizeof(j->host), "%s", host);
	pthread_mutex_lock(&b->lock);
	if (name_find(b, lname) >= 0)
		r = -EEXIST;
	else
		r = name_add(b, name, host, token);
	if (r == 0) {
		r = enqueue_locked(b, j, true);
		if (r < 0)
			name_remove_at(b, (size_t)name_find(b, lname));
	}
	pthread_mutex_unlock(&b->lock);
	if (r < 0)
		free(j);
	return r;
}

void
chat_backend_release(struct chat_backend *b, const char *name)
{
	char lname[NAME_MAX_LEN + 1];
	struct job *j;
	ssize_t i;

	if (!name)
		return;
	lower(lname, name, sizeof(lname));
	j = job_new(JOB_RELEASE, 0);
	pthread_mutex_lock(&b->lock);
	i = name_find(b, lname);
	if (i >= 0) {
		/* The members hash has the name as claimed, whatever its case now. */
		if (j)
			snprintf(j->name, sizeof(j->name), "%s", b->names[i].name);
		name_remove_at(b, (size_t)i);
		if (j) {
			if (enqueue_locked(b, TAKE_PTR(j), false) < 0)
				log_debug("chat backend %s: cannot wake the thread", b->instance);
		}
	}
	pthread_mutex_unlock(&b->lock);
	free(j);
}

/* Encode under the lock: SEQ order is queue order, whoever calls. */
static int
publish(struct chat_backend *b, const char *to, struct chat_wire_event *ev)
{
	size_t size = CHAT_WIRE_HEAD_MAX + ev->text_len + 1;
	struct job *j;
	int n;

	if (!chat_backend_up(b)) {
		atomic_fetch_add(&b->st_dropped, 1);
		return -ENOTCONN;
	}
	j = job_new(JOB_PUBLISH, size);
	if (!j)
		return -ENOMEM;
	snprintf(ev->instance, sizeof(ev->instance), "%s", b->instance);
	if (to)
		snprintf(j->to, sizeof(j->to), "%s", to);
	pthread_mutex_lock(&b->lock);
	ev->seq = b->seq + 1;
	n = chat_wire_encode(j->data, size, ev);
	if (n >= 0) {
		j->len = (size_t)n;
		n = enqueue_locked(b, j, true);
		if (n == 0)
			b->seq++;
	}
	pthread_mutex_unlock(&b->lock);
	if (n < 0) {
		if (n == -ENOBUFS)
			atomic_fetch_add(&b->st_dropped, 1);
		free(j);
		return n;
	}
	return 0;
}

int
chat_backend_publish(struct chat_backend *b, enum chat_wire_type t, const char *a,
		     const char *bb, const char *text, size_t text_len)
{
	struct chat_wire_event ev = {
		.type = t,
		.a = a,
		.a_len = a ? strlen(a) : 0,
		.b = bb,
		.b_len = bb ? strlen(bb) : 0,
		.text = text,
		.text_len = text ? text_len : 0,
	};

	if (t == CHAT_WIRE_PRIVMSG || t == CHAT_WIRE_HELLO || t == CHAT_WIRE_BYE ||
	    (unsigned)t >= _CHAT_WIRE_TYPE_MAX)
		return -EINVAL;
	return publish(b, NULL, &ev);
}

int
chat_backend_privmsg(struct chat_backend *b, const char *to_instance, const char *from,
		     const char *to, const char *text, size_t len)
{
	struct chat_wire_event ev = {
		.type = CHAT_WIRE_PRIVMSG,
		.a = from,
		.a_len = from ? strlen(from) : 0,
		.b = to,
		.b_len = to ? strlen(to) : 0,
		.text = text,
		.text_len = text ? len : 0,
	};

	if (!to_instance || !id_valid(to_instance, strlen(to_instance)))
		return -EINVAL;
	return publish(b, to_instance, &ev);
}
