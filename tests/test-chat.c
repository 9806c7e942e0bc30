#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "chat.h"
#include "util.h"

/* A fake transport: each client records what the room sent it, so tests
 * compare exact bytes. ctx is the struct client. */

#define SEC UINT64_C(1000000)
#define T0 (1000 * SEC)

struct client {
	struct chat_member *m;
	/* Bytes the room sent, and how many of them the "socket" took. */
	uint64_t queued, delivered;
	char **lines; /* "…\r\n" as sent, or "CLOSE reason" */
	size_t n, cap, seen;
	char host[64];
};

static struct chat_room *room;
static struct client *clients;
static size_t n_clients;
static bool quiet; /* while building big rooms: check lines, keep none */

static void
record(struct client *c, const char *s, size_t len)
{
	c->queued += len;
	if (quiet)
		return;
	/* Plain checks here: every ck_assert() costs Check a write(). */
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->lines = realloc(c->lines, c->cap * sizeof(char *));
		if (!c->lines)
			ck_abort_msg("out of memory");
	}
	c->lines[c->n] = strndup(s, len);
	if (!c->lines[c->n])
		ck_abort_msg("out of memory");
	c->n++;
}

/* Sends by the room, and the lines in them. */
static unsigned long n_sends;

static void
fake_send(void *ctx, const char *line, size_t len)
{
	/* Whole lines: CRLF at the end of each, CR and LF nowhere else. The
	 * room may send several lines at once (what one input relayed). */
	n_sends++;
	if (len < 2 || memcmp(line + len - 2, "\r\n", 2) != 0)
		ck_abort_msg("not CRLF-terminated lines: \"%.*s\"", (int)len, line);
	while (len > 0) {
		const char *lf = memchr(line, '\n', len);
		size_t n = (size_t)(lf - line) + 1;

		if (n < 2 || line[n - 2] != '\r' || memchr(line, '\r', n - 2))
			ck_abort_msg("not one CRLF-terminated line: \"%.*s\"", (int)n, line);
		record(ctx, line, n);
		line += n;
		len -= n;
	}
}

static void
fake_close(void *ctx, const char *reason)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "CLOSE %s", reason);
	record(ctx, buf, strlen(buf));
}

static const struct chat_transport transport = {
	.send = fake_send,
	.close = fake_close,
};

static size_t
fake_unsent(void *ctx)
{
	struct client *c = ctx;

	return (size_t)(c->queued - c->delivered);
}

static uint64_t
fake_delivered(void *ctx)
{
	return ((struct client *)ctx)->delivered;
}

/* The same, and it tells the room what each client's socket took. */
static const struct chat_transport counting_transport = {
	.send = fake_send,
	.close = fake_close,
	.unsent = fake_unsent,
	.delivered = fake_delivered,
};

static void
room_open_with(unsigned max_line, unsigned rate_limit, const struct chat_transport *t)
{
	struct chat_settings s = {
		.listener = "lobby",
		.max_clients = 100000,
		.max_line = max_line,
		.rate_limit = rate_limit,
	};

	room = chat_room_free(room);
	ck_assert_int_eq(chat_room_new(&room, &s, t), 0);
}

static void
room_open(unsigned max_line, unsigned rate_limit)
{
	room_open_with(max_line, rate_limit, &transport);
}

static void
setup(void)
{
	n_clients = 4096;
	clients = calloc(n_clients, sizeof(*clients));
	ck_assert_ptr_nonnull(clients);
	room_open(64, 0);
}

static void
teardown(void)
{
	room = chat_room_free(room);
	quiet = false;
	for (size_t i = 0; i < n_clients; i++) {
		for (size_t j = 0; j < clients[i].n; j++)
			free(clients[i].lines[j]);
		free(clients[i].lines);
	}
	free(clients);
	clients = NULL;
}

static struct client *
connect_from(int id, const char *host, uint64_t now)
{
	struct client *c = &clients[id];

	ck_assert_uint_lt((size_t)id, n_clients);
	snprintf(c->host, sizeof(c->host), "%s", host);
	c->m = chat_room_join(room, c, host, now);
	ck_assert_ptr_nonnull(c->m);
	return c;
}

static void
input_at(struct client *c, uint64_t now, const char *s)
{
	chat_member_input(room, c->m, (const uint8_t *)s, strlen(s), now);
}

static void
input(struct client *c, const char *s)
{
	input_at(c, T0, s);
}

static void
leave(struct client *c)
{
	chat_room_leave(room, c->m);
	c->m = NULL;
}

/* The next unread line of c must be `line` + CRLF. */
static void
expect_line(struct client *c, const char *line)
{
	char want[4096];

	snprintf(want, sizeof(want), "%s\r\n", line);
	ck_assert_msg(c->seen < c->n, "client %td: expected \"%s\", got nothing",
		      c - clients, line);
	ck_assert_msg(strcmp(c->lines[c->seen], want) == 0,
		      "client %td: expected \"%s\", got \"%s\"", c - clients, line,
		      c->lines[c->seen]);
	c->seen++;
}

static void
expect_close(struct client *c, const char *reason)
{
	char want[64];

	snprintf(want, sizeof(want), "CLOSE %s", reason);
	ck_assert_msg(c->seen < c->n, "client %td: expected close", c - clients);
	ck_assert_str_eq(c->lines[c->seen], want);
	c->seen++;
}

static void
expect_nothing(struct client *c)
{
	ck_assert_msg(c->seen == c->n, "client %td: unexpected \"%s\"", c - clients,
		      c->lines[c->seen]);
}

static void
skip_all(struct client *c)
{
	c->seen = c->n;
}

/* Connect and take a name; everything said so far is read. */
static struct client *
named(int id, const char *name, const char *host)
{
	struct client *c = connect_from(id, host, T0);
	char line[64];

	snprintf(line, sizeof(line), "%s\n", name);
	input(c, line);
	for (size_t i = 0; i < n_clients; i++)
		skip_all(&clients[i]);
	return c;
}

/* ---------------- welcome and naming ---------------- */

START_TEST(chat_welcomes_with_room_name_and_count)
{
	struct client *a = connect_from(0, "127.0.0.1", T0), *b;

	expect_line(a, "* welcome to lobby (0 online); send your name");
	expect_nothing(a);
	input(a, "alice\n");
	b = connect_from(1, "10.0.0.2", T0);
	expect_line(b, "* welcome to lobby (1 online); send your name");
	expect_nothing(b);
}
END_TEST

START_TEST(chat_accepts_bare_name)
{
	struct client *a = connect_from(0, "127.0.0.1", T0);

	skip_all(a);
	input(a, "alice\r\n");
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
	expect_nothing(a);
	ck_assert_uint_eq(chat_room_online(room), 1);
}
END_TEST

static const struct {
	const char *line;
	const char *name;
} name_forms[] = {
	{ "alice\n", "alice" },
	{ "  alice\t \n", "alice" },
	{ "NAME: alice\n", "alice" },
	{ "NAME:alice\n", "alice" },
	{ "name: alice\r\n", "alice" },
	{ "Name :\talice  \n", "alice" },
	{ "  NAME  :  alice\n", "alice" },
	{ "NAME\n", "NAME" },
	{ "NAME: NAME\n", "NAME" },
	{ "namely\n", "namely" },
	{ "A-Z.a_z-0.9\n", "A-Z.a_z-0.9" },
	{ "abcdefghijklmnopqrstuvwxyz012345\n", "abcdefghijklmnopqrstuvwxyz012345" },
	{ "x\n", "x" },
};

START_TEST(chat_accepts_bare_and_classic_names)
{
	struct client *a = connect_from(0, "192.0.2.7", T0);
	char want[128];

	skip_all(a);
	input(a, name_forms[_i].line);
	snprintf(want, sizeof(want), "* you are %s@192.0.2.7; 1 online", name_forms[_i].name);
	expect_line(a, want);
	expect_nothing(a);
}
END_TEST

static const struct {
	const char *line;
	const char *shown;
} bad_names[] = {
	{ "al ice\n", "al ice" },
	{ "bad!\n", "bad!" },
	{ "NAME:\n", "" },
	{ "NAME: \n", "" },
	{ "NAME: al ice\n", "al ice" },
	{ "abcdefghijklmnopqrstuvwxyz0123456\n", "abcdefghijklmnopqrstuvwxyz0123456" },
	{ "caf\xC3\xA9\n", "caf\xC3\xA9" },
	{ "evil\x1b[2J\n", "evil[2J" },
	{ "\xFF\n", "\xEF\xBF\xBD" },
	{ "/who\n", "/who" },
	{ "\"quoted\"\n", "\"quoted\"" },
	/* echoed text is capped at 40 bytes */
	{ "0123456789012345678901234567890123456789-and-more\n",
	  "0123456789012345678901234567890123456789..." },
	/* ... and cut at a character boundary */
	{ "012345678901234567890123456789012345678\xC3\xA9\xC3\xA9\n",
	  "012345678901234567890123456789012345678..." },
};

START_TEST(chat_rejects_invalid_name)
{
	struct client *a = connect_from(0, "127.0.0.1", T0);
	char want[256];

	skip_all(a);
	input(a, bad_names[_i].line);
	snprintf(want, sizeof(want), "! invalid name \"%s\"; use 1-32 of A-Z a-z 0-9 _ . -",
		 bad_names[_i].shown);
	expect_line(a, want);
	expect_nothing(a);
	ck_assert_uint_eq(chat_room_online(room), 0);
}
END_TEST

START_TEST(chat_rejects_taken_name)
{
	struct client *b;

	named(0, "alice", "127.0.0.1");
	b = connect_from(1, "127.0.0.1", T0);
	skip_all(b);
	input(b, "alice\n");
	expect_line(b, "! name \"alice\" is taken");
	/* unique case-insensitively */
	input(b, "NAME: ALICE\n");
	expect_line(b, "! name \"ALICE\" is taken");
	expect_nothing(b);
	expect_nothing(&clients[0]);
}
END_TEST

START_TEST(chat_name_retry_succeeds)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = connect_from(1, "10.1.2.3", T0);

	skip_all(b);
	input(b, "bad name\nalice\nbob\n");
	expect_line(b, "! invalid name \"bad name\"; use 1-32 of A-Z a-z 0-9 _ . -");
	expect_line(b, "! name \"alice\" is taken");
	expect_line(b, "* you are bob@10.1.2.3; 2 online");
	expect_nothing(b);
	expect_line(a, "* bob@10.1.2.3 joined; 2 online");
	expect_nothing(a);
}
END_TEST

START_TEST(chat_join_notice_goes_to_named_clients_only)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *w = connect_from(1, "127.0.0.1", T0);
	struct client *c;

	skip_all(w);
	c = connect_from(2, "::1", T0);
	skip_all(c);
	input(c, "carol\n");
	expect_line(c, "* you are carol@::1; 2 online");
	expect_line(a, "* carol@::1 joined; 2 online");
	expect_nothing(w);
}
END_TEST

START_TEST(chat_name_timeout_closes_client)
{
	struct client *a = connect_from(0, "127.0.0.1", T0);
	struct client *b = connect_from(1, "127.0.0.1", T0 + 5 * SEC);

	skip_all(a);
	skip_all(b);
	input_at(a, T0 + 10 * SEC, "bad name\n");
	skip_all(a);
	ck_assert_uint_eq(chat_room_tick(room, T0), T0 + 30 * SEC);
	ck_assert_uint_eq(chat_room_tick(room, T0 + 30 * SEC - 1), T0 + 30 * SEC);
	expect_nothing(a);
	ck_assert_uint_eq(chat_room_tick(room, T0 + 30 * SEC), T0 + 35 * SEC);
	expect_line(a, "! no name given within 30 s");
	expect_close(a, "name timeout");
	expect_nothing(a);
	expect_nothing(b);
	/* Input after the close is ignored. */
	input(a, "alice\n");
	expect_nothing(a);
	ck_assert_uint_eq(chat_room_tick(room, T0 + 40 * SEC), 0);
	expect_line(b, "! no name given within 30 s");
	expect_close(b, "name timeout");
	leave(a);
	leave(b);
	ck_assert_uint_eq(chat_room_tick(room, T0 + 100 * SEC), 0);
}
END_TEST

START_TEST(chat_named_client_is_not_timed_out)
{
	struct client *a = named(0, "alice", "127.0.0.1");

	ck_assert_uint_eq(chat_room_tick(room, T0 + 3600 * SEC), 0);
	expect_nothing(a);
}
END_TEST

START_TEST(chat_quit_before_name_closes_quietly)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = connect_from(1, "127.0.0.1", T0);

	skip_all(b);
	input(b, "/quit\n");
	expect_close(b, "quit");
	expect_nothing(b);
	leave(b);
	expect_nothing(a);
}
END_TEST

START_TEST(chat_help_before_name)
{
	struct client *b = connect_from(1, "127.0.0.1", T0);

	skip_all(b);
	input(b, "/help\n");
	expect_line(b, "* commands:");
	ck_assert_uint_eq(chat_room_online(room), 0);
}
END_TEST

/* ---------------- relay ---------------- */

START_TEST(chat_relays_to_others_not_sender)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *c = named(2, "carol", "127.0.0.1");
	struct client *w = connect_from(3, "127.0.0.1", T0);

	skip_all(w);
	input(a, "hello, world\n");
	expect_line(b, "<alice> hello, world");
	expect_line(c, "<alice> hello, world");
	expect_nothing(a);
	expect_nothing(b);
	/* not to clients without a name */
	expect_nothing(w);
}
END_TEST

START_TEST(chat_relays_text_as_sent)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	input(a, "  indented, trailing  \n");
	expect_line(b, "<alice>   indented, trailing  ");
	input(a, "NAME: not a rename\n");
	expect_line(b, "<alice> NAME: not a rename");
	input(a, "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\n");
	expect_line(b, "<alice> caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
	expect_nothing(a);
}
END_TEST

START_TEST(chat_ignores_empty_lines)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *c = connect_from(2, "127.0.0.1", T0);

	skip_all(c);
	input(a, "\n\r\n   \n\t\n\x1b\n");
	input(c, "\n \r\n");
	expect_nothing(a);
	expect_nothing(b);
	expect_nothing(c);
}
END_TEST

START_TEST(chat_double_slash_sends_message)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	input(a, "//who\n");
	expect_line(b, "<alice> /who");
	input(a, "// \n");
	expect_line(b, "<alice> / ");
	input(a, "///x\n");
	expect_line(b, "<alice> //x");
	expect_nothing(a);
}
END_TEST

/* What one input relays goes to each other member as one send; a private
 * message or a notice in between keeps its place in every member's order. */
START_TEST(chat_relays_one_input_as_one_send_in_order)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *c = named(2, "carol", "127.0.0.1");
	unsigned long before = n_sends;

	input(a, "one\ntwo\nthree\n");
	ck_assert_uint_eq(n_sends - before, 2);
	expect_line(b, "<alice> one");
	expect_line(b, "<alice> two");
	expect_line(b, "<alice> three");
	expect_line(c, "<alice> one");
	expect_line(c, "<alice> two");
	expect_line(c, "<alice> three");

	input(a, "four\n/msg bob psst\n/me waves\nfive\n/who\nsix\n");
	expect_line(b, "<alice> four");
	expect_line(b, "<alice> (private) psst");
	expect_line(b, "* alice waves");
	expect_line(b, "<alice> five");
	expect_line(b, "<alice> six");
	expect_line(c, "<alice> four");
	expect_line(c, "* alice waves");
	expect_line(c, "<alice> five");
	expect_line(c, "<alice> six");
	ck_assert(strncmp(a->lines[a->seen++], "* 3 online: ", 12) == 0);
	expect_nothing(a);
	expect_nothing(b);
	expect_nothing(c);
}
END_TEST

START_TEST(chat_keeps_each_senders_order)
{
	enum { N = 12, MSGS = 40 };
	char name[16], line[64];

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		named(i, name, "127.0.0.1");
	}
	for (int k = 0; k < MSGS; k++)
		for (int i = 0; i < N; i++) {
			snprintf(line, sizeof(line), "message %d\n", k);
			input(&clients[i], line);
		}
	for (int r = 0; r < N; r++) {
		int next[N] = { 0 };
		struct client *c = &clients[r];

		ck_assert_uint_eq(c->n - c->seen, (size_t)(N - 1) * MSGS);
		for (size_t j = c->seen; j < c->n; j++) {
			int from, k;

			int got = sscanf(c->lines[j], "<user%d> message %d", &from, &k);

			if (got != 2 || from == r || from < 0 || from >= N || k != next[from]++)
				ck_abort_msg("client %d: out of order: %s", r, c->lines[j]);
		}
	}
}
END_TEST

static const struct {
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *relayed;
} sanitize_cases[] = {
	{ "\x1b[31mred\x1b[0m\n", 0, "<alice> [31mred[0m" },
	{ "tab\there\n", 0, "<alice> tab\there" },
	{ "bell\x07\x08\x00x\n", 9, "<alice> bellx" },
	{ "del\x7f\n", 0, "<alice> del" },
	{ "c1\xC2\x85\xC2\x9B" "x\n", 0, "<alice> c1x" },
	{ "bad\xFF\xC0\xAF" "x\n", 0, "<alice> bad\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDx" },
	{ "cut\xE2\x82\n", 0, "<alice> cut\xEF\xBF\xBD" },
	{ "surrogate\xED\xA0\x80\n", 0, "<alice> surrogate\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
	{ "lone\rcr\n", 0, "<alice> lonecr" },
	{ "crlf\r\n", 0, "<alice> crlf" },
	{ "/me \x1b]0;owned\x07waves\n", 0, "* alice ]0;ownedwaves" },
};

START_TEST(chat_sanitizes_relayed_text)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	const char *in = sanitize_cases[_i].in;
	size_t n = sanitize_cases[_i].len ? sanitize_cases[_i].len : strlen(in);

	chat_member_input(room, a->m, (const uint8_t *)in, n, T0);
	expect_line(b, sanitize_cases[_i].relayed);
	expect_nothing(b);
	expect_nothing(a);
}
END_TEST

/* ---------------- framing ---------------- */

START_TEST(chat_frames_split_reads_at_every_boundary)
{
	static const char in[] = "alice\r\nhello\nworld\r\n/me waves\n";
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *a = connect_from(0, "127.0.0.1", T0);
	size_t split = (size_t)_i;

	skip_all(a);
	chat_member_input(room, a->m, (const uint8_t *)in, split, T0);
	chat_member_input(room, a->m, (const uint8_t *)in + split, sizeof(in) - 1 - split, T0);
	expect_line(a, "* you are alice@127.0.0.1; 2 online");
	expect_nothing(a);
	expect_line(b, "* alice@127.0.0.1 joined; 2 online");
	expect_line(b, "<alice> hello");
	expect_line(b, "<alice> world");
	expect_line(b, "* alice waves");
	expect_nothing(b);
}
END_TEST

START_TEST(chat_frames_byte_by_byte)
{
	static const char in[] = "hello\r\nworld\n";
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	for (size_t i = 0; i < sizeof(in) - 1; i++)
		chat_member_input(room, a->m, (const uint8_t *)in + i, 1, T0);
	expect_line(b, "<alice> hello");
	expect_line(b, "<alice> world");
	expect_nothing(b);
}
END_TEST

START_TEST(chat_line_too_long_is_refused_then_client_recovers)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	char line[256];

	/* 64 bytes is the limit (max_line 64 in the fixture) */
	memset(line, 'x', 64);
	strcpy(line + 64, "\r\n");
	input(a, line);
	expect_line(b, "<alice> xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	memset(line, 'y', 65);
	strcpy(line + 65, "\n");
	input(a, line);
	expect_line(a, "! line too long (max 64 bytes)");
	/* A long line in pieces is reported once. */
	memset(line, 'z', 200);
	line[200] = '\0';
	input(a, line);
	input(a, line);
	input(a, "z\nstill here\n");
	expect_line(a, "! line too long (max 64 bytes)");
	expect_nothing(a);
	expect_line(b, "<alice> still here");
	expect_nothing(b);
	ck_assert_uint_eq(chat_room_online(room), 2);
}
END_TEST

START_TEST(chat_line_too_long_before_name)
{
	struct client *a = connect_from(0, "127.0.0.1", T0);
	char line[128];

	skip_all(a);
	memset(line, 'a', 100);
	strcpy(line + 100, "\nalice\n");
	input(a, line);
	expect_line(a, "! line too long (max 64 bytes)");
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
}
END_TEST

START_TEST(chat_max_line_counts_input_bytes)
{
	struct client *a, *b;
	char line[256], want[512];

	room_open(100, 0);
	a = named(0, "alice", "127.0.0.1");
	b = named(1, "bob", "127.0.0.1");
	/* 100 invalid bytes: accepted, and relayed as 100 U+FFFD. */
	memset(line, 0xFF, 100);
	strcpy(line + 100, "\n");
	input(a, line);
	strcpy(want, "<alice> ");
	for (int i = 0; i < 100; i++)
		strcat(want, "\xEF\xBF\xBD");
	expect_line(b, want);
	strcpy(line + 100, "x\n");
	input(a, line);
	expect_line(a, "! line too long (max 100 bytes)");
}
END_TEST

/* ---------------- commands ---------------- */

START_TEST(chat_who_lists_in_join_order)
{
	struct client *a = named(0, "alice", "127.0.0.1");

	input(a, "/who\n");
	expect_line(a, "* 1 online: alice@127.0.0.1");
	named(1, "bob", "2001:db8::1");
	named(2, "carol", "10.0.0.3");
	connect_from(3, "10.0.0.4", T0);
	input(a, "/who\n");
	expect_line(a, "* 3 online: alice@127.0.0.1, bob@2001:db8::1, carol@10.0.0.3");
	input(a, "/who ignored arguments\n");
	expect_line(a, "* 3 online: alice@127.0.0.1, bob@2001:db8::1, carol@10.0.0.3");
	expect_nothing(a);
	expect_nothing(&clients[1]);
	input(&clients[2], "/nick zed\n");
	expect_line(a, "* carol is now zed");
	input(a, "/who\n");
	expect_line(a, "* 3 online: alice@127.0.0.1, bob@2001:db8::1, zed@10.0.0.3");
	expect_nothing(a);
}
END_TEST

START_TEST(chat_who_caps_a_huge_list)
{
	char name[32], host[32];
	struct client *a;
	const char *line, *more;

	quiet = true;
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		snprintf(host, sizeof(host), "10.0.%d.%d", i / 256, i % 256);
		named(i, name, host);
	}
	quiet = false;
	a = &clients[0];
	input(a, "/who\n");
	ck_assert_uint_eq(a->n - a->seen, 1);
	line = a->lines[a->seen];
	ck_assert_uint_le(strlen(line), 16384);
	ck_assert(strncmp(line, "* 1000 online: user0@10.0.0.0, user1@10.0.0.1, ", 47) == 0);
	more = strstr(line, ", ... and ");
	ck_assert_ptr_nonnull(more);
	ck_assert(strcmp(more + strcspn(more, "0123456789"), "") != 0);
	ck_assert(strcmp(line + strlen(line) - 7, " more\r\n") == 0);
}
END_TEST

START_TEST(chat_nick_renames)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *c;

	input(a, "/nick carol\n");
	expect_line(a, "* you are now carol");
	expect_line(b, "* alice is now carol");
	input(a, "hi\n");
	expect_line(b, "<carol> hi");
	expect_nothing(a);
	/* The old name is free again, the new one is taken. */
	c = connect_from(2, "127.0.0.1", T0);
	skip_all(c);
	input(c, "carol\nalice\n");
	expect_line(c, "! name \"carol\" is taken");
	expect_line(c, "* you are alice@127.0.0.1; 3 online");
}
END_TEST

START_TEST(chat_nick_changes_case_of_own_name)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	input(a, "/nick Alice\n");
	expect_line(a, "* you are now Alice");
	expect_line(b, "* alice is now Alice");
	/* the same name again: nothing to tell the others */
	input(a, "/nick Alice\n");
	expect_line(a, "* you are now Alice");
	expect_nothing(b);
	input(b, "/msg ALICE hi\n");
	expect_line(a, "<bob> (private) hi");
}
END_TEST

START_TEST(chat_nick_errors)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	input(a, "/nick\n");
	expect_line(a, "! usage: /nick NAME");
	input(a, "/nick   \n");
	expect_line(a, "! usage: /nick NAME");
	input(a, "/nick bad name\n");
	expect_line(a, "! invalid name \"bad name\"; use 1-32 of A-Z a-z 0-9 _ . -");
	input(a, "/nick BOB\n");
	expect_line(a, "! name \"BOB\" is taken");
	expect_nothing(a);
	expect_nothing(b);
	input(a, "still\n");
	expect_line(b, "<alice> still");
}
END_TEST

START_TEST(chat_me_sends_action)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	input(a, "/me waves at everyone\n");
	expect_line(b, "* alice waves at everyone");
	expect_nothing(a);
	input(a, "/me\n");
	expect_line(a, "! usage: /me TEXT");
	input(a, "/me   \n");
	expect_line(a, "! usage: /me TEXT");
	expect_nothing(b);
}
END_TEST

START_TEST(chat_msg_goes_to_one_client)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *c = named(2, "carol", "127.0.0.1");

	input(a, "/msg bob hi there, bob\n");
	expect_line(b, "<alice> (private) hi there, bob");
	expect_nothing(a);
	expect_nothing(c);
	input(a, "/msg  Bob \t spaced  \n");
	expect_line(b, "<alice> (private) spaced");
	expect_nothing(c);
}
END_TEST

START_TEST(chat_msg_errors)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	connect_from(2, "127.0.0.1", T0);
	input(&clients[2], "dave-typing\n");
	skip_all(a);
	skip_all(b);
	input(a, "/msg dave hello\n");
	expect_line(a, "! no such user \"dave\"");
	input(a, "/msg bad!name hello\n");
	expect_line(a, "! no such user \"bad!name\"");
	input(a, "/msg bob\n");
	expect_line(a, "! usage: /msg NICK TEXT");
	input(a, "/msg bob   \n");
	expect_line(a, "! usage: /msg NICK TEXT");
	input(a, "/msg\n");
	expect_line(a, "! usage: /msg NICK TEXT");
	expect_nothing(a);
	expect_nothing(b);
}
END_TEST

START_TEST(chat_quit_with_reason)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *c = named(2, "carol", "127.0.0.1");

	input(a, "/quit gone fishing\nnot relayed\n");
	expect_line(b, "* alice left (gone fishing); 2 online");
	expect_line(c, "* alice left (gone fishing); 2 online");
	expect_close(a, "quit");
	expect_nothing(a);
	input(a, "ignored\n");
	leave(a);
	expect_nothing(a);
	expect_nothing(b);
	expect_nothing(c);
	ck_assert_uint_eq(chat_room_online(room), 2);
}
END_TEST

START_TEST(chat_quit_without_reason)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	input(a, "/quit\n");
	expect_line(b, "* alice left; 1 online");
	expect_close(a, "quit");
	input(b, "/who\n");
	expect_line(b, "* 1 online: bob@127.0.0.1");
	leave(a);
	expect_nothing(b);
	input(b, "/quit   \n");
	expect_close(b, "quit");
	ck_assert_uint_eq(chat_room_online(room), 0);
}
END_TEST

START_TEST(chat_help_lists_commands)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	static const char *const want[] = {
		"/who", "/nick", "/me", "/msg", "/quit", "/help", "//",
	};

	input(a, "/help\n");
	ck_assert_uint_ge(a->n - a->seen, ELEMENTSOF(want));
	expect_line(a, "* commands:");
	for (size_t i = a->seen; i < a->n; i++)
		ck_assert(strncmp(a->lines[i], "* ", 2) == 0);
	for (size_t k = 0; k < ELEMENTSOF(want); k++) {
		bool found = false;

		for (size_t i = a->seen; i < a->n; i++)
			found = found || strncmp(a->lines[i] + 2, want[k], strlen(want[k])) == 0;
		ck_assert_msg(found, "%s not in /help", want[k]);
	}
}
END_TEST

static const struct {
	const char *in;
	const char *reply;
} unknown_cases[] = {
	{ "/x\n", "! unknown command \"/x\"; try /help" },
	{ "/WHO\n", "! unknown command \"/WHO\"; try /help" },
	{ "/Quit bye\n", "! unknown command \"/Quit\"; try /help" },
	{ "/whoami\n", "! unknown command \"/whoami\"; try /help" },
	{ "/join 0123\n", "! unknown command \"/join\"; try /help" },
	{ "/\n", "! unknown command \"/\"; try /help" },
	{ "/\x1b[2Jx y\n", "! unknown command \"/[2Jx\"; try /help" },
	{ "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	  "! unknown command \"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"; try /help" },
};

START_TEST(chat_rejects_unknown_command)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");

	input(a, unknown_cases[_i].in);
	expect_line(a, unknown_cases[_i].reply);
	expect_nothing(a);
	expect_nothing(b);
	ck_assert_uint_eq(chat_room_online(room), 2);
}
END_TEST

/* ---------------- leaving ---------------- */

START_TEST(chat_leave_tells_others)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *c = named(2, "carol", "127.0.0.1");

	leave(a);
	expect_line(b, "* alice left; 2 online");
	expect_line(c, "* alice left; 2 online");
	leave(b);
	expect_line(c, "* bob left; 1 online");
	expect_nothing(c);
	ck_assert_uint_eq(chat_room_online(room), 1);
}
END_TEST

START_TEST(chat_leave_without_name_is_silent)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *w = connect_from(1, "127.0.0.1", T0);

	input(w, "bad name\n");
	leave(w);
	expect_nothing(a);
	ck_assert_uint_eq(chat_room_online(room), 1);
}
END_TEST

START_TEST(chat_online_counts)
{
	struct client *a, *b;

	ck_assert_uint_eq(chat_room_online(room), 0);
	a = named(0, "alice", "127.0.0.1");
	connect_from(1, "127.0.0.1", T0);
	ck_assert_uint_eq(chat_room_online(room), 1);
	b = named(2, "bob", "127.0.0.1");
	ck_assert_uint_eq(chat_room_online(room), 2);
	leave(a);
	ck_assert_uint_eq(chat_room_online(room), 1);
	input(b, "/quit\n");
	ck_assert_uint_eq(chat_room_online(room), 0);
	leave(b);
	leave(&clients[1]);
	ck_assert_uint_eq(chat_room_online(room), 0);
}
END_TEST

/* ---------------- limits and shutdown ---------------- */

START_TEST(chat_rate_limit_drops_excess_lines)
{
	struct client *a, *b;

	room_open(64, 2);
	a = named(0, "alice", "127.0.0.1"); /* the name took one token */
	b = named(1, "bob", "10.0.0.2");
	input_at(a, T0, "one\ntwo\n");
	expect_line(b, "<alice> one");
	expect_line(a, "! slow down");
	expect_nothing(b);
	/* half a second later: one more token */
	input_at(a, T0 + SEC / 2, "three\nfour\n");
	expect_line(b, "<alice> three");
	expect_line(a, "! slow down");
	/* a second later: a full bucket, no more */
	input_at(a, T0 + 5 * SEC, "five\nsix\nseven\n");
	expect_line(b, "<alice> five");
	expect_line(b, "<alice> six");
	expect_line(a, "! slow down");
	expect_nothing(a);
	expect_nothing(b);
	/* empty lines cost nothing */
	input_at(a, T0 + 10 * SEC, "\n\n\n\nok\n");
	expect_line(b, "<alice> ok");
	expect_nothing(a);
}
END_TEST

START_TEST(chat_rate_limit_is_per_source_address)
{
	struct client *a, *a2, *b, *c;

	room_open(64, 3);
	a = named(0, "alice", "192.0.2.1");
	a2 = named(1, "alice2", "192.0.2.1"); /* two tokens of 192.0.2.1 used */
	b = named(2, "bob", "192.0.2.2");
	c = named(3, "carol", "192.0.2.3");
	input(a, "x\n");
	input(a2, "y\n");
	expect_line(a2, "<alice> x");
	expect_line(a2, "! slow down");
	input(b, "1\n2\n");
	expect_line(c, "<alice> x");
	expect_line(c, "<bob> 1");
	expect_line(c, "<bob> 2");
	expect_nothing(c);
	expect_line(b, "<alice> x");
	expect_nothing(b);
}
END_TEST

START_TEST(chat_rate_limit_state_goes_with_last_client)
{
	struct client *a, *b;

	room_open(64, 1);
	b = named(1, "bob", "192.0.2.2");
	a = named(0, "alice", "192.0.2.1");
	input(a, "x\n");
	expect_line(a, "! slow down");
	leave(a);
	skip_all(b);
	/* A new connection from there, at the same instant, starts afresh:
	 * the entry of 192.0.2.1 was dropped with its last client. */
	a = named(0, "alice", "192.0.2.1");
	expect_nothing(a);
	leave(a);
	leave(b);
}
END_TEST

START_TEST(chat_shutdown_tells_everyone)
{
	struct client *a = named(0, "alice", "127.0.0.1");
	struct client *b = named(1, "bob", "127.0.0.1");
	struct client *w = connect_from(2, "127.0.0.1", T0);
	struct client *late;

	skip_all(w);
	chat_room_shutdown(room);
	expect_line(a, "* server shutting down");
	expect_line(b, "* server shutting down");
	expect_line(w, "* server shutting down");
	/* Nothing more: no relays, no left notices, no timeouts. */
	input(a, "hello\n");
	leave(b);
	ck_assert_uint_eq(chat_room_tick(room, T0 + 3600 * SEC), 0);
	chat_room_shutdown(room);
	late = connect_from(3, "127.0.0.1", T0);
	expect_line(late, "* server shutting down");
	expect_nothing(late);
	expect_nothing(a);
	expect_nothing(w);
}
END_TEST

START_TEST(chat_many_members_find_each_other)
{
	enum { N = 3000 };
	char name[32], line[64];
	struct client *a;

	quiet = true;
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "U%d", i);
		named(i, name, "127.0.0.1");
	}
	/* Drop every third one; the name table must still find the rest. */
	for (int i = 1; i < N; i += 3)
		leave(&clients[i]);
	quiet = false;
	a = &clients[0];
	for (int i = 1; i < N; i++) {
		snprintf(line, sizeof(line), "/msg u%d ping\n", i);
		input(a, line);
		if (i % 3 == 1) {
			snprintf(line, sizeof(line), "! no such user \"u%d\"", i);
			expect_line(a, line);
		} else {
			expect_line(&clients[i], "<U0> (private) ping");
			expect_nothing(a);
		}
	}
	ck_assert_uint_eq(chat_room_online(room), N - N / 3);
}
END_TEST

/* Threads share one room: each thread drives its own clients. */
struct worker {
	int first, count;
};

static void *
worker_run(void *p)
{
	struct worker *w = p;
	char line[64];

	for (int k = 0; k < 200; k++)
		for (int i = w->first; i < w->first + w->count; i++) {
			snprintf(line, sizeof(line), "m %d\n", k);
			chat_member_input(room, clients[i].m, (const uint8_t *)line, strlen(line),
					  T0);
		}
	return NULL;
}

START_TEST(chat_room_is_shared_by_threads)
{
	enum { THREADS = 4, PER = 5, N = THREADS * PER };
	struct worker w[THREADS];
	pthread_t tid[THREADS];
	char name[16];

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		named(i, name, "127.0.0.1");
	}
	for (int t = 0; t < THREADS; t++) {
		w[t] = (struct worker){ .first = t * PER, .count = PER };
		ck_assert_int_eq(pthread_create(&tid[t], NULL, worker_run, &w[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(tid[t], NULL);
	for (int r = 0; r < N; r++) {
		int next[N] = { 0 };
		struct client *c = &clients[r];

		ck_assert_uint_eq(c->n - c->seen, (size_t)(N - 1) * 200);
		for (size_t j = c->seen; j < c->n; j++) {
			int from, k;

			int got = sscanf(c->lines[j], "<t%d> m %d", &from, &k);

			if (got != 2 || from == r || from < 0 || from >= N || k != next[from]++)
				ck_abort_msg("client %d: out of order: %s", r, c->lines[j]);
		}
	}
}
END_TEST

/* alice says n lines of 1000 bytes. */
static void
say_kilobytes(struct client *alice, unsigned n, uint64_t now)
{
	char line[1001];

	memset(line, 'k', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\n';
	for (unsigned i = 0; i < n; i++)
		chat_member_input(room, alice->m, (const uint8_t *)line, sizeof(line), now);
}

START_TEST(chat_senders_wait_while_a_member_holds_back)
{
	struct client *alice, *bob, *slow;

	room_open_with(2048, 0, &counting_transport);
	alice = named(0, "alice", "127.0.0.1");
	bob = named(1, "bob", "127.0.0.1");
	slow = named(2, "slow", "127.0.0.1");
	quiet = true;
	for (int i = 0; i < 3; i++)
		clients[i].delivered = clients[i].queued;
	ck_assert(!chat_room_senders_wait(room, T0));

	/* Under CHAT_HOLD_MIN unsent nobody waits. */
	say_kilobytes(alice, 30, T0);
	ck_assert(!chat_room_senders_wait(room, T0));
	/* Over it, and the 1 s clock starts: both bob and slow hold. */
	say_kilobytes(alice, 10, T0);
	ck_assert_uint_gt(bob->queued - bob->delivered, CHAT_HOLD_MIN);
	ck_assert(chat_room_senders_wait(room, T0));
	ck_assert(chat_room_senders_wait(room, T0 + SEC / 2));
	/* bob keeps reading, slow does not: bob holds the senders... */
	bob->delivered += 1000;
	ck_assert(chat_room_senders_wait(room, T0 + SEC * 9 / 10));
	bob->delivered += 1000;
	ck_assert(chat_room_senders_wait(room, T0 + SEC * 3 / 2));
	/* ...until he caught up; slow, silent for over 1 s, holds nobody. */
	bob->delivered = bob->queued - 1000;
	ck_assert(!chat_room_senders_wait(room, T0 + SEC * 8 / 5));
	ck_assert(!chat_room_senders_wait(room, T0 + 5 * SEC));

	/* A member that stops reading while behind holds for 1 s, no more. */
	say_kilobytes(alice, 40, T0 + 6 * SEC);
	ck_assert(chat_room_senders_wait(room, T0 + 6 * SEC));
	ck_assert(chat_room_senders_wait(room, T0 + 6 * SEC + SEC * 9 / 10));
	ck_assert(!chat_room_senders_wait(room, T0 + 7 * SEC + SEC / 10));

	/* One that leaves holds nobody, whatever it left unread. */
	bob->delivered = bob->queued - 1000;
	say_kilobytes(alice, 40, T0 + 8 * SEC);
	ck_assert(chat_room_senders_wait(room, T0 + 8 * SEC));
	bob->delivered = bob->queued;
	leave(slow);
	ck_assert(!chat_room_senders_wait(room, T0 + 8 * SEC));
	(void)alice;
}
END_TEST

/* A transport that cannot tell what was sent never makes anyone wait. */
START_TEST(chat_senders_never_wait_without_counts)
{
	struct client *alice;

	room_open(2048, 0);
	alice = named(0, "alice", "127.0.0.1");
	named(1, "bob", "127.0.0.1");
	quiet = true;
	say_kilobytes(alice, 100, T0);
	ck_assert(!chat_room_senders_wait(room, T0));
}
END_TEST

START_TEST(chat_room_new_rejects_bad_settings)
{
	struct chat_settings s = { .listener = "x", .max_clients = 1, .max_line = 0 };
	struct chat_room *r = NULL;
	static const struct chat_transport half = { .send = fake_send };
	static const struct chat_transport no_delivered = { .send = fake_send,
							    .close = fake_close,
							    .unsent = fake_unsent };

	ck_assert_int_eq(chat_room_new(&r, &s, &transport), -EINVAL);
	s.max_line = 64;
	ck_assert_int_eq(chat_room_new(&r, &s, &half), -EINVAL);
	ck_assert_int_eq(chat_room_new(&r, &s, &no_delivered), -EINVAL);
	ck_assert_ptr_null(r);
	ck_assert_ptr_null(chat_room_free(NULL));
}
END_TEST

static Suite *
chat_suite(void)
{
	Suite *s = suite_create("chat");
	TCase *tc;

	tc = tcase_create("naming");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_welcomes_with_room_name_and_count);
	tcase_add_test(tc, chat_accepts_bare_name);
	tcase_add_loop_test(tc, chat_accepts_bare_and_classic_names, 0,
			    (int)ELEMENTSOF(name_forms));
	tcase_add_loop_test(tc, chat_rejects_invalid_name, 0, (int)ELEMENTSOF(bad_names));
	tcase_add_test(tc, chat_rejects_taken_name);
	tcase_add_test(tc, chat_name_retry_succeeds);
	tcase_add_test(tc, chat_join_notice_goes_to_named_clients_only);
	tcase_add_test(tc, chat_name_timeout_closes_client);
	tcase_add_test(tc, chat_named_client_is_not_timed_out);
	tcase_add_test(tc, chat_quit_before_name_closes_quietly);
	tcase_add_test(tc, chat_help_before_name);
	suite_add_tcase(s, tc);

	tc = tcase_create("relay");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_relays_to_others_not_sender);
	tcase_add_test(tc, chat_relays_text_as_sent);
	tcase_add_test(tc, chat_ignores_empty_lines);
	tcase_add_test(tc, chat_double_slash_sends_message);
	tcase_add_test(tc, chat_relays_one_input_as_one_send_in_order);
	tcase_add_test(tc, chat_keeps_each_senders_order);
	tcase_add_loop_test(tc, chat_sanitizes_relayed_text, 0, (int)ELEMENTSOF(sanitize_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("framing");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, chat_frames_split_reads_at_every_boundary, 0,
			    (int)sizeof("alice\r\nhello\nworld\r\n/me waves\n"));
	tcase_add_test(tc, chat_frames_byte_by_byte);
	tcase_add_test(tc, chat_line_too_long_is_refused_then_client_recovers);
	tcase_add_test(tc, chat_line_too_long_before_name);
	tcase_add_test(tc, chat_max_line_counts_input_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("commands");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_who_lists_in_join_order);
	tcase_add_test(tc, chat_who_caps_a_huge_list);
	tcase_add_test(tc, chat_nick_renames);
	tcase_add_test(tc, chat_nick_changes_case_of_own_name);
	tcase_add_test(tc, chat_nick_errors);
	tcase_add_test(tc, chat_me_sends_action);
	tcase_add_test(tc, chat_msg_goes_to_one_client);
	tcase_add_test(tc, chat_msg_errors);
	tcase_add_test(tc, chat_quit_with_reason);
	tcase_add_test(tc, chat_quit_without_reason);
	tcase_add_test(tc, chat_help_lists_commands);
	tcase_add_loop_test(tc, chat_rejects_unknown_command, 0, (int)ELEMENTSOF(unknown_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("leaving");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_leave_tells_others);
	tcase_add_test(tc, chat_leave_without_name_is_silent);
	tcase_add_test(tc, chat_online_counts);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_rate_limit_drops_excess_lines);
	tcase_add_test(tc, chat_rate_limit_is_per_source_address);
	tcase_add_test(tc, chat_rate_limit_state_goes_with_last_client);
	tcase_add_test(tc, chat_shutdown_tells_everyone);
	tcase_add_test(tc, chat_room_new_rejects_bad_settings);
	suite_add_tcase(s, tc);

	tc = tcase_create("backpressure");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_senders_wait_while_a_member_holds_back);
	tcase_add_test(tc, chat_senders_never_wait_without_counts);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, chat_many_members_find_each_other);
	tcase_add_test(tc, chat_room_is_shared_by_threads);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(chat_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
