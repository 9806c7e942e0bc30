#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dispatcher-internal.h"
#include "listener.h"
#include "log.h"
#include "sdproto.h"
#include "udpguard.h"

/* Where a listener's sockets come from: systemd passed them (by name, or
 * matching its address), a listener a reload is replacing holds them, or
 * the dispatcher binds them itself. Epoll workers get a SO_REUSEPORT
 * sibling each. */

int
dispatcher_collect_activated(struct dispatcher *d)
{
	char **names = NULL;
	int n;

	n = sdp_listen_fds(&names);
	if (n < 0)
		return log_errno(LOG_ERR, n, "cannot take sockets from systemd");
	if (n == 0)
		return 0;
	d->act = calloc((size_t)n, sizeof(*d->act));
	if (!d->act)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		int fd = SDP_LISTEN_FDS_START + i;

		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		d->act[i].fd = fd;
		/* systemd names unnamed sockets "unknown". */
		if (names && names[i] && strcmp(names[i], "unknown") != 0)
			d->act[i].name = names[i];
		else if (names)
			free(names[i]);
	}
	free(names);
	d->n_act = (size_t)n;
	log_info("received %d socket%s from systemd", n, n == 1 ? "" : "s");
	return n;
}

void
dispatcher_close_unused_activated(struct dispatcher *d)
{
	for (size_t i = 0; i < d->n_act; i++) {
		if (d->act[i].fd < 0)
			continue;
		log_warning("socket from systemd (fd %d%s%s) matches no enabled listener, closing it",
			    d->act[i].fd, d->act[i].name ? ", name " : "",
			    d->act[i].name ? d->act[i].name : "");
		d->act[i].fd = safe_close(d->act[i].fd);
	}
}

/* Sockets systemd passed under the listener's name. Taken for every
 * listener before any is matched by address, so a named socket never goes
 * to another listener that happens to match it. */
void
dispatcher_take_named(struct dispatcher *d, struct dlistener *dl)
{
	const struct listener_config *cfg = &dl->cfg;

	for (size_t i = 0; i < d->n_act && dl->n_named < LISTENER_ADDRS_MAX; i++) {
		int type = 0;
		socklen_t tl = sizeof(type);

		if (d->act[i].fd < 0 || !d->act[i].name || strcmp(d->act[i].name, cfg->name) != 0)
			continue;
		if (getsockopt(d->act[i].fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
		    type != (cfg->protocol == PROTOCOL_TCP ? SOCK_STREAM : SOCK_DGRAM)) {
			log_listener(LOG_WARNING, cfg->name, NULL,
				     "socket from systemd named '%s' is not a %s socket, not using it",
				     cfg->name, protocol_to_string(cfg->protocol));
			continue;
		}
		dl->named[dl->n_named++] = TAKE_FD(d->act[i].fd);
	}
}

/* On reload, a listener that is going away may hold the very socket a new
 * one needs (a rename, or a port handed to another listener): share it
 * rather than fail to bind while the old handler drains. */
static size_t
take_from_donor(struct dispatcher *d, struct dlistener *dl, int got[LISTENER_ADDRS_MAX])
{
	const struct listener_config *cfg = &dl->cfg;

	for (struct dlistener *o = d->listeners; o; o = o->next) {
		size_t n = 0;

		if (o == dl || !(o->removed || o->pending) || !o->fds ||
		    o->cfg.protocol != cfg->protocol || o->cfg.port != cfg->port ||
		    strcmp(o->cfg.address, cfg->address) != 0)
			continue;
		for (size_t i = 0; i < o->n_addrs; i++) {
			int fd = fcntl(o->fds[i], F_DUPFD_CLOEXEC, 3);

			if (fd < 0) {
				while (n > 0)
					safe_close(got[--n]);
				return 0;
			}
			got[n++] = fd;
		}
		log_listener(LOG_DEBUG, cfg->name, NULL, "taking over the sockets of '%s'",
			     o->cfg.name);
		return n;
	}
	return 0;
}

/* One socket per address cfg resolves to: one systemd passed that
 * matches it, or one we bind. Returns how many, or -errno (logged). */
static int
resolve_and_bind(struct dispatcher *d, const struct listener_config *cfg,
		 int got[LISTENER_ADDRS_MAX])
{
	union sockaddr_any addrs[LISTENER_ADDRS_MAX];
	char where[300];
	int n, n_got = 0, gai = 0, r;
	bool reuseport;

	listener_format_bind(cfg, where, sizeof(where));
	n = listener_resolve(cfg, addrs, &gai);
	if (n < 0) {
		if (gai && gai != EAI_SYSTEM)
			log_listener(LOG_ERR, cfg->name, NULL, "cannot resolve '%s': %s",
				     cfg->address, gai_strerror(gai));
		else
			log_full_errno(LOG_ERR, n, cfg->name, NULL, "cannot resolve '%s'",
				       cfg->address);
		return n;
	}
	for (int i = 0; i < n; i++) {
		int fd = -1;

		for (size_t j = 0; j < d->n_act; j++)
			if (d->act[j].fd >= 0 &&
			    listener_fd_matches(d->act[j].fd, cfg, &addrs[i], 1)) {
				fd = TAKE_FD(d->act[j].fd);
				break;
			}
		if (fd < 0) {
			char a[SOCKADDR_STR_MAX];

			/* Several epoll workers get one SO_REUSEPORT
			 * socket each; bind the first with it too. */
			reuseport = cfg->model == MODEL_EPOLL && cfg->workers > 1;
			r = listener_bind(cfg, &addrs[i], reuseport, &fd);
			if (r < 0) {
				for (int k = 0; k < n_got; k++)
					safe_close(got[k]);
				return log_full_errno(LOG_ERR, r, cfg->name, NULL,
						      "cannot listen on %s (%s %s)",
						      sockaddr_to_string(&addrs[i], a, sizeof(a)),
						      protocol_to_string(cfg->protocol), where);
			}
		}
		got[n_got++] = fd;
	}
	return n_got;
}

/* dl->fds[0..n_addrs) are set; give workers 1.. a SO_REUSEPORT sibling
 * of each, or, where one cannot be bound, let them all share the first
 * worker's sockets. */
static void
add_worker_sockets(struct dlistener *dl, size_t workers)
{
	size_t n_got = dl->n_addrs;

	dl->shared = false;
	for (size_t w = 1; w < workers; w++) {
		for (size_t i = 0; i < n_got; i++) {
			union sockaddr_any a;
			socklen_t alen = sizeof(a);
			int fd = -1;

			/* A sibling on the same address with SO_REUSEPORT; a
			 * socket systemd passed without ReusePort= cannot
			 * have one, then the workers share it. */
			if (!dl->shared && getsockname(dl->fds[i], &a.sa, &alen) == 0 &&
			    listener_bind(&dl->cfg, &a, true, &fd) == 0) {
				dl->fds[w * n_got + i] = fd;
				continue;
			}
			if (!dl->shared) {
				/* Undo the siblings made so far. */
				for (size_t k = n_got; k < w * n_got + i; k++)
					safe_close(dl->fds[k]);
				dl->shared = true;
			}
		}
	}
	if (dl->shared)
		for (size_t k = n_got; k < dl->n_fds; k++)
			dl->fds[k] = dl->fds[k % n_got];
}

/* Take passed fds named after the listener, or matching its protocol,
 * address and port; bind the rest ourselves. */
int
dispatcher_acquire_sockets(struct dispatcher *d, struct dlistener *dl)
{
	const struct listener_config *cfg = &dl->cfg;
	int got[LISTENER_ADDRS_MAX];
	size_t n_got = 0, workers;

	memcpy(got, dl->named, dl->n_named * sizeof(int));
	n_got = dl->n_named;
	dl->n_named = 0;
	if (n_got == 0)
		n_got = take_from_donor(d, dl, got);
	if (n_got == 0) {
		int n = resolve_and_bind(d, cfg, got);

		if (n < 0)
			return n;
		n_got = (size_t)n;
	}

	workers = cfg->model == MODEL_EPOLL ? cfg->workers : 1;
	dl->n_addrs = n_got;
	dl->n_fds = n_got * workers;
	dl->fds = calloc(dl->n_fds, sizeof(int));
	if (!dl->fds) {
		for (size_t k = 0; k < n_got; k++)
			safe_close(got[k]);
		return -ENOMEM;
	}
	memcpy(dl->fds, got, n_got * sizeof(int));
	add_worker_sockets(dl, workers);
	return 0;
}

void
dispatcher_close_fds(struct dlistener *dl)
{
	for (size_t i = 0; i < dl->n_fds; i++) {
		/* Shared epoll workers repeat the same fd. */
		if (dl->shared && i >= dl->n_addrs)
			break;
		safe_close(dl->fds[i]);
	}
	free(dl->fds);
	dl->fds = NULL;
	dl->n_fds = dl->n_addrs = 0;
}

bool
dispatcher_same_sockets(const struct listener_config *a, const struct listener_config *b)
{
	return a->protocol == b->protocol && a->port == b->port &&
	       strcmp(a->address, b->address) == 0 &&
	       (a->model == MODEL_EPOLL ? a->workers : 1) == (b->model == MODEL_EPOLL ? b->workers : 1) &&
	       (a->model == MODEL_EPOLL) == (b->model == MODEL_EPOLL);
}

/* Our udp listeners' ports, shared with the handlers: a datagram that
 * comes from one of them is never answered (SPEC 4). */
void
dispatcher_rebuild_port_map(struct dispatcher *d)
{
	memset(d->port_map, 0, PORT_MAP_SIZE);
	for (struct dlistener *dl = d->listeners; dl; dl = dl->next)
		if (dl->cfg.protocol == PROTOCOL_UDP && !dl->removed)
			udpguard_port_map_set(d->port_map, dl->cfg.port);
}
