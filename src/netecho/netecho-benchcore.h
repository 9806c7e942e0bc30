#pragma once

/* Shared by the two load generators, netecho bench (netecho-bench.c) and
 * netecho bench --chat (netecho-benchchat.c): their common options, finding
 * the server, the signals that end a run, the progress line and the first
 * error the report describes. */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "netecho-common.h"
#include "util.h"

/* A server under load: HOST and PORT as given, and the address found. */
struct netecho_benchcore_target {
	const char *host;
	const char *port;
	union sockaddr_any addr;
	socklen_t addr_len;
	char peer[SOCKADDR_STR_MAX];
};

/* The progress line's state: when it was last printed, and the count
 * (messages, deliveries) it showed then. */
struct netecho_benchcore_progress {
	uint64_t last_time;
	uint64_t last_count;
};

/* The end of both usage texts: -h, and what the output and the exit
 * status mean. */
void netecho_benchcore_usage_end(FILE *f);

/* Option -d (the run's length) or -t (the longest wait), opt, with
 * argument arg: seconds > 0, at most a day (-d) or an hour (-t), into
 * *ret_nsec. Returns 0, or after the usage error its exit status (> 0). */
int netecho_benchcore_usage_seconds(void (*usage)(FILE *f), int opt, const char *arg,
				    uint64_t *ret_nsec);

/* The operands after the options: exactly HOST and PORT, neither empty.
 * Returns 0, or after the usage error its exit status (> 0). */
int netecho_benchcore_usage_host_port(void (*usage)(FILE *f), int argc, char **argv,
				      const char **ret_host, const char **ret_port);

/* SIGINT and SIGTERM end the run: from now on each one is noted, for
 * netecho_benchcore_signalled() (and it interrupts a blocking call). */
void netecho_benchcore_catch_signals(void);
/* Whether a signal came since the last call. */
bool netecho_benchcore_signalled(void);
/* The run is ending: a second SIGINT or SIGTERM kills. */
void netecho_benchcore_default_signals(void);

/* Resolve t->host and t->port for socktype. With probe, the first address
 * that accepts a TCP connection within timeout_usec is taken (the probe
 * sends the proxy header, unless NETECHO_PROXY_NONE, and closes at once);
 * without, the first IPv4 or IPv6 one. Fills t->addr, t->addr_len and
 * t->peer. Prints what failed on stderr and returns -errno. */
int netecho_benchcore_resolve(struct netecho_benchcore_target *t, int socktype, bool probe,
			      enum netecho_proxy proxy, uint64_t timeout_usec);

/* Raise RLIMIT_NOFILE to need for n connections or members (what). Prints
 * what failed on stderr and returns -errno. */
int netecho_benchcore_raise_fd_limit(rlim_t need, unsigned long n, const char *what);

/* Count every problem, describe only the first: unless first (size bytes)
 * already holds a description, "WHO: " and the message go there. */
void netecho_benchcore_vnote(char *first, size_t size, const char *who, const char *fmt,
			     va_list ap) _printf_(4, 0);
/* "netecho: first error: ..." on stderr, if there was one. */
void netecho_benchcore_print_first_error(const char *first);

/* The progress line on stderr (a terminal): seconds since start, count's
 * rate per second in units of unit ("msgs") and as MB/s of size-byte
 * messages, and the errors so far. The caller may add to the line. */
void netecho_benchcore_progress(struct netecho_benchcore_progress *p, uint64_t start,
				uint64_t now, uint64_t count, const char *unit,
				unsigned long size, uint64_t errors);
/* Clear the progress line. */
void netecho_benchcore_progress_clear(void);
