#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "util.h"

/* One call site API for every message netechod prints. The backend is
 * chosen once (log_open): structured journal records when JOURNAL_STREAM
 * names our stderr, otherwise one stderr line per event:
 *   TIME LEVEL LISTENER: message
 * Helper modules stay silent above debug; main, the supervisor and the
 * handlers log (see STYLE.md). */

void log_open(void);
void log_set_max_level(int level);
int log_get_max_level(void);
bool log_to_journal(void);

/* extra: NULL or a NULL-terminated list of "KEY=value" journal fields.
 * proxy: the balancer a connection came through (SPEC 10), or NULL; it
 * follows the peer in the text as "PROXY=addr:port" and is the PROXY=
 * journal field. */
int log_internal(int level, int error, const char *listener, const char *peer,
		 const char *proxy, const char *const *extra, const char *file, int line,
		 const char *func, const char *fmt, ...) _printf_(10, 11);

#define log_full_errno(level, error, listener, peer, ...)                              \
	__extension__({                                                                             \
		int _l_ = (level);                                                     \
		int _e_ = (error);                                                     \
		(_l_ <= log_get_max_level())                                           \
			? log_internal(_l_, _e_, listener, peer, NULL, NULL, __FILE__, __LINE__, \
				       __func__, __VA_ARGS__)                          \
			: -abs(_e_);                                                   \
	})

/* Messages about a listener and (optionally) a peer. */
#define log_listener(level, listener, peer, ...) \
	log_full_errno(level, 0, listener, peer, __VA_ARGS__)

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, NULL, NULL, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, NULL, NULL, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, NULL, NULL, __VA_ARGS__)

/* Logs with ": strerror" appended and returns -abs(error). */
#define log_errno(level, error, ...) log_full_errno(level, error, NULL, NULL, __VA_ARGS__)

/* With explicit journal fields (e.g. REASON=, BYTES_IN= on close). */
#define log_fields(level, listener, peer, extra, ...)                                    \
	__extension__({                                                                               \
		int _l_ = (level);                                                       \
		(_l_ <= log_get_max_level())                                             \
			? log_internal(_l_, 0, listener, peer, NULL, extra, __FILE__, __LINE__, \
				       __func__, __VA_ARGS__)                            \
			: 0;                                                             \
	})

/* About one connection, which may have come through a balancer. */
#define log_conn(level, listener, peer, proxy, extra, ...)                               \
	__extension__({                                                                  \
		int _l_ = (level);                                                       \
		(_l_ <= log_get_max_level())                                             \
			? log_internal(_l_, 0, listener, peer, proxy, extra, __FILE__, __LINE__, \
				       __func__, __VA_ARGS__)                            \
			: 0;                                                             \
	})

/* A token bucket for warnings a remote peer can trigger: at most `burst`
 * messages per `interval_usec`; counts what it suppressed. Not thread-safe;
 * give each thread or loop its own. */
struct log_ratelimit {
	uint64_t interval_usec;
	unsigned burst;
	uint64_t begin;
	unsigned num;
	unsigned suppressed;
};

#define LOG_RATELIMIT_INIT(interval, b) { .interval_usec = (interval), .burst = (b) }

/* True when the caller may log now; *ret_suppressed gets how many were
 * dropped since the last allowed one. */
bool log_ratelimit_ok(struct log_ratelimit *r, uint64_t now, unsigned *ret_suppressed);
