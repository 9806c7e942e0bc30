#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

union sockaddr_any;

/* The UDP loop and reflection guard (SPEC section 4): sources that must
 * never get a reply from us. */

enum udpguard_verdict {
	UDPGUARD_OK,
	UDPGUARD_PRIVILEGED_PORT, /* source port < 1024 */
	UDPGUARD_SERVICE_PORT,    /* SSDP, NFS, WS-Discovery, mDNS, CoAP, memcached */
	UDPGUARD_OWN_PORT,        /* one of our own UDP listeners' ports */
	UDPGUARD_UNSPECIFIED,     /* 0.0.0.0/8, :: */
	UDPGUARD_BROADCAST,       /* 255.255.255.255 or an interface's broadcast */
	UDPGUARD_MULTICAST,       /* 224.0.0.0/4, ff00::/8 */
	_UDPGUARD_VERDICT_MAX,
};

#define UDPGUARD_BCAST_MAX 32

struct udpguard {
	uint8_t bcast[UDPGUARD_BCAST_MAX][4];
	size_t n_bcast;
	const uint8_t *port_map; /* 8192-byte bitmap of our UDP ports, may be NULL */
};

const char *udpguard_verdict_to_string(enum udpguard_verdict v);

/* Learn the local interfaces' IPv4 broadcast addresses (getifaddrs). */
int udpguard_load_broadcast(struct udpguard *g);
int udpguard_add_broadcast(struct udpguard *g, const uint8_t addr[4]);

enum udpguard_verdict udpguard_check(const struct udpguard *g, const union sockaddr_any *src);

static inline bool
udpguard_port_map_test(const uint8_t *map, uint16_t port)
{
	return map && (map[port >> 3] & (1u << (port & 7)));
}

static inline void
udpguard_port_map_set(uint8_t *map, uint16_t port)
{
	map[port >> 3] |= (uint8_t)(1u << (port & 7));
}
