/* libFuzzer target for sanitize_line() (src/sanitize.h).
 *
 * Oracles, each an abort on failure:
 * - the output is well-formed UTF-8 with no C0 control but TAB, no DEL and
 *   no C1 control, and at most SANITIZE_SIZE_MAX(n) bytes;
 * - it equals an independent reference written from the Unicode rules
 *   (U+FFFD per maximal subpart of an ill-formed sequence);
 * - clean input comes back unchanged, and sanitizing twice changes
 *   nothing more;
 * - with a smaller output buffer the output is the longest prefix of the
 *   full output that ends at a character boundary and fits. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-utf8.h"
#include "sanitize.h"

#define FAIL(...)                                      \
	do {                                           \
		fprintf(stderr, "fuzz-sanitize: " __VA_ARGS__); \
		fputc('\n', stderr);                   \
		abort();                               \
	} while (0)

/* Bytes of s that are a prefix of some well-formed sequence, at least 1:
 * the maximal subpart that one U+FFFD replaces. */
static size_t
maximal_subpart(const uint8_t *s, size_t n)
{
	size_t best = 1;

	for (size_t k = 2; k <= 4 && k <= n; k++) {
		uint8_t tmp[4];
		bool prefix_ok = false;

		/* s[0..k) is a prefix of a well-formed sequence when some
		 * completion makes it one. Only the byte after the lead has
		 * a narrowed range (table 3-7), and k >= 2 fixes that one, so
		 * completing with 0x80 is as good as any. */
		memcpy(tmp, s, k);
		memset(tmp + k, 0x80, 4 - k);
		for (size_t len = k; len <= 4 && !prefix_ok; len++)
			prefix_ok = fuzz_utf8_seq_len(tmp, len) == len;
		if (!prefix_ok)
			break;
		best = k;
	}
	return best;
}

static size_t
reference(const uint8_t *in, size_t n, uint8_t *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		size_t k = fuzz_utf8_seq_len(in + i, n - i);

		if (k == 0) {
			k = maximal_subpart(in + i, n - i);
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
		} else {
			uint32_t cp = fuzz_utf8_decode(in + i, k);
			bool removed = (cp < 0x20 && cp != '\t') || cp == 0x7F ||
				       (cp >= 0x80 && cp <= 0x9F);

			if (!removed) {
				memcpy(out + o, in + i, k);
				o += k;
			}
		}
		i += k;
	}
	return o;
}

static void
check_clean(const char *what, const uint8_t *s, size_t n)
{
	size_t bad = 0;

	if (!fuzz_text_is_clean(s, n, &bad))
		FAIL("%s: byte %zu of %zu (0x%02x) is not clean UTF-8 text", what, bad, n, s[bad]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cap = SANITIZE_SIZE_MAX(size) + 1, len, len2, want, small_cap, cut;
	uint8_t *ref = malloc(cap);
	char *out = malloc(cap), *again = malloc(cap), *part;
	size_t bad = 0;

	if (!ref || !out || !again)
		abort();

	len = sanitize_line(data, size, out, SANITIZE_SIZE_MAX(size));
	if (len > SANITIZE_SIZE_MAX(size))
		FAIL("output of %zu bytes for %zu bytes of input", len, size);
	check_clean("output", (const uint8_t *)out, len);

	want = reference(data, size, ref);
	if (want != len || memcmp(ref, out, len) != 0)
		FAIL("output differs from the reference (%zu vs %zu bytes)", len, want);

	if (fuzz_text_is_clean(data, size, &bad) && (len != size || memcmp(out, data, size) != 0))
		FAIL("clean input of %zu bytes was changed", size);

	len2 = sanitize_line((const uint8_t *)out, len, again, cap);
	if (len2 != len || memcmp(again, out, len) != 0)
		FAIL("sanitizing the output again changed it (%zu -> %zu bytes)", len, len2);

	/* A short buffer: the first input byte picks its size. */
	small_cap = size ? data[0] % (len + 2) : 0;
	part = malloc(small_cap ? small_cap : 1);
	if (!part)
		abort();
	cut = sanitize_line(data, size, part, small_cap);
	if (cut > small_cap || memcmp(part, out, cut) != 0)
		FAIL("output into %zu bytes is not a prefix of the full output", small_cap);
	check_clean("cut output", (const uint8_t *)part, cut);
	if (cut < len) {
		size_t next = fuzz_utf8_seq_len((const uint8_t *)out + cut, len - cut);

		if (next == 0)
			FAIL("output into %zu bytes was cut inside a character", small_cap);
		if (cut + next <= small_cap)
			FAIL("output into %zu bytes stopped at %zu though the next character fits",
			     small_cap, cut);
	}

	free(part);
	free(ref);
	free(out);
	free(again);
	return 0;
}
