/* Integration: the agent check (pool "agent", backend "agent_port"), HAProxy's agent
 * protocol: each backend's agent answers one line that sets its weight percent, drains or
 * readies it, marks it down or up, or caps its connections; an agent that fails, answers
 * garbage, too much or nothing changes nothing, and the health checks go on. */
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

#define INTERVAL_MS 100
#define SEEN_MS	    2000 /* an answer is applied within a few intervals */
#define SAMPLE	    60

/* An agent: answers every connection with line (or nothing, holding it open, if silent). */
struct agent {
	int lfd, port;
	char line[1024];
	_Atomic bool silent, stop;
	pthread_mutex_t lock;
	pthread_t thread;
};

static struct t_harness h;
static struct agent ag;

static void *agent_main(void *arg)
{
	struct agent *a = arg;
	int held[64];
	size_t nheld = 0;

	while (!atomic_load(&a->stop)) {
		struct pollfd pfd = {.fd = a->lfd, .events = POLLIN};
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		int fd = accept(a->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (atomic_load(&a->silent) && nheld < 64) {
			held[nheld++] = fd;
			continue;
		}
		pthread_mutex_lock(&a->lock);
		(void)t_send_all(fd, a->line, strlen(a->line));
		pthread_mutex_unlock(&a->lock);
		close(fd);
	}
	while (nheld)
		close(held[--nheld]);
	return NULL;
}

static void agent_say(const char *line)
{
	pthread_mutex_lock(&ag.lock);
	snprintf(ag.line, sizeof(ag.line), "%s", line);
	pthread_mutex_unlock(&ag.lock);
}

static void setup(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);

	memset(&h, 0, sizeof(h));
	memset(&ag, 0, sizeof(ag));
	pthread_mutex_init(&ag.lock, NULL);
	agent_say("ready up 100%\n");
	ag.lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(ag.lfd, 0);
	ck_assert_int_eq(bind(ag.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(ag.lfd, 64), 0);
	ck_assert_int_eq(getsockname(ag.lfd, (struct sockaddr *)&sa, &len), 0);
	ag.port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&ag.thread, NULL, agent_main, &ag), 0);
}

static void teardown(void)
{
	t_harness_finish(&h);
	atomic_store(&ag.stop, true);
	pthread_join(ag.thread, NULL);
	close(ag.lfd);
}

/* Pool "p": weighted_round_robin over A and B (weight 10 each), tcp checks, an agent whose
 * pool port is closed (B's agent fails every time) and A's agent_port on the test agent. */
static void start(void)
{
	static const char *const names[] = {"A", "B"};
	json_t *cfg = t_cfg_new(2);

	t_backends_add_n(&h.be, TB_TAGGED, names, 2);
	h.port = t_free_port();
	t_cfg_listener(cfg, "ag", "tcp", "127.0.0.1", h.port, "p");
	json_t *pool =
	    t_cfg_pool(cfg, "p", "weighted_round_robin",
		       "{\"type\":\"tcp\",\"interval\":\"100ms\",\"timeout\":\"100ms\"}");
	t_cfg_set(pool, "\"agent\":{\"port\":%d,\"interval\":\"%dms\"}", t_free_port(),
		  INTERVAL_MS);
	t_cfg_set(t_cfg_backend(pool, "A", tb_address(h.be.tb[0])),
		  "\"weight\":10,\"agent_port\":%d", ag.port);
	t_cfg_set(t_cfg_backend(pool, "B", tb_address(h.be.tb[1])), "\"weight\":10");
	t_harness_start(&h, cfg, NULL);
}

/* Wait until `lbctl backends` (with --json if json) shows want: the agent's answer seen. */
static void wait_for(const char *want, bool json)
{
	uint64_t deadline = t_now_ms() + SEEN_MS;
	char *out = NULL;

	for (;;) {
		free(out);
		out = NULL;
		if (t_lbctl(h.sock, &out, NULL, "backends", json ? "--json" : NULL, NULL) == 0 &&
		    out && strstr(out, want))
			break;
		t_expect(&h, t_now_ms() < deadline, "lbctl backends never showed \"%s\":\n%s", want,
			 out ? out : "");
		usleep(20 * 1000);
	}
	free(out);
}

/* As the table shows it. */
static void wait_backends(const char *want)
{
	wait_for(want, false);
}

/* A's agent's last answer or error, as `lbctl backends --json` gives it. */
static void wait_last(const char *last)
{
	char want[700];
	snprintf(want, sizeof(want), "\"last\": \"%s\"", last);
	wait_for(want, true);
}

static unsigned a_share(void)
{
	unsigned c[T_BACKENDS_MAX] = {0};
	t_expect(&h, t_fetch_many(&h.be, h.port, SAMPLE, c) == 0, "fetches through lb failed");
	return c[0];
}

START_TEST(test_agent_sets_weight_state_and_maxconn)
{
	start();
	wait_last("ready up 100%");
	unsigned a = a_share();
	t_expect(&h, a >= SAMPLE / 2 - 2 && a <= SAMPLE / 2 + 2, "A got %u of %d at 100%%", a,
		 SAMPLE);

	agent_say("50%\n");
	wait_backends("(agent 50%)");
	a = a_share();
	t_expect(&h, a >= SAMPLE / 3 - 3 && a <= SAMPLE / 3 + 3, "A got %u of %d at 50%% (1:2)", a,
		 SAMPLE);

	agent_say("drain\n");
	wait_backends("agent draining");
	t_expect(&h, a_share() == 0, "a drained A got new connections");
	agent_say("ready,100%\n");
	wait_last("ready,100%");
	t_expect(&h, a_share() > 0, "A did not come back on ready");

	/* down: A's tcp check passes, the agent's word still takes it out. */
	agent_say("down # maintenance window\n");
	wait_backends("agent down");
	t_expect(&h, a_share() == 0, "A got connections while its agent says down");
	agent_say("up\n");
	wait_last("up");
	t_expect(&h, a_share() > 0, "A did not come back on up");

	agent_say("maxconn:1\n");
	wait_last("maxconn:1");
	int idx, held[2];
	for (int i = 0; i < 2; i++)
		held[i] = t_hold(&h.lb, &h.be, h.port, &idx);
	unsigned c[T_BACKENDS_MAX] = {0};
	t_expect(&h, t_fetch_many(&h.be, h.port, 10, c) == 0 && c[0] == 0,
		 "A, at its agent's maxconn 1 and holding one, got %u more", c[0]);
	close(held[0]);
	close(held[1]);
}
END_TEST

START_TEST(test_bad_agents_change_nothing)
{
	char big[700];

	start();
	agent_say("25%\n");
	wait_backends("(agent 25%)");
	/* Garbage: unknown words are ignored. */
	agent_say("hello world 500% maxconn:-3\n");
	wait_last("hello world 500% maxconn:-3");
	/* Too long: no newline within 512 bytes. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	agent_say(big);
	wait_last("error: agent line longer than 512 bytes");
	/* Silent: accepts, never answers: a timeout. */
	atomic_store(&ag.silent, true);
	wait_last("error: timeout");
	/* Through all of it A kept its 25%, B's failing agent changed nothing, and the health
	 * checks ran on: stopping B is seen. */
	wait_backends("(agent 25%)");
	tb_stop(h.be.tb[1]);
	char line[96];
	snprintf(line, sizeof(line), "backend B (%s) is DOWN", tb_address(h.be.tb[1]));
	t_expect(&h, lb_log_wait(&h.lb, line, 3000), "the health check of B stopped running");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("agent");
	TCase *tc = tcase_create("agent");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 40);
	tcase_add_test(tc, test_agent_sets_weight_state_and_maxconn);
	tcase_add_test(tc, test_bad_agents_change_nothing);
	suite_add_tcase(s, tc);
	return t_run_suite(s, CK_ENV);
}
