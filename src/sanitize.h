#pragma once

#include <stddef.h>
#include <stdint.h>

/* Chat text sanitizer (SPEC section 5, item 4). Pure: no allocation, no
 * logging, no locale.
 *
 * - C0 controls other than TAB (U+0000-U+0008, U+000A-U+001F), DEL (U+007F)
 *   and C1 controls (U+0080-U+009F, encoded C2 80..C2 9F) are removed;
 * - ill-formed UTF-8 becomes U+FFFD (EF BF BD), one per maximal subpart as
 *   in Unicode's "U+FFFD substitution of maximal subparts" (chapter 3,
 *   table 3-7): a byte that can never start a sequence (80..C1, F5..FF)
 *   is one U+FFFD; a valid start followed by fewer continuation bytes than
 *   it needs (or by one outside the range table 3-7 allows, which rules
 *   out overlongs, surrogates and code points above U+10FFFF) is one
 *   U+FFFD for the start and the continuation bytes that were valid so
 *   far, and decoding resumes at the offending byte;
 * - everything else is copied unchanged.
 *
 * A byte of input never becomes more than 3 bytes of output. */
#define SANITIZE_SIZE_MAX(n) ((n) * 3)

/* Sanitize n bytes at in into out, which holds out_size bytes. Output is
 * not NUL-terminated. When out_size < SANITIZE_SIZE_MAX(n) the output may
 * be cut short, always at a character boundary. Returns the output length. */
size_t sanitize_line(const uint8_t *in, size_t n, char *out, size_t out_size);
