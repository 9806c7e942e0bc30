#include <stdbool.h>
#include <string.h>

#include "sanitize.h"

static const char replacement[3] = { (char)0xEF, (char)0xBF, (char)0xBD };

/* Length of the sequence a lead byte starts (0: never a lead), and the
 * range allowed for the byte after it (table 3-7 of the Unicode standard;
 * the bytes after that are always 80..BF). */
static size_t
lead_info(uint8_t c, uint8_t *ret_lo, uint8_t *ret_hi)
{
	*ret_lo = 0x80;
	*ret_hi = 0xBF;
	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0; /* continuation byte, or overlong C0/C1 lead */
	if (c < 0xE0)
		return 2;
	if (c < 0xF0) {
		if (c == 0xE0)
			*ret_lo = 0xA0; /* no overlongs */
		else if (c == 0xED)
			*ret_hi = 0x9F; /* no surrogates */
		return 3;
	}
	if (c < 0xF5) {
		if (c == 0xF0)
			*ret_lo = 0x90; /* no overlongs */
		else if (c == 0xF4)
			*ret_hi = 0x8F; /* nothing above U+10FFFF */
		return 4;
	}
	return 0;
}

static bool
is_removed(const uint8_t *s, size_t len)
{
	if (len == 1)
		return (s[0] < 0x20 && s[0] != '\t') || s[0] == 0x7F;
	/* C1 controls: U+0080-U+009F */
	return len == 2 && s[0] == 0xC2 && s[1] < 0xA0;
}

size_t
sanitize_line(const uint8_t *in, size_t n, char *out, size_t out_size)
{
	size_t i = 0, o = 0;

	while (i < n) {
		const uint8_t *src;
		uint8_t lo, hi;
		size_t need, got;

		need = lead_info(in[i], &lo, &hi);
		got = 1;
		while (got < need && i + got < n && in[i + got] >= lo && in[i + got] <= hi) {
			got++;
			lo = 0x80;
			hi = 0xBF;
		}

		if (need == 0 || got < need) {
			/* Maximal subpart of an ill-formed sequence. */
			src = (const uint8_t *)replacement;
			need = sizeof(replacement);
		} else if (is_removed(in + i, got)) {
			i += got;
			continue;
		} else
			src = in + i;

		if (out_size - o < need)
			break;
		memcpy(out + o, src, need);
		o += need;
		i += got;
	}
	return o;
}
