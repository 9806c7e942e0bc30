/* libFuzzer target for backend_url_parse() and backend_url_redacted()
 * (src/backend-url.h).
 *
 * The input, cut at its first NUL, is a `backend` setting. Oracles, each
 * an abort on failure:
 * - the result is 0 or -EINVAL with a reason; *ret is written on success
 *   only; a NULL reterr changes nothing; the same string parses the same
 *   again;
 * - a parsed URL is sane: its strings end inside their arrays, the kind's
 *   own fields only, port 1-65535, db 0-15, a password when there is a user;
 * - the redacted form never depends on the password (the same with any
 *   other), fits BACKEND_URL_STR_MAX, is cut cleanly to any size, and
 *   parses back to the same URL with "***" as the password;
 * - the URL printed with every credential byte as %XX parses back to the
 *   same URL. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-url.h"
#include "util.h"

#define FAIL(...)                                                  \
	do {                                                       \
		fprintf(stderr, "fuzz-backend-url: " __VA_ARGS__); \
		fputc('\n', stderr);                               \
		abort();                                           \
	} while (0)

#define POISON 0xA5

static void
poison(struct backend_url *u)
{
	memset(u, POISON, sizeof(*u));
}

static bool
poisoned(const struct backend_url *u)
{
	const uint8_t *b = (const uint8_t *)u;

	for (size_t i = 0; i < sizeof(*u); i++)
		if (b[i] != POISON)
			return false;
	return true;
}

static bool
same(const struct backend_url *a, const struct backend_url *b)
{
	return a->kind == b->kind && a->port == b->port && a->db == b->db &&
	       strcmp(a->host, b->host) == 0 && strcmp(a->path, b->path) == 0 &&
	       strcmp(a->user, b->user) == 0 && strcmp(a->password, b->password) == 0;
}

static void
check_sane(const struct backend_url *u)
{
	if (strnlen(u->host, sizeof(u->host)) == sizeof(u->host) ||
	    strnlen(u->path, sizeof(u->path)) == sizeof(u->path) ||
	    strnlen(u->user, sizeof(u->user)) == sizeof(u->user) ||
	    strnlen(u->password, sizeof(u->password)) == sizeof(u->password))
		FAIL("a string without its NUL");
	if (u->db > BACKEND_DB_MAX)
		FAIL("db %u", u->db);
	if (u->kind == BACKEND_TCP) {
		if (!u->host[0] || u->path[0] || u->port == 0)
			FAIL("tcp: host '%s', path '%s', port %u", u->host, u->path, u->port);
		if (u->user[0] && !u->password[0])
			FAIL("a user without a password");
	} else if (u->kind == BACKEND_UNIX) {
		if (u->path[0] != '/' || u->host[0] || u->port || u->user[0] || u->password[0])
			FAIL("unix: path '%s' with tcp fields", u->path);
	} else {
		FAIL("kind %d", (int)u->kind);
	}
}

static void
check_redacted(const struct backend_url *u)
{
	char buf[BACKEND_URL_STR_MAX + 8], other[BACKEND_URL_STR_MAX + 8];
	struct backend_url copy = *u, back;
	size_t len;
	int r;

	memset(buf, 'Z', sizeof(buf));
	backend_url_redacted(u, buf, sizeof(buf));
	len = strlen(buf);
	if (len >= BACKEND_URL_STR_MAX)
		FAIL("redacted form of %zu bytes", len);
	if (u->password[0]) {
		memset(copy.password, 0, sizeof(copy.password));
		memset(copy.password, 'q', 1 + (unsigned char)u->password[0] % BACKEND_CRED_MAX);
		backend_url_redacted(&copy, other, sizeof(other));
		if (strcmp(buf, other) != 0)
			FAIL("redacted form depends on the password: '%s', '%s'", buf, other);
		memset(copy.password, 0, sizeof(copy.password));
		strcpy(copy.password, "***");
	}
	for (size_t k = 1; k <= len + 1; k += 1 + k / 8) {
		memset(other, 'Z', sizeof(other));
		backend_url_redacted(u, other, k);
		if (strlen(other) != MIN(k - 1, len) || strncmp(other, buf, k - 1) != 0)
			FAIL("redacted into %zu bytes: '%s' of '%s'", k, other, buf);
	}
	poison(&back);
	r = backend_url_parse(buf, &back, NULL);
	if (r != 0)
		FAIL("redacted form '%s' parses to %d", buf, r);
	if (!same(&copy, &back))
		FAIL("redacted form '%s' parses to another URL", buf);
}

static size_t
encode_all(char *out, const char *s)
{
	size_t k = 0;

	for (; *s; s++)
		k += (size_t)sprintf(out + k, "%%%02x", (unsigned char)*s);
	return k;
}

/* tcp only: every credential byte escaped, the host as parsed. */
static void
check_encoded(const struct backend_url *u)
{
	char s[16 + 6 * BACKEND_CRED_MAX + BACKEND_HOST_MAX + 32];
	struct backend_url back;
	size_t k = 8;
	bool v6 = strchr(u->host, ':') != NULL;
	int r;

	memcpy(s, "redis://", 8);
	if (u->password[0]) {
		k += encode_all(s + k, u->user);
		s[k++] = ':';
		k += encode_all(s + k, u->password);
		s[k++] = '@';
	}
	snprintf(s + k, sizeof(s) - k, "%s%s%s:%u/%u", v6 ? "[" : "", u->host, v6 ? "]" : "",
		 u->port, u->db);
	poison(&back);
	r = backend_url_parse(s, &back, NULL);
	if (r != 0 || !same(u, &back))
		FAIL("fully escaped form parses to %d or another URL", r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct backend_url u, again;
	const char *why = NULL;
	char *s;
	int r, r2;

	if (size > 4096)
		return 0; /* longer than any setting worth parsing; nothing new */
	s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';

	poison(&u);
	r = backend_url_parse(s, &u, &why);
	if (r != 0 && (r != -EINVAL || !why))
		FAIL("result %d, reason %s", r, why ? why : "(none)");
	if (r != 0 && !poisoned(&u))
		FAIL("error wrote *ret");
	poison(&again);
	r2 = backend_url_parse(s, &again, NULL);
	if (r2 != r || (r == 0 && !same(&u, &again)))
		FAIL("parsed again: %d, then %d", r, r2);
	if (r == 0) {
		check_sane(&u);
		check_redacted(&u);
		if (u.kind == BACKEND_TCP)
			check_encoded(&u);
	}
	free(s);
	return 0;
}
