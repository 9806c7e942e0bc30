#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "listener.h"
#include "loop.h"
#include "util.h"

/* What the dispatcher's files share; nothing outside them includes it
 * (tests/test-dispatcher.c aside, for the pure helpers at the end).
 *   dispatcher.c            the run loop, signals, stop, reload
 *   dispatcher-sockets.c    own sockets, systemd's, a donor's on reload
 *   dispatcher-supervise.c  handler processes: spawn, exit, restart, kill
 *   dispatcher-status.c     sd_notify READY/STATUS/WATCHDOG, SIGUSR1 counters
 *   dispatcher-privs.c      user/group drop */

#define RESTART_MAX_USEC (30 * USEC_PER_SEC)
#define RESTART_RESET_USEC (60 * USEC_PER_SEC)
#define STATUS_REFRESH_USEC (2 * USEC_PER_SEC)
#define PORT_MAP_SIZE 8192

struct listener_stats;
struct stats_shared;
struct stats_slot;

struct dispatcher;

struct dlistener {
	struct dispatcher *d;
	struct dlistener *next;
	struct listener_config cfg;
	int *fds;
	size_t n_fds, n_addrs;
	bool shared;
	struct listener_stats *stats; /* in slot, in d->shared_stats */
	struct stats_slot *slot;
	pid_t pid;                    /* 0 when not running */
	int ready_fd;
	bool ready;
	bool removed;                    /* reload dropped it: free on exit */
	int named[LISTENER_ADDRS_MAX];   /* sockets systemd passed by name */
	size_t n_named;
	unsigned shutdown_timeout;       /* what its running handler was given */
	struct loop_timer kill_timer;    /* a stopped handler that will not end */
	struct listener_config *pending; /* reload changed it: restart with this */
	unsigned failures;
	uint64_t started_at;
	struct loop_timer restart_timer;
};

struct activated {
	int fd;
	char *name;
};

struct dispatcher {
	struct config *config;
	int log_level_override;
	struct loop *loop;
	int sfd;
	struct dlistener *listeners;
	uint8_t *port_map;
	struct stats_shared *shared_stats; /* every listener's counters */
	struct activated *act;
	size_t n_act;
	bool ready_sent;
	bool reloading;
	bool stopping;
	int exit_code;
	uint64_t watchdog_usec;
	struct loop_timer watchdog_timer;
	struct loop_timer status_timer;
	char status[512];
	char status_error[200];
};

/* dispatcher.c */
void dispatcher_begin_stop(struct dispatcher *d, const char *why);
void dispatcher_apply_pending(struct dispatcher *d, struct dlistener *dl);

/* dispatcher-sockets.c. Sockets systemd passed are collected once, at
 * start-up; each listener then takes those named after it
 * (dispatcher_take_named, for every listener before any is matched by
 * address), and dispatcher_acquire_sockets fills in the rest. */
int dispatcher_collect_activated(struct dispatcher *d);
void dispatcher_take_named(struct dispatcher *d, struct dlistener *dl);
int dispatcher_acquire_sockets(struct dispatcher *d, struct dlistener *dl);
void dispatcher_close_unused_activated(struct dispatcher *d);
void dispatcher_close_fds(struct dlistener *dl);
void dispatcher_rebuild_port_map(struct dispatcher *d);

/* dispatcher-supervise.c */
/* (Re)publish dl's settings to the metrics service. */
void dispatcher_publish_info(struct dlistener *dl);
struct dlistener *dispatcher_listener_new(struct dispatcher *d, const struct listener_config *cfg);
void dispatcher_listener_unlink(struct dispatcher *d, struct dlistener *dl);
void dispatcher_listener_free(struct dlistener *dl);
int dispatcher_spawn(struct dlistener *dl);
void dispatcher_spawn_or_retry(struct dlistener *dl);
void dispatcher_terminate(struct dlistener *dl);
void dispatcher_stop_all(struct dispatcher *d);
bool dispatcher_any_running(struct dispatcher *d);
void dispatcher_reap_children(struct dispatcher *d);

/* dispatcher-status.c */
void dispatcher_notify(const char *msg);
void dispatcher_check_ready(struct dispatcher *d);
void dispatcher_update_status(struct dispatcher *d, bool force);
void dispatcher_start_timers(struct dispatcher *d);
void dispatcher_log_counters(struct dispatcher *d);

/* dispatcher-privs.c: become user and group (either may be NULL) when
 * started as root. -ESRCH when one does not exist. Logs. */
int dispatcher_drop_privileges(const char *user, const char *group);

/* Pure decisions, unit-tested in tests/test-dispatcher.c. */

/* Can a listener restarted from a to b keep a's sockets? The same
 * protocol, address and port, and as many of them (epoll workers). */
bool dispatcher_same_sockets(const struct listener_config *a, const struct listener_config *b);

/* How long to wait before restarting a handler that died after running
 * ran_usec, *failures being how often it failed in a row before. One that
 * ran longer than RESTART_RESET_USEC starts over at 1 s; the delay doubles
 * with each failure up to RESTART_MAX_USEC. Counts this failure in
 * *failures. */
uint64_t dispatcher_restart_delay(unsigned *failures, uint64_t ran_usec);

/* "exited with status 3", "killed by signal 9 (Killed)", from a waitpid()
 * status. */
void dispatcher_describe_exit(int status, char *buf, size_t len);
