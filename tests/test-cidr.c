#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>

#include <check.h>

#include "cidr.h"
#include "util.h"

/* A numeric address (IPv4 or IPv6) as a socket address. */
static union sockaddr_any
sa_from(const char *s)
{
	union sockaddr_any sa;

	memset(&sa, 0, sizeof(sa));
	if (inet_pton(AF_INET, s, &sa.in.sin_addr) == 1) {
		sa.in.sin_family = AF_INET;
		sa.in.sin_port = htons(4242);
		return sa;
	}
	ck_assert_msg(inet_pton(AF_INET6, s, &sa.in6.sin6_addr) == 1, "bad test address %s", s);
	sa.in6.sin6_family = AF_INET6;
	sa.in6.sin6_port = htons(4242);
	return sa;
}

static const struct {
	const char *input;
	const char *expect; /* cidr_to_string() of the result, NULL: -EINVAL */
	int family;
} parse_cases[] = {
	{ "10.0.0.0/8", "10.0.0.0/8", AF_INET },
	{ "192.168.1.128/25", "192.168.1.128/25", AF_INET },
	{ "10.128.0.0/9", "10.128.0.0/9", AF_INET },
	{ "1.2.3.4", "1.2.3.4/32", AF_INET },
	{ "1.2.3.4/32", "1.2.3.4/32", AF_INET },
	{ "0.0.0.0/0", "0.0.0.0/0", AF_INET },
	{ "255.255.255.255/32", "255.255.255.255/32", AF_INET },
	{ "::1", "::1/128", AF_INET6 },
	{ "::1/128", "::1/128", AF_INET6 },
	{ "::/0", "::/0", AF_INET6 },
	{ "2001:db8::/32", "2001:db8::/32", AF_INET6 },
	{ "2001:DB8:0:0::/64", "2001:db8::/64", AF_INET6 },
	{ "fe80::/10", "fe80::/10", AF_INET6 },
	{ "::/95", "::/95", AF_INET6 },
	/* IPv4-mapped prefixes become IPv4 */
	{ "::ffff:10.0.0.0/104", "10.0.0.0/8", AF_INET },
	{ "::ffff:192.0.2.1", "192.0.2.1/32", AF_INET },
	{ "::ffff:192.0.2.1/128", "192.0.2.1/32", AF_INET },
	{ "::ffff:0:0/96", "0.0.0.0/0", AF_INET },
	/* host bits beyond the prefix */
	{ "10.0.0.1/8", NULL, 0 },
	{ "192.168.1.64/25", NULL, 0 },
	{ "10.192.0.0/9", NULL, 0 },
	{ "1.2.3.4/0", NULL, 0 },
	{ "2001:db8::1/32", NULL, 0 },
	{ "::1/0", NULL, 0 },
	{ "::ffff:10.0.0.1/104", NULL, 0 },
	{ "::ffff:0:0/95", NULL, 0 },
	/* malformed */
	{ "", NULL, 0 },
	{ "/8", NULL, 0 },
	{ "10.0.0.0/", NULL, 0 },
	{ "10.0.0.0/33", NULL, 0 },
	{ "10.0.0.0/-1", NULL, 0 },
	{ "10.0.0.0/8x", NULL, 0 },
	{ "10.0.0.0/8/8", NULL, 0 },
	{ "10.0.0.0/ 8", NULL, 0 },
	{ " 10.0.0.0/8", NULL, 0 },
	{ "10.0.0/8", NULL, 0 },
	{ "256.0.0.0/8", NULL, 0 },
	{ "::/129", NULL, 0 },
	{ "fe80::1%eth0", NULL, 0 },
	{ "example.com/8", NULL, 0 },
	{ "*", NULL, 0 },
	{ "10.0.0.0/99999999999999999999999", NULL, 0 },
	{ "0000:0000:0000:0000:0000:0000:0000:0000:0000/128", NULL, 0 },
};

START_TEST(cidr_parse_table)
{
	struct cidr c;
	char buf[CIDR_STR_MAX];
	int r;

	r = cidr_parse(parse_cases[_i].input, &c);
	if (!parse_cases[_i].expect) {
		ck_assert_msg(r == -EINVAL, "'%s' parsed, expected -EINVAL", parse_cases[_i].input);
		return;
	}
	ck_assert_msg(r == 0, "'%s' failed: %d", parse_cases[_i].input, r);
	ck_assert_int_eq(c.family, parse_cases[_i].family);
	ck_assert_str_eq(cidr_to_string(&c, buf, sizeof(buf)), parse_cases[_i].expect);
}
END_TEST

START_TEST(cidr_parse_null_is_invalid)
{
	struct cidr c;

	ck_assert_int_eq(cidr_parse(NULL, &c), -EINVAL);
}
END_TEST

START_TEST(cidr_parse_failure_leaves_result_alone)
{
	struct cidr c = { .family = 77, .prefixlen = 5 };

	ck_assert_int_eq(cidr_parse("10.0.0.1/8", &c), -EINVAL);
	ck_assert_int_eq(c.family, 77);
	ck_assert_uint_eq(c.prefixlen, 5);
}
END_TEST

START_TEST(cidr_to_string_longest_fits)
{
	struct cidr c;
	char buf[CIDR_STR_MAX];
	const char *longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128";

	ck_assert_int_eq(cidr_parse(longest, &c), 0);
	ck_assert_str_eq(cidr_to_string(&c, buf, sizeof(buf)), longest);
}
END_TEST

START_TEST(cidr_to_string_truncates_safely)
{
	struct cidr c;
	char buf[6];

	ck_assert_int_eq(cidr_parse("192.168.0.0/16", &c), 0);
	ck_assert_str_eq(cidr_to_string(&c, buf, sizeof(buf)), "192.1");
}
END_TEST

static const struct {
	const char *cidr;
	const char *source;
	bool match;
} match_cases[] = {
	{ "10.0.0.0/8", "10.1.2.3", true },
	{ "10.0.0.0/8", "10.255.255.255", true },
	{ "10.0.0.0/8", "11.0.0.0", false },
	{ "10.0.0.0/8", "9.255.255.255", false },
	{ "192.168.1.128/25", "192.168.1.200", true },
	{ "192.168.1.128/25", "192.168.1.127", false },
	{ "10.128.0.0/9", "10.200.0.1", true },
	{ "10.128.0.0/9", "10.127.0.1", false },
	/* /32 */
	{ "1.2.3.4/32", "1.2.3.4", true },
	{ "1.2.3.4/32", "1.2.3.5", false },
	/* /0 */
	{ "0.0.0.0/0", "8.8.8.8", true },
	{ "0.0.0.0/0", "255.255.255.255", true },
	{ "0.0.0.0/0", "::1", false },
	{ "::/0", "2001:db8::1", true },
	{ "::/0", "::", true },
	{ "::/0", "1.2.3.4", false },
	/* IPv4-mapped sources are IPv4 */
	{ "0.0.0.0/0", "::ffff:1.2.3.4", true },
	{ "::/0", "::ffff:1.2.3.4", false },
	{ "10.0.0.0/8", "::ffff:10.1.1.1", true },
	{ "10.0.0.0/8", "::ffff:11.1.1.1", false },
	{ "127.0.0.1/32", "::ffff:127.0.0.1", true },
	{ "::ffff:10.0.0.0/104", "10.2.3.4", true },
	{ "::ffff:10.0.0.0/104", "::ffff:10.2.3.4", true },
	/* IPv6 */
	{ "::1/128", "::1", true },
	{ "::1/128", "::2", false },
	{ "::1/128", "127.0.0.1", false },
	{ "2001:db8::/32", "2001:db8:ffff::1", true },
	{ "2001:db8::/32", "2001:db9::1", false },
	{ "fe80::/10", "fe80::1", true },
	{ "fe80::/10", "febf::1", true },
	{ "fe80::/10", "fec0::1", false },
	{ "2001:db8::1/128", "2001:db8::1", true },
	{ "2001:db8::1/128", "2001:db8::1:0", false },
	{ "::/127", "::1", true },
	{ "::/127", "::2", false },
};

START_TEST(cidr_match_table)
{
	union sockaddr_any sa = sa_from(match_cases[_i].source);
	struct cidr c;

	ck_assert_int_eq(cidr_parse(match_cases[_i].cidr, &c), 0);
	ck_assert_msg(cidr_match(&c, &sa) == match_cases[_i].match, "%s vs %s: expected %s",
		      match_cases[_i].cidr, match_cases[_i].source,
		      match_cases[_i].match ? "match" : "no match");
}
END_TEST

START_TEST(cidr_match_ignores_unknown_family)
{
	union sockaddr_any sa;
	struct cidr c;

	memset(&sa, 0, sizeof(sa));
	sa.sa.sa_family = AF_UNIX;
	ck_assert_int_eq(cidr_parse("0.0.0.0/0", &c), 0);
	ck_assert(!cidr_match(&c, &sa));
	ck_assert_int_eq(cidr_parse("::/0", &c), 0);
	ck_assert(!cidr_match(&c, &sa));
}
END_TEST

static const struct {
	const char *source;
	bool match;
} list_cases[] = {
	{ "10.9.9.9", true },
	{ "::ffff:10.9.9.9", true },
	{ "::1", true },
	{ "192.168.0.1", true },
	{ "192.168.1.1", false },
	{ "::2", false },
	{ "127.0.0.1", false },
};

START_TEST(cidr_list_match_table)
{
	static const char *const entries[] = { "10.0.0.0/8", "::1/128", "192.168.0.0/24" };
	union sockaddr_any sa = sa_from(list_cases[_i].source);
	struct cidr list[ELEMENTSOF(entries)];

	for (size_t i = 0; i < ELEMENTSOF(entries); i++)
		ck_assert_int_eq(cidr_parse(entries[i], &list[i]), 0);
	ck_assert_msg(cidr_list_match(list, ELEMENTSOF(list), &sa) == list_cases[_i].match,
		      "%s", list_cases[_i].source);
}
END_TEST

START_TEST(cidr_list_match_empty_matches_nothing)
{
	union sockaddr_any sa = sa_from("10.0.0.1");

	ck_assert(!cidr_list_match(NULL, 0, &sa));
}
END_TEST

START_TEST(cidr_equal_compares_family_prefix_and_address)
{
	struct cidr a, b;

	ck_assert_int_eq(cidr_parse("10.0.0.0/8", &a), 0);
	ck_assert_int_eq(cidr_parse("::ffff:10.0.0.0/104", &b), 0);
	ck_assert(cidr_equal(&a, &b));
	ck_assert_int_eq(cidr_parse("10.0.0.0/9", &b), 0);
	ck_assert(!cidr_equal(&a, &b));
	ck_assert_int_eq(cidr_parse("11.0.0.0/8", &b), 0);
	ck_assert(!cidr_equal(&a, &b));
	ck_assert_int_eq(cidr_parse("::/0", &a), 0);
	ck_assert_int_eq(cidr_parse("0.0.0.0/0", &b), 0);
	ck_assert(!cidr_equal(&a, &b));
	ck_assert_int_eq(cidr_parse("2001:db8::/32", &a), 0);
	ck_assert_int_eq(cidr_parse("2001:0db8:0::/32", &b), 0);
	ck_assert(cidr_equal(&a, &b));
}
END_TEST

static Suite *
cidr_suite(void)
{
	Suite *s = suite_create("cidr");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, cidr_parse_table, 0, (int)ELEMENTSOF(parse_cases));
	tcase_add_test(tc, cidr_parse_null_is_invalid);
	tcase_add_test(tc, cidr_parse_failure_leaves_result_alone);
	suite_add_tcase(s, tc);

	tc = tcase_create("to_string");
	tcase_add_test(tc, cidr_to_string_longest_fits);
	tcase_add_test(tc, cidr_to_string_truncates_safely);
	suite_add_tcase(s, tc);

	tc = tcase_create("match");
	tcase_add_loop_test(tc, cidr_match_table, 0, (int)ELEMENTSOF(match_cases));
	tcase_add_test(tc, cidr_match_ignores_unknown_family);
	suite_add_tcase(s, tc);

	tc = tcase_create("list_match");
	tcase_add_loop_test(tc, cidr_list_match_table, 0, (int)ELEMENTSOF(list_cases));
	tcase_add_test(tc, cidr_list_match_empty_matches_nothing);
	suite_add_tcase(s, tc);

	tc = tcase_create("equal");
	tcase_add_test(tc, cidr_equal_compares_family_prefix_and_address);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cidr_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
