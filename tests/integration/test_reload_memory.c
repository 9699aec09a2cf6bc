/* Integration: reloads do not leak. lb is reloaded 500 times between two configs that
 * differ in every way a reload handles (200 backends renamed, a pool and a listener that come
 * and go), while a connection opened before the first reload stays open on a backend that is
 * kept (the renamed ones weigh 0: nothing connects to them), and another on a listener,
 * pool and backend that the next reload removes stays open for ten more reloads. lb's resident
 * memory after the last reload must be within a few hundred KB of what it was after the first few,
 * the held connection must still echo, and lb's fd count must not grow. Before the graveyard
 * (lb/retire.h) this grew by about 130 KB per reload. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support.h"

#define TEST_TIMEOUT_S 240
#define RELOADS	       500
/* Reloads before the baseline is taken: the allocator and the kernel's socket caches settle. */
#define WARMUP 20
/* Backends renamed by every reload. */
#define CHURN 200
/* Growth allowed over the 480 measured reloads ("within a few hundred KB"). */
#define RSS_SLACK_KB 512
/* Under AddressSanitizer freed memory sits in quarantine and ThreadSanitizer keeps shadow
 * memory and histories, so RSS says nothing there; those runs still catch any use of what
 * the graveyard freed too early, and races. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_CHECKED false
#else
#define RSS_CHECKED true
#endif
#define REPLY_MAX (1 << 20)

static struct {
	struct lbproc lb;
	bool lb_started;
	int port, extra_port;
	struct t_backends be;
} h;

#define expect(cond, ...) t_check_lb(h.lb_started ? &h.lb : NULL, cond, __VA_ARGS__)

/* Config `variant` 0 or 1: the kept echo backend "e" plus CHURN unreachable backends whose
 * names differ between the variants; variant 1 adds a listener and the pool it uses. */
static char *config(int variant)
{
	char *json = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&json, &len);

	fprintf(f,
		"{\"engine\":\"%s\",\"workers\":2,\"shutdown_grace\":\"1s\","
		"\"control\":{\"socket\":\"@DIR@/lb.sock\"},\"listeners\":["
		"{\"name\":\"web\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"web\"}",
		t_engine(), h.port);
	if (variant)
		fprintf(f, ",{\"name\":\"extra\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"extra\"}",
			h.extra_port);
	fprintf(f,
		"],\"pools\":[{\"name\":\"web\",\"health\":{\"type\":\"none\"},\"backends\":["
		"{\"name\":\"e\",\"address\":\"%s\",\"weight\":1}",
		tb_address(h.be.tb[0]));
	for (int i = 0; i < CHURN; i++)
		fprintf(f, ",{\"name\":\"%c%d\",\"address\":\"127.0.0.1:%d\",\"weight\":0}",
			variant ? 'v' : 'u', i, 1 + i);
	fprintf(f, "]}");
	if (variant)
		fprintf(f, ",{\"name\":\"extra\",\"backends\":[{\"address\":\"%s\"}]}",
			tb_address(h.be.tb[0]));
	fprintf(f, "]}\n");
	fclose(f);
	return json;
}

static void write_variant(int variant)
{
	char *json = config(variant), *full = t_expand_dir(json, h.lb.dir), tmp[400];

	snprintf(tmp, sizeof(tmp), "%s.tmp", h.lb.config_path);
	FILE *f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(full, f);
	fclose(f);
	ck_assert_int_eq(rename(tmp, h.lb.config_path), 0);
	free(full);
	free(json);
}

/* One request on the control connection; its answer must say ok. */
static void reload_on(int cfd, char *buf)
{
	static const char req[] = "{\"cmd\":\"reload\"}\n";
	size_t got = 0;

	expect(t_send_all(cfd, req, sizeof(req) - 1), "control socket write failed");
	for (;;) {
		expect(got < REPLY_MAX - 1, "reload answer too long");
		expect(t_wait_readable(cfd, 10000), "no reload answer within 10 s");
		ssize_t n = recv(cfd, buf + got, REPLY_MAX - 1 - got, 0);
		expect(n > 0, "control socket closed");
		got += (size_t)n;
		if (buf[got - 1] == '\n')
			break;
	}
	buf[got] = '\0';
	expect(strncmp(buf, "{\"ok\":true", 10) == 0, "reload failed: %.400s", buf);
}

static int control_connect(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/lb.sock", h.lb.dir);
	expect(fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
	       "cannot connect to the control socket");
	return fd;
}

START_TEST(test_reloads_do_not_grow_memory)
{
	char *buf = malloc(REPLY_MAX);
	long base = -1;
	int base_fds = -1;

	ck_assert_ptr_nonnull(buf);
	t_backends_add(&h.be, TB_ECHO, "e");
	h.port = t_free_port();
	h.extra_port = t_free_port();
	char *json = config(0);
	int rc = lb_start(&h.lb, json, &h.port, 1);
	h.lb_started = true;
	free(json);
	expect(rc == 0, "lb did not start");
	expect(lb_log_wait(&h.lb, "control socket", 3000), "no control socket in the log");

	int held = t_connect(NULL, h.port); /* the others weigh 0: e gets it */
	expect(held >= 0, "cannot connect through lb");
	expect(t_echo_byte(held, 'a', 3000), "the held connection does not echo");
	int cfd = control_connect(), gone = -1;
	for (int i = 1; i <= RELOADS; i++) {
		write_variant(i % 2);
		reload_on(cfd, buf);
		if (i == WARMUP + 1) {
			/* On the listener, pool and backend the next reload removes: they must
			 * outlive it, and be freed when this connection ends. */
			gone = t_connect(NULL, h.extra_port);
			expect(gone >= 0 && t_echo_byte(gone, 'x', 3000),
			       "no echo through the extra listener");
		}
		if (i == WARMUP + 11) {
			expect(t_echo_byte(gone, 'y', 3000),
			       "a connection on a removed listener broke");
			close(gone);
		}
		if (i == WARMUP) {
			usleep(300 * 1000); /* let the graveyard free what waits */
			base = lb_rss_kb(h.lb.pid);
			base_fds = lb_fd_count(&h.lb);
		}
	}
	usleep(300 * 1000);
	long end = lb_rss_kb(h.lb.pid);
	int end_fds = lb_fd_count(&h.lb);
	fprintf(stderr,
		"test_reload_memory (%s): RSS after %d reloads %ld kB, after %d reloads %ld kB "
		"(%+ld kB); fds %d -> %d\n",
		t_engine(), WARMUP, base, RELOADS, end, end - base, base_fds, end_fds);
	expect(base > 0 && end > 0, "cannot read lb's RSS");
	expect(!RSS_CHECKED || end - base <= RSS_SLACK_KB,
	       "RSS grew by %ld kB over %d reloads (allowed %d)", end - base, RELOADS - WARMUP,
	       RSS_SLACK_KB);
	expect(end_fds <= base_fds, "lb's fds grew from %d to %d", base_fds, end_fds);
	expect(t_echo_byte(held, 'b', 3000), "the held connection broke during the reloads");
	close(held);
	close(cfd);
	char *log = lb_log(&h.lb);
	expect(log && !strstr(log, "leak") && !strstr(log, "error"), "lb logged an error: %s",
	       log ? log : "");
	free(log);
	free(buf);
}
END_TEST

static void finish(void)
{
	if (h.lb_started)
		t_stop_lb(&h.lb);
	h.lb_started = false;
	t_backends_free(&h.be);
}

int main(void)
{
	Suite *s = suite_create("reload_memory");
	TCase *tc = tcase_create("reload_memory");

	tcase_add_checked_fixture(tc, NULL, finish);
	tcase_set_timeout(tc, TEST_TIMEOUT_S);
	tcase_add_test(tc, test_reloads_do_not_grow_memory);
	suite_add_tcase(s, tc);
	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(s, CK_ENV);
}
