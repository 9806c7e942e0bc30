#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

#include "admission.h"
#include "cidr.h"
#include "listener-rt.h"
#include "log.h"
#include "service.h"
#include "srctable.h"

bool
admission_acl_ok(const struct listener_rt *l, const union sockaddr_any *peer)
{
	if (l->cfg.n_deny && cidr_list_match(l->cfg.deny, l->cfg.n_deny, peer))
		return false;
	if (l->cfg.has_allow && !cidr_list_match(l->cfg.allow, l->cfg.n_allow, peer))
		return false;
	return true;
}

const char *
admission_admit(struct listener_rt *l, const union sockaddr_any *peer)
{
	if (l->cfg.proxy_protocol) {
		if (!cidr_list_match(l->cfg.proxy_from, l->cfg.n_proxy_from, peer))
			return "not a trusted proxy (not in proxy_from)";
	} else if (!admission_acl_ok(l, peer))
		return "not allowed";
	if (atomic_fetch_add(&l->clients, 1) >= l->cfg.max_clients) {
		atomic_fetch_sub(&l->clients, 1);
		return "server full";
	}
	if (l->cfg.proxy_protocol)
		return NULL;
	if (l->per_source && !srccount_acquire(l->per_source, peer, l->cfg.per_source)) {
		atomic_fetch_sub(&l->clients, 1);
		return "too many connections from this source";
	}
	return NULL;
}

const char *
admission_admit_source(struct listener_rt *l, const union sockaddr_any *src, bool health_check)
{
	const char *why = NULL;

	if (!health_check && !admission_acl_ok(l, src))
		why = "not allowed";
	else if (l->per_source && !srccount_acquire(l->per_source, src, l->cfg.per_source))
		why = "too many connections from this source";
	if (why)
		admission_release_accepted(l);
	return why;
}

void
admission_release_accepted(struct listener_rt *l)
{
	atomic_fetch_sub(&l->clients, 1);
}

void
admission_release(struct listener_rt *l, const union sockaddr_any *peer)
{
	if (l->per_source)
		srccount_release(l->per_source, peer);
	admission_release_accepted(l);
}

/* One limiter per process is enough: refusals are rare and this only
 * keeps a flood from flooding the log. */
static struct log_ratelimit refuse_rl = LOG_RATELIMIT_INIT(USEC_PER_SEC, 10);
static pthread_mutex_t refuse_lock = PTHREAD_MUTEX_INITIALIZER;

void
admission_refuse(struct listener_rt *l, int fd, const union sockaddr_any *peer,
		 const union sockaddr_any *via, const char *reason)
{
	const char *full = l->cfg.proxy_protocol ? NULL : l->service->full_text;
	char p[SOCKADDR_STR_MAX], v[SOCKADDR_STR_MAX];
	unsigned suppressed = 0;
	bool ok;

	STATS_ADD(l, refused[refuse_reason_from_message(reason)], 1);
	if (full && strcmp(reason, "server full") == 0)
		(void)send(fd, full, strlen(full), MSG_NOSIGNAL | MSG_DONTWAIT);
	safe_close(fd);

	pthread_mutex_lock(&refuse_lock);
	ok = log_ratelimit_ok(&refuse_rl, now_usec(), &suppressed);
	pthread_mutex_unlock(&refuse_lock);
	if (!ok)
		return;
	if (suppressed)
		log_listener(LOG_WARNING, l->cfg.name, NULL,
			     "%u more refused connections were not logged", suppressed);
	log_conn(LOG_WARNING, l->cfg.name, sockaddr_to_string(peer, p, sizeof(p)),
		 via ? sockaddr_to_string(via, v, sizeof(v)) : NULL, NULL, "connection refused: %s",
		 reason);
}
