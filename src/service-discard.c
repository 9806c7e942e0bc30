#include "service.h"

/* RFC 863 discard: tcp reads and throws away everything until the client
 * closes, and never sends; udp never replies. The byte counters still see
 * every byte (the session and the datagram path count them). */

static size_t
discard_on_data(struct session *s, const uint8_t *p, size_t n)
{
	return n;
}

static void
discard_on_datagram(struct dgram *d, const uint8_t *p, size_t n)
{
}

const struct service_ops service_discard_ops = {
	.name = "discard",
	.on_data = discard_on_data,
	.on_datagram = discard_on_datagram,
};
