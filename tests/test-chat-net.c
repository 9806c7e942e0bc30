/* Chat service over the network (SPEC section 5), for every protocol x
 * model combination. Each TCase is one combination ("tcp-thread",
 * "udp-fork-w2"), and every message repeats it, so Check's output says
 * which one failed. netechod runs under the harness exactly as under
 * systemd: sockets through LISTEN_FDS, readiness through NOTIFY_SOCKET.
 *
 * The line formats are a contract: lines are compared byte for byte,
 * CRLF included. "Nothing else arrives" is never a sleep: the client
 * sends a marker (/who) afterwards, and the next line it gets must be the
 * answer to it. */

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <check.h>

#include "expect.h"
#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 60
#define IO_MS HARNESS_IO_TIMEOUT_MS
#define ROOM "lobby"
#define HOST "127.0.0.1"

/* Longest server line a test accepts, CRLF excluded. */
#define LINE_MAX_BYTES 8192
/* Per-client receive buffer. */
#define RBUF_SIZE 65536
/* read_line(): the peer closed (cleanly). */
#define GOT_EOF (-1000000)

/* The combination of the running TCase (harness_combo_tcase()'s fixture
 * sets it), and the daemon a test started. */
static const struct harness_combo *cur;
static struct hdaemon srv;
static struct hl_listener srv_listener;
static char srv_extra[256];
static bool srv_started;

/* ---- diagnostics ---- */

/* Bytes as a C-like literal for failure messages; four rotating buffers
 * so one message can show several. */
static const char *
esc(const void *p, size_t n)
{
	static char bufs[4][1024];
	static unsigned next;
	char *out = bufs[next++ % ELEMENTSOF(bufs)];
	const uint8_t *s = p;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (o + 8 >= sizeof(bufs[0])) {
			memcpy(out + o, "...", 4);
			return out;
		}
		if (s[i] == '\r')
			o += (size_t)sprintf(out + o, "\\r");
		else if (s[i] == '\n')
			o += (size_t)sprintf(out + o, "\\n");
		else if (s[i] == '\t')
			o += (size_t)sprintf(out + o, "\\t");
		else if (s[i] == '\\' || s[i] == '\'')
			o += (size_t)sprintf(out + o, "\\%c", s[i]);
		else if (s[i] < 0x20 || s[i] >= 0x7f)
			o += (size_t)sprintf(out + o, "\\x%02x", s[i]);
		else
			out[o++] = (char)s[i];
	}
	out[o] = '\0';
	return out;
}

static const char *
escs(const char *s)
{
	return esc(s, strlen(s));
}

/* What a read returned (a line of r bytes, or an error), for a failure
 * message. */
static const char *
describe(ssize_t r, const char *line)
{
	static char buf[1200];

	if (r >= 0)
		snprintf(buf, sizeof(buf), "'%s\\r\\n'", esc(line, (size_t)r));
	else if (r == GOT_EOF)
		snprintf(buf, sizeof(buf), "EOF");
	else if (r == -ETIMEDOUT)
		snprintf(buf, sizeof(buf), "nothing within the deadline");
	else
		snprintf(buf, sizeof(buf), "error %s", strerror((int)-r));
	return buf;
}

/* ---- daemon ---- */

/* Start the chat listener of the current combination with more
 * settings; teardown stops it and checks for a clean exit. */
static void
start_chat_full(const char *address, const char *extra, const char *global_extra)
{
	int r;

	srv_listener = harness_combo_listener(cur, ROOM, "chat", extra, srv_extra, sizeof(srv_extra));
	srv_listener.address = address;
	srv = (struct hdaemon){ 0 };
	r = harness_start(&srv, &srv_listener, 1, global_extra);
	ck_assert_msg(r == 0, "[%s] netechod (chat on %s, '%s') did not start: %s", cur->tcase,
		      address ? address : HOST, srv_extra, strerror(-r));
	srv_started = true;
}

static void
start_chat(const char *extra, const char *global_extra)
{
	start_chat_full(NULL, extra, global_extra);
}

static void
start_chat_at(const char *address)
{
	start_chat_full(address, NULL, NULL);
}

static void
stop_clean(void)
{
	int r = harness_stop(&srv, SIGTERM);

	ck_assert_msg(r == 0, "[%s] netechod stopped with %d (%s), expected exit status 0",
		      cur->tcase, r, r < 0 ? strerror(-r) : "exit status");
}

static void
teardown(void)
{
	if (srv_started)
		stop_clean();
	srv_started = false;
}

static void
setup(const struct harness_combo *c)
{
	cur = c;
	srv_started = false;
}

/* ---- TCP clients: buffered CRLF line reader ---- */

struct tclient {
	int fd;
	char label[40];
	size_t head, tail; /* unread bytes are buf[head..tail) */
	char buf[RBUF_SIZE];
};

static struct tclient *
tc_free(struct tclient *c)
{
	if (c) {
		safe_close(c->fd);
		free(c);
	}
	return NULL;
}

static void
tc_freep(struct tclient **c)
{
	*c = tc_free(*c);
}

static struct tclient *
tc_wrap(int fd, const char *label)
{
	struct tclient *c = calloc(1, sizeof(*c));

	ck_assert_ptr_nonnull(c);
	c->fd = fd;
	snprintf(c->label, sizeof(c->label), "%s", label);
	return c;
}

static struct tclient *
tc_connect(const char *label)
{
	int fd = harness_tcp_connect(srv_listener.port);

	ck_assert_msg(fd >= 0, "[%s] %s: connect to %s:%u: %s", cur->tcase, label, HOST,
		      srv_listener.port, strerror(-fd));
	return tc_wrap(fd, label);
}

/* A complete line from the buffer into line (NUL-terminated, CRLF
 * stripped): 1, or 0 when none is complete yet. Every line the server
 * sends must end with CRLF. */
static int
tc_take_line(struct tclient *c, char *line, size_t max, size_t *ret_len)
{
	char *start = c->buf + c->head, *nl = memchr(start, '\n', c->tail - c->head);
	size_t n;

	if (!nl) {
		HARNESS_EXPECT(c->tail - c->head <= LINE_MAX_BYTES,
			      "[%s] %s: %zu bytes without a line end: '%s'", cur->tcase, c->label,
			      c->tail - c->head, esc(start, c->tail - c->head));
		return 0;
	}
	n = (size_t)(nl - start);
	HARNESS_EXPECT(n > 0 && start[n - 1] == '\r',
		      "[%s] %s: server line not ended by CRLF: '%s'", cur->tcase, c->label,
		      esc(start, n + 1));
	n--;
	HARNESS_EXPECT(n < max, "[%s] %s: line of %zu bytes: '%s'", cur->tcase, c->label, n,
		      esc(start, n));
	memcpy(line, start, n);
	line[n] = '\0';
	c->head += n + 2;
	if (c->head == c->tail)
		c->head = c->tail = 0;
	*ret_len = n;
	return 1;
}

/* One recv() of at most max bytes into the buffer without waiting:
 * bytes, 0 at EOF, -EAGAIN, or -errno. */
static ssize_t
tc_fill_upto(struct tclient *c, size_t max)
{
	ssize_t n;

	if (c->tail == sizeof(c->buf) && c->head > 0) {
		memmove(c->buf, c->buf + c->head, c->tail - c->head);
		c->tail -= c->head;
		c->head = 0;
	}
	HARNESS_EXPECT(c->tail < sizeof(c->buf), "[%s] %s: receive buffer full", cur->tcase,
		      c->label);
	do
		n = recv(c->fd, c->buf + c->tail, MIN(max, sizeof(c->buf) - c->tail), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	c->tail += (size_t)n;
	return n;
}

/* As much as fits. */
static ssize_t
tc_fill(struct tclient *c)
{
	return tc_fill_upto(c, SIZE_MAX);
}

/* The next line: its length, GOT_EOF, -ETIMEDOUT or -errno. */
static ssize_t
tc_read_line(struct tclient *c, char *line, size_t max, int timeout_ms)
{
	uint64_t deadline = now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC;
	size_t len;

	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		uint64_t now;
		ssize_t n;
		int r;

		if (tc_take_line(c, line, max, &len))
			return (ssize_t)len;
		now = now_usec();
		if (now >= deadline)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue;
		n = tc_fill(c);
		if (n == -EAGAIN)
			continue;
		if (n < 0)
			return n;
		if (n == 0) {
			ck_assert_msg(c->head == c->tail,
				      "[%s] %s: EOF after an unterminated line '%s'", cur->tcase,
				      c->label, esc(c->buf + c->head, c->tail - c->head));
			return GOT_EOF;
		}
	}
}

static void
tc_send_bytes(struct tclient *c, const void *p, size_t n)
{
	int r = harness_send_all(c->fd, p, n, IO_MS);

	HARNESS_EXPECT(r == 0, "[%s] %s: send '%s': %s", cur->tcase, c->label, esc(p, n),
		      strerror(-r));
}

static void
tc_send(struct tclient *c, const char *s)
{
	tc_send_bytes(c, s, strlen(s));
}

_printf_(2, 3) static void
tc_sendf(struct tclient *c, const char *fmt, ...)
{
	char buf[LINE_MAX_BYTES];
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ck_assert(k >= 0 && (size_t)k < sizeof(buf));
	tc_send_bytes(c, buf, (size_t)k);
}

/* The next line is exactly want (CRLF added). */
static void
tc_expect(struct tclient *c, const char *want)
{
	char got[LINE_MAX_BYTES];
	ssize_t n = tc_read_line(c, got, sizeof(got), IO_MS);

	ck_assert_msg(n >= 0 && (size_t)n == strlen(want) && memcmp(got, want, (size_t)n) == 0,
		      "[%s] %s: expected '%s\\r\\n', got %s", cur->tcase, c->label, escs(want),
		      describe(n, got));
}

_printf_(2, 3) static void
tc_expectf(struct tclient *c, const char *fmt, ...)
{
	char want[LINE_MAX_BYTES];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	tc_expect(c, want);
}

/* The next line starts with prefix; the line goes to line (may be NULL). */
static void
tc_expect_prefix(struct tclient *c, const char *prefix, char *line, size_t max)
{
	char got[LINE_MAX_BYTES];
	ssize_t n = tc_read_line(c, got, sizeof(got), IO_MS);

	ck_assert_msg(n >= 0 && strncmp(got, prefix, strlen(prefix)) == 0,
		      "[%s] %s: expected a line starting '%s', got %s", cur->tcase, c->label,
		      escs(prefix), describe(n, got));
	if (line)
		snprintf(line, max, "%s", got);
}

/* The connection ends: EOF (or, with allow_reset, a reset), with no line
 * before it unless allow_lines. */
static void
tc_expect_close(struct tclient *c, bool allow_lines, bool allow_reset, const char *what)
{
	char got[LINE_MAX_BYTES];

	for (int i = 0; i < 64; i++) {
		ssize_t n = tc_read_line(c, got, sizeof(got), IO_MS);

		if (n == GOT_EOF || (allow_reset && n == -ECONNRESET))
			return;
		ck_assert_msg(n >= 0 && allow_lines,
			      "[%s] %s: %s: expected the connection to close, got %s", cur->tcase,
			      c->label, what, describe(n, got));
	}
	ck_abort_msg("[%s] %s: %s: lines keep coming, no close", cur->tcase, c->label, what);
}

/* "* N online: a@HOST, b@HOST" listing exactly names, in any order. */
static bool
who_matches(const char *line, const char *const *names, size_t n)
{
	char prefix[64], entry[64];
	bool used[32] = { false };
	const char *p;
	size_t count = 0;

	ck_assert(n <= ELEMENTSOF(used));
	snprintf(prefix, sizeof(prefix), "* %zu online: ", n);
	if (strncmp(line, prefix, strlen(prefix)) != 0)
		return false;
	p = line + strlen(prefix);
	for (;;) {
		const char *end = strstr(p, ", ");
		size_t len = end ? (size_t)(end - p) : strlen(p);
		bool found = false;

		for (size_t i = 0; i < n && !found; i++) {
			snprintf(entry, sizeof(entry), "%s@%s", names[i], HOST);
			if (!used[i] && strlen(entry) == len && memcmp(entry, p, len) == 0)
				used[i] = found = true;
		}
		if (!found)
			return false;
		count++;
		if (!end)
			break;
		p = end + 2;
	}
	return count == n;
}

static bool
is_who_answer(const char *line)
{
	unsigned k;
	int used = 0;

	return sscanf(line, "* %u online: %n", &k, &used) == 1 && used > 0;
}

/* Marker round trip: /who, and the very next line is its answer listing
 * names. Proves nothing else was queued for c before it. */
static void
tc_who(struct tclient *c, const char *const *names, size_t n)
{
	char got[LINE_MAX_BYTES];
	ssize_t r;

	tc_send(c, "/who\r\n");
	r = tc_read_line(c, got, sizeof(got), IO_MS);
	ck_assert_msg(r >= 0 && who_matches(got, names, n),
		      "[%s] %s: expected the /who answer listing %zu (first '%s'), got %s",
		      cur->tcase, c->label, n, n ? names[0] : "", describe(r, got));
}

/* Like tc_who(), but notices ("* ...") the server may send the client
 * about its own command (unspecified by SPEC) may come first. */
static void
tc_who_after_notices(struct tclient *c, const char *const *names, size_t n, const char *what)
{
	char got[LINE_MAX_BYTES];

	tc_send(c, "/who\r\n");
	for (int i = 0; i < 32; i++) {
		ssize_t r = tc_read_line(c, got, sizeof(got), IO_MS);

		ck_assert_msg(r >= 0 && strncmp(got, "* ", 2) == 0,
			      "[%s] %s: after %s expected notices then the /who answer, got %s",
			      cur->tcase, c->label, what, describe(r, got));
		if (is_who_answer(got)) {
			ck_assert_msg(who_matches(got, names, n),
				      "[%s] %s: after %s: /who answer '%s' does not list %zu (first '%s')",
				      cur->tcase, c->label, what, escs(got), n, names[0]);
			return;
		}
	}
	ck_abort_msg("[%s] %s: after %s: no /who answer", cur->tcase, c->label, what);
}

/* Connect, check the welcome, log in as nick (sending line, e.g. "bob\n"
 * or "NAME: bob\r\n"), and check the notices: others[] are everybody
 * already named. */
static struct tclient *
tc_join_with(const char *nick, const char *line, struct tclient *const *others, size_t n)
{
	struct tclient *c = tc_connect(nick);

	tc_expectf(c, "* welcome to %s (%zu online); send your name", ROOM, n);
	tc_send(c, line);
	tc_expectf(c, "* you are %s@%s; %zu online", nick, HOST, n + 1);
	for (size_t i = 0; i < n; i++)
		tc_expectf(others[i], "* %s@%s joined; %zu online", nick, HOST, n + 1);
	return c;
}

static struct tclient *
tc_join(const char *nick, struct tclient *const *others, size_t n)
{
	char line[64];

	snprintf(line, sizeof(line), "%s\r\n", nick);
	return tc_join_with(nick, line, others, n);
}

/* Each of the n clients sends /who; the next line each reads must be its
 * answer with `online` members: nothing left over, nobody gone. */
static void
expect_who_next(struct tclient **c, size_t n, size_t online)
{
	char want[32];

	snprintf(want, sizeof(want), "* %zu online: ", online);
	for (size_t i = 0; i < n; i++) {
		char line[LINE_MAX_BYTES];
		ssize_t r;

		tc_send(c[i], "/who\r\n");
		r = tc_read_line(c[i], line, sizeof(line), IO_MS);
		ck_assert_msg(r >= 0 && strncmp(line, want, strlen(want)) == 0,
			      "[%s] client %zu: expected the /who answer \"%s...\" next, got %s",
			      cur->tcase, i, want, describe(r, line));
	}
}

/* ---- TCP tests ---- */

START_TEST(chat_tcp_welcome_and_naming)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL, *c = NULL, *d = NULL;
	struct tclient *named[2];
	char got[LINE_MAX_BYTES];

	start_chat(NULL, NULL);
	alice = tc_join_with("alice", "alice\n", NULL, 0);
	named[0] = alice;
	bob = tc_join_with("bob", "NAME: bob\r\n", named, 1);
	named[1] = bob;

	/* The count is of named clients: c is not one yet. */
	c = tc_connect("third");
	tc_expectf(c, "* welcome to %s (2 online); send your name", ROOM);
	d = tc_connect("fourth");
	tc_expectf(d, "* welcome to %s (2 online); send your name", ROOM);

	tc_send(c, "bad name!\r\n");
	tc_expect_prefix(c, "! invalid name", got, sizeof(got));
	tc_send(c, "abcdefghijklmnopqrstuvwxyz0123456\n"); /* 33 characters */
	tc_expect_prefix(c, "! invalid name", got, sizeof(got));
	tc_send(c, "NAME: b@d\n");
	tc_expect_prefix(c, "! invalid name", got, sizeof(got));
	tc_send(c, "alice\r\n");
	tc_expect(c, "! name \"alice\" is taken");
	tc_send(c, "NAME: bob\n");
	tc_expect(c, "! name \"bob\" is taken");

	/* Unnamed clients get no messages. */
	tc_send(alice, "only for the named\r\n");
	tc_expect(bob, "<alice> only for the named");

	/* 32 characters of every allowed kind is a valid name. */
	tc_send(c, "Carol_the-3rd.abcdefghijklmnopqr\r\n");
	tc_expectf(c, "* you are Carol_the-3rd.abcdefghijklmnopqr@%s; 3 online", HOST);
	tc_expectf(alice, "* Carol_the-3rd.abcdefghijklmnopqr@%s joined; 3 online", HOST);
	tc_expectf(bob, "* Carol_the-3rd.abcdefghijklmnopqr@%s joined; 3 online", HOST);
	{
		static const char *const abc[] = { "alice", "bob",
						   "Carol_the-3rd.abcdefghijklmnopqr" };

		tc_who(c, abc, 3);
		tc_who(alice, abc, 3);
	}
	/* d saw none of it: its next line answers its own first line. */
	tc_send(d, "dave\n");
	tc_expectf(d, "* you are dave@%s; 4 online", HOST);
}
END_TEST

START_TEST(chat_tcp_relay_reaches_others_never_the_sender)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL, *carol = NULL;
	struct tclient *room[3];
	static const char *const abc[] = { "alice", "bob", "carol" };

	start_chat(NULL, NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);
	room[2] = carol = tc_join("carol", room, 2);

	tc_send(alice, "hello everyone\r\n");
	tc_expect(bob, "<alice> hello everyone");
	tc_expect(carol, "<alice> hello everyone");
	/* The next thing alice gets answers her /who: no copy came first. */
	tc_who(alice, abc, 3);

	/* CRLF and LF, several lines in one segment, a line in pieces. */
	tc_send(bob, "with crlf\r\nwith lf\nthird\r\n");
	tc_send(bob, "in ");
	tc_send(bob, "pieces\r");
	tc_send(bob, "\n");
	tc_expect(alice, "<bob> with crlf");
	tc_expect(alice, "<bob> with lf");
	tc_expect(alice, "<bob> third");
	tc_expect(alice, "<bob> in pieces");
	tc_expect(carol, "<bob> with crlf");
	tc_expect(carol, "<bob> with lf");
	tc_expect(carol, "<bob> third");
	tc_expect(carol, "<bob> in pieces");
	tc_who(bob, abc, 3);

	/* Leading and inner spaces are text too. */
	tc_send(carol, "  two  spaces\n");
	tc_expect(alice, "<carol>   two  spaces");
	tc_expect(bob, "<carol>   two  spaces");
	tc_who(carol, abc, 3);
	tc_who(alice, abc, 3);
	tc_who(bob, abc, 3);
}
END_TEST

START_TEST(chat_tcp_commands)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL, *dave = NULL;
	struct tclient *room[3];
	static const char *const cbd[] = { "carol", "bob", "dave" };
	char got[LINE_MAX_BYTES];
	unsigned help = 0;

	start_chat(NULL, NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);

	/* SPEC's own example, in join order. */
	tc_send(alice, "/who\r\n");
	tc_expectf(alice, "* 2 online: alice@%s, bob@%s", HOST, HOST);
	tc_send(bob, "/who\n");
	tc_expectf(bob, "* 2 online: alice@%s, bob@%s", HOST, HOST);

	room[2] = dave = tc_join("dave", room, 2);

	/* /nick: taken and invalid names are refused, a free one is taken. */
	tc_send(alice, "/nick bob\r\n");
	tc_expect(alice, "! name \"bob\" is taken");
	tc_send(alice, "/nick no way\r\n");
	tc_expect_prefix(alice, "! ", NULL, 0);
	tc_send(alice, "/nick carol\r\n");
	tc_expect(bob, "* alice is now carol");
	tc_expect(dave, "* alice is now carol");
	tc_who_after_notices(alice, cbd, 3, "/nick carol");
	tc_who(bob, cbd, 3);

	/* /me */
	tc_send(alice, "/me waves\n");
	tc_expect(bob, "* carol waves");
	tc_expect(dave, "* carol waves");
	tc_who_after_notices(alice, cbd, 3, "/me waves");

	/* /msg: only the addressee gets it. */
	tc_send(alice, "/msg bob hi there\r\n");
	tc_expect(bob, "<carol> (private) hi there");
	tc_who(dave, cbd, 3);
	tc_who_after_notices(alice, cbd, 3, "/msg bob hi there");
	tc_send(alice, "/msg zed hi\r\n");
	tc_expect(alice, "! no such user \"zed\"");
	tc_who(bob, cbd, 3);
	tc_who(dave, cbd, 3);

	/* /help: one or more notice lines, then nothing until the marker. */
	tc_send(alice, "/help\r\n");
	tc_send(alice, "/who\r\n");
	for (int i = 0; i < 64; i++) {
		ssize_t r = tc_read_line(alice, got, sizeof(got), IO_MS);

		ck_assert_msg(r >= 0 && strncmp(got, "* ", 2) == 0,
			      "[%s] /help: expected '* ' lines, got %s", cur->tcase,
			      describe(r, got));
		if (is_who_answer(got))
			break;
		help++;
	}
	ck_assert_msg(help >= 1, "[%s] /help gave no '* ' line before the /who answer",
		      cur->tcase);

	/* Unknown command, then the // escape. */
	tc_send(alice, "/bogus\r\n");
	tc_expect(alice, "! unknown command \"/bogus\"; try /help");
	tc_send(alice, "//x\n");
	tc_expect(bob, "<carol> /x");
	tc_expect(dave, "<carol> /x");
	tc_who(alice, cbd, 3);
	tc_who(bob, cbd, 3);
	tc_who(dave, cbd, 3);
}
END_TEST

START_TEST(chat_tcp_quit_and_close_announce_left)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL, *carol = NULL,
					   *dave = NULL;
	struct tclient *room[4];
	static const char *const d[] = { "dave" };

	start_chat(NULL, NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);
	room[2] = carol = tc_join("carol", room, 2);
	room[3] = dave = tc_join("dave", room, 3);

	tc_send(alice, "/quit bye\r\n");
	tc_expect(bob, "* alice left (bye); 3 online");
	tc_expect(carol, "* alice left (bye); 3 online");
	tc_expect(dave, "* alice left (bye); 3 online");
	tc_expect_close(alice, true, false, "/quit bye");

	tc_send(bob, "/quit\n");
	tc_expect(carol, "* bob left; 2 online");
	tc_expect(dave, "* bob left; 2 online");
	tc_expect_close(bob, true, false, "/quit");

	carol = tc_free(carol);
	tc_expect(dave, "* carol left; 1 online");
	tc_who(dave, d, 1);
}
END_TEST

static const struct sanitize_case {
	const char *what;
	const char *in; /* line sent, LF excluded */
	size_t in_len;
	const char *out; /* relayed text */
} sanitize_cases[] = {
#define SC(what, in, out) { what, in, sizeof(in) - 1, out }
	SC("ESC, BEL and DEL removed", "a\x1b[1mb\x07" "c\x7f" "d", "a[1mbcd"),
	SC("other C0 (SOH, NUL, lone CR) removed, TAB kept", "e\x01\tf\x00g\rh", "e\tfgh"),
	SC("C1 controls (U+0085, U+009B) removed", "i\xc2\x85j\xc2\x9bk", "ijk"),
	SC("invalid UTF-8 becomes U+FFFD", "l\xffm", "l\xef\xbf\xbdm"),
	SC("valid UTF-8 kept", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	   "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
#undef SC
};

START_TEST(chat_tcp_sanitizes_relayed_text)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL;
	struct tclient *room[2];
	static const char *const ab[] = { "alice", "bob" };
	char want[256], line[256];

	start_chat(NULL, NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);
	for (size_t i = 0; i < ELEMENTSOF(sanitize_cases); i++) {
		const struct sanitize_case *sc = &sanitize_cases[i];
		char got[LINE_MAX_BYTES];
		ssize_t r;

		memcpy(line, sc->in, sc->in_len);
		line[sc->in_len] = '\n';
		tc_send_bytes(alice, line, sc->in_len + 1);
		snprintf(want, sizeof(want), "<alice> %s", sc->out);
		r = tc_read_line(bob, got, sizeof(got), IO_MS);
		ck_assert_msg(r >= 0 && (size_t)r == strlen(want) &&
				      memcmp(got, want, (size_t)r) == 0,
			      "[%s] %s: sent '%s', expected '%s\\r\\n', got %s", cur->tcase,
			      sc->what, esc(sc->in, sc->in_len), escs(want), describe(r, got));
	}
	tc_who(alice, ab, 2);
	tc_who(bob, ab, 2);
}
END_TEST

START_TEST(chat_tcp_line_too_long_is_refused_client_stays)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL;
	struct tclient *room[2];
	static const char *const ab[] = { "alice", "bob" };
	char big[5001];

	start_chat("max_line = 64;", NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);

	/* 100 bytes: refused, not relayed, in any part. */
	memset(big, 'x', 100);
	big[100] = '\n';
	tc_send_bytes(alice, big, 101);
	tc_expect(alice, "! line too long (max 64 bytes)");
	tc_send(alice, "short\n");
	tc_expect(bob, "<alice> short");
	tc_who(alice, ab, 2);

	/* The limit itself: 64 bytes pass, 65 do not. */
	memset(big, 'y', 64);
	big[64] = '\n';
	tc_send_bytes(alice, big, 65);
	tc_expectf(bob, "<alice> %.64s", big);
	memset(big, 'z', 65);
	big[65] = '\r';
	big[66] = '\n';
	tc_send_bytes(alice, big, 67);
	tc_expect(alice, "! line too long (max 64 bytes)");

	/* 5000 bytes arriving in pieces: still one refusal, then normal. */
	memset(big, 'w', 5000);
	tc_send_bytes(alice, big, 2500);
	tc_send_bytes(alice, big, 2500);
	tc_send(alice, "\r\nafter the long one\r\n");
	tc_expect(alice, "! line too long (max 64 bytes)");
	tc_expect(bob, "<alice> after the long one");
	tc_who(alice, ab, 2);
	tc_who(bob, ab, 2);
}
END_TEST

/* Complete lines "<cNN> K" in c's buffer, c being client self of n:
 * each sender's K must count up from 0 (next[] tracks them). Returns how
 * many were taken. */
static unsigned
take_numbered(struct tclient *c, size_t self, size_t n, unsigned *next)
{
	char line[LINE_MAX_BYTES];
	size_t len;
	unsigned count = 0;

	while (tc_take_line(c, line, sizeof(line), &len)) {
		unsigned from = UINT_MAX, k = 0;
		int used = 0;
		bool ok = sscanf(line, "<c%2u> %u%n", &from, &k, &used) == 2 &&
			  (size_t)used == len && from < n && from != self;

		ck_assert_msg(ok, "[%s] %s: unexpected line '%s'", cur->tcase, c->label,
			      escs(line));
		ck_assert_msg(k == next[from],
			      "[%s] %s: from c%02u expected message %u, got %u (lost or reordered)",
			      cur->tcase, c->label, from, next[from], k);
		next[from]++;
		count++;
	}
	return count;
}

START_TEST(chat_tcp_20_clients_50_messages_in_order)
{
	enum { N = 20, PER = 50, CHUNK_LINES = 5 };
	struct tclient *c[N] = { NULL };
	char *out[N];
	size_t out_len[N], out_off[N];
	unsigned next[N][N], got[N];
	bool done[N] = { false };
	uint64_t deadline;
	unsigned complete = 0;

	start_chat(NULL, NULL);
	for (size_t i = 0; i < N; i++) {
		char nick[8];
		size_t len = 0;

		snprintf(nick, sizeof(nick), "c%02zu", i);
		c[i] = tc_join(nick, c, i);
		out[i] = malloc(PER * 8);
		ck_assert_ptr_nonnull(out[i]);
		for (unsigned k = 0; k < PER; k++)
			len += (size_t)sprintf(out[i] + len, "%u%s", k, k % 2 ? "\r\n" : "\n");
		out_len[i] = len;
		out_off[i] = 0;
		got[i] = 0;
		memset(next[i], 0, sizeof(next[i]));
	}

	/* Everybody sends and receives at once. */
	deadline = now_usec() + 30 * USEC_PER_SEC;
	while (complete < N) {
		struct pollfd pfd[N];
		uint64_t now = now_usec();
		int r;

		ck_assert_msg(now < deadline,
			      "[%s] %d clients x %d messages: not all delivered within 30 s (%u of %d receivers complete)",
			      cur->tcase, N, PER, complete, N);
		for (size_t i = 0; i < N; i++)
			pfd[i] = (struct pollfd){
				.fd = c[i]->fd,
				.events = (short)(POLLIN | (out_off[i] < out_len[i] ? POLLOUT : 0)),
			};
		r = poll(pfd, N, (int)((deadline - now) / 1000 + 1));
		ck_assert_int_ge(r, 0);
		for (size_t i = 0; i < N; i++) {
			if ((pfd[i].revents & POLLOUT) && out_off[i] < out_len[i]) {
				/* A few lines at a time, to interleave the senders. */
				const char *p = out[i] + out_off[i];
				size_t want = 0;
				ssize_t n;

				for (int l = 0; l < CHUNK_LINES; l++) {
					size_t left = out_len[i] - out_off[i] - want;
					const char *nl;

					if (left == 0)
						break;
					nl = memchr(p + want, '\n', left);
					want = (size_t)(nl - p) + 1;
				}
				n = send(c[i]->fd, p, want, MSG_DONTWAIT | MSG_NOSIGNAL);
				ck_assert_msg(n >= 0 || errno == EAGAIN || errno == EINTR,
					      "[%s] c%02zu: send: %s", cur->tcase, i,
					      strerror(errno));
				if (n > 0)
					out_off[i] += (size_t)n;
			}
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				ssize_t n = tc_fill(c[i]);

				ck_assert_msg(n != 0, "[%s] c%02zu: EOF after %u of %d messages",
					      cur->tcase, i, got[i], (N - 1) * PER);
				ck_assert_msg(n > 0 || n == -EAGAIN, "[%s] c%02zu: recv: %s",
					      cur->tcase, i, strerror((int)-n));
				got[i] += take_numbered(c[i], i, N, next[i]);
				if (got[i] == (N - 1) * PER && !done[i]) {
					done[i] = true;
					complete++;
				}
			}
		}
	}
	/* Nothing more: the marker is the next line everyone gets. */
	expect_who_next(c, N, N);
	for (size_t i = 0; i < N; i++) {
		tc_free(c[i]);
		free(out[i]);
	}
}
END_TEST

/* A client socket with a small receive buffer, set before connect() so
 * the window it advertises stays small. */
static struct tclient *
tc_connect_small_rcvbuf(const char *label, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(srv_listener.port) };
	struct timeval tv = { .tv_sec = IO_MS / 1000 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
		      "[%s] %s: connect: %s", cur->tcase, label, strerror(errno));
	return tc_wrap(fd, label);
}

/* A flood relay "<flood> F%07u xxx..." in order, a "during" message, or
 * the slow consumer's departure; anything else fails. */
struct flood_rx {
	struct tclient *c;
	unsigned flood;  /* flood lines received */
	unsigned during; /* "<alice> during N" received */
	bool expect_during;
	bool left;
	bool after; /* "<bob> after" received */
};

static void
flood_rx_drain(struct flood_rx *x)
{
	char line[LINE_MAX_BYTES];
	size_t len;

	while (tc_take_line(x->c, line, sizeof(line), &len)) {
		unsigned k = UINT_MAX;

		if (sscanf(line, "<flood> F%7u ", &k) == 1) {
			ck_assert_msg(k == x->flood,
				      "[%s] %s: flood line %u expected, got %u (lost or reordered)",
				      cur->tcase, x->c->label, x->flood, k);
			x->flood++;
		} else if (x->expect_during && sscanf(line, "<alice> during %u", &k) == 1) {
			ck_assert_msg(k == x->during, "[%s] %s: 'during %u' expected, got '%s'",
				      cur->tcase, x->c->label, x->during, escs(line));
			x->during++;
		} else if (strcmp(line, "* slow left; 3 online") == 0 && !x->left) {
			x->left = true;
		} else if (strcmp(line, "<bob> after") == 0 && !x->after) {
			x->after = true;
		} else {
			ck_abort_msg("[%s] %s: unexpected line during the flood: '%s'", cur->tcase,
				     x->c->label, escs(line));
		}
	}
}

static void
flood_rx_poll(struct flood_rx *xs, size_t n, int timeout_ms)
{
	struct pollfd pfd[4];
	int r;

	ck_assert(n <= ELEMENTSOF(pfd));
	for (size_t i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = xs[i].c->fd, .events = POLLIN };
	r = poll(pfd, (nfds_t)n, timeout_ms);
	ck_assert_int_ge(r, 0);
	for (size_t i = 0; i < n; i++) {
		ssize_t k;

		if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		k = tc_fill(xs[i].c);
		ck_assert_msg(k > 0 || k == -EAGAIN,
			      "[%s] %s was disconnected during the flood (%s)", cur->tcase,
			      xs[i].c->label, k == 0 ? "EOF" : strerror((int)-k));
		flood_rx_drain(&xs[i]);
	}
}

/* CPU ticks (user + system) of each grandchild of top: in the fork model,
 * the pumps under the hub under the dispatcher. */
struct ticks {
	pid_t pid[64];
	uint64_t t[64];
	size_t n;
};

static struct ticks
grandchildren_ticks(pid_t top)
{
	DIR *dir = opendir("/proc");
	struct ticks r = { .n = 0 };
	struct dirent *e;

	ck_assert_ptr_nonnull(dir);
	while ((e = readdir(dir)) && r.n < ELEMENTSOF(r.pid)) {
		char path[64], buf[1024], *p;
		unsigned long long ut = 0, st = 0;
		pid_t pid = (pid_t)atoi(e->d_name);
		int ppid = 0;
		FILE *f;
		size_t n;

		if (pid <= 0 || pid == top || !harness_pid_in_tree(pid, top))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		if (!(f = fopen(path, "re")))
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		p = strrchr(buf, ')');
		/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
		 * cmajflt utime stime */
		if (!p || sscanf(p + 1, " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				 &ppid, &ut, &st) != 3 || ppid == top)
			continue;
		r.pid[r.n] = pid;
		r.t[r.n++] = ut + st;
	}
	closedir(dir);
	return r;
}

/* The most CPU any one process present in both snapshots used between them. */
static uint64_t
max_ticks_used(const struct ticks *a, const struct ticks *b)
{
	uint64_t m = 0;

	for (size_t i = 0; i < b->n; i++)
		for (size_t j = 0; j < a->n; j++)
			if (a->pid[j] == b->pid[i] && b->t[i] >= a->t[j])
				m = MAX(m, b->t[i] - a->t[j]);
	return m;
}

START_TEST(chat_tcp_slow_consumer_is_disconnected)
{
	enum { LINE = 900, WINDOW = 32, DURING_EVERY = 64 };
	const uint64_t cap = UINT64_C(8) << 20;
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL, *flood = NULL,
					   *slow = NULL;
	struct tclient *room[3];
	struct flood_rx rx[3];
	char line[LINE + 2];
	uint64_t sent_bytes = 0, deadline, drained = 0;
	unsigned sent = 0, during_sent = 0;

	start_chat(NULL, NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);
	room[2] = flood = tc_join("flood", room, 2);
	slow = tc_connect_small_rcvbuf("slow", 4096);
	tc_expectf(slow, "* welcome to %s (3 online); send your name", ROOM);
	tc_send(slow, "slow\n");
	tc_expectf(slow, "* you are slow@%s; 4 online", HOST);
	for (size_t i = 0; i < 3; i++)
		tc_expectf(room[i], "* slow@%s joined; 4 online", HOST);
	/* From here on slow never reads. */

	rx[0] = (struct flood_rx){ .c = alice };
	rx[1] = (struct flood_rx){ .c = bob, .expect_during = true };
	rx[2] = (struct flood_rx){ .c = flood, .expect_during = true };
	memset(line, 'x', sizeof(line));
	line[LINE] = '\n';
	deadline = now_usec() + 40 * USEC_PER_SEC;
	while (!(rx[0].left && rx[1].left && rx[2].left)) {
		unsigned slowest = MIN(rx[0].flood, rx[1].flood);
		bool can_send = sent_bytes < cap && sent - slowest < WINDOW;

		ck_assert_msg(now_usec() < deadline,
			      "[%s] flood: no disconnect of the slow consumer within 40 s (%u lines sent, alice %u, bob %u)",
			      cur->tcase, sent, rx[0].flood, rx[1].flood);
		ck_assert_msg(sent_bytes < cap || slowest < sent,
			      "[%s] a client that never reads stayed connected while %" PRIu64
			      " bytes were relayed to it (left seen by alice %d, bob %d, flood %d)",
			      cur->tcase, sent_bytes, rx[0].left, rx[1].left, rx[2].left);
		if (can_send) {
			/* Readers are kept at most WINDOW lines behind, so only
			 * slow ever has more than 64 KiB pending. */
			memcpy(line, "F", 1);
			snprintf(line + 1, 9, "%07u ", sent);
			line[9] = 'x';
			tc_send_bytes(flood, line, LINE + 1);
			sent++;
			sent_bytes += LINE + 1;
			if (sent % DURING_EVERY == 0)
				tc_sendf(alice, "during %u\n", during_sent++);
		}
		flood_rx_poll(rx, 3, can_send ? 0 : IO_MS);
	}

	/* Fork model: the hub has dropped slow, whose pump still holds lines
	 * slow does not read. It must wait for slow, not spin (poll()
	 * reports the closed hub side every time). */
	if (!strcmp(cur->model, "fork")) {
		long hz = sysconf(_SC_CLK_TCK);
		struct ticks t0 = grandchildren_ticks(srv.pid), t1;
		uint64_t used;

		ck_assert_msg(t0.n > 0, "[%s] no pump processes found", cur->tcase);
		(void)poll(NULL, 0, 500); /* the measurement window */
		t1 = grandchildren_ticks(srv.pid);
		used = max_ticks_used(&t0, &t1);
		ck_assert_msg((double)used / (double)hz < 0.2,
			      "[%s] a pump used %.2f s of CPU in 0.5 s while slow did not read: a busy loop",
			      cur->tcase, (double)used / (double)hz);
	}

	/* The others kept chatting: everything arrives, in order. */
	tc_send(bob, "after\r\n");
	deadline = now_usec() + 10 * USEC_PER_SEC;
	while (rx[0].flood < sent || rx[1].flood < sent || rx[1].during < during_sent ||
	       rx[2].during < during_sent || !rx[0].after || !rx[2].after) {
		ck_assert_msg(now_usec() < deadline,
			      "[%s] after the flood: alice %u/%u flood lines, bob %u/%u and 'during' %u/%u, flood 'during' %u/%u, 'after' at alice %d flood %d",
			      cur->tcase, rx[0].flood, sent, rx[1].flood, sent, rx[1].during,
			      during_sent, rx[2].during, during_sent, rx[0].after, rx[2].after);
		flood_rx_poll(rx, 3, IO_MS);
	}
	ck_assert_msg(during_sent > 0, "[%s] the flood was too short to test chatting during it",
		      cur->tcase);

	/* slow's connection is closed: what it still gets ends in EOF. */
	deadline = now_usec() + 10 * USEC_PER_SEC;
	for (;;) {
		char buf[65536];
		ssize_t n = harness_recv_timeout(slow->fd, buf, sizeof(buf), IO_MS);

		if (n == 0 || n == -ECONNRESET)
			break;
		ck_assert_msg(n > 0,
			      "[%s] slow consumer: expected its connection closed, got %s after %" PRIu64 " bytes",
			      cur->tcase, strerror((int)-n), drained);
		drained += (uint64_t)n;
		ck_assert_msg(drained <= sent_bytes + 65536 && now_usec() < deadline,
			      "[%s] slow consumer: still receiving after %" PRIu64 " bytes",
			      cur->tcase, drained);
	}
	{
		static const char *const abf[] = { "alice", "bob", "flood" };

		tc_who(alice, abf, 3);
		tc_who(bob, abf, 3);
		tc_who(flood, abf, 3);
	}
}
END_TEST

/* A flood large enough to pass every socket buffer on the way: alice
 * sends 10 MiB of 1 KiB lines as fast as TCP takes them, slowpoke never
 * reads, bob reads all along, a line per turn, as an ordinary client
 * does (slower than alice could send). Only slowpoke may go (as a slow consumer); the flooder is the one
 * to wait, so bob gets every line, in order, and stays. */
START_TEST(chat_tcp_flood_drops_only_the_member_that_does_not_read)
{
	enum { LINE = 1024, LINES = 10 * 1024, SEND_MAX = 64 * 1024, BOB_READ = LINE };
	static const char *const ab[] = { "alice", "bob" };
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL, *slow = NULL;
	struct tclient *room[2];
	size_t out_len = (size_t)LINES * LINE, out_off = 0;
	char *out = malloc(out_len);
	uint64_t deadline, drained = 0;
	unsigned next = 0;
	bool left = false;

	ck_assert_ptr_nonnull(out);
	for (unsigned k = 0; k < LINES; k++) {
		char *l = out + (size_t)k * LINE;

		memset(l, 'x', LINE - 1);
		memcpy(l, "L", 1);
		snprintf(l + 1, 9, "%07u ", k);
		l[9] = 'x';
		l[LINE - 1] = '\n';
	}
	start_chat(NULL, NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);
	slow = tc_join("slowpoke", room, 2);
	/* From here on slowpoke never reads. */

	deadline = now_usec() + 40 * USEC_PER_SEC;
	while (next < LINES || !left) {
		struct pollfd pfd[2] = {
			{ .fd = bob->fd, .events = POLLIN },
			{ .fd = alice->fd, .events = out_off < out_len ? POLLOUT : 0 },
		};
		char line[LINE_MAX_BYTES];
		size_t len;
		int r;

		HARNESS_EXPECT(now_usec() < deadline,
			      "[%s] flood: bob got %u of %u lines within 40 s (alice sent %zu of %zu bytes, slowpoke left: %d)",
			      cur->tcase, next, LINES, out_off, out_len, left);
		r = poll(pfd, out_off < out_len ? 2 : 1, IO_MS);
		ck_assert_int_ge(r, 0);
		if (pfd[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
			ssize_t n = send(alice->fd, out + out_off, MIN((size_t)SEND_MAX, out_len - out_off),
					 MSG_DONTWAIT | MSG_NOSIGNAL);

			HARNESS_EXPECT(n >= 0 || errno == EAGAIN || errno == EINTR,
				      "[%s] alice: send: %s", cur->tcase, strerror(errno));
			if (n > 0)
				out_off += (size_t)n;
		}
		if (pfd[0].revents & (POLLIN | POLLERR | POLLHUP)) {
			ssize_t n = tc_fill_upto(bob, BOB_READ);

			HARNESS_EXPECT(n > 0 || n == -EAGAIN,
				      "[%s] bob, who reads all along, was disconnected after %u of %u lines (%s)",
				      cur->tcase, next, LINES, n == 0 ? "EOF" : strerror((int)-n));
		}
		while (tc_take_line(bob, line, sizeof(line), &len)) {
			unsigned k = UINT_MAX;

			if (sscanf(line, "<alice> L%7u ", &k) == 1) {
				HARNESS_EXPECT(k == next && len == LINE - 1 + 8,
					      "[%s] bob: flood line %u expected, got %u of %zu bytes (lost or reordered)",
					      cur->tcase, next, k, len);
				next++;
			} else if (!left && strcmp(line, "* slowpoke left; 2 online") == 0) {
				left = true;
			} else {
				ck_abort_msg("[%s] bob: unexpected line during the flood: '%s'",
					     cur->tcase, escs(line));
			}
		}
	}
	free(out);
	tc_expect(alice, "* slowpoke left; 2 online");
	tc_who(alice, ab, 2);
	tc_who(bob, ab, 2);

	/* slowpoke's connection is closed: what it still gets ends in EOF. */
	deadline = now_usec() + 10 * USEC_PER_SEC;
	for (;;) {
		char buf[65536];
		ssize_t n = harness_recv_timeout(slow->fd, buf, sizeof(buf), IO_MS);

		if (n == 0 || n == -ECONNRESET)
			break;
		HARNESS_EXPECT(n > 0, "[%s] slowpoke: expected its connection closed, got %s",
			      cur->tcase, strerror((int)-n));
		drained += (uint64_t)n;
		HARNESS_EXPECT(drained <= (uint64_t)LINES * (LINE + 9) && now_usec() < deadline,
			      "[%s] slowpoke: still receiving after %" PRIu64 " bytes", cur->tcase,
			      drained);
	}
}
END_TEST

/* A busy room, no flood: 100 members each send 64-byte lines at 70 a
 * second and read everything as it comes. Nobody is a slow consumer:
 * every member stays and gets every line of every other, each sender's
 * in order. */
START_TEST(chat_tcp_100_members_at_70_lines_per_second)
{
	enum { N = 100, RATE = 70, PER = 140, LINE = 64 };
	struct tclient *c[N] = { NULL };
	unsigned sent[N] = { 0 }, got[N] = { 0 }, next[N][N];
	uint64_t t0, deadline;
	unsigned complete = 0;
	bool done[N] = { false };

	start_chat("max_clients = 128;", NULL);
	memset(next, 0, sizeof(next));
	for (size_t i = 0; i < N; i++) {
		char nick[8];

		snprintf(nick, sizeof(nick), "m%02zu", i);
		c[i] = tc_join(nick, c, i);
	}

	/* 2 s of sending, about 1.4 million deliveries: the bound is for a
	 * slow (loaded, sanitized) machine, well inside TCASE_TIMEOUT. */
	t0 = now_usec();
	deadline = t0 + 45 * USEC_PER_SEC;
	while (complete < N) {
		struct pollfd pfd[N];
		uint64_t now = now_usec(), due = UINT64_MAX;
		int r, timeout;

		HARNESS_EXPECT(now < deadline,
			      "[%s] %d members x %d lines: not all delivered within 45 s (%u of %d receivers complete)",
			      cur->tcase, N, PER, complete, N);
		/* Paced: line k of member i is due at t0 + (k + i / N) / RATE. */
		for (size_t i = 0; i < N; i++) {
			while (sent[i] < PER &&
			       t0 + ((uint64_t)sent[i] * N + i) * USEC_PER_SEC / ((uint64_t)RATE * N) <= now) {
				char line[LINE + 1];

				memset(line, 'y', LINE - 1);
				snprintf(line, 8, "%06u ", sent[i]);
				line[7] = 'y';
				line[LINE - 1] = '\n';
				tc_send_bytes(c[i], line, LINE);
				sent[i]++;
			}
			if (sent[i] < PER)
				due = MIN(due, t0 + ((uint64_t)sent[i] * N + i) * USEC_PER_SEC /
							    ((uint64_t)RATE * N));
			pfd[i] = (struct pollfd){ .fd = c[i]->fd, .events = POLLIN };
		}
		timeout = due == UINT64_MAX ? IO_MS : (int)(due > now ? (due - now) / 1000 : 0);
		r = poll(pfd, N, timeout);
		ck_assert_int_ge(r, 0);
		for (size_t i = 0; i < N; i++) {
			char line[LINE_MAX_BYTES];
			size_t len;
			ssize_t n;

			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = tc_fill(c[i]);
			HARNESS_EXPECT(n > 0 || n == -EAGAIN,
				      "[%s] m%02zu was disconnected after %u of %d lines (%s)",
				      cur->tcase, i, got[i], (N - 1) * PER,
				      n == 0 ? "EOF" : strerror((int)-n));
			while (tc_take_line(c[i], line, sizeof(line), &len)) {
				unsigned from = UINT_MAX, k = UINT_MAX;

				HARNESS_EXPECT(sscanf(line, "<m%2u> %6u ", &from, &k) == 2 &&
						      from < N && from != i && len == LINE - 1 + 6,
					      "[%s] m%02zu: unexpected line '%s'", cur->tcase, i,
					      escs(line));
				HARNESS_EXPECT(k == next[i][from],
					      "[%s] m%02zu: from m%02u expected line %u, got %u (lost or reordered)",
					      cur->tcase, i, from, next[i][from], k);
				next[i][from]++;
				got[i]++;
			}
			if (got[i] == (N - 1) * PER && !done[i]) {
				done[i] = true;
				complete++;
			}
		}
	}
	/* Nothing more, and everybody is still there. */
	expect_who_next(c, N, N);
	for (size_t i = 0; i < N; i++)
		tc_free(c[i]);
}
END_TEST

START_TEST(chat_tcp_server_full)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL, *third = NULL;
	struct tclient *room[2];
	bool served = false;

	start_chat("max_clients = 2;", NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);

	third = tc_connect("third");
	tc_expect(third, "! server full");
	tc_expect_close(third, false, true, "refused as the 3rd of max_clients = 2");
	third = tc_free(third);

	tc_send(alice, "still here\n");
	tc_expect(bob, "<alice> still here");

	/* A freed slot serves the next client. The server may learn of the
	 * close a moment after alice hears of it: a few refusals may come
	 * first (bounded). */
	bob = tc_free(bob);
	tc_expect(alice, "* bob left; 1 online");
	for (int attempt = 0; attempt < 100 && !served; attempt++) {
		_cleanup_(tc_freep) struct tclient *next = tc_connect("fourth");
		char got[LINE_MAX_BYTES];
		ssize_t r = tc_read_line(next, got, sizeof(got), IO_MS);

		served = r >= 0 &&
			 strcmp(got, "* welcome to " ROOM " (1 online); send your name") == 0;
		ck_assert_msg(served || (r >= 0 && strcmp(got, "! server full") == 0),
			      "[%s] client after a slot was freed: got %s", cur->tcase,
			      describe(r, got));
		if (!served)
			(void)poll(NULL, 0, 20); /* retry pacing, not synchronization */
	}
	ck_assert_msg(served, "[%s] still '! server full' after one of 2 clients left",
		      cur->tcase);
}
END_TEST

START_TEST(chat_tcp_rate_limit_says_slow_down)
{
	enum { BURST = 20, RATE = 5 };
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL;
	struct tclient *room[2];
	char burst[BURST * 8], got[LINE_MAX_BYTES];
	size_t len = 0;
	unsigned relayed = 0, refused = 0, next = 0;
	uint64_t deadline;
	bool later = false;

	start_chat("rate_limit = 5;", NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);

	for (unsigned i = 0; i < BURST; i++)
		len += (size_t)sprintf(burst + len, "r%u\n", i);
	tc_send_bytes(alice, burst, len);
	/* Each line gives alice a "! slow down" or bob a relay. */
	deadline = now_usec() + IO_MS * USEC_PER_MSEC;
	while (relayed + refused < BURST) {
		struct pollfd pfd[2] = { { .fd = alice->fd, .events = POLLIN },
					 { .fd = bob->fd, .events = POLLIN } };
		size_t l;

		while (tc_take_line(alice, got, sizeof(got), &l)) {
			ck_assert_msg(strcmp(got, "! slow down") == 0,
				      "[%s] rate_limit: alice expected '! slow down', got '%s'",
				      cur->tcase, escs(got));
			refused++;
		}
		while (tc_take_line(bob, got, sizeof(got), &l)) {
			unsigned k = 0;
			int used = 0;

			ck_assert_msg(sscanf(got, "<alice> r%u%n", &k, &used) == 1 &&
					      (size_t)used == l && k >= next && k < BURST,
				      "[%s] rate_limit: bob got '%s'", cur->tcase, escs(got));
			next = k + 1;
			relayed++;
		}
		if (relayed + refused >= BURST)
			break;
		ck_assert_msg(now_usec() < deadline,
			      "[%s] rate_limit: %u lines answered (%u relayed, %u refused) of %d",
			      cur->tcase, relayed + refused, relayed, refused, BURST);
		ck_assert_int_ge(poll(pfd, 2, 200), 0);
		for (int i = 0; i < 2; i++)
			if (pfd[i].revents) {
				ssize_t n = tc_fill(i == 0 ? alice : bob);

				ck_assert_msg(n > 0 || n == -EAGAIN, "[%s] rate_limit: %s: %s",
					      cur->tcase, i == 0 ? "alice" : "bob",
					      n == 0 ? "EOF" : strerror((int)-n));
			}
	}
	ck_assert_msg(relayed + refused == BURST, "[%s] rate_limit: %u answers to %d lines",
		      cur->tcase, relayed + refused, BURST);
	/* A one-second window may straddle two budgets: at most twice the rate. */
	ck_assert_msg(refused >= BURST - 2 * RATE && relayed >= 1,
		      "[%s] rate_limit = %d: %d lines at once gave %u relays and %u '! slow down'",
		      cur->tcase, RATE, BURST, relayed, refused);

	/* The client stays: once the budget refills, it is relayed again. */
	for (int attempt = 0; attempt < 20 && !later; attempt++) {
		struct pollfd pfd[2] = { { .fd = alice->fd, .events = POLLIN },
					 { .fd = bob->fd, .events = POLLIN } };
		ssize_t r;

		tc_send(alice, "later\n");
		ck_assert_msg(poll(pfd, 2, IO_MS) > 0, "[%s] rate_limit: no answer to a later line",
			      cur->tcase);
		if (pfd[1].revents) {
			r = tc_read_line(bob, got, sizeof(got), IO_MS);
			ck_assert_msg(r >= 0 && strcmp(got, "<alice> later") == 0,
				      "[%s] rate_limit: bob expected '<alice> later', got %s",
				      cur->tcase, describe(r, got));
			later = true;
		} else {
			r = tc_read_line(alice, got, sizeof(got), IO_MS);
			ck_assert_msg(r >= 0 && strcmp(got, "! slow down") == 0,
				      "[%s] rate_limit: alice expected '! slow down', got %s",
				      cur->tcase, describe(r, got));
			(void)poll(NULL, 0, 250); /* retry pacing: let the budget refill */
		}
	}
	ck_assert_msg(later, "[%s] rate_limit: alice was never relayed again", cur->tcase);
}
END_TEST

START_TEST(chat_tcp_sigterm_tells_every_client)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL, *unnamed = NULL;
	struct tclient *room[2];
	int r;

	start_chat(NULL, NULL);
	room[0] = alice = tc_join("alice", NULL, 0);
	room[1] = bob = tc_join("bob", room, 1);
	unnamed = tc_connect("unnamed");
	tc_expectf(unnamed, "* welcome to %s (2 online); send your name", ROOM);

	r = harness_stop(&srv, SIGTERM);
	srv_started = false;
	ck_assert_msg(r == 0, "[%s] SIGTERM with chat clients: exit %d, expected 0", cur->tcase, r);
	tc_expect(alice, "* server shutting down");
	tc_expect_close(alice, false, false, "server stop");
	tc_expect(bob, "* server shutting down");
	tc_expect_close(bob, false, false, "server stop");
	tc_expect(unnamed, "* server shutting down");
	tc_expect_close(unnamed, false, false, "server stop");
}
END_TEST

/* Search PATH for prog. */
static bool
find_program(const char *prog, char *ret, size_t len)
{
	const char *path = getenv("PATH");
	_cleanup_(freep) char *copy = strdup(path && *path ? path : "/usr/bin:/bin");
	char *save = NULL;

	ck_assert_ptr_nonnull(copy);
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		snprintf(ret, len, "%s/%s", dir, prog);
		if (access(ret, X_OK) == 0)
			return true;
	}
	return false;
}

START_TEST(chat_tcp_session_through_socat)
{
	_cleanup_(tc_freep) struct tclient *bob = NULL;
	_cleanup_(freep) char *out = NULL, *err = NULL;
	char socat[256], cmd[512], want[512];
	char *argv[] = { (char *)"/bin/sh", (char *)"-c", cmd, NULL };
	int r, status = -1;

	/* scripts/deps.sh installs socat: a missing one is a broken test
	 * set-up, not a pass. */
	ck_assert_msg(find_program("socat", socat, sizeof(socat)), "[%s] socat is not installed",
		      cur->tcase);
	start_chat(NULL, NULL);
	bob = tc_join("bob", NULL, 0);

	snprintf(cmd, sizeof(cmd), "printf 'alice\\nhello\\n/quit\\n' | '%s' -t2 - TCP:%s:%u",
		 socat, HOST, srv_listener.port);
	r = harness_run(argv, &out, &err, &status);
	ck_assert_msg(r == 0 && status == 0, "[%s] '%s': %s, exit %d, stderr '%s'", cur->tcase,
		      cmd, r < 0 ? strerror(-r) : "ran", status, err ? escs(err) : "");
	snprintf(want, sizeof(want),
		 "* welcome to %s (1 online); send your name\r\n* you are alice@%s; 2 online\r\n",
		 ROOM, HOST);
	ck_assert_msg(strcmp(out, want) == 0, "[%s] socat printed '%s', expected '%s'", cur->tcase,
		      escs(out), escs(want));

	tc_expectf(bob, "* alice@%s joined; 2 online", HOST);
	tc_expect(bob, "<alice> hello");
	tc_expect(bob, "* alice left; 1 online");
	{
		static const char *const b[] = { "bob" };

		tc_who(bob, b, 1);
	}
}
END_TEST

/* ---- UDP clients: one datagram, one line ---- */

struct uclient {
	int fd;
	char label[40];
};

static void
uc_closep(struct uclient *u)
{
	u->fd = safe_close(u->fd);
}

static struct uclient
uc_open(const char *label)
{
	struct uclient u = { .fd = harness_udp_socket(srv_listener.port) };

	ck_assert_msg(u.fd >= 0, "[%s] %s: udp socket: %s", cur->tcase, label, strerror(-u.fd));
	snprintf(u.label, sizeof(u.label), "%s", label);
	return u;
}

static void
uc_send(struct uclient *u, const char *s)
{
	ssize_t n = send(u->fd, s, strlen(s), MSG_NOSIGNAL);

	ck_assert_msg(n == (ssize_t)strlen(s), "[%s] %s: send '%s': %s", cur->tcase, u->label,
		      escs(s), n < 0 ? strerror(errno) : "short");
}

_printf_(2, 3) static void
uc_sendf(struct uclient *u, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	uc_send(u, buf);
}

/* The next datagram: one line ending with CRLF, and no other line end.
 * Returns its length without CRLF, or -ETIMEDOUT / -errno. */
static ssize_t
uc_recv(struct uclient *u, char *line, size_t max, int timeout_ms)
{
	char buf[65536];
	ssize_t n = harness_recv_timeout(u->fd, buf, sizeof(buf), timeout_ms);

	if (n < 0)
		return n;
	ck_assert_msg(n >= 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n',
		      "[%s] %s: datagram not ended by CRLF: '%s'", cur->tcase, u->label,
		      esc(buf, (size_t)n));
	n -= 2;
	ck_assert_msg(!memchr(buf, '\n', (size_t)n) && !memchr(buf, '\r', (size_t)n),
		      "[%s] %s: datagram holds more than one line: '%s'", cur->tcase, u->label,
		      esc(buf, (size_t)n + 2));
	ck_assert_msg((size_t)n < max, "[%s] %s: datagram of %zd bytes", cur->tcase, u->label, n);
	memcpy(line, buf, (size_t)n);
	line[n] = '\0';
	return n;
}

static void
uc_expect(struct uclient *u, const char *want)
{
	char got[LINE_MAX_BYTES];
	ssize_t n = uc_recv(u, got, sizeof(got), IO_MS);

	ck_assert_msg(n >= 0 && (size_t)n == strlen(want) && memcmp(got, want, (size_t)n) == 0,
		      "[%s] %s: expected datagram '%s\\r\\n', got %s", cur->tcase, u->label,
		      escs(want), describe(n, got));
}

_printf_(2, 3) static void
uc_expectf(struct uclient *u, const char *fmt, ...)
{
	char want[LINE_MAX_BYTES];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	uc_expect(u, want);
}

static void
uc_expect_prefix(struct uclient *u, const char *prefix, char *line, size_t max)
{
	char got[LINE_MAX_BYTES];
	ssize_t n = uc_recv(u, got, sizeof(got), IO_MS);

	ck_assert_msg(n >= 0 && strncmp(got, prefix, strlen(prefix)) == 0,
		      "[%s] %s: expected a datagram starting '%s', got %s", cur->tcase, u->label,
		      escs(prefix), describe(n, got));
	if (line)
		snprintf(line, max, "%s", got);
}

static void
uc_who(struct uclient *u, const char *const *names, size_t n)
{
	char got[LINE_MAX_BYTES];
	ssize_t r;

	uc_send(u, "/who");
	r = uc_recv(u, got, sizeof(got), IO_MS);
	ck_assert_msg(r >= 0 && who_matches(got, names, n),
		      "[%s] %s: expected the /who answer listing %zu (first '%s'), got %s",
		      cur->tcase, u->label, n, n ? names[0] : "", describe(r, got));
}

static void
uc_who_after_notices(struct uclient *u, const char *const *names, size_t n, const char *what)
{
	char got[LINE_MAX_BYTES];

	uc_send(u, "/who");
	for (int i = 0; i < 32; i++) {
		ssize_t r = uc_recv(u, got, sizeof(got), IO_MS);

		ck_assert_msg(r >= 0 && strncmp(got, "* ", 2) == 0,
			      "[%s] %s: after %s expected notices then the /who answer, got %s",
			      cur->tcase, u->label, what, describe(r, got));
		if (is_who_answer(got)) {
			ck_assert_msg(who_matches(got, names, n),
				      "[%s] %s: after %s: /who answer '%s' does not list %zu (first '%s')",
				      cur->tcase, u->label, what, escs(got), n, names[0]);
			return;
		}
	}
	ck_abort_msg("[%s] %s: after %s: no /who answer", cur->tcase, u->label, what);
}

/* Send line as the first datagram; the answer must offer nick a token,
 * which goes to ret_token. */
static void
uc_ask_token(struct uclient *u, const char *line, const char *nick, char *ret_token, size_t len)
{
	char prefix[128], got[LINE_MAX_BYTES];
	const char *token;

	uc_send(u, line);
	snprintf(prefix, sizeof(prefix), "* to join as %s, send: /join ", nick);
	uc_expect_prefix(u, prefix, got, sizeof(got));
	token = got + strlen(prefix);
	ck_assert_msg(strlen(token) >= 8 && !strpbrk(token, " \t"),
		      "[%s] %s: join token '%s' is empty, short or has blanks", cur->tcase,
		      u->label, escs(token));
	snprintf(ret_token, len, "%s", token);
}

/* A peer through the whole handshake; others[] are the joined peers. */
static struct uclient
uc_join_with(const char *nick, const char *first, struct uclient *const *others, size_t n)
{
	struct uclient u = uc_open(nick);
	char token[512];

	uc_ask_token(&u, first, nick, token, sizeof(token));
	uc_sendf(&u, "/join %s", token);
	uc_expectf(&u, "* you are %s@%s; %zu online", nick, HOST, n + 1);
	for (size_t i = 0; i < n; i++)
		uc_expectf(others[i], "* %s@%s joined; %zu online", nick, HOST, n + 1);
	return u;
}

static struct uclient
uc_join(const char *nick, struct uclient *const *others, size_t n)
{
	return uc_join_with(nick, nick, others, n);
}

/* ---- UDP tests ---- */

START_TEST(chat_udp_join_handshake)
{
	_cleanup_(uc_closep) struct uclient alice = { .fd = -1 }, bob = { .fd = -1 },
					    carol = { .fd = -1 };
	static const char *const abc[] = { "alice", "bob", "carol" };
	char token_a[512], token_b[512], token_c[512];

	start_chat(NULL, NULL);
	alice = uc_open("alice");
	uc_ask_token(&alice, "alice", "alice", token_a, sizeof(token_a));
	uc_sendf(&alice, "/join %s", token_a);
	uc_expectf(&alice, "* you are alice@%s; 1 online", HOST);

	/* The classic form, and a datagram ending in CRLF. */
	bob = uc_open("bob");
	uc_ask_token(&bob, "NAME: bob", "bob", token_b, sizeof(token_b));
	ck_assert_msg(strcmp(token_a, token_b) != 0, "[%s] two peers got the same token '%s'",
		      cur->tcase, escs(token_a));
	uc_sendf(&bob, "/join %s\r\n", token_b);
	uc_expectf(&bob, "* you are bob@%s; 2 online", HOST);
	uc_expectf(&alice, "* bob@%s joined; 2 online", HOST);

	/* SPEC's own example, in join order. */
	uc_send(&alice, "/who");
	uc_expectf(&alice, "* 2 online: alice@%s, bob@%s", HOST, HOST);

	/* Invalid and taken names, then a good one. */
	carol = uc_open("carol");
	uc_send(&carol, "no way!");
	uc_expect_prefix(&carol, "! invalid name", NULL, 0);
	uc_send(&carol, "alice");
	uc_expect(&carol, "! name \"alice\" is taken");
	uc_send(&carol, "abcdefghijklmnopqrstuvwxyz0123456"); /* 33 characters */
	uc_expect_prefix(&carol, "! invalid name", NULL, 0);
	uc_ask_token(&carol, "carol\n", "carol", token_c, sizeof(token_c));
	uc_sendf(&carol, "/join %s", token_c);
	uc_expectf(&carol, "* you are carol@%s; 3 online", HOST);
	uc_expectf(&alice, "* carol@%s joined; 3 online", HOST);
	uc_expectf(&bob, "* carol@%s joined; 3 online", HOST);

	uc_who(&alice, abc, 3);
	uc_who(&bob, abc, 3);
	uc_who(&carol, abc, 3);
}
END_TEST

START_TEST(chat_udp_token_is_bound_to_the_address)
{
	_cleanup_(uc_closep) struct uclient carol = { .fd = -1 }, a = { .fd = -1 },
					    b = { .fd = -1 }, d = { .fd = -1 };
	static const char *const c1[] = { "carol" };
	static const char *const c2[] = { "carol", "alice" };
	char token[512], wrong[512];
	size_t len;

	start_chat(NULL, NULL);
	carol = uc_join("carol", NULL, 0);

	/* A's token, sent from B (another source port): B does not join. */
	a = uc_open("alice(A)");
	b = uc_open("B");
	uc_ask_token(&a, "alice", "alice", token, sizeof(token));
	uc_sendf(&b, "/join %s", token);
	uc_expect_prefix(&b, "! ", NULL, 0);
	uc_who(&carol, c1, 1);

	/* From A itself it works. */
	uc_sendf(&a, "/join %s", token);
	uc_expectf(&a, "* you are alice@%s; 2 online", HOST);
	uc_expectf(&carol, "* alice@%s joined; 2 online", HOST);
	uc_who(&carol, c2, 2);

	/* A wrong token: one error reply, no join; the next datagram gets
	 * its own answer. */
	d = uc_open("dave");
	uc_ask_token(&d, "dave", "dave", token, sizeof(token));
	snprintf(wrong, sizeof(wrong), "%s", token);
	len = strlen(wrong);
	wrong[len - 1] = wrong[len - 1] == '0' ? '1' : '0';
	uc_sendf(&d, "/join %s", wrong);
	uc_expect_prefix(&d, "! ", NULL, 0);
	uc_who(&carol, c2, 2);
	uc_ask_token(&d, "dave", "dave", token, sizeof(token));
	uc_sendf(&d, "/join %s", token);
	uc_expectf(&d, "* you are dave@%s; 3 online", HOST);
	uc_expectf(&carol, "* dave@%s joined; 3 online", HOST);
	uc_expectf(&a, "* dave@%s joined; 3 online", HOST);
}
END_TEST

START_TEST(chat_udp_stranger_gets_one_reply_per_datagram)
{
	_cleanup_(uc_closep) struct uclient carol = { .fd = -1 }, pat = { .fd = -1 },
					    dave = { .fd = -1 };
	struct uclient *room[1];
	static const char *const c[] = { "carol" };
	static const char *const cd[] = { "carol", "dave" };
	char token[512], want[600], got[LINE_MAX_BYTES];
	ssize_t r;

	start_chat(NULL, NULL);
	carol = uc_join("carol", NULL, 0);
	room[0] = &carol;
	pat = uc_open("pat (not joined)");
	uc_ask_token(&pat, "pat", "pat", token, sizeof(token));

	/* Room traffic while pat waits: a join notice and messages. The
	 * message goes after dave's join: with two workers nothing else
	 * tells when one of carol's datagrams has been served, so dave's
	 * receipt is the sentinel. */
	uc_who(&carol, c, 1);
	dave = uc_join("dave", room, 1);
	uc_send(&carol, "hello everyone");
	uc_expect(&dave, "<carol> hello everyone");
	uc_send(&carol, "second");
	uc_expect(&dave, "<carol> second");

	/* Each of pat's datagrams gets exactly its own answer: with a token
	 * given, the join instruction again. */
	snprintf(want, sizeof(want), "* to join as pat, send: /join %s", token);
	uc_send(&pat, "x y");
	uc_expect(&pat, want);
	uc_send(&pat, "/who");
	r = uc_recv(&pat, got, sizeof(got), IO_MS);
	ck_assert_msg(r >= 0 && got[0] != '<' && !strstr(got, "carol") && strcmp(got, want) == 0,
		      "[%s] a stranger's /who: expected one reply revealing nothing, '%s', got %s",
		      cur->tcase, escs(want), describe(r, got));
	uc_ask_token(&pat, "pat", "pat", token, sizeof(token));
	uc_send(&dave, "third");
	uc_expect(&carol, "<dave> third");
	uc_ask_token(&pat, "pat", "pat", token, sizeof(token));
	uc_who(&carol, cd, 2);
	uc_who(&dave, cd, 2);
}
END_TEST

/* A pending peer that sends other datagrams before its /join keeps its
 * token: each datagram gets exactly one reply (the instruction again), a
 * name-like one replaces the pending name, and nothing is relayed to or
 * about it meanwhile. */
START_TEST(chat_udp_lines_before_join_keep_the_token)
{
	_cleanup_(uc_closep) struct uclient alice = { .fd = -1 }, carol = { .fd = -1 };
	static const char *const a[] = { "alice" };
	static const char *const ac[] = { "alice", "carol" };
	char token[512], want[600];

	start_chat(NULL, NULL);
	alice = uc_join("alice", NULL, 0);
	carol = uc_open("carol (pending)");
	uc_ask_token(&carol, "carol", "carol", token, sizeof(token));
	snprintf(want, sizeof(want), "* to join as carol, send: /join %s", token);

	uc_send(&alice, "anyone there?");
	uc_send(&carol, "/who");
	uc_expect(&carol, want);
	uc_send(&carol, "hi there");
	uc_expect(&carol, want);
	/* A greeting that is a valid name: now the pending name, same token. */
	uc_send(&carol, "hello");
	uc_expectf(&carol, "* to join as hello, send: /join %s", token);
	uc_send(&carol, "carol");
	uc_expect(&carol, want);
	/* alice heard nothing about carol: her /who answer is next. */
	uc_who(&alice, a, 1);

	/* The very next datagram for carol is the answer to her /join. */
	uc_sendf(&carol, "/join %s", token);
	uc_expectf(&carol, "* you are carol@%s; 2 online", HOST);
	uc_expectf(&alice, "* carol@%s joined; 2 online", HOST);
	uc_who(&carol, ac, 2);
	uc_who(&alice, ac, 2);
}
END_TEST

START_TEST(chat_udp_relay_and_commands)
{
	_cleanup_(uc_closep) struct uclient alice = { .fd = -1 }, bob = { .fd = -1 },
					    dave = { .fd = -1 };
	struct uclient *room[3];
	static const char *const abd[] = { "alice", "bob", "dave" };
	static const char *const cbd[] = { "carol", "bob", "dave" };
	static const char *const bd[] = { "bob", "dave" };
	char token[512], got[LINE_MAX_BYTES];

	start_chat(NULL, NULL);
	alice = uc_join("alice", NULL, 0);
	room[0] = &alice;
	bob = uc_join("bob", room, 1);
	room[1] = &bob;
	dave = uc_join("dave", room, 2);
	room[2] = &dave;

	uc_send(&alice, "hello everyone");
	uc_expect(&bob, "<alice> hello everyone");
	uc_expect(&dave, "<alice> hello everyone");
	uc_who(&alice, abd, 3);
	uc_send(&bob, "with lf\n");
	uc_expect(&alice, "<bob> with lf");
	uc_expect(&dave, "<bob> with lf");
	uc_send(&dave, "with crlf\r\n");
	uc_expect(&alice, "<dave> with crlf");
	uc_expect(&bob, "<dave> with crlf");
	uc_who(&bob, abd, 3);
	uc_who(&dave, abd, 3);

	uc_send(&alice, "/nick bob");
	uc_expect(&alice, "! name \"bob\" is taken");
	uc_send(&alice, "/nick carol");
	uc_expect(&bob, "* alice is now carol");
	uc_expect(&dave, "* alice is now carol");
	uc_who_after_notices(&alice, cbd, 3, "/nick carol");

	uc_send(&alice, "/me waves");
	uc_expect(&bob, "* carol waves");
	uc_expect(&dave, "* carol waves");
	uc_who_after_notices(&alice, cbd, 3, "/me waves");

	uc_send(&alice, "/msg bob hi there");
	uc_expect(&bob, "<carol> (private) hi there");
	uc_who(&dave, cbd, 3);
	uc_who_after_notices(&alice, cbd, 3, "/msg bob hi there");
	uc_send(&alice, "/msg zed hi");
	uc_expect(&alice, "! no such user \"zed\"");

	/* /help: one or more notice datagrams, then nothing until the marker. */
	uc_send(&alice, "/help");
	uc_expect_prefix(&alice, "* ", NULL, 0);
	uc_send(&alice, "/who");
	for (int i = 0; i < 64; i++) {
		ssize_t r = uc_recv(&alice, got, sizeof(got), IO_MS);

		ck_assert_msg(r >= 0 && strncmp(got, "* ", 2) == 0,
			      "[%s] /help: expected '* ' datagrams, got %s", cur->tcase,
			      describe(r, got));
		if (is_who_answer(got)) {
			ck_assert_msg(who_matches(got, cbd, 3), "[%s] /who after /help: '%s'",
				      cur->tcase, escs(got));
			break;
		}
	}
	uc_who(&alice, cbd, 3);

	uc_send(&alice, "/bogus");
	uc_expect(&alice, "! unknown command \"/bogus\"; try /help");
	uc_send(&alice, "//x");
	uc_expect(&bob, "<carol> /x");
	uc_expect(&dave, "<carol> /x");
	uc_who(&alice, cbd, 3);

	/* /quit: the others hear it; the address is a stranger again. */
	uc_send(&alice, "/quit bye");
	uc_expect(&bob, "* carol left (bye); 2 online");
	uc_expect(&dave, "* carol left (bye); 2 online");
	uc_who(&bob, bd, 2);
	uc_ask_token(&alice, "hello", "hello", token, sizeof(token));
	uc_who(&bob, bd, 2);
	uc_send(&bob, "/quit");
	uc_expect(&dave, "* bob left; 1 online");
	{
		static const char *const d[] = { "dave" };

		uc_who(&dave, d, 1);
	}
}
END_TEST

START_TEST(chat_udp_sanitizes_relayed_text)
{
	_cleanup_(uc_closep) struct uclient alice = { .fd = -1 }, bob = { .fd = -1 };
	struct uclient *room[1];
	static const char *const ab[] = { "alice", "bob" };
	char want[256];

	start_chat(NULL, NULL);
	alice = uc_join("alice", NULL, 0);
	room[0] = &alice;
	bob = uc_join("bob", room, 1);
	for (size_t i = 0; i < ELEMENTSOF(sanitize_cases); i++) {
		const struct sanitize_case *sc = &sanitize_cases[i];
		char got[LINE_MAX_BYTES];
		ssize_t r, n = send(alice.fd, sc->in, sc->in_len, 0);

		ck_assert_int_eq(n, (ssize_t)sc->in_len);
		snprintf(want, sizeof(want), "<alice> %s", sc->out);
		r = uc_recv(&bob, got, sizeof(got), IO_MS);
		ck_assert_msg(r >= 0 && (size_t)r == strlen(want) &&
				      memcmp(got, want, (size_t)r) == 0,
			      "[%s] %s: sent '%s', expected '%s\\r\\n', got %s", cur->tcase,
			      sc->what, esc(sc->in, sc->in_len), escs(want), describe(r, got));
	}
	uc_who(&alice, ab, 2);
	uc_who(&bob, ab, 2);
}
END_TEST

START_TEST(chat_udp_idle_peer_is_forgotten)
{
	_cleanup_(uc_closep) struct uclient alice = { .fd = -1 }, bob = { .fd = -1 };
	struct uclient *room[1];
	static const char *const b[] = { "bob" };
	char token[512], got[LINE_MAX_BYTES];
	uint64_t t0, deadline, waited;
	bool left = false;

	start_chat("idle_timeout = 2;", NULL);
	alice = uc_open("alice");
	uc_ask_token(&alice, "alice", "alice", token, sizeof(token));
	t0 = now_usec(); /* alice's last datagram goes out after this */
	uc_sendf(&alice, "/join %s", token);
	uc_expectf(&alice, "* you are alice@%s; 1 online", HOST);
	room[0] = &alice;
	bob = uc_join("bob", room, 1);

	/* bob keeps talking (a /who when the line is quiet), alice is silent. */
	deadline = t0 + 6 * USEC_PER_SEC;
	while (!left) {
		uint64_t now = now_usec();
		ssize_t r;

		ck_assert_msg(now < deadline,
			      "[%s] idle_timeout = 2: bob heard no '* alice left; 1 online' within 6 s",
			      cur->tcase);
		r = uc_recv(&bob, got, sizeof(got), (int)MIN((deadline - now) / 1000 + 1, 500));
		if (r == -ETIMEDOUT) {
			uc_send(&bob, "/who");
			continue;
		}
		ck_assert_msg(r >= 0, "[%s] bob: %s", cur->tcase, strerror((int)-r));
		if (strcmp(got, "* alice left; 1 online") == 0)
			left = true;
		else
			ck_assert_msg(is_who_answer(got),
				      "[%s] bob waiting for alice to time out got '%s'", cur->tcase,
				      escs(got));
	}
	waited = (now_usec() - t0) / USEC_PER_MSEC;
	ck_assert_msg(waited >= 1800, "[%s] idle_timeout = 2: forgotten after only %" PRIu64 " ms",
		      cur->tcase, waited);

	/* Forgotten: alice's next datagram is a stranger's first, not a
	 * message. */
	uc_ask_token(&alice, "hello", "hello", token, sizeof(token));
	uc_who(&bob, b, 1);
}
END_TEST

START_TEST(chat_udp_sigterm_tells_joined_peers)
{
	_cleanup_(uc_closep) struct uclient alice = { .fd = -1 }, bob = { .fd = -1 };
	struct uclient *room[1];
	int r;

	start_chat(NULL, NULL);
	alice = uc_join("alice", NULL, 0);
	room[0] = &alice;
	bob = uc_join("bob", room, 1);

	r = harness_stop(&srv, SIGTERM);
	srv_started = false;
	ck_assert_msg(r == 0, "[%s] SIGTERM with chat peers: exit %d, expected 0", cur->tcase, r);
	uc_expect(&alice, "* server shutting down");
	uc_expect(&bob, "* server shutting down");
}
END_TEST

/* ---- TCP name timeout, every model at once ---- */

/* SPEC 5.2: no valid name within 30 s -> closed. The wait is long, so one
 * daemon serves a tcp chat listener per model and the clients wait side
 * by side: about 30 s in all, not 30 s a model. */
#define NAME_TIMEOUT_MS 30000
/* How late after connecting the notice and the close may come: the
 * handlers look at the deadline at least once a second. */
/* Late by more than this is the bug (it closed only when something else
 * happened); less is a loaded machine. */
#define NAME_TIMEOUT_SLACK_MS 10000
#define NAME_DEADLINE_USEC ((NAME_TIMEOUT_MS + NAME_TIMEOUT_SLACK_MS) * USEC_PER_MSEC)

/* Not rows of the matrix: names for the messages. */
static const struct harness_combo name_timeout_combo = { "name-timeout", "tcp", "all", 0,
							  "all" };

/* Until deadline, but at least a moment: what came meanwhile, while
 * another client was waited for, is in the socket and counts. */
static int
remaining_ms(uint64_t deadline)
{
	uint64_t now = now_usec();

	return now + 200 * USEC_PER_MSEC < deadline ? (int)((deadline - now) / USEC_PER_MSEC) : 200;
}

/* "" when client c, connected at t0, got the notice then EOF in time;
 * else what it got, into why. */
static void
check_name_timeout(struct tclient *c, uint64_t t0, char *why, size_t size)
{
	char got[LINE_MAX_BYTES];
	uint64_t at;
	ssize_t n;

	n = tc_read_line(c, got, sizeof(got), remaining_ms(t0 + NAME_DEADLINE_USEC));
	at = now_usec() - t0;
	if (n < 0 || strcmp(got, "! no name given within 30 s") != 0) {
		snprintf(why, size,
			 "; %s: expected '! no name given within 30 s', got %s after %.1f s",
			 c->label, describe(n, got), (double)at / USEC_PER_SEC);
		return;
	}
	if (at + USEC_PER_SEC < NAME_TIMEOUT_MS * USEC_PER_MSEC) {
		snprintf(why, size, "; %s: the name timeout came after %.1f s, not 30 s", c->label,
			 (double)at / USEC_PER_SEC);
		return;
	}
	n = tc_read_line(c, got, sizeof(got), remaining_ms(t0 + NAME_DEADLINE_USEC));
	if (n != GOT_EOF)
		snprintf(why, size, "; %s: after the notice expected the close, got %s at %.1f s",
			 c->label, describe(n, got), (double)(now_usec() - t0) / USEC_PER_SEC);
}

START_TEST(chat_tcp_unnamed_client_is_closed_after_30_s_on_every_model)
{
	/* A room for every tcp combination of the matrix, in one daemon. */
	enum { N_ROOMS_MAX = 8 };
	const struct harness_combo *rooms[N_ROOMS_MAX];
	struct hl_listener ls[N_ROOMS_MAX];
	struct tclient *c[N_ROOMS_MAX] = { NULL };
	char names[N_ROOMS_MAX][32], extras[N_ROOMS_MAX][64], failed[4096] = "";
	uint64_t t0[N_ROOMS_MAX];
	size_t n = 0;
	int r;

	cur = &name_timeout_combo;
	HARNESS_FOR_EACH_COMBO(k, HARNESS_COMBO_TCP | HARNESS_COMBO_WORKERS) {
		ck_assert_uint_lt(n, N_ROOMS_MAX);
		rooms[n] = k;
		snprintf(names[n], sizeof(names[n]), "room-%s", k->label);
		ls[n] = harness_combo_listener(k, names[n], "chat", NULL, extras[n],
					       sizeof(extras[n]));
		n++;
	}
	srv = (struct hdaemon){ 0 };
	r = harness_start(&srv, ls, n, NULL);
	ck_assert_msg(r == 0, "[%s] netechod with a chat listener per model did not start: %s",
		      cur->tcase, strerror(-r));
	srv_started = true;

	for (size_t i = 0; i < n; i++) {
		int fd = harness_tcp_connect(ls[i].port);

		ck_assert_msg(fd >= 0, "[%s] connect to %s: %s", cur->tcase, names[i],
			      strerror(-fd));
		t0[i] = now_usec();
		c[i] = tc_wrap(fd, rooms[i]->label);
		tc_expectf(c[i], "* welcome to %s (0 online); send your name", names[i]);
	}
	/* Each client in turn, against its own deadline: the others' lines
	 * wait in their sockets meanwhile. Every model is looked at before
	 * failing, so the message names all that are wrong. */
	for (size_t i = 0; i < n; i++) {
		size_t o = strlen(failed);

		check_name_timeout(c[i], t0[i], failed + o, sizeof(failed) - o);
	}
	for (size_t i = 0; i < n; i++)
		c[i] = tc_free(c[i]);
	ck_assert_msg(!failed[0],
		      "[%s] an unnamed client must get the notice and the close 30 s after "
		      "connecting, within %d s%s",
		      cur->tcase, (NAME_TIMEOUT_MS + NAME_TIMEOUT_SLACK_MS) / 1000, failed);
}
END_TEST

/* ---- IPv6: HOST is the numeric address ---- */

static const struct harness_combo ipv6_combos[] = {
	{ "ipv6-tcp-poll", "tcp", "poll", 0, "poll" },
	{ "ipv6-udp-poll", "udp", "poll", 0, "poll" },
};

static bool
start_ipv6(const struct harness_combo *c)
{
	int r;

	cur = c;
	/* Tagged ipv6: chat-net-ipv6 skips (77) without ::1. */
	ck_assert_msg(harness_have_ipv6(), "[%s] no IPv6 loopback", cur->tcase);
	srv_listener = (struct hl_listener){ .name = ROOM, .protocol = c->protocol,
					     .model = c->model, .service = "chat",
					     .address = "::1" };
	srv = (struct hdaemon){ 0 };
	r = harness_start(&srv, &srv_listener, 1, NULL);
	ck_assert_msg(r == 0, "[%s] netechod on ::1 did not start: %s", cur->tcase, strerror(-r));
	srv_started = true;
	return true;
}

START_TEST(chat_tcp_ipv6_host_is_numeric)
{
	_cleanup_(tc_freep) struct tclient *alice = NULL, *bob = NULL;
	int fd;

	if (!start_ipv6(&ipv6_combos[0]))
		return;
	fd = harness_tcp_connect_addr("::1", srv_listener.port);
	ck_assert_msg(fd >= 0, "[%s] connect to ::1: %s", cur->tcase, strerror(-fd));
	alice = tc_wrap(fd, "alice");
	tc_expect(alice, "* welcome to " ROOM " (0 online); send your name");
	tc_send(alice, "alice\n");
	tc_expect(alice, "* you are alice@::1; 1 online");
	fd = harness_tcp_connect_addr("::1", srv_listener.port);
	ck_assert_msg(fd >= 0, "[%s] connect to ::1: %s", cur->tcase, strerror(-fd));
	bob = tc_wrap(fd, "bob");
	tc_expect(bob, "* welcome to " ROOM " (1 online); send your name");
	tc_send(bob, "bob\n");
	tc_expect(bob, "* you are bob@::1; 2 online");
	tc_expect(alice, "* bob@::1 joined; 2 online");
	tc_send(bob, "/who\n");
	tc_expect(bob, "* 2 online: alice@::1, bob@::1");
	stop_clean();
	srv_started = false;
}
END_TEST

START_TEST(chat_udp_ipv6_host_is_numeric)
{
	_cleanup_(uc_closep) struct uclient alice = { .fd = -1 };
	char prefix[64], got[LINE_MAX_BYTES];

	if (!start_ipv6(&ipv6_combos[1]))
		return;
	alice.fd = harness_udp_socket_addr("::1", 0, srv_listener.port);
	ck_assert_msg(alice.fd >= 0, "[%s] udp socket on ::1: %s", cur->tcase,
		      strerror(-alice.fd));
	snprintf(alice.label, sizeof(alice.label), "alice");
	uc_send(&alice, "alice");
	snprintf(prefix, sizeof(prefix), "* to join as alice, send: /join ");
	uc_expect_prefix(&alice, prefix, got, sizeof(got));
	uc_sendf(&alice, "/join %s", got + strlen(prefix));
	uc_expect(&alice, "* you are alice@::1; 1 online");
	stop_clean();
	srv_started = false;
}
END_TEST

/* ---- replies leave from the address each peer sent to (SPEC 4) ---- */

struct wpeer {
	const char *nick;
	const char *addr; /* where it sends to, and its own address */
	const char *host; /* as the room shows it */
};

/* A client bound to addr:0 and connect()ed to addr:port: it takes only
 * datagrams from addr:port, as nc -u does. */
static struct uclient
uc_open_at(const char *label, const char *addr)
{
	struct sockaddr_storage to, self;
	struct uclient u = { .fd = harness_udp_client(addr, srv_listener.port, false, &to) };

	ck_assert_msg(u.fd >= 0, "[%s] %s: udp socket for %s: %s", cur->tcase, label, addr,
		      strerror(-u.fd));
	self = to;
	if (self.ss_family == AF_INET)
		((struct sockaddr_in *)&self)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&self)->sin6_port = 0;
	ck_assert_msg(bind(u.fd, (struct sockaddr *)&self,
			   sockaddr_len((union sockaddr_any *)&self)) == 0 &&
			      connect(u.fd, (struct sockaddr *)&to,
				      sockaddr_len((union sockaddr_any *)&to)) == 0,
		      "[%s] %s: bind or connect to %s: %s", cur->tcase, label, addr, strerror(errno));
	snprintf(u.label, sizeof(u.label), "%s", label);
	return u;
}

/* Every peer joins through its own address of a "*" listener, then each
 * one's line reaches every other, and each answers /who: every step
 * fails for a peer whose datagrams leave from another address. */
static void
wildcard_room(const struct wpeer *ps, size_t n)
{
	struct uclient u[4];
	char token[512], who[256];
	size_t o;

	ck_assert_uint_le(n, ELEMENTSOF(u));
	start_chat_at("*");
	for (size_t i = 0; i < n; i++) {
		u[i] = uc_open_at(ps[i].nick, ps[i].addr);
		uc_ask_token(&u[i], ps[i].nick, ps[i].nick, token, sizeof(token));
		uc_sendf(&u[i], "/join %s", token);
		uc_expectf(&u[i], "* you are %s@%s; %zu online", ps[i].nick, ps[i].host, i + 1);
		for (size_t k = 0; k < i; k++)
			uc_expectf(&u[k], "* %s@%s joined; %zu online", ps[i].nick, ps[i].host,
				   i + 1);
	}
	for (size_t i = 0; i < n; i++) {
		uc_sendf(&u[i], "hello from %s", ps[i].addr);
		for (size_t k = 0; k < n; k++)
			if (k != i)
				uc_expectf(&u[k], "<%s> hello from %s", ps[i].nick, ps[i].addr);
	}
	o = (size_t)snprintf(who, sizeof(who), "* %zu online: ", n);
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(who + o, sizeof(who) - o, "%s%s@%s", i ? ", " : "",
				      ps[i].nick, ps[i].host);
	for (size_t i = 0; i < n; i++) {
		uc_send(&u[i], "/who");
		uc_expect(&u[i], who);
	}
	for (size_t i = 0; i < n; i++)
		safe_close(u[i].fd);
}

START_TEST(chat_udp_each_peer_hears_from_the_address_it_sent_to)
{
	static const struct wpeer ps[] = {
		{ "alice", "127.0.0.2", "127.0.0.2" },
		{ "bob", "127.0.0.3", "127.0.0.3" },
		{ "carol", "127.0.0.1", "127.0.0.1" },
	};

	wildcard_room(ps, ELEMENTSOF(ps));
}
END_TEST

START_TEST(chat_udp_ipv6_and_mapped_peers_on_wildcard)
{
	static const struct wpeer ps[] = {
		{ "alice", "::1", "::1" },
		{ "bob", "::ffff:127.0.0.2", "127.0.0.2" },
		{ "carol", "127.0.0.3", "127.0.0.3" },
	};

	cur = harness_combo_at((size_t)_i);
	wildcard_room(ps, ELEMENTSOF(ps));
}
END_TEST

static void
setup_none(void)
{
	srv_started = false;
}

static Suite *
chat_net_suite(void)
{
	Suite *s = suite_create("chat-net");
	TCase *tc;

	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_TCP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, teardown, TCASE_TIMEOUT);
		tcase_add_test(tc, chat_tcp_welcome_and_naming);
		tcase_add_test(tc, chat_tcp_relay_reaches_others_never_the_sender);
		tcase_add_test(tc, chat_tcp_commands);
		tcase_add_test(tc, chat_tcp_quit_and_close_announce_left);
		tcase_add_test(tc, chat_tcp_sanitizes_relayed_text);
		tcase_add_test(tc, chat_tcp_line_too_long_is_refused_client_stays);
		tcase_add_test(tc, chat_tcp_20_clients_50_messages_in_order);
		tcase_add_test(tc, chat_tcp_slow_consumer_is_disconnected);
		tcase_add_test(tc, chat_tcp_flood_drops_only_the_member_that_does_not_read);
		tcase_add_test(tc, chat_tcp_100_members_at_70_lines_per_second);
		tcase_add_test(tc, chat_tcp_server_full);
		tcase_add_test(tc, chat_tcp_rate_limit_says_slow_down);
		tcase_add_test(tc, chat_tcp_sigterm_tells_every_client);
		tcase_add_test(tc, chat_tcp_session_through_socat);
	}
	HARNESS_FOR_EACH_COMBO(c, HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS) {
		tc = harness_combo_tcase(s, c, NULL, setup, teardown, TCASE_TIMEOUT);
		tcase_add_test(tc, chat_udp_join_handshake);
		tcase_add_test(tc, chat_udp_token_is_bound_to_the_address);
		tcase_add_test(tc, chat_udp_stranger_gets_one_reply_per_datagram);
		tcase_add_test(tc, chat_udp_lines_before_join_keep_the_token);
		tcase_add_test(tc, chat_udp_relay_and_commands);
		tcase_add_test(tc, chat_udp_sanitizes_relayed_text);
		tcase_add_test(tc, chat_udp_idle_peer_is_forgotten);
		tcase_add_test(tc, chat_udp_sigterm_tells_joined_peers);
		tcase_add_test(tc, chat_udp_each_peer_hears_from_the_address_it_sent_to);
	}

	/* Its own case, so CK_RUN_CASE can pick it or run the rest without
	 * its 30 s wait. */
	tc = harness_tcase(s, "name-timeout", NULL, setup_none, teardown,
			   TCASE_TIMEOUT + NAME_TIMEOUT_MS / 1000);
	tcase_add_test(tc, chat_tcp_unnamed_client_is_closed_after_30_s_on_every_model);

	tc = harness_tcase(s, "ipv6", HARNESS_TAG_IPV6, setup_none, teardown, TCASE_TIMEOUT);
	tcase_add_test(tc, chat_tcp_ipv6_host_is_numeric);
	tcase_add_test(tc, chat_udp_ipv6_host_is_numeric);

	/* Needs ::1: tagged, run as meson test chat-net-ipv6, a skip without
	 * it. Each UDP combination is a loop iteration (its index in the
	 * harness's table). */
	tc = harness_tcase(s, "udp-ipv6-wildcard", HARNESS_TAG_IPV6, setup_none, teardown,
			   TCASE_TIMEOUT);
	harness_combo_add_loop_test(tc, chat_udp_ipv6_and_mapped_peers_on_wildcard,
				    HARNESS_COMBO_UDP | HARNESS_COMBO_WORKERS);
	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(chat_net_suite(), argc, argv);
}
