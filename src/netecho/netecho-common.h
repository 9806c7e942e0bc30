#pragma once

/* Shared by the netecho(1) subcommands: exit codes, argument parsing,
 * name resolution and bounded socket helpers. */

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>

union sockaddr_any;

/* Monitoring-plugin exit codes; 3 is also every subcommand's usage error. */
#define NETECHO_EXIT_OK 0
#define NETECHO_EXIT_FAILURE 1
#define NETECHO_EXIT_CRITICAL 2
#define NETECHO_EXIT_UNKNOWN 3
#define NETECHO_EXIT_USAGE 3

/* Longest error text the helpers hand back. */
#define NETECHO_ERR_MAX 256

/* "netecho CMD: message" and the usage on stderr; returns the usage exit
 * status. */
int netecho_usage_error(const char *cmd, void (*usage)(FILE *f), const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The getopt results every subcommand's switch ends with, for c: -h shows
 * the usage on stdout (exit 0); a missing argument (':') or an unknown
 * option is a usage error. Returns the exit status. */
int netecho_usage_getopt(const char *cmd, void (*usage)(FILE *f), int c, char **argv);

/* Subcommand entry points: argv[0] is the subcommand name. Return the exit
 * status. */
int netecho_echo_main(int argc, char **argv);
int netecho_chat_main(int argc, char **argv);
int netecho_bench_main(int argc, char **argv);
/* netecho bench --chat; argv as for netecho_bench_main(). */
int netecho_benchchat_main(int argc, char **argv);

/* "10", "0.5", "1e-3": positive seconds, at most max, as microseconds (at
 * least 1). -EINVAL or -ERANGE. */
int netecho_parse_seconds(const char *s, double max, uint64_t *ret_usec);
/* A decimal integer in [min, max]. -EINVAL or -ERANGE. */
int netecho_parse_count(const char *s, unsigned long min, unsigned long max,
			unsigned long *ret);

/* getaddrinfo() for host and port (number or service name), IPv4 and
 * IPv6, in the resolver's order. On failure returns -ENOENT (name or
 * service unknown) or another -errno and writes a message to reterr. */
int netecho_resolve(const char *host, const char *port, int socktype, struct addrinfo **ret,
		    char *reterr, size_t reterr_len);

/* Poll one fd for events until deadline (CLOCK_MONOTONIC usec). Returns
 * the revents, -ETIMEDOUT, or -errno. Retries EINTR. */
int netecho_wait_fd(int fd, short events, uint64_t deadline);

/* Milliseconds from now until deadline, rounded up, for poll(). */
int netecho_ms_until(uint64_t deadline);

/* Connect a non-blocking CLOEXEC TCP socket to each address in turn until
 * one accepts, all within deadline. On success the fd stays non-blocking,
 * has TCP_NODELAY, and *ret_peer is its address. On failure returns the
 * error of the last address tried (-ETIMEDOUT when the deadline passed)
 * with *ret_peer set to that address. */
int netecho_tcp_connect(const struct addrinfo *ai, uint64_t deadline, int *ret_fd,
			union sockaddr_any *ret_peer);

/* How a non-blocking connect() on fd ended, once fd is writable: 0, or
 * its error (SO_ERROR) as -errno. */
int netecho_connect_result(int fd);

/* --proxy: the PROXY protocol header (HAProxy's doc/proxy-protocol.txt,
 * SPEC section 10) a client sends first on every TCP connection to a
 * listener behind a balancer. */
enum netecho_proxy {
	NETECHO_PROXY_NONE,
	NETECHO_PROXY_V1,
	NETECHO_PROXY_V2,
	_NETECHO_PROXY_MAX,
};

/* The longest header netecho_proxy_header() builds: a v1 TCP6 line. */
#define NETECHO_PROXY_HEADER_MAX 108

/* "v1" or "v2". -EINVAL for anything else. */
int netecho_proxy_from_string(const char *s, enum netecho_proxy *ret);

/* The header for connected TCP socket fd into buf: "PROXY TCP4 SRC DST
 * SPORT DPORT\r\n" (TCP6) for v1, or the v2 signature, PROXY over
 * AF_INET (AF_INET6) STREAM and the addresses, no TLVs. SRC is fd's own
 * address (getsockname()), DST the server's (getpeername()); an IPv4-mapped
 * IPv6 pair is sent as IPv4. Returns the header's length (> 0), or -errno:
 * -ENOBUFS when size is too small, -EAFNOSUPPORT for a socket that is not
 * IPv4 or IPv6. */
int netecho_proxy_header(enum netecho_proxy version, int fd, uint8_t *buf, size_t size);

/* Fill buf with random bytes (getrandom(), falling back to the clock). */
void netecho_random(void *buf, size_t len);

/* "127.0.0.1:7" or "[::1]:7" for an addrinfo entry. */
const char *netecho_ai_to_string(const struct addrinfo *ai, char *buf, size_t len);

/* Soft RLIMIT_NOFILE up to need, as far as the hard limit allows: 0, or
 * -EMFILE with the hard limit in *reterr_hard, or another -errno. */
int netecho_raise_fd_limit(rlim_t need, rlim_t *reterr_hard);
