#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "chat-internal.h"
#include "util.h"

/* The pure half of the chat protocol (chat-proto.c), without a room: the
 * rooms' own tests (test-chat.c, test-chat-udp.c) reach these only through
 * whole conversations. */

#define SEC UINT64_C(1000000)

static void
assert_span(const char *p, size_t n, const char *want)
{
	ck_assert_uint_eq(n, strlen(want));
	if (n > 0)
		ck_assert_int_eq(memcmp(p, want, n), 0);
}

/* word, arg and text as C strings; "" where the parser leaves none. */
static const struct {
	const char *line;
	enum chat_cmd cmd;
	const char *word, *arg, *text;
} cmd_cases[] = {
	{ "hello", CHAT_CMD_TEXT, "", "", "hello" },
	{ "", CHAT_CMD_TEXT, "", "", "" },
	{ " /who", CHAT_CMD_TEXT, "", "", " /who" },
	{ "//who", CHAT_CMD_TEXT, "", "", "/who" },
	{ "//", CHAT_CMD_TEXT, "", "", "/" },
	{ "/", CHAT_CMD_UNKNOWN, "/", "", "" },
	{ "/who", CHAT_CMD_WHO, "/who", "", "" },
	{ "/who is there", CHAT_CMD_WHO, "/who", "", "" },
	{ "/WHO", CHAT_CMD_UNKNOWN, "/WHO", "", "" },
	{ "/whois x", CHAT_CMD_UNKNOWN, "/whois", "", "" },
	{ "/nick  bob ", CHAT_CMD_NICK, "/nick", "bob", "" },
	{ "/nick\tbob", CHAT_CMD_NICK, "/nick", "bob", "" },
	{ "/nick", CHAT_CMD_NICK, "/nick", "", "" },
	{ "/me waves  at all", CHAT_CMD_ME, "/me", "", "waves  at all" },
	{ "/me", CHAT_CMD_ME, "/me", "", "" },
	{ "/msg bob  hi there ", CHAT_CMD_MSG, "/msg", "bob", "hi there" },
	{ "/msg bob", CHAT_CMD_MSG, "/msg", "bob", "" },
	{ "/msg", CHAT_CMD_MSG, "/msg", "", "" },
	{ "/quit bye now", CHAT_CMD_QUIT, "/quit", "", "bye now" },
	{ "/quit", CHAT_CMD_QUIT, "/quit", "", "" },
	{ "/help", CHAT_CMD_HELP, "/help", "", "" },
	{ "/join 0123abcd", CHAT_CMD_JOIN, "/join", "0123abcd", "" },
};

START_TEST(chat_cmd_parse_table)
{
	struct chat_cmd_args a;
	const char *line = cmd_cases[_i].line;

	ck_assert_int_eq(chat_cmd_parse(line, strlen(line), &a), cmd_cases[_i].cmd);
	assert_span(a.word, a.word_len, cmd_cases[_i].word);
	assert_span(a.arg, a.arg_len, cmd_cases[_i].arg);
	assert_span(a.text, a.text_len, cmd_cases[_i].text);
}
END_TEST

static const struct {
	const char *line, *name;
} candidate_cases[] = {
	{ "alice", "alice" },
	{ " \talice \t", "alice" },
	{ "NAME: alice", "alice" },
	{ "name:alice", "alice" },
	{ "Name \t:\t alice ", "alice" },
	{ "name", "name" },
	{ "name alice", "name alice" },
	{ "names: alice", "names: alice" },
	{ "nam: alice", "nam: alice" },
	{ ": alice", ": alice" },
	{ "name:", "" },
};

START_TEST(chat_name_candidate_table)
{
	const char *line = candidate_cases[_i].line, *name;
	size_t len;

	chat_name_candidate(line, strlen(line), &name, &len);
	assert_span(name, len, candidate_cases[_i].name);
}
END_TEST

static const struct {
	const char *name;
	bool valid;
} valid_cases[] = {
	{ "a", true },
	{ "A-z_0.9", true },
	{ "abcdefghijklmnopqrstuvwxyz012345", true }, /* 32 */
	{ "abcdefghijklmnopqrstuvwxyz0123456", false },
	{ "", false },
	{ "a b", false },
	{ "a\tb", false },
	{ "caf\xC3\xA9", false },
	{ "a:b", false },
	{ "a@b", false },
};

START_TEST(chat_name_valid_table)
{
	const char *name = valid_cases[_i].name;

	ck_assert_int_eq(chat_name_valid(name, strlen(name)), valid_cases[_i].valid);
}
END_TEST

START_TEST(chat_names_compare_without_ascii_case)
{
	static const uint64_t key[2] = { 1, 2 };

	ck_assert(chat_name_equal("Alice", "aLICE"));
	ck_assert(chat_name_equal("", ""));
	ck_assert(!chat_name_equal("alice", "alic"));
	ck_assert(!chat_name_equal("alic", "alice"));
	ck_assert(!chat_name_equal("a-b", "a_b"));
	ck_assert_uint_eq(chat_name_hash(key, "Alice.B"), chat_name_hash(key, "aLICE.b"));
	ck_assert_uint_eq(chat_name_hash(key, "Alice.B"), chat_hash(key, "alice.b", 7));
}
END_TEST

START_TEST(chat_line_blank_only_for_spaces_and_tabs)
{
	ck_assert(chat_line_blank("", 0));
	ck_assert(chat_line_blank(" \t ", 3));
	ck_assert(!chat_line_blank(" x ", 3));
	ck_assert(!chat_line_blank("\xC2\xA0", 2));
}
END_TEST

/* SipHash-2-4 of the bytes 0, 1, ... n-1 under the key 00 01 ... 0f, from
 * the reference implementation's vectors. */
static const struct {
	size_t n;
	uint64_t hash;
} siphash_cases[] = {
	{ 0, UINT64_C(0x726fdb47dd0e0e31) },
	{ 1, UINT64_C(0x74f839c593dc67fd) },
	{ 8, UINT64_C(0x93f5f5799a932462) },
	{ 15, UINT64_C(0xa129ca6149be45e5) },
};

START_TEST(chat_hash_is_siphash_2_4)
{
	static const uint64_t key[2] = { UINT64_C(0x0706050403020100),
					 UINT64_C(0x0f0e0d0c0b0a0908) };
	uint8_t msg[16];

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	ck_assert_uint_eq(chat_hash(key, msg, siphash_cases[_i].n), siphash_cases[_i].hash);
}
END_TEST

START_TEST(chat_hash_key_differs_between_rooms)
{
	uint64_t a[2], b[2];

	chat_hash_key(a);
	chat_hash_key(b);
	ck_assert(a[0] != b[0] || a[1] != b[1]);
}
END_TEST

START_TEST(chat_bucket_allows_a_burst_of_rate_lines)
{
	struct chat_bucket b;
	uint64_t t = 100 * SEC;

	chat_bucket_init(&b, 3, t);
	ck_assert(chat_bucket_take(&b, 3, t));
	ck_assert(chat_bucket_take(&b, 3, t));
	ck_assert(chat_bucket_take(&b, 3, t));
	ck_assert(!chat_bucket_take(&b, 3, t));
}
END_TEST

START_TEST(chat_bucket_refills_at_rate_up_to_the_burst)
{
	struct chat_bucket b;
	uint64_t t = 100 * SEC;

	chat_bucket_init(&b, 2, t);
	ck_assert(chat_bucket_take(&b, 2, t));
	ck_assert(chat_bucket_take(&b, 2, t));
	/* Two lines per second: one more after half a second. */
	ck_assert(!chat_bucket_take(&b, 2, t + SEC / 4));
	ck_assert(chat_bucket_take(&b, 2, t + SEC / 2));
	ck_assert(!chat_bucket_take(&b, 2, t + SEC / 2));
	/* A long silence refills to the burst, not beyond. */
	t += 10 * SEC;
	ck_assert(chat_bucket_take(&b, 2, t));
	ck_assert(chat_bucket_take(&b, 2, t));
	ck_assert(!chat_bucket_take(&b, 2, t));
}
END_TEST

START_TEST(chat_bucket_ignores_an_older_time)
{
	struct chat_bucket b;
	uint64_t t = 100 * SEC;

	chat_bucket_init(&b, 1, t);
	ck_assert(chat_bucket_take(&b, 1, t));
	ck_assert(!chat_bucket_take(&b, 1, t - 5 * SEC));
	ck_assert(chat_bucket_take(&b, 1, t + SEC));
}
END_TEST

/* A room of one member that records the last line sent to it. */
struct one {
	char last[64];
	size_t last_len;
};

static void
one_send(void *room, void *m, const char *line, size_t len)
{
	struct one *o = room;

	(void)m;
	ck_assert_uint_le(len, sizeof(o->last));
	memcpy(o->last, line, len);
	o->last_len = len;
}

static unsigned
one_online(void *room)
{
	(void)room;
	return 1;
}

static const struct chat_ops one_ops = {
	.send = one_send,
	.online = one_online,
};

START_TEST(chat_lines_too_long_for_the_buffer_are_cut_but_end_with_crlf)
{
	struct one o = { 0 };
	char out[16];
	struct chat_ctx c = { .ops = &one_ops, .room = &o, .out = out, .out_size = sizeof(out) };

	chat_send_line(&c, NULL, "* abc");
	assert_span(o.last, o.last_len, "* abc\r\n");
	chat_send_line(&c, NULL, "* 0123456789abcdefghij");
	assert_span(o.last, o.last_len, "* 0123456789a\r\n");
}
END_TEST

START_TEST(chat_welcome_names_room_and_count)
{
	struct one o = { 0 };
	char out[256];
	struct chat_ctx c = { .ops = &one_ops, .room = &o, .out = out, .out_size = sizeof(out) };

	chat_send_welcome(&c, NULL, "lobby");
	assert_span(o.last, o.last_len, "* welcome to lobby (1 online); send your name\r\n");
}
END_TEST

static Suite *
chat_proto_suite(void)
{
	Suite *s = suite_create("chat-proto");
	TCase *tc;

	tc = tcase_create("parsing");
	tcase_add_loop_test(tc, chat_cmd_parse_table, 0, (int)ELEMENTSOF(cmd_cases));
	tcase_add_loop_test(tc, chat_name_candidate_table, 0, (int)ELEMENTSOF(candidate_cases));
	tcase_add_loop_test(tc, chat_name_valid_table, 0, (int)ELEMENTSOF(valid_cases));
	tcase_add_test(tc, chat_names_compare_without_ascii_case);
	tcase_add_test(tc, chat_line_blank_only_for_spaces_and_tabs);
	suite_add_tcase(s, tc);

	tc = tcase_create("hash");
	tcase_add_loop_test(tc, chat_hash_is_siphash_2_4, 0, (int)ELEMENTSOF(siphash_cases));
	tcase_add_test(tc, chat_hash_key_differs_between_rooms);
	suite_add_tcase(s, tc);

	tc = tcase_create("bucket");
	tcase_add_test(tc, chat_bucket_allows_a_burst_of_rate_lines);
	tcase_add_test(tc, chat_bucket_refills_at_rate_up_to_the_burst);
	tcase_add_test(tc, chat_bucket_ignores_an_older_time);
	suite_add_tcase(s, tc);

	tc = tcase_create("lines");
	tcase_add_test(tc, chat_lines_too_long_for_the_buffer_are_cut_but_end_with_crlf);
	tcase_add_test(tc, chat_welcome_names_room_and_count);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(chat_proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
