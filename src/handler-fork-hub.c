#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "handler.h"
#include "loop.h"
#include "util.h"

/* Fork model chat: each connection gets a child that only moves bytes
 * between the client and a socketpair; the listener process is the hub
 * that runs the room over the other ends. Client processes cannot see
 * each other, so lines meet in the hub, with its ordering and its
 * slow-consumer rule. */

#define PUMP_BUF (16 * 1024)

/* What the client's socket took, as the pump counts it for the hub: the
 * hub's unsent output is what it queued minus this, the same meaning as
 * in the models that write to the client themselves, whatever waits in
 * the socketpair and the pump meanwhile. The slots live in MAP_SHARED
 * pages the hub maps before it forks the pumps that use them; a slot is
 * reused only once the hub's session and the pump are both gone. One hub
 * per process, so the table is plain static state of the hub. */
struct pump_slot {
	_Atomic uint64_t delivered; /* written by the pump only */
	pid_t pid;                  /* hub only, as the rest */
	unsigned refs;              /* the session, the child; 0 = free */
};

static struct pump_slot **slot_pages;
static size_t n_slot_pages;

static size_t
slots_per_page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE) / sizeof(struct pump_slot);
}

static struct pump_slot *
slot_get(void)
{
	size_t per = slots_per_page();
	struct pump_slot **pages, *p;

	for (size_t i = 0; i < n_slot_pages; i++)
		for (size_t j = 0; j < per; j++)
			if (slot_pages[i][j].refs == 0)
				return &slot_pages[i][j];
	pages = realloc(slot_pages, (n_slot_pages + 1) * sizeof(*pages));
	if (!pages)
		return NULL;
	slot_pages = pages;
	p = mmap(NULL, per * sizeof(*p), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	slot_pages[n_slot_pages++] = p;
	return p;
}

static void
slot_unref(struct pump_slot *p)
{
	if (p && p->refs > 0 && --p->refs == 0)
		p->pid = 0;
}

static void
hub_release(const _Atomic uint64_t *delivered)
{
	if (delivered)
		slot_unref(container_of(delivered, struct pump_slot, delivered));
}

static void
hub_child_exited(pid_t pid)
{
	size_t per = slots_per_page();

	for (size_t i = 0; i < n_slot_pages; i++)
		for (size_t j = 0; j < per; j++)
			if (slot_pages[i][j].refs > 0 && slot_pages[i][j].pid == pid) {
				slot_unref(&slot_pages[i][j]);
				return;
			}
}

/* drain_ms: how long the client may take to read what the hub sent last,
 * once the hub is done with it (the listener's shutdown_timeout). */
static void
pump(int client, int hub, int drain_ms, _Atomic uint64_t *delivered)
{
	uint8_t to_hub[PUMP_BUF], to_client[PUMP_BUF];
	size_t n_to_hub = 0, n_to_client = 0;
	uint64_t sent = 0;
	bool client_eof = false, hub_eof = false, hub_shut = false;

	(void)fd_set_nonblock(client, true);
	(void)fd_set_nonblock(hub, true);
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = client, .events = (short)((!client_eof && n_to_hub < PUMP_BUF ? POLLIN : 0) |
							  (n_to_client ? POLLOUT : 0)) },
			{ .fd = hub, .events = (short)((!hub_eof && n_to_client < PUMP_BUF ? POLLIN : 0) |
						       (n_to_hub ? POLLOUT : 0)) },
		};
		ssize_t n;
		int r;

		/* poll() reports POLLHUP and POLLERR even for a side we want
		 * nothing from, and would return at once forever: leave such
		 * a side out. */
		for (int i = 0; i < 2; i++)
			if (!p[i].events)
				p[i].fd = -1;
		/* The client half-closed and the hub has all it sent: pass the
		 * half-close on, and keep carrying the hub's answers. */
		if (client_eof && n_to_hub == 0 && !hub_shut) {
			(void)shutdown(hub, SHUT_WR);
			hub_shut = true;
		}
		/* The hub is done with this client and it has everything. */
		if (hub_eof && n_to_client == 0)
			return;
		r = poll(p, 2, hub_eof ? drain_ms : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return; /* or a client that stopped reading after the hub was done */
		if (p[0].revents & (POLLIN | POLLERR | POLLHUP) && p[0].events & POLLIN) {
			n = read(client, to_hub + n_to_hub, PUMP_BUF - n_to_hub);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				client_eof = true;
			else if (n > 0)
				n_to_hub += (size_t)n;
		}
		if (p[1].revents & (POLLIN | POLLERR | POLLHUP) && p[1].events & POLLIN) {
			n = read(hub, to_client + n_to_client, PUMP_BUF - n_to_client);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				hub_eof = true;
			else if (n > 0)
				n_to_client += (size_t)n;
		}
		if (n_to_hub && p[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
			n = send(hub, to_hub, n_to_hub, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return;
			if (n > 0) {
				memmove(to_hub, to_hub + n, n_to_hub - (size_t)n);
				n_to_hub -= (size_t)n;
			}
		}
		if (n_to_client && p[0].revents & (POLLOUT | POLLERR | POLLHUP)) {
			n = send(client, to_client, n_to_client, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return; /* the client is gone */
			if (n > 0) {
				memmove(to_client, to_client + n, n_to_client - (size_t)n);
				n_to_client -= (size_t)n;
				sent += (uint64_t)n;
				atomic_store_explicit(delivered, sent, memory_order_relaxed);
			}
		}
	}
}

/* Close every fd but stdio and the two given, which end up as 3 and 4: a
 * pump must not keep the hub's ends of other clients' socketpairs open
 * (their pumps would never see the hub close). */
static int
keep_only(int *a, int *b)
{
	struct rlimit rl;
	int ta, tb;

	ta = fcntl(*a, F_DUPFD, 5);
	if (ta < 0)
		return -errno;
	tb = fcntl(*b, F_DUPFD, 5);
	if (tb < 0 || dup2(ta, 3) < 0 || dup2(tb, 4) < 0)
		return -errno;
	*a = 3;
	*b = 4;
	if (syscall(SYS_close_range, 5u, ~0u, 0u) == 0)
		return 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		rl.rlim_cur = 65536;
	for (rlim_t i = 5; i < rl.rlim_cur; i++)
		(void)close((int)i);
	return 0;
}

/* Fork a child that pumps bytes between the client cfd (closed here once
 * it has it) and a socketpair; the hub's session serves the other end.
 * The session's delivered is the slot's count, valid until both
 * hub_release() for it and hub_child_exited() for the child. */
static const char *
hub_accept(struct listener_rt *l, int cfd, int *ret_fd, const _Atomic uint64_t **ret_delivered)
{
	int sp[2], small = 16 * 1024;
	struct pump_slot *slot;
	pid_t pid;

	slot = slot_get();
	if (!slot)
		return "cannot fork";
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return "cannot fork";
	/* Taken before the fork, so the child has the page and the count. */
	atomic_store_explicit(&slot->delivered, 0, memory_order_relaxed);
	slot->refs = 2;
	/* Small socket buffers: a client that stops reading backs up to
	 * the hub quickly, where the 64 KiB slow-consumer rule applies. */
	for (int i = 0; i < 2; i++) {
		(void)setsockopt(sp[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
		(void)setsockopt(sp[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	}
	pid = fork();
	if (pid < 0) {
		safe_close(sp[0]);
		safe_close(sp[1]);
		slot->refs = 0;
		return "cannot fork";
	}
	if (pid == 0) {
		int hub = sp[1];
		sigset_t none;

		if (keep_only(&cfd, &hub) < 0)
			_exit(1);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		handler_tune_stream(cfd);
		pump(cfd, hub, (int)MIN(l->shutdown_timeout, 3600u) * 1000, &slot->delivered);
		_exit(0);
	}
	safe_close(sp[1]);
	/* The child has the client; the hub talks to the child. */
	safe_close(cfd);
	slot->pid = pid;
	*ret_fd = sp[0];
	*ret_delivered = &slot->delivered;
	return NULL;
}

/* The hub is an event loop model run over the pumps' sockets, on poll. */
const struct conn_hub_ops handler_fork_hub_ops = {
	.backend = LOOP_BACKEND_POLL,
	.reaps_children = true,
	.accept = hub_accept,
	.release = hub_release,
	.child_exited = hub_child_exited,
};
