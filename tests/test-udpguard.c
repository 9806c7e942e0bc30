#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>

#include "udpguard.h"
#include "util.h"

static union sockaddr_any
addr(const char *ip, uint16_t port)
{
	union sockaddr_any a = { 0 };

	if (strchr(ip, ':')) {
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
	} else {
		a.in.sin_family = AF_INET;
		a.in.sin_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET, ip, &a.in.sin_addr), 1);
	}
	return a;
}

static const struct {
	const char *ip;
	uint16_t port;
	enum udpguard_verdict want;
} cases[] = {
	{ "127.0.0.1", 40000, UDPGUARD_OK },
	{ "::1", 40000, UDPGUARD_OK },
	{ "::ffff:127.0.0.1", 40000, UDPGUARD_OK },
	{ "192.0.2.7", 1024, UDPGUARD_OK },
	{ "127.0.0.1", 1023, UDPGUARD_PRIVILEGED_PORT },
	{ "127.0.0.1", 7, UDPGUARD_PRIVILEGED_PORT },
	{ "127.0.0.1", 0, UDPGUARD_PRIVILEGED_PORT },
	{ "::1", 19, UDPGUARD_PRIVILEGED_PORT },
	{ "127.0.0.1", 1900, UDPGUARD_SERVICE_PORT },
	{ "127.0.0.1", 2049, UDPGUARD_SERVICE_PORT },
	{ "127.0.0.1", 3702, UDPGUARD_SERVICE_PORT },
	{ "127.0.0.1", 5353, UDPGUARD_SERVICE_PORT },
	{ "127.0.0.1", 5683, UDPGUARD_SERVICE_PORT },
	{ "127.0.0.1", 11211, UDPGUARD_SERVICE_PORT },
	{ "::1", 5353, UDPGUARD_SERVICE_PORT },
	{ "127.0.0.1", 7007, UDPGUARD_OWN_PORT },
	{ "0.0.0.0", 40000, UDPGUARD_UNSPECIFIED },
	{ "0.1.2.3", 40000, UDPGUARD_UNSPECIFIED },
	{ "::", 40000, UDPGUARD_UNSPECIFIED },
	{ "::ffff:0.0.0.0", 40000, UDPGUARD_UNSPECIFIED },
	{ "255.255.255.255", 40000, UDPGUARD_BROADCAST },
	{ "192.168.1.255", 40000, UDPGUARD_BROADCAST },
	{ "::ffff:255.255.255.255", 40000, UDPGUARD_BROADCAST },
	{ "224.0.0.1", 40000, UDPGUARD_MULTICAST },
	{ "239.255.255.250", 40000, UDPGUARD_MULTICAST },
	{ "ff02::1", 40000, UDPGUARD_MULTICAST },
	{ "::ffff:224.0.0.251", 40000, UDPGUARD_MULTICAST },
};

START_TEST(udpguard_classifies_sources)
{
	static const uint8_t bcast[4] = { 192, 168, 1, 255 };
	uint8_t map[8192] = { 0 };
	struct udpguard g = { .port_map = map };
	union sockaddr_any a = addr(cases[_i].ip, cases[_i].port);

	udpguard_port_map_set(map, 7007);
	ck_assert_int_eq(udpguard_add_broadcast(&g, bcast), 0);
	ck_assert_msg(udpguard_check(&g, &a) == cases[_i].want, "%s port %u: got '%s', want '%s'",
		      cases[_i].ip, cases[_i].port, udpguard_verdict_to_string(udpguard_check(&g, &a)),
		      udpguard_verdict_to_string(cases[_i].want));
}
END_TEST

START_TEST(udpguard_without_port_map_allows_unprivileged)
{
	struct udpguard g = { 0 };
	union sockaddr_any a = addr("127.0.0.1", 7007);

	ck_assert_int_eq(udpguard_check(&g, &a), UDPGUARD_OK);
}
END_TEST

START_TEST(udpguard_port_map_sets_only_its_bit)
{
	uint8_t map[8192] = { 0 };

	udpguard_port_map_set(map, 65535);
	udpguard_port_map_set(map, 1);
	ck_assert(udpguard_port_map_test(map, 65535));
	ck_assert(udpguard_port_map_test(map, 1));
	ck_assert(!udpguard_port_map_test(map, 0));
	ck_assert(!udpguard_port_map_test(map, 2));
	ck_assert(!udpguard_port_map_test(map, 65534));
}
END_TEST

START_TEST(udpguard_broadcast_table_is_bounded)
{
	struct udpguard g = { 0 };
	uint8_t a[4] = { 10, 0, 0, 255 };

	for (int i = 0; i < UDPGUARD_BCAST_MAX; i++) {
		a[2] = (uint8_t)i;
		ck_assert_int_eq(udpguard_add_broadcast(&g, a), 0);
	}
	a[2] = 200;
	ck_assert_int_eq(udpguard_add_broadcast(&g, a), -ENOSPC);
	/* duplicates are not stored twice */
	a[2] = 0;
	ck_assert_int_eq(udpguard_add_broadcast(&g, a), 0);
	ck_assert_uint_eq(g.n_bcast, UDPGUARD_BCAST_MAX);
}
END_TEST

static Suite *
udpguard_suite(void)
{
	Suite *s = suite_create("udpguard");
	TCase *tc = tcase_create("verdicts");

	tcase_add_loop_test(tc, udpguard_classifies_sources, 0, (int)ELEMENTSOF(cases));
	tcase_add_test(tc, udpguard_without_port_map_allows_unprivileged);
	suite_add_tcase(s, tc);
	tc = tcase_create("tables");
	tcase_add_test(tc, udpguard_port_map_sets_only_its_bit);
	tcase_add_test(tc, udpguard_broadcast_table_is_bounded);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(udpguard_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
