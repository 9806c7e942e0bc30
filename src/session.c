#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>

#include "admission.h"
#include "listener-rt.h"
#include "log.h"
#include "service.h"
#include "session.h"

void
session_init(struct session *s, int fd, struct listener_rt *lst,
	     const struct session_driver *driver, const struct conn_origin *origin, uint64_t now)
{
	*s = (struct session){
		.fd = fd,
		.lst = lst,
		.driver = driver,
		.peer = origin->peer,
		.proxied = origin->proxied,
		.health_check = origin->health_check,
		.via = origin->via,
		.start_usec = now,
	};
	s->last_active = s->start_usec;
}

const char *
session_peer_str(struct session *s)
{
	if (!s->peer_str[0])
		sockaddr_to_string(&s->peer, s->peer_str, sizeof(s->peer_str));
	return s->peer_str;
}

const char *
session_host_str(struct session *s)
{
	if (!s->host_str[0])
		sockaddr_host_to_string(&s->peer, s->host_str, sizeof(s->host_str));
	return s->host_str;
}

const char *
session_via_str(struct session *s)
{
	if (!s->proxied)
		return NULL;
	if (!s->via_str[0])
		sockaddr_to_string(&s->via, s->via_str, sizeof(s->via_str));
	return s->via_str;
}

/* Health checks through a balancer come every few seconds: not worth an
 * info line each. */
static int
conn_log_level(const struct session *s)
{
	return s->health_check ? LOG_DEBUG : LOG_INFO;
}

static inline void
lock(struct session *s)
{
	if (s->lock)
		pthread_mutex_lock(s->lock);
}

static inline void
unlock(struct session *s)
{
	if (s->lock)
		pthread_mutex_unlock(s->lock);
}

void
session_done(struct session *s)
{
	buffer_release(&s->in);
	buffer_release(&s->out);
}

static uint64_t
delivered_locked(const struct session *s)
{
	return s->delivered ? atomic_load_explicit(s->delivered, memory_order_relaxed)
			    : s->bytes_out;
}

/* Queued here plus written on but not yet on the client's socket: the
 * same meaning whatever sits between the session and the client. */
static size_t
unsent_locked(const struct session *s)
{
	uint64_t queued = s->bytes_out + buffer_len(&s->out), done = delivered_locked(s);

	return done >= queued ? 0 : (size_t)(queued - done);
}

size_t
session_unsent(struct session *s)
{
	size_t r;

	lock(s);
	r = s->broken ? 0 : unsent_locked(s);
	unlock(s);
	return r;
}

uint64_t
session_delivered(struct session *s)
{
	uint64_t r;

	lock(s);
	r = delivered_locked(s);
	unlock(s);
	return r;
}

size_t
session_send_space(const struct session *s)
{
	size_t l = unsent_locked(s);

	return l >= SESSION_OUT_MAX ? 0 : SESSION_OUT_MAX - l;
}

static void
mark_broken(struct session *s, int error)
{
	if (s->broken)
		return;
	s->broken = true;
	buffer_release(&s->out);
	if (!s->close_reason)
		s->close_reason = (error == -EPIPE || error == -ECONNRESET) ? "reset" : "error";
}

/* Try to write through; returns how many bytes the socket took. A
 * blocking socket takes everything (or breaks); a non-blocking one gets
 * one attempt and the rest is queued. */
static size_t
write_through(struct session *s, const struct iovec *iov_in, int n_iov, size_t total)
{
	struct iovec iov[SESSION_IOV_MAX], *v = iov;
	size_t done = 0;
	int k = n_iov;

	assert(n_iov <= SESSION_IOV_MAX);
	memcpy(iov, iov_in, (size_t)n_iov * sizeof(*iov));
	while (done < total && k > 0) {
		/* write() for the common single buffer: no iovec to import. */
		ssize_t n = k == 1 ? write(s->fd, v->iov_base, v->iov_len) : writev(s->fd, v, k);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			mark_broken(s, -errno);
			return total;
		}
		done += (size_t)n;
		s->bytes_out += (uint64_t)n;
		STATS_ADD(s->lst, bytes_out, (uint64_t)n);
		if (!s->blocking)
			break;
		while (k > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			k--;
		}
		if (k > 0) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return done;
}

/* The session whose step runs on this thread, if any: what it sends to
 * others whose driver flushes later is only queued (flush_later), so
 * that small relays from several senders in one pass go out as one
 * write... */
static _Thread_local const struct session *stepping;
/* ...but a send this large gains nothing from waiting for more: it goes
 * to the socket at once when nothing is queued before it. */
#define SESSION_LATER_MAX 2048

void
session_sendv(struct session *s, const struct iovec *iov, int n_iov)
{
	size_t total = 0, skip = 0;
	bool later;

	for (int i = 0; i < n_iov; i++)
		total += iov[i].iov_len;
	if (total == 0)
		return;
	later = stepping && stepping != s && s->driver && s->driver->flush_later &&
		total < SESSION_LATER_MAX;
	lock(s);
	if (s->broken)
		goto out;
	if (buffer_len(&s->out) == 0 && !later) {
		skip = write_through(s, iov, n_iov, total);
		if (s->broken || skip == total)
			goto out;
	}

	if (unsent_locked(s) + (total - skip) > SESSION_OUT_MAX) {
		/* Only chat can get here: echo asks for space first. The
		 * owner learns of it when woken. */
		if (!s->close_reason)
			s->close_reason = "slow consumer";
		mark_broken(s, 0);
		goto wake;
	}
	for (int i = 0; i < n_iov; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		if (buffer_append(&s->out, p + skip, len - skip) < 0) {
			if (!s->close_reason)
				s->close_reason = "out of memory";
			mark_broken(s, -ENOMEM);
			break;
		}
		skip = 0;
	}
wake:
	if (s->driver && s->driver->want_write)
		s->driver->want_write(s);
out:
	unlock(s);
}

void
session_send(struct session *s, const void *p, size_t n)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };

	session_sendv(s, &iov, 1);
}

void
session_close(struct session *s, const char *reason)
{
	lock(s);
	if (!s->close_reason)
		s->close_reason = reason;
	s->closing = true;
	/* Another thread, or a timer of the owner's (the chat name timeout),
	 * may have asked: nothing else would wake the owner for a session
	 * with nothing to send. The driver ignores a call from the session's
	 * own callback, which looks at it anyway. */
	if (s->driver && s->driver->want_write)
		s->driver->want_write(s);
	unlock(s);
}

void
session_abort(struct session *s, const char *reason)
{
	lock(s);
	if (!s->close_reason)
		s->close_reason = reason;
	mark_broken(s, 0);
	/* As in session_close(). */
	if (s->driver && s->driver->want_write)
		s->driver->want_write(s);
	unlock(s);
}

static bool
input_closed(struct session *s)
{
	bool r;

	lock(s);
	r = s->broken || s->closing;
	unlock(s);
	return r;
}

void
session_feed(struct session *s, const uint8_t *p, size_t n)
{
	size_t used;

	if (input_closed(s))
		return;
	if (buffer_len(&s->in) > 0) {
		/* Keep order: new input queues behind what is kept. */
		if (buffer_append(&s->in, p, n) < 0)
			session_abort(s, "out of memory");
		return;
	}
	used = s->lst->service->on_data(s, p, n);
	if (used < n && !input_closed(s)) {
		if (buffer_append(&s->in, p + used, n - used) < 0)
			session_abort(s, "out of memory");
	}
}

void
session_resume(struct session *s)
{
	size_t used;

	if (buffer_len(&s->in) == 0 || input_closed(s))
		return;
	used = s->lst->service->on_data(s, buffer_data(&s->in), buffer_len(&s->in));
	buffer_consume(&s->in, used);
}

ssize_t
session_read(struct session *s, uint8_t *scratch, size_t size)
{
	ssize_t n;

	for (;;) {
		n = read(s->fd, scratch, size);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return -EAGAIN;
		n = -errno;
		lock(s);
		mark_broken(s, (int)n);
		unlock(s);
		return n;
	}
	if (n == 0) {
		lock(s);
		s->read_eof = true;
		if (!s->close_reason)
			s->close_reason = "eof";
		unlock(s);
		if (s->lst->service->on_eof)
			s->lst->service->on_eof(s);
		return 0;
	}
	s->bytes_in += (uint64_t)n;
	STATS_ADD(s->lst, bytes_in, (uint64_t)n);
	session_feed(s, scratch, (size_t)n);
	return n;
}

int
session_flush(struct session *s)
{
	int r = 0;

	lock(s);
	while (buffer_len(&s->out) > 0 && !s->broken) {
		ssize_t n = write(s->fd, buffer_data(&s->out), buffer_len(&s->out));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				r = -EAGAIN;
				break;
			}
			r = -errno;
			mark_broken(s, r);
			break;
		}
		s->bytes_out += (uint64_t)n;
		STATS_ADD(s->lst, bytes_out, (uint64_t)n);
		buffer_consume(&s->out, (size_t)n);
	}
	if (s->broken && r == 0)
		r = -EPIPE;
	unlock(s);
	if (r < 0)
		return r;
	/* Room again: let the service take kept input. */
	session_resume(s);
	lock(s);
	r = buffer_len(&s->out) > 0 ? -EAGAIN : 0;
	unlock(s);
	/* All out: a service that streams (chargen) sends the next part,
	 * which goes straight to the socket as far as it takes it. */
	if (r == 0 && s->lst->service->on_writable && !input_closed(s))
		s->lst->service->on_writable(s);
	return r;
}

bool
session_wants_read(struct session *s)
{
	const struct service_ops *svc = s->lst->service;
	bool r;

	lock(s);
	r = !s->read_eof && !s->closing && !s->broken && buffer_len(&s->in) == 0 &&
	    unsent_locked(s) < SESSION_OUT_MAX;
	unlock(s);
	/* Asked last and without our lock: the service takes its own (the
	 * room's), which is taken before ours everywhere else. */
	s->held = r && svc->hold_input && svc->hold_input(s);
	return r && !s->held;
}

bool
session_wants_write(struct session *s)
{
	const struct service_ops *svc = s->lst->service;
	bool r;

	lock(s);
	r = !s->broken && (buffer_len(&s->out) > 0 ||
			   (svc->on_writable && !s->closing &&
			    (!svc->writable_pending || svc->writable_pending(s))));
	unlock(s);
	return r;
}

bool
session_finished(struct session *s)
{
	bool r;

	lock(s);
	if (s->broken)
		r = true;
	else if (buffer_len(&s->out) > 0)
		r = false;
	else if (s->closing)
		r = true;
	else
		/* A streaming service goes on after a half-close, until the
		 * client is gone (RFC 864). */
		r = s->read_eof && buffer_len(&s->in) == 0 && !s->lst->service->on_writable;
	unlock(s);
	return r;
}

void
session_log_open(struct session *s)
{
	if (!s->counted_elsewhere) {
		STATS_ADD(s->lst, conns_total, 1);
		STATS_ADD(s->lst, conns_now, 1);
	}
	if (log_get_max_level() >= conn_log_level(s))
		log_conn(conn_log_level(s), s->lst->cfg.name, session_peer_str(s),
			 session_via_str(s), NULL, "connection opened%s",
			 s->health_check ? " (health check)" : "");
}

void
session_log_close(struct session *s)
{
	char reason[64], bin[48], bout[48], dur[48];
	const char *fields[5];
	uint64_t d;

	if (atomic_load(&s->stop_requested) != SESSION_STOP_NONE && (!s->close_reason || !strcmp(s->close_reason, "eof")))
		s->close_reason = "server stopping";
	if (!s->counted_elsewhere)
		STATS_SUB(s->lst, conns_now, 1);
	if (log_get_max_level() < conn_log_level(s))
		return;
	d = now_usec() - s->start_usec;
	snprintf(reason, sizeof(reason), "REASON=%s", s->close_reason ? s->close_reason : "eof");
	snprintf(bin, sizeof(bin), "BYTES_IN=%" PRIu64, s->bytes_in);
	snprintf(bout, sizeof(bout), "BYTES_OUT=%" PRIu64, s->bytes_out);
	snprintf(dur, sizeof(dur), "DURATION_USEC=%" PRIu64, d);
	fields[0] = reason;
	fields[1] = bin;
	fields[2] = bout;
	fields[3] = dur;
	fields[4] = NULL;
	log_conn(conn_log_level(s), s->lst->cfg.name, session_peer_str(s), session_via_str(s),
		 fields,
		   "connection closed (%s), %" PRIu64 " bytes in, %" PRIu64
		   " bytes out, %" PRIu64 ".%03" PRIu64 " s",
		   s->close_reason ? s->close_reason : "eof", s->bytes_in, s->bytes_out,
		   d / USEC_PER_SEC, d % USEC_PER_SEC / 1000);
}

unsigned
session_start(struct session *s)
{
	session_log_open(s);
	if (s->lst->service->on_open)
		s->lst->service->on_open(s);
	return session_next(s);
}

/* The server stops: the service's last words, then flush and close; or,
 * once shutdown_timeout ran out, close now. */
static void
apply_stop(struct session *s, int how)
{
	if (how == SESSION_STOP_NOW) {
		session_abort(s, "shutdown timeout");
		return;
	}
	if (s->stop_applied)
		return;
	s->stop_applied = true;
	if (s->lst->service->on_shutdown)
		s->lst->service->on_shutdown(s);
	session_close(s, "server stopping");
}

static unsigned next_what(struct session *s);
static unsigned step(struct session *s, unsigned ready, uint8_t *scratch, size_t size,
		     uint64_t now);

unsigned
session_next(struct session *s)
{
	const struct session *outer = stepping;
	unsigned ev;

	/* session_resume() may feed the service kept input. */
	stepping = s;
	ev = next_what(s);
	stepping = outer;
	return ev;
}

static unsigned
next_what(struct session *s)
{
	int stop = atomic_load_explicit(&s->stop_requested, memory_order_relaxed);
	unsigned ev;

	if (stop != SESSION_STOP_NONE)
		apply_stop(s, stop);
	if (session_finished(s))
		return SESSION_DONE;
	ev = (session_wants_read(s) ? SESSION_READ : 0) | (session_wants_write(s) ? SESSION_WRITE : 0);
	if (s->held)
		return ev | SESSION_HELD;
	if (ev)
		return ev;
	/* Input kept, nothing to send and not reading: offer the input
	 * again; if the service still takes none it never will. */
	session_resume(s);
	if (session_wants_write(s))
		return SESSION_WRITE;
	session_abort(s, "stalled");
	return SESSION_DONE;
}

unsigned
session_step(struct session *s, unsigned ready, uint8_t *scratch, size_t size, uint64_t now)
{
	const struct session *outer = stepping;
	unsigned ev;

	stepping = s;
	ev = step(s, ready, scratch, size, now);
	stepping = outer;
	return ev;
}

static unsigned
step(struct session *s, unsigned ready, uint8_t *scratch, size_t size, uint64_t now)
{
	if (ready & SESSION_WRITE) {
		uint64_t before = s->bytes_out;

		if (session_flush(s) == -EAGAIN && s->blocking)
			/* SO_SNDTIMEO ran out: the client read nothing for
			 * idle_timeout. */
			session_abort(s, "idle timeout");
		else if (s->bytes_out != before && s->lst->service->on_writable)
			s->last_active = now;
	}
	if ((ready & SESSION_READ) && session_wants_read(s)) {
		ssize_t n = session_read(s, scratch, size);

		if (n > 0)
			s->last_active = now;
		else if (n == -EAGAIN && s->blocking)
			/* SO_RCVTIMEO ran out. */
			session_abort(s, "idle timeout");
	}
	return session_next(s);
}

void
session_end(struct session *s)
{
	if (s->lst->service->on_close)
		s->lst->service->on_close(s);
	if (s->driver && s->driver->detach)
		s->driver->detach(s);
	session_log_close(s);
	s->fd = safe_close(s->fd);
	if (!s->counted_elsewhere)
		admission_release(s->lst, &s->peer);
	session_done(s);
}

uint64_t
session_idle_deadline(const struct session *s)
{
	unsigned idle = s->lst->cfg.idle_timeout;

	return idle ? s->last_active + (uint64_t)idle * USEC_PER_SEC : 0;
}

bool
session_expire(struct session *s, uint64_t now)
{
	uint64_t due = session_idle_deadline(s);

	if (!due || now < due)
		return false;
	session_abort(s, "idle timeout");
	return true;
}

void
session_request_stop(struct session *s, enum session_stop how)
{
	lock(s);
	if (atomic_load(&s->stop_requested) < (int)how)
		atomic_store(&s->stop_requested, (int)how);
	if (s->driver && s->driver->want_write)
		s->driver->want_write(s);
	unlock(s);
}
