#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "backend-url.h"
#include "util.h"

#define POISON 0xA5

static const struct {
	const char *input;
	enum backend_kind kind;
	const char *host_or_path;
	unsigned port, db;
	const char *user, *password;
	const char *redacted;
} good_cases[] = {
	{ "redis://localhost", BACKEND_TCP, "localhost", 6379, 0, "", "",
	  "redis://localhost:6379/0" },
	{ "redis://127.0.0.1", BACKEND_TCP, "127.0.0.1", 6379, 0, "", "",
	  "redis://127.0.0.1:6379/0" },
	{ "redis://[::1]", BACKEND_TCP, "::1", 6379, 0, "", "", "redis://[::1]:6379/0" },
	{ "redis://[2001:db8::7]:7000/3", BACKEND_TCP, "2001:db8::7", 7000, 3, "", "",
	  "redis://[2001:db8::7]:7000/3" },
	{ "redis://[::ffff:10.0.0.1]", BACKEND_TCP, "::ffff:10.0.0.1", 6379, 0, "", "",
	  "redis://[::ffff:10.0.0.1]:6379/0" },
	{ "redis://redis.example.com:6380", BACKEND_TCP, "redis.example.com", 6380, 0, "", "",
	  "redis://redis.example.com:6380/0" },
	{ "redis://host/15", BACKEND_TCP, "host", 6379, 15, "", "", "redis://host:6379/15" },
	{ "redis://host:1/0", BACKEND_TCP, "host", 1, 0, "", "", "redis://host:1/0" },
	{ "redis://host:65535", BACKEND_TCP, "host", 65535, 0, "", "",
	  "redis://host:65535/0" },
	{ "redis://host.", BACKEND_TCP, "host.", 6379, 0, "", "", "redis://host.:6379/0" },
	{ "redis://a-b.C-9", BACKEND_TCP, "a-b.C-9", 6379, 0, "", "",
	  "redis://a-b.C-9:6379/0" },
	{ "redis://bob:secret@host", BACKEND_TCP, "host", 6379, 0, "bob", "secret",
	  "redis://bob:***@host:6379/0" },
	{ "redis://:secret@host:7/2", BACKEND_TCP, "host", 7, 2, "", "secret",
	  "redis://:***@host:7/2" },
	/* the password may hold ':' and '@' raw: the last '@' ends it */
	{ "redis://bob:a:b@c@host", BACKEND_TCP, "host", 6379, 0, "bob", "a:b@c",
	  "redis://bob:***@host:6379/0" },
	{ "redis://b%3Ab%40:p%20w%2fx%41%ff@host", BACKEND_TCP, "host", 6379, 0, "b:b@",
	  "p w/xA\xff", "redis://b%3Ab%40:***@host:6379/0" },
	{ "redis://%e2%82%ac:pw@[::1]:6380/1", BACKEND_TCP, "::1", 6380, 1, "\xe2\x82\xac", "pw",
	  "redis://%E2%82%AC:***@[::1]:6380/1" },
	{ "unix:/run/redis/redis.sock", BACKEND_UNIX, "/run/redis/redis.sock", 0, 0, "", "",
	  "unix:/run/redis/redis.sock?db=0" },
	{ "unix:/tmp/r.sock?db=15", BACKEND_UNIX, "/tmp/r.sock", 0, 15, "", "",
	  "unix:/tmp/r.sock?db=15" },
	{ "unix:/a b@c:%41", BACKEND_UNIX, "/a b@c:%41", 0, 0, "", "", "unix:/a b@c:%41?db=0" },
	{ "unix:/", BACKEND_UNIX, "/", 0, 0, "", "", "unix:/?db=0" },
};

START_TEST(backend_url_parses_every_form)
{
	struct backend_url u;
	const char *why = "untouched";
	char buf[BACKEND_URL_STR_MAX];

	ck_assert_int_eq(backend_url_parse(good_cases[_i].input, &u, &why), 0);
	ck_assert_str_eq(why, "untouched");
	ck_assert_int_eq(u.kind, good_cases[_i].kind);
	if (u.kind == BACKEND_TCP) {
		ck_assert_str_eq(u.host, good_cases[_i].host_or_path);
		ck_assert_str_eq(u.path, "");
	} else {
		ck_assert_str_eq(u.path, good_cases[_i].host_or_path);
		ck_assert_str_eq(u.host, "");
	}
	ck_assert_uint_eq(u.port, good_cases[_i].port);
	ck_assert_uint_eq(u.db, good_cases[_i].db);
	ck_assert_str_eq(u.user, good_cases[_i].user);
	ck_assert_str_eq(u.password, good_cases[_i].password);
	ck_assert_str_eq(backend_url_redacted(&u, buf, sizeof(buf)), good_cases[_i].redacted);
}
END_TEST

/* The redacted form parses again to the same URL, "***" as the password. */
START_TEST(backend_url_redacted_parses_back)
{
	struct backend_url u, back;
	char buf[BACKEND_URL_STR_MAX];

	ck_assert_int_eq(backend_url_parse(good_cases[_i].input, &u, NULL), 0);
	backend_url_redacted(&u, buf, sizeof(buf));
	ck_assert_int_eq(backend_url_parse(buf, &back, NULL), 0);
	if (u.password[0]) {
		memset(u.password, 0, sizeof(u.password));
		strcpy(u.password, "***");
	}
	ck_assert_mem_eq(&u, &back, sizeof(u));
}
END_TEST

static const struct {
	const char *input;
	const char *why;
} bad_cases[] = {
	{ "", "must be redis://[USER:PASSWORD@]HOST[:PORT][/DB] or unix:PATH[?db=N]" },
	{ "localhost:6379", "must be redis://[USER:PASSWORD@]HOST[:PORT][/DB] or unix:PATH[?db=N]" },
	{ "REDIS://host", "must be redis://[USER:PASSWORD@]HOST[:PORT][/DB] or unix:PATH[?db=N]" },
	{ "redis:/host", "must be redis://[USER:PASSWORD@]HOST[:PORT][/DB] or unix:PATH[?db=N]" },
	{ "rediss://host", "rediss:// (TLS) is not supported" },
	{ "redis://", "host missing" },
	{ "redis://:6379", "host missing" },
	{ "redis:///1", "host missing" },
	{ "redis://bob:pw@", "host missing" },
	{ "redis://host:0", "port out of range" },
	{ "redis://host:65536", "port out of range" },
	{ "redis://host:99999999999999999999999", "port out of range" },
	{ "redis://host:", "port must be a number" },
	{ "redis://host:-1", "port must be a number" },
	{ "redis://host:+1", "port must be a number" },
	{ "redis://host:63 79", "port must be a number" },
	{ "redis://host:6379:1", "port must be a number" },
	{ "redis://host/16", "database must be 0-15" },
	{ "redis://host/", "database must be 0-15" },
	{ "redis://host/-1", "database must be 0-15" },
	{ "redis://host/1/2", "database must be 0-15" },
	{ "redis://host/1?x", "database must be 0-15" },
	{ "redis://host:6379/99999999999999999999", "database must be 0-15" },
	{ "redis://ho_st", "host must be a name of A-Z a-z 0-9 . - or an address" },
	{ "redis://ho st", "host must be a name of A-Z a-z 0-9 . - or an address" },
	{ "redis://h\xc3\xa9", "host must be a name of A-Z a-z 0-9 . - or an address" },
	{ "redis://host?db=1", "host must be a name of A-Z a-z 0-9 . - or an address" },
	{ "redis://::1", "port must be a number" },
	{ "redis://.host", "host name has an empty label" },
	{ "redis://a..b", "host name has an empty label" },
	{ "redis://256.0.0.1", "bad IPv4 address" },
	{ "redis://1.2.3", "bad IPv4 address" },
	{ "redis://01.2.3.4", "bad IPv4 address" },
	{ "redis://[::1", "bad IPv6 address" },
	{ "redis://[]", "bad IPv6 address" },
	{ "redis://[::g]", "bad IPv6 address" },
	{ "redis://[fe80::1%eth0]", "bad IPv6 address" },
	{ "redis://[127.0.0.1]", "bad IPv6 address" },
	{ "redis://[::1]x", "bad IPv6 address" },
	{ "redis://[::1]]", "bad IPv6 address" },
	{ "redis://[::1]:0", "port out of range" },
	{ "redis://[::1]/16", "database must be 0-15" },
	{ "redis://bob@host", "credentials must be USER:PASSWORD (USER may be empty)" },
	{ "redis://@host", "credentials must be USER:PASSWORD (USER may be empty)" },
	{ "redis://bob:@host", "empty password" },
	{ "redis://:@host", "empty password" },
	{ "redis://bob:p%4@host", "bad percent escape in user or password" },
	{ "redis://bob:p%@host", "bad percent escape in user or password" },
	{ "redis://bob:p%zz@host", "bad percent escape in user or password" },
	{ "redis://b%g0:pw@host", "bad percent escape in user or password" },
	{ "redis://bob:p%00w@host", "user or password contains %00" },
	{ "redis://bob:p w@host",
	  "user or password must percent-encode spaces and control characters" },
	{ "redis://b\tb:pw@host",
	  "user or password must percent-encode spaces and control characters" },
	{ "redis://bob:p\x7fw@host",
	  "user or password must percent-encode spaces and control characters" },
	{ "unix:", "unix socket path must be absolute" },
	{ "unix:run/redis.sock", "unix socket path must be absolute" },
	{ "unix:?db=1", "unix socket path must be absolute" },
	{ "unix:/tmp/r\x01.sock", "unix socket path has a control character" },
	{ "unix:/tmp/r\x7f.sock", "unix socket path has a control character" },
	{ "unix:/tmp/r.sock?db=16", "database must be 0-15" },
	{ "unix:/tmp/r.sock?db=", "database must be 0-15" },
	{ "unix:/tmp/r.sock?db=1&x=2", "database must be 0-15" },
	{ "unix:/tmp/r.sock?db=1?db=2", "database must be 0-15" },
	{ "unix:/tmp/r.sock?", "only ?db=N may follow the unix socket path" },
	{ "unix:/tmp/r.sock?DB=1", "only ?db=N may follow the unix socket path" },
	{ "unix:/tmp/r.sock?password=x", "only ?db=N may follow the unix socket path" },
};

START_TEST(backend_url_rejects_with_reason)
{
	struct backend_url u;
	const char *why = NULL;

	memset(&u, POISON, sizeof(u));
	ck_assert_int_eq(backend_url_parse(bad_cases[_i].input, &u, &why), -EINVAL);
	ck_assert_ptr_nonnull(why);
	ck_assert_str_eq(why, bad_cases[_i].why);
	for (size_t i = 0; i < sizeof(u); i++)
		ck_assert_uint_eq(((const unsigned char *)&u)[i], POISON);
	/* A NULL reterr changes nothing. */
	ck_assert_int_eq(backend_url_parse(bad_cases[_i].input, &u, NULL), -EINVAL);
}
END_TEST

START_TEST(backend_url_null_is_invalid)
{
	struct backend_url u;
	const char *why = NULL;

	ck_assert_int_eq(backend_url_parse(NULL, &u, &why), -EINVAL);
	ck_assert_str_eq(why, "backend missing");
}
END_TEST

/* n times c, NUL-terminated, into buf. */
static char *
repeat(char *buf, char c, size_t n)
{
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

START_TEST(backend_url_unix_path_up_to_107_bytes)
{
	struct backend_url u;
	char path[200], s[256];
	const char *why = NULL;

	repeat(path, 'p', 107);
	path[0] = '/';
	snprintf(s, sizeof(s), "unix:%s?db=1", path);
	ck_assert_int_eq(backend_url_parse(s, &u, NULL), 0);
	ck_assert_uint_eq(strlen(u.path), 107);
	ck_assert_str_eq(u.path, path);

	repeat(path, 'p', 108);
	path[0] = '/';
	snprintf(s, sizeof(s), "unix:%s", path);
	ck_assert_int_eq(backend_url_parse(s, &u, &why), -EINVAL);
	ck_assert_str_eq(why, "unix socket path too long (at most 107 bytes)");
}
END_TEST

START_TEST(backend_url_credentials_up_to_255_bytes)
{
	struct backend_url u;
	char cred[800], s[2048], buf[BACKEND_URL_STR_MAX];
	const char *why = NULL;

	/* 255 bytes, raw and as escapes */
	repeat(cred, 'x', 255);
	snprintf(s, sizeof(s), "redis://%s:%s@host", cred, cred);
	ck_assert_int_eq(backend_url_parse(s, &u, NULL), 0);
	ck_assert_uint_eq(strlen(u.user), 255);
	ck_assert_uint_eq(strlen(u.password), 255);
	for (size_t i = 0; i < 255; i++)
		memcpy(cred + 3 * i, "%7E", 3);
	cred[3 * 255] = '\0';
	snprintf(s, sizeof(s), "redis://%s:%s@host", cred, cred);
	ck_assert_int_eq(backend_url_parse(s, &u, NULL), 0);
	ck_assert_str_eq(u.password, repeat(buf, '~', 255));
	ck_assert_str_eq(u.user, buf);

	repeat(cred, 'x', 256);
	snprintf(s, sizeof(s), "redis://:%s@host", cred);
	ck_assert_int_eq(backend_url_parse(s, &u, &why), -EINVAL);
	ck_assert_str_eq(why, "password too long (at most 255 bytes)");
	snprintf(s, sizeof(s), "redis://%s:pw@host", cred);
	ck_assert_int_eq(backend_url_parse(s, &u, &why), -EINVAL);
	ck_assert_str_eq(why, "user too long (at most 255 bytes)");
}
END_TEST

START_TEST(backend_url_host_up_to_253_bytes)
{
	struct backend_url u;
	char host[300], s[400];
	const char *why = NULL;

	repeat(host, 'h', 253);
	snprintf(s, sizeof(s), "redis://%s:1", host);
	ck_assert_int_eq(backend_url_parse(s, &u, NULL), 0);
	ck_assert_str_eq(u.host, host);
	repeat(host, 'h', 254);
	snprintf(s, sizeof(s), "redis://%s:1", host);
	ck_assert_int_eq(backend_url_parse(s, &u, &why), -EINVAL);
	ck_assert_str_eq(why, "host name too long");
}
END_TEST

/* The longest URL's redacted form fits BACKEND_URL_STR_MAX, and a buffer
 * too small cuts it, NUL-terminated, never holding the password. */
START_TEST(backend_url_redacted_longest_fits_and_cuts)
{
	struct backend_url u;
	char s[2048], host[260], buf[BACKEND_URL_STR_MAX + 16];

	repeat(host, 'h', 253);
	snprintf(s, sizeof(s), "redis://");
	for (size_t i = 0; i < 255; i++)
		strcat(s, "%01");
	strcat(s, ":");
	for (size_t i = 0; i < 255; i++)
		strcat(s, "P");
	snprintf(s + strlen(s), sizeof(s) - strlen(s), "@%s:65535/15", host);
	ck_assert_int_eq(backend_url_parse(s, &u, NULL), 0);
	backend_url_redacted(&u, buf, sizeof(buf));
	ck_assert_uint_lt(strlen(buf), BACKEND_URL_STR_MAX);
	ck_assert_ptr_null(strstr(buf, "PP"));
	for (size_t size = 1; size < 64; size++) {
		memset(buf, 'Z', sizeof(buf));
		backend_url_redacted(&u, buf, size);
		ck_assert_uint_eq(strlen(buf), size - 1);
	}
	buf[0] = 'Z';
	ck_assert_ptr_eq(backend_url_redacted(&u, buf, 0), buf);
	ck_assert_int_eq(buf[0], 'Z');
}
END_TEST

/* A password never shows: not raw, not encoded, whatever else is there. */
START_TEST(backend_url_redacted_never_holds_the_password)
{
	static const char *const urls[] = {
		"redis://user:hunter2@host",
		"redis://:hunter2@[::1]:1/1",
		"redis://hunter:hunter2@hunter2x",
		"redis://u:%68unter2@h",
	};
	struct backend_url u;
	char buf[BACKEND_URL_STR_MAX];

	for (size_t i = 0; i < ELEMENTSOF(urls); i++) {
		ck_assert_int_eq(backend_url_parse(urls[i], &u, NULL), 0);
		ck_assert_str_eq(u.password, "hunter2");
		backend_url_redacted(&u, buf, sizeof(buf));
		ck_assert_ptr_nonnull(strstr(buf, ":***@"));
		if (strstr(buf, "hunter2"))
			ck_assert_ptr_nonnull(strstr(urls[i], "@hunter2x"));
	}
}
END_TEST

static const struct {
	const char *room;
	bool valid;
} room_cases[] = {
	{ "lobby", true },
	{ "a", true },
	{ "A-Z_a.z-0.9", true },
	{ "12345678901234567890123456789012", true },
	{ "123456789012345678901234567890123", false },
	{ "", false },
	{ "two words", false },
	{ "room:1", false },
	{ "r\xc3\xa9", false },
	{ "room/", false },
	{ "tab\t", false },
};

START_TEST(backend_room_valid_table)
{
	ck_assert_int_eq(backend_room_valid(room_cases[_i].room), room_cases[_i].valid);
}
END_TEST

START_TEST(backend_room_null_is_invalid)
{
	ck_assert(!backend_room_valid(NULL));
}
END_TEST

static Suite *
backend_url_suite(void)
{
	Suite *s = suite_create("backend-url");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, backend_url_parses_every_form, 0, (int)ELEMENTSOF(good_cases));
	tcase_add_loop_test(tc, backend_url_rejects_with_reason, 0, (int)ELEMENTSOF(bad_cases));
	tcase_add_test(tc, backend_url_null_is_invalid);
	suite_add_tcase(s, tc);

	tc = tcase_create("bounds");
	tcase_add_test(tc, backend_url_unix_path_up_to_107_bytes);
	tcase_add_test(tc, backend_url_credentials_up_to_255_bytes);
	tcase_add_test(tc, backend_url_host_up_to_253_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("redacted");
	tcase_add_loop_test(tc, backend_url_redacted_parses_back, 0, (int)ELEMENTSOF(good_cases));
	tcase_add_test(tc, backend_url_redacted_longest_fits_and_cuts);
	tcase_add_test(tc, backend_url_redacted_never_holds_the_password);
	suite_add_tcase(s, tc);

	tc = tcase_create("room");
	tcase_add_loop_test(tc, backend_room_valid_table, 0, (int)ELEMENTSOF(room_cases));
	tcase_add_test(tc, backend_room_null_is_invalid);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(backend_url_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
