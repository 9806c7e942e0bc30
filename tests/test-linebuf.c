#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "linebuf.h"
#include "util.h"

#define LINE_MAX_TEST 8

/* What a run of input produced: lines as "L:text", overlong as "TOO_LONG",
 * joined by '|'. */
struct outcome {
	char text[1024];
	size_t max_cap; /* largest allocation seen */
};

static void
feed(struct linebuf *b, const char *p, size_t n, struct outcome *o)
{
	const uint8_t *in = (const uint8_t *)p;

	for (;;) {
		const uint8_t *line;
		size_t len;
		int r = linebuf_next(b, &in, &n, &line, &len);

		ck_assert_int_ge(r, 0);
		o->max_cap = MAX(o->max_cap, b->cap);
		ck_assert_uint_le(b->cap, b->max + 1);
		ck_assert_uint_le(b->len, b->max + 1);
		if (r == LINEBUF_MORE)
			break;
		if (r == LINEBUF_LINE) {
			ck_assert_uint_le(len, b->max);
			snprintf(o->text + strlen(o->text), sizeof(o->text) - strlen(o->text),
				 "L:%.*s|", (int)len, (const char *)line);
		} else
			snprintf(o->text + strlen(o->text), sizeof(o->text) - strlen(o->text),
				 "TOO_LONG|");
	}
	ck_assert_uint_eq(n, 0);
}

static const struct {
	const char *in;
	const char *expect;
} cases[] = {
	{ "", "" },
	{ "abc", "" },
	{ "abc\n", "L:abc|" },
	{ "abc\r\n", "L:abc|" },
	{ "a\nb\r\nc\n", "L:a|L:b|L:c|" },
	{ "\n", "L:|" },
	{ "\r\n", "L:|" },
	{ "\n\n", "L:|L:|" },
	/* a lone CR is part of the line; only CR right before LF is not */
	{ "a\rb\n", "L:a\rb|" },
	{ "\r\r\n", "L:\r|" },
	{ "a\r", "" },
	/* MAX bytes is fine, with either terminator */
	{ "12345678\n", "L:12345678|" },
	{ "12345678\r\n", "L:12345678|" },
	{ "1234567\r\r\n", "L:1234567\r|" },
	/* one more is too long, reported once; the next line is fine */
	{ "123456789\n", "TOO_LONG|" },
	{ "123456789\r\n", "TOO_LONG|" },
	{ "12345678\r\r\n", "TOO_LONG|" },
	{ "123456789\nok\n", "TOO_LONG|L:ok|" },
	{ "1234567890123456789012345\r\nok\r\n", "TOO_LONG|L:ok|" },
	{ "12345678901234567890\nx\n12345678901234567890\n", "TOO_LONG|L:x|TOO_LONG|" },
	{ "12345678\rx\nok\n", "TOO_LONG|L:ok|" },
};

/* Whole, then split in two at every offset, then one byte at a time: the
 * same lines every time. */
START_TEST(linebuf_frames_table)
{
	const char *in = cases[_i].in;
	size_t n = strlen(in);

	for (size_t split = 0; split <= n + 1; split++) {
		struct linebuf b;
		struct outcome o = { .text = "" };

		linebuf_init(&b, LINE_MAX_TEST);
		if (split <= n) {
			feed(&b, in, split, &o);
			feed(&b, in + split, n - split, &o);
		} else
			for (size_t i = 0; i < n; i++)
				feed(&b, in + i, 1, &o);
		ck_assert_msg(strcmp(o.text, cases[_i].expect) == 0, "case %d split %zu: \"%s\"",
			      _i, split, o.text);
		linebuf_release(&b);
	}
}
END_TEST

START_TEST(linebuf_memory_stays_bounded)
{
	struct linebuf b;
	struct outcome o = { .text = "" };
	char chunk[100];

	memset(chunk, 'x', sizeof(chunk));
	linebuf_init(&b, 1000);
	/* 100 KB without LF, in chunks and byte by byte. */
	for (int i = 0; i < 1000; i++)
		feed(&b, chunk, sizeof(chunk), &o);
	for (int i = 0; i < 5000; i++)
		feed(&b, "y", 1, &o);
	ck_assert_str_eq(o.text, "TOO_LONG|");
	ck_assert_uint_le(o.max_cap, 1001);
	/* Dropping the rest of it costs nothing. */
	ck_assert_ptr_null(b.data);
	feed(&b, "\nfine\n", 6, &o);
	ck_assert_str_eq(o.text, "TOO_LONG|L:fine|");
	linebuf_release(&b);
}
END_TEST

START_TEST(linebuf_holds_at_most_max_plus_one)
{
	struct linebuf b;
	struct outcome o = { .text = "" };
	char line[1001];

	memset(line, 'x', sizeof(line));
	line[1000] = '\r';
	linebuf_init(&b, 1000);
	for (size_t i = 0; i < sizeof(line); i++)
		feed(&b, line + i, 1, &o);
	ck_assert_uint_eq(b.len, 1001);
	ck_assert_uint_eq(b.cap, 1001);
	feed(&b, "\n", 1, &o);
	ck_assert_str_eq(o.text + strlen(o.text) - 2, "x|");
	ck_assert_uint_eq(strlen(o.text), 2 + 1000 + 1);
	linebuf_release(&b);
}
END_TEST

START_TEST(linebuf_releases_memory_when_empty)
{
	struct linebuf b;
	struct outcome o = { .text = "" };

	linebuf_init(&b, 100);
	feed(&b, "partial", 7, &o);
	ck_assert_ptr_nonnull(b.data);
	ck_assert_uint_eq(linebuf_pending(&b), 7);
	feed(&b, " line\nand more\n", 15, &o);
	ck_assert_str_eq(o.text, "L:partial line|L:and more|");
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.cap, 0);
	ck_assert_uint_eq(linebuf_pending(&b), 0);
	linebuf_release(&b);
}
END_TEST

START_TEST(linebuf_whole_lines_are_not_copied)
{
	static const char in[] = "one\ntwo\n";
	const uint8_t *p = (const uint8_t *)in, *line;
	size_t n = sizeof(in) - 1, len;
	struct linebuf b;

	linebuf_init(&b, 100);
	ck_assert_int_eq(linebuf_next(&b, &p, &n, &line, &len), LINEBUF_LINE);
	ck_assert_ptr_eq(line, (const uint8_t *)in);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(linebuf_next(&b, &p, &n, &line, &len), LINEBUF_LINE);
	ck_assert_ptr_eq(line, (const uint8_t *)in + 4);
	ck_assert_int_eq(linebuf_next(&b, &p, &n, &line, &len), LINEBUF_MORE);
	ck_assert_ptr_null(b.data);
	linebuf_release(&b);
}
END_TEST

static Suite *
linebuf_suite(void)
{
	Suite *s = suite_create("linebuf");
	TCase *tc;

	tc = tcase_create("framing");
	tcase_add_loop_test(tc, linebuf_frames_table, 0, (int)ELEMENTSOF(cases));
	tcase_add_test(tc, linebuf_whole_lines_are_not_copied);
	suite_add_tcase(s, tc);

	tc = tcase_create("memory");
	tcase_add_test(tc, linebuf_memory_stays_bounded);
	tcase_add_test(tc, linebuf_holds_at_most_max_plus_one);
	tcase_add_test(tc, linebuf_releases_memory_when_empty);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(linebuf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
