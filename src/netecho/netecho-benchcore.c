#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netecho-benchcore.h"
#include "netecho-common.h"
#include "util.h"

/* -d and -t: the longest run and the longest wait. */
#define MAX_DURATION_SEC 86400.0
#define MAX_TIMEOUT_SEC 3600.0

static volatile sig_atomic_t got_signal;

void
netecho_benchcore_usage_end(FILE *f)
{
	fputs("  -h, --help          show this help\n"
	      "\n"
	      "The last line on stdout is a key=value summary. Exit status: 0 no errors,\n"
	      "1 errors, 3 usage error.\n",
	      f);
}

int
netecho_benchcore_usage_seconds(void (*usage)(FILE *f), int opt, const char *arg,
				uint64_t *ret_nsec)
{
	double max = opt == 'd' ? MAX_DURATION_SEC : MAX_TIMEOUT_SEC;
	uint64_t usec;

	if (netecho_parse_seconds(arg, max, &usec) < 0)
		return netecho_usage_error("bench", usage,
					   "invalid -%c '%s': want seconds > 0, at most %g", opt,
					   arg, max);
	*ret_nsec = usec * 1000;
	return 0;
}

int
netecho_benchcore_usage_host_port(void (*usage)(FILE *f), int argc, char **argv,
				  const char **ret_host, const char **ret_port)
{
	if (argc - optind != 2)
		return netecho_usage_error("bench", usage,
					   "HOST and PORT are required, and nothing else");
	if (!*argv[optind] || !*argv[optind + 1])
		return netecho_usage_error("bench", usage, "HOST and PORT must not be empty");
	*ret_host = argv[optind];
	*ret_port = argv[optind + 1];
	return 0;
}

static void
on_signal(int sig)
{
	got_signal = sig;
}

void
netecho_benchcore_catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
}

bool
netecho_benchcore_signalled(void)
{
	if (!got_signal)
		return false;
	got_signal = 0;
	return true;
}

void
netecho_benchcore_default_signals(void)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	(void)sigaction(SIGINT, &dfl, NULL);
	(void)sigaction(SIGTERM, &dfl, NULL);
}

static int
send_probe_header(enum netecho_proxy proxy, int fd, uint64_t deadline)
{
	uint8_t hdr[NETECHO_PROXY_HEADER_MAX];
	size_t len, done = 0;
	int r;

	r = netecho_proxy_header(proxy, fd, hdr, sizeof(hdr));
	if (r < 0)
		return r;
	len = (size_t)r;
	while (done < len) {
		ssize_t n = send(fd, hdr + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n >= 0) {
			done += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		r = netecho_wait_fd(fd, POLLOUT, deadline);
		if (r < 0)
			return r;
	}
	return 0;
}

int
netecho_benchcore_resolve(struct netecho_benchcore_target *t, int socktype, bool probe,
			  enum netecho_proxy proxy, uint64_t timeout_usec)
{
	struct addrinfo *res = NULL;
	char err[NETECHO_ERR_MAX];
	int r;

	r = netecho_resolve(t->host, t->port, socktype, &res, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "netecho: %s\n", err);
		return r;
	}
	if (!probe) {
		r = -EADDRNOTAVAIL;
		for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
			if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
				memset(&t->addr, 0, sizeof(t->addr));
				memcpy(&t->addr, ai->ai_addr,
				       MIN((size_t)ai->ai_addrlen, sizeof(t->addr)));
				r = 0;
				break;
			}
	} else {
		uint64_t deadline = now_usec() + timeout_usec;
		int fd = -1;

		r = netecho_tcp_connect(res, deadline, &fd, &t->addr);
		/* Behind a balancer the probe is a connection like the others:
		 * without its header the server would count it as refused. */
		if (r == 0 && proxy != NETECHO_PROXY_NONE)
			r = send_probe_header(proxy, fd, deadline);
		safe_close(fd);
	}
	freeaddrinfo(res);
	sockaddr_to_string(&t->addr, t->peer, sizeof(t->peer));
	if (r < 0) {
		fprintf(stderr, "netecho: cannot connect to %s: %s\n",
			t->peer[0] ? t->peer : t->host, strerror(-r));
		return r;
	}
	t->addr_len = sockaddr_len(&t->addr);
	return 0;
}

int
netecho_benchcore_raise_fd_limit(rlim_t need, unsigned long n, const char *what)
{
	rlim_t hard = 0;
	int r;

	r = netecho_raise_fd_limit(need, &hard);
	if (r == -EMFILE)
		fprintf(stderr,
			"netecho: %lu %s need %llu file descriptors; the hard limit is %llu (ulimit -Hn)\n",
			n, what, (unsigned long long)need, (unsigned long long)hard);
	else if (r < 0)
		fprintf(stderr, "netecho: cannot raise RLIMIT_NOFILE: %s\n", strerror(-r));
	return r;
}

void
netecho_benchcore_vnote(char *first, size_t size, const char *who, const char *fmt, va_list ap)
{
	int n;

	if (first[0])
		return;
	n = snprintf(first, size, "%s: ", who);
	if (n > 0 && (size_t)n < size)
		vsnprintf(first + n, size - (size_t)n, fmt, ap);
}

void
netecho_benchcore_print_first_error(const char *first)
{
	if (first[0])
		fprintf(stderr, "netecho: first error: %s\n", first);
}

void
netecho_benchcore_progress(struct netecho_benchcore_progress *p, uint64_t start, uint64_t now,
			   uint64_t count, const char *unit, unsigned long size, uint64_t errors)
{
	double dt = (double)(now - p->last_time) / 1e9;
	double rate = dt > 0 ? (double)(count - p->last_count) / dt : 0;

	fprintf(stderr, "\r\033[K[%5.1f s] %.0f %s/s  %.2f MB/s  errors %llu",
		(double)(now - start) / 1e9, rate, unit, rate * (double)size / 1e6,
		(unsigned long long)errors);
	p->last_count = count;
	p->last_time = now;
}

void
netecho_benchcore_progress_clear(void)
{
	fputs("\r\033[K", stderr);
}
