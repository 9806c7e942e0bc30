/* netecho bench: an epoll load generator for echo servers.
 *
 * Modes: ping-pong (each connection sends a message, waits for the whole
 * echo, repeats), pipelined (-P: up to N messages in flight per
 * connection), connect-rate (--connect: open, send -P messages at once,
 * read all their echoes, close, repeat) and UDP (-u: one datagram per message, unanswered ones counted as lost
 * after -t seconds).
 *
 * Every echoed byte is verified. Each connection's byte stream is a slice
 * of one shared random pattern starting at an offset of its own, so
 * bytes that come back on the wrong connection, out of order or changed
 * do not match. Nothing on the hot path allocates, formats or locks: one
 * thread per -T runs an epoll loop over its share of the connections,
 * with counters the progress line reads without locking, and latencies go
 * into a fixed-size log-linear histogram. */

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "netecho-benchcore.h"
#include "netecho-common.h"
#include "netecho-hist.h"
#include "util.h"

#define DEFAULT_CONNS 10
#define DEFAULT_SIZE 64
#define DEFAULT_DURATION_SEC 5
#define DEFAULT_TIMEOUT_TCP_SEC 5
#define DEFAULT_TIMEOUT_UDP_SEC 1
#define MAX_CONNS 1000000UL
#define MAX_THREADS 64UL
#define MAX_PIPELINE 1024UL
#define MAX_TCP_SIZE (16UL * 1024 * 1024)
#define UDP_MAX_PAYLOAD 65507UL
#define UDP6_MAX_PAYLOAD 65527UL

/* The shared pattern: a prime length, so connection offsets i * STRIDE are
 * distinct for the first PAT_LEN connections, followed by a copy of its
 * first CHUNK bytes so that any slice of up to CHUNK bytes is contiguous. */
#define PAT_LEN 65521u
#define PAT_STRIDE 4099u
#define CHUNK 65536u

#define RECV_BUF_SIZE (256u * 1024)
#define MAX_EVENTS 512
/* Housekeeping (timeouts, reconnects, end of run) runs this often. */
#define TICK_NSEC (100 * NSEC_PER_MSEC)
#define DRAIN_TICK_NSEC (10 * NSEC_PER_MSEC)
/* A connection that failed waits this long before the next attempt. */
#define BACKOFF_NSEC (100 * NSEC_PER_MSEC)
/* UDP: how many recent sequence numbers an unmatched reply is checked
 * against before it counts as corrupt rather than late. */
#define LATE_WINDOW 4096
#define SEQ_FREE UINT64_MAX
#define FIRST_ERROR_MAX 256


/* Counters shared with the progress line: one writer, any reader. */
#define STAT_ADD(x, n)                                                                  \
	__atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + (n),          \
			 __ATOMIC_RELAXED)
#define STAT_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

enum bench_mode {
	MODE_PINGPONG,
	MODE_PIPELINE,
	MODE_CONNECT,
	_MODE_MAX,
};

static const char *const mode_names[_MODE_MAX] = {
	[MODE_PINGPONG] = "pingpong",
	[MODE_PIPELINE] = "pipeline",
	[MODE_CONNECT] = "connect",
};

enum conn_state {
	CONN_IDLE,
	CONN_CONNECTING,
	CONN_RUNNING,
	CONN_BACKOFF,
	CONN_DONE,
	_CONN_STATE_MAX,
};

struct worker;

struct conn {
	struct worker *w;
	int fd;
	uint8_t state;
	bool want_out; /* EPOLLOUT is registered */
	/* --proxy: header bytes written on this connection, and its length
	 * once built (0: not yet). Not payload: sent and recvd exclude them. */
	uint8_t hdr_sent;
	uint8_t hdr_len;
	uint32_t id;
	uint32_t gen;  /* bumped by every (re)connect */
	uint32_t base; /* where this connection's stream starts in the pattern */
	/* TCP: stream offsets. sent counts bytes written, recvd bytes read
	 * back and verified; messages are size bytes each. */
	uint64_t sent;
	uint64_t recvd;
	uint64_t cycle; /* connect mode: stream offset of this connection's first message */
	uint64_t t0;    /* start of the connect; in BACKOFF the time to retry */
	/* [pipeline] send time of message m in stamp[m % pipeline]; for UDP
	 * the sequence number in flight in the same slot, or SEQ_FREE. */
	uint64_t *stamp;
	uint64_t *seq;
	uint64_t next_seq; /* UDP: next datagram to send */
	uint64_t oldest;   /* UDP: lowest sequence number maybe in flight */
};

struct bench;

struct worker {
	struct bench *b;
	pthread_t thread;
	bool started;
	int epfd;
	struct conn *conns;
	size_t n_conns;
	uint8_t *rbuf;
	uint64_t end; /* b->end as last seen */
	bool stopping;
	uint64_t drain_end;
	struct netecho_hist hist;
	/* STAT_* counters */
	uint64_t msgs;
	uint64_t connects; /* TCP handshakes completed */
	uint64_t errors;
	uint64_t lost;
	uint64_t late;
	char first_error[FIRST_ERROR_MAX];
};

struct bench {
	/* options */
	bool udp;
	enum bench_mode mode;
	enum netecho_proxy proxy;
	unsigned long conns;
	unsigned long size;
	unsigned long pipeline;
	unsigned long threads;
	uint64_t duration; /* ns */
	uint64_t timeout;  /* ns */
	struct netecho_benchcore_target target; /* HOST, PORT and the address found */

	uint8_t *pat;
	struct conn *connv; /* [conns] */
	uint64_t *slots; /* conns * pipeline stamps, then as many sequence numbers */
	struct worker *workers;
	int done_fd; /* eventfd: workers that finished */

	uint64_t start;
	uint64_t end; /* atomic: lowered to "now" by SIGINT/SIGTERM */
};

static void
usage(FILE *f)
{
	fputs("Usage: netecho bench [-u] HOST PORT [-c CONNS] [-s SIZE] [-d SECONDS]\n"
	      "                     [-P PIPELINE] [-T THREADS] [-t TIMEOUT] [--connect]\n"
	      "                     [--proxy v1|v2]\n"
	      "       netecho bench --chat [-u | --irc] HOST PORT [--also HOST:PORT]...\n"
	      "                     [-c MEMBERS] [-S SENDERS] [-r RATE] [-s SIZE] [-d SECONDS]\n"
	      "\n"
	      "Load an echo server and verify every byte that comes back.\n"
	      "\n"
	      "  -c, --conns N       concurrent connections or UDP sockets (default 10)\n"
	      "  -s, --size BYTES    message size (default 64)\n"
	      "  -d, --duration S    how long to send, fractions allowed (default 5)\n"
	      "  -P, --pipeline N    messages in flight per connection (default 1)\n"
	      "  -T, --threads N     epoll threads sharing the connections (default 1)\n"
	      "  -t, --timeout S     an echo later than this is an error (TCP, default 5)\n"
	      "                      or a lost datagram (UDP, default 1)\n"
	      "  -u, --udp           UDP: one datagram per message\n"
	      "      --connect       connect rate: connect, send PIPELINE messages, read\n"
	      "                      their echoes, close, repeat\n"
	      "      --proxy v1|v2   TCP: every connection sends a PROXY protocol header\n"
	      "                      first (not counted as payload)\n"
	      "      --chat          chat load instead ('netecho bench --chat -h')\n",
	      f);
	netecho_benchcore_usage_end(f);
}

#define usage_error(...) netecho_usage_error("bench", usage, __VA_ARGS__)

/* ---- connections ---- */

static const uint8_t *
pattern_at(const struct bench *b, const struct conn *c, uint64_t off)
{
	return b->pat + (uint32_t)((c->base + off) % PAT_LEN);
}

static void
conn_close(struct conn *c)
{
	/* close() also drops the fd from the epoll set. */
	c->fd = safe_close(c->fd);
	c->want_out = false;
}

/* Count every problem; describe only the first, for the final report. */
static void _printf_(2, 0)
conn_vfail(struct conn *c, const char *fmt, va_list ap)
{
	struct worker *w = c->w;
	char who[32];

	STAT_ADD(w->errors, 1);
	snprintf(who, sizeof(who), "connection %u", c->id);
	netecho_benchcore_vnote(w->first_error, sizeof(w->first_error), who, fmt, ap);
}

static void _printf_(2, 3)
conn_fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_vfail(c, fmt, ap);
	va_end(ap);
}

/* A TCP connection failed: close it, skip its unfinished messages, and
 * try again after BACKOFF_NSEC (unless the run is over). */
static void _printf_(3, 4)
conn_error(struct conn *c, uint64_t now, const char *fmt, ...)
{
	uint64_t size = c->w->b->size;
	va_list ap;

	va_start(ap, fmt);
	conn_vfail(c, fmt, ap);
	va_end(ap);
	conn_close(c);
	c->sent = (c->sent + size - 1) / size * size;
	c->recvd = c->sent;
	c->state = CONN_BACKOFF;
	c->t0 = now + BACKOFF_NSEC;
}

static int
conn_set_events(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		return -errno;
	return 0;
}

static void
want_out(struct conn *c, bool on, uint64_t now)
{
	int r;

	if (c->want_out == on)
		return;
	r = conn_set_events(c, EPOLLIN | (on ? EPOLLOUT : 0));
	if (r < 0) {
		conn_error(c, now, "epoll_ctl: %s", strerror(-r));
		return;
	}
	c->want_out = on;
}

/* --proxy: write what is left of the header and payload[0..n) in one
 * sendmsg(). Returns the payload bytes written (0 when only header bytes
 * went out) or -1 with errno. The header is built again after a short
 * write rather than kept: it is the same bytes, and per-connection memory
 * stays small. */
static bool
header_pending(const struct bench *b, const struct conn *c)
{
	return b->proxy != NETECHO_PROXY_NONE && (c->hdr_len == 0 || c->hdr_sent < c->hdr_len);
}

static ssize_t
send_with_header(struct conn *c, const uint8_t *payload, size_t n)
{
	uint8_t hdr[NETECHO_PROXY_HEADER_MAX];
	struct iovec iov[2];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	size_t h;
	ssize_t k;
	int r;

	r = netecho_proxy_header(c->w->b->proxy, c->fd, hdr, sizeof(hdr));
	if (r < 0) {
		errno = -r;
		return -1;
	}
	c->hdr_len = (uint8_t)r;
	iov[0] = (struct iovec){ .iov_base = hdr + c->hdr_sent,
				 .iov_len = c->hdr_len - c->hdr_sent };
	iov[1] = (struct iovec){ .iov_base = (void *)payload, .iov_len = n };
	k = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (k < 0)
		return -1;
	h = MIN((size_t)k, (size_t)(c->hdr_len - c->hdr_sent));
	c->hdr_sent = (uint8_t)(c->hdr_sent + h);
	return k - (ssize_t)h;
}

/* TCP: write as much of the window as the socket takes. */
static void
tcp_fill(struct conn *c, uint64_t now)
{
	const struct bench *b = c->w->b;
	uint64_t size = b->size, target;

	/* Connect mode: the connection's pipeline messages, all at once. */
	if (b->mode == MODE_CONNECT)
		target = c->cycle + b->pipeline * size;
	else
		target = (c->recvd / size + b->pipeline) * size;
	/* After the end only messages already begun are completed. */
	if (now >= c->w->end)
		target = MIN(target, (c->sent + size - 1) / size * size);

	/* The header goes out even when no message will: a connection
	 * opened just before the end is still a proxied connection. */
	while (c->sent < target || header_pending(b, c)) {
		uint32_t off = (uint32_t)((c->base + c->sent) % PAT_LEN);
		size_t n = c->sent < target ? (size_t)MIN(target - c->sent, (uint64_t)CHUNK) : 0;
		ssize_t k;

		if (header_pending(b, c))
			k = send_with_header(c, b->pat + off, n);
		else
			k = send(c->fd, b->pat + off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				want_out(c, true, now);
				return;
			}
			conn_error(c, now, "send: %s", strerror(errno));
			return;
		}
		/* Stamp every message that starts in what was written. */
		if (b->mode != MODE_CONNECT) {
			uint64_t end = c->sent + (uint64_t)k;

			for (uint64_t m = (c->sent + size - 1) / size; m * size < end; m++)
				c->stamp[m % b->pipeline] = now;
		}
		c->sent += (uint64_t)k;
	}
	want_out(c, false, now);
}

static void
tcp_start(struct conn *c, uint64_t now)
{
	const struct bench *b = c->w->b;
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
	int one = 1;

	c->gen++;
	c->t0 = now;
	c->cycle = c->sent;
	c->hdr_sent = 0;
	c->hdr_len = 0;
	c->fd = socket(b->target.addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_error(c, now, "socket: %s", strerror(errno));
		return;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, &b->target.addr.sa, b->target.addr_len) < 0 && errno != EINPROGRESS) {
		conn_error(c, now, "connect: %s", strerror(errno));
		return;
	}
	/* Writable once the handshake is done, either way. */
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		conn_error(c, now, "epoll_ctl: %s", strerror(errno));
		return;
	}
	c->want_out = true;
	c->state = CONN_CONNECTING;
}

static void
tcp_connected(struct conn *c, uint64_t now)
{
	int r = netecho_connect_result(c->fd);

	if (r < 0) {
		conn_error(c, now, "connect: %s", strerror(-r));
		return;
	}
	STAT_ADD(c->w->connects, 1);
	c->state = CONN_RUNNING;
	tcp_fill(c, now);
}

/* Where the echo first differs from the pattern. */
static size_t
mismatch_at(const uint8_t *want, const uint8_t *got, size_t len)
{
	size_t i = 0;

	while (i < len && want[i] == got[i])
		i++;
	return i;
}

static void
tcp_readable(struct conn *c, uint64_t now)
{
	struct worker *w = c->w;
	const struct bench *b = w->b;
	uint64_t size = b->size, m_first, m_end;
	size_t done = 0;
	ssize_t n;

	n = recv(c->fd, w->rbuf, RECV_BUF_SIZE, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_error(c, now, "receive: %s", strerror(errno));
		return;
	}
	if (n == 0) {
		conn_error(c, now, "server closed the connection after %llu of %llu bytes",
			   (unsigned long long)c->recvd, (unsigned long long)c->sent);
		return;
	}
	if ((uint64_t)n > c->sent - c->recvd) {
		conn_error(c, now, "%llu bytes more than were sent",
			   (unsigned long long)((uint64_t)n - (c->sent - c->recvd)));
		return;
	}
	while (done < (size_t)n) {
		size_t piece = MIN((size_t)n - done, (size_t)CHUNK);
		const uint8_t *want = pattern_at(b, c, c->recvd + done);

		if (memcmp(w->rbuf + done, want, piece) != 0) {
			uint64_t at = c->recvd + done + mismatch_at(want, w->rbuf + done, piece);
			unsigned long long byte = at % size, msg = at / size;

			conn_error(c, now, "echo differs at byte %llu of message %llu", byte, msg);
			return;
		}
		done += piece;
	}

	m_first = c->recvd / size;
	c->recvd += (uint64_t)n;
	m_end = c->recvd / size;
	for (uint64_t m = m_first; m < m_end; m++) {
		uint64_t sent_at = b->mode == MODE_CONNECT ? c->t0 : c->stamp[m % b->pipeline];

		/* Echoes completed after the end are verified, not counted. */
		if (now < w->end) {
			netecho_hist_add(&w->hist, now - sent_at);
			STAT_ADD(w->msgs, 1);
		}
	}

	if (b->mode == MODE_CONNECT) {
		if (c->recvd < c->cycle + b->pipeline * size)
			return;
		conn_close(c);
		if (now < w->end)
			tcp_start(c, now);
		else
			c->state = CONN_DONE;
		return;
	}
	tcp_fill(c, now);
}

/* UDP: send datagrams until pipeline of them are in flight. */
static void
udp_fill(struct conn *c, uint64_t now)
{
	const struct bench *b = c->w->b;

	if (now >= c->w->end) {
		want_out(c, false, now);
		return;
	}
	while (c->next_seq - c->oldest < b->pipeline) {
		uint64_t q = c->next_seq;
		unsigned s = (unsigned)(q % b->pipeline);

		if (send(c->fd, pattern_at(b, c, q * b->size), b->size,
			 MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == ENOBUFS) {
				want_out(c, true, now);
				return;
			}
			/* ECONNREFUSED reports an ICMP error for an earlier
			 * datagram; that one times out as lost. */
			conn_fail(c, "send: %s", strerror(errno));
			return;
		}
		c->seq[s] = q;
		c->stamp[s] = now;
		c->next_seq++;
	}
	want_out(c, false, now);
}

static void
udp_advance(struct conn *c)
{
	unsigned long p = c->w->b->pipeline;

	while (c->oldest < c->next_seq && c->seq[c->oldest % p] != c->oldest)
		c->oldest++;
}

static bool
udp_matches(const struct bench *b, const struct conn *c, const uint8_t *data, uint64_t q)
{
	return memcmp(data, pattern_at(b, c, q * b->size), b->size) == 0;
}

static void
udp_readable(struct conn *c, uint64_t now)
{
	struct worker *w = c->w;
	const struct bench *b = w->b;
	unsigned long p = b->pipeline;
	ssize_t n;
	uint64_t q;

	n = recv(c->fd, w->rbuf, RECV_BUF_SIZE, MSG_TRUNC | MSG_DONTWAIT);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_fail(c, "receive: %s", strerror(errno));
		return;
	}
	if ((uint64_t)n != b->size) {
		conn_fail(c, "reply of %zd bytes to a %lu-byte datagram", n, b->size);
		return;
	}
	/* Replies mostly come in order: the oldest in flight is tried first. */
	for (q = c->oldest; q < c->next_seq; q++) {
		unsigned s = (unsigned)(q % p);

		if (c->seq[s] != q || !udp_matches(b, c, w->rbuf, q))
			continue;
		if (now < w->end) {
			netecho_hist_add(&w->hist, now - c->stamp[s]);
			STAT_ADD(w->msgs, 1);
		}
		c->seq[s] = SEQ_FREE;
		udp_advance(c);
		udp_fill(c, now);
		return;
	}
	/* Not in flight: an answer after it was given up as lost (or a
	 * duplicate) is late; anything else is corrupt. */
	for (q = c->next_seq; q > 0 && c->next_seq - q < LATE_WINDOW; q--)
		if (udp_matches(b, c, w->rbuf, q - 1)) {
			STAT_ADD(w->late, 1);
			return;
		}
	conn_fail(c, "reply matches none of the last %d datagrams sent", LATE_WINDOW);
}

static void
udp_start(struct conn *c, uint64_t now)
{
	const struct bench *b = c->w->b;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	c->gen++;
	c->fd = socket(b->target.addr.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, &b->target.addr.sa, b->target.addr_len) < 0 ||
	    epoll_ctl(c->w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		conn_fail(c, "socket: %s", strerror(errno));
		conn_close(c);
		c->state = CONN_BACKOFF;
		c->t0 = now + BACKOFF_NSEC;
		return;
	}
	c->state = CONN_RUNNING;
	udp_fill(c, now);
}

static void
conn_start(struct conn *c, uint64_t now)
{
	if (c->w->b->udp)
		udp_start(c, now);
	else
		tcp_start(c, now);
}

static void
conn_event(struct conn *c, uint32_t events)
{
	uint32_t gen = c->gen;
	uint64_t now = now_nsec();

	if (c->state == CONN_CONNECTING) {
		tcp_connected(c, now);
		return;
	}
	if (c->state != CONN_RUNNING)
		return;
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (c->w->b->udp)
			udp_readable(c, now);
		else
			tcp_readable(c, now);
	}
	/* The read may have closed or replaced the connection. */
	if ((events & EPOLLOUT) && c->gen == gen && c->state == CONN_RUNNING) {
		if (c->w->b->udp)
			udp_fill(c, now);
		else
			tcp_fill(c, now);
	}
}

/* Timeouts and reconnects. Returns whether c still has work in flight. */
static bool
conn_tick(struct conn *c, uint64_t now, bool expire_all)
{
	struct worker *w = c->w;
	const struct bench *b = w->b;
	uint64_t timeout = expire_all ? 0 : b->timeout;

	switch (c->state) {
	case CONN_BACKOFF:
		if (now >= w->end)
			c->state = CONN_DONE;
		else if (now >= c->t0)
			conn_start(c, now);
		return false;
	case CONN_CONNECTING:
		if (now - c->t0 >= timeout) {
			conn_error(c, now, "connect: no answer within %.3g s",
				   (double)b->timeout / 1e9);
			return false;
		}
		return true;
	case CONN_RUNNING:
		break;
	default:
		return false;
	}

	if (b->udp) {
		for (uint64_t q = c->oldest; q < c->next_seq; q++) {
			unsigned s = (unsigned)(q % b->pipeline);

			if (c->seq[s] == q && now - c->stamp[s] >= timeout) {
				STAT_ADD(w->lost, 1);
				c->seq[s] = SEQ_FREE;
			}
		}
		udp_advance(c);
		udp_fill(c, now);
		return c->oldest < c->next_seq;
	}
	if (c->sent > c->recvd) {
		uint64_t m = c->recvd / b->size;
		uint64_t sent_at = b->mode == MODE_CONNECT ? c->t0 : c->stamp[m % b->pipeline];

		if (now - sent_at >= timeout) {
			conn_error(c, now, "no echo of message %llu within %.3g s",
				   (unsigned long long)m, (double)b->timeout / 1e9);
			return false;
		}
		return true;
	}
	return false;
}

/* Returns true when the worker is finished. */
static bool
worker_tick(struct worker *w, uint64_t now)
{
	bool expire_all = w->stopping && now >= w->drain_end;
	bool busy = false;

	for (size_t i = 0; i < w->n_conns; i++)
		if (conn_tick(&w->conns[i], now, expire_all))
			busy = true;
	return w->stopping && !busy;
}

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	struct epoll_event ev[MAX_EVENTS];
	uint64_t now = now_nsec(), next_tick, one = 1;

	w->end = __atomic_load_n(&b->end, __ATOMIC_RELAXED);
	for (size_t i = 0; i < w->n_conns; i++)
		conn_start(&w->conns[i], now);
	next_tick = now + TICK_NSEC;

	for (;;) {
		uint64_t wake;
		int n, ms;

		w->end = __atomic_load_n(&b->end, __ATOMIC_RELAXED);
		now = now_nsec();
		if (!w->stopping && now >= w->end) {
			w->stopping = true;
			w->drain_end = now + b->timeout;
			next_tick = now;
		}
		if (now >= next_tick) {
			if (worker_tick(w, now))
				break;
			next_tick = now + (w->stopping ? DRAIN_TICK_NSEC : TICK_NSEC);
		}
		wake = w->stopping ? next_tick : MIN(next_tick, w->end);
		ms = wake > now ? (int)((wake - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC) : 0;

		n = epoll_wait(w->epfd, ev, MAX_EVENTS, ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(w->first_error, sizeof(w->first_error), "epoll_wait: %s",
				 strerror(errno));
			STAT_ADD(w->errors, 1);
			break;
		}
		for (int i = 0; i < n; i++)
			conn_event(ev[i].data.ptr, ev[i].events);
	}

	for (size_t i = 0; i < w->n_conns; i++)
		conn_close(&w->conns[i]);
	(void)!write(b->done_fd, &one, sizeof(one));
	return NULL;
}

/* ---- setup and report ---- */

static int
bench_setup(struct bench *b)
{
	size_t n_slots = (size_t)b->conns * b->pipeline;
	unsigned long max_payload;
	rlim_t need;
	int r;

	/* An address that accepts connections (TCP), or the first (UDP). */
	r = netecho_benchcore_resolve(&b->target, b->udp ? SOCK_DGRAM : SOCK_STREAM, !b->udp,
				      b->proxy, b->timeout / 1000);
	if (r < 0)
		return r;
	max_payload = b->target.addr.sa.sa_family == AF_INET6 ? UDP6_MAX_PAYLOAD : UDP_MAX_PAYLOAD;
	if (b->udp && b->size > max_payload) {
		fprintf(stderr, "netecho: a UDP datagram to %s holds at most %lu bytes\n",
			b->target.peer, max_payload);
		return -EMSGSIZE;
	}
	need = (rlim_t)b->conns + 2 * b->threads + 32;
	r = netecho_benchcore_raise_fd_limit(need, b->conns, "connections");
	if (r < 0)
		return r;

	b->pat = malloc(PAT_LEN + CHUNK);
	b->connv = calloc(b->conns, sizeof(*b->connv));
	b->slots = calloc(n_slots, 2 * sizeof(uint64_t));
	b->workers = calloc(b->threads, sizeof(*b->workers));
	if (!b->pat || !b->connv || !b->slots || !b->workers) {
		fprintf(stderr, "netecho: out of memory\n");
		return -ENOMEM;
	}
	for (size_t t = 0; t < b->threads; t++)
		b->workers[t].epfd = -1;
	netecho_random(b->pat, PAT_LEN);
	/* CHUNK > PAT_LEN: the copy wraps around more than once. */
	for (size_t i = PAT_LEN; i < PAT_LEN + CHUNK; i++)
		b->pat[i] = b->pat[i - PAT_LEN];

	for (size_t t = 0; t < b->threads; t++) {
		struct worker *w = &b->workers[t];

		w->b = b;
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		w->rbuf = malloc(RECV_BUF_SIZE);
		if (w->epfd < 0 || !w->rbuf) {
			fprintf(stderr, "netecho: cannot set up a worker: %s\n", strerror(errno));
			return -ENOMEM;
		}
		/* A contiguous share of the connections. */
		w->conns = b->connv + b->conns * t / b->threads;
		w->n_conns = b->conns * (t + 1) / b->threads - b->conns * t / b->threads;
		for (size_t i = 0; i < w->n_conns; i++)
			w->conns[i].w = w;
	}
	for (size_t i = 0; i < b->conns; i++) {
		struct conn *c = &b->connv[i];

		c->fd = -1;
		c->id = (uint32_t)i;
		c->base = (uint32_t)(i * PAT_STRIDE % PAT_LEN);
		c->stamp = b->slots + i * b->pipeline;
		c->seq = b->slots + n_slots + i * b->pipeline;
		for (size_t s = 0; s < b->pipeline; s++)
			c->seq[s] = SEQ_FREE;
	}
	b->done_fd = eventfd(0, EFD_CLOEXEC);
	if (b->done_fd < 0) {
		fprintf(stderr, "netecho: eventfd: %s\n", strerror(errno));
		return -errno;
	}
	return 0;
}

static void
bench_free(struct bench *b)
{
	if (b->workers)
		for (size_t t = 0; t < b->threads; t++) {
			safe_close(b->workers[t].epfd);
			free(b->workers[t].rbuf);
		}
	safe_close(b->done_fd);
	free(b->workers);
	free(b->slots);
	free(b->connv);
	free(b->pat);
}

struct totals {
	uint64_t msgs;
	uint64_t connects;
	uint64_t errors;
	uint64_t lost;
	uint64_t late;
};

static struct totals
sum_counters(const struct bench *b)
{
	struct totals t = { 0 };

	for (size_t i = 0; b->workers && i < b->threads; i++) {
		struct worker *w = &b->workers[i];

		t.msgs += STAT_GET(w->msgs);
		t.connects += STAT_GET(w->connects);
		t.errors += STAT_GET(w->errors);
		t.lost += STAT_GET(w->lost);
		t.late += STAT_GET(w->late);
	}
	return t;
}

static void
progress(const struct bench *b, uint64_t now, struct netecho_benchcore_progress *p)
{
	struct totals t = sum_counters(b);

	netecho_benchcore_progress(p, b->start, now, t.msgs, "msgs", b->size, t.errors);
	fprintf(stderr, "  lost %llu", (unsigned long long)t.lost);
}

/* Run the workers; the main thread keeps the progress line and watches
 * for SIGINT/SIGTERM, which end the run early (a second one kills). */
static void
bench_run(struct bench *b, const sigset_t *waitmask)
{
	bool tty = isatty(STDERR_FILENO);
	struct netecho_benchcore_progress p = { 0 };
	uint64_t next_progress, done = 0;
	size_t started = 0;

	b->start = now_nsec();
	b->end = b->start + b->duration;
	p.last_time = b->start;
	next_progress = b->start + NSEC_PER_SEC;

	for (size_t t = 0; t < b->threads; t++) {
		struct worker *w = &b->workers[t];
		int r = pthread_create(&w->thread, NULL, worker_run, w);

		if (r != 0) {
			snprintf(w->first_error, sizeof(w->first_error),
				 "cannot start a thread: %s", strerror(r));
			w->errors++;
			continue;
		}
		w->started = true;
		started++;
	}
	/* A worker that never started counts as done. */
	done = b->threads - started;

	while (done < b->threads) {
		struct pollfd pfd = { .fd = b->done_fd, .events = POLLIN };
		uint64_t now = now_nsec(), left = next_progress > now ? next_progress - now : 0;
		struct timespec ts = {
			.tv_sec = (time_t)(left / NSEC_PER_SEC),
			.tv_nsec = (long)(left % NSEC_PER_SEC),
		};
		uint64_t v;
		int r;

		r = ppoll(&pfd, 1, &ts, waitmask);
		now = now_nsec();
		if (r < 0 && errno == EINTR) {
			uint64_t end = __atomic_load_n(&b->end, __ATOMIC_RELAXED);

			if (now < end)
				__atomic_store_n(&b->end, now, __ATOMIC_RELAXED);
			netecho_benchcore_default_signals();
			continue;
		}
		if (r > 0 && read(b->done_fd, &v, sizeof(v)) == sizeof(v))
			done += v;
		if (now >= next_progress) {
			if (tty && now < __atomic_load_n(&b->end, __ATOMIC_RELAXED))
				progress(b, now, &p);
			next_progress += NSEC_PER_SEC;
		}
	}
	if (tty)
		netecho_benchcore_progress_clear();
	for (size_t t = 0; t < b->threads; t++)
		if (b->workers[t].started)
			(void)pthread_join(b->workers[t].thread, NULL);
}

static void
report(const struct bench *b, bool ran)
{
	struct netecho_hist *h = NULL;
	struct totals t = sum_counters(b);
	double dur = 0, rate = 0, mbs = 0, conn_rate = 0;
	uint64_t p50 = 0, p99 = 0, p999 = 0, max = 0;

	if (ran) {
		h = calloc(1, sizeof(*h));
		if (h) {
			for (size_t i = 0; i < b->threads; i++)
				netecho_hist_merge(h, &b->workers[i].hist);
			p50 = netecho_hist_quantile(h, 0.50);
			p99 = netecho_hist_quantile(h, 0.99);
			p999 = netecho_hist_quantile(h, 0.999);
			max = h->max;
			free(h);
		}
		dur = (double)(b->end - b->start) / 1e9;
		if (dur > 0) {
			rate = (double)t.msgs / dur;
			conn_rate = (double)t.connects / dur;
			mbs = rate * (double)b->size / 1e6;
		}
		if (t.msgs == 0 && t.errors == 0)
			fprintf(stderr, "netecho: no message was echoed during the run\n");
		for (size_t i = 0; i < b->threads; i++)
			if (b->workers[i].first_error[0]) {
				netecho_benchcore_print_first_error(b->workers[i].first_error);
				break;
			}

		printf("%s %s to %s: %lu %s, %lu-byte messages, pipeline %lu, %lu thread%s\n",
		       b->udp ? "udp" : "tcp", mode_names[b->mode], b->target.peer, b->conns,
		       b->udp ? "sockets" : "connections", b->size, b->pipeline, b->threads,
		       b->threads == 1 ? "" : "s");
		printf("  duration  %.2f s\n", dur);
		printf("  messages  %llu (%.0f msgs/s, %.2f MB/s echoed)\n",
		       (unsigned long long)t.msgs, rate, mbs);
		printf("  latency   p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
		       (double)p50 / 1e6, (double)p99 / 1e6, (double)p999 / 1e6, (double)max / 1e6);
		if (!b->udp)
			printf("  connects  %llu (%.0f connects/s)\n",
			       (unsigned long long)t.connects, conn_rate);
		printf("  errors    %llu\n", (unsigned long long)t.errors);
		if (b->udp)
			printf("  lost      %llu (%llu answered late)\n",
			       (unsigned long long)t.lost, (unsigned long long)t.late);
	} else
		t.errors = MAX(t.errors, UINT64_C(1));

	printf("bench mode=%s proto=%s conns=%lu size=%lu pipeline=%lu threads=%lu duration=%.2f "
	       "msgs=%llu msgs_per_s=%.0f mb_per_s=%.2f connects=%llu connects_per_s=%.0f "
	       "p50_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f errors=%llu lost=%llu late=%llu\n",
	       mode_names[b->mode], b->udp ? "udp" : "tcp", b->conns, b->size, b->pipeline,
	       b->threads, dur, (unsigned long long)t.msgs, rate, mbs,
	       (unsigned long long)t.connects, conn_rate, (double)p50 / 1e3,
	       (double)p99 / 1e3, (double)p999 / 1e3, (double)max / 1e3,
	       (unsigned long long)t.errors, (unsigned long long)t.lost,
	       (unsigned long long)t.late);
	fflush(stdout);
}

/* Over 80 lines: one getopt switch over every option and then the
 * checks between them read best in one piece, in the order the manual
 * lists them; the work itself is in the functions above. */
int
netecho_bench_main(int argc, char **argv)
{
	enum { OPT_CONNECT = 0x100, OPT_PROXY };
	static const struct option options[] = {
		{ "udp", no_argument, NULL, 'u' },
		{ "conns", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "duration", required_argument, NULL, 'd' },
		{ "pipeline", required_argument, NULL, 'P' },
		{ "threads", required_argument, NULL, 'T' },
		{ "timeout", required_argument, NULL, 't' },
		{ "connect", no_argument, NULL, OPT_CONNECT },
		{ "proxy", required_argument, NULL, OPT_PROXY },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct bench b = {
		.conns = DEFAULT_CONNS,
		.size = DEFAULT_SIZE,
		.pipeline = 1,
		.threads = 1,
		.duration = DEFAULT_DURATION_SEC * NSEC_PER_SEC,
		.done_fd = -1,
	};
	bool connect_mode = false, size_set = false;
	uint64_t timeout = 0;
	struct totals totals;
	sigset_t block, waitmask;
	int c, r;

	/* --chat anywhere before "--" selects the chat bench. */
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--chat") == 0)
			return netecho_benchchat_main(argc, argv);

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":uc:s:d:P:T:t:h", options, NULL)) >= 0) {
		switch (c) {
		case 'u':
			b.udp = true;
			break;
		case 'c':
			if (netecho_parse_count(optarg, 1, MAX_CONNS, &b.conns) < 0)
				return usage_error("invalid -c '%s': want 1 to %lu connections",
						   optarg, MAX_CONNS);
			break;
		case 's':
			if (netecho_parse_count(optarg, 1, MAX_TCP_SIZE, &b.size) < 0)
				return usage_error("invalid -s '%s': want 1 to %lu bytes", optarg,
						   MAX_TCP_SIZE);
			size_set = true;
			break;
		case 'd':
		case 't':
			r = netecho_benchcore_usage_seconds(usage, c, optarg,
							    c == 'd' ? &b.duration : &timeout);
			if (r != 0)
				return r;
			break;
		case 'P':
			if (netecho_parse_count(optarg, 1, MAX_PIPELINE, &b.pipeline) < 0)
				return usage_error("invalid -P '%s': want 1 to %lu messages",
						   optarg, MAX_PIPELINE);
			break;
		case 'T':
			if (netecho_parse_count(optarg, 1, MAX_THREADS, &b.threads) < 0)
				return usage_error("invalid -T '%s': want 1 to %lu threads", optarg,
						   MAX_THREADS);
			break;
		case OPT_CONNECT:
			connect_mode = true;
			break;
		case OPT_PROXY:
			if (netecho_proxy_from_string(optarg, &b.proxy) < 0)
				return usage_error("invalid --proxy '%s': want v1 or v2", optarg);
			break;
		default: /* -h, ':' and unknown options */
			return netecho_usage_getopt("bench", usage, c, argv);
		}
	}
	r = netecho_benchcore_usage_host_port(usage, argc, argv, &b.target.host, &b.target.port);
	if (r != 0)
		return r;
	if (connect_mode && b.udp)
		return usage_error("--connect measures TCP connections; it does not go with -u");
	if (b.proxy != NETECHO_PROXY_NONE && b.udp)
		return usage_error("--proxy sends a TCP connection's header; it does not go with -u");
	if (b.udp && size_set && b.size > UDP6_MAX_PAYLOAD)
		return usage_error("-s %lu does not fit in a UDP datagram (at most %lu bytes)",
				   b.size, UDP6_MAX_PAYLOAD);
	b.mode = connect_mode ? MODE_CONNECT : b.pipeline > 1 ? MODE_PIPELINE : MODE_PINGPONG;
	b.threads = MIN(b.threads, b.conns);
	b.timeout = timeout ? timeout
			    : (b.udp ? DEFAULT_TIMEOUT_UDP_SEC : DEFAULT_TIMEOUT_TCP_SEC) *
				      NSEC_PER_SEC;

	/* Workers inherit the blocked mask; only the main thread's ppoll()
	 * lets SIGINT/SIGTERM in. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	(void)sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	netecho_benchcore_catch_signals();

	r = bench_setup(&b);
	if (r < 0) {
		report(&b, false);
		bench_free(&b);
		return NETECHO_EXIT_FAILURE;
	}
	bench_run(&b, &waitmask);
	report(&b, true);
	/* A run in which nothing came back at all has not measured anything. */
	totals = sum_counters(&b);
	r = totals.errors == 0 && totals.msgs > 0 ? NETECHO_EXIT_OK : NETECHO_EXIT_FAILURE;
	bench_free(&b);
	return r;
}
