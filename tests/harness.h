#pragma once

/* Integration test harness: runs netechod the way systemd does (sockets
 * passed through LISTEN_FDS, readiness on a NOTIFY_SOCKET the test owns)
 * and gives tests small, bounded network clients.
 *
 * Rules the harness keeps for every test: only 127.0.0.1 and ::1 are used,
 * every loop and wait has a deadline, and nothing sleeps to synchronize:
 * the harness waits for READY=1, a port, a log line, or a process exit.
 *
 * Functions return 0 (or a count) on success and -errno on failure, like
 * the rest of the tree; they print a one-line reason on stderr when a
 * failure would otherwise be hard to diagnose. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct Suite;
struct TCase;
struct TTest;

/* Every wait in the harness is bounded by one of these. */
#define HARNESS_START_TIMEOUT_MS 10000
#define HARNESS_STOP_TIMEOUT_MS 10000
#define HARNESS_RUN_TIMEOUT_MS 10000
#define HARNESS_IO_TIMEOUT_MS 5000
/* How long processes the daemon started may outlive it after a clean stop. */
#define HARNESS_STRAY_TIMEOUT_MS 3000

#define HARNESS_MAX_LISTENERS 16
#define HARNESS_PATH_MAX 256
#define HARNESS_DIR_MAX 128

/* One listener of the generated config. */
struct hl_listener {
	const char *name;     /* NULL: "l0", "l1", ... by position */
	const char *protocol; /* "tcp" or "udp" */
	const char *model;    /* "fork", "thread", "select", "poll", "epoll" */
	const char *service;  /* NULL: "echo" */
	/* NULL: "127.0.0.1". A literal address, "*" (passed as one [::]
	 * dual-stack socket, or 0.0.0.0 without IPv6, as netechod binds it),
	 * or (with no_fd only) a host name such as "localhost". */
	const char *address;
	/* More settings inside the listener group, written verbatim, e.g.
	 * "max_clients = 2; prefix = \"%p: \";". */
	const char *extra;
	/* Let netechod bind the socket itself; the harness only picks a free
	 * port for it. */
	bool no_fd;
	/* Filled by harness_start(). Preset it (non-zero) to force a port. */
	uint16_t port;
};

/* hdaemon.flags */
/* Do not set LISTEN_FDNAMES: netechod must match fds by protocol+address+port. */
#define HARNESS_NO_FDNAMES (1u << 0)
/* Pass the fds in the reverse order of the listeners in the config. */
#define HARNESS_REVERSE_FDS (1u << 1)
/* harness_start() returns once the process runs, without waiting for READY=1. */
#define HARNESS_NO_WAIT_READY (1u << 2)

struct harness_priv;

struct hdaemon {
	/* Set by the caller before harness_start(); zero means default. */
	unsigned flags;
	const char *const *args; /* extra netechod arguments, NULL-terminated */

	/* Filled by harness_start(). */
	pid_t pid;
	char dir[HARNESS_DIR_MAX]; /* temp dir: config, log, notify socket */
	char conf_path[HARNESS_PATH_MAX];
	char log_path[HARNESS_PATH_MAX];
	char notify_path[HARNESS_PATH_MAX];
	bool exited;
	int exit_status; /* exit code, or 128 + signal number; valid when exited */
	size_t notify_cursor; /* next message harness_wait_notify() looks at */
	struct harness_priv *priv;
};

const char *harness_netechod_bin(void);
const char *harness_netecho_bin(void);

/* Bind the listeners (127.0.0.1:0 unless preset), write a config naming
 * their real ports plus global_extra (settings at top level, may be NULL),
 * start netechod with the sockets as LISTEN_FDS and wait up to
 * HARNESS_START_TIMEOUT_MS for READY=1. On failure prints why and the
 * daemon's log, cleans up, and returns -errno (-ECHILD when netechod
 * exited first, see d->exit_status; -ETIMEDOUT when it never got ready). */
int harness_start(struct hdaemon *d, struct hl_listener *ls, size_t n, const char *global_extra);

/* Rewrite d's config file for the same listeners (ports as filled in),
 * e.g. before a SIGHUP. */
int harness_write_config(struct hdaemon *d, const struct hl_listener *ls, size_t n,
			 const char *global_extra);

/* Send sig and wait up to HARNESS_STOP_TIMEOUT_MS for the exit. Returns
 * the exit status (exit code, or 128 + signal), -ETIMEDOUT when it had to
 * be killed, or -EBUSY when after a clean exit some process it started
 * stayed alive (they are killed and named on stderr). Removes the temp
 * dir; the log stays readable through harness_log_*() and the notify
 * messages through harness_notify_*(). Safe to call twice. */
int harness_stop(struct hdaemon *d, int sig);

/* Send a signal (SIGHUP, SIGUSR1, ...) without waiting. */
int harness_signal(struct hdaemon *d, int sig);
/* Wait for the daemon to exit by itself: exit status, or -ETIMEDOUT. */
int harness_wait_exit(struct hdaemon *d, int timeout_ms);
bool harness_running(struct hdaemon *d);

/* Notification messages, in arrival order. Each message is one datagram of
 * newline-separated KEY=VALUE lines. A pattern matches a line equal to it,
 * or, when the pattern ends with '=', any line starting with it
 * ("STATUS=").
 *
 * harness_wait_notify() looks from d->notify_cursor and moves the cursor
 * past the matching message; it returns the message index, -ETIMEDOUT, or
 * -ECHILD when the daemon exited without sending it. */
int harness_wait_notify(struct hdaemon *d, const char *pattern, int timeout_ms);
int harness_wait_notify_from(struct hdaemon *d, const char *pattern, size_t from,
			     int timeout_ms);
/* Index of the first message at or after from with a matching line, or -1. */
int harness_notify_find(struct hdaemon *d, const char *pattern, size_t from);
size_t harness_notify_count(struct hdaemon *d);
/* A malloc()ed copy of message i, or NULL. */
char *harness_notify_get(struct hdaemon *d, size_t i);

/* netechod's stdout and stderr, as written so far. */
char *harness_log_read(struct hdaemon *d);
bool harness_log_contains(struct hdaemon *d, const char *s);
bool harness_wait_log(struct hdaemon *d, const char *s, int timeout_ms);
void harness_log_dump(struct hdaemon *d);

/* Run a program (argv[0] is its path) with stdin from /dev/null and
 * without any socket-activation or notify variables, for up to
 * HARNESS_RUN_TIMEOUT_MS. *ret_status gets the exit code, or 128 + signal.
 * Returns 0, -ETIMEDOUT (killed; output so far is printed), or -errno. */
int harness_run(char *const argv[], char **ret_stdout, char **ret_stderr, int *ret_status);

/* What a run left, for a test to keep together: harness_run(argv, &o.out,
 * &o.err, &o.status). */
struct harness_output {
	int status;
	char *out;
	char *err;
};

/* Free o's output and zero it. */
void harness_output_free(struct harness_output *o);

/* Network helpers. Sockets are CLOEXEC; sends never raise SIGPIPE. */
bool harness_have_ipv6(void);
/* A currently free port on address for SOCK_STREAM or SOCK_DGRAM. */
int harness_free_port(int socktype, const char *address, uint16_t *ret);
/* Blocking TCP client with SO_RCVTIMEO/SO_SNDTIMEO of HARNESS_IO_TIMEOUT_MS. */
int harness_tcp_connect(uint16_t port);
int harness_tcp_connect_addr(const char *address, uint16_t port);
/* The same to 127.0.0.1:port from src (a literal address such as
 * 127.0.0.5, any port): a client at an address of the test's choosing, as
 * a balancer or a client behind one. -errno when the bind fails too. */
int harness_tcp_connect_from(const char *src, uint16_t port);
/* UDP socket connected to 127.0.0.1:port. */
int harness_udp_socket(uint16_t port);
/* UDP socket bound to address:src_port (0: any; SO_REUSEADDR when set) and
 * connected to address:port. -errno when the bind fails. */
int harness_udp_socket_addr(const char *address, uint16_t src_port, uint16_t port);
/* UDP socket of address's family (an IPv4-mapped IPv6 address makes a
 * dual-stack IPv6 one), not bound; connected to address:port when
 * do_connect. *ret_to (optional) gets address:port. */
int harness_udp_client(const char *address, uint16_t port, bool do_connect,
		       struct sockaddr_storage *ret_to);
/* Like harness_recv_timeout(), also saying where the datagram came from
 * (ret_from may be NULL). */
ssize_t harness_recvfrom_timeout(int fd, void *buf, size_t len, struct sockaddr_storage *ret_from,
				 int timeout_ms);

int harness_send_all(int fd, const void *buf, size_t len, int timeout_ms);
/* Read exactly len bytes: returns len, fewer when the peer closed first,
 * or -errno (-ETIMEDOUT, -ECONNRESET, ...). */
ssize_t harness_recv_exact(int fd, void *buf, size_t len, int timeout_ms);
/* One recv() once the fd is readable: bytes (0 = EOF or empty datagram),
 * or -ETIMEDOUT, or -errno. */
ssize_t harness_recv_timeout(int fd, void *buf, size_t len, int timeout_ms);
/* Everything until EOF, NUL-terminated in *ret (at most max bytes, more is
 * -EMSGSIZE). Returns the length or -errno. */
ssize_t harness_recv_until_eof(int fd, char **ret, size_t max, int timeout_ms);
/* What a line client (chat) received on fd and has not looked at yet. */
struct harness_reader {
	int fd;
	size_t have;
	char buf[4096];
};

/* Receive until a line holds want, then consume up to the end of that
 * line (what came before it is dropped). 0, -ETIMEDOUT, -EMSGSIZE when
 * the buffer filled first, -ECONNRESET when the peer closed, or -errno;
 * r->buf is a string of what is left either way, for the message. */
int harness_reader_expect_line(struct harness_reader *r, const char *want, int timeout_ms);

/* Send one datagram on a connected UDP socket and wait for one reply.
 * Returns the reply's real length (larger than reply_max when truncated),
 * -ETIMEDOUT, or -errno. */
ssize_t harness_udp_roundtrip(int fd, const void *buf, size_t len, void *reply,
			      size_t reply_max, int timeout_ms);

/* Deterministic, non-periodic bytes (every value 0-255 occurs, NULs too). */
void harness_fill_pattern(void *buf, size_t len, uint32_t seed);
/* Send bufs[i] on fds[i] and read its echo back, all sockets at once in one
 * poll() loop, comparing every byte. 0, or -errno with the first problem
 * (socket, offset, bytes) in reterr. */
int harness_tcp_exchange(const int *fds, size_t n, const void *const *bufs, const size_t *lens,
			 int timeout_ms, char *reterr, size_t reterr_len);

/* pid is ancestor or one of its descendants (walks /proc). */
bool harness_pid_in_tree(pid_t pid, pid_t ancestor);
/* The handler process of a listener: the direct child of daemon_pid that
 * holds the socket of proto ("tcp", "udp") on port (for tcp, the listening
 * one). 0 when there is none. */
/* The inodes of the sockets of proto ("tcp", "udp") on port from
 * /proc/net (for tcp only listening ones), at most max: how many. */
size_t harness_socket_inodes(const char *proto, uint16_t port, unsigned long *ret, size_t max);
/* The parent of a live process, -1 when it is gone or a zombie. */
pid_t harness_proc_ppid(pid_t pid);
pid_t harness_handler_pid(pid_t daemon_pid, const char *proto, uint16_t port);

/* ---- counters ---- */

/* A listener's counters, from the line netechod logs on SIGUSR1. */
struct harness_counters {
	uint64_t conns_now, conns_total;
	uint64_t bytes_in, bytes_out;
	uint64_t refused;
	uint64_t dropped;
};

/* Send SIGUSR1 and read listener's counters from the log line it brings,
 * within HARNESS_IO_TIMEOUT_MS. 0, -ETIMEDOUT, or -EBADMSG. */
int harness_counters(struct hdaemon *d, const char *listener, struct harness_counters *ret);
/* Ask again until refused + dropped of listener reach at least min, for up
 * to timeout_ms: proof that netechod has read and discarded that many
 * datagrams. 0 with the last counters in *ret, or -ETIMEDOUT. */
int harness_wait_discarded(struct hdaemon *d, const char *listener, uint64_t min,
			   int timeout_ms, struct harness_counters *ret);

/* ---- what a case needs from the host ---- */

/* Check tags (tcase_set_tags()) for cases that can run only on some hosts.
 * A binary runs as several meson tests: "NAME" runs the untagged cases,
 * "NAME-root" and "NAME-ipv6" only the cases tagged so, and those exit 77
 * (meson's skip) where they cannot run, instead of passing untested. */
#define HARNESS_TAG_ROOT "root"
#define HARNESS_TAG_IPV6 "ipv6"
#define HARNESS_EXIT_SKIP 77

/* main() of a test binary that tags cases: argv[1] absent, "root" or
 * "ipv6". Runs s (CK_ENV output, CK_RUN_CASE honoured), frees it, and
 * returns the exit status: 0, 1 on a failure, or HARNESS_EXIT_SKIP. */
int harness_main(struct Suite *s, int argc, char **argv);

/* ---- the model x protocol matrix ---- */

/* One combination the integration tests run against: the TCase of that
 * combination is named after it, which is what CK_RUN_CASE selects
 * (.ci/run, README) and what every message of its tests repeats. */
struct harness_combo {
	const char *tcase;    /* "tcp-poll", "udp-fork-w2": the TCase name */
	const char *protocol; /* "tcp" or "udp" */
	const char *model;    /* "fork", "thread", "select", "poll", "epoll" */
	unsigned workers;     /* 0: the setting is left out */
	const char *label;    /* the name without the protocol: "poll", "epoll-w2" */
};

/* Which rows harness_combo_next() yields: a protocol or both, and with
 * HARNESS_COMBO_WORKERS also the multi-worker rows ("-w2"). */
#define HARNESS_COMBO_TCP (1u << 0)
#define HARNESS_COMBO_UDP (1u << 1)
#define HARNESS_COMBO_WORKERS (1u << 2)
#define HARNESS_COMBO_ALL (HARNESS_COMBO_TCP | HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS)

/* The whole table, in a fixed order: tcp then udp, each model in the
 * order fork, thread, select, poll, epoll, a multi-worker row after its
 * model. harness_combo_at(i) for i < harness_combo_count(). */
size_t harness_combo_count(void);
const struct harness_combo *harness_combo_at(size_t i);
size_t harness_combo_index(const struct harness_combo *c);
/* The first row after prev (NULL: the first row) that mask selects, or NULL. */
const struct harness_combo *harness_combo_next(const struct harness_combo *prev, unsigned mask);
/* The row named name, or NULL. */
const struct harness_combo *harness_combo_find(const char *name);

#define HARNESS_FOR_EACH_COMBO(c, mask)                                    \
	for (const struct harness_combo *c = harness_combo_next(NULL, (mask)); c; \
	     c = harness_combo_next(c, (mask)))

/* A listener of combination c: its protocol and model, name and service
 * as given (service NULL: "echo"), and as extra "workers = N; " (when c
 * has workers) followed by extra, written into buf. */
struct hl_listener harness_combo_listener(const struct harness_combo *c, const char *name,
					  const char *service, const char *extra, char *buf,
					  size_t len);

/* Create the TCase of combination c, named c->tcase followed by suffix
 * (NULL: nothing, or e.g. "-root"), with timeout_s, add it to s and return
 * it for its tests. Its checked fixture makes c the current combination
 * (harness_combo_current()) and then calls setup(c) when setup is not
 * NULL; teardown (may be NULL) runs after each test. Check fixtures take
 * no argument, so the harness keeps one fixture function per TCase it
 * creates, at most HARNESS_MAX_COMBO_TCASES in a binary. */
#define HARNESS_MAX_COMBO_TCASES 64
struct TCase *harness_combo_tcase(struct Suite *s, const struct harness_combo *c,
				  const char *suffix, void (*setup)(const struct harness_combo *),
				  void (*teardown)(void), int timeout_s);

/* A TCase outside the matrix: named name, tagged tags (NULL: untagged),
 * with a checked fixture of setup and teardown (either may be NULL) and
 * timeout_s, added to s. */
struct TCase *harness_tcase(struct Suite *s, const char *name, const char *tags,
			    void (*setup)(void), void (*teardown)(void), int timeout_s);

/* Add t to tc as one loop test over the rows mask selects, the loop
 * index being the row's index in the table: the test takes its
 * combination as harness_combo_at(_i). The rows must be contiguous in the
 * table, as those of one protocol are. */
void harness_combo_add_loop_test(struct TCase *tc, const struct TTest *t, unsigned mask);

/* The combination of the running test: set by the fixture of a
 * harness_combo_tcase() TCase, or by harness_combo_use() (for a test that
 * loops over combinations itself). NULL when none is. */
const struct harness_combo *harness_combo_current(void);
void harness_combo_use(const struct harness_combo *c);

/* ---- a real redis-server ---- */

/* redis-server in the foreground on 127.0.0.1 (and a unix socket when
 * asked), without persistence, in a temp dir of its own. It dies with the
 * test process (PR_SET_PDEATHSIG), so a failed ck_assert leaves none. */
struct hredis {
	/* Set before the first harness_redis_start(); zero means default. */
	bool unix_socket; /* also listen on unix_path */

	/* Filled by harness_redis_start(); port and paths stay the same over
	 * restarts. */
	pid_t pid; /* 0 when not running */
	uint16_t port;
	char dir[HARNESS_DIR_MAX];
	char unix_path[HARNESS_PATH_MAX];
	char log_path[HARNESS_PATH_MAX];
};

/* The redis-server program, or NULL when it is not installed: a test that
 * needs it then exits HARNESS_EXIT_SKIP. */
const char *harness_redis_server_bin(void);

/* Start it (on a free port the first time, on r->port after) and wait up
 * to HARNESS_START_TIMEOUT_MS until it answers PING. 0, -ECHILD when it
 * exited first, -ETIMEDOUT (killed), or -errno; prints its log on failure. */
int harness_redis_start(struct hredis *r);
/* SIGTERM (and SIGCONT, should it be stopped), wait up to
 * HARNESS_STOP_TIMEOUT_MS, SIGKILL after; removes the temp dir. The exit
 * code (0 for a clean stop), -ETIMEDOUT when it had to be killed, 0 when
 * it was not running. Safe to call twice. */
int harness_redis_stop(struct hredis *r);
/* kill -9 and reap it, keeping its port and dir for harness_redis_start(). */
int harness_redis_kill(struct hredis *r);
/* harness_redis_kill() then harness_redis_start() on the same port. */
int harness_redis_restart(struct hredis *r);
/* Send sig (SIGSTOP, SIGCONT, ...) without waiting. */
int harness_redis_signal(struct hredis *r, int sig);
/* One PING over a fresh connection within timeout_ms: 0 on +PONG, or
 * -errno (-ETIMEDOUT, -ECONNREFUSED, -EBADMSG). */
int harness_redis_ping(const struct hredis *r, int timeout_ms);
