#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "chat-backend.h"
#include "chat-internal.h"
#include "chat-wire.h"
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
 * Both carry the rate bucket of their address+port.
 *
 * With a backend (SPEC section 12) the block also holds the members of
 * other instances (peers with `remote` set: no address, on u->remotes,
 * never sent to) and an outbound ring: whatever a worker tells the room
 * (events to publish, name claims and releases, private messages) is
 * appended there under the lock, in order, and an eventfd wakes the relay
 * thread of the process that started the backend (chat_udp_backend_start:
 * the listener's process, the parent of fork's workers), which hands it
 * to the chat_backend. So pre-forked workers, threads and event loops
 * reach the backend one way; what comes back from it (the backend's
 * thread, same process) takes the lock and sends datagrams through the
 * transport given to chat_udp_backend_start().
 *
 * A claim is a token: a sequence number, whether it is a pending entry's
 * (its first name) or a peer's (/nick, again after an outage), and the
 * slot. Its state says whether the backend has it yet: only a claim the
 * backend accepted is ever released, so a claim refused at once (a name
 * being claimed through this instance already) never gives up somebody
 * else's name. */

#define NONE UINT32_MAX
#define REF_PENDING UINT32_C(0x80000000) /* in the address index */
#define PENDING_MIN 16
#define PENDING_TTL_USEC (60 * USEC_PER_SEC)
#define PEERS_MAX (UINT32_C(1) << 22)
#define TOKEN_BYTES 8
#define KEY_BYTES 20
#define MAGIC UINT32_C(0x43686155)
/* With a backend: members of other instances remembered (as many as a
 * stream room remembers), and the outbound ring's size. */
#define REMOTE_MAX 65536
#define RING_MIN (256 * 1024)
/* Tokens: SEQ << 23 | TOKEN_PEER? | slot (below PEERS_MAX). */
#define TOKEN_PEER (UINT64_C(1) << 22)
#define TOKEN_SLOT (TOKEN_PEER - 1)
#define TOKEN_SEQ_SHIFT 23

enum claim_state {
	CLAIM_NONE,
	CLAIM_DEFERRED,  /* asked before the backend's first word */
	CLAIM_QUEUED,    /* in the ring, not handed to the backend yet */
	CLAIM_SUBMITTED, /* the backend has it: released if given up */
};

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
	/* With a backend. remote: a member of another instance (on
	 * u->remotes, not on joined or active, not in the address index). */
	bool remote;
	/* A claim of claim_name under way: a /nick, or the name again after
	 * an outage (reclaim, suffix the NAME-N tried). */
	uint8_t claim;
	bool reclaim;
	unsigned suffix;
	uint64_t token;
	char claim_name[CHAT_NAME_MAX + 1];
	char instance[CHAT_WIRE_INSTANCE_LEN + 1]; /* remote */
	char host[CHAT_HOST_MAX];                  /* remote, as its instance said */
};

struct udp_pending {
	struct udp_src src;
	uint64_t since_usec;
	struct udp_link age; /* oldest first; .next links the free list */
	bool has_token;
	uint8_t token[TOKEN_BYTES];
	char nick[CHAT_NAME_MAX + 1];
	/* With a backend: nick is claimed (after a good /join). */
	uint8_t claim;
	uint64_t claim_token;
};

struct udp_list {
	uint32_t first, last, n;
};

struct chat_udp {
	pthread_mutex_t lock; /* process-shared, robust */
	/* chat_udp_order(): held by a worker from its receive to the end of
	 * that datagram's handling, before lock (never taken with lock held). */
	pthread_mutex_t order_lock;
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
	/* peer_cap = local_cap (max_clients) + remote_cap. */
	uint32_t local_cap, remote_cap;
	/* SPEC 12; all false/0 without a backend. */
	bool has_backend, backend_up, backend_known, leaves_sent;
	struct udp_list remotes;
	uint64_t next_claim;
	int wake_fd; /* the relay's eventfd: open in every worker */
	size_t off_ring, ring_size;
	uint64_t ring_head, ring_tail; /* bytes appended, bytes taken */
	uint64_t ring_dropped;
};

struct layout {
	uint32_t peer_cap, pend_cap, addr_cap, nick_cap, local_cap, remote_cap;
	size_t off_peers, off_pend, off_addr, off_nick, off_san, off_out, off_ring;
	size_t san_size, out_size, ring_size, total;
};

/* One entry of the outbound ring; a, b NUL-terminated, text follows.
 * Records are 8-aligned and never wrap: one that does not fit before the
 * end starts at 0, after a PAD record (or, with less room than a header
 * left, after nothing: the reader skips such a tail). */
enum ring_kind { REC_PAD, REC_PUBLISH, REC_CLAIM, REC_RELEASE, REC_PRIVMSG };

struct ring_rec {
	uint32_t len; /* the whole record */
	uint8_t kind;
	uint8_t type; /* REC_PUBLISH: enum chat_wire_type */
	uint32_t text_len;
	uint64_t token; /* REC_CLAIM */
	char instance[CHAT_WIRE_INSTANCE_LEN + 1]; /* REC_PRIVMSG: to */
	char a[CHAT_NAME_MAX + 1];
	char b[CHAT_HOST_MAX + 1];
};

/* What the shared command code gets as its room: the block plus the
 * transport of the current call. Lives on the stack, never in the block. */
struct udp_call {
	struct chat_udp *u;
	const struct chat_udp_transport *t;
	void *ctx;
	/* The /quit being handled (its reason goes to the others). */
	const char *quit_reason;
	size_t quit_reason_len;
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

	if (!s || s->max_clients == 0 || s->max_clients > PEERS_MAX - REMOTE_MAX ||
	    s->max_line == 0 || s->max_line > 1024 * 1024)
		return false;
	l->local_cap = s->max_clients;
	l->remote_cap = s->backend ? REMOTE_MAX : 0;
	l->peer_cap = l->local_cap + l->remote_cap;
	l->pend_cap = MAX(PENDING_MIN, s->max_clients);
	l->addr_cap = pow2_at_least(2 * ((uint64_t)l->local_cap + l->pend_cap));
	l->nick_cap = pow2_at_least(2 * (uint64_t)l->peer_cap);
	l->san_size = CHAT_SAN_SIZE(s->max_line);
	l->out_size = CHAT_OUT_SIZE(s->max_line);
	/* Room for 4 of the longest records at least. */
	l->ring_size = 0;
	if (s->backend)
		l->ring_size = align64(MAX((size_t)RING_MIN,
					   4 * (sizeof(struct ring_rec) + l->san_size + 8)));

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
	off = align64(off + l->out_size);
	l->off_ring = off;
	l->total = align64(off + l->ring_size);
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

static void ring_release(struct chat_udp *u, const char *name);

/* Take a peer out of the room, silently. A claim the backend has is given
 * up; the caller publishes the leave and releases the peer's name. */
static void
peer_forget(struct chat_udp *u, uint32_t i)
{
	if (peers(u)[i].claim == CLAIM_SUBMITTED)
		ring_release(u, peers(u)[i].claim_name);
	peers(u)[i].claim = CLAIM_NONE;
	addr_remove(u, i);
	nick_remove(u, i);
	list_unlink(u, &u->joined, join_link, i);
	list_unlink(u, &u->active, active_link, i);
	peers(u)[i].join.next = u->peer_free;
	u->peer_free = i;
}

/* A member of another instance, out of the room, silently. */
static void
remote_forget(struct chat_udp *u, uint32_t i)
{
	nick_remove(u, i);
	list_unlink(u, &u->remotes, join_link, i);
	peers(u)[i].remote = false;
	peers(u)[i].join.next = u->peer_free;
	u->peer_free = i;
}

static void
pending_forget(struct chat_udp *u, uint32_t i)
{
	if (pendings(u)[i].claim == CLAIM_SUBMITTED)
		ring_release(u, pendings(u)[i].nick);
	pendings(u)[i].claim = CLAIM_NONE;
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

/* ---- backend: the outbound ring; the lock is held ---- */

static void
ring_wake(struct chat_udp *u)
{
	uint64_t one = 1;

	/* Only EAGAIN (a counter near 2^64) can fail it: the relay is
	 * awake then anyway. */
	(void)!write(u->wake_fd, &one, sizeof(one));
}

static struct ring_rec *
ring_at(struct chat_udp *u, uint64_t pos)
{
	return (struct ring_rec *)(void *)((char *)u + u->off_ring + pos % u->ring_size);
}

/* Append one record; false when the ring is full (the caller treats it
 * as the backend being unable to take it: SPEC 12 lets events be lost). */
static bool
ring_put(struct chat_udp *u, const struct ring_rec *h, const char *text, size_t text_len)
{
	size_t need = (sizeof(*h) + text_len + 7) & ~(size_t)7;
	size_t pos = (size_t)(u->ring_head % u->ring_size), pad = 0;
	bool was_empty = u->ring_head == u->ring_tail;
	struct ring_rec *r;

	if (!u->has_backend || u->wake_fd < 0)
		return false;
	if (u->ring_size - pos < need)
		pad = u->ring_size - pos;
	if (need > u->ring_size / 2 ||
	    u->ring_size - (size_t)(u->ring_head - u->ring_tail) < pad + need) {
		u->ring_dropped++;
		return false;
	}
	if (pad >= sizeof(*h)) {
		r = ring_at(u, u->ring_head);
		r->len = (uint32_t)pad;
		r->kind = REC_PAD;
	}
	u->ring_head += pad;
	r = ring_at(u, u->ring_head);
	*r = *h;
	r->len = (uint32_t)need;
	r->text_len = (uint32_t)text_len;
	if (text_len)
		memcpy(r + 1, text, text_len);
	u->ring_head += need;
	if (was_empty)
		ring_wake(u);
	return true;
}

static void
rec_set(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

static bool
ring_publish(struct chat_udp *u, enum chat_wire_type t, const char *a, const char *b,
	     const char *text, size_t len)
{
	struct ring_rec h = { .kind = REC_PUBLISH, .type = (uint8_t)t };

	/* Stopping: our leaves are out, nothing follows them. */
	if (!u->has_backend || u->leaves_sent)
		return false;
	rec_set(h.a, sizeof(h.a), a);
	rec_set(h.b, sizeof(h.b), b);
	return ring_put(u, &h, text, text ? len : 0);
}

static void
ring_release(struct chat_udp *u, const char *name)
{
	struct ring_rec h = { .kind = REC_RELEASE };

	if (!u->has_backend)
		return;
	rec_set(h.a, sizeof(h.a), name);
	/* Full: the name's key expires by itself after the key ttl. */
	(void)ring_put(u, &h, NULL, 0);
}

static bool
ring_privmsg(struct chat_udp *u, const char *instance, const char *from, const char *to,
	     const char *text, size_t len)
{
	struct ring_rec h = { .kind = REC_PRIVMSG };

	rec_set(h.instance, sizeof(h.instance), instance);
	rec_set(h.a, sizeof(h.a), from);
	rec_set(h.b, sizeof(h.b), to);
	return ring_put(u, &h, text, len);
}

static uint64_t
claim_token(struct chat_udp *u, bool peer, uint32_t slot)
{
	return ++u->next_claim << TOKEN_SEQ_SHIFT | (peer ? TOKEN_PEER : 0) | slot;
}

/* Queue a claim of name for host; false: the ring is full. */
static bool
ring_claim(struct chat_udp *u, const char *name, const char *host, uint64_t token)
{
	struct ring_rec h = { .kind = REC_CLAIM, .token = token };

	rec_set(h.a, sizeof(h.a), name);
	rec_set(h.b, sizeof(h.b), host);
	return ring_put(u, &h, NULL, 0);
}

/* ---- ops for the shared command code; the lock is held ---- */

/* m is a peer or a pending entry: a member of another instance? */
static bool
is_remote(struct chat_udp *u, const void *m)
{
	const struct udp_peer *p = m;

	return p >= peers(u) && p < peers(u) + u->peer_cap && p->remote;
}

static void
peer_host(const struct udp_peer *p, char buf[CHAT_HOST_MAX])
{
	union sockaddr_any sa;

	memset(&sa, 0, sizeof(sa));
	memcpy(&sa, &p->src.addr, sizeof(p->src.addr));
	if (!sockaddr_host_to_string(&sa, buf, CHAT_HOST_MAX))
		snprintf(buf, CHAT_HOST_MAX, "?");
}

/* A peer of ours with a name leaves the room for everyone. */
static void
publish_leave(struct chat_udp *u, struct udp_peer *p, const char *reason, size_t len)
{
	if (!u->has_backend || u->leaves_sent)
		return;
	(void)ring_publish(u, CHAT_WIRE_LEAVE, p->nick, NULL, reason, len);
	ring_release(u, p->nick);
}

static void
udp_send(void *room, void *m, const char *line, size_t len)
{
	struct udp_call *call = room;
	const struct udp_src *src = m;
	union sockaddr_any to;

	/* A member of another instance hears it from its own (send_private
	 * sees to that); nothing else is ever sent to one. */
	if (is_remote(call->u, m))
		return;
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

	if (is_remote(((struct udp_call *)room)->u, m))
		return ((struct udp_peer *)m)->host;
	src_sockaddr(m, &sa);
	return sockaddr_host_to_string(&sa, buf, CHAT_HOST_MAX);
}

/* Our peers in join order, then those of other instances. */
static void *
udp_first(void *room)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;
	uint32_t i = u->joined.first != NONE ? u->joined.first : u->remotes.first;

	return i == NONE ? NULL : &peers(u)[i];
}

static void *
udp_next(void *room, void *m)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;
	const struct udp_peer *p = m;
	uint32_t next = p->join.next;

	if (next == NONE && !p->remote)
		next = u->remotes.first;
	return next == NONE ? NULL : &peers(u)[next];
}

static unsigned
udp_online(void *room)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;

	return u->joined.n + u->remotes.n;
}

static void
udp_rename(void *room, void *m, const char *name)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;
	uint32_t i = peer_index(u, m);
	char old[CHAT_NAME_MAX + 1];

	memcpy(old, peers(u)[i].nick, sizeof(old));
	nick_remove(u, i);
	snprintf(peers(u)[i].nick, sizeof(peers(u)[i].nick), "%s", name);
	nick_put(u, i);
	if (u->has_backend) {
		(void)ring_publish(u, CHAT_WIRE_NICK, old, name, NULL, 0);
		if (!chat_name_equal(old, name))
			ring_release(u, old);
	}
}

static void
udp_remove(void *room, void *m)
{
	struct udp_call *call = room;
	struct chat_udp *u = call->u;

	publish_leave(u, m, call->quit_reason, call->quit_reason_len);
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

static void
send_unavailable(struct udp_call *call, void *m);

static bool
udp_claim_nick(void *room, void *m, const char *name)
{
	struct udp_call *call = room;
	struct chat_udp *u = call->u;
	struct udp_peer *p = m;
	char host[CHAT_HOST_MAX];
	uint64_t token;

	if (!u->has_backend)
		return false;
	/* Another case of one's own name: the claim is ours already. */
	if (chat_name_equal(p->nick, name))
		return false;
	/* One claim at a time (its own name again after an outage, or a
	 * /nick not answered yet). */
	token = claim_token(u, true, peer_index(u, p));
	peer_host(p, host);
	if (p->claim != CLAIM_NONE || !u->backend_up || !ring_claim(u, name, host, token)) {
		send_unavailable(call, p);
		return true;
	}
	p->claim = CLAIM_QUEUED;
	p->reclaim = false;
	p->token = token;
	snprintf(p->claim_name, sizeof(p->claim_name), "%s", name);
	return true;
}

static bool
udp_send_private(void *room, void *from, void *to, const char *text, size_t len)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;
	struct udp_peer *t = to, *f = from;

	if (!t->remote)
		return false;
	/* Down or full: lost, as SPEC 12 lets it be. */
	(void)ring_privmsg(u, t->instance, f->nick, t->nick, text, len);
	return true;
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
	.claim_nick = udp_claim_nick,
	.send_private = udp_send_private,
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
	u->local_cap = l.local_cap;
	u->remote_cap = l.remote_cap;
	list_init(&u->remotes);
	u->has_backend = s->backend != NULL;
	u->wake_fd = -1;
	u->off_ring = l.off_ring;
	u->ring_size = l.ring_size;
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
	if (r == 0) {
		r = -pthread_mutex_init(&u->order_lock, &attr);
		if (r < 0)
			pthread_mutex_destroy(&u->lock);
	}
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
	pthread_mutex_destroy(&u->order_lock);
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

/* Pending entry pi becomes a peer with its name. */
static void
join_now(struct udp_call *call, uint32_t pi, uint64_t now_usec)
{
	struct chat_ctx c = udp_ctx(call);
	struct chat_udp *u = call->u;
	struct udp_pending *p = &pendings(u)[pi];
	struct udp_peer *peer;
	char host[CHAT_HOST_MAX];
	uint32_t i;

	i = peer_alloc(u);
	peer = &peers(u)[i];
	peer->src = p->src;
	memcpy(peer->nick, p->nick, sizeof(peer->nick));
	peer->last_usec = now_usec;
	/* Its claim is the peer's name now: not released with the entry. */
	p->claim = CLAIM_NONE;
	pending_forget(u, pi);
	addr_put(u, i);
	nick_put(u, i);
	list_append(u, &u->joined, join_link, i);
	list_append(u, &u->active, active_link, i);
	chat_announce_join(&c, peer);
	if (u->has_backend) {
		peer_host(peer, host);
		(void)ring_publish(u, CHAT_WIRE_JOIN, peer->nick, host, NULL, 0);
	}
}

/* SPEC 12: the backend cannot be asked; a newcomer is let go. */
static void
send_unavailable(struct udp_call *call, void *m)
{
	struct chat_ctx c = udp_ctx(call);

	chat_send_line(&c, m, "! room unavailable, try again later");
}

static void
pending_unavailable(struct udp_call *call, uint32_t pi)
{
	send_unavailable(call, &pendings(call->u)[pi]);
	pending_forget(call->u, pi);
}

/* A good /join with a backend: the room's name first; "you are" once
 * the backend says so (claim_result). */
static void
pending_claim(struct udp_call *call, uint32_t pi)
{
	struct chat_udp *u = call->u;
	struct udp_pending *p = &pendings(u)[pi];
	char host[CHAT_HOST_MAX];
	union sockaddr_any sa;
	uint64_t token;

	if (!u->backend_known) {
		/* Its first connection is under way: wait for up or down. */
		p->claim = CLAIM_DEFERRED;
		return;
	}
	token = claim_token(u, false, pi);
	src_sockaddr(&p->src, &sa);
	if (!sockaddr_host_to_string(&sa, host, sizeof(host)))
		snprintf(host, sizeof(host), "?");
	if (!u->backend_up || !ring_claim(u, p->nick, host, token)) {
		pending_unavailable(call, pi);
		return;
	}
	p->claim = CLAIM_QUEUED;
	p->claim_token = token;
}

static void
pending_join(struct udp_call *call, uint32_t pi, const struct chat_cmd_args *a,
	     uint64_t now_usec)
{
	struct chat_ctx c = udp_ctx(call);
	struct chat_udp *u = call->u;
	struct udp_pending *p = &pendings(u)[pi];

	if (!token_matches(p, a->arg, a->arg_len)) {
		p->has_token = false;
		chat_send_line(&c, p, "! wrong token; send your name again");
		return;
	}
	if (u->joined.n >= u->local_cap) {
		chat_send_line(&c, p, "! server full");
		return;
	}
	if (nick_find(u, p->nick)) {
		/* Somebody completed a join with that name first. */
		p->has_token = false;
		chat_send_taken(&c, p, p->nick);
		return;
	}

	if (u->has_backend) {
		pending_claim(call, pi);
		return;
	}
	join_now(call, pi, now_usec);
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
	if (u->joined.n >= u->local_cap) {
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

	/* Its /join is being answered (the name is claimed): what it sends
	 * meanwhile is not. */
	if (pend->claim != CLAIM_NONE)
		return;
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
	enum chat_cmd cmd;
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
	cmd = chat_cmd_parse(san, len, &a);
	switch (cmd) {
	case CHAT_CMD_JOIN:
		/* Our "you are" reply was probably lost: say it again. */
		chat_announce_self(&c, peer);
		break;
	case CHAT_CMD_TEXT:
	case CHAT_CMD_ME:
		chat_handle_line(&c, peer, san, len);
		if (a.text_len > 0)
			(void)ring_publish(u, cmd == CHAT_CMD_ME ? CHAT_WIRE_ME : CHAT_WIRE_MSG, peer->nick,
					   NULL, a.text, a.text_len);
		break;
	case CHAT_CMD_QUIT:
		call->quit_reason = a.text;
		call->quit_reason_len = a.text_len;
		chat_handle_line(&c, peer, san, len);
		call->quit_reason = NULL;
		call->quit_reason_len = 0;
		break;
	default:
		chat_handle_line(&c, peer, san, len);
		break;
	}
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
		publish_leave(u, &peers(u)[u->active.first], NULL, 0);
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

/* Our peers' leaves, and the claims the backend has given up, before the
 * backend stops (SPEC 12: the others hear each of them leave). */
static void
publish_all_leaves(struct chat_udp *u)
{
	if (!u->has_backend || u->leaves_sent)
		return;
	for (uint32_t i = u->joined.first; i != NONE; i = peers(u)[i].join.next) {
		struct udp_peer *p = &peers(u)[i];

		publish_leave(u, p, NULL, 0);
		if (p->claim == CLAIM_SUBMITTED)
			ring_release(u, p->claim_name);
		p->claim = CLAIM_NONE;
	}
	for (uint32_t i = u->pending.first; i != NONE; i = pendings(u)[i].age.next) {
		if (pendings(u)[i].claim == CLAIM_SUBMITTED)
			ring_release(u, pendings(u)[i].nick);
		pendings(u)[i].claim = CLAIM_NONE;
	}
	u->leaves_sent = true;
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
		publish_all_leaves(u);
	}
	udp_unlock(u);
}

void
chat_udp_order(struct chat_udp *u, bool begin)
{
	if (!begin)
		pthread_mutex_unlock(&u->order_lock);
	else if (pthread_mutex_lock(&u->order_lock) == EOWNERDEAD)
		/* Its holder died between a receive and the end of it. */
		pthread_mutex_consistent(&u->order_lock);
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

/* ---- the backend side: in the process that started it ---- */

struct chat_udp_backend {
	struct chat_udp *u;
	const struct chat_udp_transport *t;
	void *ctx;
	struct chat_backend *b;
	pthread_t relay;
	bool relay_started;
	atomic_bool stop;
	int wake_fd;
	/* Events of other instances are formatted here, large enough for
	 * any line the wire carries. */
	char *rsan, *rout;
	size_t rsan_size, rout_size;
	void (*state)(void *ud, bool up, int error, const char *reason);
	void *state_ud;
};

static struct udp_call
backend_call(struct chat_udp_backend *k)
{
	return (struct udp_call){ .u = k->u, .t = k->t, .ctx = k->ctx };
}

/* Not counted as messages of ours. */
static struct chat_ctx
remote_ctx(struct chat_udp_backend *k, struct udp_call *call)
{
	struct chat_ctx c = udp_ctx(call);

	c.out = k->rout;
	c.out_size = k->rout_size;
	c.stats = NULL;
	return c;
}

/* ---- the roster of other instances' members, for chat_remote_*() ---- */

static bool
r_is_remote(void *room, void *m)
{
	return is_remote(((struct udp_call *)room)->u, m);
}

static const char *
r_instance(void *room, void *m)
{
	(void)room;
	return ((struct udp_peer *)m)->instance;
}

static void
r_update(void *room, void *m, const char *host, size_t host_len, const char *instance)
{
	struct udp_peer *p = m;

	(void)room;
	snprintf(p->instance, sizeof(p->instance), "%s", instance);
	snprintf(p->host, sizeof(p->host), "%.*s", (int)host_len, host);
}

static void *
r_add(void *room, const char *name, const char *host, size_t host_len, const char *instance)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;
	struct udp_peer *p;
	uint32_t i;

	if (u->remotes.n >= u->remote_cap)
		return NULL;
	i = peer_alloc(u);
	if (i == NONE)
		return NULL;
	p = &peers(u)[i];
	p->remote = true;
	p->src.local.fd = -1;
	snprintf(p->nick, sizeof(p->nick), "%s", name);
	r_update(room, p, host, host_len, instance);
	nick_put(u, i);
	list_append(u, &u->remotes, join_link, i);
	return p;
}

static void
r_forget(void *room, void *m)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;

	remote_forget(u, peer_index(u, m));
}

static void
r_rename(void *room, void *m, const char *name)
{
	struct chat_udp *u = ((struct udp_call *)room)->u;
	uint32_t i = peer_index(u, m);

	nick_remove(u, i);
	snprintf(peers(u)[i].nick, sizeof(peers(u)[i].nick), "%s", name);
	nick_put(u, i);
}

static const struct chat_remote_ops udp_remote_ops = {
	.is_remote = r_is_remote,
	.instance = r_instance,
	.add = r_add,
	.update = r_update,
	.forget = r_forget,
	.rename = r_rename,
};

static void
evict_remote(struct udp_call *call, const char *name)
{
	struct chat_ctx c = udp_ctx(call);

	chat_remote_evict(&c, &udp_remote_ops, name);
}

/* Claim name again for peer i after an outage (reclaim). */
static bool
reclaim(struct chat_udp *u, uint32_t i, const char *name)
{
	struct udp_peer *p = &peers(u)[i];
	uint64_t token = claim_token(u, true, i);
	char host[CHAT_HOST_MAX];

	peer_host(p, host);
	if (!ring_claim(u, name, host, token))
		return false;
	p->claim = CLAIM_QUEUED;
	p->reclaim = true;
	p->token = token;
	snprintf(p->claim_name, sizeof(p->claim_name), "%s", name);
	return true;
}

/* After an outage: the peer's name again, or the first free NAME-N. */
static void
reclaim_done(struct udp_call *call, uint32_t i, int result)
{
	struct chat_ctx c = udp_ctx(call);
	struct chat_udp *u = call->u;
	struct udp_peer *p = &peers(u)[i];
	char name[CHAT_NAME_MAX + 1], host[CHAT_HOST_MAX];

	/* Answered later, through the relay again. */
	if (result == -EEXIST && chat_next_free_name(&c, p->nick, &p->suffix, name) &&
	    reclaim(u, i, name))
		return;
	p->reclaim = false;
	if (result != 0)
		return; /* down again: the next up() tries again */
	if (strcmp(p->claim_name, p->nick) != 0) {
		char old[CHAT_NAME_MAX + 1];

		memcpy(old, p->nick, sizeof(old));
		/* Those that still list us under the old name forget it. */
		(void)ring_publish(u, CHAT_WIRE_LEAVE, old, NULL, NULL, 0);
		evict_remote(call, p->claim_name);
		nick_remove(u, i);
		memcpy(p->nick, p->claim_name, sizeof(p->nick));
		nick_put(u, i);
		chat_announce_renamed(&c, p, old, p->nick);
		udp_send(call, p, c.out,
			 (size_t)snprintf(c.out, c.out_size, "* you are now %s\r\n", p->nick));
	}
	peer_host(p, host);
	(void)ring_publish(u, CHAT_WIRE_JOIN, p->nick, host, NULL, 0);
}

static void
pending_claim_done(struct udp_call *call, uint32_t pi, int result)
{
	struct chat_ctx c = udp_ctx(call);
	struct chat_udp *u = call->u;
	struct udp_pending *p = &pendings(u)[pi];

	p->claim = CLAIM_NONE;
	if (result == 0) {
		evict_remote(call, p->nick);
		if (u->joined.n < u->local_cap && !nick_find(u, p->nick)) {
			join_now(call, pi, now_usec());
			return;
		}
		if (u->joined.n >= u->local_cap) {
			/* Ours, and nobody's to use: given back. */
			ring_release(u, p->nick);
			chat_send_line(&c, p, "! server full");
			return;
		}
		result = -EEXIST;
	}
	if (result == -EEXIST) {
		p->has_token = false;
		chat_send_taken(&c, p, p->nick);
		return;
	}
	pending_unavailable(call, pi);
}

static void
peer_claim_done(struct udp_call *call, uint32_t i, int result)
{
	struct chat_ctx c = udp_ctx(call);
	struct udp_peer *p = &peers(call->u)[i];

	p->claim = CLAIM_NONE;
	if (p->reclaim)
		reclaim_done(call, i, result);
	else if (result == 0) {
		evict_remote(call, p->claim_name);
		chat_nick_done(&c, p, p->claim_name);
	} else if (result == -EEXIST)
		chat_send_taken(&c, p, p->claim_name);
	else
		send_unavailable(call, p);
}

/* The claim token in state `state` is answered. */
static void
claim_result(struct udp_call *call, uint64_t token, enum claim_state state, int result)
{
	struct chat_udp *u = call->u;
	uint32_t slot = (uint32_t)(token & TOKEN_SLOT);

	if (token & TOKEN_PEER) {
		struct udp_peer *p = &peers(u)[slot];

		if (slot < u->peer_hw && !p->remote && p->claim == state && p->token == token)
			peer_claim_done(call, slot, result);
	} else {
		struct udp_pending *p = &pendings(u)[slot];

		if (slot < u->pend_hw && p->claim == state && p->claim_token == token)
			pending_claim_done(call, slot, result);
	}
}

static void
claim_submitted(struct chat_udp *u, uint64_t token)
{
	uint32_t slot = (uint32_t)(token & TOKEN_SLOT);

	if (token & TOKEN_PEER)
		peers(u)[slot].claim = CLAIM_SUBMITTED;
	else
		pendings(u)[slot].claim = CLAIM_SUBMITTED;
}

/* Is the claim of this token still queued (not given up meanwhile)? */
static bool
claim_queued(struct chat_udp *u, uint64_t token)
{
	uint32_t slot = (uint32_t)(token & TOKEN_SLOT);

	if (token & TOKEN_PEER)
		return slot < u->peer_hw && !peers(u)[slot].remote &&
		       peers(u)[slot].claim == CLAIM_QUEUED && peers(u)[slot].token == token;
	return slot < u->pend_hw && pendings(u)[slot].claim == CLAIM_QUEUED &&
	       pendings(u)[slot].claim_token == token;
}

/* One record of the ring to the backend; the lock is held (the backend's
 * calls only enqueue). */
static void
relay_one(struct chat_udp_backend *k, struct udp_call *call, const struct ring_rec *r)
{
	const char *text = r->text_len ? (const char *)(r + 1) : NULL;
	int res;

	switch (r->kind) {
	case REC_PUBLISH:
		(void)chat_backend_publish(k->b, (enum chat_wire_type)r->type, r->a,
					   r->b[0] ? r->b : NULL, text, r->text_len);
		break;
	case REC_RELEASE:
		chat_backend_release(k->b, r->a);
		break;
	case REC_PRIVMSG:
		(void)chat_backend_privmsg(k->b, r->instance, r->a, r->b, text, r->text_len);
		break;
	case REC_CLAIM:
		/* Given up while it waited here: never asked, never released. */
		if (!claim_queued(k->u, r->token))
			break;
		res = k->u->backend_up ? chat_backend_claim(k->b, r->a, r->b, r->token) : -ENOTCONN;
		if (res == 0)
			claim_submitted(k->u, r->token);
		else
			claim_result(call, r->token, CLAIM_QUEUED, res);
		break;
	default:
		break;
	}
}

static void
relay_drain(struct chat_udp_backend *k)
{
	struct udp_call call = backend_call(k);
	struct chat_udp *u = k->u;
	unsigned n = 0;

	udp_lock(u);
	while (u->ring_tail != u->ring_head) {
		size_t pos = (size_t)(u->ring_tail % u->ring_size);
		const struct ring_rec *r;
		uint32_t len;

		if (u->ring_size - pos < sizeof(*r)) {
			u->ring_tail += u->ring_size - pos;
			continue;
		}
		r = ring_at(u, u->ring_tail);
		len = r->len;
		if (len < sizeof(*r) || len > u->ring_size - pos ||
		    len > u->ring_head - u->ring_tail) {
			/* Cannot be written so; never loop on it. */
			u->ring_tail = u->ring_head;
			break;
		}
		if (r->kind != REC_PAD)
			relay_one(k, &call, r);
		u->ring_tail += len;
		/* Let the workers in now and then. */
		if (++n % 64 == 0) {
			udp_unlock(u);
			udp_lock(u);
		}
	}
	udp_unlock(u);
}

static void *
relay_main(void *arg)
{
	struct chat_udp_backend *k = arg;

	for (;;) {
		bool stop = atomic_load(&k->stop);
		struct pollfd pfd = { .fd = k->wake_fd, .events = POLLIN };
		uint64_t v;

		relay_drain(k);
		if (stop)
			break;
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			break;
		(void)!read(k->wake_fd, &v, sizeof(v));
	}
	return NULL;
}

/* Names given before the backend's first word: claimed now that it is
 * up, or refused now that it is down. */
static void
deferred_claims(struct udp_call *call)
{
	struct chat_udp *u = call->u;
	uint32_t i, next;

	for (i = u->pending.first; i != NONE && !u->shutdown; i = next) {
		next = pendings(u)[i].age.next;
		if (pendings(u)[i].claim != CLAIM_DEFERRED)
			continue;
		pendings(u)[i].claim = CLAIM_NONE;
		pending_claim(call, i);
	}
}

static void
b_up(void *ud, bool reconnected)
{
	struct chat_udp_backend *k = ud;
	struct udp_call call = backend_call(k);
	struct chat_ctx c = udp_ctx(&call);
	struct chat_udp *u = k->u;

	udp_lock(u);
	u->backend_up = true;
	u->backend_known = true;
	deferred_claims(&call);
	for (uint32_t i = u->joined.first; i != NONE && !u->shutdown; i = peers(u)[i].join.next) {
		struct udp_peer *p = &peers(u)[i];

		if (reconnected)
			chat_send_line(&c, p,
				       "* reconnected; messages sent while disconnected are lost");
		/* A /nick under way: its answer (-ENOTCONN) comes, the next
		 * up() claims its name again. */
		if (p->claim != CLAIM_NONE)
			continue;
		p->suffix = 1;
		(void)reclaim(u, i, p->nick);
	}
	udp_unlock(u);
	if (k->state)
		k->state(k->state_ud, true, 0, NULL);
}

static void
b_down(void *ud, int error, const char *reason)
{
	struct chat_udp_backend *k = ud;
	struct udp_call call = backend_call(k);

	udp_lock(k->u);
	k->u->backend_up = false;
	k->u->backend_known = true;
	deferred_claims(&call);
	udp_unlock(k->u);
	if (k->state)
		k->state(k->state_ud, false, error, reason);
}

static void
b_claim_done(void *ud, uint64_t token, int result)
{
	struct chat_udp_backend *k = ud;
	struct udp_call call = backend_call(k);

	udp_lock(k->u);
	/* Stopping: nobody is told anything any more. */
	if (!k->u->shutdown)
		claim_result(&call, token, CLAIM_SUBMITTED, result);
	chat_count_members(k->u->stats, k->u->joined.n, true);
	udp_unlock(k->u);
}

static void
b_event(void *ud, const struct chat_wire_event *ev)
{
	struct chat_udp_backend *k = ud;
	struct udp_call call = backend_call(k);
	struct chat_ctx c = remote_ctx(k, &call);

	udp_lock(k->u);
	if (!k->u->shutdown)
		chat_remote_event(&c, &udp_remote_ops, ev, k->rsan, k->rsan_size);
	udp_unlock(k->u);
}

static void
b_lost(void *ud, const char *instance, const char *name)
{
	struct chat_udp_backend *k = ud;
	struct udp_call call = backend_call(k);
	struct chat_ctx c = remote_ctx(k, &call);

	udp_lock(k->u);
	if (!k->u->shutdown)
		chat_remote_lost(&c, &udp_remote_ops, instance, name);
	udp_unlock(k->u);
}

static const struct chat_backend_ops udp_backend_ops = {
	.up = b_up,
	.down = b_down,
	.event = b_event,
	.claim_done = b_claim_done,
	.lost = b_lost,
};

static void
backend_free(struct chat_udp_backend *k)
{
	if (k->wake_fd >= 0)
		close(k->wake_fd);
	free(k->rsan);
	free(k->rout);
	free(k);
}

int
chat_udp_backend_start(struct chat_udp_backend **ret, struct chat_udp *u,
		       const struct chat_settings *s, const struct chat_udp_transport *t,
		       void *ctx)
{
	struct chat_backend_settings bs = { .url = s->backend };
	struct chat_udp_backend *k;
	int r;

	if (!u || u->magic != MAGIC || !u->has_backend || !s->backend || !t)
		return -EINVAL;
	bs.room = s->room ? s->room : s->listener;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	*k = (struct chat_udp_backend){
		.u = u, .t = t, .ctx = ctx, .wake_fd = -1,
		.state = s->backend_state, .state_ud = s->backend_ud,
	};
	atomic_init(&k->stop, false);
	k->rsan_size = SANITIZE_SIZE_MAX((size_t)CHAT_WIRE_TEXT_MAX);
	k->rsan = malloc(k->rsan_size);
	k->rout_size = k->rsan_size + 256;
	k->rout = malloc(k->rout_size);
	k->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!k->rsan || !k->rout || k->wake_fd < 0) {
		r = k->wake_fd < 0 ? -errno : -ENOMEM;
		backend_free(k);
		return r;
	}
	udp_lock(u);
	u->wake_fd = k->wake_fd;
	udp_unlock(u);
	/* The relay uses k->b: the backend first (its ops may run at once;
	 * what they queue waits in the ring for the relay). */
	r = chat_backend_start(&k->b, &bs, &udp_backend_ops, k);
	if (r == 0) {
		r = -pthread_create(&k->relay, NULL, relay_main, k);
		k->relay_started = r == 0;
	}
	if (r < 0) {
		chat_backend_stop(k->b);
		udp_lock(u);
		u->wake_fd = -1;
		udp_unlock(u);
		backend_free(k);
		return r;
	}
	*ret = k;
	return 0;
}

void
chat_udp_backend_stop(struct chat_udp_backend *k)
{
	struct chat_udp *u;
	uint64_t one = 1;

	if (!k)
		return;
	u = k->u;
	udp_lock(u);
	publish_all_leaves(u);
	udp_unlock(u);
	/* The relay hands everything queued to the backend, then ends. */
	atomic_store(&k->stop, true);
	(void)!write(k->wake_fd, &one, sizeof(one));
	if (k->relay_started)
		pthread_join(k->relay, NULL);
	/* Never with the lock held: its ops take it. */
	chat_backend_stop(k->b);
	udp_lock(u);
	u->wake_fd = -1;
	udp_unlock(u);
	backend_free(k);
}
