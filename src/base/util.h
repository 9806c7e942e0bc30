#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

/* Hand ownership out of a _cleanup_ variable. __extension__ keeps
 * -Wpedantic quiet about the statement expression. */
#define TAKE_PTR(p)                                  \
	__extension__({                              \
		__typeof__(p) _ptr_ = (p);           \
		(p) = NULL;                          \
		_ptr_;                               \
	})
#define TAKE_FD(fd)                                  \
	__extension__({                              \
		int _fd_ = (fd);                     \
		(fd) = -1;                           \
		_fd_;                                \
	})

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define NSEC_PER_USEC UINT64_C(1000)
#define NSEC_PER_MSEC UINT64_C(1000000)
#define NSEC_PER_SEC UINT64_C(1000000000)

static inline void
freep(void *p)
{
	free(*(void **)p);
}

/* Close an fd, keeping errno, and return -1 so callers can write fd = safe_close(fd). */
static inline int
safe_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		(void)close(fd);
		errno = saved;
	}
	return -1;
}

static inline void
closep(int *fd)
{
	*fd = safe_close(*fd);
}

/* CLOCK_MONOTONIC in microseconds. */
uint64_t now_usec(void);
/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t now_nsec(void);
/* CLOCK_REALTIME in microseconds. */
uint64_t realtime_usec(void);

int fd_set_nonblock(int fd, bool nonblock);

/* write() the whole buffer, retrying on EINTR and short writes (blocking fds).
 * Returns 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);

/* Socket address that fits every family we use. */
union sockaddr_any {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	struct sockaddr_storage storage;
};

/* Longest "[addr%scope]:port" we print. */
#define SOCKADDR_STR_MAX 72

/* Numeric "a.b.c.d:port" or "[v6]:port"; IPv4-mapped IPv6 shown as IPv4. Never does DNS. */
const char *sockaddr_to_string(const union sockaddr_any *sa, char *buf, size_t len);
/* Numeric address only, no port; IPv4-mapped shown as IPv4. */
const char *sockaddr_host_to_string(const union sockaddr_any *sa, char *buf, size_t len);
uint16_t sockaddr_port(const union sockaddr_any *sa);
socklen_t sockaddr_len(const union sockaddr_any *sa);
bool sockaddr_equal(const union sockaddr_any *a, const union sockaddr_any *b);

/* Bytes of the address (4 or 16, IPv4-mapped reduced to 4) into ret, returns family or 0. */
int sockaddr_addr_bytes(const union sockaddr_any *sa, uint8_t ret[16]);

/* The value of hex digit c (either case), or -1. */
int hex_value(char c);

/* Parse a decimal unsigned integer; the whole string must be consumed. */
int parse_uint(const char *s, unsigned long max, unsigned long *ret);
