/* Bare reference echo servers for the benchmark: the practical ceiling
 * of each concurrency model, with no features at all (no limits, no
 * logging, no timeouts). Bench-only; never installed.
 *
 *   ref-echo MODEL tcp|udp PORT      MODEL: fork thread select poll epoll
 *
 * Binds 127.0.0.1:PORT, prints "ready" on stdout, serves until killed. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUF 16384
#define MAXFD 65536

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

static int
bind_socket(int type, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd, one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (type == SOCK_STREAM && listen(fd, 1024) < 0)
		die("listen");
	return fd;
}

/* Blocking echo of one connection. */
static void
serve_blocking(int fd)
{
	char buf[BUF];
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf)), off = 0;

		if (n <= 0)
			break;
		while (off < n) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w <= 0)
				return;
			off += w;
		}
	}
}

static void *
thread_main(void *arg)
{
	int fd = (int)(intptr_t)arg;

	serve_blocking(fd);
	close(fd);
	return NULL;
}

static void
udp_blocking(int fd)
{
	char buf[65536];

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &len);

		if (n >= 0)
			sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&ss, len);
	}
}

static void *
udp_thread(void *arg)
{
	udp_blocking((int)(intptr_t)arg);
	return NULL;
}

/* Echo what is readable on fd once; -1 when the connection ended. Writes
 * are attempted straight away; a short write is finished blocking-style
 * (the reference servers keep no output buffers). */
static int
echo_once(int fd, char *buf)
{
	ssize_t n = read(fd, buf, BUF), off = 0;

	if (n < 0 && errno == EAGAIN)
		return 0;
	if (n <= 0)
		return -1;
	while (off < n) {
		ssize_t w = write(fd, buf + off, (size_t)(n - off));

		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			poll(&p, 1, -1);
			continue;
		}
		if (w <= 0)
			return -1;
		off += w;
	}
	return 0;
}

static void
udp_once(int fd, char *buf)
{
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		ssize_t n = recvfrom(fd, buf, 65536, MSG_DONTWAIT, (struct sockaddr *)&ss, &len);

		if (n < 0)
			return;
		sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&ss, len);
	}
}

static int
accept_nb(int lfd)
{
	int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;

	if (c >= 0)
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return c;
}

static void
run_select(int lfd, int udp)
{
	static char buf[65536];
	fd_set all, r;
	int maxfd = lfd;

	FD_ZERO(&all);
	FD_SET(lfd, &all);
	for (;;) {
		r = all;
		if (select(maxfd + 1, &r, NULL, NULL, NULL) < 0)
			continue;
		for (int fd = 0; fd <= maxfd; fd++) {
			if (!FD_ISSET(fd, &r))
				continue;
			if (udp) {
				udp_once(fd, buf);
			} else if (fd == lfd) {
				int c = accept_nb(lfd);
				if (c >= 0 && c < FD_SETSIZE) {
					FD_SET(c, &all);
					if (c > maxfd)
						maxfd = c;
				} else if (c >= 0)
					close(c);
			} else if (echo_once(fd, buf) < 0) {
				FD_CLR(fd, &all);
				close(fd);
			}
		}
	}
}

static void
run_poll(int lfd, int udp)
{
	static struct pollfd p[MAXFD];
	static char buf[65536];
	int n = 1;

	p[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	for (;;) {
		if (poll(p, (nfds_t)n, -1) < 0)
			continue;
		for (int i = n - 1; i >= 0; i--) {
			if (!p[i].revents)
				continue;
			if (udp)
				udp_once(p[i].fd, buf);
			else if (i == 0) {
				int c = accept_nb(lfd);
				if (c >= 0 && n < MAXFD)
					p[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
				else if (c >= 0)
					close(c);
			} else if (echo_once(p[i].fd, buf) < 0) {
				close(p[i].fd);
				p[i] = p[--n];
			}
		}
	}
}

static void
run_epoll(int lfd, int udp)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, evs[256];
	static char buf[65536];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (udp)
				udp_once(fd, buf);
			else if (fd == lfd) {
				int c;
				while ((c = accept_nb(lfd)) >= 0) {
					ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
			} else if (echo_once(fd, buf) < 0)
				close(fd);
		}
	}
}

int
main(int argc, char *argv[])
{
	const char *model;
	int udp, lfd;

	if (argc != 4) {
		fprintf(stderr, "usage: ref-echo fork|thread|select|poll|epoll tcp|udp PORT\n");
		return 2;
	}
	model = argv[1];
	udp = strcmp(argv[2], "udp") == 0;
	signal(SIGPIPE, SIG_IGN);
	lfd = bind_socket(udp ? SOCK_DGRAM : SOCK_STREAM, atoi(argv[3]));
	/* Event loops: a non-blocking listener, so accept never stalls. */
	if (strcmp(model, "fork") != 0 && strcmp(model, "thread") != 0)
		fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	printf("ready\n");
	fflush(stdout);

	if (strcmp(model, "fork") == 0) {
		signal(SIGCHLD, SIG_IGN); /* no zombies, no reaping code */
		if (udp) {
			for (int i = 0; i < 2; i++)
				if (fork() == 0)
					udp_blocking(lfd);
			udp_blocking(lfd);
		}
		for (;;) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			if (fork() == 0) {
				close(lfd);
				serve_blocking(c);
				_exit(0);
			}
			close(c);
		}
	} else if (strcmp(model, "thread") == 0) {
		pthread_attr_t at;

		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&at, 256 * 1024);
		if (udp) {
			pthread_t t;
			pthread_create(&t, &at, udp_thread, (void *)(intptr_t)lfd);
			udp_blocking(lfd);
		}
		for (;;) {
			pthread_t t;
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (c < 0)
				continue;
			if (pthread_create(&t, &at, thread_main, (void *)(intptr_t)c) != 0)
				close(c);
		}
	} else if (strcmp(model, "select") == 0)
		run_select(lfd, udp);
	else if (strcmp(model, "poll") == 0)
		run_poll(lfd, udp);
	else if (strcmp(model, "epoll") == 0)
		run_epoll(lfd, udp);
	fprintf(stderr, "unknown model %s\n", model);
	return 2;
}
