#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "acceptor.h"
#include "session.h"
#include "cidr.h"
#include "admission.h"
#include "listener-rt.h"
#include "loop.h"
#include "service.h"
#include "util.h"

/* The accept path without a daemon: a listening socket on 127.0.0.1:0,
 * a listener_rt with only what admission_admit() and admission_refuse() read,
 * and one loop per backend (tcase_add_loop_test, _i). An alarm bounds each
 * case, also under CK_FORK=no. */

#define TEST_ALARM_SEC 10
#define MAX_ITERATIONS 1000
#define WAIT_MS 1000
#define MAX_CONNS 8

struct fixture {
	struct listener_stats stats;
	struct listener_rt lst;
	struct cidr deny;
	struct acceptor a;
	struct loop *loop;
	int lfd;
	struct sockaddr_in addr;
	int conns[MAX_CONNS];
	union sockaddr_any peers[MAX_CONNS];
	struct conn_origin origins[MAX_CONNS];
	int n_conns;
	const char *refuse_with; /* on_conn() cannot serve: this reason */
};

static struct fixture fx;

static const char *
on_conn(struct acceptor *a, int *fd, const struct conn_origin *o)
{
	struct fixture *f = a->userdata;

	ck_assert_int_lt(f->n_conns, MAX_CONNS);
	if (f->refuse_with)
		return f->refuse_with;
	f->conns[f->n_conns] = *fd;
	f->peers[f->n_conns] = o->peer;
	f->origins[f->n_conns] = *o;
	f->n_conns++;
	return NULL;
}

static void
setup(void)
{
	socklen_t alen = sizeof(fx.addr);

	(void)signal(SIGPIPE, SIG_IGN);
	alarm(TEST_ALARM_SEC);
	fx = (struct fixture){ .lfd = -1 };
	fx.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fx.lfd, 0);
	fx.addr.sin_family = AF_INET;
	fx.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fx.lfd, (struct sockaddr *)&fx.addr, sizeof(fx.addr)), 0);
	ck_assert_int_eq(listen(fx.lfd, 16), 0);
	ck_assert_int_eq(getsockname(fx.lfd, (struct sockaddr *)&fx.addr, &alen), 0);

	strcpy(fx.lst.cfg.name, "test");
	fx.lst.cfg.protocol = PROTOCOL_TCP;
	fx.lst.cfg.service = SERVICE_ECHO;
	fx.lst.service = service_get(SERVICE_ECHO);
	fx.lst.cfg.max_clients = 2;
	fx.lst.stats = &fx.stats;
	fx.lst.fds = &fx.lfd;
	fx.lst.n_fds = 1;
	fx.lst.ready_fd = -1;
}

static void
teardown(void)
{
	if (fx.loop) {
		acceptor_stop(&fx.a);
		fx.loop = loop_free(fx.loop);
	}
	for (int i = 0; i < fx.n_conns; i++) {
		close(fx.conns[i]);
		admission_release(&fx.lst, &fx.peers[i]);
	}
	safe_close(fx.lfd);
	alarm(0);
}

static void
start(int backend)
{
	ck_assert_int_eq(loop_new(&fx.loop, (enum loop_backend)backend), 0);
	fx.a = (struct acceptor){
		.lst = &fx.lst,
		.loop = fx.loop,
		.fds = &fx.lfd,
		.n_fds = 1,
		.events = LOOP_READ,
		.accept_flags = SOCK_NONBLOCK,
		.on_conn = on_conn,
		.userdata = &fx,
	};
	ck_assert_int_eq(acceptor_start(&fx.a), 0);
}

static uint64_t
mono_usec(void)
{
	struct timespec ts;

	ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* A blocking client, connected (the kernel completes it from the
 * backlog) and with a receive timeout so no read can hang. */
static int
connect_client(void)
{
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&fx.addr, sizeof(fx.addr)), 0);
	return fd;
}

/* Iterate until n_conns admitted and refused refusals counted. */
static void
run_until(int n_conns, uint64_t refused)
{
	for (int i = 0; fx.n_conns < n_conns || stats_refused_sum(&fx.stats) < refused; i++) {
		ck_assert_msg(i < MAX_ITERATIONS, "%d admitted, %llu refused after %d iterations",
			      fx.n_conns, (unsigned long long)stats_refused_sum(&fx.stats), i);
		ck_assert_int_eq(loop_run_once(fx.loop, WAIT_MS), 0);
	}
	ck_assert_int_eq(fx.n_conns, n_conns);
	ck_assert_uint_eq(stats_refused_sum(&fx.stats), refused);
}

/* The server closed the client's connection, after sending expect. */
static void
assert_closed_after(int fd, const char *expect)
{
	char buf[64];
	size_t got = 0;
	ssize_t n;

	while ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	ck_assert_msg(n == 0, "read: %s", n < 0 ? strerror(errno) : "?");
	buf[got] = '\0';
	ck_assert_str_eq(buf, expect);
}

START_TEST(acceptor_refuses_beyond_max_clients)
{
	int c[4];

	start(_i);
	for (int i = 0; i < 3; i++)
		c[i] = connect_client();
	run_until(2, 1);
	ck_assert_uint_eq(fx.lst.clients, 2);
	/* An echo client is just closed. */
	assert_closed_after(c[2], "");

	/* One leaves: room for the next. */
	close(fx.conns[0]);
	admission_release(&fx.lst, &fx.peers[0]);
	fx.conns[0] = fx.conns[--fx.n_conns];
	fx.peers[0] = fx.peers[fx.n_conns];
	c[3] = connect_client();
	run_until(2, 1);
	ck_assert_uint_eq(fx.lst.clients, 2);

	for (int i = 0; i < 4; i++)
		close(c[i]);
}
END_TEST

START_TEST(acceptor_tells_chat_client_server_full)
{
	int c;

	fx.lst.cfg.service = SERVICE_CHAT;
	fx.lst.service = service_get(SERVICE_CHAT);
	fx.lst.cfg.max_clients = 0;
	start(_i);
	c = connect_client();
	run_until(0, 1);
	ck_assert_uint_eq(fx.lst.clients, 0);
	assert_closed_after(c, "! server full\r\n");
	close(c);
}
END_TEST

START_TEST(acceptor_refuses_denied_peer)
{
	int c;

	/* Even a chat client is only closed: it is not "full". */
	fx.lst.cfg.service = SERVICE_CHAT;
	fx.lst.service = service_get(SERVICE_CHAT);
	ck_assert_int_eq(cidr_parse("127.0.0.0/8", &fx.deny), 0);
	fx.lst.cfg.deny = &fx.deny;
	fx.lst.cfg.n_deny = 1;
	start(_i);
	c = connect_client();
	run_until(0, 1);
	ck_assert_uint_eq(fx.lst.clients, 0);
	assert_closed_after(c, "");
	close(c);
}
END_TEST

START_TEST(acceptor_pauses_when_out_of_fds)
{
	struct rlimit saved, low;
	uint64_t t0, t1;
	int c, next;

	start(_i);
	c = connect_client();
	/* No fd left for accept(): EMFILE. */
	next = dup(0);
	ck_assert_int_ge(next, 0);
	close(next);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = (rlim_t)next;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);

	t0 = mono_usec();
	ck_assert_int_eq(loop_run_once(fx.loop, WAIT_MS), 0);
	ck_assert_int_eq(fx.n_conns, 0);
	/* The listener is still readable, but no longer watched: a wait
	 * lasts its whole timeout instead of spinning on it. */
	t1 = mono_usec();
	ck_assert_int_eq(loop_run_once(fx.loop, 40), 0);
	ck_assert_msg(mono_usec() - t1 >= 35000, "listener still watched while out of fds");
	ck_assert_int_eq(fx.n_conns, 0);

	/* fds again: the connection is taken once the back-off ends. */
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
	run_until(1, 0);
	ck_assert_uint_ge(mono_usec() - t0, ACCEPTOR_BACKOFF_USEC - 5000);
	close(c);
}
END_TEST

START_TEST(acceptor_stop_stops_accepting)
{
	int c;

	start(_i);
	acceptor_stop(&fx.a);
	acceptor_stop(&fx.a); /* twice: harmless */
	c = connect_client();
	ck_assert_int_eq(loop_run_once(fx.loop, 20), 0);
	ck_assert_int_eq(fx.n_conns, 0);
	ck_assert_uint_eq(stats_refused_sum(&fx.stats), 0);
	close(c);
}
END_TEST

/* The model cannot serve an admitted connection (out of memory, cannot
 * fork): the acceptor releases the admission and refuses it, the one way
 * every model does. */
START_TEST(acceptor_refuses_what_the_model_cannot_serve)
{
	int c;

	start(_i);
	fx.refuse_with = "cannot fork";
	c = connect_client();
	run_until(0, 1);
	assert_closed_after(c, "");
	ck_assert_uint_eq(fx.lst.clients, 0);
	close(c);
	/* And the next one, served, is admitted as usual. */
	fx.refuse_with = NULL;
	c = connect_client();
	run_until(1, 1);
	ck_assert_uint_eq(fx.lst.clients, 1);
	close(c);
}
END_TEST

/* ---- proxy_protocol: the acceptor waits for the header ---- */

static struct cidr proxy_from;

static void
start_proxied(int backend)
{
	ck_assert_int_eq(cidr_parse("127.0.0.0/8", &proxy_from), 0);
	fx.lst.cfg.proxy_protocol = true;
	fx.lst.cfg.proxy_from = &proxy_from;
	fx.lst.cfg.n_proxy_from = 1;
	start(backend);
}

static void
send_all(int fd, const char *p, size_t n)
{
	ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
}

/* The header is taken, the bytes after it stay in the socket for the
 * session, and the model gets the client as its peer. */
START_TEST(acceptor_proxy_header_then_data)
{
	static const char h[] = "PROXY TCP4 192.0.2.7 127.0.0.1 4711 7\r\nafter";
	char buf[16], who[SOCKADDR_STR_MAX];
	ssize_t n;
	int c;

	start_proxied(_i);
	c = connect_client();
	send_all(c, h, sizeof(h) - 1);
	run_until(1, 0);
	ck_assert(fx.origins[0].proxied);
	ck_assert(!fx.origins[0].health_check);
	ck_assert_str_eq(sockaddr_to_string(&fx.peers[0], who, sizeof(who)), "192.0.2.7:4711");
	ck_assert_int_eq(fx.origins[0].via.sa.sa_family, AF_INET);
	n = recv(fx.conns[0], buf, sizeof(buf), MSG_DONTWAIT);
	ck_assert_int_eq(n, 5);
	ck_assert(memcmp(buf, "after", 5) == 0);
	ck_assert_uint_eq(fx.lst.clients, 1);
	close(c);
}
END_TEST

/* A header in parts: nothing is handed over until it is whole, and the
 * loop is not kept busy by the part already there. */
START_TEST(acceptor_proxy_header_in_parts)
{
	static const char h[] = "PROXY TCP4 192.0.2.7 127.0.0.1 4711 7\r\n";
	uint64_t t0;
	int c;

	start_proxied(_i);
	c = connect_client();
	send_all(c, h, 9);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(loop_run_once(fx.loop, 20), 0);
	ck_assert_int_eq(fx.n_conns, 0);
	/* The 9 bytes were consumed: the socket is not readable, the wait
	 * lasts its timeout. */
	t0 = mono_usec();
	ck_assert_int_eq(loop_run_once(fx.loop, 40), 0);
	ck_assert_msg(mono_usec() - t0 >= 35000, "the loop spins on a partial header");
	send_all(c, h + 9, 20);
	send_all(c, h + 29, sizeof(h) - 1 - 29);
	run_until(1, 0);
	ck_assert_uint_eq(fx.lst.clients, 1);
	close(c);
}
END_TEST

/* Not a header: closed without data, refused, and max_clients given back;
 * a v2 LOCAL header is a health check, from the balancer. */
START_TEST(acceptor_proxy_bad_header_and_health_check)
{
	static const char local[] = "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
	int c, d;

	start_proxied(_i);
	c = connect_client();
	send_all(c, "GET / HTTP/1.0\r\n", 16);
	run_until(0, 1);
	{
		/* Closed with our bytes unread: a reset, or EOF; no data. */
		char buf[8];
		ssize_t n = read(c, buf, sizeof(buf));

		ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET), "read: %zd", n);
	}
	ck_assert_uint_eq(fx.lst.clients, 0);
	d = connect_client();
	send_all(d, local, sizeof(local) - 1);
	run_until(1, 1);
	ck_assert(fx.origins[0].health_check);
	ck_assert(sockaddr_equal(&fx.peers[0], &fx.origins[0].via));
	close(c);
	close(d);
}
END_TEST

/* acceptor_stop() closes the connections still waiting and gives their
 * max_clients counts back. */
START_TEST(acceptor_proxy_stop_closes_waiting)
{
	int c;

	start_proxied(_i);
	c = connect_client();
	send_all(c, "PROXY", 5);
	for (int i = 0; i < 3 && fx.lst.clients == 0; i++)
		ck_assert_int_eq(loop_run_once(fx.loop, 100), 0);
	ck_assert_uint_eq(fx.lst.clients, 1);
	acceptor_stop(&fx.a);
	ck_assert_uint_eq(fx.lst.clients, 0);
	assert_closed_after(c, "");
	close(c);
}
END_TEST

static void
add_case(Suite *s, const char *name, const TTest *test)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TEST_ALARM_SEC);
	tcase_add_loop_test(tc, test, 0, _LOOP_BACKEND_MAX);
	suite_add_tcase(s, tc);
}

static Suite *
acceptor_suite(void)
{
	Suite *s = suite_create("acceptor");

	add_case(s, "max_clients", acceptor_refuses_beyond_max_clients);
	add_case(s, "chat_full", acceptor_tells_chat_client_server_full);
	add_case(s, "model_refuses", acceptor_refuses_what_the_model_cannot_serve);
	add_case(s, "deny", acceptor_refuses_denied_peer);
	add_case(s, "emfile", acceptor_pauses_when_out_of_fds);
	add_case(s, "stop", acceptor_stop_stops_accepting);
	add_case(s, "proxy_data", acceptor_proxy_header_then_data);
	add_case(s, "proxy_parts", acceptor_proxy_header_in_parts);
	add_case(s, "proxy_bad", acceptor_proxy_bad_header_and_health_check);
	add_case(s, "proxy_stop", acceptor_proxy_stop_closes_waiting);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(acceptor_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
