/* The planning half of a reload: which listeners keep running, restart,
 * stop or start. The dispatcher applies the plan (reload() in
 * dispatcher.c); keeping the decision here lets a unit test check it
 * without processes or sockets. */

#include <string.h>

#include "config.h"
#include "reload-plan.h"

static const char *const action_names[_RELOAD_ACTION_MAX] = {
	[RELOAD_KEEP] = "keep",
	[RELOAD_RESTART] = "restart",
	[RELOAD_STOP] = "stop",
	[RELOAD_START] = "start",
};

const char *
reload_action_to_string(enum reload_action a)
{
	return a < _RELOAD_ACTION_MAX ? action_names[a] : NULL;
}

size_t
reload_plan(const struct listener_config *const *running, size_t n_running,
	    const struct config *next, struct reload_step *ret_steps)
{
	size_t n = 0;

	for (size_t r = 0; r < n_running; r++) {
		const struct listener_config *w = config_find_listener(next, running[r]->name);

		if (!w || !w->enabled)
			ret_steps[n++] = (struct reload_step){ .action = RELOAD_STOP, .running = r };
	}
	for (size_t i = 0; i < next->n_listeners; i++) {
		const struct listener_config *w = &next->listeners[i];
		struct reload_step s = { .action = RELOAD_START, .wanted = i };

		if (!w->enabled)
			continue;
		for (size_t r = 0; r < n_running; r++)
			if (strcmp(running[r]->name, w->name) == 0) {
				s.running = r;
				s.action = listener_config_equal(running[r], w) ? RELOAD_KEEP
										: RELOAD_RESTART;
				break;
			}
		ret_steps[n++] = s;
	}
	return n;
}
