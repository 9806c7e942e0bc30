#pragma once

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"

struct listener_rt;

#define UDP_LOGSEEN_SLOTS 64

/* One thread or process reading one or more UDP sockets of a listener.
 * Every model's UDP path runs through udp_worker_serve(), so the loop
 * guard, the ACL and the counters are applied in one place. */
struct udp_worker {
	struct listener_rt *lst;
	uint8_t *buf; /* DGRAM_MAX bytes */
	char prefix[PREFIX_MAX * 4 + 64];
	size_t prefix_len;
	void *owner; /* the model's own state (thread model: its tmodel) */
	uint64_t next_tick;
	/* Drops are logged at most once per source per minute: a small
	 * direct-mapped table of sources we logged recently. */
	struct {
		uint8_t addr[16];
		uint64_t when;
	} logseen[UDP_LOGSEEN_SLOTS];
};

/* Have the kernel tell each datagram's destination (IP_PKTINFO,
 * IPV6_RECVPKTINFO) on a socket bound to a wildcard address, so replies
 * leave from it. 1 when turned on, 0 when the socket needs none (bound to
 * one address), -errno. */
int udp_enable_pktinfo(int fd);

int udp_worker_init(struct udp_worker *w, struct listener_rt *l);
void udp_worker_done(struct udp_worker *w);

/* Receive and serve up to max datagrams from fd. Returns how many were
 * received (>0), -EAGAIN when none was waiting (or a blocking receive
 * timed out), -EINTR, or another -errno. */
int udp_worker_serve(struct udp_worker *w, int fd, unsigned max);

/* For the blocking models (fork, thread): one socket is read with a
 * blocking recvmsg() (SO_RCVTIMEO bounds it); several are polled for at
 * most timeout_ms, then read without blocking. Same returns as
 * udp_worker_serve(). */
int udp_worker_block(struct udp_worker *w, const int *fds, size_t n, int timeout_ms);

/* Run the service's timed work if due (blocking models call it after
 * every wake-up; receives time out often enough). */
void udp_worker_tick(struct udp_worker *w, int fd);
/* The listener stops: the service's last words (chat), once. */
void udp_shutdown_notice(struct listener_rt *l);

/* True when a drop from this source should be logged now. */
bool udp_worker_log_ok(struct udp_worker *w, const union sockaddr_any *src, uint64_t now);
