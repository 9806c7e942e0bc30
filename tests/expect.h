#pragma once

#include <check.h>

/* ck_assert_msg() without its success path, for checks made once per byte,
 * line or operation in loops that make a million of them: every Check
 * assertion that passes records its file and line through the runner's
 * message channel, a write() each, and in such loops that cost more than
 * the code under test (chat-net's 100-member room spent 80 % of its time
 * there). On failure it reports like ck_assert_msg(). */
#define HARNESS_EXPECT(expr, ...)                  \
	do {                                       \
		if (!(expr))                       \
			ck_abort_msg(__VA_ARGS__); \
	} while (0)
