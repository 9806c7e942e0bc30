#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dispatcher-internal.h"
#include "handler.h"
#include "log.h"
#include "sdproto.h"

/* What the dispatcher tells the service manager (SPEC 6): READY=1 once
 * every listener's handler is ready, again after a reload, STATUS= with
 * listeners and clients, WATCHDOG=1 from the loop; and, on SIGUSR1, the
 * counters to the log. */

void
dispatcher_notify(const char *msg)
{
	(void)sdp_notify(msg);
}

void
dispatcher_check_ready(struct dispatcher *d)
{
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (!dl->removed && (!dl->ready || dl->pending))
			return;
	if (!d->ready_sent) {
		d->ready_sent = true;
		dispatcher_update_status(d, true);
		dispatcher_notify("READY=1");
		log_notice("ready: %s", d->status);
	} else if (d->reloading) {
		d->reloading = false;
		dispatcher_update_status(d, true);
		dispatcher_notify("READY=1");
		log_notice("reloaded: %s", d->status);
	}
}

void
dispatcher_update_status(struct dispatcher *d, bool force)
{
	char s[sizeof(d->status)], extra[128] = "", down[64] = "";
	unsigned n = 0, failing = 0, n_down = 0;
	uint64_t clients = 0;

	for (struct dlistener *dl = d->listeners; dl; dl = dl->next) {
		if (dl->removed)
			continue;
		n++;
		clients += atomic_load_explicit(&dl->stats->conns_now, memory_order_relaxed);
		/* SPEC 12: an outage of a chat backend shows here. */
		if (atomic_load_explicit(&dl->stats->backend, memory_order_relaxed) ==
		    STATS_BACKEND_DOWN && ++n_down == 1)
			snprintf(down, sizeof(down), "; backend of %s down", dl->cfg.name);
		if (dl->failures > 0 && !dl->pid) {
			failing++;
			if (failing == 1)
				snprintf(extra, sizeof(extra), "; listener %s restarting after %u failures",
					 dl->cfg.name, dl->failures);
		}
	}
	if (failing > 1)
		snprintf(extra, sizeof(extra), "; %u listeners restarting", failing);
	if (n_down > 1)
		snprintf(down, sizeof(down), "; %u backends down", n_down);
	snprintf(s, sizeof(s), "%u listener%s, %" PRIu64 " client%s%s%s%s%s", n, n == 1 ? "" : "s",
		 clients, clients == 1 ? "" : "s", extra, down, d->status_error[0] ? "; " : "",
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
		dispatcher_update_status(d, false);
	loop_timer_set(l, t, loop_now(l) + STATUS_REFRESH_USEC, on_status_timer, d);
}

static void
on_watchdog(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct dispatcher *d = userdata;

	/* Sent from the loop, so it stops when the loop stops turning. */
	dispatcher_notify("WATCHDOG=1");
	loop_timer_set(l, t, loop_now(l) + d->watchdog_usec / 2, on_watchdog, d);
}

/* The watchdog, when the manager asked for one, and the STATUS= refresh. */
void
dispatcher_start_timers(struct dispatcher *d)
{
	if (sdp_watchdog_enabled(&d->watchdog_usec) > 0 && d->watchdog_usec > 0)
		on_watchdog(d->loop, &d->watchdog_timer, d);
	loop_timer_set(d->loop, &d->status_timer, loop_now(d->loop) + STATUS_REFRESH_USEC,
		       on_status_timer, d);
}

void
dispatcher_log_counters(struct dispatcher *d)
{
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next) {
		struct listener_stats *s = dl->stats;

		log_listener(LOG_NOTICE, dl->cfg.name, NULL,
			     "connections now %" PRIu64 " total %" PRIu64 ", bytes in %" PRIu64
			     " out %" PRIu64 ", refused %" PRIu64 ", dropped %" PRIu64,
			     atomic_load(&s->conns_now), atomic_load(&s->conns_total),
			     atomic_load(&s->bytes_in), atomic_load(&s->bytes_out),
			     stats_refused_sum(s), stats_dropped_sum(s));
	}
}
