/* libFuzzer target: the control commands on real pools. Each input is a session of request
 * lines (one command per line, as lbctl sends them) run against a fresh lb_state built from
 * a fixed config the way main.c builds it, without workers: two pools (health "none"), two
 * listeners. No pool starts on ip_hash: its 65,537-slot table costs milliseconds per build
 * under coverage instrumentation (an `algorithm` command still switches to it). `reload`
 * reads one of three small configs written at start, picked by the line's position, so that
 * reloads add, change, replace and retire pools, backends and listeners, or fail. Removed
 * objects go through the graveyard after each command, and the whole state is freed after
 * each input, so that LeakSanitizer sees anything a command forgets and every crash
 * reproduces from its input alone. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "health/prober.h"
#include "lb/config.h"
#include "lb/control_cmds.h"
#include "lb/engine.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/mainloop.h"
#include "lb/offload.h"
#include "lb/pool.h"
#include "lb/state.h"
#include "lb/timer.h"

/* Commands per input: a session longer than this adds nothing a shorter one lacks. */
#define MAX_LINES 32
/* The fd limit the UDP session budget is sized from, as a small machine's. */
#define FUZZ_NOFILE 1024

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char running_cfg[] =
    "{\"listeners\": ["
    " {\"name\": \"web\", \"protocol\": \"tcp\", \"listen\": \"127.0.0.1:18080\", \"pool\": "
    "\"web\", \"allow\": [\"127.0.0.0/8\", \"::1\"], \"proxy_protocol\": \"v1\"},"
    " {\"name\": \"dns\", \"protocol\": \"udp\", \"listen\": \"127.0.0.1:18053\", \"pool\": "
    "\"dns\"}],"
    " \"pools\": ["
    " {\"name\": \"web\", \"algorithm\": \"round_robin\", \"health\": {\"type\": \"none\"},"
    "  \"backends\": [{\"name\": \"a\", \"address\": \"127.0.0.1:9001\"},"
    "   {\"name\": \"b\", \"address\": \"127.0.0.1:9002\", \"weight\": 3, \"max_conns\": 10},"
    "   {\"name\": \"c\", \"address\": \"[::1]:9003\", \"backup\": true}]},"
    " {\"name\": \"dns\", \"algorithm\": \"weighted_round_robin\", \"health\": {\"type\": "
    "\"none\"},"
    "  \"backends\": [{\"name\": \"x\", \"address\": \"127.0.0.1:5301\", \"hash_key\": \"x\"},"
    "   {\"name\": \"y\", \"address\": \"127.0.0.1:5302\"}]}]}";

/* What `reload` reads depends on the line's position in the input (reload_path[]):
 * 1. grow: web changes algorithm and members, dns gains a backend, a third pool and listener
 * appear, a listener changes its settings; */
static const char reload_grow[] =
    "{\"listeners\": ["
    " {\"name\": \"web\", \"protocol\": \"tcp\", \"listen\": \"127.0.0.1:18080\", \"pool\": "
    "\"web\", \"max_conns\": 5},"
    " {\"name\": \"dns\", \"protocol\": \"udp\", \"listen\": \"127.0.0.1:18053\", \"pool\": "
    "\"dns\"},"
    " {\"name\": \"extra\", \"protocol\": \"tcp\", \"listen\": \"127.0.0.1:18081\", \"pool\": "
    "\"extra\"}],"
    " \"pools\": ["
    " {\"name\": \"web\", \"algorithm\": \"least_conn\", \"health\": {\"type\": \"none\"},"
    "  \"backends\": [{\"name\": \"a\", \"address\": \"127.0.0.1:9001\", \"weight\": 2},"
    "   {\"name\": \"d\", \"address\": \"127.0.0.1:9004\"}]},"
    " {\"name\": \"dns\", \"algorithm\": \"weighted_round_robin\", \"health\": {\"type\": "
    "\"none\"},"
    "  \"backends\": [{\"name\": \"x\", \"address\": \"127.0.0.1:5301\", \"hash_key\": \"x\"},"
    "   {\"name\": \"y\", \"address\": \"127.0.0.1:5302\"},"
    "   {\"name\": \"z\", \"address\": \"127.0.0.1:5303\"}]},"
    " {\"name\": \"extra\", \"algorithm\": \"random_two\", \"health\": {\"type\": "
    "\"none\"}, \"backends\": [{\"address\": \"127.0.0.1:7001\"}]}]}";

/* 2. shrink: back to web alone, with backend a at a new address (replaced), so that pools,
 * listeners and backends are retired; */
static const char reload_shrink[] =
    "{\"listeners\": ["
    " {\"name\": \"web\", \"protocol\": \"tcp\", \"listen\": \"127.0.0.1:18080\", \"pool\": "
    "\"web\"}],"
    " \"pools\": ["
    " {\"name\": \"web\", \"algorithm\": \"round_robin\", \"retries\": 1, \"health\": {\"type\": "
    "\"none\"},"
    "  \"backends\": [{\"name\": \"a\", \"address\": \"127.0.0.1:9101\"},"
    "   {\"name\": \"b\", \"address\": \"127.0.0.1:9002\", \"backup\": true}]}]}";

/* 3. invalid: the reload is refused and the running set stays. */
static const char reload_bad[] = "{\"listeners\": [], \"pools\": [{\"name\": \"web\"}], \"x\": 1}";

static const char *const reload_cfgs[] = {reload_grow, reload_shrink, reload_bad};
#define NRELOAD (sizeof(reload_cfgs) / sizeof(reload_cfgs[0]))
static char reload_path[NRELOAD][PATH_MAX];

/* FUZZ_CONTROL_ECHO=1: print each request and answer (to read what a crash input does). */
static bool echo;

static void remove_reload_files(void)
{
	for (size_t i = 0; i < NRELOAD; i++)
		if (reload_path[i][0])
			unlink(reload_path[i]);
}

static void write_reload_file(size_t i)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	size_t len = strlen(reload_cfgs[i]);
	int fd;

	int n = snprintf(reload_path[i], sizeof(reload_path[i]), "%s/lb-fuzz-reload-XXXXXX", dir);
	fd = n > 0 && (size_t)n < sizeof(reload_path[i]) ? mkstemp(reload_path[i]) : -1;
	if (fd < 0 || write(fd, reload_cfgs[i], len) != (ssize_t)len) {
		perror("fuzz_control: cannot write a reload config");
		exit(1);
	}
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOG_ERROR, 0);
	echo = getenv("FUZZ_CONTROL_ECHO") != NULL;
	atexit(remove_reload_files);
	for (size_t i = 0; i < NRELOAD; i++)
		write_reload_file(i);
	return 0;
}

/* The main loop's epoll set, for the completions of work off the main loop (a reload's
 * config load, `add` by host name), as main.c serves them. */
static int epfd = -1;

/* The answer of a command that answers later. */
struct waiter {
	struct ctl_waiter w;
	char *line;
	size_t len;
	bool answered;
};

static void waiter_answer(struct ctl_waiter *cw, char *line, size_t len)
{
	struct waiter *w = (struct waiter *)cw;
	w->line = line;
	w->len = len;
	w->answered = true;
}

/* Serve the main loop until w is answered (a job takes milliseconds; 10 s means a hang). */
static void wait_answer(struct waiter *w)
{
	for (int i = 0; !w->answered; i++) {
		struct epoll_event ev[4];
		int n = epoll_wait(epfd, ev, 4, 10000);
		if (n <= 0 && i > 0)
			abort();
		for (int k = 0; k < n; k++) {
			struct mainloop_handler *h = ev[k].data.ptr;
			h->fn(h, ev[k].events);
		}
	}
}

/* The running state, as main.c builds it before the workers would start. */
static int state_init(struct lb_state *st)
{
	struct cfg_errors errs = {0};

	memset(st, 0, sizeof(*st));
	if (config_load_string(running_cfg, "fuzz-running.json", &st->cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		abort(); /* the fixed config itself must load */
	}
	st->version = "fuzz";
	st->config_path = reload_path[0];
	st->engine = &engine_epoll;
	st->started_ms = timer_now_ms();
	session_budget_size(&st->udp_sessions, FUZZ_NOFILE);
	if (epfd < 0)
		epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0 || offload_open(epfd, &st->offload) < 0)
		return -ENOMEM;
	qsbr_init(&st->qsbr, 0); /* no workers: every grace period is over at once */
	graveyard_init(&st->graveyard, &st->qsbr);
	return state_build(st);
}

/* As main.c stops and frees: the prober, QSBR, the graveyard, then the running set. */
static void state_free(struct lb_state *st)
{
	offload_close(st->offload);
	prober_stop(st->prober);
	qsbr_destroy(&st->qsbr);
	graveyard_free_all(&st->graveyard);
	for (size_t i = 0; i < st->npools; i++)
		pool_destroy(st->pools[i]);
	for (size_t i = 0; i < st->nlisteners; i++)
		free(st->listeners[i]);
	free(st->pools);
	free(st->listeners);
	config_free(st->cfg);
}

/* Every answer is one JSON object line with a boolean "ok" (control_cmds.h). */
static void check_answer(const char *out, size_t outlen)
{
	json_error_t err;
	json_t *resp;

	if (!out)
		return; /* out of memory is allowed */
	if (outlen == 0 || out[outlen - 1] != '\n' || strlen(out) != outlen)
		abort();
	resp = json_loadb(out, outlen - 1, 0, &err);
	if (!resp || !json_is_object(resp) || !json_is_boolean(json_object_get(resp, "ok")))
		abort();
	json_decref(resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct lb_state st;

	if (state_init(&st) < 0) {
		state_free(&st);
		return 0;
	}
	for (int n = 0; p < end && n < MAX_LINES; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		st.config_path = reload_path[n % NRELOAD];
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p), outlen = 0;
		struct waiter w = {.w.answer = waiter_answer};
		char *out = ctl_cmds_execute(&st, p, len, &outlen, &w.w);
		if (!out && w.w.pending) {
			wait_answer(&w);
			out = w.line;
			outlen = w.len;
		}

		if (echo)
			fprintf(stderr, "> %.*s\n< %s", (int)len, p, out ? out : "(null)\n");
		check_answer(out, outlen);
		free(out);
		graveyard_tick(&st.graveyard);
		p += len + (nl ? 1 : 0);
	}
	state_free(&st);
	return 0;
}
