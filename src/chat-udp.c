#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "chat-internal.h"
#include "chat.h"
#include "dgram.h"
#include "sanitize.h"
#include "util.h"

/* The UDP room is one flat block, placed by the caller anywhere (shared
 * memory for pre-forked workers): the header below, then the peer and
 * pending tables, two hash indexes and two line buffers, found through
 * offsets from the header. Nothing inside holds a pointer; tables refer
 * to each other by index. Slots of the two tables are handed out from a
 * free list or a high-water mark, so pages of a big, lightly used room are
 * never touched.
 *
 * Peers have proved they receive at their address (SPEC section 5, UDP
 * chat); pending entries are addresses we heard from that have not, yet.
 * Both carry the rate bucket of their address+port. */

#define NONE UINT32_MAX
#define REF_PENDING UINT32_C(0x80000000) /* in the address index */
#define PENDING_MIN 16
#define PENDING_TTL_USEC (60 * USEC_PER_SEC)
#define PEERS_MAX (UINT32_C(1) << 22)
#define TOKEN_BYTES 8
#define KEY_BYTES 20
#define MAGIC UINT32_C(0x43686155)

/* The address a datagram came from, as received (for replies). */
struct udp_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} u;
};

/* First member of peers and pending entries alike. */
struct udp_src {
	/* family (4 or 6), address (IPv4-mapped as IPv4), port: the
	 * identity of a peer. */
	uint8_t key[KEY_BYTES];
	struct udp_addr addr;
	/* The socket and address it last sent to; fd -1: not known. */
	struct dgram_local local;
	struct chat_bucket bucket;
};

struct udp_link {
	uint32_t prev, next;
};

struct udp_peer {
	struct udp_src src;
	uint64_t last_usec;
	struct udp_link join;   /* join order; .next links the free list */
	struct udp_link active; /* least recently heard from first */
	char nick[CHAT_NAME_MAX + 1];
};

struct udp_pending {
	struct udp_src src;
	uint64_t since_usec;
	struct udp_link age; /* oldest first; .next links the free list */
	bool has_token;
	uint8_t token[TOKEN_BYTES];
	char nick[CHAT_NAME_MAX + 1];
};

struct udp_list {
	uint32_t first, last, n;
};

struct chat_udp {
	pthread_mutex_t lock; /* process-shared, robust */
	uint32_t magic;
	bool shutdown;
	unsigned max_line, rate_limit, idle_timeout;
	struct listener_stats *stats; /* shared memory too, or NULL */
	uint32_t peer_cap, pend_cap, addr_cap, nick_cap;
	uint32_t peer_hw, peer_free, pend_hw, pend_free;
	struct udp_list joined, active, pending;
	uint64_t hash_key[2];
	size_t off_peers, off_pend, off_addr, off_nick, off_san, off_out;
	size_t san_size, out_size;
};

struct layout {
	uint32_t peer_cap, pend_cap, addr_cap, nick_cap;
	size_t off_peers, off_pend, off_addr, off_nick, off_san, off_out;
	size_t san_size, out_size, total;
};

/* What the shared command code gets as its room: the block plus the
 * transport of the current call. Lives on the stack, never in the block. */
struct udp_call {
	struct chat_udp *u;
	const struct chat_udp_transport *t;
	void *ctx;
};

typedef struct udp_link *(*link_fn)(struct chat_udp *u, uint32_t i);

static size_t
align64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static uint32_t
pow2_at_least(uint64_t n)
{
	uint32_t v = 16;

	while (v < n)
		v *= 2;
	return v;
}

static bool
layout_compute(const struct chat_settings *s, struct layout *l)
{
	size_t off;

	if (!s || s->max_clients == 0 || s->max_clients > PEERS_MAX || s->max_line == 0 ||
	    s->max_line > 1024 * 1024)
		return false;
	l->peer_cap = s->max_clients;
	l->pend_cap = MAX(PENDING_MIN, s->max_clients);
	l->addr_cap = pow2_at_least(2 * ((uint64_t)l->peer_cap + l->pend_cap));
	l->nick_cap = pow2_at_least(2 * (uint64_t)l->peer_cap);
	l->san_size = CHAT_SAN_SIZE(s->max_line);
	l->out_size = CHAT_OUT_SIZE(s->max_line);

	off = align64(sizeof(struct chat_udp));
	l->off_peers = off;
	off = align64(off + (size_t)l->peer_cap * sizeof(struct udp_peer));
	l->off_pend = off;
	off = align64(off + (size_t)l->pend_cap * sizeof(struct udp_pending));
	l->off_addr = off;
	off = align64(off + (size_t)l->addr_cap * sizeof(uint32_t));
	l->off_nick = off;
	off = align64(off + (size_t)l->nick_cap * sizeof(uint32_t));
	l->off_san = off;
	off = align64(off + l->san_size);
	l->off_out = off;
	l->total = align64(off + l->out_size);
	return true;
}

static struct udp_peer *
peers(struct chat_udp *u)
{
	return (struct udp_peer *)(void *)((char *)u + u->off_peers);
}

static struct udp_pending *
pendings(struct chat_udp *u)
{
	return (struct udp_pending *)(void *)((char *)u + u->off_pend);
}

static uint32_t *
addr_index(struct chat_udp *u)
{
	return (uint32_t *)(void *)((char *)u + u->off_addr);
}

static uint32_t *
nick_index(struct chat_udp *u)
{
	return (uint32_t *)(void *)((char *)u + u->off_nick);
}

static struct udp_link *
join_link(struct chat_udp *u, uint32_t i)
{
	return &peers(u)[i].join;
}

static struct udp_link *
active_link(struct chat_udp *u, uint32_t i)
{
	return &peers(u)[i].active;
}

static struct udp_link *
age_link(struct chat_udp *u, uint32_t i)
{
	return &pendings(u)[i].age;
}

static void
list_append(struct chat_udp *u, struct udp_list *l, link_fn f, uint32_t i)
{
	f(u, i)->prev = l->last;
	f(u, i)->next = NONE;
	if (l->last != NONE)
		f(u, l->last)->next = i;
	else
		l->first = i;
	l->last = i;
	l->n++;
}

static void
list_unlink(struct chat_udp *u, struct udp_list *l, link_fn f, uint32_t i)
{
	struct udp_link *k = f(u, i);

	if (k->prev != NONE)
		f(u, k->prev)->next = k->next;
	else
		l->first = k->next;
	if (k->next != NONE)
		f(u, k->next)->prev = k->prev;
	else
		l->last = k->prev;
	k->prev = k->next = NONE;
	l->n--;
}

static void
list_init(struct udp_list *l)
{
	l->first = l->last = NONE;
	l->n = 0;
}

/* ---- hash indexes: open addressing of index + 1, 0 = empty ---- */

static const uint8_t *
ref_key(struct chat_udp *u, uint32_t ref)
{
	if (ref & REF_PENDING)
		return pendings(u)[ref & ~REF_PENDING].src.key;
	return peers(u)[ref].src.key;
}

static uint32_t
addr_home(struct chat_udp *u, const uint8_t *key)
{
	return (uint32_t)chat_hash(u->hash_key, key, KEY_BYTES) & (u->addr_cap - 1);
}

static uint32_t
nick_home(struct chat_udp *u, const char *name)
{
	return (uint32_t)chat_name_hash(u->hash_key, name) & (u->nick_cap - 1);
}

static uint32_t
addr_slot_home(struct chat_udp *u, uint32_t v)
{
	return addr_home(u, ref_key(u, v - 1));
}

static uint32_t
nick_slot_home(struct chat_udp *u, uint32_t v)
{
	return nick_home(u, peers(u)[v - 1].nick);
}

static void
index_put(uint32_t *slots, uint32_t cap, uint32_t home, uint32_t v)
{
	uint32_t i = home;

	while (slots[i])
		i = (i + 1) & (cap - 1);
	slots[i] = v;
}

static void
index_remove(struct chat_udp *u, uint32_t *slots, uint32_t cap, uint32_t home, uint32_t v,
	     uint32_t (*home_of)(struct chat_udp *u, uint32_t v))
{
	uint32_t mask = cap - 1, i = home, j;

	while (slots[i] != v)
		i = (i + 1) & mask;
	/* Backward shift: no tombstones, probe runs stay short. */
	for (j = (i + 1) & mask; slots[j]; j = (j + 1) & mask) {
		uint32_t h = home_of(u, slots[j]);

		if (i <= j ? (h > i && h <= j) : (h > i || h <= j))
			continue;
		slots[i] = slots[j];
		i = j;
	}
	slots[i] = 0;
}

static uint32_t
addr_find(struct chat_udp *u, const uint8_t *key)
{
	uint32_t *slots = addr_index(u);

	for (uint32_t i = addr_home(u, key); slots[i]; i = (i + 1) & (u->addr_cap - 1))
		if (memcmp(ref_key(u, slots[i] - 1), key, KEY_BYTES) == 0)
			return slots[i] - 1;
	return NONE;
}

static void
addr_put(struct chat_udp *u, uint32_t ref)
{
	index_put(addr_index(u), u->addr_cap, addr_home(u, ref_key(u, ref)), ref + 1);
}

static void
addr_remove(struct chat_udp *u, uint32_t ref)
{
	index_remove(u, addr_index(u), u->addr_cap, addr_home(u, ref_key(u, ref)), ref + 1,
		     addr_slot_home);
}

static struct udp_peer *
nick_find(struct chat_udp *u, const char *name)
{
	uint32_t *slots = nick_index(u);

	for (uint32_t i = nick_home(u, name); slots[i]; i = (i + 1) & (u->nick_cap - 1))
		if (chat_name_equal(peers(u)[slots[i] - 1].nick, name))
			return &peers(u)[slots[i] - 1];
	return NULL;
}

static void
nick_put(struct chat_udp *u, uint32_t i)
{
	index_put(nick_index(u), u->nick_cap, nick_home(u, peers(u)[i].nick), i + 1);
}

static void
nick_remove(struct chat_udp *u, uint32_t i)
{
	index_remove(u, nick_index(u), u->nick_cap, nick_home(u, peers(u)[i].nick), i + 1,
		     nick_slot_home);
}

/* ---- slots ---- */

static uint32_t
peer_index(struct chat_udp *u, const void *m)
{
	return (uint32_t)((const struct udp_peer *)m - peers(u));
}

static uint32_t
peer_alloc(struct chat_udp *u)
{
	uint32_t i;

	if (u->peer_free != NONE) {
		i = u->peer_free;
		u->peer_free = peers(u)[i].join.next;
	} else if (u->peer_hw < u->peer_cap)
		i = u->peer_hw++;
	else
		return NONE;
	memset(&peers(u)[i], 0, sizeof(struct udp_peer));
	return i;
}

/* Take a peer out of the room, silently. */
static void
peer_forget(struct chat_udp *u, uint32_t i)
{
	addr_remove(u, i);
	nick_remove(u, i);
	list_unlink(u, &u->joined, join_link, i);
	list_unlink(u, &u->active, active_link, i);
	peers(u)[i].join.next = u->peer_free;
	u->peer_free = i;
}

static void
pending_forget(struct chat_udp *u, uint32_t i)
{
	addr_remove(u, i | REF_PENDING);
	list_unlink(u, &u->pending, age_link, i);
	pendings(u)[i].age.next = u->pend_free;
	u->pend_free = i;
}

static void
src_set_local(struct udp_src *src, const struct dgram_local *local)
{
	if (local)
		src->local = *local;
	else
		src->local = (struct dgram_local){ .fd = -1 };
}

static uint32_t
pending_new(struct chat_udp *u, const uint8_t *key, const union sockaddr_any *from,
	    const struct dgram_local *local, uint64_t now_usec)
{
	struct udp_pending *p;
	uint32_t i;

	if (u->pend_free == NONE && u->pend_hw == u->pend_cap)
		/* Full: the oldest pending entry makes room. */
		pending_forget(u, u->pending.first);
	if (u->pend_free != NONE) {
		i = u->pend_free;
		u->pend_free = pendings(u)[i].age.next;
	} else
		i = u->pend_hw++;

	p = &pendings(u)[i];
	memset(p, 0, sizeof(*p));
	memcpy(p->src.key, key, KEY_BYTES);
	memcpy(&p->src.addr, from, MIN((size_t)sockaddr_len(from), sizeof(p->src.addr)));
	src_set_local(&p->src, local);
	chat_bucket_init(&p->src.bucket, u->rate_limit, now_usec);
	p->since_usec = now_usec;
	list_append(u, &u->pending, age_link, i);
	addr_put(u, i | REF_PENDING);
	return i;
}

static bool
make_key(const union sockaddr_any *from, uint8_t key[KEY_BYTES])
{
	uint8_t addr[16];
	uint16_t port;
	int family;

	family = sockaddr_addr_bytes(from, addr);
	if (family == 0)
		return false;
	port = sockaddr_port(from);
	memset(key, 0, KEY_BYTES);
	key[0] = family == AF_INET ? 4 : 6;
	memcpy(key + 1, addr, family == AF_INET ? 4 : 16);
	key[17] = (uint8_t)(port >> 8);
	key[18] = (uint8_t)port;
	return true;
}

static void
src_sockaddr(const struct udp_src *src, union sockaddr_any *ret)
{
	memset(ret, 0, sizeof(*ret));
	memcpy(ret, &src->addr, sizeof(src->addr));
}

/* ---- ops for the shared command code; the lock is held ---- */

static void
udp_send(void *room, void *m, const char *line, size_t len)
{
	struct udp_call *call = room;
	const struct udp_src *src = m;
	union sockaddr_any to;

	src_sockaddr(src, &to);
	call->t->send_to(call->ctx, &to, src->local.fd >= 0 ? &src->local : NULL, line, len);
}

static void
udp_broadcast(void *room, void *except, const char *line, size_t len)
{
	struct udp_call *call = room;
	struct chat_udp *u = call->u;

	for (uint32_t i = u->joined.first; i != NONE; i = peers(u)[i].join.next)
		if (&peers(u)[i] != except)
			udp_send(room, &peers(u)[i], line, len);
}

static void *
udp_find(void *room, const char *name)
{
	return nick_find(((struct udp_call *)room)->u, name);
}

static const char *
udp_nick(void *room, void *m)
{
	(void)room;
	return ((struct udp_peer *)m)->nick;
}

static const char *
udp_host(void *room, void *m, char buf[CHAT_HOST_MAX])
{
	union sockaddr_any sa;

	(void)room;
	src_sockaddr(m, &sa);
	return sockaddr_host_to_string(&sa, buf, CHAT_HOST_MAX);
}

static void *
udp_first(void *room)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;

	return u->joined.first == NONE ? NULL : &peers(u)[u->joined.first];
}

static void *
udp_next(void *room, void *m)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;
	uint32_t next = ((struct udp_peer *)m)->join.next;

	return next == NONE ? NULL : &peers(u)[next];
}

static unsigned
udp_online(void *room)
{
	return ((struct udp_call *)room)->u->joined.n;
}

static void
udp_rename(void *room, void *m, const char *name)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;
	uint32_t i = peer_index(u, m);

	nick_remove(u, i);
	snprintf(peers(u)[i].nick, sizeof(peers(u)[i].nick), "%s", name);
	nick_put(u, i);
}

static void
udp_remove(void *room, void *m)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;

	peer_forget(u, peer_index(u, m));
}

static void
udp_close(void *room, void *m, const char *reason)
{
	/* Nothing to close: a forgotten peer is a stranger again. */
	(void)room;
	(void)m;
	(void)reason;
}

static const struct chat_ops udp_ops = {
	.send = udp_send,
	.broadcast = udp_broadcast,
	.find = udp_find,
	.nick = udp_nick,
	.host = udp_host,
	.first = udp_first,
	.next = udp_next,
	.online = udp_online,
	.rename = udp_rename,
	.remove = udp_remove,
	.close = udp_close,
};

static struct chat_ctx
udp_ctx(struct udp_call *call)
{
	struct chat_udp *u = call->u;

	return (struct chat_ctx){
		.ops = &udp_ops,
		.room = call,
		.out = (char *)u + u->off_out,
		.out_size = u->out_size,
		.max_line = u->max_line,
		.stats = u->stats,
	};
}

static void
udp_lock(struct chat_udp *u)
{
	/* A worker that died holding the lock must not stop the others. */
	if (pthread_mutex_lock(&u->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&u->lock);
}

static void
udp_unlock(struct chat_udp *u)
{
	pthread_mutex_unlock(&u->lock);
}

/* ---- public ---- */

size_t
chat_udp_size(const struct chat_settings *s)
{
	struct layout l;

	if (!layout_compute(s, &l))
		return 0;
	return l.total;
}

int
chat_udp_init(struct chat_udp *u, const struct chat_settings *s)
{
	pthread_mutexattr_t attr;
	struct layout l;
	int r;

	if (!layout_compute(s, &l))
		return -EINVAL;

	memset(u, 0, sizeof(*u));
	u->max_line = s->max_line;
	u->rate_limit = s->rate_limit;
	u->idle_timeout = s->idle_timeout;
	u->stats = s->stats;
	u->peer_cap = l.peer_cap;
	u->pend_cap = l.pend_cap;
	u->addr_cap = l.addr_cap;
	u->nick_cap = l.nick_cap;
	u->peer_free = u->pend_free = NONE;
	list_init(&u->joined);
	list_init(&u->active);
	list_init(&u->pending);
	u->off_peers = l.off_peers;
	u->off_pend = l.off_pend;
	u->off_addr = l.off_addr;
	u->off_nick = l.off_nick;
	u->off_san = l.off_san;
	u->off_out = l.off_out;
	u->san_size = l.san_size;
	u->out_size = l.out_size;
	memset(addr_index(u), 0, (size_t)u->addr_cap * sizeof(uint32_t));
	memset(nick_index(u), 0, (size_t)u->nick_cap * sizeof(uint32_t));
	chat_hash_key(u->hash_key);

	r = -pthread_mutexattr_init(&attr);
	if (r < 0)
		return r;
	r = -pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (r == 0)
		r = -pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (r == 0)
		r = -pthread_mutex_init(&u->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (r < 0)
		return r;
	u->magic = MAGIC;
	return 0;
}

void
chat_udp_done(struct chat_udp *u)
{
	if (!u || u->magic != MAGIC)
		return;
	u->magic = 0;
	pthread_mutex_destroy(&u->lock);
}

static bool
token_matches(const struct udp_pending *p, const char *s, size_t n)
{
	uint8_t diff = 0;

	if (!p->has_token || n != 2 * TOKEN_BYTES)
		return false;
	for (size_t i = 0; i < TOKEN_BYTES; i++) {
		int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		diff |= (uint8_t)(p->token[i] ^ (uint8_t)(hi << 4 | lo));
	}
	return diff == 0;
}

static void
pending_join(struct udp_call *call, uint32_t pi, const struct chat_cmd_args *a,
	     uint64_t now_usec)
{
	struct chat_ctx c = udp_ctx(call);
	struct chat_udp *u = call->u;
	struct udp_pending *p = &pendings(u)[pi];
	struct udp_peer *peer;
	uint32_t i;

	if (!token_matches(p, a->arg, a->arg_len)) {
		p->has_token = false;
		chat_send_line(&c, p, "! wrong token; send your name again");
		return;
	}
	if (u->joined.n >= u->peer_cap) {
		chat_send_line(&c, p, "! server full");
		return;
	}
	if (nick_find(u, p->nick)) {
		/* Somebody completed a join with that name first. */
		p->has_token = false;
		chat_send_taken(&c, p, p->nick);
		return;
	}

	i = peer_alloc(u);
	peer = &peers(u)[i];
	peer->src = p->src;
	memcpy(peer->nick, p->nick, sizeof(peer->nick));
	peer->last_usec = now_usec;
	pending_forget(u, pi);
	addr_put(u, i);
	nick_put(u, i);
	list_append(u, &u->joined, join_link, i);
	list_append(u, &u->active, active_link, i);
	chat_announce_join(&c, peer);
}

static void
send_instruction(const struct chat_ctx *c, struct udp_call *call, struct udp_pending *p)
{
	char hex[2 * TOKEN_BYTES + 1];

	for (size_t i = 0; i < TOKEN_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", p->token[i]);
	c->ops->send(call, p, c->out,
		     (size_t)snprintf(c->out, c->out_size, "* to join as %s, send: /join %s\r\n",
				      p->nick, hex));
}

static void
pending_name(struct udp_call *call, uint32_t pi, const char *line, size_t n, uint64_t now_usec)
{
	struct chat_ctx c = udp_ctx(call);
	struct chat_udp *u = call->u;
	struct udp_pending *p = &pendings(u)[pi];
	char name[CHAT_NAME_MAX + 1];
	const char *cand;
	size_t cand_len;

	chat_name_candidate(line, n, &cand, &cand_len);
	if (p->has_token && !chat_name_valid(cand, cand_len)) {
		/* Not a name: a /who, or a line typed before the /join. The
		 * token stays good; say again how to use it. */
		send_instruction(&c, call, p);
		return;
	}
	/* A taken name, or a full room, leaves the pending name and its
	 * token as they were. */
	if (!chat_name_attempt(&c, p, line, n, name))
		return;
	if (u->joined.n >= u->peer_cap) {
		chat_send_line(&c, p, "! server full");
		return;
	}
	/* The token proves the address, not the name: a new name replaces
	 * the pending one and keeps it, so a reply lost, a greeting that
	 * looks like a name or a change of mind never spoils a token the
	 * user already has. */
	if (!p->has_token) {
		if (getrandom(p->token, sizeof(p->token), GRND_NONBLOCK) != sizeof(p->token)) {
			chat_send_line(&c, p, "! server busy; try again later");
			return;
		}
		p->has_token = true;
	}
	memcpy(p->nick, name, sizeof(p->nick));
	/* Restart the 60 s the entry lives. */
	p->since_usec = now_usec;
	list_unlink(u, &u->pending, age_link, pi);
	list_append(u, &u->pending, age_link, pi);
	send_instruction(&c, call, p);
}

/* Exactly one reply to every datagram of a stranger. */
static void
pending_datagram(struct udp_call *call, uint32_t pi, const uint8_t *p, size_t n,
		 uint64_t now_usec)
{
	struct chat_ctx c = udp_ctx(call);
	struct chat_udp *u = call->u;
	struct udp_pending *pend = &pendings(u)[pi];
	char *san = (char *)u + u->off_san;
	struct chat_cmd_args a;
	size_t len;

	if (u->rate_limit > 0 && !chat_bucket_take(&pend->src.bucket, u->rate_limit, now_usec)) {
		chat_send_line(&c, pend, "! slow down");
		chat_count_rate_limited(u->stats);
		return;
	}
	if (n > u->max_line) {
		chat_send_too_long(&c, pend);
		return;
	}
	len = sanitize_line(p, n, san, u->san_size);
	if (chat_cmd_parse(san, len, &a) == CHAT_CMD_JOIN)
		pending_join(call, pi, &a, now_usec);
	else
		pending_name(call, pi, san, len, now_usec);
}

static void
peer_datagram(struct udp_call *call, uint32_t i, const uint8_t *p, size_t n, uint64_t now_usec)
{
	struct chat_ctx c = udp_ctx(call);
	struct chat_udp *u = call->u;
	struct udp_peer *peer = &peers(u)[i];
	char *san = (char *)u + u->off_san;
	struct chat_cmd_args a;
	size_t len;

	peer->last_usec = now_usec;
	list_unlink(u, &u->active, active_link, i);
	list_append(u, &u->active, active_link, i);

	if (u->rate_limit > 0 && !chat_bucket_take(&peer->src.bucket, u->rate_limit, now_usec)) {
		chat_send_line(&c, peer, "! slow down");
		chat_count_rate_limited(u->stats);
		return;
	}
	if (n > u->max_line) {
		chat_send_too_long(&c, peer);
		return;
	}
	len = sanitize_line(p, n, san, u->san_size);
	if (chat_line_blank(san, len))
		return;
	if (chat_cmd_parse(san, len, &a) == CHAT_CMD_JOIN)
		/* Our "you are" reply was probably lost: say it again. */
		chat_announce_self(&c, peer);
	else
		chat_handle_line(&c, peer, san, len);
}

void
chat_udp_datagram(struct chat_udp *u, const struct chat_udp_transport *t, void *ctx,
		  const union sockaddr_any *from, const struct dgram_local *local,
		  const uint8_t *p, size_t n, uint64_t now_usec)
{
	struct udp_call call = { .u = u, .t = t, .ctx = ctx };
	uint8_t key[KEY_BYTES];
	uint32_t ref;

	if (!make_key(from, key))
		return;
	/* One datagram, one line: a trailing LF or CRLF is no part of it. */
	if (n > 0 && p[n - 1] == '\n') {
		n--;
		if (n > 0 && p[n - 1] == '\r')
			n--;
	}

	udp_lock(u);
	if (u->shutdown)
		goto out;
	ref = addr_find(u, key);
	if (ref != NONE && !(ref & REF_PENDING)) {
		/* The peer may have moved to another of our addresses. */
		src_set_local(&peers(u)[ref].src, local);
		peer_datagram(&call, ref, p, n, now_usec);
		goto out;
	}
	if (ref != NONE &&
	    pendings(u)[ref & ~REF_PENDING].since_usec + PENDING_TTL_USEC <= now_usec) {
		pending_forget(u, ref & ~REF_PENDING);
		ref = NONE;
	}
	/* A blank datagram from a stranger is no name attempt: answering it
	 * would hand a forged source a reply bigger than what it sent. */
	if (ref == NONE && chat_line_blank((const char *)p, n))
		goto out;
	if (ref == NONE)
		ref = pending_new(u, key, from, local, now_usec) | REF_PENDING;
	else
		src_set_local(&pendings(u)[ref & ~REF_PENDING].src, local);
	pending_datagram(&call, ref & ~REF_PENDING, p, n, now_usec);
out:
	chat_count_members(u->stats, u->joined.n, true);
	udp_unlock(u);
}

uint64_t
chat_udp_tick(struct chat_udp *u, const struct chat_udp_transport *t, void *ctx,
	      uint64_t now_usec)
{
	struct udp_call call = { .u = u, .t = t, .ctx = ctx };
	struct chat_ctx c = udp_ctx(&call);
	uint64_t idle = (uint64_t)u->idle_timeout * USEC_PER_SEC, next = 0;

	udp_lock(u);
	if (u->shutdown)
		goto out;
	while (u->pending.first != NONE &&
	       pendings(u)[u->pending.first].since_usec + PENDING_TTL_USEC <= now_usec)
		pending_forget(u, u->pending.first);
	while (idle > 0 && u->active.first != NONE &&
	       peers(u)[u->active.first].last_usec + idle <= now_usec) {
		char name[CHAT_NAME_MAX + 1];

		memcpy(name, peers(u)[u->active.first].nick, sizeof(name));
		peer_forget(u, u->active.first);
		chat_announce_left(&c, name, NULL, 0);
	}
	if (u->pending.first != NONE)
		next = pendings(u)[u->pending.first].since_usec + PENDING_TTL_USEC;
	if (idle > 0 && u->active.first != NONE) {
		uint64_t d = peers(u)[u->active.first].last_usec + idle;

		next = next ? MIN(next, d) : d;
	}
out:
	chat_count_members(u->stats, u->joined.n, true);
	udp_unlock(u);
	return next;
}

void
chat_udp_shutdown(struct chat_udp *u, const struct chat_udp_transport *t, void *ctx)
{
	struct udp_call call = { .u = u, .t = t, .ctx = ctx };
	struct chat_ctx c = udp_ctx(&call);

	udp_lock(u);
	if (!u->shutdown) {
		u->shutdown = true;
		for (uint32_t i = u->joined.first; i != NONE; i = peers(u)[i].join.next)
			chat_send_line(&c, &peers(u)[i], "* server shutting down");
	}
	udp_unlock(u);
}

unsigned
chat_udp_online(struct chat_udp *u)
{
	unsigned n;

	udp_lock(u);
	n = u->joined.n;
	udp_unlock(u);
	return n;
}
