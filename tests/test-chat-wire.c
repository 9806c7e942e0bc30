#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "chat-wire.h"
#include "util.h"

#define POISON 0xA5
#define ID "0123456789abcdef"

static void
poison(struct chat_wire_event *ev)
{
	memset(ev, POISON, sizeof(*ev));
}

static bool
poisoned(const struct chat_wire_event *ev)
{
	const uint8_t *b = (const uint8_t *)ev;

	for (size_t i = 0; i < sizeof(*ev); i++)
		if (b[i] != POISON)
			return false;
	return true;
}

static bool
field_eq(const char *p, size_t n, const char *want)
{
	if (!want)
		return n == 0 && p == NULL;
	return n == strlen(want) && (n == 0 || memcmp(p, want, n) == 0);
}

static const struct {
	const char *payload;
	enum chat_wire_type type;
	uint64_t seq;
	const char *a, *b, *text; /* NULL: not there */
} good_cases[] = {
	{ "v1 " ID " 1 join alice 192.0.2.1", CHAT_WIRE_JOIN, 1, "alice", "192.0.2.1", NULL },
	{ "v1 " ID " 2 join B.o_b-9 fe80::1%eth0", CHAT_WIRE_JOIN, 2, "B.o_b-9", "fe80::1%eth0",
	  NULL },
	{ "v1 " ID " 3 leave alice", CHAT_WIRE_LEAVE, 3, "alice", NULL, NULL },
	{ "v1 " ID " 4 leave alice instance lost", CHAT_WIRE_LEAVE, 4, "alice", NULL,
	  "instance lost" },
	{ "v1 " ID " 5 msg alice hello, world", CHAT_WIRE_MSG, 5, "alice", NULL, "hello, world" },
	{ "v1 " ID " 6 msg alice", CHAT_WIRE_MSG, 6, "alice", NULL, NULL },
	/* the text is the rest of the line, spaces and all */
	{ "v1 " ID " 7 msg alice  two  spaces ", CHAT_WIRE_MSG, 7, "alice", NULL,
	  " two  spaces " },
	{ "v1 " ID " 8 msg alice \t\x1b[31m\x7f\xff\xc3\xa9", CHAT_WIRE_MSG, 8, "alice", NULL,
	  "\t\x1b[31m\x7f\xff\xc3\xa9" },
	{ "v1 " ID " 9 me alice waves", CHAT_WIRE_ME, 9, "alice", NULL, "waves" },
	{ "v1 " ID " 10 me alice", CHAT_WIRE_ME, 10, "alice", NULL, NULL },
	{ "v1 " ID " 11 nick alice alice2", CHAT_WIRE_NICK, 11, "alice", "alice2", NULL },
	{ "v1 " ID " 12 privmsg alice bob psst", CHAT_WIRE_PRIVMSG, 12, "alice", "bob", "psst" },
	{ "v1 " ID " 13 privmsg alice bob", CHAT_WIRE_PRIVMSG, 13, "alice", "bob", NULL },
	{ "v1 " ID " 0 hello", CHAT_WIRE_HELLO, 0, NULL, NULL, NULL },
	{ "v1 ffffffffffffffff 18446744073709551615 bye", CHAT_WIRE_BYE, UINT64_MAX, NULL, NULL,
	  NULL },
	{ "v1 " ID " 14 msg 12345678901234567890123456789012 x", CHAT_WIRE_MSG, 14,
	  "12345678901234567890123456789012", NULL, "x" },
};

START_TEST(chat_wire_decodes_every_type)
{
	const char *p = good_cases[_i].payload;
	struct chat_wire_event ev;

	poison(&ev);
	ck_assert_int_eq(chat_wire_decode(p, strlen(p), &ev), 0);
	ck_assert_int_eq(ev.type, good_cases[_i].type);
	ck_assert_str_eq(ev.instance, strncmp(p + 3, ID, 16) == 0 ? ID : "ffffffffffffffff");
	ck_assert(ev.seq == good_cases[_i].seq);
	ck_assert(field_eq(ev.a, ev.a_len, good_cases[_i].a));
	ck_assert(field_eq(ev.b, ev.b_len, good_cases[_i].b));
	ck_assert(field_eq(ev.text, ev.text_len, good_cases[_i].text));
	/* pointers into p, no copies */
	if (ev.a)
		ck_assert(ev.a > p && ev.a < p + strlen(p));
	if (ev.text)
		ck_assert(ev.text + ev.text_len == p + strlen(p));
}
END_TEST

/* decode -> encode gives the same bytes; encode -> decode the same event. */
START_TEST(chat_wire_round_trips_every_type)
{
	const char *p = good_cases[_i].payload;
	struct chat_wire_event ev, back;
	char buf[256];
	int n;

	ck_assert_int_eq(chat_wire_decode(p, strlen(p), &ev), 0);
	n = chat_wire_encode(buf, sizeof(buf), &ev);
	ck_assert_int_eq(n, (int)strlen(p));
	ck_assert_str_eq(buf, p);
	ck_assert_int_eq(chat_wire_decode(buf, (size_t)n, &back), 0);
	ck_assert_int_eq(back.type, ev.type);
	ck_assert(back.seq == ev.seq);
	ck_assert_str_eq(back.instance, ev.instance);
	ck_assert_uint_eq(back.a_len, ev.a_len);
	ck_assert_uint_eq(back.b_len, ev.b_len);
	ck_assert_uint_eq(back.text_len, ev.text_len);
}
END_TEST

/* Every prefix of a valid event decodes to an event that encodes back to
 * that prefix, or is refused; nothing reads past it (ASan in CI). */
START_TEST(chat_wire_truncated_is_valid_or_refused)
{
	const char *p = good_cases[_i].payload;
	size_t n = strlen(p);

	for (size_t k = 0; k <= n; k++) {
		char *copy = malloc(k ? k : 1), buf[256];
		struct chat_wire_event ev;
		int r;

		ck_assert_ptr_nonnull(copy);
		memcpy(copy, p, k);
		poison(&ev);
		r = chat_wire_decode(copy, k, &ev);
		if (r == 0) {
			ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), (int)k);
			ck_assert(memcmp(buf, copy, k) == 0);
		} else {
			ck_assert_int_eq(r, -EBADMSG);
			ck_assert(poisoned(&ev));
		}
		free(copy);
	}
}
END_TEST

static const struct {
	const char *payload;
	size_t len; /* 0: strlen */
} bad_cases[] = {
	{ "", 0 },
	{ "v1", 0 },
	{ "v1 ", 0 },
	{ "v1 " ID, 0 },
	{ "v1 " ID " ", 0 },
	{ "v1 " ID " 1", 0 },
	{ "v1 " ID " 1 ", 0 },
	/* version */
	{ "v2 " ID " 1 hello", 0 },
	{ "V1 " ID " 1 hello", 0 },
	{ "v10 " ID " 1 hello", 0 },
	{ " v1 " ID " 1 hello", 0 },
	/* instance */
	{ "v1 0123456789ABCDEF 1 hello", 0 },
	{ "v1 0123456789abcde 1 hello", 0 },
	{ "v1 0123456789abcdef0 1 hello", 0 },
	{ "v1 0123456789abcdeg 1 hello", 0 },
	{ "v1  " ID " 1 hello", 0 },
	/* seq */
	{ "v1 " ID " x hello", 0 },
	{ "v1 " ID " -1 hello", 0 },
	{ "v1 " ID " +1 hello", 0 },
	{ "v1 " ID " 01 hello", 0 },
	{ "v1 " ID " 1x hello", 0 },
	{ "v1 " ID " 18446744073709551616 hello", 0 },
	{ "v1 " ID " 99999999999999999999999 hello", 0 },
	{ "v1 " ID "  1 hello", 0 },
	/* type */
	{ "v1 " ID " 1 HELLO", 0 },
	{ "v1 " ID " 1 hell", 0 },
	{ "v1 " ID " 1 helloo", 0 },
	{ "v1 " ID " 1 quit alice", 0 },
	/* missing fields */
	{ "v1 " ID " 1 join", 0 },
	{ "v1 " ID " 1 join alice", 0 },
	{ "v1 " ID " 1 join alice ", 0 },
	{ "v1 " ID " 1 leave", 0 },
	{ "v1 " ID " 1 msg", 0 },
	{ "v1 " ID " 1 me", 0 },
	{ "v1 " ID " 1 nick alice", 0 },
	{ "v1 " ID " 1 privmsg alice", 0 },
	/* extra fields, trailing separators */
	{ "v1 " ID " 1 hello ", 0 },
	{ "v1 " ID " 1 hello x", 0 },
	{ "v1 " ID " 1 bye x", 0 },
	{ "v1 " ID " 1 join alice 1.2.3.4 x", 0 },
	{ "v1 " ID " 1 join alice 1.2.3.4 ", 0 },
	{ "v1 " ID " 1 nick alice bob carol", 0 },
	{ "v1 " ID " 1 msg alice ", 0 },
	{ "v1 " ID " 1 leave alice ", 0 },
	{ "v1 " ID " 1 privmsg alice bob ", 0 },
	/* names */
	{ "v1 " ID " 1 msg  hi", 0 },
	{ "v1 " ID " 1 msg al!ce hi", 0 },
	{ "v1 " ID " 1 msg 123456789012345678901234567890123 hi", 0 },
	{ "v1 " ID " 1 msg al\xc3\xa9 hi", 0 },
	{ "v1 " ID " 1 join al\x01" "ce 1.2.3.4", 0 },
	{ "v1 " ID " 1 nick alice b\x7f", 0 },
	{ "v1 " ID " 1 nick alice b:b", 0 },
	{ "v1 " ID " 1 privmsg alice b@b hi", 0 },
	{ "v1 " ID " 1 privmsg al\tice bob hi", 0 },
	/* host */
	{ "v1 " ID " 1 join alice 1.2.3.4\x01", 0 },
	{ "v1 " ID " 1 join alice 1.2.3.4\x7f", 0 },
	{ "v1 " ID " 1 join alice 1.2.\xc3\xa9", 0 },
	{ "v1 " ID " 1 join alice \t", 0 },
	{ "v1 " ID
	  " 1 join alice 1234567890123456789012345678901234567890123456789012345678901234567890123",
	  0 },
	/* CR, LF, NUL anywhere */
	{ "v1 " ID " 1 hello\r", 0 },
	{ "v1 " ID " 1 hello\n", 0 },
	{ "v1 " ID " 1 hello\r\n", 0 },
	{ "v1 " ID " 1 msg alice a\rb", 0 },
	{ "v1 " ID " 1 msg alice a\nb", 0 },
	{ "v1 " ID " 1 msg alice a\0b", sizeof("v1 " ID " 1 msg alice a\0b") - 1 },
	{ "v1 " ID " 1 hello\0", sizeof("v1 " ID " 1 hello\0") - 1 },
	{ "\0v1 " ID " 1 hello", sizeof("\0v1 " ID " 1 hello") - 1 },
	{ "v1 " ID "\n1 hello", 0 },
	/* other separators */
	{ "v1\t" ID " 1 hello", 0 },
	{ "v1 " ID "\t1 hello", 0 },
	{ "v1 " ID " 1\thello", 0 },
	{ "v1 " ID " 1 msg\talice hi", 0 },
};

START_TEST(chat_wire_rejects_malformed)
{
	const char *p = bad_cases[_i].payload;
	size_t n = bad_cases[_i].len ? bad_cases[_i].len : strlen(p);
	char *copy = malloc(n ? n : 1);
	struct chat_wire_event ev;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, p, n);
	poison(&ev);
	ck_assert_int_eq(chat_wire_decode(copy, n, &ev), -EBADMSG);
	ck_assert(poisoned(&ev));
	free(copy);
}
END_TEST

START_TEST(chat_wire_decode_empty_with_null)
{
	struct chat_wire_event ev;

	ck_assert_int_eq(chat_wire_decode(NULL, 0, &ev), -EBADMSG);
}
END_TEST

/* A valid event, changed by one field. */
static struct chat_wire_event
event(enum chat_wire_type type, const char *a, const char *b, const char *text)
{
	struct chat_wire_event ev = { .type = type, .seq = 42 };

	strcpy(ev.instance, ID);
	ev.a = a;
	ev.a_len = a ? strlen(a) : 0;
	ev.b = b;
	ev.b_len = b ? strlen(b) : 0;
	ev.text = text;
	ev.text_len = text ? strlen(text) : 0;
	return ev;
}

START_TEST(chat_wire_encode_refuses_what_decode_refuses)
{
	char buf[512];
	struct chat_wire_event ev;
	static const char *const bad_instances[] = {
		"", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdeg", "0123456789abcd f",
	};

	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &(struct chat_wire_event){ 0 }),
			 -EINVAL);
	for (size_t i = 0; i < ELEMENTSOF(bad_instances); i++) {
		ev = event(CHAT_WIRE_HELLO, NULL, NULL, NULL);
		memset(ev.instance, 0, sizeof(ev.instance));
		strcpy(ev.instance, bad_instances[i]);
		ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	}
	ev = event(CHAT_WIRE_HELLO, NULL, NULL, NULL);
	memset(ev.instance, 'a', sizeof(ev.instance)); /* no NUL */
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);

	ev = event(_CHAT_WIRE_TYPE_MAX, NULL, NULL, NULL);
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_HELLO, "alice", NULL, NULL);
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_BYE, NULL, NULL, "x");
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_JOIN, "alice", NULL, NULL);
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_JOIN, "alice", "1.2.3.4", "x");
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_JOIN, "alice", "1.2 3.4", NULL);
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_MSG, "alice", "bob", "x");
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_MSG, "", NULL, "x");
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_MSG, "al ice", NULL, "x");
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_NICK, "alice", "b\nb", NULL);
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_PRIVMSG, "alice", NULL, "x");
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_MSG, "alice", NULL, "a\rb");
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_LEAVE, "alice", NULL, "a\nb");
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_ME, "alice", NULL, "ab");
	ev.text_len = 3; /* the NUL */
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_ME, "alice", NULL, NULL);
	ev.text_len = 1; /* NULL with a length */
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
	ev = event(CHAT_WIRE_ME, NULL, NULL, NULL);
	ev.a_len = 3;
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
}
END_TEST

START_TEST(chat_wire_encode_needs_room_for_the_nul)
{
	struct chat_wire_event ev = event(CHAT_WIRE_MSG, "alice", NULL, "hi");
	const char *want = "v1 " ID " 42 msg alice hi";
	size_t n = strlen(want);
	char buf[64];

	for (size_t size = 0; size <= n; size++) {
		memset(buf, 'Z', sizeof(buf));
		ck_assert_int_eq(chat_wire_encode(buf, size, &ev), -ENOSPC);
		ck_assert_int_eq(buf[0], 'Z');
	}
	ck_assert_int_eq(chat_wire_encode(buf, n + 1, &ev), (int)n);
	ck_assert_str_eq(buf, want);
}
END_TEST

/* The longest head with the longest text fits CHAT_WIRE_MAX, decodes, and
 * one byte more of payload is refused by both sides. */
START_TEST(chat_wire_longest_event)
{
	static char text[CHAT_WIRE_MAX + 2], buf[CHAT_WIRE_MAX + 2];
	const char *name = "12345678901234567890123456789012";
	struct chat_wire_event ev = event(CHAT_WIRE_PRIVMSG, name, name, NULL), back;
	int n;

	memset(text, 'x', sizeof(text));
	ev.seq = UINT64_MAX;
	ev.text = text;
	ev.text_len = CHAT_WIRE_TEXT_MAX;
	n = chat_wire_encode(buf, CHAT_WIRE_MAX + 1, &ev);
	ck_assert_int_gt(n, CHAT_WIRE_TEXT_MAX);
	ck_assert_int_le(n, CHAT_WIRE_MAX);
	ck_assert_int_eq(chat_wire_decode(buf, (size_t)n, &back), 0);
	ck_assert_uint_eq(back.text_len, CHAT_WIRE_TEXT_MAX);

	/* the longest payload the decoder takes, exactly */
	ev.text_len = CHAT_WIRE_TEXT_MAX + (size_t)(CHAT_WIRE_MAX - n);
	n = chat_wire_encode(buf, sizeof(buf), &ev);
	ck_assert_int_eq(n, CHAT_WIRE_MAX);
	ck_assert_int_eq(chat_wire_decode(buf, (size_t)n, &back), 0);
	ev.text_len++;
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EMSGSIZE);
	memset(buf + CHAT_WIRE_MAX, 'x', 1);
	ck_assert_int_eq(chat_wire_decode(buf, CHAT_WIRE_MAX + 1, &back), -EBADMSG);
}
END_TEST

START_TEST(chat_wire_longest_host)
{
	char host[CHAT_WIRE_HOST_MAX + 2], buf[512];
	struct chat_wire_event ev, back;
	int n;

	memset(host, 'f', sizeof(host));
	host[CHAT_WIRE_HOST_MAX] = '\0';
	ev = event(CHAT_WIRE_JOIN, "alice", host, NULL);
	n = chat_wire_encode(buf, sizeof(buf), &ev);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(chat_wire_decode(buf, (size_t)n, &back), 0);
	ck_assert_uint_eq(back.b_len, CHAT_WIRE_HOST_MAX);
	host[CHAT_WIRE_HOST_MAX] = 'f';
	host[CHAT_WIRE_HOST_MAX + 1] = '\0';
	ev = event(CHAT_WIRE_JOIN, "alice", host, NULL);
	ck_assert_int_eq(chat_wire_encode(buf, sizeof(buf), &ev), -EINVAL);
}
END_TEST

START_TEST(chat_wire_type_names)
{
	for (int t = 0; t < _CHAT_WIRE_TYPE_MAX; t++) {
		const char *s = chat_wire_type_to_string((enum chat_wire_type)t);

		ck_assert_ptr_nonnull(s);
		ck_assert_int_eq(chat_wire_type_from_string(s, strlen(s)), t);
	}
	ck_assert_ptr_null(chat_wire_type_to_string(_CHAT_WIRE_TYPE_MAX));
	ck_assert_ptr_null(chat_wire_type_to_string((enum chat_wire_type)-1));
	ck_assert_int_eq(chat_wire_type_from_string("joi", 3), -EINVAL);
	ck_assert_int_eq(chat_wire_type_from_string("join", 3), -EINVAL);
	ck_assert_int_eq(chat_wire_type_from_string("", 0), -EINVAL);
}
END_TEST

static Suite *
chat_wire_suite(void)
{
	Suite *s = suite_create("chat-wire");
	TCase *tc;

	tc = tcase_create("decode");
	tcase_add_loop_test(tc, chat_wire_decodes_every_type, 0, (int)ELEMENTSOF(good_cases));
	tcase_add_loop_test(tc, chat_wire_rejects_malformed, 0, (int)ELEMENTSOF(bad_cases));
	tcase_add_loop_test(tc, chat_wire_truncated_is_valid_or_refused, 0,
			    (int)ELEMENTSOF(good_cases));
	tcase_add_test(tc, chat_wire_decode_empty_with_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("encode");
	tcase_add_loop_test(tc, chat_wire_round_trips_every_type, 0, (int)ELEMENTSOF(good_cases));
	tcase_add_test(tc, chat_wire_encode_refuses_what_decode_refuses);
	tcase_add_test(tc, chat_wire_encode_needs_room_for_the_nul);
	tcase_add_test(tc, chat_wire_type_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, chat_wire_longest_event);
	tcase_add_test(tc, chat_wire_longest_host);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(chat_wire_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
