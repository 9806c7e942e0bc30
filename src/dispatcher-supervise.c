#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dispatcher-internal.h"
#include "handler.h"
#include "listener.h"
#include "log.h"
#include "stats.h"

/* One handler process per listener: started here, watched until it is
 * ready, restarted with a growing delay when it dies, asked to stop and
 * killed when it outlives its drain. */

void
dispatcher_publish_info(struct dlistener *dl)
{
	struct stats_info info = { .port = dl->cfg.port };

	snprintf(info.name, sizeof(info.name), "%s", dl->cfg.name);
	snprintf(info.address, sizeof(info.address), "%s", dl->cfg.address ? dl->cfg.address : "*");
	snprintf(info.protocol, sizeof(info.protocol), "%s", protocol_to_string(dl->cfg.protocol));
	snprintf(info.model, sizeof(info.model), "%s", model_to_string(dl->cfg.model));
	snprintf(info.service, sizeof(info.service), "%s", service_to_string(dl->cfg.service));
	stats_slot_publish(dl->slot, &info);
}

/* A slot in the region every handler sees, so that a metrics listener
 * also lists those a reload adds after it started. */
static int
stats_map(struct dlistener *dl)
{
	dl->slot = stats_slot_take(dl->d->shared_stats);
	if (!dl->slot)
		return -ENOSPC;
	dl->stats = &dl->slot->stats;
	dispatcher_publish_info(dl);
	return 0;
}

struct dlistener *
dispatcher_listener_new(struct dispatcher *d, const struct listener_config *cfg)
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

void
dispatcher_listener_unlink(struct dispatcher *d, struct dlistener *dl)
{
	for (struct dlistener **p = &d->listeners; *p; p = &(*p)->next)
		if (*p == dl) {
			*p = dl->next;
			break;
		}
}

void
dispatcher_listener_free(struct dlistener *dl)
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
	dispatcher_close_fds(dl);
	stats_slot_release(dl->slot);
	listener_config_done(&dl->cfg);
	if (dl->pending) {
		listener_config_done(dl->pending);
		free(dl->pending);
	}
	free(dl);
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
		dispatcher_check_ready(dl->d);
	}
	/* EOF: the handler died before it was ready; SIGCHLD handles it. */
}

/* In the forked child: become dl's handler. Never returns. */
static _Noreturn void
run_handler(struct dlistener *dl, int ready_fd)
{
	struct dispatcher *d = dl->d;
	struct listener_rt rt = {
		.fds = dl->fds,
		.n_fds = dl->n_fds,
		.n_addrs = dl->n_addrs,
		.shared = dl->shared,
		.shutdown_timeout = d->config->shutdown_timeout,
		.stats = dl->stats,
		.shared_stats = d->shared_stats,
		.udp_port_map = d->port_map,
		.ready_fd = ready_fd,
	};
	sigset_t mask;
	int code;

	/* Keep only this listener's sockets. The counters of all are one
	 * mapping, which the metrics service reads. */
	for (struct dlistener *o = d->listeners; o; o = o->next) {
		if (o == dl)
			continue;
		for (size_t i = 0; i < o->n_fds; i++)
			if (!(o->shared && i >= o->n_addrs))
				safe_close(o->fds[i]);
		if (o->ready_fd >= 0)
			safe_close(o->ready_fd);
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

int
dispatcher_spawn(struct dlistener *dl)
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
		safe_close(p[0]);
		run_handler(dl, p[1]);
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

static void
on_restart_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct dlistener *dl = userdata;

	if (dl->d->stopping || dl->pid)
		return;
	if (dispatcher_spawn(dl) < 0)
		loop_timer_set(l, t, loop_now(l) + RESTART_MAX_USEC, on_restart_timer, dl);
}

/* A listener starting with settings it has not run with yet: one that
 * cannot even be forked counts as a first failure and retries in 1 s. */
void
dispatcher_spawn_or_retry(struct dlistener *dl)
{
	struct dispatcher *d = dl->d;

	if (dispatcher_spawn(dl) < 0) {
		dl->failures = 1;
		loop_timer_set(d->loop, &dl->restart_timer, loop_now(d->loop) + USEC_PER_SEC,
			       on_restart_timer, dl);
	}
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
void
dispatcher_terminate(struct dlistener *dl)
{
	struct loop *l = dl->d->loop;

	if (!dl->pid)
		return;
	(void)kill(dl->pid, SIGTERM);
	loop_timer_set(l, &dl->kill_timer,
		       loop_now(l) + ((uint64_t)dl->shutdown_timeout + 2) * USEC_PER_SEC,
		       on_kill_timer, dl);
}

void
dispatcher_stop_all(struct dispatcher *d)
{
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next) {
		loop_timer_set(d->loop, &dl->restart_timer, 0, NULL, NULL);
		dispatcher_terminate(dl);
	}
}

bool
dispatcher_any_running(struct dispatcher *d)
{
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (dl->pid)
			return true;
	return false;
}

uint64_t
dispatcher_restart_delay(unsigned *failures, uint64_t ran_usec)
{
	uint64_t delay;

	if (ran_usec > RESTART_RESET_USEC)
		*failures = 0;
	delay = USEC_PER_SEC << MIN(*failures, 5u);
	delay = MIN(delay, RESTART_MAX_USEC);
	(*failures)++;
	return delay;
}

void
dispatcher_describe_exit(int status, char *buf, size_t len)
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
	dispatcher_describe_exit(status, how, sizeof(how));

	if (d->stopping) {
		if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			log_listener(LOG_WARNING, dl->cfg.name, NULL, "handler %s while stopping", how);
		if (!dispatcher_any_running(d))
			loop_quit(d->loop);
		return;
	}
	if (dl->removed) {
		log_listener(LOG_INFO, dl->cfg.name, NULL, "listener removed");
		dispatcher_listener_unlink(d, dl);
		dispatcher_listener_free(dl);
		dispatcher_check_ready(d);
		return;
	}
	if (dl->pending) {
		dispatcher_apply_pending(d, dl);
		return;
	}
	if (!d->ready_sent) {
		/* It never served: the same start-up would fail again. */
		log_listener(LOG_ERR, dl->cfg.name, NULL, "handler %s during start-up", how);
		d->exit_code = 1;
		dispatcher_begin_stop(d, "a listener failed to start");
		return;
	}
	delay = dispatcher_restart_delay(&dl->failures, now_usec() - dl->started_at);
	dl->ready = false;
	log_listener(LOG_ERR, dl->cfg.name, NULL, "handler (pid %ld) %s; restarting in %" PRIu64 " s",
		     (long)pid, how, delay / USEC_PER_SEC);
	/* Its connections (and chat members) died with it. */
	atomic_store(&dl->stats->conns_now, 0);
	atomic_store(&dl->stats->chat_members, 0);
	atomic_fetch_add(&dl->stats->restarts, 1);
	loop_timer_set(d->loop, &dl->restart_timer, loop_now(d->loop) + delay, on_restart_timer, dl);
	dispatcher_update_status(d, false);
}

void
dispatcher_reap_children(struct dispatcher *d)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			break;
		on_child_exit(d, pid, status);
	}
}
