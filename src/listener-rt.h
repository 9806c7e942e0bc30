#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "srctable.h"
#include "udpguard.h"

struct service_ops;

/* The runtime listener: what the handler process, its model, the session
 * layer and the services share about one listener. A header of its own so
 * that sessions and services see it without seeing the handler. */

/* Counters of one listener, in memory shared between the dispatcher and
 * every process that serves the listener (SIGUSR1, STATUS=). */
struct listener_stats {
	_Atomic uint64_t conns_now;
	_Atomic uint64_t conns_total;
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t refused;
	_Atomic uint64_t dropped;
};

#define STATS_ADD(l, field, n) atomic_fetch_add_explicit(&(l)->stats->field, (n), memory_order_relaxed)
#define STATS_SUB(l, field, n) atomic_fetch_sub_explicit(&(l)->stats->field, (n), memory_order_relaxed)

/* Everything a handler process needs to serve one listener. */
struct listener_rt {
	struct listener_config cfg;
	/* Listening sockets: n_addrs per worker. With several epoll workers
	 * each worker has its own SO_REUSEPORT sockets, or they all share
	 * the same fds (then `shared`). */
	int *fds;
	size_t n_fds;
	size_t n_addrs;
	bool shared;
	unsigned shutdown_timeout;
	struct listener_stats *stats;
	const uint8_t *udp_port_map; /* 65536-bit map of our UDP listener ports */
	const struct service_ops *service;
	void *service_state; /* chat room and the like */
	struct udpguard guard;
	int ready_fd; /* a byte goes here once serving; -1 after */
	_Atomic unsigned clients; /* admitted stream connections in this process */
	struct srccount *per_source; /* when per_source > 0 */
	struct ratelimit *ratelimit; /* udp echo with rate_limit > 0 */
};
