/* The dispatcher's pure decisions (src/dispatcher-internal.h), without a
 * running dispatcher: which restarts keep their sockets, how long a dead
 * handler waits before it is started again, and how its end is logged. */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "dispatcher-internal.h"
#include "util.h"

static struct listener_config
lc(enum protocol protocol, const char *address, uint16_t port, enum model model,
   unsigned workers)
{
	static char addrs[8][64];
	static size_t next;
	char *a = addrs[next++ % ELEMENTSOF(addrs)];

	snprintf(a, sizeof(addrs[0]), "%s", address);
	return (struct listener_config){
		.protocol = protocol,
		.address = a,
		.port = port,
		.model = model,
		.workers = workers,
	};
}

static const struct {
	const char *what;
	enum protocol pa, pb;
	const char *aa, *ab;
	uint16_t porta, portb;
	enum model ma, mb;
	unsigned wa, wb;
	bool same;
} socket_cases[] = {
	{ "identical", PROTOCOL_TCP, PROTOCOL_TCP, "*", "*", 7, 7, MODEL_POLL, MODEL_POLL, 1, 1,
	  true },
	{ "another model, one socket each", PROTOCOL_TCP, PROTOCOL_TCP, "*", "*", 7, 7,
	  MODEL_POLL, MODEL_FORK, 1, 1, true },
	{ "workers count only under epoll", PROTOCOL_TCP, PROTOCOL_TCP, "*", "*", 7, 7,
	  MODEL_THREAD, MODEL_POLL, 4, 2, true },
	{ "epoll, same workers", PROTOCOL_UDP, PROTOCOL_UDP, "::1", "::1", 9, 9, MODEL_EPOLL,
	  MODEL_EPOLL, 3, 3, true },
	{ "another port", PROTOCOL_TCP, PROTOCOL_TCP, "*", "*", 7, 8, MODEL_POLL, MODEL_POLL, 1,
	  1, false },
	{ "another protocol", PROTOCOL_TCP, PROTOCOL_UDP, "*", "*", 7, 7, MODEL_POLL,
	  MODEL_POLL, 1, 1, false },
	{ "another address", PROTOCOL_TCP, PROTOCOL_TCP, "127.0.0.1", "*", 7, 7, MODEL_POLL,
	  MODEL_POLL, 1, 1, false },
	{ "epoll, more workers", PROTOCOL_TCP, PROTOCOL_TCP, "*", "*", 7, 7, MODEL_EPOLL,
	  MODEL_EPOLL, 2, 4, false },
	/* Moving into or out of epoll takes new sockets, even with one
	 * worker. */
	{ "epoll with one worker vs poll", PROTOCOL_TCP, PROTOCOL_TCP, "*", "*", 7, 7,
	  MODEL_EPOLL, MODEL_POLL, 1, 1, false },
};

START_TEST(dispatcher_same_sockets_cases)
{
	struct listener_config a = lc(socket_cases[_i].pa, socket_cases[_i].aa,
				      socket_cases[_i].porta, socket_cases[_i].ma,
				      socket_cases[_i].wa);
	struct listener_config b = lc(socket_cases[_i].pb, socket_cases[_i].ab,
				      socket_cases[_i].portb, socket_cases[_i].mb,
				      socket_cases[_i].wb);

	ck_assert_msg(dispatcher_same_sockets(&a, &b) == socket_cases[_i].same, "%s",
		      socket_cases[_i].what);
	/* Whether two listeners can share sockets does not depend on
	 * which one is the old one. */
	ck_assert_msg(dispatcher_same_sockets(&b, &a) == socket_cases[_i].same, "%s, reversed",
		      socket_cases[_i].what);
}
END_TEST

START_TEST(dispatcher_restart_delay_doubles_up_to_the_cap)
{
	static const uint64_t want_s[] = { 1, 2, 4, 8, 16, 30, 30, 30 };
	unsigned failures = 0;

	for (size_t i = 0; i < ELEMENTSOF(want_s); i++) {
		uint64_t delay = dispatcher_restart_delay(&failures, USEC_PER_SEC);

		ck_assert_uint_eq(delay, want_s[i] * USEC_PER_SEC);
		ck_assert_uint_eq(failures, i + 1);
	}
	/* Many failures later the shift stays bounded. */
	failures = 1000;
	ck_assert_uint_eq(dispatcher_restart_delay(&failures, 0), RESTART_MAX_USEC);
	ck_assert_uint_eq(failures, 1001);
}
END_TEST

START_TEST(dispatcher_restart_delay_forgets_after_a_long_run)
{
	unsigned failures = 4;

	/* Exactly RESTART_RESET_USEC is not yet long enough. */
	ck_assert_uint_eq(dispatcher_restart_delay(&failures, RESTART_RESET_USEC),
			  16 * USEC_PER_SEC);
	ck_assert_uint_eq(failures, 5);
	ck_assert_uint_eq(dispatcher_restart_delay(&failures, RESTART_RESET_USEC + 1),
			  USEC_PER_SEC);
	ck_assert_uint_eq(failures, 1);
}
END_TEST

START_TEST(dispatcher_describe_exit_statuses)
{
	char buf[128];

	dispatcher_describe_exit(W_EXITCODE(0, 0), buf, sizeof(buf));
	ck_assert_str_eq(buf, "exited with status 0");
	dispatcher_describe_exit(W_EXITCODE(3, 0), buf, sizeof(buf));
	ck_assert_str_eq(buf, "exited with status 3");
	dispatcher_describe_exit(W_EXITCODE(0, SIGKILL), buf, sizeof(buf));
	ck_assert_str_eq(buf, "killed by signal 9 (Killed)");
	dispatcher_describe_exit(W_EXITCODE(0, SIGSEGV) | WCOREFLAG, buf, sizeof(buf));
	ck_assert_str_eq(buf, "killed by signal 11 (Segmentation fault), core dumped");
	/* A short buffer is cut, not overrun. */
	dispatcher_describe_exit(W_EXITCODE(0, SIGKILL), buf, 8);
	ck_assert_str_eq(buf, "killed ");
}
END_TEST

/* The same words for statuses a real waitpid() returns. */
START_TEST(dispatcher_describe_exit_of_real_children)
{
	char buf[128];
	int status;
	pid_t pid;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(7);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	dispatcher_describe_exit(status, buf, sizeof(buf));
	ck_assert_str_eq(buf, "exited with status 7");

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Check's own SIGTERM handler, inherited, would signal the
		 * whole process group. */
		signal(SIGTERM, SIG_DFL);
		raise(SIGTERM);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	dispatcher_describe_exit(status, buf, sizeof(buf));
	ck_assert_str_eq(buf, "killed by signal 15 (Terminated)");
}
END_TEST

static Suite *
dispatcher_suite(void)
{
	Suite *s = suite_create("dispatcher");
	TCase *tc = tcase_create("pure");

	tcase_add_loop_test(tc, dispatcher_same_sockets_cases, 0, ELEMENTSOF(socket_cases));
	tcase_add_test(tc, dispatcher_restart_delay_doubles_up_to_the_cap);
	tcase_add_test(tc, dispatcher_restart_delay_forgets_after_a_long_run);
	tcase_add_test(tc, dispatcher_describe_exit_statuses);
	tcase_add_test(tc, dispatcher_describe_exit_of_real_children);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(dispatcher_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
