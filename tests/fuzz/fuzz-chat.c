/* libFuzzer target for the chat protocol (src/chat.h) and the line framer
 * under it (src/linebuf.h).
 *
 * Input: two header bytes, then a script. Byte 0 picks the room (bit 7:
 * UDP, else TCP) and its max_line; byte 1 its rate_limit and idle_timeout.
 * The script is a list of operations, each one byte (member = low 2 bits,
 * kind = next 3 bits) plus its arguments: input bytes from a member
 * (joining it first when needed), leave, join, a clock jump with a tick,
 * shutdown; for UDP also "/join TOKEN" with the token the room handed out,
 * and a valid name, so that joined peers are reachable.
 *
 * Oracles (abort on failure):
 * - every line the room sends ends with CRLF, has no other CR or LF, is at
 *   most CHAT_OUT_SIZE(max_line) bytes, starts with "* ", "! " or "<",
 *   and is clean text: well-formed UTF-8 without C0 (but TAB), DEL or C1;
 * - TCP: the room never sends to, or closes, a member that has left;
 *   chat_room_online() never exceeds the members present;
 * - UDP: the room only sends to addresses that sent to it, and an address
 *   that has never been told "* you are" gets at most one datagram per
 *   datagram it sent, and nothing on ticks or at shutdown (no
 *   amplification, no reflection);
 * - linebuf, fed the script bytes in random chunks, reports exactly the
 *   lines and too-long events of a plain reference splitter, keeps at most
 *   max + 1 bytes, and holds exactly the unfinished line at the end. */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-internal.h"
#include "chat.h"
#include "fuzz-utf8.h"
#include "linebuf.h"
#include "util.h"

#define FAIL(...)                                           \
	do {                                                \
		fprintf(stderr, "fuzz-chat: " __VA_ARGS__); \
		fputc('\n', stderr);                        \
		abort();                                    \
	} while (0)

#define MEMBERS 4

static const unsigned max_lines[] = { 64, 100, 512, 1024 };

static unsigned cur_max_line;
/* FUZZ_CHAT_TRACE=1 prints every line the room sends (reproducing). */
static int trace = -1;

static void
check_line(const char *who, const char *line, size_t len)
{
	const uint8_t *s = (const uint8_t *)line;
	size_t bad = 0;

	if (trace < 0)
		trace = getenv("FUZZ_CHAT_TRACE") != NULL;
	if (trace)
		fprintf(stderr, "%s> %.*s\n", who, (int)MIN(len, 300), line);
	if (len < 4 || len > CHAT_OUT_SIZE(cur_max_line))
		FAIL("%s: a line of %zu bytes (max_line %u, bound %zu)", who, len, cur_max_line,
		     (size_t)CHAT_OUT_SIZE(cur_max_line));
	if (s[len - 2] != '\r' || s[len - 1] != '\n')
		FAIL("%s: line '%.*s' does not end with CRLF", who, (int)MIN(len, 200), line);
	if (memchr(s, '\r', len - 2) || memchr(s, '\n', len - 2))
		FAIL("%s: line '%.*s' has a CR or LF inside", who, (int)MIN(len, 200), line);
	if (!(s[0] == '<' || ((s[0] == '*' || s[0] == '!') && s[1] == ' ')))
		FAIL("%s: line '%.*s' has no marker", who, (int)MIN(len, 200), line);
	if (!fuzz_text_is_clean(s, len - 2, &bad))
		FAIL("%s: line '%.*s' has unclean byte 0x%02x at %zu", who, (int)MIN(len, 200), line,
		     s[bad], bad);
}

/* ---- script reading ---- */

struct script {
	const uint8_t *p;
	size_t n;
};

static bool
take_byte(struct script *s, uint8_t *ret)
{
	if (s->n == 0)
		return false;
	*ret = *s->p++;
	s->n--;
	return true;
}

static size_t
take_bytes(struct script *s, size_t want, const uint8_t **ret)
{
	size_t k = MIN(want, s->n);

	*ret = s->p;
	s->p += k;
	s->n -= k;
	return k;
}

/* ---- TCP room ---- */

struct tmember {
	bool present;
	bool closing;
	struct chat_member *m;
};

static struct tmember tmembers[MEMBERS];

static struct tmember *
tmember_of(void *ctx, const char *what)
{
	struct tmember *t = ctx;

	if (t < tmembers || t >= tmembers + MEMBERS)
		FAIL("%s for an unknown ctx %p", what, ctx);
	if (!t->present)
		FAIL("%s for member %d, which has left", what, (int)(t - tmembers));
	return t;
}

static void
tcp_send(void *ctx, const char *line, size_t len)
{
	static const char *const names[MEMBERS] = { "tcp0", "tcp1", "tcp2", "tcp3" };
	struct tmember *t = tmember_of(ctx, "send");

	/* One send may carry several lines (what one input relayed), each
	 * checked on its own; a send that does not end a line fails there. */
	if (len == 0)
		FAIL("%s: an empty send", names[t - tmembers]);
	while (len > 0) {
		const char *lf = memchr(line, '\n', len);
		size_t n = lf ? (size_t)(lf - line) + 1 : len;

		check_line(names[t - tmembers], line, n);
		line += n;
		len -= n;
	}
}

static void
tcp_close(void *ctx, const char *reason)
{
	struct tmember *t = tmember_of(ctx, "close");

	if (!reason || !*reason)
		FAIL("close without a reason");
	t->closing = true;
}

static const char *const hosts[MEMBERS] = { "127.0.0.1", "127.0.0.1", "::1", "192.0.2.7" };

static void
tcp_join(struct chat_room *r, int k, uint64_t now)
{
	struct tmember *t = &tmembers[k];

	if (t->present)
		return;
	t->present = true;
	t->closing = false;
	t->m = chat_room_join(r, t, hosts[k], now);
	if (!t->m)
		abort(); /* out of memory: nothing to learn */
}

static void
tcp_leave(struct chat_room *r, int k)
{
	struct tmember *t = &tmembers[k];

	if (!t->present)
		return;
	chat_room_leave(r, t->m);
	t->present = false;
	t->closing = false;
	t->m = NULL;
}

static void
run_tcp(const struct chat_settings *set, struct script *s)
{
	static const struct chat_transport transport = { .send = tcp_send, .close = tcp_close };
	struct chat_room *r = NULL;
	uint64_t now = UINT64_C(1000) * USEC_PER_SEC;
	uint8_t op;

	memset(tmembers, 0, sizeof(tmembers));
	if (chat_room_new(&r, set, &transport) < 0)
		abort();
	while (take_byte(s, &op)) {
		int k = op & 3, kind = (op >> 2) & 7;
		const uint8_t *data;
		uint8_t arg = 0;
		unsigned present = 0;
		size_t len;

		now += USEC_PER_MSEC;
		switch (kind) {
		case 0:
		case 1:
		case 2:
		case 3:
			(void)take_byte(s, &arg);
			len = take_bytes(s, kind == 3 ? (size_t)arg * 64 : arg, &data);
			tcp_join(r, k, now);
			if (!tmembers[k].closing)
				chat_member_input(r, tmembers[k].m, data, len, now);
			break;
		case 4:
			tcp_leave(r, k);
			break;
		case 5:
			(void)take_byte(s, &arg);
			now += (uint64_t)arg * 250 * USEC_PER_MSEC;
			(void)chat_room_tick(r, now);
			break;
		case 6:
			tcp_join(r, k, now);
			break;
		case 7:
			chat_room_shutdown(r);
			break;
		}
		/* The driver closes what the room asked to close. */
		for (int i = 0; i < MEMBERS; i++) {
			if (tmembers[i].present && tmembers[i].closing)
				tcp_leave(r, i);
			present += tmembers[i].present;
		}
		if (chat_room_online(r) > present)
			FAIL("%u online with %u members present", chat_room_online(r), present);
	}
	for (int i = 0; i < MEMBERS; i++)
		tcp_leave(r, i);
	if (chat_room_online(r) != 0)
		FAIL("%u online after everybody left", chat_room_online(r));
	chat_room_free(r);
}

/* ---- UDP room ---- */

struct upeer {
	union sockaddr_any addr;
	bool told_you_are; /* received "* you are": joined at least once */
	unsigned sent_to;  /* datagrams the room sent it in this step */
	char token[40];
};

static struct upeer upeers[MEMBERS];

static int
upeer_of(const union sockaddr_any *to)
{
	uint8_t a[16], b[16];
	int fa = sockaddr_addr_bytes(to, a);

	for (int i = 0; i < MEMBERS; i++) {
		int fb = sockaddr_addr_bytes(&upeers[i].addr, b);

		if (fa == fb && fa != 0 && memcmp(a, b, fa == AF_INET ? 4 : 16) == 0 &&
		    sockaddr_port(to) == sockaddr_port(&upeers[i].addr))
			return i;
	}
	return -1;
}

static void
udp_send_to(void *ctx, const union sockaddr_any *to, const struct dgram_local *from,
	    const char *line, size_t len)
{
	static const char *const names[MEMBERS] = { "udp0", "udp1", "udp2", "udp3" };
	int k = upeer_of(to);
	const char *tok;

	(void)from; /* no sockets here: every peer is sent to from one place */
	if (k < 0)
		FAIL("udp: a datagram to an address that never sent one");
	check_line(names[k], line, len);
	upeers[k].sent_to++;
	if (len > 10 && memcmp(line, "* you are ", 10) == 0)
		upeers[k].told_you_are = true;
	if (len > 13 && memcmp(line, "* to join as ", 13) == 0 &&
	    (tok = memmem(line, len, "/join ", 6))) {
		size_t n = len - 2 - (size_t)(tok + 6 - line);

		n = MIN(n, sizeof(upeers[k].token) - 1);
		memcpy(upeers[k].token, tok + 6, n);
		upeers[k].token[n] = 0;
	}
}

/* After one call: strangers got at most `allowed` datagrams each (1 for
 * the sender of a datagram, 0 for everyone else). */
static void
udp_check_step(int sender, const char *what)
{
	for (int i = 0; i < MEMBERS; i++) {
		unsigned allowed = i == sender ? 1 : 0;

		if (!upeers[i].told_you_are && upeers[i].sent_to > allowed)
			FAIL("udp %s: peer %d, never joined, got %u datagrams", what, i,
			     upeers[i].sent_to);
		upeers[i].sent_to = 0;
	}
}

static void
udp_peer_addr(int i, union sockaddr_any *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (i == 2) {
		ret->in6.sin6_family = AF_INET6;
		ret->in6.sin6_port = htons(40000);
		ret->in6.sin6_addr = in6addr_loopback;
	} else if (i == 3) {
		/* An IPv4-mapped source, as a dual-stack socket reports it. */
		ret->in6.sin6_family = AF_INET6;
		ret->in6.sin6_port = htons(40000);
		(void)inet_pton(AF_INET6, "::ffff:127.0.0.2", &ret->in6.sin6_addr);
	} else {
		ret->in.sin_family = AF_INET;
		ret->in.sin_port = htons((uint16_t)(40000 + i));
		ret->in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
}

static void
run_udp(const struct chat_settings *set, struct script *s)
{
	static const struct chat_udp_transport transport = { .send_to = udp_send_to };
	size_t size = chat_udp_size(set);
	struct chat_udp *u;
	uint64_t now = UINT64_C(1000) * USEC_PER_SEC;
	uint8_t op;

	if (size == 0)
		FAIL("chat_udp_size() is 0 for max_clients %u, max_line %u", set->max_clients,
		     set->max_line);
	u = aligned_alloc(64, (size + 63) / 64 * 64);
	if (!u)
		abort();
	if (chat_udp_init(u, set) < 0)
		FAIL("chat_udp_init() failed");
	memset(upeers, 0, sizeof(upeers));
	for (int i = 0; i < MEMBERS; i++)
		udp_peer_addr(i, &upeers[i].addr);

	while (take_byte(s, &op)) {
		int k = op & 3, kind = (op >> 2) & 7;
		const uint8_t *data;
		char buf[64];
		uint8_t arg = 0;
		size_t len;

		now += USEC_PER_MSEC;
		switch (kind) {
		case 0:
		case 1:
		case 2:
		case 3:
			(void)take_byte(s, &arg);
			len = take_bytes(s, kind == 3 ? (size_t)arg * 64 : arg, &data);
			chat_udp_datagram(u, &transport, NULL, &upeers[k].addr, NULL, data, len, now);
			udp_check_step(k, "datagram");
			break;
		case 4:
			len = (size_t)snprintf(buf, sizeof(buf), "/join %s", upeers[k].token);
			chat_udp_datagram(u, &transport, NULL, &upeers[k].addr, NULL, (const uint8_t *)buf,
					  len, now);
			udp_check_step(k, "/join");
			break;
		case 5:
			(void)take_byte(s, &arg);
			now += (uint64_t)arg * 250 * USEC_PER_MSEC;
			(void)chat_udp_tick(u, &transport, NULL, now);
			udp_check_step(-1, "tick");
			break;
		case 6:
			len = (size_t)snprintf(buf, sizeof(buf), "peer%d\r\n", k);
			chat_udp_datagram(u, &transport, NULL, &upeers[k].addr, NULL, (const uint8_t *)buf,
					  len, now);
			udp_check_step(k, "name");
			break;
		case 7:
			chat_udp_shutdown(u, &transport, NULL);
			udp_check_step(-1, "shutdown");
			break;
		}
		if (chat_udp_online(u) > set->max_clients)
			FAIL("udp: %u online with max_clients %u", chat_udp_online(u), set->max_clients);
	}
	chat_udp_done(u);
	free(u);
}

/* ---- linebuf against a reference splitter ---- */

enum { EV_LINE = 1, EV_TOO_LONG = 2 };

struct event {
	int kind;
	const uint8_t *line; /* into the input, for EV_LINE of the reference */
	size_t len;
};

static void
check_linebuf(const uint8_t *data, size_t size, size_t max, uint32_t seed)
{
	struct event *ref = calloc(size + 2, sizeof(*ref));
	size_t n_ref = 0, got = 0, start = 0, tail, pending_want;
	struct linebuf b;
	uint32_t x = seed | 1;

	if (!ref)
		abort();
	/* Reference: split at LF, strip one CR, judge the length. */
	for (size_t i = 0; i < size; i++) {
		size_t len;

		if (data[i] != '\n')
			continue;
		len = i - start;
		if (len > 0 && data[start + len - 1] == '\r')
			len--;
		ref[n_ref++] = len > max ? (struct event){ EV_TOO_LONG, NULL, 0 }
					 : (struct event){ EV_LINE, data + start, len };
		start = i + 1;
	}
	tail = size - start;
	/* An unfinished line is already known to be too long past max + 1
	 * bytes, or at max + 1 unless its last byte may be half a CRLF. */
	if (tail > max + 1 || (tail == max + 1 && data[size - 1] != '\r')) {
		ref[n_ref++] = (struct event){ EV_TOO_LONG, NULL, 0 };
		pending_want = 0;
	} else
		pending_want = tail;

	linebuf_init(&b, max);
	for (size_t off = 0; off < size;) {
		size_t chunk, n;
		const uint8_t *p;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		chunk = MIN(size - off, (size_t)(x % 97) + 1);
		p = data + off;
		n = chunk;
		for (;;) {
			const uint8_t *line = NULL;
			size_t len = 0;
			int r = linebuf_next(&b, &p, &n, &line, &len);

			if (b.cap > max + 1)
				FAIL("linebuf holds %zu bytes with max %zu", b.cap, max);
			if (r == LINEBUF_MORE)
				break;
			if (r < 0)
				abort(); /* out of memory */
			if (got >= n_ref)
				FAIL("linebuf: event %zu (%d), the reference has only %zu", got, r, n_ref);
			if (r == LINEBUF_TOO_LONG && ref[got].kind != EV_TOO_LONG)
				FAIL("linebuf: event %zu is too-long, the reference has a line of %zu", got,
				     ref[got].len);
			if (r == LINEBUF_LINE &&
			    (ref[got].kind != EV_LINE || ref[got].len != len ||
			     (len && memcmp(ref[got].line, line, len) != 0)))
				FAIL("linebuf: event %zu is a %zu-byte line, the reference differs (kind %d, %zu bytes)",
				     got, len, ref[got].kind, ref[got].len);
			got++;
		}
		if (n != 0)
			FAIL("linebuf: MORE with %zu bytes of input left", n);
		off += chunk;
	}
	if (got != n_ref)
		FAIL("linebuf: %zu events, the reference has %zu", got, n_ref);
	if (linebuf_pending(&b) != pending_want)
		FAIL("linebuf: %zu bytes pending at the end, expected %zu", linebuf_pending(&b),
		     pending_want);
	linebuf_release(&b);
	if (linebuf_pending(&b) != 0 || b.data)
		FAIL("linebuf: data left after release");
	free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_settings set = { .listener = "fuzz" };
	struct script s;

	if (size < 2)
		return 0;
	check_linebuf(data + 2, size - 2, data[0] % 80, data[1]);

	cur_max_line = max_lines[data[0] & 3];
	set.max_line = cur_max_line;
	set.max_clients = 2 + ((data[0] >> 2) & 3);
	set.rate_limit = (data[1] & 3) == 0 ? 0 : (data[1] & 7);
	set.idle_timeout = (data[1] >> 4) & 3;
	s = (struct script){ .p = data + 2, .n = size - 2 };
	if (data[0] & 0x80)
		run_udp(&set, &s);
	else
		run_tcp(&set, &s);
	return 0;
}
