#include <check.h>
#include <stdlib.h>

#include "buffer.h"
#include "util.h"

START_TEST(buffer_starts_empty_without_memory)
{
	struct buffer b = { 0 };

	ck_assert_uint_eq(buffer_len(&b), 0);
	ck_assert_ptr_null(b.data);
	buffer_release(&b);
}
END_TEST

START_TEST(buffer_appends_and_consumes_in_order)
{
	struct buffer b = { 0 };

	ck_assert_int_eq(buffer_append(&b, "hello ", 6), 0);
	ck_assert_int_eq(buffer_append(&b, "world", 5), 0);
	ck_assert_uint_eq(buffer_len(&b), 11);
	ck_assert_mem_eq(buffer_data(&b), "hello world", 11);
	buffer_consume(&b, 6);
	ck_assert_uint_eq(buffer_len(&b), 5);
	ck_assert_mem_eq(buffer_data(&b), "world", 5);
	buffer_release(&b);
}
END_TEST

START_TEST(buffer_releases_memory_when_drained)
{
	struct buffer b = { 0 };

	ck_assert_int_eq(buffer_append(&b, "abc", 3), 0);
	ck_assert_ptr_nonnull(b.data);
	buffer_consume(&b, 3);
	ck_assert_uint_eq(buffer_len(&b), 0);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(buffer_reuses_consumed_head_before_growing)
{
	struct buffer b = { 0 };
	uint8_t chunk[700];
	size_t cap;

	memset(chunk, 'x', sizeof(chunk));
	ck_assert_int_eq(buffer_append(&b, chunk, sizeof(chunk)), 0);
	cap = b.cap;
	buffer_consume(&b, 600);
	/* 100 held + 700 more fits the same allocation after compaction. */
	ck_assert_int_eq(buffer_append(&b, chunk, sizeof(chunk)), 0);
	ck_assert_uint_eq(b.cap, cap);
	ck_assert_uint_eq(buffer_len(&b), 800);
	buffer_release(&b);
}
END_TEST

START_TEST(buffer_keeps_order_across_growth_and_consumption)
{
	struct buffer b = { 0 };
	size_t written = 0, read = 0;

	/* Append in growing chunks, consume in odd ones: every byte must
	 * come out in the order it went in. */
	for (size_t round = 1; round < 200; round++) {
		uint8_t chunk[997];
		size_t n = (round * 131) % sizeof(chunk) + 1, take;

		for (size_t i = 0; i < n; i++)
			chunk[i] = (uint8_t)((written + i) * 7 + 3);
		ck_assert_int_eq(buffer_append(&b, chunk, n), 0);
		written += n;
		take = MIN(buffer_len(&b), (round * 89) % 613);
		for (size_t i = 0; i < take; i++)
			ck_assert_uint_eq(buffer_data(&b)[i], (uint8_t)((read + i) * 7 + 3));
		buffer_consume(&b, take);
		read += take;
		ck_assert_uint_eq(buffer_len(&b), written - read);
	}
	buffer_release(&b);
}
END_TEST

START_TEST(buffer_append_zero_is_noop)
{
	struct buffer b = { 0 };

	ck_assert_int_eq(buffer_append(&b, NULL, 0), 0);
	ck_assert_ptr_null(b.data);
}
END_TEST

static Suite *
buffer_suite(void)
{
	Suite *s = suite_create("buffer");
	TCase *tc = tcase_create("fifo");

	tcase_add_test(tc, buffer_starts_empty_without_memory);
	tcase_add_test(tc, buffer_appends_and_consumes_in_order);
	tcase_add_test(tc, buffer_releases_memory_when_drained);
	tcase_add_test(tc, buffer_reuses_consumed_head_before_growing);
	tcase_add_test(tc, buffer_keeps_order_across_growth_and_consumption);
	tcase_add_test(tc, buffer_append_zero_is_noop);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(buffer_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
