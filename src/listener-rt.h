#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "srctable.h"
#include "stats.h"
#include "udpguard.h"

struct service_ops;
struct stats_shared;

/* The runtime listener: what the handler process, its model, the session
 * layer and the services share about one listener. A header of its own so
 * that sessions and services see it without seeing the handler. */

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
	struct listener_stats *stats; /* in the shared region (stats.h) */
	/* Every listener's counters (the metrics service reads them). */
	const struct stats_shared *shared_stats;
	const uint8_t *udp_port_map; /* 65536-bit map of our UDP listener ports */
	const struct service_ops *service;
	void *service_state; /* chat room and the like */
	/* Set by the service's listener_init: it sends to sessions from a
	 * thread of its own (chat's backend), so even a single-threaded
	 * model gives sessions locks and a cross-thread wake. */
	bool foreign_senders;
	struct udpguard guard;
	int ready_fd; /* a byte goes here once serving; -1 after */
	_Atomic unsigned clients; /* admitted stream connections in this process */
	struct srccount *per_source; /* when per_source > 0 */
	struct ratelimit *ratelimit; /* udp echo with rate_limit > 0 */
};
