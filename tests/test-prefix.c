#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <check.h>

#include "prefix.h"

/* %p and %t are the calling process and thread: the expected strings put
 * "<pid>" and "<tid>" where those go. */
static const struct {
	const char *prefix;
	size_t size;
	const char *out;
} cases[] = {
	{ "plain: ", 64, "plain: " },
	{ "", 64, "" },
	{ "[%l] ", 64, "[web] " },
	{ "%p:", 64, "<pid>:" },
	{ "%t:", 64, "<tid>:" },
	{ "%l/%p/%t", 64, "web/<pid>/<tid>" },
	{ "100%% ", 64, "100% " },
	/* escapes config validation rejects expand to nothing */
	{ "a%xb", 64, "ab" },
	{ "a%", 64, "a" },
	/* truncated to fit, NUL included */
	{ "abcdef", 4, "abc" },
	{ "[%l]", 3, "[w" },
	{ "abc", 1, "" },
};

static void
expected(const char *pattern, char *out, size_t size)
{
	char pid[24], tid[24];
	size_t n = 0;

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	snprintf(tid, sizeof(tid), "%ld", (long)syscall(SYS_gettid));
	for (const char *p = pattern; *p; p++) {
		const char *add = NULL;

		if (strncmp(p, "<pid>", 5) == 0)
			add = pid;
		else if (strncmp(p, "<tid>", 5) == 0)
			add = tid;
		if (add) {
			n += (size_t)snprintf(out + n, size - n, "%s", add);
			p += 4;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
}

START_TEST(prefix_expands_escapes)
{
	char buf[64], want[64];
	size_t n;

	expected(cases[_i].out, want, sizeof(want));
	memset(buf, 'X', sizeof(buf));
	n = prefix_expand(cases[_i].prefix, "web", buf, cases[_i].size);
	ck_assert_str_eq(buf, want);
	ck_assert_uint_eq(n, strlen(want));
}
END_TEST

START_TEST(prefix_without_prefix_or_room_is_empty)
{
	char buf[8] = "keep";

	ck_assert_uint_eq(prefix_expand(NULL, "web", buf, sizeof(buf)), 0);
	ck_assert_uint_eq(prefix_expand("abc", "web", buf, 0), 0);
	/* size 0: buf is not touched */
	ck_assert_str_eq(buf, "keep");
}
END_TEST

static Suite *
prefix_suite(void)
{
	Suite *s = suite_create("prefix");
	TCase *tc;

	tc = tcase_create("expand");
	tcase_add_loop_test(tc, prefix_expands_escapes, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, prefix_without_prefix_or_room_is_empty);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(prefix_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
