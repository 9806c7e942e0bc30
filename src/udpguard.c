#include <net/if.h>
#include <sys/ioctl.h>
#include <netinet/in.h>

#include "udpguard.h"
#include "util.h"

static const uint16_t blocked_ports[] = {
	1900,  /* SSDP */
	2049,  /* NFS */
	3702,  /* WS-Discovery */
	5353,  /* mDNS */
	5683,  /* CoAP */
	11211, /* memcached */
};

static const char *const verdict_names[_UDPGUARD_VERDICT_MAX] = {
	[UDPGUARD_OK] = "ok",
	[UDPGUARD_PRIVILEGED_PORT] = "privileged source port",
	[UDPGUARD_SERVICE_PORT] = "auto-answering service source port",
	[UDPGUARD_OWN_PORT] = "source port of one of our UDP listeners",
	[UDPGUARD_UNSPECIFIED] = "unspecified source address",
	[UDPGUARD_BROADCAST] = "broadcast source address",
	[UDPGUARD_MULTICAST] = "multicast source address",
};

const char *
udpguard_verdict_to_string(enum udpguard_verdict v)
{
	return (unsigned)v < _UDPGUARD_VERDICT_MAX ? verdict_names[v] : "?";
}

int
udpguard_add_broadcast(struct udpguard *g, const uint8_t addr[4])
{
	for (size_t i = 0; i < g->n_bcast; i++)
		if (memcmp(g->bcast[i], addr, 4) == 0)
			return 0;
	if (g->n_bcast >= UDPGUARD_BCAST_MAX)
		return -ENOSPC;
	memcpy(g->bcast[g->n_bcast++], addr, 4);
	return 0;
}

int
udpguard_load_broadcast(struct udpguard *g)
{
	struct ifreq reqs[64];
	struct ifconf ifc = { .ifc_len = sizeof(reqs), .ifc_req = reqs };
	int fd, r = 0;

	/* ioctl on an AF_INET socket rather than getifaddrs(): the latter
	 * needs AF_NETLINK, which the hardened unit does not allow. */
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, SIOCGIFCONF, &ifc) < 0) {
		r = -errno;
		goto out;
	}
	for (size_t i = 0; i < (size_t)ifc.ifc_len / sizeof(struct ifreq); i++) {
		struct ifreq q = reqs[i];
		const struct sockaddr_in *b;

		if (ioctl(fd, SIOCGIFFLAGS, &q) < 0 || !(q.ifr_flags & IFF_BROADCAST))
			continue;
		q = reqs[i];
		if (ioctl(fd, SIOCGIFBRDADDR, &q) < 0 || q.ifr_broadaddr.sa_family != AF_INET)
			continue;
		b = (const struct sockaddr_in *)(const void *)&q.ifr_broadaddr;
		(void)udpguard_add_broadcast(g, (const uint8_t *)&b->sin_addr);
	}
out:
	safe_close(fd);
	return r;
}

enum udpguard_verdict
udpguard_check(const struct udpguard *g, const union sockaddr_any *src)
{
	uint16_t port = sockaddr_port(src);
	uint8_t a[16];
	int family;

	family = sockaddr_addr_bytes(src, a);
	if (family == AF_INET) {
		if (a[0] == 0)
			return UDPGUARD_UNSPECIFIED;
		if ((a[0] & 0xf0) == 0xe0)
			return UDPGUARD_MULTICAST;
		if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255)
			return UDPGUARD_BROADCAST;
		for (size_t i = 0; i < g->n_bcast; i++)
			if (memcmp(g->bcast[i], a, 4) == 0)
				return UDPGUARD_BROADCAST;
	} else if (family == AF_INET6) {
		static const uint8_t any[16];

		if (memcmp(a, any, 16) == 0)
			return UDPGUARD_UNSPECIFIED;
		if (a[0] == 0xff)
			return UDPGUARD_MULTICAST;
	} else
		return UDPGUARD_UNSPECIFIED;

	if (port < 1024)
		return UDPGUARD_PRIVILEGED_PORT;
	for (size_t i = 0; i < ELEMENTSOF(blocked_ports); i++)
		if (port == blocked_ports[i])
			return UDPGUARD_SERVICE_PORT;
	if (udpguard_port_map_test(g->port_map, port))
		return UDPGUARD_OWN_PORT;
	return UDPGUARD_OK;
}
