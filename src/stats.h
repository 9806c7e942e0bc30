#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The daemon's counters, in one memory region shared by the dispatcher
 * and every handler process it forks (and their fork children and
 * threads): SIGUSR1, STATUS= and the metrics service (SPEC section 11)
 * read the same numbers. The dispatcher maps the region once, before it
 * forks anything, so a metrics handler sees every listener, also those a
 * later reload adds. */

/* Why a connection, a line or a datagram was turned away with an answer
 * or a close: netechod_refused_total{reason}. */
enum refuse_reason {
	REFUSE_DENY,        /* allow/deny */
	REFUSE_MAX_CLIENTS, /* the listener is full */
	REFUSE_PER_SOURCE,  /* too many connections from one address */
	REFUSE_RATE_LIMIT,  /* chat: a line over rate_limit ("! slow down") */
	REFUSE_PROXY,       /* PROXY protocol: bad header, untrusted balancer */
	REFUSE_ERROR,       /* our side failed (out of memory, cannot fork) */
	_REFUSE_MAX,
};

/* Why a udp datagram was not answered: netechod_dropped_total{reason}. */
enum drop_reason {
	DROP_GUARD,      /* loop and reflection guard (SPEC section 4) */
	DROP_RATE_LIMIT, /* over the per-source datagram budget */
	DROP_ERROR,      /* the reply could not be sent (full socket buffer) */
	_DROP_MAX,
};

const char *refuse_reason_to_string(enum refuse_reason r);
const char *drop_reason_to_string(enum drop_reason r);
/* The reason behind an admission_refuse() message ("not allowed", "server
 * full", "bad proxy header", ...); REFUSE_ERROR for one it does not know. */
enum refuse_reason refuse_reason_from_message(const char *why);

/* Counters of one listener. */
struct listener_stats {
	_Atomic uint64_t conns_now; /* tcp connections; udp chat: joined peers */
	_Atomic uint64_t conns_total;
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t dgrams_in;
	_Atomic uint64_t dgrams_out;
	_Atomic uint64_t refused[_REFUSE_MAX];
	_Atomic uint64_t dropped[_DROP_MAX];
	_Atomic uint64_t chat_members; /* a gauge, stored by the room */
	_Atomic uint64_t chat_messages;
	_Atomic uint64_t restarts; /* kept by the dispatcher */
	/* Chat with a backend (SPEC 12): enum stats_backend, a gauge. */
	_Atomic uint64_t backend;
};

enum stats_backend {
	STATS_BACKEND_NONE, /* no backend, or not serving */
	STATS_BACKEND_DOWN,
	STATS_BACKEND_UP,
	_STATS_BACKEND_MAX,
};

#define STATS_ADD(l, field, n) atomic_fetch_add_explicit(&(l)->stats->field, (n), memory_order_relaxed)
#define STATS_SUB(l, field, n) atomic_fetch_sub_explicit(&(l)->stats->field, (n), memory_order_relaxed)
#define STATS_SET(l, field, n) atomic_store_explicit(&(l)->stats->field, (n), memory_order_relaxed)

uint64_t stats_refused_sum(const struct listener_stats *s);
uint64_t stats_dropped_sum(const struct listener_stats *s);
/* Zero every counter but restarts (a listener restarted with new
 * settings starts again from 0). */
void stats_reset(struct listener_stats *s);

/* Listeners the region has room for at once; the config allows fewer
 * (CONFIG_LISTENERS_MAX) so that those a reload removes can drain while
 * their replacements run. */
#define STATS_SLOTS_MAX 1024
#define STATS_NAME_MAX 32
#define STATS_ADDRESS_MAX 255

/* What the metrics service says about a listener besides its counters
 * (netechod_listener_info). */
struct stats_info {
	char name[STATS_NAME_MAX + 1];
	char address[STATS_ADDRESS_MAX + 1];
	char protocol[8];
	char model[8];
	char service[8];
	uint16_t port;
};

struct stats_slot {
	/* Odd while the dispatcher rewrites info (a seqlock). */
	_Atomic uint32_t seq;
	/* Listed by the metrics service: enabled and not being removed. */
	_Atomic bool visible;
	bool used; /* the dispatcher's: taken by a listener */
	struct stats_info info;
	struct listener_stats stats;
};

struct stats_shared {
	uint64_t start_usec; /* CLOCK_REALTIME when the daemon started */
	_Atomic uint64_t reload_usec; /* the last reload attempt, start before any */
	_Atomic bool reload_ok;
	/* Slots ever taken: readers look no further. */
	_Atomic uint32_t n_slots;
	struct stats_slot slots[STATS_SLOTS_MAX];
};

/* Map the region (MAP_SHARED | MAP_ANONYMOUS); -errno. */
int stats_shared_new(struct stats_shared **ret, uint64_t start_usec);
struct stats_shared *stats_shared_free(struct stats_shared *s);

/* The dispatcher's side: take a free slot (NULL when none), publish its
 * info, hide it, give it back. */
struct stats_slot *stats_slot_take(struct stats_shared *s);
void stats_slot_publish(struct stats_slot *slot, const struct stats_info *info);
void stats_slot_hide(struct stats_slot *slot);
void stats_slot_release(struct stats_slot *slot);
struct stats_slot *stats_slot_of(struct stats_shared *s, struct listener_stats *st);

/* A consistent copy of one listener, for the metrics service. */
struct stats_view {
	struct stats_info info;
	uint64_t conns_now, conns_total, bytes_in, bytes_out, dgrams_in, dgrams_out;
	uint64_t refused[_REFUSE_MAX];
	uint64_t dropped[_DROP_MAX];
	uint64_t chat_members, chat_messages, restarts;
	uint64_t backend; /* enum stats_backend */
};

/* Copy every visible listener into ret (room for max), sorted by name;
 * returns how many. */
size_t stats_snapshot(const struct stats_shared *s, struct stats_view *ret, size_t max);
/* How many a snapshot can hold at most now. */
size_t stats_snapshot_max(const struct stats_shared *s);
