#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The `backend` setting of a chat listener (SPEC section 12), for the
 * coming Redis backend. A pure parser: a string in, a struct of fixed-size
 * arrays or a reason out; no I/O, no allocation, no name resolution.
 *
 *   redis://[USER:PASSWORD@]HOST[:PORT][/DB]
 *   unix:PATH[?db=N]
 *
 * HOST is a name of [A-Za-z0-9.-] (at most 253 bytes, no empty label), an
 * IPv4 address (a HOST of digits and dots must be one, as inet_pton()
 * takes it) or an IPv6 address in brackets ("[::1]", no zone). PORT is
 * 1-65535 in decimal, default 6379; DB 0-15 in decimal, default 0.
 *
 * The credentials are everything before the last '@' (neither HOST, PORT
 * nor DB can hold one) and are split at their first ':': so USER must
 * write a ':' as %3A, PASSWORD need not. %XX (hex, either case) is decoded
 * in both; a raw space, control byte or DEL must be written so, and %00 is
 * refused. Each is at most BACKEND_CRED_MAX bytes decoded. An empty USER
 * ("redis://:pw@host") means no user: AUTH with the password alone. The
 * password may not be empty. "USER@HOST" without a ':' is refused.
 *
 * PATH is absolute, at most BACKEND_PATH_MAX - 1 bytes (sun_path holds
 * 108 with the NUL), with no control byte or DEL; it ends at the first
 * '?', after which only "db=N" may follow. */

#define BACKEND_HOST_MAX 253 /* a DNS name; numeric addresses are shorter */
#define BACKEND_CRED_MAX 255 /* USER and PASSWORD, decoded */
#define BACKEND_PATH_MAX 108 /* sizeof(((struct sockaddr_un *)0)->sun_path) */
#define BACKEND_DB_MAX 15
#define BACKEND_PORT_DEFAULT 6379
/* Room for backend_url_redacted() of any URL: the user encoded as %XX
 * throughout, brackets, port and database. */
#define BACKEND_URL_STR_MAX (sizeof("redis://:***@[]:65535/15") + 3 * BACKEND_CRED_MAX + \
			     BACKEND_HOST_MAX + BACKEND_PATH_MAX)

enum backend_kind {
	BACKEND_TCP,
	BACKEND_UNIX,
	_BACKEND_KIND_MAX,
};

struct backend_url {
	enum backend_kind kind;
	/* tcp: a name or a numeric address, IPv6 without its brackets */
	char host[BACKEND_HOST_MAX + 1];
	uint16_t port;
	/* unix: the socket's path */
	char path[BACKEND_PATH_MAX];
	unsigned db;
	/* tcp only; "" for none. The password must never be logged: print
	 * the URL with backend_url_redacted(). */
	char user[BACKEND_CRED_MAX + 1];
	char password[BACKEND_CRED_MAX + 1];
};

/* Parse s. Returns 0 and fills *ret, or -EINVAL with a short static reason
 * in *reterr (when reterr is not NULL) for "file:line: backend: REASON",
 * lower case, no period ("port out of range"). *ret is only written on
 * success. */
int backend_url_parse(const char *s, struct backend_url *ret, const char **reterr);

/* The URL for logs and -t, with the password (if any) as "***" and every
 * field explicit: "redis://bob:***@[::1]:6379/0", "unix:/run/r.sock?db=0".
 * The user is percent-encoded where needed, so the result parses again.
 * Cut to size bytes, NUL-terminated when size > 0; returns buf.
 * BACKEND_URL_STR_MAX always suffices. */
const char *backend_url_redacted(const struct backend_url *u, char *buf, size_t size);

/* The `room` setting: 1-32 of [A-Za-z0-9_.-] (a listener name's rule). */
bool backend_room_valid(const char *s);
