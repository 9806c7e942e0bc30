/* Bare reference chat relay for the benchmark: the practical ceiling of
 * one epoll loop relaying lines, with no features at all (no limits
 * beyond a bound on each member's backlog, no logging, no timeouts, no
 * commands, no sanitizing). Bench-only; never installed.
 *
 *   ref-chat PORT
 *
 * Binds 127.0.0.1:PORT, prints "ready" on stdout, serves until killed.
 * Wire (SPEC section 5, the part netecho bench --chat needs): the first
 * line is the name, answered with "* you are NAME@127.0.0.1; N online";
 * every later line goes to every other named member as "<NAME> text"
 * CRLF. Batching: the complete lines one read brought are formatted once
 * and go to each member as ONE write. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF 65536
#define LINE_MAX_BYTES 4096
#define NAME_MAX_BYTES 32
/* A member with more unsent output than this is dropped, as netechod
 * drops a slow consumer (there at 64 KiB). */
#define OUT_MAX (1024 * 1024)
#define MAXFD 65536
#define MAX_EVENTS 256

struct client {
	int fd;
	int slot; /* index in members[], -1 until named */
	char name[NAME_MAX_BYTES + 1];
	size_t in_len;
	char in[LINE_MAX_BYTES];
	char *out;
	size_t out_off, out_len, out_cap;
	int want_out;
};

static struct client *clients[MAXFD];
static int members[MAXFD];
static int n_members;
static int epfd;
static char rbuf[RBUF];
/* One read's lines, formatted; a read of many tiny lines is sent in
 * several batches. */
static char batch[RBUF * 2];

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

static void
drop(struct client *c)
{
	if (c->slot >= 0) {
		int last = members[--n_members];

		members[c->slot] = last;
		clients[last]->slot = c->slot;
	}
	clients[c->fd] = NULL;
	close(c->fd);
	free(c->out);
	free(c);
}

static void
set_out(struct client *c, int on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = c->fd };

	if (c->want_out == on)
		return;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl");
	c->want_out = on;
}

/* Write what is queued; returns -1 when c was dropped. */
static int
flush(struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			set_out(c, 1);
			return 0;
		}
		if (n < 0) {
			drop(c);
			return -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	set_out(c, 0);
	return 0;
}

/* Send p[0..n) to c: one write when nothing is queued, else queue.
 * Returns -1 when c was dropped. */
static int
deliver(struct client *c, const char *p, size_t n)
{
	if (c->out_len == c->out_off) {
		ssize_t k;

		do
			k = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (k < 0 && errno == EINTR);
		if (k < 0 && errno != EAGAIN) {
			drop(c);
			return -1;
		}
		if (k < 0)
			k = 0;
		p += k;
		n -= (size_t)k;
		c->out_off = c->out_len = 0;
		if (n == 0)
			return 0;
	}
	if (c->out_len - c->out_off + n > OUT_MAX) {
		drop(c);
		return -1;
	}
	if (c->out_len + n > c->out_cap) {
		size_t live = c->out_len - c->out_off, cap = c->out_cap ? c->out_cap : 16384;
		char *o;

		while (cap < live + n)
			cap *= 2;
		o = malloc(cap);
		if (!o)
			die("malloc");
		memcpy(o, c->out + c->out_off, live);
		free(c->out);
		c->out = o;
		c->out_cap = cap;
		c->out_off = 0;
		c->out_len = live;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	set_out(c, 1);
	return 0;
}

static int
name_line(struct client *c, const char *line, size_t len)
{
	char reply[128];
	int n;

	if (len > NAME_MAX_BYTES)
		len = NAME_MAX_BYTES;
	memcpy(c->name, len ? line : "?", len ? len : 1);
	c->name[len ? len : 1] = '\0';
	c->slot = n_members;
	members[n_members++] = c->fd;
	n = snprintf(reply, sizeof(reply), "* you are %s@127.0.0.1; %d online\r\n", c->name,
		     n_members);
	return deliver(c, reply, (size_t)n);
}

/* Every other member gets batch[0..len), one write each. Backwards:
 * drop() moves the last member into the freed slot. */
static void
broadcast(int from, size_t len)
{
	for (int i = n_members - 1; i >= 0; i--)
		if (members[i] != from)
			(void)deliver(clients[members[i]], batch, len);
}

/* Append "<name> line\r\n" to batch at *pos. */
static void
add_line(struct client *c, size_t *pos, const char *line, size_t len)
{
	size_t nl = strlen(c->name);

	batch[(*pos)++] = '<';
	memcpy(batch + *pos, c->name, nl);
	*pos += nl;
	batch[(*pos)++] = '>';
	batch[(*pos)++] = ' ';
	memcpy(batch + *pos, line, len);
	*pos += len;
	batch[(*pos)++] = '\r';
	batch[(*pos)++] = '\n';
}

static void
readable(struct client *c)
{
	int fd = c->fd;
	ssize_t n = recv(fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
	size_t pos = 0, start = 0;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		drop(c);
		return;
	}
	for (size_t i = 0; i < (size_t)n; i++) {
		const char *line;
		size_t len;

		if (rbuf[i] != '\n')
			continue;
		if (c->in_len) {
			/* the rest of a line begun in an earlier read */
			size_t k = i - start;

			if (c->in_len + k > sizeof(c->in))
				k = sizeof(c->in) - c->in_len;
			memcpy(c->in + c->in_len, rbuf + start, k);
			line = c->in;
			len = c->in_len + k;
			c->in_len = 0;
		} else {
			line = rbuf + start;
			len = i - start;
		}
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (c->slot < 0) {
			if (name_line(c, line, len) < 0)
				return;
		} else {
			if (pos + len + NAME_MAX_BYTES + 5 > sizeof(batch)) {
				broadcast(fd, pos);
				pos = 0;
			}
			add_line(c, &pos, line, len);
		}
		start = i + 1;
	}
	if (start < (size_t)n) {
		size_t k = (size_t)n - start;

		if (c->in_len + k > sizeof(c->in))
			k = sizeof(c->in) - c->in_len; /* an overlong line is cut */
		memcpy(c->in + c->in_len, rbuf + start, k);
		c->in_len += k;
	}
	if (pos > 0)
		broadcast(fd, pos);
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN };
	int lfd, one = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: ref-chat PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	a.sin_port = htons((uint16_t)atoi(argv[1]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(lfd, 1024) < 0)
		die("listen");
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	ev.data.fd = lfd;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		struct epoll_event evs[MAX_EVENTS];
		int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			struct client *c;

			if (fd == lfd) {
				int cfd;

				while ((cfd = accept4(lfd, NULL, NULL,
						      SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
					struct epoll_event cev = { .events = EPOLLIN, .data.fd = cfd };

					if (cfd >= MAXFD || !(c = calloc(1, sizeof(*c)))) {
						close(cfd);
						continue;
					}
					setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					c->fd = cfd;
					c->slot = -1;
					clients[cfd] = c;
					if (epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev) < 0)
						drop(c);
				}
				continue;
			}
			c = clients[fd];
			if (!c)
				continue;
			if ((evs[i].events & EPOLLOUT) && flush(c) < 0)
				continue;
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				readable(c);
		}
	}
}
