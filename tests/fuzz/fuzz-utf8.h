#pragma once

/* Oracles shared by the text fuzz targets: what every line of chat text
 * must look like once sanitized (SPEC section 5, item 4). Header-only, so
 * each target stays one translation unit plus the sources it tests. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the well-formed UTF-8 sequence at s (Unicode table 3-7: no
 * overlongs, no surrogates, nothing above U+10FFFF), or 0 when s does not
 * start one. */
static inline size_t
fuzz_utf8_seq_len(const uint8_t *s, size_t n)
{
	uint8_t c = s[0], lo = 0x80, hi = 0xBF;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	if (c < 0xE0)
		need = 2;
	else if (c < 0xF0) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c < 0xF5) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xBF;
	}
	return need;
}

/* Code point of a well-formed sequence of length len. */
static inline uint32_t
fuzz_utf8_decode(const uint8_t *s, size_t len)
{
	static const uint8_t lead_mask[5] = { 0, 0x7F, 0x1F, 0x0F, 0x07 };
	uint32_t cp = s[0] & lead_mask[len];

	for (size_t i = 1; i < len; i++)
		cp = (cp << 6) | (s[i] & 0x3F);
	return cp;
}

/* Clean chat text: well-formed UTF-8 without C0 controls other than TAB,
 * without DEL and without C1 controls. On failure *ret_bad is the offset
 * of the first offending byte. */
static inline bool
fuzz_text_is_clean(const uint8_t *s, size_t n, size_t *ret_bad)
{
	size_t i = 0;

	while (i < n) {
		size_t k = fuzz_utf8_seq_len(s + i, n - i);
		uint32_t cp;

		if (k == 0) {
			*ret_bad = i;
			return false;
		}
		cp = fuzz_utf8_decode(s + i, k);
		if ((cp < 0x20 && cp != '\t') || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
			*ret_bad = i;
			return false;
		}
		i += k;
	}
	return true;
}
