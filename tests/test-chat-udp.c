#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "chat.h"
#include "dgram.h"
#include "util.h"

#define SEC UINT64_C(1000000)
#define T0 (1000 * SEC)
#define PEERS_MAX 64

/* A fake network: every peer records the datagrams the room sent to it. */
struct peer {
	union sockaddr_any sa;
	char **lines;
	struct dgram_local *froms; /* the local end each line left from; fd -1: none given */
	size_t n, cap, seen;
	int last_family; /* of the address the last reply went to */
	struct dgram_local local; /* where it sends to; fd 0: not said */
};

static struct chat_udp *room;
static size_t room_size;
static struct peer peers[PEERS_MAX];
static int ctx_marker;
static bool loose; /* replies to addresses the test does not track are dropped */

static struct peer *
find_peer(const union sockaddr_any *to)
{
	for (size_t i = 0; i < PEERS_MAX; i++)
		if (peers[i].sa.sa.sa_family && sockaddr_equal(&peers[i].sa, to))
			return &peers[i];
	return NULL;
}

static void
fake_send_to(void *ctx, const union sockaddr_any *to, const struct dgram_local *from,
	     const char *line, size_t len)
{
	struct peer *p = find_peer(to);

	if (ctx != &ctx_marker)
		ck_abort_msg("send_to got the wrong ctx");
	if (len < 2 || memcmp(line + len - 2, "\r\n", 2) != 0 || memchr(line, '\n', len - 1) ||
	    memchr(line, '\r', len - 2))
		ck_abort_msg("not one CRLF-terminated line: \"%.*s\"", (int)len, line);
	if (!p && loose)
		return;
	if (!p)
		ck_abort_msg("reply to an address that never sent anything");
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->lines = realloc(p->lines, p->cap * sizeof(char *));
		p->froms = realloc(p->froms, p->cap * sizeof(*p->froms));
		if (!p->lines || !p->froms)
			ck_abort_msg("out of memory");
	}
	p->froms[p->n] = from ? *from : (struct dgram_local){ .fd = -1 };
	p->lines[p->n] = strndup(line, len);
	if (!p->lines[p->n])
		ck_abort_msg("out of memory");
	p->n++;
	p->last_family = to->sa.sa_family;
}

static const struct chat_udp_transport transport = { .send_to = fake_send_to };

static void
room_close(void)
{
	if (!room)
		return;
	chat_udp_done(room);
	munmap(room, room_size);
	room = NULL;
}

static void
room_open(unsigned max_clients, unsigned max_line, unsigned rate_limit, unsigned idle_timeout)
{
	struct chat_settings s = {
		.listener = "lobby",
		.max_clients = max_clients,
		.max_line = max_line,
		.rate_limit = rate_limit,
		.idle_timeout = idle_timeout,
	};
	void *p;

	room_close();
	room_size = chat_udp_size(&s);
	ck_assert_uint_gt(room_size, 0);
	/* Where pre-forked workers put it. */
	p = mmap(NULL, room_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	room = p;
	ck_assert_int_eq(chat_udp_init(room, &s), 0);
}

static void
setup(void)
{
	loose = false;
	memset(peers, 0, sizeof(peers));
	room_open(8, 64, 0, 0);
}

static void
teardown(void)
{
	room_close();
	for (size_t i = 0; i < PEERS_MAX; i++) {
		for (size_t j = 0; j < peers[i].n; j++)
			free(peers[i].lines[j]);
		free(peers[i].lines);
		free(peers[i].froms);
	}
}

static struct peer *
peer_at(int id, const char *addr, uint16_t port)
{
	struct peer *p = &peers[id];

	memset(&p->sa, 0, sizeof(p->sa));
	if (inet_pton(AF_INET, addr, &p->sa.in.sin_addr) == 1) {
		p->sa.in.sin_family = AF_INET;
		p->sa.in.sin_port = htons(port);
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, addr, &p->sa.in6.sin6_addr), 1);
		p->sa.in6.sin6_family = AF_INET6;
		p->sa.in6.sin6_port = htons(port);
	}
	return p;
}

static void
dgram_raw(struct peer *p, uint64_t now, const char *s, size_t n)
{
	chat_udp_datagram(room, &transport, &ctx_marker, &p->sa, p->local.fd ? &p->local : NULL,
			  (const uint8_t *)s, n, now);
}

static void
dgram_at(struct peer *p, uint64_t now, const char *s)
{
	dgram_raw(p, now, s, strlen(s));
}

static void
dgram(struct peer *p, const char *s)
{
	dgram_at(p, T0, s);
}

static void
expect_line(struct peer *p, const char *line)
{
	char want[4096];

	snprintf(want, sizeof(want), "%s\r\n", line);
	ck_assert_msg(p->seen < p->n, "peer %td: expected \"%s\", got nothing", p - peers, line);
	ck_assert_msg(strcmp(p->lines[p->seen], want) == 0,
		      "peer %td: expected \"%s\", got \"%s\"", p - peers, line,
		      p->lines[p->seen]);
	p->seen++;
}

static void
expect_nothing(struct peer *p)
{
	ck_assert_msg(p->seen == p->n, "peer %td: unexpected \"%s\"", p - peers,
		      p->lines[p->seen]);
}

static void
skip_all(struct peer *p)
{
	p->seen = p->n;
}

static void
skip_everyone(void)
{
	for (size_t i = 0; i < PEERS_MAX; i++)
		skip_all(&peers[i]);
}

/* Send a name and take the token out of the reply. */
static void
ask_token_at(struct peer *p, uint64_t now, const char *name_line, const char *name,
	     char token[17])
{
	char got_name[64];
	int k;

	dgram_at(p, now, name_line);
	ck_assert_uint_eq(p->n, p->seen + 1);
	/* The exact line is checked below, once the token is known. */
	k = sscanf(p->lines[p->seen], "* to join as %63[^,], send: /join %16[0-9a-f]", got_name,
		   token);
	ck_assert_msg(k == 2, "no token in \"%s\"", p->lines[p->seen]);
	ck_assert_str_eq(got_name, name);
	ck_assert_uint_eq(strlen(token), 16);
	snprintf(got_name, sizeof(got_name), "* to join as %s, send: /join %s", name, token);
	expect_line(p, got_name);
}

static void
ask_token(struct peer *p, const char *name, char token[17])
{
	char line[64];

	snprintf(line, sizeof(line), "%s\n", name);
	ask_token_at(p, T0, line, name, token);
}

static void
send_join(struct peer *p, uint64_t now, const char *token)
{
	char line[64];

	snprintf(line, sizeof(line), "/join %s\r\n", token);
	dgram_at(p, now, line);
}

/* The whole handshake; everything said so far is read. */
static struct peer *
joined(int id, const char *name, const char *addr, uint16_t port)
{
	struct peer *p = peer_at(id, addr, port);
	char token[17];

	ask_token(p, name, token);
	send_join(p, T0, token);
	ck_assert_uint_eq(p->n, p->seen + 1);
	ck_assert(strncmp(p->lines[p->seen], "* you are ", 10) == 0);
	skip_everyone();
	return p;
}

/* ---------------- handshake ---------------- */

START_TEST(chat_udp_join_handshake)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001), *b = peer_at(1, "127.0.0.2", 40002);
	char token[17];

	ask_token(a, "alice", token);
	expect_nothing(a);
	ck_assert_uint_eq(chat_udp_online(room), 0);
	send_join(a, T0, token);
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
	expect_nothing(a);
	ck_assert_uint_eq(chat_udp_online(room), 1);

	ask_token(b, "bob", token);
	expect_nothing(a);
	send_join(b, T0, token);
	expect_line(b, "* you are bob@127.0.0.2; 2 online");
	expect_line(a, "* bob@127.0.0.2 joined; 2 online");
	expect_nothing(a);
	expect_nothing(b);
}
END_TEST

START_TEST(chat_udp_accepts_classic_name_and_uppercase_token)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001);
	char token[17], upper[17];

	ask_token_at(a, T0, "  NAME: alice \r\n", "alice", token);
	dgram(a, "/join   ");
	expect_line(a, "! wrong token; send your name again");
	ask_token_at(a, T0, "name:alice", "alice", token);
	for (int i = 0; i < 17; i++)
		upper[i] = (char)toupper((unsigned char)token[i]);
	send_join(a, T0, upper);
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
}
END_TEST

START_TEST(chat_udp_tokens_are_fresh)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001), *b = peer_at(1, "127.0.0.1", 40002);
	char t1[17], t2[17], t3[17];

	ask_token(a, "alice", t1);
	ask_token(b, "alice", t2);
	ck_assert_str_ne(t1, t2);
	/* A wrong token voids the address's token; the next name gets a
	 * new one, and only that one counts. */
	send_join(a, T0, t2);
	expect_line(a, "! wrong token; send your name again");
	ask_token(a, "alice", t3);
	ck_assert_str_ne(t1, t3);
	ck_assert_str_ne(t2, t3);
	send_join(a, T0, t1);
	expect_line(a, "! wrong token; send your name again");
	ask_token(a, "alice", t1);
	send_join(a, T0, t1);
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
}
END_TEST

START_TEST(chat_udp_new_name_replaces_the_pending_one)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001), *b = joined(1, "bob", "127.0.0.2", 40002);
	char t1[17], t2[17], t3[17];

	/* The same name again (its reply lost, or the user repeating it):
	 * the same token, and the 60 s start over. */
	ask_token_at(a, T0, "carol", "carol", t1);
	ask_token_at(a, T0 + 50 * SEC, "NAME: carol", "carol", t2);
	ck_assert_str_eq(t1, t2);
	/* Another name replaces carol and keeps the token. */
	ask_token_at(a, T0 + 50 * SEC, "Caroline", "Caroline", t3);
	ck_assert_str_eq(t1, t3);
	expect_nothing(b);
	send_join(a, T0 + 100 * SEC, t1);
	expect_line(a, "* you are Caroline@127.0.0.1; 2 online");
	expect_line(b, "* Caroline@127.0.0.1 joined; 2 online");
	expect_nothing(a);
	expect_nothing(b);
}
END_TEST

/* What a pending peer that holds a token may send before its /join:
 * exactly one reply each (NULL: the join instruction again, same token),
 * nothing to anybody else, and the token still works afterwards. */
static const struct {
	const char *dgram;
	const char *reply;
} pending_cases[] = {
	{ "/who", NULL },
	{ "hi there", NULL },
	{ "/quit", NULL },
	{ "/help", NULL },
	{ "/msg alice hi", NULL },
	{ "/nick dave", NULL },
	{ "/me waves", NULL },
	{ "//join", NULL },
	{ "NAME:", NULL },
	{ "", NULL },
	{ "  ", NULL },
	{ "evil\x1b[2J", NULL },
	{ "abcdefghijklmnopqrstuvwxyz0123456", NULL }, /* 33 characters */
	{ "carol", NULL },
	{ "NAME: carol", NULL },
	{ " carol\r\n", NULL },
	/* A taken name leaves carol pending, with the same token. */
	{ "ALICE", "! name \"ALICE\" is taken" },
	{ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	  "! line too long (max 64 bytes)" },
};

START_TEST(chat_udp_pending_peer_keeps_its_token)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *c = peer_at(1, "127.0.0.9", 40009);
	char token[17], want[128];

	ask_token(c, "carol", token);
	snprintf(want, sizeof(want), "* to join as carol, send: /join %s", token);
	dgram(c, pending_cases[_i].dgram);
	expect_line(c, pending_cases[_i].reply ? pending_cases[_i].reply : want);
	expect_nothing(c);
	expect_nothing(a);
	ck_assert_uint_eq(chat_udp_online(room), 1);
	/* Nothing about carol for alice until the join: alice's /who is
	 * the next and only line she gets. */
	dgram(a, "/who");
	expect_line(a, "* 1 online: alice@127.0.0.1");
	expect_nothing(a);

	send_join(c, T0, token);
	expect_line(c, "* you are carol@127.0.0.9; 2 online");
	expect_line(a, "* carol@127.0.0.9 joined; 2 online");
	expect_nothing(c);
	expect_nothing(a);
}
END_TEST

START_TEST(chat_udp_pending_token_lives_60_s_from_the_name)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001);
	char token[17], want[128];

	ask_token(a, "carol", token);
	snprintf(want, sizeof(want), "* to join as carol, send: /join %s", token);
	/* Other datagrams do not keep the entry alive. */
	dgram_at(a, T0 + 50 * SEC, "/who");
	expect_line(a, want);
	send_join(a, T0 + 60 * SEC, token);
	expect_line(a, "! wrong token; send your name again");
	expect_nothing(a);
}
END_TEST

static const struct {
	const char *dgram;
	const char *reply;
} stranger_cases[] = {
	{ "al ice", "! invalid name \"al ice\"; use 1-32 of A-Z a-z 0-9 _ . -" },
	/* Blank datagrams from strangers get nothing (no reflection). */
	{ "", NULL },
	{ "\r\n", NULL },
	{ "  ", NULL },
	{ "NAME:", "! invalid name \"\"; use 1-32 of A-Z a-z 0-9 _ . -" },
	{ "hello world", "! invalid name \"hello world\"; use 1-32 of A-Z a-z 0-9 _ . -" },
	{ "/who", "! invalid name \"/who\"; use 1-32 of A-Z a-z 0-9 _ . -" },
	{ "/quit", "! invalid name \"/quit\"; use 1-32 of A-Z a-z 0-9 _ . -" },
	{ "evil\x1b[2J", "! invalid name \"evil[2J\"; use 1-32 of A-Z a-z 0-9 _ . -" },
	{ "/join", "! wrong token; send your name again" },
	{ "/join 0123456789abcdef", "! wrong token; send your name again" },
	{ "ALICE", "! name \"ALICE\" is taken" },
};

START_TEST(chat_udp_stranger_errors)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *s = peer_at(1, "127.0.0.9", 40009);

	dgram(s, stranger_cases[_i].dgram);
	if (stranger_cases[_i].reply)
		expect_line(s, stranger_cases[_i].reply);
	expect_nothing(s);
	expect_nothing(a);
	ck_assert_uint_eq(chat_udp_online(room), 1);
}
END_TEST

START_TEST(chat_udp_wrong_token_voids_the_right_one)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001);
	char token[17];

	ask_token(a, "alice", token);
	send_join(a, T0, "0000000000000000");
	expect_line(a, "! wrong token; send your name again");
	send_join(a, T0, token);
	expect_line(a, "! wrong token; send your name again");
	ask_token(a, "alice", token);
	send_join(a, T0, token);
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
}
END_TEST

START_TEST(chat_udp_token_is_bound_to_address_and_port)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001);
	struct peer *other_port = peer_at(1, "127.0.0.1", 40002);
	struct peer *other_addr = peer_at(2, "127.0.0.2", 40001);
	struct peer *v6 = peer_at(3, "::1", 40001);
	char token[17];

	ask_token(a, "alice", token);
	send_join(other_port, T0, token);
	expect_line(other_port, "! wrong token; send your name again");
	send_join(other_addr, T0, token);
	expect_line(other_addr, "! wrong token; send your name again");
	send_join(v6, T0, token);
	expect_line(v6, "! wrong token; send your name again");
	ck_assert_uint_eq(chat_udp_online(room), 0);
	expect_nothing(a);
	/* ... and those tries did not spoil it for its owner. */
	send_join(a, T0, token);
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
}
END_TEST

START_TEST(chat_udp_one_reply_per_datagram_before_joining)
{
	static const char *const seq[] = {
		"bad name", "alice", "/who", "hello there", "/join nope", "", "/quit", "/msg bob x",
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	};
	struct peer *b = joined(1, "bob", "127.0.0.2", 40002);
	struct peer *s = peer_at(0, "127.0.0.1", 40001);

	for (size_t i = 0; i < ELEMENTSOF(seq); i++) {
		dgram(s, seq[i]);
		ck_assert_msg(s->n == i + 1, "after \"%s\": %zu replies", seq[i], s->n);
		/* Joined peers talking: nothing for the stranger. */
		dgram(b, "/me talks");
		dgram(b, "chatter");
		ck_assert_uint_eq(s->n, i + 1);
	}
	ck_assert(strncmp(s->lines[1], "* to join as alice, send: /join ", 32) == 0);
	ck_assert_str_eq(s->lines[8], "! line too long (max 64 bytes)\r\n");
	expect_nothing(b);
}
END_TEST

START_TEST(chat_udp_name_taken_at_join_time)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001), *b = peer_at(1, "127.0.0.2", 40002);
	char ta[17], tb[17];

	ask_token(a, "alice", ta);
	ask_token(b, "Alice", tb);
	send_join(a, T0, ta);
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
	send_join(b, T0, tb);
	expect_line(b, "! name \"Alice\" is taken");
	expect_nothing(a);
	ck_assert_uint_eq(chat_udp_online(room), 1);
}
END_TEST

START_TEST(chat_udp_pending_join_expires)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001), *b = peer_at(1, "127.0.0.2", 40002);
	char ta[17], tb[17];

	ask_token(a, "alice", ta);
	ask_token(b, "bob", tb);
	send_join(a, T0 + 59 * SEC, ta);
	expect_line(a, "* you are alice@127.0.0.1; 1 online");
	send_join(b, T0 + 60 * SEC, tb);
	expect_line(b, "! wrong token; send your name again");
	expect_nothing(a);
}
END_TEST

START_TEST(chat_udp_pending_table_evicts_oldest)
{
	char tokens[17][17];

	/* max_clients 1: room for max(16, 1) pending joins */
	room_open(1, 64, 0, 0);
	for (int i = 0; i < 17; i++) {
		char name[16];

		snprintf(name, sizeof(name), "p%d", i);
		ask_token(peer_at(i, "127.0.0.1", (uint16_t)(41000 + i)), name, tokens[i]);
	}
	send_join(&peers[0], T0, tokens[0]);
	expect_line(&peers[0], "! wrong token; send your name again");
	send_join(&peers[16], T0, tokens[16]);
	expect_line(&peers[16], "* you are p16@127.0.0.1; 1 online");
}
END_TEST

START_TEST(chat_udp_tick_drops_expired_pending)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001);
	char token[17];

	ask_token(a, "alice", token);
	ck_assert_uint_eq(chat_udp_tick(room, &transport, &ctx_marker, T0 + SEC), T0 + 60 * SEC);
	ck_assert_uint_eq(chat_udp_tick(room, &transport, &ctx_marker, T0 + 60 * SEC), 0);
	send_join(a, T0 + 61 * SEC, token);
	expect_line(a, "! wrong token; send your name again");
	expect_nothing(a);
}
END_TEST

/* ---------------- relay and commands ---------------- */

START_TEST(chat_udp_relays_to_joined_only)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *b = joined(1, "bob", "127.0.0.2", 40002);
	struct peer *c = joined(2, "carol", "::1", 40003);
	struct peer *s = peer_at(3, "127.0.0.4", 40004);
	char token[17];

	ask_token(s, "dave", token);
	dgram(a, "hello, world\r\n");
	expect_line(b, "<alice> hello, world");
	expect_line(c, "<alice> hello, world");
	expect_nothing(a);
	expect_nothing(s);
	ck_assert_uint_eq(chat_udp_online(room), 3);
}
END_TEST

static const struct {
	const char *dgram;
	size_t len;
	const char *relayed; /* NULL: nothing */
} text_cases[] = {
	{ "hi", 0, "<alice> hi" },
	{ "hi\n", 0, "<alice> hi" },
	{ "hi\r\n", 0, "<alice> hi" },
	{ "hi\r", 0, "<alice> hi" },
	{ "hi\n\n", 0, "<alice> hi" },
	{ "a\nb", 0, "<alice> ab" },
	{ "  spaced  ", 0, "<alice>   spaced  " },
	{ "\x1b[31mred", 0, "<alice> [31mred" },
	{ "tab\tkept\x7f", 0, "<alice> tab\tkept" },
	{ "nul\0x", 5, "<alice> nulx" },
	{ "c1\xC2\x9B" "x", 0, "<alice> c1x" },
	{ "bad\xFF", 0, "<alice> bad\xEF\xBF\xBD" },
	{ "//who", 0, "<alice> /who" },
	{ "/me waves", 0, "* alice waves" },
	{ "", 0, NULL },
	{ "\r\n", 0, NULL },
	{ " \t ", 0, NULL },
	{ "\x1b", 0, NULL },
};

START_TEST(chat_udp_relays_sanitized_lines)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *b = joined(1, "bob", "127.0.0.2", 40002);
	const char *d = text_cases[_i].dgram;

	dgram_raw(a, T0, d, text_cases[_i].len ? text_cases[_i].len : strlen(d));
	if (text_cases[_i].relayed)
		expect_line(b, text_cases[_i].relayed);
	expect_nothing(b);
	expect_nothing(a);
}
END_TEST

START_TEST(chat_udp_commands)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *b = joined(1, "bob", "2001:db8::2", 40002);
	struct peer *c = joined(2, "carol", "127.0.0.3", 40003);

	dgram(a, "/who");
	expect_line(a, "* 3 online: alice@127.0.0.1, bob@2001:db8::2, carol@127.0.0.3");
	dgram(a, "/msg carol psst\n");
	expect_line(c, "<alice> (private) psst");
	expect_nothing(b);
	dgram(a, "/msg dave psst");
	expect_line(a, "! no such user \"dave\"");
	dgram(a, "/msg carol");
	expect_line(a, "! usage: /msg NICK TEXT");
	dgram(a, "/me");
	expect_line(a, "! usage: /me TEXT");
	dgram(a, "/x");
	expect_line(a, "! unknown command \"/x\"; try /help");
	dgram(a, "/nick BOB");
	expect_line(a, "! name \"BOB\" is taken");
	dgram(a, "/nick al ice");
	expect_line(a, "! invalid name \"al ice\"; use 1-32 of A-Z a-z 0-9 _ . -");
	dgram(a, "/nick zoe");
	expect_line(a, "* you are now zoe");
	expect_line(b, "* alice is now zoe");
	expect_line(c, "* alice is now zoe");
	dgram(b, "/msg ZOE hi");
	expect_line(a, "<bob> (private) hi");
	dgram(a, "/who");
	expect_line(a, "* 3 online: zoe@127.0.0.1, bob@2001:db8::2, carol@127.0.0.3");
	/* the old name is free */
	{
		struct peer *d = joined(3, "alice", "127.0.0.4", 40004);

		ck_assert_uint_eq(chat_udp_online(room), 4);
		expect_nothing(d);
	}
	dgram(a, "/help");
	expect_line(a, "* commands:");
	while (a->seen < a->n) {
		ck_assert(strncmp(a->lines[a->seen], "* ", 2) == 0);
		a->seen++;
	}
	expect_nothing(b);
	expect_nothing(c);
}
END_TEST

START_TEST(chat_udp_join_again_repeats_welcome)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *b = joined(1, "bob", "127.0.0.2", 40002);

	dgram(a, "/join 0123456789abcdef");
	expect_line(a, "* you are alice@127.0.0.1; 2 online");
	expect_nothing(a);
	expect_nothing(b);
}
END_TEST

START_TEST(chat_udp_quit_forgets_peer)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *b = joined(1, "bob", "127.0.0.2", 40002);
	struct peer *c = joined(2, "carol", "127.0.0.3", 40003);
	char token[17];

	dgram(a, "/quit gone fishing\n");
	expect_line(b, "* alice left (gone fishing); 2 online");
	expect_line(c, "* alice left (gone fishing); 2 online");
	expect_nothing(a);
	ck_assert_uint_eq(chat_udp_online(room), 2);
	dgram(b, "after");
	expect_line(c, "<bob> after");
	expect_nothing(a);
	/* a stranger again: its next datagram is a name */
	ask_token(a, "alice", token);
	dgram(b, "/quit");
	expect_line(c, "* bob left; 1 online");
	expect_nothing(a);
}
END_TEST

START_TEST(chat_udp_ipv4_mapped_peer_is_shown_as_ipv4)
{
	struct peer *m = peer_at(0, "::ffff:127.0.0.1", 40001);
	struct peer *v6 = joined(1, "six", "fe80::1", 40002);
	char token[17];

	ask_token(m, "mapped", token);
	send_join(m, T0, token);
	expect_line(m, "* you are mapped@127.0.0.1; 2 online");
	ck_assert_int_eq(m->last_family, AF_INET6);
	expect_line(v6, "* mapped@127.0.0.1 joined; 2 online");
	dgram(v6, "/who");
	expect_line(v6, "* 2 online: six@fe80::1, mapped@127.0.0.1");
}
END_TEST

/* ---------------- limits, idle, shutdown ---------------- */

START_TEST(chat_udp_idle_peers_are_forgotten)
{
	struct peer *a, *b, *c;

	room_open(8, 64, 0, 10);
	a = joined(0, "alice", "127.0.0.1", 40001);
	b = joined(1, "bob", "127.0.0.2", 40002);
	c = joined(2, "carol", "127.0.0.3", 40003);
	dgram_at(b, T0 + 5 * SEC, "still here");
	dgram_at(c, T0 + 7 * SEC, "me too");
	skip_everyone();
	ck_assert_uint_eq(chat_udp_tick(room, &transport, &ctx_marker, T0 + 10 * SEC - 1),
			  T0 + 10 * SEC);
	expect_nothing(b);
	ck_assert_uint_eq(chat_udp_tick(room, &transport, &ctx_marker, T0 + 10 * SEC),
			  T0 + 15 * SEC);
	expect_line(b, "* alice left; 2 online");
	expect_line(c, "* alice left; 2 online");
	expect_nothing(a);
	ck_assert_uint_eq(chat_udp_tick(room, &transport, &ctx_marker, T0 + 16 * SEC),
			  T0 + 17 * SEC);
	expect_line(c, "* bob left; 1 online");
	ck_assert_uint_eq(chat_udp_tick(room, &transport, &ctx_marker, T0 + 17 * SEC), 0);
	ck_assert_uint_eq(chat_udp_online(room), 0);
	expect_nothing(a);
	expect_nothing(b);
	expect_nothing(c);
}
END_TEST

START_TEST(chat_udp_idle_zero_never_forgets)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);

	ck_assert_uint_eq(chat_udp_tick(room, &transport, &ctx_marker, T0 + 86400 * SEC), 0);
	ck_assert_uint_eq(chat_udp_online(room), 1);
	expect_nothing(a);
}
END_TEST

START_TEST(chat_udp_full_room)
{
	struct peer *a, *b, *c;
	char tb[17], tc[17];

	room_open(2, 64, 0, 0);
	b = peer_at(1, "127.0.0.2", 40002);
	c = peer_at(2, "127.0.0.3", 40003);
	ask_token(b, "bob", tb);
	ask_token(c, "carol", tc);
	a = joined(0, "alice", "127.0.0.1", 40001);
	send_join(b, T0, tb);
	expect_line(b, "* you are bob@127.0.0.2; 2 online");
	/* full when joining */
	send_join(c, T0, tc);
	expect_line(c, "! server full");
	/* full when asking */
	dgram(c, "carol");
	expect_line(c, "! server full");
	expect_nothing(c);
	/* a place frees up */
	dgram(a, "/quit");
	ask_token(c, "carol", tc);
	send_join(c, T0, tc);
	expect_line(c, "* you are carol@127.0.0.3; 2 online");
}
END_TEST

START_TEST(chat_udp_rate_limit)
{
	struct peer *a, *b, *s;

	room_open(8, 64, 2, 0);
	a = joined(0, "alice", "127.0.0.1", 40001); /* two datagrams at T0 */
	b = joined(1, "bob", "127.0.0.2", 40002);
	dgram_at(a, T0, "too soon");
	expect_line(a, "! slow down");
	expect_nothing(b);
	dgram_at(a, T0 + 10 * SEC, "one");
	dgram_at(a, T0 + 10 * SEC, "two");
	dgram_at(a, T0 + 10 * SEC, "three");
	expect_line(b, "<alice> one");
	expect_line(b, "<alice> two");
	expect_nothing(b);
	expect_line(a, "! slow down");
	expect_nothing(a);
	/* strangers too: still one reply per datagram */
	s = peer_at(2, "127.0.0.3", 40003);
	dgram(s, "x y");
	dgram(s, "x y");
	dgram(s, "x y");
	ck_assert_uint_eq(s->n, 3);
	ck_assert_str_eq(s->lines[2], "! slow down\r\n");
}
END_TEST

START_TEST(chat_udp_line_too_long)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *b = joined(1, "bob", "127.0.0.2", 40002);
	char line[128];

	memset(line, 'x', 64);
	strcpy(line + 64, "\r\n");
	dgram(a, line);
	line[64] = '\0';
	{
		char want[160];

		snprintf(want, sizeof(want), "<alice> %s", line);
		expect_line(b, want);
	}
	strcpy(line + 64, "y\n");
	dgram(a, line);
	expect_line(a, "! line too long (max 64 bytes)");
	expect_nothing(b);
	ck_assert_uint_eq(chat_udp_online(room), 2);
}
END_TEST

START_TEST(chat_udp_shutdown_tells_joined_peers)
{
	struct peer *a = joined(0, "alice", "127.0.0.1", 40001);
	struct peer *b = joined(1, "bob", "127.0.0.2", 40002);
	struct peer *s = peer_at(2, "127.0.0.3", 40003);
	char token[17];

	ask_token(s, "carol", token);
	chat_udp_shutdown(room, &transport, &ctx_marker);
	expect_line(a, "* server shutting down");
	expect_line(b, "* server shutting down");
	expect_nothing(s);
	/* afterwards: silence */
	dgram(a, "hello");
	send_join(s, T0, token);
	chat_udp_shutdown(room, &transport, &ctx_marker);
	ck_assert_uint_eq(chat_udp_tick(room, &transport, &ctx_marker, T0 + 3600 * SEC), 0);
	expect_nothing(a);
	expect_nothing(b);
	expect_nothing(s);
}
END_TEST

START_TEST(chat_udp_rejects_bad_settings)
{
	struct chat_settings s = { .max_clients = 0, .max_line = 64 };
	union {
		char bytes[4096];
		long double align;
	} block;

	ck_assert_uint_eq(chat_udp_size(&s), 0);
	ck_assert_int_eq(chat_udp_init((struct chat_udp *)(void *)&block, &s), -EINVAL);
	s.max_clients = 1;
	s.max_line = 0;
	ck_assert_uint_eq(chat_udp_size(&s), 0);
	s.max_line = 64;
	ck_assert_uint_gt(chat_udp_size(&s), 0);
}
END_TEST

START_TEST(chat_udp_many_peers)
{
	enum { N = 2000 };
	char name[16], line[64];
	struct peer *a;

	room_open(N, 64, 0, 0);
	/* The fake network knows only a few addresses; drop the rest. */
	loose = true;
	for (int i = 0; i < N; i++) {
		struct peer *p = peer_at(1, "10.0.0.1", (uint16_t)(20000 + i));
		char token[17];

		snprintf(name, sizeof(name), "u%d", i);
		ask_token(p, name, token);
		send_join(p, T0, token);
		skip_everyone();
	}
	ck_assert_uint_eq(chat_udp_online(room), N);
	/* Every odd one quits; the indexes must cope with the holes. */
	for (int i = 1; i < N - 1; i += 2)
		dgram(peer_at(1, "10.0.0.1", (uint16_t)(20000 + i)), "/quit");
	ck_assert_uint_eq(chat_udp_online(room), N - (N - 1) / 2);
	a = peer_at(0, "10.0.0.1", (uint16_t)(20000 + N - 1));
	for (int i = 0; i < N; i++) {
		snprintf(line, sizeof(line), "/msg U%d hi", i);
		dgram(a, line);
		if (i % 2 && i != N - 1) {
			snprintf(line, sizeof(line), "! no such user \"U%d\"", i);
			expect_line(a, line);
		} else if (i == N - 1)
			expect_line(a, "<u1999> (private) hi");
		expect_nothing(a);
	}
	/* Rejoining fills the holes again. */
	for (int i = 1; i < N - 1; i += 2) {
		struct peer *p = peer_at(1, "10.0.0.1", (uint16_t)(20000 + i));
		char token[17];

		snprintf(name, sizeof(name), "again%d", i);
		ask_token(p, name, token);
		send_join(p, T0, token);
		skip_everyone();
	}
	ck_assert_uint_eq(chat_udp_online(room), N);
}
END_TEST

START_TEST(chat_udp_room_is_shared_between_processes)
{
	struct peer *a = peer_at(0, "127.0.0.1", 40001);
	struct peer *b = peer_at(1, "127.0.0.2", 40002);
	char token[17];
	pid_t pid;
	int status;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* A worker process serves alice's handshake. */
		ask_token(a, "alice", token);
		send_join(a, T0, token);
		_exit(chat_udp_online(room) == 1 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_uint_eq(chat_udp_online(room), 1);
	expect_nothing(a);
	dgram(b, "alice");
	expect_line(b, "! name \"alice\" is taken");
	ask_token(b, "bob", token);
	send_join(b, T0, token);
	expect_line(b, "* you are bob@127.0.0.2; 2 online");
	expect_line(a, "* bob@127.0.0.2 joined; 2 online");
}
END_TEST

/* ---- every datagram to a peer leaves from the address it sent to ---- */

static void
local_at(struct peer *p, int fd, const char *addr)
{
	p->local = (struct dgram_local){ .fd = fd };
	if (inet_pton(AF_INET, addr, &p->local.addr.in) == 1) {
		p->local.family = AF_INET;
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, addr, &p->local.addr.in6), 1);
		p->local.family = AF_INET6;
		p->local.ifindex = 1;
	}
}

/* Lines first.. of p left from p's current local end. */
static void
expect_from_own_local(struct peer *p, size_t first)
{
	const struct dgram_local *w = &p->local;

	ck_assert_msg(first < p->n, "peer %td: got nothing to check", p - peers);
	for (size_t i = first; i < p->n; i++) {
		const struct dgram_local *f = &p->froms[i];

		ck_assert_msg(f->fd == w->fd && f->family == w->family &&
				      f->ifindex == w->ifindex &&
				      memcmp(&f->addr, &w->addr, sizeof(w->addr)) == 0,
			      "peer %td: \"%.*s\" left from fd %d family %d, not from the socket "
			      "and address it sent to (fd %d family %d)",
			      p - peers, (int)strcspn(p->lines[i], "\r"), p->lines[i], f->fd,
			      f->family, w->fd, w->family);
	}
}

START_TEST(chat_udp_replies_and_relays_leave_from_each_peers_local_address)
{
	/* One wildcard socket (fd 5) reached at two addresses, and a second
	 * socket (fd 6) of the listener. */
	struct peer *a = peer_at(0, "127.0.0.9", 4000), *b = peer_at(1, "127.0.0.10", 4001),
		    *c = peer_at(2, "::1", 4002), *d = peer_at(3, "127.0.0.11", 4003);
	char token[17];
	size_t mark;

	local_at(a, 5, "127.0.0.2");
	local_at(b, 5, "127.0.0.3");
	local_at(c, 6, "::1");
	local_at(d, 5, "127.0.0.4");
	a = joined(0, "alice", "127.0.0.9", 4000);
	b = joined(1, "bob", "127.0.0.10", 4001);
	c = joined(2, "carol", "::1", 4002);
	/* Token replies, "you are", "joined" notices. */
	expect_from_own_local(a, 0);
	expect_from_own_local(b, 0);
	expect_from_own_local(c, 0);

	/* A relay, sent while handling alice's datagram, to each other peer. */
	mark = b->n;
	dgram(a, "hello");
	expect_line(b, "<alice> hello");
	expect_line(c, "<alice> hello");
	expect_from_own_local(b, mark);
	expect_from_own_local(c, c->seen - 1);

	/* A stranger's one reply, and an answer to a command. */
	ask_token(d, "dave", token);
	expect_from_own_local(d, 0);
	mark = b->n;
	dgram(b, "/who");
	expect_line(b, "* 3 online: alice@127.0.0.9, bob@127.0.0.10, carol@::1");
	expect_from_own_local(b, mark);

	/* Alice now sends to another of our addresses: what she gets
	 * afterwards leaves from that one. */
	local_at(a, 6, "127.0.0.5");
	dgram(a, "moved");
	skip_everyone();
	mark = a->n;
	dgram(c, "still there?");
	expect_line(a, "<carol> still there?");
	expect_from_own_local(a, mark);
	expect_from_own_local(b, b->seen);
	skip_everyone();

	/* Notices sent with no datagram being handled. */
	mark = a->n;
	chat_udp_shutdown(room, &transport, &ctx_marker);
	expect_line(a, "* server shutting down");
	expect_line(b, "* server shutting down");
	expect_line(c, "* server shutting down");
	expect_from_own_local(a, mark);
	expect_from_own_local(b, b->seen - 1);
	expect_from_own_local(c, c->seen - 1);
}
END_TEST

static Suite *
chat_udp_suite(void)
{
	Suite *s = suite_create("chat_udp");
	TCase *tc;

	tc = tcase_create("handshake");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_udp_join_handshake);
	tcase_add_test(tc, chat_udp_accepts_classic_name_and_uppercase_token);
	tcase_add_test(tc, chat_udp_tokens_are_fresh);
	tcase_add_test(tc, chat_udp_new_name_replaces_the_pending_one);
	tcase_add_loop_test(tc, chat_udp_pending_peer_keeps_its_token, 0,
			    (int)ELEMENTSOF(pending_cases));
	tcase_add_test(tc, chat_udp_pending_token_lives_60_s_from_the_name);
	tcase_add_loop_test(tc, chat_udp_stranger_errors, 0, (int)ELEMENTSOF(stranger_cases));
	tcase_add_test(tc, chat_udp_wrong_token_voids_the_right_one);
	tcase_add_test(tc, chat_udp_token_is_bound_to_address_and_port);
	tcase_add_test(tc, chat_udp_one_reply_per_datagram_before_joining);
	tcase_add_test(tc, chat_udp_name_taken_at_join_time);
	tcase_add_test(tc, chat_udp_pending_join_expires);
	tcase_add_test(tc, chat_udp_pending_table_evicts_oldest);
	tcase_add_test(tc, chat_udp_tick_drops_expired_pending);
	suite_add_tcase(s, tc);

	tc = tcase_create("relay");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_udp_relays_to_joined_only);
	tcase_add_loop_test(tc, chat_udp_relays_sanitized_lines, 0, (int)ELEMENTSOF(text_cases));
	tcase_add_test(tc, chat_udp_commands);
	tcase_add_test(tc, chat_udp_join_again_repeats_welcome);
	tcase_add_test(tc, chat_udp_quit_forgets_peer);
	tcase_add_test(tc, chat_udp_ipv4_mapped_peer_is_shown_as_ipv4);
	tcase_add_test(tc, chat_udp_replies_and_relays_leave_from_each_peers_local_address);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chat_udp_idle_peers_are_forgotten);
	tcase_add_test(tc, chat_udp_idle_zero_never_forgets);
	tcase_add_test(tc, chat_udp_full_room);
	tcase_add_test(tc, chat_udp_rate_limit);
	tcase_add_test(tc, chat_udp_line_too_long);
	tcase_add_test(tc, chat_udp_shutdown_tells_joined_peers);
	tcase_add_test(tc, chat_udp_rejects_bad_settings);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, chat_udp_many_peers);
	tcase_add_test(tc, chat_udp_room_is_shared_between_processes);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(chat_udp_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
