#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* PROXY protocol headers, v1 (text) and v2 (binary), as in HAProxy's
 * doc/proxy-protocol.txt (SPEC section 10). A pure parser: bytes in, the
 * header's length and addresses or an error out; no I/O, no allocation.
 *
 * v1 is one line, "PROXY TCP4 SRC DST SPORT DPORT\r\n" (TCP6 alike) or
 * "PROXY UNKNOWN" and anything but CR or LF up to "\r\n", at most
 * PROXY_V1_MAX bytes with the CRLF. It is read strictly: single spaces,
 * addresses of the named family as inet_pton() takes them (so no leading
 * zeros in IPv4, no IPv6 zone), ports 0-65535 in decimal with no sign and
 * no leading zero ("0" itself is fine).
 *
 * v2 is the 12-byte signature, version 2, command LOCAL or PROXY, a
 * family/transport byte and a big-endian length of what follows: at most
 * PROXY_V2_LEN_MAX bytes of addresses and TLVs, so at most PROXY_V2_MAX in
 * all (a longer one is refused as too long, with no need to receive it).
 * TLVs are received and skipped. PROXY over AF_INET or AF_INET6 STREAM
 * gives the addresses; PROXY over UNSPEC, AF_UNIX or a DGRAM transport is
 * a health check, like LOCAL; family or transport values the protocol
 * does not define are malformed under PROXY (the document says receivers
 * must reject them) and ignored under LOCAL (whose family is ignored). A
 * length too short for the addresses of its family is malformed. */

/* The longest v1 line, CRLF included. */
#define PROXY_V1_MAX 107
/* The longest v2 address block plus TLVs that we accept. */
#define PROXY_V2_LEN_MAX 1024
/* The longest v2 header: the fixed 16 bytes and the rest. */
#define PROXY_V2_MAX (16 + PROXY_V2_LEN_MAX)
/* What a caller must be able to hold while a header arrives. */
#define PROXY_HEADER_MAX PROXY_V2_MAX

struct proxy_info {
	unsigned version; /* 1 or 2 */
	/* v1 UNKNOWN, v2 LOCAL or v2 PROXY over another family or transport:
	 * a health check, served as coming from the balancer itself. src and
	 * dst are then zero (AF_UNSPEC). */
	bool local;
	/* The client and the address it connected to: sockaddr_in or
	 * sockaddr_in6, ports in network order. */
	union sockaddr_any src, dst;
};

/* Parse the start of a connection's bytes, p[0..n). Returns the header's
 * length (> 0; the bytes after it are the client's) and fills *ret; 0 when
 * p is a strict prefix of a header that may still become valid (read more;
 * never once n >= PROXY_V1_MAX for v1 or PROXY_V2_MAX for v2); -EBADMSG
 * when it is not a PROXY header or is malformed, -EMSGSIZE when it is too
 * long. A wrong byte fails as soon as it is in p. On error *reterr (when
 * reterr is not NULL) gets a short static reason for the log, lower case,
 * no period ("v1 source port", "v2 version not 2"). *ret is only written on
 * success. */
int proxy_parse(const uint8_t *p, size_t n, struct proxy_info *ret, const char **reterr);
