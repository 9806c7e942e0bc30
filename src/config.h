#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend-url.h"
#include "cidr.h"

enum protocol {
	PROTOCOL_TCP,
	PROTOCOL_UDP,
	_PROTOCOL_MAX,
};

enum model {
	MODEL_FORK,
	MODEL_THREAD,
	MODEL_SELECT,
	MODEL_POLL,
	MODEL_EPOLL,
	_MODEL_MAX,
};

enum service_kind {
	SERVICE_ECHO,
	SERVICE_CHAT,
	SERVICE_DISCARD,
	SERVICE_CHARGEN,
	SERVICE_METRICS,
	_SERVICE_MAX,
};

const char *protocol_to_string(enum protocol p);
int protocol_from_string(const char *s); /* enum value or -EINVAL */
const char *model_to_string(enum model m);
int model_from_string(const char *s);
const char *service_to_string(enum service_kind s);
int service_from_string(const char *s);

/* Syslog priorities: LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR. */
const char *log_level_to_string(int level);
int log_level_from_string(const char *s); /* level or -EINVAL */

#define LISTENER_NAME_MAX 32
#define PREFIX_MAX 64
/* Listeners in one file (the shared counters have room for twice as
 * many, so that a reload can replace every one while the old drain). */
#define CONFIG_LISTENERS_MAX 512
/* select(2) listeners must leave room under FD_SETSIZE for the listening
 * sockets, signalfd, stdio and friends. */
#define SELECT_RESERVED_FDS 64

struct listener_config {
	char name[LISTENER_NAME_MAX + 1];
	enum protocol protocol;
	char *address; /* "*" when not set */
	uint16_t port;
	enum model model;
	enum service_kind service;
	bool enabled;
	unsigned max_clients;
	unsigned per_source;
	unsigned idle_timeout; /* seconds, 0 = never */
	unsigned backlog;
	unsigned workers;
	unsigned rate_limit; /* per second per source, 0 = none */
	unsigned max_line;
	struct cidr *allow; /* NULL when not given: everyone allowed */
	size_t n_allow;
	bool has_allow;
	struct cidr *deny;
	size_t n_deny;
	char *prefix; /* NULL when not set */
	/* SPEC 10: every connection starts with a PROXY protocol header from
	 * one of proxy_from (tcp only; then proxy_from is not empty). */
	bool proxy_protocol;
	struct cidr *proxy_from;
	size_t n_proxy_from;
	/* SPEC 12: a chat room shared through Redis (has_backend), as room
	 * (the listener's name unless set). */
	bool has_backend;
	struct backend_url backend;
	char room[LISTENER_NAME_MAX + 1];
	int line;     /* where the listener starts in the file, for messages */
};

struct config {
	char *path;
	int log_level;
	char *user;  /* NULL when not set */
	char *group; /* NULL when not set */
	unsigned shutdown_timeout;
	struct listener_config *listeners;
	size_t n_listeners;
};

/* One validation problem: "FILE:LINE: message". */
struct config_error {
	char *file;
	int line;
	char *message;
};

struct config_errors {
	struct config_error *errors;
	size_t n_errors;
};

/* Returned (positive) by config_load*() when the file parsed but did not
 * validate, or did not parse; details are in reterr. */
#define CONFIG_E_INVALID 1

/* Load and fully validate a config file. Returns 0 and *ret on success;
 * CONFIG_E_INVALID with every problem in *reterr; -errno when the file
 * cannot be read (also described in *reterr). Never logs. */
int config_load(const char *path, struct config **ret, struct config_errors *reterr);
/* The same from a string; name is used in messages and include_dir for @include. */
int config_load_string(const char *text, const char *name, const char *include_dir,
		       struct config **ret, struct config_errors *reterr);
struct config *config_free(struct config *c);
void config_freep(struct config **c);

void config_errors_clear(struct config_errors *e);

/* Two listener configs that would behave identically (reload keeps it). */
bool listener_config_equal(const struct listener_config *a, const struct listener_config *b);

const struct listener_config *config_find_listener(const struct config *c, const char *name);

/* Deep copy of one listener's config (the handler keeps its own). */
int listener_config_copy(struct listener_config *dst, const struct listener_config *src);
void listener_config_done(struct listener_config *l);

/* Built-in defaults; the man page quotes the same table (tests compare). */
struct config_default {
	const char *key;
	const char *value; /* as written in the man page */
};
extern const struct config_default config_defaults[];
extern const size_t config_n_defaults;
