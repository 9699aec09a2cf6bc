/* Integration: hot reload of the real lb (SIGHUP and `lbctl reload`) on the engine named by
 * $LB_ENGINE — under load nothing is lost, added backends take traffic, removed ones let
 * their connections finish, a bad file is refused whole, runtime admin state carries over,
 * listeners come and go, and the prober follows backend membership. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#define LB_WORKERS     2
#define TEST_TIMEOUT_S 60
#define TAG_MAX	       64
/* Reloads in the under-load test (issue 4, acceptance 2). */
#define RELOADS 20
/* Bytes per echo round trip of the long-lived stream. */
#define STREAM_CHUNK 4096
/* A loopback echo answers in microseconds; this only bounds a broken stream. */
#define ECHO_TIMEOUT_MS 3000

static struct t_harness h;

/* ---- set-up ---- */

static void backends(size_t n)
{
	static const char *const names[] = {"a", "b", "c", "d"};
	t_backends_add_n(&h.be, TB_TAGGED, names, n);
}

/* A config: listener "web" on h.port over the test backends named in use (e.g. "ab"), pool
 * health `health` (NULL: none). *pool (if not NULL) receives the pool, for more backends. */
static json_t *config(const char *use, const char *health, json_t **pool)
{
	json_t *cfg = t_cfg_new(LB_WORKERS);

	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", h.port, "web");
	json_t *p = t_cfg_pool(cfg, "web", "weighted_round_robin", health ? health : T_HEALTH_NONE);
	for (size_t i = 0; i < h.be.n; i++)
		if (strchr(use, tb_name(h.be.tb[i])[0]))
			t_cfg_backend(p, tb_name(h.be.tb[i]), tb_address(h.be.tb[i]));
	if (pool)
		*pool = p;
	return cfg;
}

static void start_lb(const char *use, const char *health)
{
	h.port = t_free_port();
	t_harness_start(&h, config(use, health, NULL), "control socket");
}

/* Replace lb's config file with config(use, health); lb reads it on the next reload. */
static void write_config(const char *use, const char *health)
{
	t_rewrite_config(&h.lb, config(use, health, NULL));
}

static void reload_ok(void)
{
	t_harness_lbctl_ok(&h, "reload", NULL);
}

/* The backend's field from `lbctl --json backends`, copied into buf ("" if absent). */
static void backend_field(const char *name, const char *field, char *buf, size_t len)
{
	char *out = NULL;
	json_t *arr, *b;
	size_t i;

	buf[0] = '\0';
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "--json", "backends", NULL) == 0,
		 "lbctl backends failed");
	arr = json_loads(out ? out : "", 0, NULL);
	free(out);
	json_array_foreach (arr, i, b) {
		if (strcmp(json_string_value(json_object_get(b, "name")), name) != 0)
			continue;
		const char *v = json_string_value(json_object_get(b, field));
		snprintf(buf, len, "%s", v ? v : "");
	}
	json_decref(arr);
}

/* ---- traffic ---- */

static int fetch_many(int port, int n, unsigned *counts)
{
	return t_fetch_many(&h.be, port, n, counts);
}

/* One echo round trip of n bytes with a pattern seeded by seed. True if it came back
 * whole and unchanged. */
static bool echo_round(int fd, size_t n, unsigned seed)
{
	uint8_t out[STREAM_CHUNK], in[STREAM_CHUNK];

	if (n > sizeof(out))
		n = sizeof(out);
	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)((seed * 2654435761u + i * 40503u) >> 7);
	return t_send_all(fd, out, n) && t_recv_exact(fd, in, n, ECHO_TIMEOUT_MS) &&
	       memcmp(in, out, n) == 0;
}

/* ---- load generators for the under-load test ---- */

struct load {
	atomic_bool stop;
	atomic_uint conns_ok, conns_failed;
	atomic_ullong stream_bytes;
	atomic_bool stream_broken;
	int stream_fd;
};

static void *short_conns(void *arg)
{
	struct load *ld = arg;
	while (!atomic_load(&ld->stop)) {
		char tag[TAG_MAX];
		if (t_fetch_tag(NULL, h.port, tag, sizeof(tag)) == 0 &&
		    t_backends_index(&h.be, tag) >= 0)
			atomic_fetch_add(&ld->conns_ok, 1);
		else
			atomic_fetch_add(&ld->conns_failed, 1);
	}
	return NULL;
}

static void *stream(void *arg)
{
	struct load *ld = arg;
	for (unsigned seed = 1; !atomic_load(&ld->stop); seed++) {
		if (!echo_round(ld->stream_fd, STREAM_CHUNK, seed)) {
			atomic_store(&ld->stream_broken, true);
			return NULL;
		}
		atomic_fetch_add(&ld->stream_bytes, STREAM_CHUNK);
	}
	return NULL;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* ---- tests ---- */

START_TEST(test_reload_under_load_loses_no_connection_and_no_byte)
{
	struct load ld = {0};
	pthread_t t1, t2;
	int idx;

	backends(3);
	start_lb("ab", NULL);
	ld.stream_fd = t_hold(&h.lb, &h.be, h.port, &idx);
	ck_assert_int_eq(pthread_create(&t1, NULL, short_conns, &ld), 0);
	ck_assert_int_eq(pthread_create(&t2, NULL, stream, &ld), 0);
	for (int i = 0; i < RELOADS; i++) {
		write_config(i % 2 ? "ab" : "abc", NULL);
		reload_ok();
		sleep_ms(50);
	}
	sleep_ms(100);
	atomic_store(&ld.stop, true);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	unsigned ok = atomic_load(&ld.conns_ok), failed = atomic_load(&ld.conns_failed);
	unsigned long long bytes = atomic_load(&ld.stream_bytes);
	t_expect(&h, failed == 0, "%u of %u connections failed during reloads", failed,
		 ok + failed);
	t_expect(&h, ok > 50, "only %u connections went through", ok);
	t_expect(&h, !atomic_load(&ld.stream_broken), "the stream broke after %llu bytes", bytes);
	t_expect(&h, bytes > 0, "the stream moved nothing");
	t_expect(&h, echo_round(ld.stream_fd, 100, 7),
		 "the stream does not echo after the reloads");
	close(ld.stream_fd);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_added_backend_takes_traffic_and_removed_one_finishes_its_connections)
{
	char state[32];
	unsigned counts[T_BACKENDS_MAX] = {0};
	int idx;

	backends(3);
	start_lb("a", NULL);
	int held = t_hold(&h.lb, &h.be, h.port, &idx);
	t_expect(&h, idx == 0, "held connection not on a but on %d", idx);

	write_config("bc", NULL); /* a goes, b and c come */
	reload_ok();
	t_expect(&h, fetch_many(h.port, 20, counts) == 0, "connections failed after the reload");
	t_expect(&h, counts[0] == 0 && counts[1] > 0 && counts[2] > 0,
		 "distribution after the reload: a=%u b=%u c=%u", counts[0], counts[1], counts[2]);
	backend_field("a", "name", state, sizeof(state));
	t_expect(&h, state[0] == '\0', "removed backend a is still listed");
	t_expect(&h, echo_round(held, 1000, 3), "the removed backend's open connection broke");
	t_expect(&h, tb_active(h.be.tb[0]) == 1, "a's connection is not open any more");
	close(held);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_bad_config_is_rejected_whole_and_the_old_one_keeps_running)
{
	char *err = NULL;
	unsigned counts[T_BACKENDS_MAX] = {0};

	backends(2);
	start_lb("a", NULL);
	/* A valid new backend next to an invalid field: nothing of it may apply. */
	json_t *pool, *cfg = config("a", NULL, &pool);
	t_cfg_set(t_cfg_backend(pool, "b", tb_address(h.be.tb[1])), "\"weight\":\"heavy\"");
	t_rewrite_config(&h.lb, cfg);
	int rc = t_lbctl(h.sock, NULL, &err, "reload", NULL);
	t_expect(&h, rc == 1 && err && strstr(err, "pools[0].backends[1].weight"),
		 "bad reload: exit %d, %s", rc, err ? err : "");
	free(err);
	t_expect(&h, fetch_many(h.port, 10, counts) == 0 && counts[0] == 10 && counts[1] == 0,
		 "traffic after a rejected reload: a=%u b=%u", counts[0], counts[1]);

	/* A listener whose address is taken (without SO_REUSEPORT) is refused whole too. */
	int blocker = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(bind(blocker, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	getsockname(blocker, (struct sockaddr *)&sa, &sl);
	listen(blocker, 1);
	cfg = config("ab", NULL, NULL);
	t_cfg_listener(cfg, "taken", NULL, "127.0.0.1", ntohs(sa.sin_port), "web");
	t_rewrite_config(&h.lb, cfg);
	err = NULL;
	rc = t_lbctl(h.sock, NULL, &err, "reload", NULL);
	t_expect(&h, rc == 1 && err && strstr(err, "listener taken"), "taken address: exit %d, %s",
		 rc, err ? err : "");
	free(err);
	close(blocker);
	memset(counts, 0, sizeof(counts));
	t_expect(&h, fetch_many(h.port, 10, counts) == 0 && counts[1] == 0,
		 "b took traffic after a rejected reload: a=%u b=%u", counts[0], counts[1]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_runtime_admin_state_survives_a_reload)
{
	char admin[32];
	unsigned counts[T_BACKENDS_MAX] = {0};
	char *out = NULL;

	backends(3);
	start_lb("ab", NULL);
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "drain", "web/a", NULL) == 0, "drain failed");
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "weight", "web/b", "5", NULL) == 0,
		 "weight failed");
	free(out);
	write_config("abc", NULL);
	reload_ok();
	backend_field("a", "admin", admin, sizeof(admin));
	t_expect(&h, strcmp(admin, "draining") == 0, "a is %s after the reload", admin);
	t_expect(&h, fetch_many(h.port, 30, counts) == 0, "connections failed");
	t_expect(&h, counts[0] == 0 && counts[1] > counts[2] && counts[2] > 0,
		 "distribution: a=%u b=%u c=%u", counts[0], counts[1], counts[2]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_sighup_reloads_the_file)
{
	unsigned counts[T_BACKENDS_MAX] = {0};

	backends(2);
	start_lb("a", NULL);
	write_config("ab", NULL);
	ck_assert_int_eq(kill(h.lb.pid, SIGHUP), 0);
	t_expect(&h, lb_log_wait(&h.lb, "applied", 3000), "SIGHUP did not reload");
	t_expect(&h, fetch_many(h.port, 10, counts) == 0 && counts[1] > 0,
		 "b takes no traffic after SIGHUP: a=%u b=%u", counts[0], counts[1]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_listeners_come_and_go_with_the_file)
{
	unsigned counts[T_BACKENDS_MAX] = {0};

	backends(1);
	start_lb("a", NULL);
	int port2 = t_free_port();
	json_t *cfg = config("a", NULL, NULL);
	t_cfg_listener(cfg, "web2", NULL, "127.0.0.1", port2, "web");
	t_rewrite_config(&h.lb, cfg);
	reload_ok();
	t_expect(&h, fetch_many(port2, 5, counts) == 0 && counts[0] == 5, "new listener: %u of 5",
		 counts[0]);
	write_config("a", NULL);
	reload_ok();
	int fd = t_connect(NULL, port2);
	t_expect(&h, fd < 0, "removed listener still accepts");
	t_expect(&h, fetch_many(h.port, 5, counts) == 0, "the kept listener broke");
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_prober_checks_backends_added_at_run_time)
{
	char state[32], addr[64];
	const char *tcp = "{\"type\":\"tcp\",\"interval\":\"100ms\",\"timeout\":\"100ms\","
			  "\"rise\":1,\"fall\":1}";

	backends(1);
	start_lb("a", tcp);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t_free_port()); /* nothing listens */
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "add", "web", "dead", addr, NULL) == 0,
		 "add failed");
	uint64_t end = t_now_ms() + 3000;
	do {
		sleep_ms(50);
		backend_field("dead", "state", state, sizeof(state));
	} while (strcmp(state, "down") != 0 && t_now_ms() < end);
	t_expect(&h, strcmp(state, "down") == 0, "added backend is %s, not checked down", state);
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "remove", "web/dead", NULL) == 0, "remove failed");

	/* And one that a reload adds. */
	json_t *pool, *cfg = config("a", tcp, &pool);
	t_cfg_backend(pool, "dead2", addr);
	t_rewrite_config(&h.lb, cfg);
	reload_ok();
	end = t_now_ms() + 3000;
	do {
		sleep_ms(50);
		backend_field("dead2", "state", state, sizeof(state));
	} while (strcmp(state, "down") != 0 && t_now_ms() < end);
	t_expect(&h, strcmp(state, "down") == 0, "reloaded backend is %s, not checked down", state);
	/* A prober restart keeps a's beat; a must be (or soon be) checked up. */
	end = t_now_ms() + 3000;
	do {
		backend_field("a", "state", state, sizeof(state));
		if (strcmp(state, "up") == 0)
			break;
		sleep_ms(50);
	} while (t_now_ms() < end);
	t_expect(&h, strcmp(state, "up") == 0, "a is %s", state);
	t_harness_finish(&h);
}
END_TEST

static Suite *reload_suite(void)
{
	Suite *s = suite_create("reload");

	t_add_test(s, "under_load", test_reload_under_load_loses_no_connection_and_no_byte,
		   TEST_TIMEOUT_S);
	t_add_test(s, "add_remove",
		   test_added_backend_takes_traffic_and_removed_one_finishes_its_connections,
		   TEST_TIMEOUT_S);
	t_add_test(s, "bad_config", test_bad_config_is_rejected_whole_and_the_old_one_keeps_running,
		   TEST_TIMEOUT_S);
	t_add_test(s, "admin_state", test_runtime_admin_state_survives_a_reload, TEST_TIMEOUT_S);
	t_add_test(s, "sighup", test_sighup_reloads_the_file, TEST_TIMEOUT_S);
	t_add_test(s, "listeners", test_listeners_come_and_go_with_the_file, TEST_TIMEOUT_S);
	t_add_test(s, "prober", test_prober_checks_backends_added_at_run_time, TEST_TIMEOUT_S);
	return s;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(reload_suite(), CK_ENV);
}
