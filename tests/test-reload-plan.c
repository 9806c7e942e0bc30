/* The reload plan (src/reload-plan.h), without processes or sockets:
 * which listeners a reload keeps, restarts, stops and starts, from an old
 * and a new configuration loaded the way the daemon loads them. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "config.h"
#include "reload-plan.h"
#include "util.h"

#define L(name, port, extra)                                                                     \
	"{ name = \"" name "\"; protocol = \"tcp\"; port = " #port "; model = \"poll\"; "          \
	"service = \"echo\"; " extra " }"

#define CHAT(name, port, extra)                                                                  \
	"{ name = \"" name "\"; protocol = \"tcp\"; port = " #port "; model = \"epoll\"; "         \
	"service = \"chat\"; " extra " }"

static struct config *
load(const char *text)
{
	struct config *c = NULL;
	struct config_errors e = { 0 };
	int r = config_load_string(text, "reload.conf", NULL, &c, &e);

	if (r != 0)
		for (size_t i = 0; i < e.n_errors; i++)
			fprintf(stderr, "%d: %s\n", e.errors[i].line, e.errors[i].message);
	ck_assert_int_eq(r, 0);
	config_errors_clear(&e);
	return c;
}

/* The plan from old to new as "action name" words, e.g.
 * "stop b, keep a, start c", so a case reads as the admin sees it. */
static void
plan_text(const struct config *old, const struct config *next, char *buf, size_t len)
{
	const struct listener_config *running[16];
	struct reload_step steps[32];
	size_t n_running = 0, n, used = 0;

	for (size_t i = 0; i < old->n_listeners; i++)
		if (old->listeners[i].enabled)
			running[n_running++] = &old->listeners[i];
	ck_assert_uint_le(n_running + next->n_listeners, ELEMENTSOF(steps));
	n = reload_plan(running, n_running, next, steps);
	ck_assert_uint_le(n, n_running + next->n_listeners);
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *name = steps[i].action == RELOAD_START || steps[i].action == RELOAD_KEEP ||
						   steps[i].action == RELOAD_RESTART
					   ? next->listeners[steps[i].wanted].name
					   : running[steps[i].running]->name;

		/* KEEP and RESTART pair a running listener with its
		 * namesake in the new file. */
		if (steps[i].action == RELOAD_KEEP || steps[i].action == RELOAD_RESTART)
			ck_assert_str_eq(running[steps[i].running]->name, name);
		used += (size_t)snprintf(buf + used, len - used, "%s%s %s", i ? ", " : "",
					 reload_action_to_string(steps[i].action), name);
		ck_assert_uint_lt(used, len);
	}
}

static const struct plan_case {
	const char *what;
	const char *old, *next;
	const char *plan;
} plan_cases[] = {
	{ "unchanged file keeps everything",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "") " );",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "") " );",
	  "keep a, keep b" },
	{ "a changed setting restarts only that listener",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "") " );",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "max_clients = 5;") " );",
	  "keep a, restart b" },
	{ "a new port restarts",
	  "listeners = ( " L("a", 7001, "") " );",
	  "listeners = ( " L("a", 7011, "") " );",
	  "restart a" },
	{ "removed listener stops, before anything starts",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "") " );",
	  "listeners = ( " L("c", 7002, "") ", " L("a", 7001, "") " );",
	  "stop b, start c, keep a" },
	{ "enabled = false stops it",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "") " );",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "enabled = false;") " );",
	  "stop b, keep a" },
	{ "enabled again starts it",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "enabled = false;") " );",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "") " );",
	  "keep a, start b" },
	{ "a rename is a stop and a start",
	  "listeners = ( " L("a", 7001, "") " );",
	  "listeners = ( " L("z", 7001, "") " );",
	  "stop a, start z" },
	{ "order in the file alone changes nothing",
	  "listeners = ( " L("a", 7001, "") ", " L("b", 7002, "") " );",
	  "listeners = ( " L("b", 7002, "") ", " L("a", 7001, "") " );",
	  "keep b, keep a" },
	{ "a new backend restarts",
	  "listeners = ( " L("a", 7001, "") ", " CHAT("b", 7002, "") " );",
	  "listeners = ( " L("a", 7001, "") ", " CHAT("b", 7002, "backend = \"redis://h\";") " );",
	  "keep a, restart b" },
	{ "another backend server restarts",
	  "listeners = ( " CHAT("b", 7002, "backend = \"redis://h\";") " );",
	  "listeners = ( " CHAT("b", 7002, "backend = \"redis://h/1\";") " );",
	  "restart b" },
	{ "another room restarts",
	  "listeners = ( " CHAT("b", 7002, "backend = \"redis://h\";") " );",
	  "listeners = ( " CHAT("b", 7002, "backend = \"redis://h\"; room = \"x\";") " );",
	  "restart b" },
	{ "the same backend and room keep it",
	  "listeners = ( " CHAT("b", 7002, "backend = \"redis://h:6379\"; room = \"x\";") " );",
	  "listeners = ( " CHAT("b", 7002, "room = \"x\"; backend = \"redis://h\";") " );",
	  "keep b" },
	{ "a global setting restarts no listener",
	  "log_level = \"info\";\nlisteners = ( " L("a", 7001, "") " );",
	  "log_level = \"debug\";\nlisteners = ( " L("a", 7001, "") " );",
	  "keep a" },
};

START_TEST(reload_plan_matches_by_name_and_settings)
{
	const struct plan_case *t = &plan_cases[_i];
	_cleanup_(config_freep) struct config *old = load(t->old);
	_cleanup_(config_freep) struct config *next = load(t->next);
	char got[512];

	plan_text(old, next, got, sizeof(got));
	ck_assert_msg(strcmp(got, t->plan) == 0, "%s: plan \"%s\", expected \"%s\"", t->what, got,
		      t->plan);
}
END_TEST

/* A listener already restarting for an earlier change is compared with
 * the settings it will restart with: a second reload to the same file
 * changes nothing more, one back to the old settings restarts it again. */
START_TEST(reload_plan_compares_a_pending_restart_with_its_new_settings)
{
	_cleanup_(config_freep) struct config *old = load("listeners = ( " L("a", 7001, "") " );");
	_cleanup_(config_freep) struct config *mid =
		load("listeners = ( " L("a", 7001, "max_clients = 3;") " );");
	const struct listener_config *running[1] = { &mid->listeners[0] };
	struct reload_step steps[2];

	ck_assert_uint_eq(reload_plan(running, 1, mid, steps), 1);
	ck_assert_int_eq(steps[0].action, RELOAD_KEEP);
	ck_assert_uint_eq(reload_plan(running, 1, old, steps), 1);
	ck_assert_int_eq(steps[0].action, RELOAD_RESTART);
	ck_assert_uint_eq(steps[0].running, 0);
	ck_assert_uint_eq(steps[0].wanted, 0);
}
END_TEST

START_TEST(reload_plan_from_nothing_starts_all_in_file_order)
{
	_cleanup_(config_freep) struct config *next =
		load("listeners = ( " L("a", 7001, "") ", " L("b", 7002, "enabled = false;") ", " L(
			"c", 7003, "") " );");
	struct reload_step steps[3];

	ck_assert_uint_eq(reload_plan(NULL, 0, next, steps), 2);
	ck_assert_int_eq(steps[0].action, RELOAD_START);
	ck_assert_uint_eq(steps[0].wanted, 0);
	ck_assert_int_eq(steps[1].action, RELOAD_START);
	ck_assert_uint_eq(steps[1].wanted, 2);
}
END_TEST

START_TEST(reload_action_names)
{
	ck_assert_str_eq(reload_action_to_string(RELOAD_KEEP), "keep");
	ck_assert_str_eq(reload_action_to_string(RELOAD_RESTART), "restart");
	ck_assert_str_eq(reload_action_to_string(RELOAD_STOP), "stop");
	ck_assert_str_eq(reload_action_to_string(RELOAD_START), "start");
	ck_assert_ptr_null(reload_action_to_string(_RELOAD_ACTION_MAX));
}
END_TEST

static Suite *
reload_plan_suite(void)
{
	Suite *s = suite_create("reload-plan");
	TCase *tc = tcase_create("plan");

	tcase_add_loop_test(tc, reload_plan_matches_by_name_and_settings, 0,
			    ELEMENTSOF(plan_cases));
	tcase_add_test(tc, reload_plan_compares_a_pending_restart_with_its_new_settings);
	tcase_add_test(tc, reload_plan_from_nothing_starts_all_in_file_order);
	tcase_add_test(tc, reload_action_names);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(reload_plan_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
