#pragma once

#include <stdint.h>
#include <sys/uio.h>

/* The three systemd interfaces netechod uses, spoken directly: the
 * notification protocol (sd_notify(3)), socket activation (LISTEN_PID,
 * LISTEN_FDS, LISTEN_FDNAMES: sd_listen_fds(3)) and the journal's native
 * protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL). All three are stable,
 * documented wire protocols. Doing them here instead of linking libsystemd
 * keeps libsystemd's six libraries out of every netechod process: a fork
 * child then inherits about 30 mappings instead of 68, and fork and exit
 * pay for each one (bench/RESULTS.md). tests/test-sdproto.c checks each one
 * against libsystemd itself. Return values follow libsystemd's: negative
 * errno on failure. */

#define SDP_LISTEN_FDS_START 3

/* Sends `state` (newline-separated VAR=value) to $NOTIFY_SOCKET. Returns
 * 1 when sent, 0 when there is no NOTIFY_SOCKET, -errno on failure. */
int sdp_notify(const char *state);
int sdp_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Takes the sockets systemd passed (fds from SDP_LISTEN_FDS_START), marks
 * them close-on-exec and unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES.
 * *ret_names gets a malloc'd array of malloc'd names ("unknown" where
 * systemd gave none), or NULL when no socket was passed. Returns the
 * number of sockets, 0 when none were passed for this process. */
int sdp_listen_fds(char ***ret_names);

/* 1 with *ret_usec set when systemd wants WATCHDOG=1 pings from this
 * process (WATCHDOG_USEC, and WATCHDOG_PID if set is ours), else 0. */
int sdp_watchdog_enabled(uint64_t *ret_usec);

/* Sends one journal entry: each iov is "FIELD=value". Values may hold
 * any bytes, newlines included. Safe from any thread and after fork. */
int sdp_journal_sendv(const struct iovec *iov, size_t n);

/* Tests only: where sdp_journal_sendv sends to (NULL: the default,
 * /run/systemd/journal/socket). Call before the first send. */
void sdp_journal_set_socket(const char *path);
