/* End to end with a real Prometheus server (SPEC section 11): it scrapes a
 * netechod metrics listener every second on loopback, and its query API
 * reports netechod_connections_total after known traffic. Skipped (exit
 * 77) where prometheus is not installed. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

#define IO_MS HARNESS_IO_TIMEOUT_MS
/* Prometheus starts, scrapes (1 s interval) and answers within this. */
#define PROMETHEUS_WAIT_MS 60000
#define CONNECTIONS 5

static char prometheus_bin[HARNESS_PATH_MAX];

static bool
find_prometheus(void)
{
	const char *path = getenv("PATH");
	_cleanup_(freep) char *copy = strdup(path ? path : "/usr/bin:/bin");

	if (!copy)
		return false;
	for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(prometheus_bin, sizeof(prometheus_bin), "%s/prometheus", dir);
		if (access(prometheus_bin, X_OK) == 0)
			return true;
	}
	return false;
}

/* GET path from 127.0.0.1:port (HTTP/1.0, the server closes): the whole
 * response in *ret, or NULL when it cannot be had yet. */
static char *
http_get(uint16_t port, const char *path)
{
	_cleanup_(closep) int fd = harness_tcp_connect(port);
	char req[1024];
	char *resp = NULL;
	int n;

	if (fd < 0)
		return NULL;
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (harness_send_all(fd, req, (size_t)n, IO_MS) < 0)
		return NULL;
	if (harness_recv_until_eof(fd, &resp, 1024 * 1024, IO_MS) < 0) {
		free(resp);
		return NULL;
	}
	return resp;
}

/* The value of the first sample of an instant query's JSON answer, or -1. */
static long long
query_value(const char *resp)
{
	const char *p = resp ? strstr(resp, "\"value\":[") : NULL;

	if (!p || !(p = strstr(p, ",\"")))
		return -1;
	return strtoll(p + 2, NULL, 10);
}

static pid_t
start_prometheus(const char *dir, uint16_t web_port, uint16_t target_port)
{
	char conf[HARNESS_PATH_MAX + 32], data[HARNESS_PATH_MAX + 32], log[HARNESS_PATH_MAX + 32];
	char cfg_arg[HARNESS_PATH_MAX + 64], data_arg[HARNESS_PATH_MAX + 64], web_arg[64];
	FILE *f;
	pid_t pid;

	snprintf(conf, sizeof(conf), "%s/prometheus.yml", dir);
	snprintf(data, sizeof(data), "%s/tsdb", dir);
	snprintf(log, sizeof(log), "%s/prometheus.log", dir);
	f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"global:\n"
		"  scrape_interval: 1s\n"
		"  evaluation_interval: 1s\n"
		"scrape_configs:\n"
		"  - job_name: netechod\n"
		"    scrape_interval: 1s\n"
		"    scrape_timeout: 1s\n"
		"    static_configs:\n"
		"      - targets: [ \"127.0.0.1:%u\" ]\n",
		target_port);
	ck_assert_int_eq(fclose(f), 0);
	snprintf(cfg_arg, sizeof(cfg_arg), "--config.file=%s", conf);
	snprintf(data_arg, sizeof(data_arg), "--storage.tsdb.path=%s", data);
	snprintf(web_arg, sizeof(web_arg), "--web.listen-address=127.0.0.1:%u", web_port);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execl(prometheus_bin, prometheus_bin, cfg_arg, data_arg, web_arg,
		      "--log.level=warn", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* SIGTERM, and SIGKILL if it has not exited within IO_MS. */
static void
stop_prometheus(pid_t pid)
{
	uint64_t deadline = now_usec() + (uint64_t)IO_MS * USEC_PER_MSEC;
	int status;

	(void)kill(pid, SIGTERM);
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_usec() > deadline) {
			(void)kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			return;
		}
		(void)poll(NULL, 0, 50);
	}
}

static void
dump_file(const char *dir, const char *name)
{
	char path[HARNESS_PATH_MAX + 32], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return;
	fprintf(stderr, "---- %s ----\n", path);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

START_TEST(prometheus_scrapes_connections_total)
{
	struct hdaemon d = { 0 };
	struct hl_listener ls[] = {
		{ .name = "metrics", .protocol = "tcp", .model = "poll", .service = "metrics" },
		{ .name = "echo", .protocol = "tcp", .model = "epoll" },
	};
	char dir[] = "/tmp/netechod-prom.XXXXXX";
	_cleanup_(freep) char *cmd = NULL;
	uint64_t deadline;
	uint16_t web_port;
	long long got = -1;
	pid_t prom;
	int r;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	r = harness_start(&d, ls, ELEMENTSOF(ls), NULL);
	ck_assert_msg(r == 0, "netechod did not start: %s", strerror(-r));
	for (int i = 0; i < CONNECTIONS; i++) {
		_cleanup_(closep) int fd = harness_tcp_connect(ls[1].port);
		char buf[4];

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(harness_send_all(fd, "ping", 4, IO_MS), 0);
		ck_assert_int_eq(harness_recv_exact(fd, buf, 4, IO_MS), 4);
	}
	ck_assert_int_eq(harness_free_port(SOCK_STREAM, "127.0.0.1", &web_port), 0);
	prom = start_prometheus(dir, web_port, ls[0].port);

	/* Ask until a scrape after the traffic is in; each query is a round
	 * trip, paced so as not to spin while Prometheus starts. */
	deadline = now_usec() + (uint64_t)PROMETHEUS_WAIT_MS * USEC_PER_MSEC;
	while (now_usec() < deadline) {
		_cleanup_(freep) char *resp = http_get(
			web_port,
			"/api/v1/query?query=netechod_connections_total%7Blistener%3D%22echo%22%7D");

		got = query_value(resp);
		if (got == CONNECTIONS)
			break;
		(void)poll(NULL, 0, 200);
	}
	if (got != CONNECTIONS) {
		dump_file(dir, "prometheus.log");
		harness_log_dump(&d);
	}
	stop_prometheus(prom);
	ck_assert_int_eq(harness_stop(&d, SIGTERM), 0);
	ck_assert_int_gt(asprintf(&cmd, "rm -rf '%s'", dir), 0);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_msg(got == CONNECTIONS,
		      "Prometheus reported netechod_connections_total{listener=\"echo\"} = %lld, expected %d",
		      got, CONNECTIONS);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("prometheus");
	TCase *tc = tcase_create("e2e");
	SRunner *sr;
	int failed;

	if (!find_prometheus()) {
		printf("prometheus not found in PATH: skipped\n");
		return HARNESS_EXIT_SKIP;
	}
	tcase_set_timeout(tc, PROMETHEUS_WAIT_MS / 1000 + 30);
	tcase_add_test(tc, prometheus_scrapes_connections_total);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
