#pragma once

#include <stddef.h>

struct config;
struct listener_config;

/* What a reload does to one listener. */
enum reload_action {
	RELOAD_KEEP,    /* unchanged: keeps running with its connections */
	RELOAD_RESTART, /* settings changed: stop its handler, start it with the new ones */
	RELOAD_STOP,    /* gone from the file, or enabled = false */
	RELOAD_START,   /* new in the file */
	_RELOAD_ACTION_MAX,
};

const char *reload_action_to_string(enum reload_action a);

struct reload_step {
	enum reload_action action;
	size_t running; /* index into the running set (KEEP, RESTART, STOP) */
	size_t wanted;  /* index into the new config's listeners (KEEP, RESTART, START) */
};

/* The plan for replacing the running listeners, whose effective settings
 * are running[0..n_running) (for one that is already restarting, the
 * settings it will restart with), by the enabled listeners of next.
 * Listeners match by name. Every STOP comes first, in running order, then
 * one step per enabled listener of next, in file order, so applying the
 * steps in order frees ports before new listeners ask for them.
 * ret_steps has room for n_running + next->n_listeners steps; returns how
 * many it wrote. Pure: no sockets, no processes, no logging. */
size_t reload_plan(const struct listener_config *const *running, size_t n_running,
		   const struct config *next, struct reload_step *ret_steps);
