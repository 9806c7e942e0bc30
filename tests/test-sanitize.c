#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "sanitize.h"
#include "util.h"

#define FFFD "\xEF\xBF\xBD"

/* Input and output as C strings; "len" is used where the input holds NUL. */
static const struct {
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *out;
} cases[] = {
	{ "hello, world", 0, "hello, world" },
	{ "", 0, "" },
	/* C0 controls go, TAB stays */
	{ "a\tb", 0, "a\tb" },
	{ "\x1b[31mred\x1b[0m", 0, "[31mred[0m" },
	{ "bell\x07", 0, "bell" },
	{ "a\rb", 0, "ab" },
	{ "a\nb", 0, "ab" },
	{ "a\0b", 3, "ab" },
	{ "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
	  "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f",
	  0, "\t" },
	{ " !~", 0, " !~" },
	/* DEL */
	{ "a\x7f" "b", 0, "ab" },
	/* C1 controls as UTF-8 go; U+00A0 and up stay */
	{ "\xC2\x80x", 0, "x" },
	{ "\xC2\x85x", 0, "x" },
	{ "\xC2\x9B" "31m", 0, "31m" },
	{ "\xC2\x9F", 0, "" },
	{ "\xC2\xA0", 0, "\xC2\xA0" },
	/* valid UTF-8 stays */
	{ "caf\xC3\xA9", 0, "caf\xC3\xA9" },
	{ "\xE2\x82\xAC", 0, "\xE2\x82\xAC" },
	{ "\xF0\x9F\x98\x80", 0, "\xF0\x9F\x98\x80" },
	{ "\xF4\x8F\xBF\xBF", 0, "\xF4\x8F\xBF\xBF" },
	{ "\xED\x9F\xBF", 0, "\xED\x9F\xBF" }, /* U+D7FF */
	{ "\xEE\x80\x80", 0, "\xEE\x80\x80" }, /* U+E000 */
	{ FFFD, 0, FFFD },
	/* a C1 control as a Latin-1 byte is invalid UTF-8 */
	{ "\x85", 0, FFFD },
	/* stray continuation bytes: one U+FFFD each */
	{ "\x80", 0, FFFD },
	{ "a\x80\xBF" "b", 0, "a" FFFD FFFD "b" },
	/* bytes that never start a sequence */
	{ "\xC0\xAF", 0, FFFD FFFD },
	{ "\xC1\xBF", 0, FFFD FFFD },
	{ "\xF5\x80\x80\x80", 0, FFFD FFFD FFFD FFFD },
	{ "\xFE\xFF", 0, FFFD FFFD },
	/* overlongs, surrogates, beyond U+10FFFF */
	{ "\xE0\x80\xAF", 0, FFFD FFFD FFFD },
	{ "\xE0\x9F\xBF", 0, FFFD FFFD FFFD },
	{ "\xF0\x80\x80\xAF", 0, FFFD FFFD FFFD FFFD },
	{ "\xF0\x8F\xBF\xBF", 0, FFFD FFFD FFFD FFFD },
	{ "\xED\xA0\x80", 0, FFFD FFFD FFFD },
	{ "\xED\xBF\xBF", 0, FFFD FFFD FFFD },
	{ "\xF4\x90\x80\x80", 0, FFFD FFFD FFFD FFFD },
	/* truncated sequences: one U+FFFD for the maximal subpart */
	{ "\xC3", 0, FFFD },
	{ "\xE2\x82", 0, FFFD },
	{ "\xE2\x82x", 0, FFFD "x" },
	{ "\xF0\x9F\x98", 0, FFFD },
	{ "\xF0\x9F\x98" "a", 0, FFFD "a" },
	{ "\xF0\x9F\xC3\xA9", 0, FFFD "\xC3\xA9" },
	{ "\xE2\x82\xE2\x82\xAC", 0, FFFD "\xE2\x82\xAC" },
	/* Unicode 15, table 3-8 */
	{ "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64", 0,
	  "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d" },
	/* a removed control does not end a sequence early */
	{ "\xE2\x1B\x82\xAC", 0, FFFD FFFD FFFD },
};

START_TEST(sanitize_table)
{
	const char *in = cases[_i].in;
	size_t n = cases[_i].len ? cases[_i].len : strlen(in);
	char out[256];
	size_t k;

	k = sanitize_line((const uint8_t *)in, n, out, sizeof(out));
	ck_assert_msg(k == strlen(cases[_i].out) && memcmp(out, cases[_i].out, k) == 0,
		      "case %d: got %zu bytes \"%.*s\"", _i, k, (int)k, out);
}
END_TEST

START_TEST(sanitize_worst_case_is_three_times_input)
{
	uint8_t in[100];
	char out[SANITIZE_SIZE_MAX(sizeof(in))];

	memset(in, 0x80, sizeof(in));
	ck_assert_uint_eq(sanitize_line(in, sizeof(in), out, sizeof(out)), sizeof(out));
	for (size_t i = 0; i < sizeof(out); i += 3)
		ck_assert(memcmp(out + i, FFFD, 3) == 0);
}
END_TEST

START_TEST(sanitize_cuts_output_at_character_boundary)
{
	static const char in[] = "ab\xE2\x82\xAC" "cd";
	char out[16];

	/* Room for "ab" and two bytes of the euro sign: the sign is left out. */
	memset(out, 'Z', sizeof(out));
	ck_assert_uint_eq(sanitize_line((const uint8_t *)in, strlen(in), out, 4), 2);
	ck_assert(memcmp(out, "abZZ", 4) == 0);
	ck_assert_uint_eq(sanitize_line((const uint8_t *)in, strlen(in), out, 5), 5);
	ck_assert_uint_eq(sanitize_line((const uint8_t *)"\xFF", 1, out, 2), 0);
	ck_assert_uint_eq(sanitize_line((const uint8_t *)"x", 1, out, 0), 0);
}
END_TEST

START_TEST(sanitize_output_is_valid_utf8_for_every_byte_pair)
{
	/* Any two bytes: the result must be well-formed and free of controls,
	 * which sanitizing again proves by leaving it unchanged. */
	for (unsigned a = 0; a < 256; a++)
		for (unsigned b = 0; b < 256; b++) {
			uint8_t in[2] = { (uint8_t)a, (uint8_t)b };
			char out[6], again[18];
			size_t k, k2;

			k = sanitize_line(in, 2, out, sizeof(out));
			k2 = sanitize_line((const uint8_t *)out, k, again, sizeof(again));
			ck_assert_msg(k == k2 && memcmp(out, again, k) == 0, "%02x %02x", a, b);
		}
}
END_TEST

static Suite *
sanitize_suite(void)
{
	Suite *s = suite_create("sanitize");
	TCase *tc;

	tc = tcase_create("table");
	tcase_add_loop_test(tc, sanitize_table, 0, (int)ELEMENTSOF(cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("bounds");
	tcase_add_test(tc, sanitize_worst_case_is_three_times_input);
	tcase_add_test(tc, sanitize_cuts_output_at_character_boundary);
	tcase_add_test(tc, sanitize_output_is_valid_utf8_for_every_byte_pair);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sanitize_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
