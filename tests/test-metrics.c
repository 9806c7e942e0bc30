/* The exposition renderer (metrics.c) and the counters' reasons (stats.c):
 * names, types, HELP lines, label escaping, which listeners get which
 * families, and the mapping of refusal messages to reasons. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "metrics.h"
#include "stats.h"

static struct stats_view
view(const char *name, const char *protocol, const char *service)
{
	struct stats_view v = { .info.port = 7 };

	strcpy(v.info.name, name);
	strcpy(v.info.protocol, protocol);
	strcpy(v.info.service, service);
	strcpy(v.info.model, "poll");
	strcpy(v.info.address, "*");
	return v;
}

static char *
render(const struct stats_view *v, size_t n)
{
	struct metrics_global g = { .version = "1.2.3", .start_usec = 1700000000123456,
				    .reload_usec = 1700000001000000, .reload_ok = true };
	char *out = NULL;
	size_t len = 0;

	ck_assert_int_eq(metrics_render(&g, v, n, &out, &len), 0);
	ck_assert_uint_eq(strlen(out), len);
	return out;
}

START_TEST(metrics_render_every_family_with_help_and_type)
{
	static const char *const types[][2] = {
		{ "netechod_build_info", "gauge" },
		{ "netechod_start_time_seconds", "gauge" },
		{ "netechod_config_last_reload_successful", "gauge" },
		{ "netechod_config_last_reload_timestamp_seconds", "gauge" },
		{ "netechod_listener_info", "gauge" },
		{ "netechod_connections_active", "gauge" },
		{ "netechod_connections_total", "counter" },
		{ "netechod_received_bytes_total", "counter" },
		{ "netechod_sent_bytes_total", "counter" },
		{ "netechod_datagrams_received_total", "counter" },
		{ "netechod_datagrams_sent_total", "counter" },
		{ "netechod_refused_total", "counter" },
		{ "netechod_dropped_total", "counter" },
		{ "netechod_chat_members", "gauge" },
		{ "netechod_chat_messages_total", "counter" },
		{ "netechod_handler_restarts_total", "counter" },
		{ "netechod_backend_up", "gauge" },
	};
	struct stats_view v[1] = { view("a", "tcp", "echo") };
	char *out = render(v, 1), line[160];

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		snprintf(line, sizeof(line), "# TYPE %s %s\n", types[i][0], types[i][1]);
		ck_assert_msg(strstr(out, line), "missing %s", line);
		snprintf(line, sizeof(line), "# HELP %s ", types[i][0]);
		ck_assert_msg(strstr(out, line), "missing %s", line);
	}
	ck_assert_ptr_nonnull(strstr(out, "netechod_build_info{version=\"1.2.3\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_start_time_seconds 1700000000.123456\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_config_last_reload_successful 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_config_last_reload_timestamp_seconds 1700000001.000000\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_listener_info{listener=\"a\",protocol=\"tcp\",address=\"*\",port=\"7\",model=\"poll\",service=\"echo\"} 1\n"));
	ck_assert_ptr_nonnull(out[strlen(out) - 1] == '\n' ? out : NULL);
	free(out);
}
END_TEST

START_TEST(metrics_render_values_and_reasons)
{
	struct stats_view v[3] = { view("e", "tcp", "echo"), view("u", "udp", "echo"),
				   view("c", "tcp", "chat") };
	char *out;

	v[0].conns_total = 12;
	v[0].refused[REFUSE_PER_SOURCE] = 3;
	v[0].refused[REFUSE_PROXY] = 4;
	v[1].dgrams_in = 9;
	v[1].dropped[DROP_GUARD] = 2;
	v[2].chat_members = 5;
	v[2].chat_messages = 77;
	v[2].restarts = 1;
	v[2].backend = STATS_BACKEND_DOWN;
	out = render(v, 3);
	ck_assert_ptr_nonnull(strstr(out, "netechod_connections_total{listener=\"e\"} 12\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_refused_total{listener=\"e\",reason=\"per_source\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_refused_total{listener=\"e\",reason=\"proxy\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_refused_total{listener=\"u\",reason=\"deny\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_datagrams_received_total{listener=\"u\"} 9\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_dropped_total{listener=\"u\",reason=\"guard\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_chat_members{listener=\"c\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_chat_messages_total{listener=\"c\"} 77\n"));
	ck_assert_ptr_nonnull(strstr(out, "netechod_handler_restarts_total{listener=\"c\"} 1\n"));
	/* Families that do not apply have no sample for the listener. */
	ck_assert_ptr_null(strstr(out, "netechod_datagrams_received_total{listener=\"e\"}"));
	ck_assert_ptr_null(strstr(out, "netechod_dropped_total{listener=\"e\""));
	ck_assert_ptr_null(strstr(out, "netechod_chat_members{listener=\"u\"}"));
	/* netechod_backend_up: chat listeners with a backend only. */
	ck_assert_ptr_nonnull(strstr(out, "netechod_backend_up{listener=\"c\"} 0\n"));
	ck_assert_ptr_null(strstr(out, "netechod_backend_up{listener=\"e\"}"));
	free(out);
	v[2].backend = STATS_BACKEND_UP;
	out = render(v, 3);
	ck_assert_ptr_nonnull(strstr(out, "netechod_backend_up{listener=\"c\"} 1\n"));
	free(out);
}
END_TEST

START_TEST(metrics_escape_backslash_quote_newline)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain", "plain" },
		{ "a\\b", "a\\\\b" },
		{ "say \"hi\"", "say \\\"hi\\\"" },
		{ "two\nlines", "two\\nlines" },
		{ "", "" },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = metrics_escape_label(cases[i].in, buf, sizeof(buf));

		ck_assert_str_eq(buf, cases[i].out);
		ck_assert_uint_eq(n, strlen(cases[i].out));
	}
	/* Too small: cut, terminated, and the whole length returned. */
	ck_assert_uint_eq(metrics_escape_label("a\"b", buf, 3), 4);
	ck_assert_str_eq(buf, "a\\");
}
END_TEST

START_TEST(metrics_render_escapes_label_values)
{
	struct stats_view v[1] = { view("x", "tcp", "echo") };
	char *out;

	strcpy(v[0].info.address, "we\"ird\\host\n");
	out = render(v, 1);
	ck_assert_ptr_nonnull(strstr(out, "address=\"we\\\"ird\\\\host\\n\""));
	free(out);
}
END_TEST

START_TEST(metrics_body_grows_with_listeners_only)
{
	static struct stats_view v[STATS_SLOTS_MAX];
	char *out;

	for (size_t i = 0; i < STATS_SLOTS_MAX; i++) {
		v[i] = view("l", i % 2 ? "udp" : "tcp", i % 3 ? "echo" : "chat");
		snprintf(v[i].info.name, sizeof(v[i].info.name), "listener-%zu", i);
		v[i].bytes_in = UINT64_MAX;
	}
	out = render(v, STATS_SLOTS_MAX);
	/* Over the session's 64 KiB, and about 3 KiB a listener at most. */
	ck_assert_uint_gt(strlen(out), 64 * 1024);
	ck_assert_uint_lt(strlen(out), (size_t)STATS_SLOTS_MAX * 3 * 1024);
	free(out);
}
END_TEST

START_TEST(stats_refusal_messages_map_to_reasons)
{
	ck_assert_int_eq(refuse_reason_from_message("not allowed"), REFUSE_DENY);
	ck_assert_int_eq(refuse_reason_from_message("server full"), REFUSE_MAX_CLIENTS);
	ck_assert_int_eq(refuse_reason_from_message("too many connections from this source"),
			 REFUSE_PER_SOURCE);
	ck_assert_int_eq(refuse_reason_from_message("bad proxy header"), REFUSE_PROXY);
	ck_assert_int_eq(refuse_reason_from_message("not a trusted proxy"), REFUSE_PROXY);
	ck_assert_int_eq(refuse_reason_from_message("out of memory"), REFUSE_ERROR);
	ck_assert_int_eq(refuse_reason_from_message(NULL), REFUSE_ERROR);
	for (int r = 0; r < _REFUSE_MAX; r++)
		ck_assert_ptr_nonnull(refuse_reason_to_string((enum refuse_reason)r));
	for (int r = 0; r < _DROP_MAX; r++)
		ck_assert_ptr_nonnull(drop_reason_to_string((enum drop_reason)r));
}
END_TEST

START_TEST(stats_snapshot_lists_visible_slots_by_name)
{
	struct stats_shared *sh = NULL;
	struct stats_slot *a, *b, *c;
	struct stats_info ia = { .name = "zeta" }, ib = { .name = "alpha" }, ic = { .name = "mid" };
	static struct stats_view v[STATS_SLOTS_MAX];

	ck_assert_int_eq(stats_shared_new(&sh, 5), 0);
	a = stats_slot_take(sh);
	b = stats_slot_take(sh);
	c = stats_slot_take(sh);
	stats_slot_publish(a, &ia);
	stats_slot_publish(b, &ib);
	stats_slot_publish(c, &ic);
	atomic_store(&a->stats.refused[REFUSE_DENY], 2);
	atomic_store(&a->stats.refused[REFUSE_ERROR], 3);
	ck_assert_uint_eq(stats_refused_sum(&a->stats), 5);
	stats_slot_hide(c);
	ck_assert_uint_eq(stats_snapshot(sh, v, STATS_SLOTS_MAX), 2);
	ck_assert_str_eq(v[0].info.name, "alpha");
	ck_assert_str_eq(v[1].info.name, "zeta");
	ck_assert_uint_eq(v[1].refused[REFUSE_ERROR], 3);
	atomic_store(&a->stats.restarts, 4);
	stats_reset(&a->stats);
	ck_assert_uint_eq(stats_refused_sum(&a->stats), 0);
	ck_assert_uint_eq(atomic_load(&a->stats.restarts), 4);
	stats_slot_release(b);
	ck_assert_ptr_eq(stats_slot_take(sh), b);
	ck_assert_uint_eq(sh->start_usec, 5);
	ck_assert_int_eq(atomic_load(&sh->reload_ok), 1);
	stats_shared_free(sh);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("render");

	tcase_add_test(tc, metrics_render_every_family_with_help_and_type);
	tcase_add_test(tc, metrics_render_values_and_reasons);
	tcase_add_test(tc, metrics_escape_backslash_quote_newline);
	tcase_add_test(tc, metrics_render_escapes_label_values);
	tcase_add_test(tc, metrics_body_grows_with_listeners_only);
	suite_add_tcase(s, tc);
	tc = tcase_create("stats");
	tcase_add_test(tc, stats_refusal_messages_map_to_reasons);
	tcase_add_test(tc, stats_snapshot_lists_visible_slots_by_name);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
