#include <string.h>
#include <sys/mman.h>

#include "backend-url.h"
#include "chat.h"
#include "dgram.h"
#include "listener-rt.h"
#include "log.h"
#include "service.h"
#include "session.h"

/* Glue between the chat rooms (chat-room.c, chat-udp.c) and sessions. The
 * room belongs to the serving process; the models decide which threads
 * touch it (the room locks itself). */

struct chat_state {
	struct chat_room *room;    /* tcp */
	struct chat_udp *udp;      /* udp, in shared memory */
	size_t udp_size;
	/* udp with a backend: its threads, and what they send with. */
	struct chat_udp_backend *udp_backend;
	struct dgram backend_dgram;
};

static void
t_send(void *ctx, const char *line, size_t len)
{
	session_send(ctx, line, len);
}

static void
t_close(void *ctx, const char *reason)
{
	session_close(ctx, reason);
}

static size_t
t_unsent(void *ctx)
{
	return session_unsent(ctx);
}

static uint64_t
t_delivered(void *ctx)
{
	return session_delivered(ctx);
}

static const struct chat_transport transport = {
	.send = t_send,
	.close = t_close,
	.unsent = t_unsent,
	.delivered = t_delivered,
};

static void
u_send_to(void *ctx, const union sockaddr_any *to, const struct dgram_local *from,
	  const char *line, size_t len)
{
	struct dgram *d = ctx;
	struct iovec iov = { .iov_base = (void *)line, .iov_len = len };

	(void)dgram_send_to(d, to, from, &iov, 1);
}

static const struct chat_udp_transport udp_transport = {
	.send_to = u_send_to,
};

/* SPEC 12: one warning per outage, with the URL (never the password);
 * netechod_backend_up and STATUS= read the gauge. Backend thread. */
static void
backend_state(void *ud, bool up, int error, const char *reason)
{
	struct listener_rt *l = ud;
	char url[BACKEND_URL_STR_MAX];

	STATS_SET(l, backend, up ? STATS_BACKEND_UP : STATS_BACKEND_DOWN);
	backend_url_redacted(&l->cfg.backend, url, sizeof(url));
	if (up)
		log_listener(LOG_INFO, l->cfg.name, NULL, "backend %s up, room '%s'", url,
			     l->cfg.room);
	else
		/* The reason says more than strerror(error) ("NOAUTH ..."). */
		log_listener(LOG_WARNING, l->cfg.name, NULL,
			     "backend %s unreachable (%s); the room serves local members only, retrying",
			     url, reason && *reason ? reason : strerror(-error));
}

static int
chat_listener_init(struct listener_rt *l)
{
	struct chat_settings cs = {
		.listener = l->cfg.name,
		.max_clients = l->cfg.max_clients,
		.max_line = l->cfg.max_line,
		.rate_limit = l->cfg.rate_limit,
		.idle_timeout = l->cfg.idle_timeout,
		.stats = l->stats,
	};
	bool backend = l->cfg.has_backend;
	struct chat_state *st;
	int r;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	if (backend) {
		cs.backend = &l->cfg.backend;
		cs.room = l->cfg.room;
		cs.backend_state = backend_state;
		cs.backend_ud = l;
		l->foreign_senders = true;
		STATS_SET(l, backend, STATS_BACKEND_DOWN);
	}
	if (l->cfg.protocol == PROTOCOL_TCP) {
		r = chat_room_new(&st->room, &cs, &transport);
		if (r < 0) {
			free(st);
			return r;
		}
	} else {
		void *p;

		/* Shared memory: pre-forked workers serve one room. */
		st->udp_size = chat_udp_size(&cs);
		p = mmap(NULL, st->udp_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			 -1, 0);
		if (p == MAP_FAILED) {
			r = -errno;
			free(st);
			return r;
		}
		st->udp = p;
		r = chat_udp_init(st->udp, &cs);
		if (r == 0 && backend) {
			/* Replies leave from the peer's remembered local end;
			 * this socket is the fallback. */
			st->backend_dgram = (struct dgram){ .lst = l, .local = { .fd = l->fds[0] } };
			r = chat_udp_backend_start(&st->udp_backend, st->udp, &cs, &udp_transport,
						   &st->backend_dgram);
			if (r < 0)
				chat_udp_done(st->udp);
		}
		if (r < 0) {
			munmap(p, st->udp_size);
			free(st);
			return r;
		}
	}
	l->service_state = st;
	return 0;
}

static void
chat_listener_done(struct listener_rt *l)
{
	struct chat_state *st = l->service_state;

	if (!st)
		return;
	/* Stops the backend, after our members' leaves. */
	chat_room_free(st->room);
	if (l->cfg.has_backend)
		STATS_SET(l, backend, STATS_BACKEND_NONE);
	if (st->udp) {
		chat_udp_backend_stop(st->udp_backend);
		chat_udp_done(st->udp);
		munmap(st->udp, st->udp_size);
	}
	free(st);
	l->service_state = NULL;
}

static void
chat_on_open(struct session *s)
{
	struct chat_state *st = s->lst->service_state;

	s->service_data = chat_room_join(st->room, s, session_host_str(s), now_usec());
	if (!s->service_data)
		session_abort(s, "out of memory");
}

static size_t
chat_on_data(struct session *s, const uint8_t *p, size_t n)
{
	struct chat_state *st = s->lst->service_state;

	if (s->service_data)
		chat_member_input(st->room, s->service_data, p, n, now_usec());
	return n;
}

/* One rule for every model: while a member that reads is behind, nobody's
 * input is read, so a flooder waits for the readers. */
static bool
chat_hold_input(struct session *s)
{
	struct chat_state *st = s->lst->service_state;

	return st->room && chat_room_senders_wait(st->room, now_usec());
}

static void
chat_on_close(struct session *s)
{
	struct chat_state *st = s->lst->service_state;

	if (s->service_data)
		chat_room_leave(st->room, s->service_data);
	s->service_data = NULL;
}

static void
chat_on_shutdown(struct session *s)
{
	struct chat_state *st = s->lst->service_state;

	/* The first call tells every member, whichever worker owns it, and
	 * quiets the room: no "left" notices while everyone is closed. */
	chat_room_shutdown(st->room);
}

static void
chat_on_datagram(struct dgram *d, const uint8_t *p, size_t n)
{
	struct chat_state *st = d->lst->service_state;

	chat_udp_datagram(st->udp, &udp_transport, d, &d->peer, &d->local, p, n, now_usec());
}

static void
chat_datagram_order(struct listener_rt *l, bool begin)
{
	struct chat_state *st = l->service_state;

	if (st->udp)
		chat_udp_order(st->udp, begin);
}

static uint64_t
chat_tick(struct listener_rt *l, struct dgram *d, uint64_t now)
{
	struct chat_state *st = l->service_state;

	if (st->room)
		return chat_room_tick(st->room, now);
	return d ? chat_udp_tick(st->udp, &udp_transport, d, now) : 0;
}

static void
chat_on_udp_shutdown(struct listener_rt *l, struct dgram *d)
{
	struct chat_state *st = l->service_state;

	if (st->udp)
		chat_udp_shutdown(st->udp, &udp_transport, d);
}

const struct service_ops service_chat_ops = {
	.name = "chat",
	.shared_room = true,
	.full_text = "! server full\r\n",
	.listener_init = chat_listener_init,
	.listener_done = chat_listener_done,
	.on_open = chat_on_open,
	.on_data = chat_on_data,
	.hold_input = chat_hold_input,
	.on_close = chat_on_close,
	.on_shutdown = chat_on_shutdown,
	.on_datagram = chat_on_datagram,
	.datagram_order = chat_datagram_order,
	.tick = chat_tick,
	.on_udp_shutdown = chat_on_udp_shutdown,
};
