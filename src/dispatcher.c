#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include "config.h"
#include "dispatcher.h"
#include "handler.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "reload-plan.h"
#include "sdproto.h"

/* The dispatcher owns the sockets and supervises one handler process per
 * listener. It never serves a client itself, so a crash in a handler
 * cannot take it or the other listeners down. */

#define RESTART_MAX_USEC (30 * USEC_PER_SEC)
#define RESTART_RESET_USEC (60 * USEC_PER_SEC)
#define STATUS_REFRESH_USEC (2 * USEC_PER_SEC)
#define PORT_MAP_SIZE 8192

struct dispatcher;

struct dlistener {
	struct dispatcher *d;
	struct dlistener *next;
	struct listener_config cfg;
	int *fds;
	size_t n_fds, n_addrs;
	bool shared;
	struct listener_stats *stats; /* shared mapping */
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

static void dl_free(struct dlistener *dl);
static void check_ready(struct dispatcher *d);
static void update_status(struct dispatcher *d, bool force);

static int
stats_map(struct dlistener *dl)
{
	void *p = mmap(NULL, sizeof(struct listener_stats), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -errno;
	dl->stats = p;
	return 0;
}

static void
close_fds(struct dlistener *dl)
{
	for (size_t i = 0; i < dl->n_fds; i++) {
		/* Shared epoll workers repeat the same fd. */
		if (dl->shared && i >= dl->n_addrs)
			break;
		safe_close(dl->fds[i]);
	}
	free(dl->fds);
	dl->fds = NULL;
	dl->n_fds = dl->n_addrs = 0;
}

/* Sockets systemd passed under the listener's name. Taken for every
 * listener before any is matched by address, so a named socket never goes
 * to another listener that happens to match it. */
static void
take_named(struct dispatcher *d, struct dlistener *dl)
{
	const struct listener_config *cfg = &dl->cfg;

	for (size_t i = 0; i < d->n_act && dl->n_named < LISTENER_ADDRS_MAX; i++) {
		int type = 0;
		socklen_t tl = sizeof(type);

		if (d->act[i].fd < 0 || !d->act[i].name || strcmp(d->act[i].name, cfg->name) != 0)
			continue;
		if (getsockopt(d->act[i].fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
		    type != (cfg->protocol == PROTOCOL_TCP ? SOCK_STREAM : SOCK_DGRAM)) {
			log_listener(LOG_WARNING, cfg->name, NULL,
				     "socket from systemd named '%s' is not a %s socket, not using it",
				     cfg->name, protocol_to_string(cfg->protocol));
			continue;
		}
		dl->named[dl->n_named++] = TAKE_FD(d->act[i].fd);
	}
}

/* On reload, a listener that is going away may hold the very socket a new
 * one needs (a rename, or a port handed to another listener): share it
 * rather than fail to bind while the old handler drains. */
static size_t
take_from_donor(struct dispatcher *d, struct dlistener *dl, int got[LISTENER_ADDRS_MAX])
{
	const struct listener_config *cfg = &dl->cfg;

	for (struct dlistener *o = d->listeners; o; o = o->next) {
		size_t n = 0;

		if (o == dl || !(o->removed || o->pending) || !o->fds ||
		    o->cfg.protocol != cfg->protocol || o->cfg.port != cfg->port ||
		    strcmp(o->cfg.address, cfg->address) != 0)
			continue;
		for (size_t i = 0; i < o->n_addrs; i++) {
			int fd = fcntl(o->fds[i], F_DUPFD_CLOEXEC, 3);

			if (fd < 0) {
				while (n > 0)
					safe_close(got[--n]);
				return 0;
			}
			got[n++] = fd;
		}
		log_listener(LOG_DEBUG, cfg->name, NULL, "taking over the sockets of '%s'",
			     o->cfg.name);
		return n;
	}
	return 0;
}

/* Take passed fds named after the listener, or matching its protocol,
 * address and port; bind the rest ourselves. */
static int
acquire_sockets(struct dispatcher *d, struct dlistener *dl)
{
	const struct listener_config *cfg = &dl->cfg;
	union sockaddr_any addrs[LISTENER_ADDRS_MAX];
	int got[LISTENER_ADDRS_MAX];
	size_t n_got = 0, workers;
	char where[300];
	int n, gai = 0, r;
	bool reuseport;

	listener_format_bind(cfg, where, sizeof(where));
	memcpy(got, dl->named, dl->n_named * sizeof(int));
	n_got = dl->n_named;
	dl->n_named = 0;
	if (n_got == 0)
		n_got = take_from_donor(d, dl, got);

	if (n_got == 0) {
		n = listener_resolve(cfg, addrs, &gai);
		if (n < 0) {
			if (gai && gai != EAI_SYSTEM)
				log_listener(LOG_ERR, cfg->name, NULL, "cannot resolve '%s': %s",
					     cfg->address, gai_strerror(gai));
			else
				log_full_errno(LOG_ERR, n, cfg->name, NULL, "cannot resolve '%s'",
					       cfg->address);
			return n;
		}
		for (int i = 0; i < n; i++) {
			int fd = -1;

			for (size_t j = 0; j < d->n_act; j++)
				if (d->act[j].fd >= 0 &&
				    listener_fd_matches(d->act[j].fd, cfg, &addrs[i], 1)) {
					fd = TAKE_FD(d->act[j].fd);
					break;
				}
			if (fd < 0) {
				char a[SOCKADDR_STR_MAX];

				/* Several epoll workers get one SO_REUSEPORT
				 * socket each; bind the first with it too. */
				reuseport = cfg->model == MODEL_EPOLL && cfg->workers > 1;
				r = listener_bind(cfg, &addrs[i], reuseport, &fd);
				if (r < 0) {
					for (size_t k = 0; k < n_got; k++)
						safe_close(got[k]);
					return log_full_errno(LOG_ERR, r, cfg->name, NULL,
							      "cannot listen on %s (%s %s)",
							      sockaddr_to_string(&addrs[i], a, sizeof(a)),
							      protocol_to_string(cfg->protocol), where);
				}
			}
			got[n_got++] = fd;
		}
	}

	workers = cfg->model == MODEL_EPOLL ? cfg->workers : 1;
	dl->n_addrs = n_got;
	dl->n_fds = n_got * workers;
	dl->fds = calloc(dl->n_fds, sizeof(int));
	if (!dl->fds) {
		for (size_t k = 0; k < n_got; k++)
			safe_close(got[k]);
		return -ENOMEM;
	}
	memcpy(dl->fds, got, n_got * sizeof(int));
	dl->shared = false;
	for (size_t w = 1; w < workers; w++) {
		for (size_t i = 0; i < n_got; i++) {
			union sockaddr_any a;
			socklen_t alen = sizeof(a);
			int fd = -1;

			/* A sibling on the same address with SO_REUSEPORT; a
			 * socket systemd passed without ReusePort= cannot
			 * have one, then the workers share it. */
			if (!dl->shared && getsockname(got[i], &a.sa, &alen) == 0 &&
			    listener_bind(cfg, &a, true, &fd) == 0) {
				dl->fds[w * n_got + i] = fd;
				continue;
			}
			if (!dl->shared) {
				/* Undo the siblings made so far. */
				for (size_t k = n_got; k < w * n_got + i; k++)
					safe_close(dl->fds[k]);
				dl->shared = true;
			}
		}
	}
	if (dl->shared)
		for (size_t k = n_got; k < dl->n_fds; k++)
			dl->fds[k] = dl->fds[k % n_got];
	return 0;
}

static void
on_ready_pipe(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct dlistener *dl = userdata;
	char c;
	ssize_t n = read(fd, &c, 1);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	loop_remove(l, fd);
	dl->ready_fd = safe_close(dl->ready_fd);
	if (n == 1) {
		dl->ready = true;
		check_ready(dl->d);
	}
	/* EOF: the handler died before it was ready; SIGCHLD handles it. */
}

static int
dl_spawn(struct dlistener *dl)
{
	struct dispatcher *d = dl->d;
	char where[300];
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return log_full_errno(LOG_ERR, errno, dl->cfg.name, NULL, "pipe failed");
	pid = fork();
	if (pid < 0) {
		safe_close(p[0]);
		safe_close(p[1]);
		return log_full_errno(LOG_ERR, errno, dl->cfg.name, NULL, "cannot fork handler");
	}
	if (pid == 0) {
		struct listener_rt rt = {
			.fds = dl->fds,
			.n_fds = dl->n_fds,
			.n_addrs = dl->n_addrs,
			.shared = dl->shared,
			.shutdown_timeout = d->config->shutdown_timeout,
			.stats = dl->stats,
			.udp_port_map = d->port_map,
			.ready_fd = p[1],
		};
		sigset_t mask;
		int code;

		safe_close(p[0]);
		/* Keep only this listener's sockets and counters. Each
		 * mapping dropped here is one a fork-model handler would
		 * otherwise copy and tear down for every connection. */
		for (struct dlistener *o = d->listeners; o; o = o->next) {
			if (o == dl)
				continue;
			for (size_t i = 0; i < o->n_fds; i++)
				if (!(o->shared && i >= o->n_addrs))
					safe_close(o->fds[i]);
			if (o->ready_fd >= 0)
				safe_close(o->ready_fd);
			if (o->stats)
				(void)munmap(o->stats, sizeof(*o->stats));
			o->stats = NULL;
		}
		for (size_t i = 0; i < d->n_act; i++)
			safe_close(d->act[i].fd);
		safe_close(d->sfd);
		signal(SIGHUP, SIG_IGN);
		signal(SIGUSR1, SIG_IGN);
		sigemptyset(&mask);
		sigaddset(&mask, SIGHUP);
		sigaddset(&mask, SIGUSR1);
		sigprocmask(SIG_UNBLOCK, &mask, NULL);
		if (listener_config_copy(&rt.cfg, &dl->cfg) < 0)
			_exit(1);
		code = handler_main(&rt);
		_exit(code);
	}
	safe_close(p[1]);
	dl->pid = pid;
	dl->shutdown_timeout = d->config->shutdown_timeout;
	dl->ready = false;
	dl->ready_fd = p[0];
	dl->started_at = now_usec();
	if (loop_add(d->loop, p[0], LOOP_READ, on_ready_pipe, dl) < 0) {
		/* Cannot learn when it is ready: count it ready. */
		dl->ready = true;
		dl->ready_fd = safe_close(dl->ready_fd);
	}
	log_listener(LOG_INFO, dl->cfg.name, NULL, "started %s %s listener on %s (model %s, pid %ld)",
		     protocol_to_string(dl->cfg.protocol), service_to_string(dl->cfg.service),
		     listener_format_bind(&dl->cfg, where, sizeof(where)),
		     model_to_string(dl->cfg.model), (long)pid);
	return 0;
}

static struct dlistener *
dl_new(struct dispatcher *d, const struct listener_config *cfg)
{
	struct dlistener *dl = calloc(1, sizeof(*dl));

	if (!dl)
		return NULL;
	dl->d = d;
	dl->ready_fd = -1;
	if (listener_config_copy(&dl->cfg, cfg) < 0 || stats_map(dl) < 0) {
		listener_config_done(&dl->cfg);
		free(dl);
		return NULL;
	}
	return dl;
}

static void
dl_unlink(struct dispatcher *d, struct dlistener *dl)
{
	for (struct dlistener **p = &d->listeners; *p; p = &(*p)->next)
		if (*p == dl) {
			*p = dl->next;
			break;
		}
}

static void
dl_free(struct dlistener *dl)
{
	if (!dl)
		return;
	loop_timer_set(dl->d->loop, &dl->restart_timer, 0, NULL, NULL);
	loop_timer_set(dl->d->loop, &dl->kill_timer, 0, NULL, NULL);
	for (size_t i = 0; i < dl->n_named; i++)
		safe_close(dl->named[i]);
	if (dl->ready_fd >= 0) {
		loop_remove(dl->d->loop, dl->ready_fd);
		safe_close(dl->ready_fd);
	}
	close_fds(dl);
	if (dl->stats)
		munmap(dl->stats, sizeof(*dl->stats));
	listener_config_done(&dl->cfg);
	if (dl->pending) {
		listener_config_done(dl->pending);
		free(dl->pending);
	}
	free(dl);
}

static void
rebuild_port_map(struct dispatcher *d)
{
	memset(d->port_map, 0, PORT_MAP_SIZE);
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (dl->cfg.protocol == PROTOCOL_UDP && !dl->removed)
			udpguard_port_map_set(d->port_map, dl->cfg.port);
}

static void
notify(const char *msg)
{
	(void)sdp_notify(msg);
}

static void
check_ready(struct dispatcher *d)
{
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (!dl->removed && (!dl->ready || dl->pending))
			return;
	if (!d->ready_sent) {
		d->ready_sent = true;
		update_status(d, true);
		notify("READY=1");
		log_notice("ready: %s", d->status);
	} else if (d->reloading) {
		d->reloading = false;
		update_status(d, true);
		notify("READY=1");
		log_notice("reloaded: %s", d->status);
	}
}

static void
update_status(struct dispatcher *d, bool force)
{
	char s[sizeof(d->status)], extra[128] = "";
	unsigned n = 0, failing = 0;
	uint64_t clients = 0;

	for (struct dlistener *dl = d->listeners; dl; dl = dl->next) {
		if (dl->removed)
			continue;
		n++;
		clients += atomic_load_explicit(&dl->stats->conns_now, memory_order_relaxed);
		if (dl->failures > 0 && !dl->pid) {
			failing++;
			if (failing == 1)
				snprintf(extra, sizeof(extra), "; listener %s restarting after %u failures",
					 dl->cfg.name, dl->failures);
		}
	}
	if (failing > 1)
		snprintf(extra, sizeof(extra), "; %u listeners restarting", failing);
	snprintf(s, sizeof(s), "%u listener%s, %" PRIu64 " client%s%s%s%s", n, n == 1 ? "" : "s",
		 clients, clients == 1 ? "" : "s", extra, d->status_error[0] ? "; " : "",
		 d->status_error);
	if (!force && strcmp(s, d->status) == 0)
		return;
	memcpy(d->status, s, sizeof(s));
	(void)sdp_notifyf("STATUS=%s", d->status);
}

static void
on_status_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct dispatcher *d = userdata;

	if (d->ready_sent)
		update_status(d, false);
	loop_timer_set(l, t, loop_now(l) + STATUS_REFRESH_USEC, on_status_timer, d);
}

static void
on_watchdog(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct dispatcher *d = userdata;

	/* Sent from the loop, so it stops when the loop stops turning. */
	notify("WATCHDOG=1");
	loop_timer_set(l, t, loop_now(l) + d->watchdog_usec / 2, on_watchdog, d);
}

static void
on_restart_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct dlistener *dl = userdata;

	if (dl->d->stopping || dl->pid)
		return;
	if (dl_spawn(dl) < 0)
		loop_timer_set(l, t, loop_now(l) + RESTART_MAX_USEC, on_restart_timer, dl);
}

static void
on_kill_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct dlistener *dl = userdata;

	if (!dl->pid)
		return;
	log_listener(LOG_WARNING, dl->cfg.name, NULL, "handler did not stop in time, killing it");
	(void)kill(dl->pid, SIGKILL);
}

/* Ask a running handler to stop; kill it if it outlives its drain. */
static void
dl_terminate(struct dlistener *dl)
{
	struct loop *l = dl->d->loop;

	if (!dl->pid)
		return;
	(void)kill(dl->pid, SIGTERM);
	loop_timer_set(l, &dl->kill_timer,
		       loop_now(l) + ((uint64_t)dl->shutdown_timeout + 2) * USEC_PER_SEC,
		       on_kill_timer, dl);
}

static void
stop_all(struct dispatcher *d)
{
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next) {
		loop_timer_set(d->loop, &dl->restart_timer, 0, NULL, NULL);
		dl_terminate(dl);
	}
}

static bool
any_running(struct dispatcher *d)
{
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (dl->pid)
			return true;
	return false;
}

static void
begin_stop(struct dispatcher *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	notify("STOPPING=1");
	/* The drain may outlast the manager's stop timeout: ask for it. */
	(void)sdp_notifyf("EXTEND_TIMEOUT_USEC=%" PRIu64,
			 ((uint64_t)d->config->shutdown_timeout + 5) * USEC_PER_SEC);
	log_notice("stopping (%s)", why);
	/* Each handler drains for the shutdown_timeout it was started with
	 * and is killed 2 s after that. */
	stop_all(d);
	if (!any_running(d))
		loop_quit(d->loop);
}

static bool
same_sockets(const struct listener_config *a, const struct listener_config *b)
{
	return a->protocol == b->protocol && a->port == b->port &&
	       strcmp(a->address, b->address) == 0 &&
	       (a->model == MODEL_EPOLL ? a->workers : 1) == (b->model == MODEL_EPOLL ? b->workers : 1) &&
	       (a->model == MODEL_EPOLL) == (b->model == MODEL_EPOLL);
}

/* The old handler of a changed listener has exited: start the new one. */
static void
apply_pending(struct dispatcher *d, struct dlistener *dl)
{
	struct listener_config *n = dl->pending;
	bool keep = same_sockets(&dl->cfg, n);

	dl->pending = NULL;
	if (!keep)
		close_fds(dl);
	listener_config_done(&dl->cfg);
	dl->cfg = *n;
	free(n);
	dl->failures = 0;
	memset(dl->stats, 0, sizeof(*dl->stats));
	if (keep) {
		/* A new backlog applies to the socket we already have. */
		if (dl->cfg.protocol == PROTOCOL_TCP)
			for (size_t i = 0; i < dl->n_addrs; i++)
				(void)listen(dl->fds[i], (int)dl->cfg.backlog);
	} else if (acquire_sockets(d, dl) < 0) {
		dl->removed = true;
		dl_unlink(d, dl);
		dl_free(dl);
		rebuild_port_map(d);
		check_ready(d);
		return;
	}
	if (dl_spawn(dl) < 0) {
		dl->failures = 1;
		loop_timer_set(d->loop, &dl->restart_timer, loop_now(d->loop) + USEC_PER_SEC,
			       on_restart_timer, dl);
	}
}

static void
describe_exit(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status),
			 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

static void
on_child_exit(struct dispatcher *d, pid_t pid, int status)
{
	struct dlistener *dl;
	char how[128];
	uint64_t delay;

	for (dl = d->listeners; dl && dl->pid != pid; dl = dl->next)
		;
	if (!dl)
		return; /* an orphaned connection child we adopted */
	dl->pid = 0;
	loop_timer_set(d->loop, &dl->kill_timer, 0, NULL, NULL);
	if (dl->ready_fd >= 0) {
		loop_remove(d->loop, dl->ready_fd);
		dl->ready_fd = safe_close(dl->ready_fd);
	}
	describe_exit(status, how, sizeof(how));

	if (d->stopping) {
		if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			log_listener(LOG_WARNING, dl->cfg.name, NULL, "handler %s while stopping", how);
		if (!any_running(d))
			loop_quit(d->loop);
		return;
	}
	if (dl->removed) {
		log_listener(LOG_INFO, dl->cfg.name, NULL, "listener removed");
		dl_unlink(d, dl);
		dl_free(dl);
		check_ready(d);
		return;
	}
	if (dl->pending) {
		apply_pending(d, dl);
		return;
	}
	if (!d->ready_sent) {
		/* It never served: the same start-up would fail again. */
		log_listener(LOG_ERR, dl->cfg.name, NULL, "handler %s during start-up", how);
		d->exit_code = 1;
		begin_stop(d, "a listener failed to start");
		return;
	}
	if (now_usec() - dl->started_at > RESTART_RESET_USEC)
		dl->failures = 0;
	delay = USEC_PER_SEC << MIN(dl->failures, 5u);
	delay = MIN(delay, RESTART_MAX_USEC);
	dl->failures++;
	dl->ready = false;
	log_listener(LOG_ERR, dl->cfg.name, NULL, "handler (pid %ld) %s; restarting in %" PRIu64 " s",
		     (long)pid, how, delay / USEC_PER_SEC);
	/* Its connections died with it. */
	atomic_store(&dl->stats->conns_now, 0);
	loop_timer_set(d->loop, &dl->restart_timer, loop_now(d->loop) + delay, on_restart_timer, dl);
	update_status(d, false);
}

static void
reap_children(struct dispatcher *d)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			break;
		on_child_exit(d, pid, status);
	}
}

static void
log_counters(struct dispatcher *d)
{
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next) {
		struct listener_stats *s = dl->stats;

		log_listener(LOG_NOTICE, dl->cfg.name, NULL,
			     "connections now %" PRIu64 " total %" PRIu64 ", bytes in %" PRIu64
			     " out %" PRIu64 ", refused %" PRIu64 ", dropped %" PRIu64,
			     atomic_load(&s->conns_now), atomic_load(&s->conns_total),
			     atomic_load(&s->bytes_in), atomic_load(&s->bytes_out),
			     atomic_load(&s->refused), atomic_load(&s->dropped));
	}
}

static void
apply_log_level(struct dispatcher *d)
{
	log_set_max_level(d->log_level_override >= 0 ? d->log_level_override
						     : d->config->log_level);
}

/* A changed listener restarts: its handler stops, and apply_pending()
 * starts the new settings once it has exited. */
static void
restart_listener(struct dispatcher *d, struct dlistener *dl, const struct listener_config *n)
{
	struct listener_config *p = calloc(1, sizeof(*p));

	if (!p || listener_config_copy(p, n) < 0) {
		free(p);
		log_listener(LOG_ERR, dl->cfg.name, NULL, "out of memory, not changed");
		return;
	}
	if (dl->pending) {
		listener_config_done(dl->pending);
		free(dl->pending);
	}
	dl->pending = p;
	log_listener(LOG_INFO, dl->cfg.name, NULL, "settings changed, restarting");
	if (dl->pid)
		dl_terminate(dl);
	else
		apply_pending(d, dl);
}

static void
start_listener(struct dispatcher *d, const struct listener_config *n)
{
	struct dlistener *dl = dl_new(d, n);

	if (!dl) {
		log_listener(LOG_ERR, n->name, NULL, "out of memory, not started");
		return;
	}
	if (acquire_sockets(d, dl) < 0) {
		dl_free(dl);
		snprintf(d->status_error, sizeof(d->status_error),
			 "listener %s could not be started", n->name);
		return;
	}
	dl->next = d->listeners;
	d->listeners = dl;
	if (dl_spawn(dl) < 0) {
		dl->failures = 1;
		loop_timer_set(d->loop, &dl->restart_timer, loop_now(d->loop) + USEC_PER_SEC,
			       on_restart_timer, dl);
	}
}

/* Apply a loaded configuration: reload_plan() decides, this carries it
 * out. -ENOMEM before anything changed; nc is then still the caller's. */
static int
reload_apply(struct dispatcher *d, struct config *nc)
{
	const struct listener_config **running = NULL;
	struct dlistener **dls = NULL;
	struct reload_step *steps = NULL;
	size_t n_running = 0, n_steps;

	/* A listener removed by an earlier reload and still draining is no
	 * longer part of the running set. */
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		n_running += !dl->removed;
	running = calloc(n_running + 1, sizeof(*running));
	dls = calloc(n_running + 1, sizeof(*dls));
	steps = calloc(n_running + nc->n_listeners + 1, sizeof(*steps));
	if (!running || !dls || !steps) {
		free(running);
		free(dls);
		free(steps);
		return -ENOMEM;
	}
	n_running = 0;
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (!dl->removed) {
			dls[n_running] = dl;
			/* One already restarting for an earlier change
			 * compares with what it will restart with. */
			running[n_running++] = dl->pending ? dl->pending : &dl->cfg;
		}
	n_steps = reload_plan(running, n_running, nc, steps);

	for (size_t i = 0; i < n_steps; i++) {
		struct dlistener *dl = dls[steps[i].running];
		const struct listener_config *n = &nc->listeners[steps[i].wanted];

		switch (steps[i].action) {
		case RELOAD_KEEP:
			break;
		case RELOAD_STOP:
			dl->removed = true;
			loop_timer_set(d->loop, &dl->restart_timer, 0, NULL, NULL);
			dl_terminate(dl);
			if (!dl->pid) {
				dl_unlink(d, dl);
				dl_free(dl);
			}
			break;
		case RELOAD_RESTART:
			restart_listener(d, dl, n);
			break;
		case RELOAD_START:
			start_listener(d, n);
			break;
		case _RELOAD_ACTION_MAX:
			assert(false);
		}
	}
	free(running);
	free(dls);
	free(steps);

	config_free(d->config);
	d->config = nc;
	apply_log_level(d);
	rebuild_port_map(d);
	check_ready(d);
	return 0;
}

static void
reload_failed(struct dispatcher *d, struct config_errors *errs)
{
	if (errs->n_errors > 0) {
		for (size_t i = 0; i < errs->n_errors; i++)
			log_error("%s:%d: %s", errs->errors[i].file, errs->errors[i].line,
				  errs->errors[i].message);
		snprintf(d->status_error, sizeof(d->status_error), "reload failed: %s:%d: %s",
			 errs->errors[0].file, errs->errors[0].line, errs->errors[0].message);
	} else {
		snprintf(d->status_error, sizeof(d->status_error), "reload failed");
	}
	log_error("reload failed, keeping the running configuration");
	update_status(d, true);
	notify("READY=1");
}

static void
reload(struct dispatcher *d)
{
	struct config_errors errs = { 0 };
	struct config *nc = NULL;

	(void)sdp_notifyf("RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec());
	log_notice("reloading %s", d->config->path);
	if (config_load(d->config->path, &nc, &errs) != 0) {
		reload_failed(d, &errs);
		config_errors_clear(&errs);
		return;
	}
	d->status_error[0] = '\0';
	d->reloading = true;
	if (reload_apply(d, nc) < 0) {
		log_error("out of memory");
		config_free(nc);
		d->reloading = false;
		reload_failed(d, &errs);
	}
}

static void
on_signal(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct dispatcher *d = userdata;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap_children(d);
			break;
		case SIGTERM:
		case SIGINT:
			begin_stop(d, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		case SIGHUP:
			if (!d->stopping)
				reload(d);
			break;
		case SIGUSR1:
			log_counters(d);
			break;
		default:
			break;
		}
	}
}

static int
collect_activated(struct dispatcher *d)
{
	char **names = NULL;
	int n;

	n = sdp_listen_fds(&names);
	if (n < 0)
		return log_errno(LOG_ERR, n, "cannot take sockets from systemd");
	if (n == 0)
		return 0;
	d->act = calloc((size_t)n, sizeof(*d->act));
	if (!d->act)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		int fd = SDP_LISTEN_FDS_START + i;

		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		d->act[i].fd = fd;
		/* systemd names unnamed sockets "unknown". */
		if (names && names[i] && strcmp(names[i], "unknown") != 0)
			d->act[i].name = names[i];
		else if (names)
			free(names[i]);
	}
	free(names);
	d->n_act = (size_t)n;
	log_info("received %d socket%s from systemd", n, n == 1 ? "" : "s");
	return n;
}

static void
close_unused_activated(struct dispatcher *d)
{
	for (size_t i = 0; i < d->n_act; i++) {
		if (d->act[i].fd < 0)
			continue;
		log_warning("socket from systemd (fd %d%s%s) matches no enabled listener, closing it",
			    d->act[i].fd, d->act[i].name ? ", name " : "",
			    d->act[i].name ? d->act[i].name : "");
		d->act[i].fd = safe_close(d->act[i].fd);
	}
}

static int
drop_privileges(struct dispatcher *d)
{
	const char *user = d->config->user, *group = d->config->group;
	uid_t uid;
	gid_t gid;

	if (!user && !group)
		return 0;
	if (geteuid() != 0) {
		log_notice("not started as root, ignoring user/group");
		return 0;
	}
	if (user) {
		struct passwd *pw = getpwnam(user);

		if (!pw) {
			log_error("user '%s' does not exist", user);
			return -ESRCH;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	} else {
		uid = 0;
		gid = 0;
	}
	if (group) {
		struct group *gr = getgrnam(group);

		if (!gr) {
			log_error("group '%s' does not exist", group);
			return -ESRCH;
		}
		gid = gr->gr_gid;
	}
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0)
		return log_errno(LOG_ERR, errno, "cannot change group");
	if (user && setuid(uid) < 0)
		return log_errno(LOG_ERR, errno, "cannot change user");
	/* Verify: getting root back must fail. */
	if (user && uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
		log_error("still able to regain root after dropping privileges");
		return -EPERM;
	}
	log_info("running as uid %ld gid %ld", (long)getuid(), (long)getgid());
	return 0;
}

void
dispatcher_block_signals(sigset_t *ret_mask)
{
	sigemptyset(ret_mask);
	sigaddset(ret_mask, SIGTERM);
	sigaddset(ret_mask, SIGINT);
	sigaddset(ret_mask, SIGHUP);
	sigaddset(ret_mask, SIGUSR1);
	sigaddset(ret_mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, ret_mask, NULL);
}

int
dispatcher_run(struct config *c, int log_level_override)
{
	struct dispatcher dd = { .config = c, .log_level_override = log_level_override, .sfd = -1 };
	struct dispatcher *d = &dd;
	sigset_t mask;
	int r, ret = EXIT_OSERR;

	apply_log_level(d);
	signal(SIGPIPE, SIG_IGN);
	dispatcher_block_signals(&mask);
	d->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d->sfd < 0) {
		log_errno(LOG_ERR, errno, "signalfd failed");
		goto out;
	}
	/* Connection children whose handler died come to us to be reaped. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);

	d->port_map = mmap(NULL, PORT_MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			   -1, 0);
	if (d->port_map == MAP_FAILED) {
		d->port_map = NULL;
		log_errno(LOG_ERR, errno, "mmap failed");
		goto out;
	}
	r = loop_new(&d->loop, LOOP_BACKEND_POLL);
	if (r < 0) {
		log_errno(LOG_ERR, r, "cannot create the event loop");
		goto out;
	}
	if (collect_activated(d) < 0)
		goto out;

	for (size_t i = c->n_listeners; i > 0; i--) {
		const struct listener_config *lc = &c->listeners[i - 1];
		struct dlistener *dl;

		if (!lc->enabled)
			continue;
		dl = dl_new(d, lc);
		if (!dl) {
			log_error("out of memory");
			goto out;
		}
		dl->next = d->listeners;
		d->listeners = dl;
	}
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		take_named(d, dl);
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (acquire_sockets(d, dl) < 0)
			goto out;
	close_unused_activated(d);
	if (!d->listeners)
		log_warning("no enabled listeners; idling until stopped or reloaded");
	rebuild_port_map(d);
	r = drop_privileges(d);
	if (r < 0) {
		/* A user or group that does not exist is the file's fault. */
		if (r == -ESRCH)
			ret = EXIT_CONFIG;
		goto out;
	}

	ret = 1;
	r = loop_add(d->loop, d->sfd, LOOP_READ, on_signal, d);
	if (r < 0) {
		log_errno(LOG_ERR, r, "cannot watch signals");
		goto out;
	}
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (dl_spawn(dl) < 0)
			goto out;

	if (sdp_watchdog_enabled(&d->watchdog_usec) > 0 && d->watchdog_usec > 0)
		on_watchdog(d->loop, &d->watchdog_timer, d);
	loop_timer_set(d->loop, &d->status_timer, loop_now(d->loop) + STATUS_REFRESH_USEC,
		       on_status_timer, d);
	check_ready(d);

	r = loop_run(d->loop);
	if (r < 0) {
		log_errno(LOG_ERR, r, "event loop failed");
		d->exit_code = 1;
	}
	ret = d->exit_code;
	if (ret == 0)
		log_notice("stopped");
out:
	if (d->loop && any_running(d)) {
		/* Failure before or during start-up: stop what runs. */
		for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
			if (dl->pid) {
				(void)kill(dl->pid, SIGKILL);
				(void)waitpid(dl->pid, NULL, 0);
				dl->pid = 0;
			}
	}
	while (d->listeners) {
		struct dlistener *dl = d->listeners;

		d->listeners = dl->next;
		dl_free(dl);
	}
	for (size_t i = 0; i < d->n_act; i++) {
		safe_close(d->act[i].fd);
		free(d->act[i].name);
	}
	free(d->act);
	loop_free(d->loop);
	if (d->port_map)
		munmap(d->port_map, PORT_MAP_SIZE);
	safe_close(d->sfd);
	config_free(d->config);
	return ret;
}
