#pragma once

#include <signal.h>

struct config;

/* Exit codes of SPEC section 2. */
#define EXIT_USAGE 64
#define EXIT_CONFIG 78
#define EXIT_OSERR 71

/* Block the signals the dispatcher reads from its signalfd (TERM, INT,
 * HUP, USR1, CHLD); main calls it first thing so none is lost or fatal
 * during start-up. */
void dispatcher_block_signals(sigset_t *ret_mask);

/* Bind every enabled listener (or take it from systemd), drop privileges,
 * start one handler process per listener and supervise them until
 * SIGTERM/SIGINT. Takes ownership of c. log_level_override < 0 means "use
 * the file's". Returns the process exit code. */
int dispatcher_run(struct config *c, int log_level_override);
