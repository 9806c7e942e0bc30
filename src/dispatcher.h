#pragma once

struct config;

/* Exit codes of SPEC section 2. */
#define EXIT_USAGE 64
#define EXIT_CONFIG 78
#define EXIT_OSERR 71

/* Bind every enabled listener (or take it from systemd), drop privileges,
 * start one handler process per listener and supervise them until
 * SIGTERM/SIGINT. Takes ownership of c. log_level_override < 0 means "use
 * the file's". Returns the process exit code. */
int dispatcher_run(struct config *c, int log_level_override);
