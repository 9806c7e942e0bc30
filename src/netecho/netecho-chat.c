/* netecho chat: an interactive line client for the chat service (SPEC
 * section 5). One poll loop over stdin and the socket, so it works the
 * same on a terminal and in a pipe: lines typed go to the server, lines
 * from the server go to stdout with their CRLF turned into LF.
 *
 * TCP: wait for the welcome line, send NAME, then relay both ways. On
 * stdin EOF (or a first SIGINT/SIGTERM) send "/quit" and print what the
 * server still says until it closes, for at most DRAIN_TIMEOUT.
 * UDP (-u): one datagram per line; NAME first, then the "/join TOKEN"
 * the server asks for, so the join needs no typing. */

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netecho-common.h"
#include "util.h"

#define CONNECT_TIMEOUT (10 * USEC_PER_SEC)
#define WELCOME_TIMEOUT (10 * USEC_PER_SEC)
#define DRAIN_TIMEOUT (2 * USEC_PER_SEC)
/* UDP: a lost NAME or /join datagram is sent again this often, this many times. */
#define UDP_RETRY_INTERVAL (2 * USEC_PER_SEC)
#define UDP_TRIES 3
/* Server lines longer than this are printed in pieces. */
#define IN_SIZE (128 * 1024)
/* Bytes read from stdin and not yet sent; stdin waits while it is full. */
#define OUT_SIZE (64 * 1024)
#define DGRAM_MAX 65536
#define NAME_MAX_LEN 1024

struct chat {
	bool udp;
	bool tty;
	int fd;
	char peer[SOCKADDR_STR_MAX];
	uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len;
	bool stdin_open;
	bool stdin_nl; /* the last byte read from stdin was a newline */
	bool quitting;
	uint64_t drain_deadline;
	sigset_t waitmask; /* the signal mask while waiting in ppoll() */
};

static volatile sig_atomic_t got_signal;

static void
usage(FILE *f)
{
	fputs("Usage: netecho chat [-u] HOST PORT NAME\n"
	      "\n"
	      "Join a chat service as NAME. Lines read from stdin are sent; lines from\n"
	      "the server are printed. End of input sends /quit and waits (at most 2 s)\n"
	      "for the server to close.\n"
	      "\n"
	      "  -u, --udp   chat over UDP: one datagram per line, /join done for you\n"
	      "  -h, --help  show this help\n"
	      "\n"
	      "Exit status: 0 the session ended, 1 connection error, 3 usage error.\n",
	      f);
}

#define usage_error(...) netecho_usage_error("chat", usage, __VA_ARGS__)

static int _printf_(1, 2)
fail(const char *fmt, ...)
{
	va_list ap;

	fputs("netecho: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return NETECHO_EXIT_FAILURE;
}

static void
on_signal(int sig)
{
	got_signal = sig;
}

/* Write server text to stdout. On a terminal, control characters other
 * than TAB become '?', so a hostile server cannot drive the terminal. */
static int
emit(const struct chat *c, const uint8_t *p, size_t len, bool newline)
{
	uint8_t buf[4096];
	int r;

	while (len > 0 || newline) {
		size_t n = MIN(len, sizeof(buf) - 1);

		memcpy(buf, p, n);
		if (c->tty)
			for (size_t i = 0; i < n; i++)
				if ((buf[i] < 0x20 && buf[i] != '\t') || buf[i] == 0x7f)
					buf[i] = '?';
		p += n;
		len -= n;
		if (len == 0 && newline) {
			buf[n++] = '\n';
			newline = false;
		}
		r = write_all(STDOUT_FILENO, buf, n);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A line without its CRLF or LF. */
static size_t
strip_eol(const uint8_t *p, size_t len)
{
	if (len > 0 && p[len - 1] == '\n')
		len--;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	return len;
}

static bool
has_prefix(const uint8_t *p, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(p, prefix, n) == 0;
}

/* Wait for events on n fds until deadline (0: none), letting the signals
 * we handle in only here. Returns poll()'s count, or -EINTR after a
 * signal, or -errno. */
static int
chat_poll(struct chat *c, struct pollfd *pfd, nfds_t n, uint64_t deadline)
{
	struct timespec ts, *tsp = NULL;
	int r;

	if (deadline) {
		uint64_t now = now_usec(), left = deadline > now ? deadline - now : 0;

		ts.tv_sec = (time_t)(left / USEC_PER_SEC);
		ts.tv_nsec = (long)(left % USEC_PER_SEC * NSEC_PER_USEC);
		tsp = &ts;
	}
	r = ppoll(pfd, n, tsp, &c->waitmask);
	if (r < 0)
		return -errno;
	return r;
}

/* Print every complete line in c->in and keep the rest. A line that
 * fills the whole buffer is printed as it is. Sets *ret_first to the
 * first line's marker when ret_first is given and nothing was seen yet. */
static int
print_lines(struct chat *c, char *ret_first)
{
	size_t start = 0;
	int r;

	for (;;) {
		uint8_t *nl = memchr(c->in + start, '\n', c->in_len - start);
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (c->in + start)) + 1;
		if (ret_first && !*ret_first)
			*ret_first = len > 1 ? (char)c->in[start] : '?';
		r = emit(c, c->in + start, strip_eol(c->in + start, len), true);
		if (r < 0)
			return r;
		start += len;
	}
	if (start == 0 && c->in_len == IN_SIZE) {
		r = emit(c, c->in, c->in_len, false);
		if (r < 0)
			return r;
		start = c->in_len;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	return 0;
}

/* Queue bytes for the server; they are sent as the socket allows. */
static void
queue(struct chat *c, const void *p, size_t len)
{
	len = MIN(len, OUT_SIZE - c->out_len);
	memcpy(c->out + c->out_len, p, len);
	c->out_len += len;
}

static int
flush_out(struct chat *c)
{
	while (c->out_len > 0) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -errno;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
	return 0;
}

static void
start_quit(struct chat *c)
{
	/* Room for these few bytes is kept free while stdin is open. */
	if (!c->stdin_nl)
		queue(c, "\n", 1);
	queue(c, "/quit\n", 6);
	c->stdin_open = false;
	c->quitting = true;
	c->drain_deadline = now_usec() + DRAIN_TIMEOUT;
}

/* Up to and including the welcome line. */
static int
tcp_welcome(struct chat *c)
{
	uint64_t deadline = now_usec() + WELCOME_TIMEOUT;
	char first = 0;
	int r;

	while (!first) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		ssize_t n;

		r = chat_poll(c, &pfd, 1, deadline);
		if (r == -EINTR)
			return fail("interrupted while waiting for the welcome line");
		if (r < 0)
			return fail("poll: %s", strerror(-r));
		if (r == 0)
			return fail("no welcome line from %s within %llu s", c->peer,
				    (unsigned long long)(WELCOME_TIMEOUT / USEC_PER_SEC));
		n = recv(c->fd, c->in + c->in_len, IN_SIZE - c->in_len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return fail("%s: %s", c->peer, strerror(errno));
		}
		if (n == 0) {
			(void)emit(c, c->in, c->in_len, c->in_len > 0);
			return fail("%s closed the connection before the welcome line", c->peer);
		}
		c->in_len += (size_t)n;
		r = print_lines(c, &first);
		if (r < 0)
			return fail("stdout: %s", strerror(-r));
	}
	/* "! server full" and friends: the server is about to close. */
	if (first == '!')
		return fail("%s refused the session", c->peer);
	return 0;
}

static int
tcp_session(struct chat *c, const char *name)
{
	int r;

	r = tcp_welcome(c);
	if (r != 0)
		return r;
	queue(c, name, strlen(name));
	queue(c, "\n", 1);
	c->stdin_open = true;
	c->stdin_nl = true;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = STDIN_FILENO, .events = POLLIN },
		};
		/* Keep room for start_quit(). */
		size_t room = OUT_SIZE - c->out_len;
		bool want_stdin = c->stdin_open && room > 16;
		ssize_t n;

		r = flush_out(c);
		if (r < 0 && !c->quitting)
			return fail("%s: send: %s", c->peer, strerror(-r));
		if (r < 0)
			c->out_len = 0;
		if (c->out_len > 0)
			pfd[0].events |= POLLOUT;

		r = chat_poll(c, pfd, want_stdin ? 2 : 1, c->quitting ? c->drain_deadline : 0);
		if (r == -EINTR) {
			if (c->quitting)
				return NETECHO_EXIT_FAILURE;
			start_quit(c);
			continue;
		}
		if (r < 0)
			return fail("poll: %s", strerror(-r));
		if (r == 0 && c->quitting)
			return NETECHO_EXIT_OK; /* the server kept it open; we said /quit */

		if (pfd[0].revents & (POLLIN | POLLERR | POLLHUP)) {
			n = recv(c->fd, c->in + c->in_len, IN_SIZE - c->in_len, MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				if (c->quitting)
					return NETECHO_EXIT_OK;
				return fail("%s: %s", c->peer, strerror(errno));
			}
			if (n == 0) {
				/* The server closed: print a last unterminated line. */
				r = emit(c, c->in, c->in_len, c->in_len > 0);
				if (r < 0)
					return fail("stdout: %s", strerror(-r));
				return NETECHO_EXIT_OK;
			}
			if (n > 0) {
				c->in_len += (size_t)n;
				r = print_lines(c, NULL);
				if (r < 0)
					return fail("stdout: %s", strerror(-r));
			}
		}
		if (want_stdin && (pfd[1].revents & (POLLIN | POLLERR | POLLHUP))) {
			n = read(STDIN_FILENO, c->out + c->out_len, room - 16);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				start_quit(c);
				continue;
			}
			c->out_len += (size_t)n;
			c->stdin_nl = c->out[c->out_len - 1] == '\n';
		}
	}
}

/* ---- UDP ---- */

static int
udp_send(struct chat *c, const void *p, size_t len)
{
	if (send(c->fd, p, len, MSG_NOSIGNAL) < 0)
		return -errno;
	return 0;
}

/* Receive and print one datagram as one line. Returns its length without
 * the line end (the text stays in c->in), or -errno. */
static ssize_t
udp_receive(struct chat *c)
{
	ssize_t n;
	size_t len;
	int r;

	n = recv(c->fd, c->in, DGRAM_MAX, MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	len = strip_eol(c->in, MIN((size_t)n, (size_t)DGRAM_MAX));
	r = emit(c, c->in, len, true);
	if (r < 0)
		return r;
	return (ssize_t)len;
}

/* The join handshake: NAME, then the /join TOKEN the server asks for,
 * each sent again when no answer comes. */
static int
udp_join(struct chat *c, const char *name)
{
	char join[512];
	const char *what = name;
	size_t what_len = strlen(name);
	int tries = 0;

	for (;;) {
		uint64_t deadline;
		int r;

		if (tries++ >= UDP_TRIES)
			return fail("no answer from %s after %d tries", c->peer, UDP_TRIES);
		r = udp_send(c, what, what_len);
		if (r < 0)
			return fail("%s: %s", c->peer, strerror(-r));
		deadline = now_usec() + UDP_RETRY_INTERVAL;
		for (;;) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
			const char *tok;
			ssize_t n;

			r = chat_poll(c, &pfd, 1, deadline);
			if (r == -EINTR)
				return fail("interrupted while joining");
			if (r < 0)
				return fail("poll: %s", strerror(-r));
			if (r == 0)
				break; /* send again */
			n = udp_receive(c);
			if (n == -EAGAIN || n == -EINTR)
				continue;
			if (n < 0)
				return fail("%s: %s", c->peer, strerror((int)-n));
			if (has_prefix(c->in, (size_t)n, "* you are "))
				return 0;
			if (has_prefix(c->in, (size_t)n, "! "))
				return fail("%s refused the session", c->peer);
			/* "* to join as NAME, send: /join TOKEN" */
			tok = memmem(c->in, (size_t)n, "send: /join ", 12);
			if (tok && (size_t)n < sizeof(join)) {
				size_t len = (size_t)n - (size_t)(tok + 6 - (const char *)c->in);

				memcpy(join, tok + 6, len);
				what = join;
				what_len = len;
				tries = 0;
				break;
			}
		}
	}
}

static int
udp_session(struct chat *c, const char *name)
{
	_cleanup_(freep) uint8_t *line = NULL;
	size_t line_len = 0;
	int r;

	line = malloc(DGRAM_MAX);
	if (!line)
		return fail("out of memory");
	r = udp_join(c, name);
	if (r != 0)
		return r;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = STDIN_FILENO, .events = POLLIN },
		};
		ssize_t n;

		r = chat_poll(c, pfd, 2, 0);
		if (r == -EINTR)
			break;
		if (r < 0)
			return fail("poll: %s", strerror(-r));
		if (pfd[0].revents & (POLLIN | POLLERR | POLLHUP)) {
			n = udp_receive(c);
			if (n < 0 && n != -EAGAIN && n != -EINTR)
				return fail("%s: %s", c->peer, strerror((int)-n));
		}
		if (!(pfd[1].revents & (POLLIN | POLLERR | POLLHUP)))
			continue;
		n = read(STDIN_FILENO, line + line_len, DGRAM_MAX - line_len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		line_len += (size_t)n;
		/* One datagram per complete line; an overlong line is cut. */
		for (;;) {
			uint8_t *nl = memchr(line, '\n', line_len);
			size_t len = nl ? (size_t)(nl - line) + 1 : line_len;

			if (!nl && line_len < DGRAM_MAX)
				break;
			r = udp_send(c, line, strip_eol(line, len));
			if (r < 0)
				return fail("%s: %s", c->peer, strerror(-r));
			memmove(line, line + len, line_len - len);
			line_len -= len;
		}
	}
	if (line_len > 0)
		(void)udp_send(c, line, strip_eol(line, line_len));
	(void)udp_send(c, "/quit", 5);
	return NETECHO_EXIT_OK;
}

static int
valid_name(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > NAME_MAX_LEN)
		return -EINVAL;
	for (const char *p = name; *p; p++)
		if (*p == '\n' || *p == '\r')
			return -EINVAL;
	return 0;
}

/* Over 80 lines: one getopt switch over every option and then the
 * checks between them read best in one piece, in the order the manual
 * lists them; the work itself is in the functions above. */
int
netecho_chat_main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "udp", no_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	_cleanup_(freep) uint8_t *in = NULL;
	_cleanup_(freep) uint8_t *out = NULL;
	_cleanup_(closep) int fd = -1;
	struct addrinfo *res = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	char err[NETECHO_ERR_MAX];
	union sockaddr_any peer;
	struct chat c = { .fd = -1 };
	sigset_t block;
	const char *host, *port, *name;
	int ch, r;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":uh", options, NULL)) >= 0) {
		switch (ch) {
		case 'u':
			c.udp = true;
			break;
		default: /* -h, ':' and unknown options */
			return netecho_usage_getopt("chat", usage, ch, argv);
		}
	}
	if (argc - optind != 3)
		return usage_error("HOST, PORT and NAME are required");
	host = argv[optind];
	port = argv[optind + 1];
	name = argv[optind + 2];
	if (valid_name(name) < 0)
		return usage_error("NAME must be one line of text");

	in = malloc(MAX(IN_SIZE, DGRAM_MAX));
	out = malloc(OUT_SIZE);
	if (!in || !out)
		return fail("out of memory");
	c.in = in;
	c.out = out;
	c.tty = isatty(STDOUT_FILENO);

	/* SIGINT/SIGTERM/SIGHUP are let in only inside ppoll(), so a signal
	 * cannot slip in between a check and the wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	(void)sigprocmask(SIG_BLOCK, &block, &c.waitmask);
	sigdelset(&c.waitmask, SIGINT);
	sigdelset(&c.waitmask, SIGTERM);
	sigdelset(&c.waitmask, SIGHUP);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);

	r = netecho_resolve(host, port, c.udp ? SOCK_DGRAM : SOCK_STREAM, &res, err, sizeof(err));
	if (r < 0)
		return fail("%s", err);
	if (c.udp) {
		r = -EADDRNOTAVAIL;
		for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
			netecho_ai_to_string(ai, c.peer, sizeof(c.peer));
			fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
				r = 0;
				break;
			}
			r = -errno;
			fd = safe_close(fd);
		}
	} else {
		r = netecho_tcp_connect(res, now_usec() + CONNECT_TIMEOUT, &fd, &peer);
		sockaddr_to_string(&peer, c.peer, sizeof(c.peer));
	}
	freeaddrinfo(res);
	if (r < 0)
		return fail("cannot connect to %s: %s", c.peer, strerror(-r));
	c.fd = fd;

	return c.udp ? udp_session(&c, name) : tcp_session(&c, name);
}
