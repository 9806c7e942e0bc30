/* netecho echo: one probe, monitoring-plugin style (Nagios/Icinga plugin
 * guidelines): one status line on stdout, "|" then performance data, and
 * exit 0 OK, 2 CRITICAL, 3 UNKNOWN. Everything that can wait is bounded by
 * the one -t deadline, name resolution included. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "netecho-common.h"
#include "util.h"

#define DEFAULT_TIMEOUT_SEC 10
#define MAX_TIMEOUT_SEC 86400.0
#define UDP_MAX_PAYLOAD 65507
#define UDP6_MAX_PAYLOAD 65527

struct probe {
	bool udp;
	enum netecho_proxy proxy;
	uint64_t timeout;
	const char *host;
	const char *port;
	const uint8_t *msg;
	size_t len;
	uint64_t start;
	uint64_t deadline;
	char peer[SOCKADDR_STR_MAX];
};

/* Written by the SIGALRM handler when the resolver outlives the deadline. */
static char alarm_msg[512];
static size_t alarm_len;

static void
usage(FILE *f)
{
	fputs("Usage: netecho echo [-u] [-t TIMEOUT] [--proxy v1|v2] HOST PORT [MESSAGE]\n"
	      "\n"
	      "Send MESSAGE (default: \"netecho probe <random hex>\" and a newline) to\n"
	      "an echo service and verify that exactly the same bytes come back.\n"
	      "\n"
	      "  -u, --udp              one datagram, one reply (default: TCP)\n"
	      "  -t, --timeout SECONDS  whole probe, resolving included (default 10;\n"
	      "                         fractions allowed)\n"
	      "      --proxy v1|v2      TCP: send a PROXY protocol header first (for a\n"
	      "                         listener with proxy_protocol = true)\n"
	      "  -h, --help             show this help\n"
	      "\n"
	      "Exit status: 0 OK, 2 CRITICAL (refused, timeout, wrong echo), 3 UNKNOWN.\n",
	      f);
}

static int _printf_(1, 2)
unknown(const char *fmt, ...)
{
	va_list ap;

	fputs("ECHO UNKNOWN - ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	usage(stdout);
	return NETECHO_EXIT_UNKNOWN;
}

static int _printf_(1, 2)
critical(const char *fmt, ...)
{
	va_list ap;

	fputs("ECHO CRITICAL - ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	return NETECHO_EXIT_CRITICAL;
}

static int
ok(const struct probe *p, uint64_t end)
{
	uint64_t t = end - p->start;

	printf("ECHO OK - %zu bytes in %.2f ms|time=%.6fs;;;0 size=%zuB\n", p->len,
	       (double)t / 1000.0, (double)t / 1e6, p->len);
	return NETECHO_EXIT_OK;
}

static double
timeout_sec(const struct probe *p)
{
	return (double)p->timeout / 1e6;
}

/* First offset where got differs from want. */
static size_t
mismatch_at(const uint8_t *want, const uint8_t *got, size_t len)
{
	size_t i = 0;

	while (i < len && want[i] == got[i])
		i++;
	return i;
}

static void
on_alarm(int sig)
{
	(void)sig;
	(void)!write(STDOUT_FILENO, alarm_msg, alarm_len);
	_exit(NETECHO_EXIT_CRITICAL);
}

/* getaddrinfo() cannot be given a deadline; a one-shot timer stands in. */
static int
resolve(struct probe *p, struct addrinfo **ret)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval it = { 0 };
	char err[NETECHO_ERR_MAX];
	uint64_t left;
	int n, r;

	n = snprintf(alarm_msg, sizeof(alarm_msg),
		     "ECHO CRITICAL - timeout after %g s resolving '%s'\n", timeout_sec(p),
		     p->host);
	alarm_len = n < 0 ? 0 : MIN((size_t)n, sizeof(alarm_msg) - 1);
	left = p->deadline > now_usec() ? p->deadline - now_usec() : 1;
	it.it_value.tv_sec = (time_t)(left / USEC_PER_SEC);
	it.it_value.tv_usec = (suseconds_t)(left % USEC_PER_SEC);
	(void)sigaction(SIGALRM, &sa, NULL);
	(void)setitimer(ITIMER_REAL, &it, NULL);

	r = netecho_resolve(p->host, p->port, p->udp ? SOCK_DGRAM : SOCK_STREAM, ret, err,
			    sizeof(err));

	memset(&it, 0, sizeof(it));
	(void)setitimer(ITIMER_REAL, &it, NULL);
	if (r < 0)
		return critical("%s", err);
	return 0;
}

static int
probe_tcp(struct probe *p, const struct addrinfo *res)
{
	_cleanup_(closep) int fd = -1;
	union sockaddr_any peer;
	uint8_t buf[65536], hdr[NETECHO_PROXY_HEADER_MAX];
	size_t sent = 0, got = 0, hdr_len = 0, hdr_sent = 0;
	int r;

	r = netecho_tcp_connect(res, p->deadline, &fd, &peer);
	sockaddr_to_string(&peer, p->peer, sizeof(p->peer));
	if (r == -ETIMEDOUT)
		return critical("timeout after %g s connecting to %s", timeout_sec(p), p->peer);
	if (r < 0)
		return critical("cannot connect to %s: %s", p->peer, strerror(-r));
	if (p->proxy != NETECHO_PROXY_NONE) {
		r = netecho_proxy_header(p->proxy, fd, hdr, sizeof(hdr));
		if (r < 0)
			return critical("%s: cannot build the PROXY header: %s", p->peer,
					strerror(-r));
		hdr_len = (size_t)r;
	}

	/* Read while sending: a message larger than the socket buffers
	 * would otherwise deadlock against a server whose buffer is full. */
	while (got < p->len) {
		bool sending = hdr_sent < hdr_len || sent < p->len;
		short events = POLLIN | (sending ? POLLOUT : 0);
		ssize_t n;

		r = netecho_wait_fd(fd, events, p->deadline);
		if (r == -ETIMEDOUT)
			return critical("timeout after %g s: %zu of %zu bytes echoed by %s",
					timeout_sec(p), got, p->len, p->peer);
		if (r < 0)
			return critical("%s: poll: %s", p->peer, strerror(-r));

		if (sending && (r & (POLLOUT | POLLERR | POLLHUP))) {
			/* The header and the message in one write. */
			struct iovec iov[2] = {
				{ .iov_base = hdr + hdr_sent, .iov_len = hdr_len - hdr_sent },
				{ .iov_base = (void *)(p->msg + sent), .iov_len = p->len - sent },
			};
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
			size_t h;

			n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return critical("%s: send after %zu of %zu bytes: %s", p->peer,
						sent, p->len, strerror(errno));
			if (n > 0) {
				h = MIN((size_t)n, hdr_len - hdr_sent);
				hdr_sent += h;
				sent += (size_t)n - h;
			}
		}
		if (!(r & (POLLIN | POLLERR | POLLHUP)))
			continue;
		n = recv(fd, buf, MIN(sizeof(buf), p->len - got), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return critical("%s: receive after %zu of %zu bytes: %s", p->peer, got,
					p->len, strerror(errno));
		}
		if (n == 0)
			return critical("%s closed the connection after %zu of %zu bytes", p->peer,
					got, p->len);
		if (memcmp(buf, p->msg + got, (size_t)n) != 0)
			return critical("echo from %s differs at byte %zu of %zu", p->peer,
					got + mismatch_at(p->msg + got, buf, (size_t)n), p->len);
		got += (size_t)n;
	}
	return ok(p, now_usec());
}

static int
probe_udp(struct probe *p, const struct addrinfo *res)
{
	static uint8_t buf[65536];
	int last_err = EADDRNOTAVAIL;

	/* Try the next address only when one refuses outright (ICMP port
	 * unreachable), as TCP does; silence is a timeout, not a hint. */
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		_cleanup_(closep) int fd = -1;
		size_t max = ai->ai_family == AF_INET6 ? UDP6_MAX_PAYLOAD : UDP_MAX_PAYLOAD;
		ssize_t n;
		int r;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		netecho_ai_to_string(ai, p->peer, sizeof(p->peer));
		if (p->len > max)
			return unknown(
				"MESSAGE is %zu bytes; a UDP datagram to %s holds at most %zu",
				p->len, p->peer, max);
		fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last_err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			last_err = errno;
			continue;
		}
		if (send(fd, p->msg, p->len, MSG_NOSIGNAL) < 0) {
			last_err = errno;
			if (errno == ECONNREFUSED)
				continue;
			return critical("%s: send: %s", p->peer, strerror(errno));
		}
		for (;;) {
			r = netecho_wait_fd(fd, POLLIN, p->deadline);
			if (r == -ETIMEDOUT)
				return critical("no reply from %s within %g s", p->peer,
						timeout_sec(p));
			if (r < 0)
				return critical("%s: poll: %s", p->peer, strerror(-r));
			n = recv(fd, buf, sizeof(buf), MSG_TRUNC | MSG_DONTWAIT);
			if (n >= 0 || (errno != EAGAIN && errno != EINTR))
				break;
		}
		if (n < 0) {
			last_err = errno;
			if (errno == ECONNREFUSED)
				continue;
			return critical("%s: receive: %s", p->peer, strerror(errno));
		}
		if ((size_t)n != p->len)
			return critical("reply from %s is %zd bytes, sent %zu", p->peer, n, p->len);
		if (memcmp(buf, p->msg, p->len) != 0)
			return critical("echo from %s differs at byte %zu of %zu", p->peer,
					mismatch_at(p->msg, buf, p->len), p->len);
		return ok(p, now_usec());
	}
	if (last_err == ECONNREFUSED)
		return critical("%s: connection refused (port unreachable)", p->peer);
	return critical("%s: %s", p->peer[0] ? p->peer : p->host, strerror(last_err));
}

int
netecho_echo_main(int argc, char **argv)
{
	enum { OPT_PROXY = 0x100 };
	static const struct option options[] = {
		{ "udp", no_argument, NULL, 'u' },
		{ "timeout", required_argument, NULL, 't' },
		{ "proxy", required_argument, NULL, OPT_PROXY },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct probe p = {
		.timeout = DEFAULT_TIMEOUT_SEC * USEC_PER_SEC,
	};
	struct addrinfo *res = NULL;
	char defmsg[64];
	uint64_t rnd;
	int c, r;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":ut:h", options, NULL)) >= 0) {
		switch (c) {
		case 'u':
			p.udp = true;
			break;
		case 't':
			if (netecho_parse_seconds(optarg, MAX_TIMEOUT_SEC, &p.timeout) < 0)
				return unknown("invalid timeout '%s': want seconds > 0, at most %g",
					       optarg, MAX_TIMEOUT_SEC);
			break;
		case OPT_PROXY:
			if (netecho_proxy_from_string(optarg, &p.proxy) < 0)
				return unknown("invalid --proxy '%s': want v1 or v2", optarg);
			break;
		case 'h':
			usage(stdout);
			return NETECHO_EXIT_OK;
		case ':':
			return unknown("option '%s' needs an argument", argv[optind - 1]);
		default:
			return unknown("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind < 2)
		return unknown("HOST and PORT are required");
	if (p.udp && p.proxy != NETECHO_PROXY_NONE)
		return unknown("--proxy sends a TCP connection's header; it does not go with -u");
	if (argc - optind > 3)
		return unknown("too many arguments (quote a MESSAGE with spaces)");
	p.host = argv[optind];
	p.port = argv[optind + 1];
	if (!*p.host || !*p.port)
		return unknown("HOST and PORT must not be empty");
	if (argc - optind == 3) {
		p.msg = (const uint8_t *)argv[optind + 2];
		p.len = strlen(argv[optind + 2]);
		if (p.len == 0 && !p.udp)
			return unknown("an empty MESSAGE can only be sent over UDP (-u)");
	} else {
		netecho_random(&rnd, sizeof(rnd));
		snprintf(defmsg, sizeof(defmsg), "netecho probe %016" PRIx64 "\n", rnd);
		p.msg = (const uint8_t *)defmsg;
		p.len = strlen(defmsg);
	}

	p.start = now_usec();
	p.deadline = p.start + p.timeout;
	r = resolve(&p, &res);
	if (r != 0)
		return r;
	r = p.udp ? probe_udp(&p, res) : probe_tcp(&p, res);
	freeaddrinfo(res);
	return r;
}
