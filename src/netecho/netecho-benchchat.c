/* netecho bench --chat: chat load and delivery check (SPEC section 7).
 *
 * MEMBERS clients join one room (netechod tcp chat: the name line; udp
 * chat: the name, then /join TOKEN; --irc: NICK/USER/JOIN #bench), spread
 * round-robin over HOST PORT and every --also listener. Once every member
 * is in (member 0 sends a "sync" line and every other member has seen it),
 * the first SENDERS members send lines for -d seconds, RATE a second each
 * or (RATE 0) as fast as the room takes them, with a bounded window of
 * lines in flight per sender so that no server buffer overruns.
 *
 * Every line carries its sender's id, a sequence number and the send time
 * (this process's CLOCK_MONOTONIC), padded to SIZE bytes with a pattern
 * that depends on the sequence number. Each member keeps, per sender, the
 * next sequence number it expects: a lower one is a duplicate (or, when
 * lines were skipped before, out of order), a higher one skips lines
 * (missing, unless they turn up later). After the run the senders stop,
 * members drain for at most -t seconds, and whatever a live member still
 * lacks is missing.
 *
 * One thread, one epoll loop; nothing on the hot path allocates. */

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netecho-benchcore.h"
#include "netecho-common.h"
#include "netecho-hist.h"
#include "util.h"

#define DEFAULT_MEMBERS 10
#define DEFAULT_SIZE 64
#define DEFAULT_DURATION_SEC 5
#define DEFAULT_TIMEOUT_SEC 10
#define MAX_MEMBERS 100000UL
#define MAX_RATE 1000000UL
/* members x senders counters (two uint64_t each) stay under 64 MiB. */
#define MAX_PAIRS (4UL * 1024 * 1024)
/* The header every line starts with: "%08x %010llx %016llx ". */
#define LINE_HEADER 37
#define MIN_SIZE 40UL
/* netechod's max_line can be at most 65536; leave room for the line end. */
#define MAX_SIZE 65000UL
#define MAX_ALSO 64

/* Members connecting or joining at once: a burst larger than a listen
 * backlog would only make the kernel drop and retry SYNs. */
#define JOIN_PARALLEL 64
/* Bytes in flight per member, over all senders: the window of each
 * sender is this divided by the line size and the number of senders
 * (WINDOW_MIN to WINDOW_MAX lines). netechod drops a member with over
 * 64 KiB of unsent output; this stays well below. */
#define WINDOW_BYTES (32u * 1024)
#define WINDOW_MIN 2u
#define WINDOW_MAX 128u
/* UDP: datagrams in flight over all senders. Every datagram costs a
 * socket buffer about a kilobyte however small it is, and a full buffer
 * drops: the server's receive buffer and each member's must not fill. */
#define UDP_WINDOW 32u
/* A blocked sender looks at its members' progress at most this often. */
#define ACK_CHECK_NSEC (200 * 1000)
#define RECV_BUF_SIZE (256u * 1024)
/* Reads per readiness event, so that one busy member cannot starve the rest. */
#define READS_PER_EVENT 8
#define MAX_EVENTS 256
#define TICK_MSEC 10
/* UDP: a name, /join or sync that got no answer is sent again this late. */
#define UDP_RETRY_NSEC (500 * NSEC_PER_MSEC)
#define UDP_RCVBUF (4 * 1024 * 1024)
#define FIRST_ERROR_MAX 256
#define NAME_MAX_LEN 32
#define IRC_CHANNEL "#bench"
#define IRC_PRIVMSG "PRIVMSG " IRC_CHANNEL " :"

enum chat_proto {
	PROTO_TCP,
	PROTO_UDP,
	PROTO_IRC,
	PROTO_NCAT,
	_PROTO_MAX,
};

static const char *const proto_names[_PROTO_MAX] = {
	[PROTO_TCP] = "tcp",
	[PROTO_UDP] = "udp",
	[PROTO_IRC] = "irc",
	[PROTO_NCAT] = "ncat",
};

enum phase {
	PHASE_JOIN,
	PHASE_SYNC,
	PHASE_RUN,
	PHASE_DRAIN,
	PHASE_DONE,
	_PHASE_MAX,
};

enum member_state {
	MEMBER_IDLE,
	MEMBER_CONNECTING,
	MEMBER_JOINING,
	MEMBER_JOINED,
	MEMBER_DEAD,
	_MEMBER_STATE_MAX,
};

struct member {
	int fd;
	uint32_t id;
	uint8_t state;
	bool want_out;
	bool got_sync;
	bool overlong; /* discarding the rest of a line too long to be ours */
	struct netecho_benchcore_target *target;
	char name[NAME_MAX_LEN];
	/* the partial line received so far */
	char *line;
	uint32_t line_len;
	/* TCP and IRC: bytes waiting to be written */
	char *out;
	uint32_t out_off, out_len;
	uint64_t retry_at; /* UDP: when to repeat the name, /join or sync */
	/* senders only */
	uint64_t queued; /* lines built (= the next sequence number) */
	uint64_t acked;  /* lowest next sequence number over the live members */
	uint64_t ack_checked;
	uint64_t offset; /* rate mode: line k is due at start + offset + k / rate */
};

struct counters {
	uint64_t deliveries;
	uint64_t missing;
	uint64_t duplicate;
	uint64_t out_of_order;
	uint64_t disconnected;
	uint64_t corrupt;
	uint64_t server_errors;
	uint64_t not_joined;
};

struct chat {
	/* options */
	enum chat_proto proto;
	unsigned long members;
	unsigned long senders;
	unsigned long rate;
	unsigned long size;
	uint64_t duration; /* ns */
	uint64_t timeout;  /* ns */
	const char *oper;  /* IRC "NAME:PASSWORD" for OPER, senders only */
	struct netecho_benchcore_target targets[1 + MAX_ALSO];
	size_t n_targets;

	char tag[8]; /* name prefix of this run: "b" and 3 hex digits */
	size_t tag_len;
	unsigned window;
	int epfd;
	uint8_t *rbuf;
	struct member *memberv;
	/* [member * senders + sender]: next sequence number expected, and
	 * how many below it were skipped and have not turned up since */
	uint64_t *next;
	uint64_t *skipped;
	struct netecho_hist *hist;
	struct counters c;
	char first_error[FIRST_ERROR_MAX];

	enum phase phase;
	size_t next_connect;
	size_t pending; /* connecting or joining */
	size_t joined;
	size_t dead;
	uint64_t phase_deadline;
	uint64_t start, end;
};

static void
usage(FILE *f)
{
	fputs("Usage: netecho bench --chat [-u | --irc | --ncat] HOST PORT [--also HOST:PORT]...\n"
	      "                     [-c MEMBERS] [-S SENDERS] [-r RATE] [-s SIZE]\n"
	      "                     [-d SECONDS] [-t TIMEOUT] [--oper NAME:PASSWORD]\n"
	      "\n"
	      "Load a chat room and check that every member gets every other sender's\n"
	      "lines exactly once and in order.\n"
	      "\n"
	      "  -c, --members N     members joining the room (default 10)\n"
	      "  -S, --senders N     how many of them send (default all)\n"
	      "  -r, --rate N        lines a second per sender; 0: as fast as the room\n"
	      "                      takes them (default 0)\n"
	      "  -s, --size BYTES    line length without the line end (default 64, at\n"
	      "                      least 40)\n"
	      "  -d, --duration S    how long to send, fractions allowed (default 5)\n"
	      "  -t, --timeout S     longest wait for the joins and for the final drain\n"
	      "                      (default 10)\n"
	      "      --also HOST:PORT  another listener of the same room; members are\n"
	      "                      spread round-robin over all of them\n"
	      "  -u, --udp           netechod UDP chat (joins through /join)\n"
	      "      --irc           an IRC server: NICK, USER, JOIN " IRC_CHANNEL ", PRIVMSG\n"
	      "      --oper N:P      IRC: senders send OPER N P before joining\n"
	      "      --ncat          ncat --chat: no name line, names are ncat's userN\n",
	      f);
	netecho_benchcore_usage_end(f);
}

#define usage_error(...) netecho_usage_error("bench", usage, __VA_ARGS__)

static bool
is_sender(const struct chat *b, const struct member *m)
{
	return m->id < b->senders;
}

/* Count the first problem's description for the report. */
static void _printf_(3, 4)
note_error(struct chat *b, const struct member *m, const char *fmt, ...)
{
	char who[8 + NAME_MAX_LEN];
	va_list ap;

	snprintf(who, sizeof(who), "member %s", m ? m->name : "-");
	va_start(ap, fmt);
	netecho_benchcore_vnote(b->first_error, sizeof(b->first_error), who, fmt, ap);
	va_end(ap);
}

/* ---- members ---- */

static void
member_kill(struct chat *b, struct member *m, const char *why)
{
	if (m->state == MEMBER_DEAD)
		return;
	if (m->state == MEMBER_CONNECTING || m->state == MEMBER_JOINING) {
		b->pending--;
		b->c.not_joined++;
	} else if (m->state == MEMBER_JOINED)
		b->joined--;
	b->c.disconnected++;
	note_error(b, m, "%s", why);
	/* close() also drops the fd from the epoll set. */
	m->fd = safe_close(m->fd);
	m->state = MEMBER_DEAD;
	b->dead++;
}

static void
set_want_out(struct chat *b, struct member *m, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = m };

	if (m->want_out == on || m->fd < 0)
		return;
	if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, m->fd, &ev) < 0) {
		member_kill(b, m, "epoll_ctl failed");
		return;
	}
	m->want_out = on;
}

/* A member's output buffer: room for a batch of lines and the protocol
 * replies behind them. */
static size_t
out_capacity(const struct chat *b)
{
	return b->size + 1024 + 8192;
}

static size_t
out_room(const struct chat *b, const struct member *m)
{
	return out_capacity(b) - m->out_len;
}

/* TCP and IRC: queue a protocol line (name, PONG, sync) with its CRLF.
 * Data lines go through sender_fill(). */
static void
member_queue(struct chat *b, struct member *m, const char *fmt, ...)
	_printf_(3, 4);

static void
member_queue(struct chat *b, struct member *m, const char *fmt, ...)
{
	size_t room = out_room(b, m);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(m->out + m->out_len, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n + 2 > room) {
		member_kill(b, m, "output buffer full");
		return;
	}
	memcpy(m->out + m->out_len + n, "\r\n", 2);
	m->out_len += (uint32_t)n + 2;
}

/* UDP: one datagram. A full socket buffer loses it, like the network
 * would; the retry timers of the join phase cover that. */
static void
member_send_dgram(struct chat *b, struct member *m, const char *text)
{
	ssize_t n;

	do
		n = send(m->fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno != EAGAIN && errno != ECONNREFUSED)
		member_kill(b, m, strerror(errno));
}

static void sender_fill(struct chat *b, struct member *m, uint64_t now);

/* TCP and IRC: write what is queued, then let a sender add more. */
static void
member_flush(struct chat *b, struct member *m, uint64_t now)
{
	for (unsigned round = 0; m->fd >= 0 && round < 64; round++) {
		while (m->out_off < m->out_len) {
			ssize_t n = send(m->fd, m->out + m->out_off, m->out_len - m->out_off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					set_want_out(b, m, true);
					return;
				}
				member_kill(b, m, strerror(errno));
				return;
			}
			m->out_off += (uint32_t)n;
		}
		m->out_off = m->out_len = 0;
		if (!is_sender(b, m) || m->state != MEMBER_JOINED)
			break;
		sender_fill(b, m, now);
		if (m->out_len == 0)
			break;
	}
	set_want_out(b, m, m->out_len > m->out_off);
}

static void
member_joined(struct chat *b, struct member *m)
{
	if (m->state != MEMBER_JOINING)
		return;
	m->state = MEMBER_JOINED;
	b->pending--;
	b->joined++;
}

/* ---- lines ---- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool
parse_hex(const char *s, size_t len, uint64_t *ret)
{
	uint64_t v = 0;

	for (size_t i = 0; i < len; i++) {
		int d = hexval(s[i]);

		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*ret = v;
	return true;
}

static char
pad_char(uint64_t seq, size_t i)
{
	return (char)('a' + (seq + i) % 26);
}

/* The text of data line seq of sender id (size bytes, no line end). */
static void
build_line(const struct chat *b, char *buf, uint32_t id, uint64_t seq, uint64_t now)
{
	char head[LINE_HEADER + 1];

	snprintf(head, sizeof(head), "%08x %010llx %016llx ", id,
		 (unsigned long long)(seq & UINT64_C(0xffffffffff)), (unsigned long long)now);
	memcpy(buf, head, LINE_HEADER);
	for (size_t i = LINE_HEADER; i < b->size; i++)
		buf[i] = pad_char(seq, i);
}

/* A data line (or "sync") from another member arrived at m. */
static void
on_payload(struct chat *b, struct member *m, const char *p, size_t len, uint64_t now)
{
	uint64_t id, seq, ts;
	size_t k;
	uint64_t *next, *skipped;

	if (len == 4 && memcmp(p, "sync", 4) == 0) {
		m->got_sync = true;
		return;
	}
	if (len != b->size || p[8] != ' ' || p[19] != ' ' || p[36] != ' ' ||
	    !parse_hex(p, 8, &id) || !parse_hex(p + 9, 10, &seq) || !parse_hex(p + 20, 16, &ts) ||
	    id >= b->senders || id == m->id) {
		b->c.corrupt++;
		note_error(b, m, "unexpected line '%.*s'", (int)MIN(len, (size_t)60), p);
		return;
	}
	for (size_t i = LINE_HEADER; i < len; i++)
		if (p[i] != pad_char(seq, i)) {
			b->c.corrupt++;
			note_error(b, m, "line %llu of sender %llu changed at byte %zu",
				   (unsigned long long)seq, (unsigned long long)id, i);
			return;
		}
	k = (size_t)m->id * b->senders + id;
	next = &b->next[k];
	skipped = &b->skipped[k];
	if (seq == *next) {
		(*next)++;
	} else if (seq > *next) {
		if (seq >= b->memberv[id].queued) {
			b->c.corrupt++;
			note_error(b, m, "line %llu of sender %llu was never sent",
				   (unsigned long long)seq, (unsigned long long)id);
			return;
		}
		*skipped += seq - *next;
		*next = seq + 1;
	} else if (*skipped > 0) {
		/* Without a bitmap of what was skipped, a late line is taken to
		 * be one of the skipped ones. */
		(*skipped)--;
		b->c.out_of_order++;
		note_error(b, m, "line %llu of sender %llu out of order",
			   (unsigned long long)seq, (unsigned long long)id);
	} else {
		b->c.duplicate++;
		note_error(b, m, "line %llu of sender %llu twice", (unsigned long long)seq,
			   (unsigned long long)id);
		return;
	}
	b->c.deliveries++;
	netecho_hist_add(b->hist, now > ts ? now - ts : 0);
}

static bool
startswith_n(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(s, prefix, n) == 0;
}

/* A name of this run ("b1f3" followed by digits)? */
static bool
our_name(const struct chat *b, const char *s, size_t len)
{
	return len > b->tag_len && memcmp(s, b->tag, b->tag_len) == 0;
}

static void
chat_line(struct chat *b, struct member *m, const char *s, size_t len, uint64_t now)
{
	const char *gt;

	/* ncat --chat names members "userN" itself and announces a newcomer
	 * to it with "<announce> already connected: ...". */
	if (b->proto == PROTO_NCAT && startswith_n(s, len, "<announce> ")) {
		if (startswith_n(s, len, "<announce> already connected"))
			member_joined(b, m);
		return;
	}
	/* ... and prefixes "<userN> " to what one read brought, not to each
	 * line: a bare line is a payload too. */
	if (b->proto == PROTO_NCAT && m->state == MEMBER_JOINED && len > 0 && s[0] != '<') {
		on_payload(b, m, s, len, now);
		return;
	}
	if (len > 0 && s[0] == '<') {
		gt = memchr(s, '>', len);
		if (!gt || (size_t)(gt - s) + 2 > len || gt[1] != ' ')
			goto bad;
		/* Lines of others sharing the room are none of our business. */
		if (b->proto != PROTO_NCAT && !our_name(b, s + 1, (size_t)(gt - s - 1)))
			return;
		on_payload(b, m, gt + 2, len - (size_t)(gt - s) - 2, now);
		return;
	}
	if (len > 0 && s[0] == '!') {
		b->c.server_errors++;
		note_error(b, m, "server said '%.*s'", (int)MIN(len, (size_t)120), s);
		return;
	}
	if (m->state != MEMBER_JOINING)
		return;
	if (startswith_n(s, len, "* you are ")) {
		member_joined(b, m);
		return;
	}
	if (b->proto == PROTO_UDP && startswith_n(s, len, "* to join as ")) {
		const char *cmd = memmem(s, len, "send: /join ", 12);
		char buf[256];
		size_t n;

		if (!cmd)
			goto bad;
		cmd += 6;
		n = len - (size_t)(cmd - s);
		if (n >= sizeof(buf))
			goto bad;
		memcpy(buf, cmd, n);
		buf[n] = '\0';
		member_send_dgram(b, m, buf);
		m->retry_at = now + UDP_RETRY_NSEC;
	}
	return;
bad:
	b->c.corrupt++;
	note_error(b, m, "unexpected line '%.*s'", (int)MIN(len, (size_t)120), s);
}

/* ":nick!user@host CMD ARGS" */
static void
irc_line(struct chat *b, struct member *m, const char *s, size_t len, uint64_t now)
{
	const char *nick = NULL, *cmd = s, *end = s + len, *sp;
	size_t nick_len = 0, cmd_len;

	if (len > 0 && s[0] == ':') {
		sp = memchr(s, ' ', len);
		if (!sp)
			return;
		nick = s + 1;
		for (nick_len = 0; nick + nick_len < sp && nick[nick_len] != '!'; nick_len++)
			;
		cmd = sp + 1;
	}
	sp = memchr(cmd, ' ', (size_t)(end - cmd));
	cmd_len = sp ? (size_t)(sp - cmd) : (size_t)(end - cmd);

	if (cmd_len == 4 && memcmp(cmd, "PING", 4) == 0) {
		member_queue(b, m, "PONG%.*s", (int)(end - cmd - 4), cmd + 4);
		return;
	}
	if (cmd_len == 7 && memcmp(cmd, "PRIVMSG", 7) == 0) {
		const char *text = sp ? memmem(sp, (size_t)(end - sp), " :", 2) : NULL;

		if (!text || !nick)
			return;
		if (!our_name(b, nick, nick_len))
			return;
		text += 2;
		on_payload(b, m, text, (size_t)(end - text), now);
		return;
	}
	if (cmd_len == 5 && memcmp(cmd, "ERROR", 5) == 0) {
		b->c.server_errors++;
		note_error(b, m, "server said '%.*s'", (int)MIN(len, (size_t)120), s);
		return;
	}
	if (cmd_len != 3 || !nick)
		return;
	if (memcmp(cmd, "001", 3) == 0 && m->state == MEMBER_JOINING) {
		if (b->oper && is_sender(b, m)) {
			const char *colon = strchr(b->oper, ':');

			member_queue(b, m, "OPER %.*s %s", (int)(colon - b->oper), b->oper,
				     colon + 1);
		}
		member_queue(b, m, "JOIN " IRC_CHANNEL);
		return;
	}
	if (memcmp(cmd, "366", 3) == 0) {
		member_joined(b, m);
		return;
	}
	/* 4xx and 5xx replies are errors (433 nickname in use, 464 bad
	 * OPER password, 471 channel full, ...). */
	if (cmd[0] == '4' || cmd[0] == '5') {
		b->c.server_errors++;
		note_error(b, m, "server said '%.*s'", (int)MIN(len, (size_t)120), s);
	}
}

static void
handle_line(struct chat *b, struct member *m, char *s, size_t len, uint64_t now)
{
	while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == '\n'))
		len--;
	if (b->proto == PROTO_IRC)
		irc_line(b, m, s, len, now);
	else
		chat_line(b, m, s, len, now);
}

static size_t
line_capacity(const struct chat *b)
{
	return b->size + 1024;
}

/* TCP and IRC: split what was read into lines, keeping a partial one. */
static void
feed(struct chat *b, struct member *m, char *p, size_t n, uint64_t now)
{
	while (n > 0 && m->fd >= 0) {
		char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) + 1 : n;

		if (m->overlong) {
			/* skip to the end of the line */
		} else if (m->line_len == 0 && nl) {
			handle_line(b, m, p, take, now);
		} else if (m->line_len + take > line_capacity(b)) {
			/* ncat's "already connected" names every member: its
			 * start is all that matters. */
			if (b->proto == PROTO_NCAT && m->state == MEMBER_JOINING) {
				size_t k = line_capacity(b) - m->line_len;

				memcpy(m->line + m->line_len, p, k);
				handle_line(b, m, m->line, m->line_len + k, now);
			} else {
				b->c.corrupt++;
				note_error(b, m, "a line longer than %zu bytes", line_capacity(b));
			}
			m->overlong = true;
			m->line_len = 0;
		} else {
			memcpy(m->line + m->line_len, p, take);
			m->line_len += (uint32_t)take;
			if (nl) {
				handle_line(b, m, m->line, m->line_len, now);
				m->line_len = 0;
			}
		}
		if (nl)
			m->overlong = false;
		p += take;
		n -= take;
	}
}

static void
member_read(struct chat *b, struct member *m)
{
	for (unsigned i = 0; i < READS_PER_EVENT && m->fd >= 0; i++) {
		ssize_t n = recv(m->fd, b->rbuf, RECV_BUF_SIZE, MSG_DONTWAIT);
		uint64_t now;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			member_kill(b, m, strerror(errno));
			return;
		}
		now = now_nsec();
		if (b->proto == PROTO_UDP) {
			handle_line(b, m, (char *)b->rbuf, (size_t)n, now);
			continue;
		}
		if (n == 0) {
			member_kill(b, m, "the server closed the connection");
			return;
		}
		feed(b, m, (char *)b->rbuf, (size_t)n, now);
	}
}

/* ---- senders ---- */

/* Rate mode: when line k of m is due. */
static uint64_t
due_time(const struct chat *b, const struct member *m, uint64_t k)
{
	return b->start + m->offset + k * NSEC_PER_SEC / b->rate;
}

/* May m build line m->queued now? */
static bool
line_allowed(struct chat *b, struct member *m, uint64_t now)
{
	if (b->phase == PHASE_RUN && now >= b->end)
		return false;
	if (b->phase == PHASE_RUN) {
		if (b->rate > 0 && due_time(b, m, m->queued) > now)
			return false;
	} else if (b->phase == PHASE_DRAIN) {
		/* Rate mode catches up with lines that fell due before the end. */
		if (b->rate == 0 || due_time(b, m, m->queued) >= b->end)
			return false;
	} else
		return false;

	if (m->queued - m->acked < b->window)
		return true;
	if (now - m->ack_checked < ACK_CHECK_NSEC)
		return false;
	m->ack_checked = now;
	m->acked = m->queued;
	for (size_t i = 0; i < b->members; i++) {
		const struct member *o = &b->memberv[i];

		if (o != m && o->state == MEMBER_JOINED)
			m->acked = MIN(m->acked, b->next[i * b->senders + m->id]);
	}
	return m->queued - m->acked < b->window;
}

static void
sender_fill(struct chat *b, struct member *m, uint64_t now)
{
	/* keep room for protocol replies (PONG) behind the data */
	size_t need = b->size + 2 + (b->proto == PROTO_IRC ? 24 : 0) + 512;

	while (m->fd >= 0 && line_allowed(b, m, now)) {
		if (b->proto == PROTO_UDP) {
			char *buf = (char *)b->rbuf;
			ssize_t n;

			build_line(b, buf, m->id, m->queued, now_nsec());
			do
				n = send(m->fd, buf, b->size, MSG_NOSIGNAL | MSG_DONTWAIT);
			while (n < 0 && errno == EINTR);
			if (n < 0) {
				if (errno == EAGAIN)
					set_want_out(b, m, true);
				else
					member_kill(b, m, strerror(errno));
				return;
			}
			m->queued++;
			continue;
		}
		if (out_room(b, m) < need)
			return;
		if (b->proto == PROTO_IRC) {
			memcpy(m->out + m->out_len, IRC_PRIVMSG, strlen(IRC_PRIVMSG));
			m->out_len += (uint32_t)strlen(IRC_PRIVMSG);
		}
		build_line(b, m->out + m->out_len, m->id, m->queued, now_nsec());
		m->out_len += (uint32_t)b->size;
		memcpy(m->out + m->out_len, "\r\n", 2);
		m->out_len += 2;
		m->queued++;
	}
	if (b->proto == PROTO_UDP)
		set_want_out(b, m, false);
}

static void
sender_kick(struct chat *b, struct member *m, uint64_t now)
{
	if (m->state != MEMBER_JOINED)
		return;
	if (b->proto == PROTO_UDP)
		sender_fill(b, m, now);
	else if (!m->want_out)
		member_flush(b, m, now);
}

/* ---- joining ---- */

static void
member_start(struct chat *b, struct member *m, uint64_t now)
{
	const struct netecho_benchcore_target *t = m->target;
	int type = b->proto == PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
	struct epoll_event ev = { .data.ptr = m };
	int one = 1;

	m->state = MEMBER_CONNECTING;
	b->pending++;
	m->fd = socket(t->addr.sa.sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (m->fd < 0) {
		member_kill(b, m, strerror(errno));
		return;
	}
	if (type == SOCK_STREAM) {
		if (setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
			member_kill(b, m, strerror(errno));
			return;
		}
	} else {
		int sz = UDP_RCVBUF;

		/* Best effort: a smaller buffer only makes losses likelier. */
		(void)setsockopt(m->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	if (connect(m->fd, &t->addr.sa, t->addr_len) < 0 && errno != EINPROGRESS) {
		member_kill(b, m, strerror(errno));
		return;
	}
	ev.events = type == SOCK_STREAM ? EPOLLOUT : EPOLLIN;
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, m->fd, &ev) < 0) {
		member_kill(b, m, strerror(errno));
		return;
	}
	m->want_out = type == SOCK_STREAM;
	if (type == SOCK_DGRAM) {
		m->state = MEMBER_JOINING;
		member_send_dgram(b, m, m->name);
		m->retry_at = now + UDP_RETRY_NSEC;
	}
}

static void
member_connected(struct chat *b, struct member *m, uint64_t now)
{
	int r = netecho_connect_result(m->fd);

	if (r < 0) {
		member_kill(b, m, strerror(-r));
		return;
	}
	m->state = MEMBER_JOINING;
	if (b->proto == PROTO_IRC)
		member_queue(b, m, "NICK %s\r\nUSER %s 0 * :netecho bench", m->name, m->name);
	else if (b->proto == PROTO_TCP)
		member_queue(b, m, "%s", m->name);
	member_flush(b, m, now);
}

static void
member_event(struct chat *b, struct member *m, uint32_t events, uint64_t now)
{
	if (m->state == MEMBER_CONNECTING) {
		member_connected(b, m, now);
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		member_read(b, m);
	if (m->fd < 0)
		return;
	if (b->proto == PROTO_UDP) {
		if (events & EPOLLOUT)
			sender_fill(b, m, now);
		return;
	}
	/* Writable, or what was read queued a reply (JOIN, PONG). */
	if ((events & EPOLLOUT) || (!m->want_out && m->out_len > m->out_off))
		member_flush(b, m, now);
}

static void
send_sync(struct chat *b, uint64_t now)
{
	struct member *m = &b->memberv[0];

	if (m->state != MEMBER_JOINED)
		return;
	if (b->proto == PROTO_UDP) {
		member_send_dgram(b, m, "sync");
		m->retry_at = now + UDP_RETRY_NSEC;
	} else {
		member_queue(b, m, b->proto == PROTO_IRC ? IRC_PRIVMSG "sync" : "sync");
		member_flush(b, m, now);
	}
}

static bool
all_synced(const struct chat *b)
{
	for (size_t i = 1; i < b->members; i++)
		if (b->memberv[i].state == MEMBER_JOINED && !b->memberv[i].got_sync)
			return false;
	return true;
}

/* The drain is over when every live sender has written everything it
 * will send and every live member has everything from every live sender. */
static bool
all_delivered(const struct chat *b)
{
	for (size_t s = 0; s < b->senders; s++) {
		const struct member *m = &b->memberv[s];

		if (m->state != MEMBER_JOINED)
			continue;
		if (m->out_len > m->out_off)
			return false;
		if (b->rate > 0 && due_time(b, m, m->queued) < b->end)
			return false;
		for (size_t i = 0; i < b->members; i++)
			if (i != s && b->memberv[i].state == MEMBER_JOINED &&
			    b->next[i * b->senders + s] < m->queued)
				return false;
	}
	return true;
}

static void
start_run(struct chat *b, uint64_t now)
{
	b->phase = PHASE_RUN;
	b->start = now;
	b->end = now + b->duration;
	for (size_t s = 0; s < b->senders; s++) {
		struct member *m = &b->memberv[s];

		/* Spread the senders' lines evenly over each period. */
		if (b->rate > 0)
			m->offset = (NSEC_PER_SEC / b->rate) * s / b->senders;
		sender_kick(b, m, now);
	}
}

/* Move between phases, connect more members, repeat lost datagrams. */
static void
housekeeping(struct chat *b, uint64_t now)
{
	switch (b->phase) {
	case PHASE_JOIN:
		/* ncat 7.9x loses connections that arrive in a burst. */
		while (b->pending < (b->proto == PROTO_NCAT ? 1 : JOIN_PARALLEL) &&
		       b->next_connect < b->members) {
			struct member *m = &b->memberv[b->next_connect++];

			member_start(b, m, now);
		}
		if (b->proto == PROTO_UDP)
			for (size_t i = 0; i < b->next_connect; i++) {
				struct member *m = &b->memberv[i];

				if (m->state == MEMBER_JOINING && now >= m->retry_at) {
					member_send_dgram(b, m, m->name);
					m->retry_at = now + UDP_RETRY_NSEC;
				}
			}
		if (b->next_connect == b->members && b->pending == 0) {
			if (b->memberv[0].state != MEMBER_JOINED || b->joined < 2) {
				note_error(b, NULL, "too few members joined");
				b->phase = PHASE_DONE;
				return;
			}
			b->phase = PHASE_SYNC;
			send_sync(b, now);
		} else if (now >= b->phase_deadline) {
			for (size_t i = 0; i < b->members; i++) {
				struct member *m = &b->memberv[i];

				if (m->state != MEMBER_JOINED && m->state != MEMBER_DEAD)
					member_kill(b, m, "not joined in time");
			}
			note_error(b, NULL, "not every member joined within the timeout");
			b->phase = PHASE_DONE;
		}
		return;
	case PHASE_SYNC:
		if (b->memberv[0].state != MEMBER_JOINED) {
			b->phase = PHASE_DONE;
			return;
		}
		if (all_synced(b)) {
			start_run(b, now);
			return;
		}
		if (now >= b->phase_deadline) {
			b->c.not_joined++;
			note_error(b, NULL, "the sync line did not reach every member in time");
			b->phase = PHASE_DONE;
			return;
		}
		if (b->proto == PROTO_UDP && now >= b->memberv[0].retry_at)
			send_sync(b, now);
		return;
	case PHASE_RUN:
		if (now >= b->end) {
			b->phase = PHASE_DRAIN;
			b->phase_deadline = now + b->timeout;
		}
		return;
	case PHASE_DRAIN:
		if (now >= b->phase_deadline || all_delivered(b))
			b->phase = PHASE_DONE;
		return;
	case PHASE_DONE:
	case _PHASE_MAX:
		return;
	}
}

static void
progress(struct chat *b, uint64_t now, struct netecho_benchcore_progress *p)
{
	uint64_t errors = b->c.missing + b->c.duplicate + b->c.out_of_order +
			  b->c.disconnected + b->c.corrupt + b->c.server_errors;

	netecho_benchcore_progress(p, b->start, now, b->c.deliveries, "deliveries", b->size,
				   errors);
}

static void
chat_run(struct chat *b)
{
	bool tty = isatty(STDERR_FILENO);
	struct netecho_benchcore_progress p = { 0 };
	uint64_t now = now_nsec(), last_housekeeping = 0, next_progress = 0;
	enum phase last_phase = b->phase;

	/* Joining and the sync share one deadline: -t for the whole of it. */
	b->phase_deadline = now + b->timeout;
	housekeeping(b, now);
	while (b->phase != PHASE_DONE) {
		struct epoll_event ev[MAX_EVENTS];
		int timeout = TICK_MSEC, n;

		if (b->phase == PHASE_RUN && b->rate > 0)
			timeout = 1;
		n = epoll_wait(b->epfd, ev, MAX_EVENTS, timeout);
		now = now_nsec();
		if (n < 0) {
			if (errno != EINTR) {
				note_error(b, NULL, "epoll_wait: %s", strerror(errno));
				b->c.corrupt++;
				break;
			}
			n = 0;
		}
		if (netecho_benchcore_signalled()) {
			netecho_benchcore_default_signals();
			if (b->phase == PHASE_RUN)
				b->end = now;
			else if (b->phase != PHASE_DRAIN)
				break;
		}
		for (int i = 0; i < n; i++)
			member_event(b, ev[i].data.ptr, ev[i].events, now);
		if (b->phase == PHASE_RUN || b->phase == PHASE_DRAIN)
			for (size_t s = 0; s < b->senders; s++)
				sender_kick(b, &b->memberv[s], now);
		if (now - last_housekeeping >= TICK_MSEC * NSEC_PER_MSEC || b->phase != last_phase ||
		    b->phase == PHASE_RUN) {
			last_phase = b->phase;
			housekeeping(b, now);
			last_housekeeping = now;
			if (b->phase == PHASE_RUN && next_progress == 0) {
				next_progress = now + NSEC_PER_SEC;
				p.last_time = now;
			}
		}
		if (tty && b->phase == PHASE_RUN && next_progress && now >= next_progress) {
			progress(b, now, &p);
			next_progress += NSEC_PER_SEC;
		}
	}
	/* A UDP peer stays in the room until it quits or idles out: say
	 * goodbye, or the next run would share the room with our ghosts. */
	if (b->proto == PROTO_UDP)
		for (size_t i = 0; i < b->members; i++)
			if (b->memberv[i].state == MEMBER_JOINED)
				member_send_dgram(b, &b->memberv[i], "/quit");
	if (tty && next_progress)
		netecho_benchcore_progress_clear();
	if (b->start && !b->end)
		b->end = now;
}

/* ---- setup and report ---- */

/* "host:port", "[v6]:port". */
static int
parse_host_port(char *s, const char **ret_host, const char **ret_port)
{
	char *colon = strrchr(s, ':');

	if (!colon || colon == s || !colon[1])
		return -EINVAL;
	*colon = '\0';
	if (s[0] == '[') {
		if (colon[-1] != ']')
			return -EINVAL;
		colon[-1] = '\0';
		s++;
	} else if (strchr(s, ':'))
		return -EINVAL; /* an IPv6 address needs brackets */
	if (!*s)
		return -EINVAL;
	*ret_host = s;
	*ret_port = colon + 1;
	return 0;
}

static int
chat_setup(struct chat *b)
{
	size_t pairs = (size_t)b->members * b->senders;
	rlim_t need = (rlim_t)b->members + 32;
	uint16_t tag;
	int r;

	for (size_t i = 0; i < b->n_targets; i++) {
		/* The first address that accepts, except that UDP has nothing
		 * to probe and ncat 7.9x quits when a connection is gone
		 * before it asks for the peer's address. */
		r = netecho_benchcore_resolve(&b->targets[i],
					      b->proto == PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM,
					      b->proto != PROTO_UDP && b->proto != PROTO_NCAT,
					      NETECHO_PROXY_NONE, b->timeout / 1000);
		if (r < 0)
			return r;
	}
	r = netecho_benchcore_raise_fd_limit(need, b->members, "members");
	if (r < 0)
		return r;

	netecho_random(&tag, sizeof(tag));
	snprintf(b->tag, sizeof(b->tag), "b%03x", tag & 0xfffu);
	b->tag_len = strlen(b->tag);
	if (b->proto == PROTO_UDP)
		b->window = (unsigned)MAX(1UL, UDP_WINDOW / b->senders);
	else
		b->window = (unsigned)MIN((unsigned long)WINDOW_MAX,
					  MAX((unsigned long)WINDOW_MIN,
					      WINDOW_BYTES / ((b->size + 2) * b->senders)));

	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0) {
		fprintf(stderr, "netecho: epoll_create1: %s\n", strerror(errno));
		return -errno;
	}
	b->rbuf = malloc(MAX((size_t)RECV_BUF_SIZE, b->size + 64));
	b->memberv = calloc(b->members, sizeof(*b->memberv));
	b->next = calloc(pairs, sizeof(*b->next));
	b->skipped = calloc(pairs, sizeof(*b->skipped));
	b->hist = calloc(1, sizeof(*b->hist));
	if (!b->rbuf || !b->memberv || !b->next || !b->skipped || !b->hist)
		goto oom;
	for (size_t i = 0; i < b->members; i++) {
		struct member *m = &b->memberv[i];

		m->fd = -1;
		m->id = (uint32_t)i;
		m->target = &b->targets[i % b->n_targets];
		snprintf(m->name, sizeof(m->name), "%s%zu", b->tag, i);
		m->line = malloc(line_capacity(b));
		if (b->proto != PROTO_UDP)
			m->out = malloc(out_capacity(b));
		if (!m->line || (b->proto != PROTO_UDP && !m->out))
			goto oom;
	}
	return 0;
oom:
	fprintf(stderr, "netecho: out of memory\n");
	return -ENOMEM;
}

static void
chat_free(struct chat *b)
{
	if (b->memberv)
		for (size_t i = 0; i < b->members; i++) {
			safe_close(b->memberv[i].fd);
			free(b->memberv[i].line);
			free(b->memberv[i].out);
		}
	safe_close(b->epfd);
	free(b->memberv);
	free(b->next);
	free(b->skipped);
	free(b->hist);
	free(b->rbuf);
}

/* What live members still lack from each sender is missing. */
static void
count_missing(struct chat *b)
{
	for (size_t i = 0; i < b->members; i++) {
		if (b->memberv[i].state != MEMBER_JOINED)
			continue;
		for (size_t s = 0; s < b->senders; s++) {
			size_t k = i * b->senders + s;
			uint64_t sent = b->memberv[s].queued;

			if (s == i)
				continue;
			if (sent > b->next[k])
				b->c.missing += sent - b->next[k];
			b->c.missing += b->skipped[k];
		}
	}
	if (b->c.missing)
		note_error(b, NULL, "%llu lines never arrived", (unsigned long long)b->c.missing);
}

static uint64_t
total_errors(const struct counters *c)
{
	return c->missing + c->duplicate + c->out_of_order + c->disconnected + c->corrupt +
	       c->server_errors + c->not_joined;
}

static void
report(struct chat *b, bool ran)
{
	double dur = 0, rate = 0, mbs = 0;
	uint64_t p50 = 0, p99 = 0, max = 0, sent = 0, errors;

	if (ran) {
		count_missing(b);
		for (size_t s = 0; s < b->senders && b->memberv; s++)
			sent += b->memberv[s].queued;
		p50 = netecho_hist_quantile(b->hist, 0.50);
		p99 = netecho_hist_quantile(b->hist, 0.99);
		max = b->hist->max;
		if (b->start && b->end > b->start) {
			dur = (double)(b->end - b->start) / 1e9;
			rate = (double)b->c.deliveries / dur;
			mbs = rate * (double)b->size / 1e6;
		}
	}
	errors = total_errors(&b->c);
	if (!ran)
		errors = MAX(errors, UINT64_C(1));
	netecho_benchcore_print_first_error(b->first_error);
	if (ran) {
		printf("%s chat at %s", proto_names[b->proto], b->targets[0].peer);
		for (size_t i = 1; i < b->n_targets; i++)
			printf(", %s", b->targets[i].peer);
		printf(": %lu members, %lu senders at %s%lu lines/s, %lu-byte lines\n", b->members,
		       b->senders, b->rate ? "" : "max ", b->rate, b->size);
		printf("  duration    %.2f s (joined %zu of %lu)\n", dur, b->joined, b->members);
		printf("  sent        %llu lines\n", (unsigned long long)sent);
		printf("  deliveries  %llu (%.0f/s, %.2f MB/s)\n",
		       (unsigned long long)b->c.deliveries, rate, mbs);
		printf("  latency     p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", (double)p50 / 1e6,
		       (double)p99 / 1e6, (double)max / 1e6);
		printf("  errors      %llu (missing %llu, duplicate %llu, out of order %llu, "
		       "disconnected %llu, corrupt %llu, server %llu)\n",
		       (unsigned long long)errors, (unsigned long long)b->c.missing,
		       (unsigned long long)b->c.duplicate, (unsigned long long)b->c.out_of_order,
		       (unsigned long long)b->c.disconnected, (unsigned long long)b->c.corrupt,
		       (unsigned long long)b->c.server_errors);
	}
	printf("bench mode=chat proto=%s members=%lu senders=%lu rate=%lu size=%lu listeners=%zu "
	       "duration=%.2f joined=%zu sent=%llu deliveries=%llu deliveries_per_s=%.0f "
	       "mb_per_s=%.2f p50_us=%.0f p99_us=%.0f max_us=%.0f missing=%llu duplicate=%llu "
	       "out_of_order=%llu disconnected=%llu corrupt=%llu server_errors=%llu errors=%llu\n",
	       proto_names[b->proto], b->members, b->senders, b->rate, b->size, b->n_targets, dur,
	       b->joined, (unsigned long long)sent, (unsigned long long)b->c.deliveries, rate, mbs,
	       (double)p50 / 1e3, (double)p99 / 1e3, (double)max / 1e3,
	       (unsigned long long)b->c.missing, (unsigned long long)b->c.duplicate,
	       (unsigned long long)b->c.out_of_order, (unsigned long long)b->c.disconnected,
	       (unsigned long long)b->c.corrupt, (unsigned long long)b->c.server_errors,
	       (unsigned long long)errors);
	fflush(stdout);
}

/* Over 80 lines: one getopt switch and the checks between options, as in
 * netecho_bench_main(). */
int
netecho_benchchat_main(int argc, char **argv)
{
	enum { OPT_CHAT = 0x100, OPT_ALSO, OPT_IRC, OPT_NCAT, OPT_OPER };
	static const struct option options[] = {
		{ "chat", no_argument, NULL, OPT_CHAT },
		{ "udp", no_argument, NULL, 'u' },
		{ "irc", no_argument, NULL, OPT_IRC },
		{ "ncat", no_argument, NULL, OPT_NCAT },
		{ "also", required_argument, NULL, OPT_ALSO },
		{ "members", required_argument, NULL, 'c' },
		{ "conns", required_argument, NULL, 'c' },
		{ "senders", required_argument, NULL, 'S' },
		{ "rate", required_argument, NULL, 'r' },
		{ "size", required_argument, NULL, 's' },
		{ "duration", required_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 't' },
		{ "oper", required_argument, NULL, OPT_OPER },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct chat b = {
		.members = DEFAULT_MEMBERS,
		.size = DEFAULT_SIZE,
		.duration = DEFAULT_DURATION_SEC * NSEC_PER_SEC,
		.timeout = DEFAULT_TIMEOUT_SEC * NSEC_PER_SEC,
		.epfd = -1,
		.n_targets = 1,
	};
	bool udp = false, irc = false, ncat = false, senders_set = false;
	int c, r;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":uc:S:r:s:d:t:h", options, NULL)) >= 0) {
		switch (c) {
		case OPT_CHAT:
			break;
		case 'u':
			udp = true;
			break;
		case OPT_IRC:
			irc = true;
			break;
		case OPT_NCAT:
			ncat = true;
			break;
		case OPT_ALSO:
			if (b.n_targets > MAX_ALSO)
				return usage_error("at most %d --also listeners", MAX_ALSO);
			if (parse_host_port(optarg, &b.targets[b.n_targets].host,
					    &b.targets[b.n_targets].port) < 0)
				return usage_error("invalid --also '%s': want HOST:PORT or [V6]:PORT",
						   optarg);
			b.n_targets++;
			break;
		case 'c':
			if (netecho_parse_count(optarg, 2, MAX_MEMBERS, &b.members) < 0)
				return usage_error("invalid -c '%s': want 2 to %lu members", optarg,
						   MAX_MEMBERS);
			break;
		case 'S':
			if (netecho_parse_count(optarg, 1, MAX_MEMBERS, &b.senders) < 0)
				return usage_error("invalid -S '%s': want 1 to %lu senders", optarg,
						   MAX_MEMBERS);
			senders_set = true;
			break;
		case 'r':
			if (netecho_parse_count(optarg, 0, MAX_RATE, &b.rate) < 0)
				return usage_error("invalid -r '%s': want 0 to %lu lines a second",
						   optarg, MAX_RATE);
			break;
		case 's':
			if (netecho_parse_count(optarg, MIN_SIZE, MAX_SIZE, &b.size) < 0)
				return usage_error("invalid -s '%s': want %lu to %lu bytes", optarg,
						   MIN_SIZE, MAX_SIZE);
			break;
		case 'd':
		case 't':
			r = netecho_benchcore_usage_seconds(usage, c, optarg,
							    c == 'd' ? &b.duration : &b.timeout);
			if (r != 0)
				return r;
			break;
		case OPT_OPER:
			if (!strchr(optarg, ':') || optarg[0] == ':' || strpbrk(optarg, " \r\n"))
				return usage_error("invalid --oper: want NAME:PASSWORD, no spaces");
			b.oper = optarg;
			break;
		default: /* -h, ':' and unknown options */
			return netecho_usage_getopt("bench", usage, c, argv);
		}
	}
	r = netecho_benchcore_usage_host_port(usage, argc, argv, &b.targets[0].host,
					      &b.targets[0].port);
	if (r != 0)
		return r;
	if ((int)udp + (int)irc + (int)ncat > 1)
		return usage_error("-u, --irc and --ncat are different protocols; pick one");
	if (b.oper && !irc)
		return usage_error("--oper is an IRC command; it needs --irc");
	b.proto = irc ? PROTO_IRC : ncat ? PROTO_NCAT : udp ? PROTO_UDP : PROTO_TCP;
	if (!senders_set)
		b.senders = b.members;
	if (b.senders > b.members)
		return usage_error("-S %lu is more than the %lu members", b.senders, b.members);
	if ((unsigned long long)b.members * b.senders > MAX_PAIRS)
		return usage_error("-c %lu with -S %lu: members x senders is at most %lu", b.members,
				   b.senders, MAX_PAIRS);

	netecho_benchcore_catch_signals();

	r = chat_setup(&b);
	if (r < 0) {
		report(&b, false);
		chat_free(&b);
		return NETECHO_EXIT_FAILURE;
	}
	chat_run(&b);
	report(&b, true);
	r = total_errors(&b.c) == 0 && b.c.deliveries > 0 ? NETECHO_EXIT_OK : NETECHO_EXIT_FAILURE;
	chat_free(&b);
	return r;
}
