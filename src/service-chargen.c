#include <sys/uio.h>

#include "service.h"
#include "session.h"

/* RFC 864 character generator, tcp only: from the accept on, lines as fast
 * as the client reads them, until it closes; what it sends is thrown away.
 * Line k is the 72 characters 32 + ((k + j) mod 95), j = 0..71, then CR LF
 * (the BSD inetd pattern). The pattern repeats every 95 lines, so text
 * holds two periods and any 95 consecutive lines are one slice of it;
 * always sending whole periods, every connection starts each part at line
 * 0 and needs no state. */

#define LINE_CHARS 72
#define LINE_BYTES (LINE_CHARS + 2)
#define PERIOD 95
#define PERIOD_BYTES (PERIOD * LINE_BYTES)

static char text[2 * PERIOD_BYTES];

static int
chargen_listener_init(struct listener_rt *l)
{
	for (unsigned k = 0; k < 2 * PERIOD; k++) {
		char *line = text + (size_t)k * LINE_BYTES;

		for (unsigned j = 0; j < LINE_CHARS; j++)
			line[j] = (char)(32 + (k + j) % PERIOD);
		line[LINE_CHARS] = '\r';
		line[LINE_CHARS + 1] = '\n';
	}
	return 0;
}

static size_t
chargen_on_data(struct session *s, const uint8_t *p, size_t n)
{
	return n;
}

/* The output is empty: the next two periods (14060 bytes, under the
 * session's 64 KiB bound). What the socket does not take at once waits in
 * the session's buffer; the next part comes once that drained. */
static void
chargen_on_writable(struct session *s)
{
	struct iovec iov[2] = {
		{ .iov_base = text, .iov_len = PERIOD_BYTES },
		{ .iov_base = text, .iov_len = PERIOD_BYTES },
	};

	session_sendv(s, iov, 2);
}

const struct service_ops service_chargen_ops = {
	.name = "chargen",
	.listener_init = chargen_listener_init,
	.on_data = chargen_on_data,
	.on_writable = chargen_on_writable,
};
