/* Integration: a pool's connection queue (pool "queue"). With every backend at max_conns a
 * client waits instead of being refused, its early bytes kept in its socket; it gets the next
 * slot that frees, first come first served across workers; it is closed when the queue is
 * full or its timeout passes, each counted by reason. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

/* A reply on loopback through lb takes microseconds; this only bounds a broken daemon. */
#define REPLY_MS 2000
/* Long enough to tell "waits" from "was served": a grant takes well under a millisecond. */
#define WAIT_MS 300

/* Listener "q-in" on port in front of pool "q" (round robin, no health checks, 2 workers),
 * each of the test backends with max_conns 1, and the queue given as JSON text. */
static json_t *queue_config(int port, const struct t_backends *set, const char *queue)
{
	json_t *cfg = t_cfg_new(2);
	t_cfg_listener(cfg, "q-in", "tcp", "127.0.0.1", port, "q");
	json_t *pool = t_cfg_pool(cfg, "q", "round_robin", T_HEALTH_NONE);
	if (queue)
		t_cfg_set(pool, "\"queue\":%s", queue);
	for (size_t i = 0; i < set->n; i++)
		t_cfg_set(t_cfg_backend(pool, tb_name(set->tb[i]), tb_address(set->tb[i])),
			  "\"max_conns\":1");
	return cfg;
}

static char *metrics(struct t_harness *th)
{
	char *out = NULL;
	t_expect(th, t_lbctl(th->sock, &out, NULL, "metrics", NULL) == 0 && out, "no metrics");
	return out;
}

static bool has(const char *text, const char *needle)
{
	return text && strstr(text, needle) != NULL;
}

static void start(struct t_harness *th, const char *queue, int nbackends)
{
	static const char *const names[] = {"qa", "qb", "qc"};

	memset(th, 0, sizeof(*th));
	th->port = t_free_port();
	t_backends_add_n(&th->be, TB_TAGGED, names, (size_t)nbackends);
	t_lb_start(&th->lb, queue_config(th->port, &th->be, queue), &th->port, 1);
	th->lb_started = true;
	snprintf(th->sock, sizeof(th->sock), "%s/lb.sock", th->lb.dir);
}

static void stop(struct t_harness *th)
{
	t_stop_lb(&th->lb);
	t_backends_free(&th->be);
}

/* Both backends full: three more clients wait, in order; each slot that frees goes to the
 * oldest waiter, whose bytes sent while waiting arrive intact; no backend ever holds more
 * than its max_conns; the wait is in lbctl and the metrics. */
START_TEST(test_waiters_get_freed_slots_in_arrival_order)
{
	struct t_harness th;
	char tag[32], line[64];
	int hold[2], idx[2], waiter[3];

	start(&th, "{\"max\":10,\"timeout\":\"10s\"}", 2);
	for (int i = 0; i < 2; i++)
		hold[i] = t_hold(&th.lb, &th.be, th.port, &idx[i]);
	t_expect(&th, idx[0] != idx[1], "both held connections on one backend");
	for (int i = 0; i < 3; i++) {
		waiter[i] = t_connect(NULL, th.port);
		t_expect(&th, waiter[i] >= 0, "waiter %d: connect failed", i);
		snprintf(line, sizeof(line), "early %d\n", i);
		t_expect(&th, t_send_all(waiter[i], line, strlen(line)), "waiter %d: send", i);
		usleep(50000); /* arrival order, across both workers */
	}
	for (int i = 0; i < 3; i++)
		t_expect(&th, !t_wait_readable(waiter[i], WAIT_MS / 3),
			 "waiter %d got an answer with every backend full", i);
	char *m = metrics(&th);
	t_expect(&th, has(m, "lb_pool_queue_length{pool=\"q\"} 3"),
		 "3 waiters not in lb_pool_queue_length:\n%s", m);
	free(m);
	char *out = NULL;
	t_expect(&th, t_lbctl(th.sock, &out, NULL, "status", NULL) == 0 && has(out, "WAITING"),
		 "lbctl status shows no queue:\n%s", out ? out : "");
	free(out);

	for (int i = 0; i < 3; i++) {
		/* Free one slot: the oldest waiter, and only it, gets a backend. */
		close(hold[i % 2]);
		t_expect(&th, t_read_line(waiter[i], tag, sizeof(tag), REPLY_MS) > 0,
			 "waiter %d got no backend after a slot freed", i);
		t_expect(&th, t_read_line(waiter[i], line, sizeof(line), REPLY_MS) > 0,
			 "waiter %d: its early bytes were not relayed", i);
		char want[32];
		snprintf(want, sizeof(want), "early %d", i);
		t_expect(&th, strcmp(line, want) == 0, "waiter %d: echoed \"%s\", sent \"%s\"", i,
			 line, want);
		for (int j = i + 1; j < 3; j++)
			t_expect(&th, !t_wait_readable(waiter[j], 50),
				 "waiter %d overtook waiter %d", j, i);
		hold[i % 2] = waiter[i];
	}
	for (size_t i = 0; i < th.be.n; i++)
		t_expect(&th, tb_peak_active(th.be.tb[i]) <= 1,
			 "backend %s held %u connections at once, max_conns 1",
			 tb_name(th.be.tb[i]), tb_peak_active(th.be.tb[i]));
	m = metrics(&th);
	t_expect(&th,
		 has(m, "lb_pool_queue_length{pool=\"q\"} 0") &&
		     has(m, "lb_pool_queued_total{pool=\"q\"} 3") &&
		     has(m, "lb_pool_queue_wait_seconds_count{pool=\"q\"} 3"),
		 "queue metrics after 3 served:\n%s", m);
	free(m);
	out = NULL;
	t_expect(&th,
		 t_lbctl(th.sock, &out, NULL, "backends", NULL) == 0 &&
		     has(out, "pool q: queue 0 waiting (max 10)"),
		 "lbctl backends shows no queue:\n%s", out ? out : "");
	free(out);
	close(hold[0]);
	close(hold[1]);
	stop(&th);
}
END_TEST

/* queue max 1, timeout 300ms: the second extra client is refused at once (full), the first
 * is closed when its wait times out; both counted by reason. */
START_TEST(test_full_queue_refuses_and_timeout_closes)
{
	struct t_harness th;
	int hold, idx;

	start(&th, "{\"max\":1,\"timeout\":\"300ms\"}", 1);
	hold = t_hold(&th.lb, &th.be, th.port, &idx);
	int waiting = t_connect(NULL, th.port);
	t_expect(&th, waiting >= 0, "connect failed");
	usleep(100000);
	uint64_t t0 = t_now_ms();
	int refused = t_connect(NULL, th.port);
	t_expect(&th, refused >= 0, "connect failed");
	t_expect(&th, t_wait_closed(refused, REPLY_MS) != -1,
		 "a client beyond a full queue stayed");
	t_expect(&th, t_now_ms() - t0 < 250, "refusal waited for the queue timeout");
	t_expect(&th, t_wait_closed(waiting, REPLY_MS) != -1,
		 "a waiter was not closed after the queue timeout");
	char *m = metrics(&th);
	t_expect(&th,
		 has(m, "lb_pool_queue_rejected_total{pool=\"q\",reason=\"full\"} 1") &&
		     has(m, "lb_pool_queue_rejected_total{pool=\"q\",reason=\"timeout\"} 1") &&
		     has(m, "reason=\"queue_full\"} 1") && has(m, "reason=\"queue_timeout\"} 1"),
		 "queue rejections not counted by reason:\n%s", m);
	free(m);
	t_expect(&th, tb_accepted(th.be.tb[0]) == 1, "the backend saw %u connections, expected 1",
		 tb_accepted(th.be.tb[0]));
	close(refused);
	close(waiting);
	close(hold);
	stop(&th);
}
END_TEST

/* Without a queue, a client finding every backend full is refused at once, as before. */
START_TEST(test_no_queue_refuses_at_once)
{
	struct t_harness th;
	int hold, idx;

	start(&th, NULL, 1);
	hold = t_hold(&th.lb, &th.be, th.port, &idx);
	int extra = t_connect(NULL, th.port);
	t_expect(&th, extra >= 0, "connect failed");
	t_expect(&th, t_wait_closed(extra, 250) != -1, "with no queue the client was kept");
	char *m = metrics(&th);
	t_expect(&th, !has(m, "lb_pool_queue_length{pool=\"q\"}"),
		 "a pool without a queue has a queue gauge:\n%s", m);
	free(m);
	close(extra);
	close(hold);
	stop(&th);
}
END_TEST

/* A backend coming up (here: added with lbctl) takes waiters, not only a freed slot. */
START_TEST(test_added_backend_takes_waiters)
{
	struct t_harness th;
	char tag[32];
	int hold, idx;

	start(&th, "{\"max\":5,\"timeout\":\"10s\"}", 1);
	hold = t_hold(&th.lb, &th.be, th.port, &idx);
	int waiter = t_connect(NULL, th.port);
	t_expect(&th, waiter >= 0 && !t_wait_readable(waiter, WAIT_MS), "the waiter was served");
	struct tbackend *extra = t_backends_add(&th.be, TB_TAGGED, "qz");
	t_expect(&th, t_lbctl(th.sock, NULL, NULL, "add", "q", "qz", tb_address(extra), NULL) == 0,
		 "lbctl add failed");
	t_expect(&th, t_read_line(waiter, tag, sizeof(tag), REPLY_MS) > 0 && !strcmp(tag, "qz"),
		 "the waiter was not given the added backend");
	close(waiter);
	close(hold);
	stop(&th);
}
END_TEST

/* A reload turns the queue on (and its settings are what `lbctl status` then shows). */
START_TEST(test_reload_turns_the_queue_on)
{
	struct t_harness th;
	char *out = NULL, *err = NULL;
	int hold, idx;

	start(&th, NULL, 1);
	hold = t_hold(&th.lb, &th.be, th.port, &idx);
	t_rewrite_config(&th.lb, queue_config(th.port, &th.be, "{\"max\":7,\"timeout\":\"10s\"}"));
	t_expect(&th, t_lbctl(th.sock, &out, &err, "reload", NULL) == 0, "reload: %s", err);
	t_expect(&th, has(out, "pools_changed") || has(out, "q"),
		 "reload did not note the pool:\n%s", out ? out : "");
	free(out);
	free(err);
	int waiter = t_connect(NULL, th.port);
	t_expect(&th, waiter >= 0 && !t_wait_readable(waiter, WAIT_MS),
		 "after the reload a client finding the backend full was not kept waiting");
	char *m = metrics(&th);
	t_expect(&th, has(m, "lb_pool_queue_length{pool=\"q\"} 1"), "no waiter after reload:\n%s",
		 m);
	free(m);
	close(hold); /* its slot goes to the waiter */
	char tag[32];
	t_expect(&th, t_read_line(waiter, tag, sizeof(tag), REPLY_MS) > 0,
		 "the waiter got no backend once the slot freed");
	close(waiter);
	stop(&th);
}
END_TEST

/* Many clients at once through 2 backends of max_conns 1 with a queue: every one is served
 * (echo round trip), none is refused, and no backend ever holds more than 1. */
#define STORM_CLIENTS 24

struct storm {
	int port, ok;
};

static void *storm_client(void *arg)
{
	struct storm *s = arg;
	char tag[32];
	int fd = t_connect(NULL, s->port);

	if (fd < 0)
		return NULL;
	if (t_read_line(fd, tag, sizeof(tag), 8000) > 0 && t_echo_byte(fd, 'x', 2000))
		s->ok = 1;
	close(fd);
	return NULL;
}

START_TEST(test_storm_of_clients_all_served_within_max_conns)
{
	struct t_harness th;
	pthread_t tid[STORM_CLIENTS];
	struct storm st[STORM_CLIENTS];
	int ok = 0;

	start(&th, "{\"max\":100,\"timeout\":\"10s\"}", 2);
	for (int i = 0; i < STORM_CLIENTS; i++) {
		st[i] = (struct storm){.port = th.port};
		ck_assert_int_eq(pthread_create(&tid[i], NULL, storm_client, &st[i]), 0);
	}
	for (int i = 0; i < STORM_CLIENTS; i++) {
		pthread_join(tid[i], NULL);
		ok += st[i].ok;
	}
	t_expect(&th, ok == STORM_CLIENTS, "%d of %d clients served", ok, STORM_CLIENTS);
	for (size_t i = 0; i < th.be.n; i++)
		t_expect(&th, tb_peak_active(th.be.tb[i]) <= 1,
			 "backend %s held %u connections at once, max_conns 1",
			 tb_name(th.be.tb[i]), tb_peak_active(th.be.tb[i]));
	stop(&th);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("queue");

	t_add_test(s, "fifo", test_waiters_get_freed_slots_in_arrival_order, 30);
	t_add_test(s, "full_timeout", test_full_queue_refuses_and_timeout_closes, 20);
	t_add_test(s, "no_queue", test_no_queue_refuses_at_once, 20);
	t_add_test(s, "added_backend", test_added_backend_takes_waiters, 20);
	t_add_test(s, "reload", test_reload_turns_the_queue_on, 20);
	t_add_test(s, "storm", test_storm_of_clients_all_served_within_max_conns, 60);
	return t_run_suite(s, CK_ENV);
}
