#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "dispatcher-internal.h"
#include "dispatcher.h"
#include "handler.h"
#include "log.h"
#include "loop.h"
#include "reload-plan.h"
#include "sdproto.h"
#include "stats.h"

/* The dispatcher owns the sockets and supervises one handler process per
 * listener. It never serves a client itself, so a crash in a handler
 * cannot take it or the other listeners down. This file is its run loop,
 * its signals, stop and reload; dispatcher-internal.h lists the rest. */

static void
apply_log_level(struct dispatcher *d)
{
	log_set_max_level(d->log_level_override >= 0 ? d->log_level_override
						     : d->config->log_level);
}

void
dispatcher_begin_stop(struct dispatcher *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	dispatcher_notify("STOPPING=1");
	/* The drain may outlast the manager's stop timeout: ask for it. */
	(void)sdp_notifyf("EXTEND_TIMEOUT_USEC=%" PRIu64,
			 ((uint64_t)d->config->shutdown_timeout + 5) * USEC_PER_SEC);
	log_notice("stopping (%s)", why);
	/* Each handler drains for the shutdown_timeout it was started with
	 * and is killed 2 s after that. */
	dispatcher_stop_all(d);
	if (!dispatcher_any_running(d))
		loop_quit(d->loop);
}

/* The old handler of a changed listener has exited: start the new one. */
void
dispatcher_apply_pending(struct dispatcher *d, struct dlistener *dl)
{
	struct listener_config *n = dl->pending;
	bool keep = dispatcher_same_sockets(&dl->cfg, n);

	dl->pending = NULL;
	if (!keep)
		dispatcher_close_fds(dl);
	listener_config_done(&dl->cfg);
	dl->cfg = *n;
	free(n);
	dl->failures = 0;
	stats_reset(dl->stats);
	dispatcher_publish_info(dl);
	if (keep) {
		/* A new backlog applies to the socket we already have. */
		if (dl->cfg.protocol == PROTOCOL_TCP)
			for (size_t i = 0; i < dl->n_addrs; i++)
				(void)listen(dl->fds[i], (int)dl->cfg.backlog);
	} else if (dispatcher_acquire_sockets(d, dl) < 0) {
		dl->removed = true;
		dispatcher_listener_unlink(d, dl);
		dispatcher_listener_free(dl);
		dispatcher_rebuild_port_map(d);
		dispatcher_check_ready(d);
		return;
	}
	dispatcher_spawn_or_retry(dl);
}

/* A changed listener restarts: its handler stops, and
 * dispatcher_apply_pending() starts the new settings once it has exited. */
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
		dispatcher_terminate(dl);
	else
		dispatcher_apply_pending(d, dl);
}

static void
start_listener(struct dispatcher *d, const struct listener_config *n)
{
	struct dlistener *dl = dispatcher_listener_new(d, n);

	if (!dl) {
		log_listener(LOG_ERR, n->name, NULL, "out of memory, not started");
		return;
	}
	if (dispatcher_acquire_sockets(d, dl) < 0) {
		dispatcher_listener_free(dl);
		snprintf(d->status_error, sizeof(d->status_error),
			 "listener %s could not be started", n->name);
		return;
	}
	dl->next = d->listeners;
	d->listeners = dl;
	dispatcher_spawn_or_retry(dl);
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
			stats_slot_hide(dl->slot);
			loop_timer_set(d->loop, &dl->restart_timer, 0, NULL, NULL);
			dispatcher_terminate(dl);
			if (!dl->pid) {
				dispatcher_listener_unlink(d, dl);
				dispatcher_listener_free(dl);
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
	dispatcher_rebuild_port_map(d);
	dispatcher_check_ready(d);
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
	atomic_store(&d->shared_stats->reload_ok, false);
	dispatcher_update_status(d, true);
	dispatcher_notify("READY=1");
}

static void
reload(struct dispatcher *d)
{
	struct config_errors errs = { 0 };
	struct config *nc = NULL;

	(void)sdp_notifyf("RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec());
	log_notice("reloading %s", d->config->path);
	atomic_store(&d->shared_stats->reload_usec, realtime_usec());
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
		return;
	}
	/* A listener of the new file that could not be bound fails it. */
	atomic_store(&d->shared_stats->reload_ok, d->status_error[0] == '\0');
}

static void
on_signal(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct dispatcher *d = userdata;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			dispatcher_reap_children(d);
			break;
		case SIGTERM:
		case SIGINT:
			dispatcher_begin_stop(d, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		case SIGHUP:
			if (!d->stopping)
				reload(d);
			break;
		case SIGUSR1:
			dispatcher_log_counters(d);
			break;
		default:
			break;
		}
	}
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

/* The enabled listeners of the file, in file order, each with its
 * sockets: named ones from systemd first, for all, then by address. */
static int
create_listeners(struct dispatcher *d)
{
	const struct config *c = d->config;

	for (size_t i = c->n_listeners; i > 0; i--) {
		const struct listener_config *lc = &c->listeners[i - 1];
		struct dlistener *dl;

		if (!lc->enabled)
			continue;
		dl = dispatcher_listener_new(d, lc);
		if (!dl) {
			log_error("out of memory");
			return -ENOMEM;
		}
		dl->next = d->listeners;
		d->listeners = dl;
	}
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		dispatcher_take_named(d, dl);
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next) {
		int r = dispatcher_acquire_sockets(d, dl);

		if (r < 0)
			return r;
	}
	dispatcher_close_unused_activated(d);
	if (!d->listeners)
		log_warning("no enabled listeners; idling until stopped or reloaded");
	return 0;
}

static void
teardown(struct dispatcher *d)
{
	if (d->loop && dispatcher_any_running(d)) {
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
		dispatcher_listener_free(dl);
	}
	for (size_t i = 0; i < d->n_act; i++) {
		safe_close(d->act[i].fd);
		free(d->act[i].name);
	}
	free(d->act);
	loop_free(d->loop);
	if (d->port_map)
		munmap(d->port_map, PORT_MAP_SIZE);
	d->shared_stats = stats_shared_free(d->shared_stats);
	safe_close(d->sfd);
	config_free(d->config);
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
	r = stats_shared_new(&d->shared_stats, realtime_usec());
	if (r < 0) {
		log_errno(LOG_ERR, r, "mmap failed");
		goto out;
	}
	r = loop_new(&d->loop, LOOP_BACKEND_POLL);
	if (r < 0) {
		log_errno(LOG_ERR, r, "cannot create the event loop");
		goto out;
	}
	if (dispatcher_collect_activated(d) < 0 || create_listeners(d) < 0)
		goto out;
	dispatcher_rebuild_port_map(d);
	r = dispatcher_drop_privileges(d->config->user, d->config->group);
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
		if (dispatcher_spawn(dl) < 0)
			goto out;

	dispatcher_start_timers(d);
	dispatcher_check_ready(d);

	r = loop_run(d->loop);
	if (r < 0) {
		log_errno(LOG_ERR, r, "event loop failed");
		d->exit_code = 1;
	}
	ret = d->exit_code;
	if (ret == 0)
		log_notice("stopped");
out:
	teardown(d);
	return ret;
}
