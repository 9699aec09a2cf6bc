/* lb: arguments, start-up order (config -> pools -> listeners -> workers), signals and
 * graceful shutdown. The only file allowed to exit(). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "health/prober.h"
#include "lb/config.h"
#include "lb/control.h"
#include "lb/engine.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/mainloop.h"
#include "lb/metrics.h"
#include "lb/notify.h"
#include "lb/offload.h"
#include "lb/pool.h"
#include "lb/privs.h"
#include "lb/ready.h"
#include "lb/reload.h"
#include "lb/state.h"
#include "lb/timer.h"
#include "lb/worker.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* Upper bound on worker threads when "workers": 0 resolves to the CPU count. */
#define MAX_AUTO_WORKERS 64

/* main.c's own: the running state and the control plane that reads it. */
struct lb {
	struct lb_state st;
	struct engine_params engine_params; /* the workers' engine tuning */
	struct ctl *ctl;
	struct metrics_http *metrics;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: lb -c FILE [--check]\n"
		     "       lb --version | --help\n"
		     "\n"
		     "  -c, --config FILE  configuration file (JSON)\n"
		     "  -t, --check        validate the configuration and exit\n"
		     "  -v, --version      print the version\n"
		     "  -h, --help         this text\n"
		     "\n"
		     "Signals: SIGTERM/SIGINT graceful stop, SIGHUP reload.\n");
}

/* Raise the soft fd limit to the hard one. Returns the soft limit in force. */
static long raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open-file limit: %s", strerror(errno));
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur > (rlim_t)LONG_MAX ? LONG_MAX : (long)rl.rlim_cur;
}

static const struct engine_ops *choose_engine(enum cfg_engine want)
{
	const char *why = NULL;

	if (want == CFG_ENGINE_EPOLL) {
		log_info("engine: epoll (configured)");
		return &engine_epoll;
	}
	if (engine_uring_probe(&why) == 0) {
		log_info("engine: io_uring");
		return &engine_uring;
	}
	if (want == CFG_ENGINE_IO_URING) {
		log_error("engine io_uring is configured but unavailable: %s", why);
		return NULL;
	}
	log_info("engine: epoll (io_uring unavailable: %s)", why);
	return &engine_epoll;
}

/* Engine tuning for A/B measurements and tests, read once at start so that neither engines
 * nor workers read the environment: LB_URING_RECV=N receive buffers (0: no completion-based
 * receive), LB_URING_BATCH=N[:US] busy batching (0: off), LB_URING_CONN=0 accept and close
 * with system calls of their own. Unset: the engine's defaults. */
static void engine_params_from_env(struct engine_params *p)
{
	const char *recv = getenv("LB_URING_RECV"), *batch = getenv("LB_URING_BATCH");
	const char *conn = getenv("LB_URING_CONN");
	unsigned nr = 0, us = 0;

	*p = (struct engine_params){
	    .max_fds = 0, /* the worker's default */
	    .recv_bufs = ENGINE_DEFAULT,
	    .batch_nr = ENGINE_DEFAULT,
	    .batch_us = ENGINE_DEFAULT,
	    .conn_ops = conn ? strtol(conn, NULL, 10) : ENGINE_DEFAULT,
	};
	if (recv) {
		unsigned long n = strtoul(recv, NULL, 10);
		p->recv_bufs = n > LONG_MAX ? LONG_MAX : (long)n;
	}
	if (batch) {
		int n = sscanf(batch, "%u:%u", &nr, &us);
		p->batch_nr = n < 1 ? 0 : (long)nr;
		if (n == 2)
			p->batch_us = us;
	}
}

/* Refuse to start on an address:port that another process listens on: with SO_REUSEPORT
 * we would silently share its connections (a second lb started by mistake). All listeners
 * are checked before any is bound, so that our own overlapping ones do not count. */
static int check_listeners_free(const struct config *cfg)
{
	int err = 0;

	for (size_t j = 0; j < cfg->nlisteners; j++) {
		const struct cfg_listener *lc = &cfg->listeners[j];
		const char *why = "";
		int rc = listener_check_free(lc, &why);

		if (rc == -EADDRINUSE)
			log_error(
			    "listener %s: %s %s is already in use by another process (another "
			    "lb?); not sharing it through SO_REUSEPORT",
			    lc->name, lc->protocol == CFG_PROTO_UDP ? "udp" : "tcp", lc->listen);
		else if (rc < 0)
			log_error("listener %s: cannot %s %s: %s", lc->name, why, lc->listen,
				  strerror(-rc));
		if (rc < 0)
			err = rc;
	}
	return err;
}

/* Create and start the workers, one at a time: worker i's copies of every listener are
 * bound just before it is created, so a bad address fails start-up with exit 1 (main then
 * drains and joins the workers already started). check_listeners_free ran before, so a port
 * held by someone else fails before the first worker starts. */
static int start_workers(struct lb *lb)
{
	struct lb_state *st = &lb->st;
	const struct config *cfg = st->cfg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int n = cfg->workers > 0 ? cfg->workers : (ncpu > 0 ? (int)ncpu : 1);
	if (n > MAX_AUTO_WORKERS && cfg->workers <= 0)
		n = MAX_AUTO_WORKERS;
	if (n > QSBR_MAX_READERS)
		n = QSBR_MAX_READERS;

	qsbr_init(&st->qsbr, n);
	graveyard_init(&st->graveyard, &st->qsbr);
	st->workers = calloc((size_t)n, sizeof(*st->workers));
	int *fds = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(int));
	if (!st->workers || !fds) {
		free(fds);
		return -ENOMEM;
	}
	int err = 0;
	for (int i = 0; i < n && !err; i++) {
		for (size_t j = 0; j < cfg->nlisteners; j++) {
			const struct cfg_listener *lc = &cfg->listeners[j];
			const char *why = "";
			fds[j] = listener_socket(lc, &why);
			if (fds[j] < 0) {
				log_error("listener %s: cannot %s %s: %s", lc->name, why,
					  lc->listen, strerror(-fds[j]));
				err = fds[j];
				while (j-- > 0)
					if (fds[j] >= 0)
						close(fds[j]);
				break;
			}
		}
		if (err)
			break;
		st->workers[i] = worker_create(i, st, &lb->engine_params, fds);
		if (!st->workers[i]) {
			err = -ENOMEM;
			break;
		}
		st->nworkers = i + 1;
		err = worker_start(st->workers[i]);
		if (err)
			log_error("worker %d: cannot start %s engine: %s", i, st->engine->name,
				  strerror(-err));
	}
	free(fds);
	if (!err)
		log_info("lb %s started: %d workers, %zu listeners, %zu pools", LB_VERSION, n,
			 cfg->nlisteners, cfg->npools);
	return err;
}

static void stop_all(struct lb_state *st)
{
	uint64_t grace = st->cfg->shutdown_grace_ms;

	for (int i = 0; i < st->nworkers; i++)
		if (st->workers[i])
			worker_drain(st->workers[i], grace);
	for (int i = 0; i < st->nworkers; i++)
		worker_join(st->workers[i]);
	/* After the drain (checks keep running through the shutdown grace period), before the
	 * workers are freed: its backend_down hook wakes them (state_backend_down). */
	prober_stop(st->prober);
	st->prober = NULL;
	for (int i = 0; i < st->nworkers; i++)
		worker_free(st->workers[i]);
	free(st->workers);
	st->workers = NULL;
	st->nworkers = 0;
	if (st->qsbr.nreaders)
		qsbr_destroy(&st->qsbr);
}

/* Everything the state owns; no worker or prober runs any more. */
static void free_state(struct lb_state *st)
{
	graveyard_free_all(&st->graveyard);
	for (size_t i = 0; i < st->npools; i++)
		pool_destroy(st->pools[i]);
	for (size_t i = 0; i < st->nlisteners; i++)
		listener_destroy(st->listeners[i]);
	free(st->pools);
	free(st->listeners);
	config_free(st->cfg);
	memset(st, 0, sizeof(*st));
}

/* ---- main loop: signals, control socket, metrics, the graveyard ---- */

/* Events taken per epoll_wait on the main loop. */
#define MAIN_MAX_EVENTS 32

struct sig_handler {
	struct mainloop_handler h;
	int fd;
	bool stop;	     /* leave the main loop: close listeners, drain */
	uint64_t stop_at_ms; /* SIGTERM seen: stop then (withdraw_delay); 0 = not yet */
	bool hup_again;	     /* SIGHUP while a reload ran: reload once more when it is done */
	struct lb_state *st;
};

/* A reload asked for by SIGHUP reads the file off the main loop, which keeps serving. */
static void hup_done(struct reload_job *rj, int rc, json_t *changes, const char *err)
{
	(void)err; /* logged by reload.c */
	if (rc < 0)
		log_error("SIGHUP: reload rejected; the running config stays");
	json_decref(changes);
	free(rj);
}

static void hup_free(struct reload_job *rj)
{
	free(rj);
}

/* One reload at a time: a SIGHUP during one (or during `lbctl reload`) is remembered and
 * served once it is done, so the file as it is after the last SIGHUP is what runs. */
static void hup_reload(struct sig_handler *s)
{
	struct reload_job *rj;
	int rc;

	if (s->st->reloading) {
		if (!s->hup_again)
			log_info("SIGHUP: a reload is running; reloading again once it is done");
		s->hup_again = true;
		return;
	}
	s->hup_again = false;
	rj = calloc(1, sizeof(*rj));
	if (!rj) {
		log_error("SIGHUP: out of memory; the running config stays");
		return;
	}
	rj->done = hup_done;
	rj->free = hup_free;
	log_info("SIGHUP: reloading %s", s->st->config_path);
	rc = reload_start(s->st, rj);
	if (rc < 0) {
		free(rj);
		log_error("SIGHUP: cannot start the reload: %s", strerror(-rc));
	}
}

/* SIGTERM/SIGINT: with withdraw_delay, report not ready and keep accepting for the delay so
 * that the routing layer moves new flows elsewhere first; a second signal stops at once. */
static void stop_requested(struct sig_handler *s, int signo)
{
	uint64_t delay;

	if (s->stop_at_ms) {
		log_info("%s again: closing listeners now", strsignal(signo));
		s->stop = true;
		return;
	}
	notify_send("STOPPING=1\nSTATUS=stopping: draining connections");
	delay = ready_stop(&s->st->ready, s->st->cfg->withdraw_delay_ms);
	s->stop_at_ms = timer_now_ms() + delay;
	if (delay == 0) {
		log_info("%s: stopping; open connections get the shutdown grace period",
			 strsignal(signo));
		s->stop = true;
		return;
	}
	log_info("%s: not ready from now on; still accepting for %llu ms (withdraw_delay) so "
		 "that routes move away, then stopping",
		 strsignal(signo), (unsigned long long)delay);
}

static void signal_ready(struct mainloop_handler *h, uint32_t events)
{
	struct sig_handler *s = (struct sig_handler *)h;
	struct signalfd_siginfo si;
	(void)events;

	while (read(s->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			hup_reload(s);
			continue;
		}
		stop_requested(s, (int)si.ssi_signo);
	}
}

/* ms until the withdraw delay ends (-1: none running); sets stop once it has. */
static int withdraw_tick(struct sig_handler *s)
{
	uint64_t now = timer_now_ms();

	if (!s->stop_at_ms || s->stop)
		return -1;
	if (now >= s->stop_at_ms) {
		log_info("withdraw_delay over: stopping; open connections get the shutdown grace "
			 "period");
		s->stop = true;
		return -1;
	}
	return (int)(s->stop_at_ms - now);
}

static int start_control(struct lb *lb, int epfd)
{
	struct lb_state *st = &lb->st;
	char why[512];
	int rc = ctl_open(epfd, st, &lb->ctl, why, sizeof(why));

	if (rc < 0) {
		log_error("control socket: %s", why);
		return rc;
	}
	if (st->cfg->metrics_listen) {
		rc = metrics_http_open(epfd, &st->cfg->metrics_addr, st, &lb->metrics);
		if (rc < 0) {
			log_error("metrics: cannot listen on %s: %s", st->cfg->metrics_listen,
				  strerror(-rc));
			return rc;
		}
		log_info("metrics on http://%s/metrics", st->cfg->metrics_listen);
	}
	return 0;
}

/* Everything is bound: drop root for "user". The control socket goes to user and group
 * first, so that lb can still remove it at exit (a sticky directory like /tmp wants the
 * owner; any other wants lb to be able to write to it). */
static int drop_privileges(const struct config *cfg)
{
	char why[512];

	if (cfg->user && geteuid() == 0 && lchown(cfg->control_socket, cfg->uid, cfg->gid) < 0) {
		log_error("control socket %s: cannot hand it to user %s: %s", cfg->control_socket,
			  cfg->user, strerror(errno));
		return -1;
	}
	if (privs_drop(cfg, why, sizeof(why)) < 0) {
		log_error("%s", why);
		return -1;
	}
	return 0;
}

static int min_timeout(int a, int b)
{
	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* Main thread: serve signals, the control socket and metrics until SIGTERM/SIGINT. */
static int main_loop(struct lb *lb, int epfd, int sfd)
{
	struct sig_handler sig = {.h.fn = signal_ready, .fd = sfd, .st = &lb->st};
	struct epoll_event ev[MAIN_MAX_EVENTS];

	if (mainloop_watch(epfd, EPOLL_CTL_ADD, sfd, EPOLLIN, &sig.h) < 0)
		return -1;
	while (!sig.stop) {
		int timeout =
		    min_timeout(graveyard_tick(&lb->st.graveyard), metrics_http_tick(lb->metrics));
		timeout = min_timeout(timeout, ctl_tick(lb->ctl));
		timeout = min_timeout(timeout, withdraw_tick(&sig));
		if (sig.stop)
			break;
		if (sig.hup_again && !lb->st.reloading)
			hup_reload(&sig);
		int n = epoll_wait(epfd, ev, MAIN_MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			log_error("main loop: epoll_wait: %s", strerror(errno));
			return -1;
		}
		for (int i = 0; i < n; i++) {
			struct mainloop_handler *h = ev[i].data.ptr;
			h->fn(h, ev[i].events);
		}
	}
	return 0;
}

static int load_config(const char *path, struct config **cfg)
{
	struct cfg_errors errs = {0};
	int ret = config_load(path, cfg, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	if (ret < 0 && !errs.n)
		fprintf(stderr, "%s: %s\n", path, strerror(-ret));
	cfg_errors_free(&errs);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 't'},
	    {"version", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	int check = 0, opt;

	while ((opt = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'v':
			printf("lb %s\n", LB_VERSION);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}

	struct lb lb = {0};
	struct lb_state *st = &lb.st;
	if (load_config(path, &st->cfg) < 0)
		return EXIT_USAGE;
	if (check) {
		printf("configuration OK\n");
		config_free(st->cfg);
		return EXIT_OK;
	}
	log_setup(st->cfg->log_level, st->cfg->log_format == CFG_LOG_JSON);
	char why[512];
	if (privs_check(st->cfg, why, sizeof(why)) < 0) {
		log_error("%s", why);
		config_free(st->cfg);
		return EXIT_RUNTIME;
	}

	/* Signals go to the main thread's signalfd only: block them before threads exist. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN); /* splice to a closed socket must fail, not kill us */
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	long nofile = raise_nofile();
	(void)notify_open(); /* before the privileges go: the socket may be root's */

	int rc = EXIT_RUNTIME;
	st->version = LB_VERSION;
	st->config_path = path;
	st->started_ms = timer_now_ms();
	long reserve = session_budget_size(&st->udp_sessions, nofile);
	for (size_t i = 0; i < st->cfg->nlisteners; i++)
		if (st->cfg->listeners[i].protocol == CFG_PROTO_UDP) {
			log_info("fd limit %ld: UDP sessions may hold %ld of them; %ld stay for "
				 "TCP, control and metrics",
				 nofile, st->udp_sessions.max, reserve);
			break;
		}
	graveyard_init(&st->graveyard, NULL);
	st->engine = choose_engine(st->cfg->engine);
	if (sfd < 0 || epfd < 0 || !st->engine)
		goto out;
	if (state_build(st) < 0) {
		log_error("out of memory building pools");
		goto out;
	}
	engine_params_from_env(&lb.engine_params);
	if (check_listeners_free(st->cfg) < 0 || start_workers(&lb) < 0)
		goto out;
	int err = state_prober_start(st);
	if (err < 0) {
		log_error("cannot start the health prober: %s", strerror(-err));
		goto out;
	}
	err = offload_open(epfd, &st->offload);
	if (err < 0) {
		log_error("cannot set up work off the main loop: %s", strerror(-err));
		goto out;
	}
	if (start_control(&lb, epfd) < 0 || drop_privileges(st->cfg) < 0)
		goto out;
	notify_send("READY=1\nSTATUS=serving %zu listeners, %zu pools\nMAINPID=%d",
		    st->cfg->nlisteners, st->cfg->npools, (int)getpid());
	if (main_loop(&lb, epfd, sfd) == 0)
		rc = EXIT_OK;
out:
	ctl_shutdown(lb.ctl); /* no commands while the workers drain */
	metrics_http_close(lb.metrics);
	/* After ctl_shutdown (no client waits on a job any more); a reload still waiting on DNS
	 * is not waited for: its thread frees what it loaded when it returns. */
	offload_close(st->offload);
	st->offload = NULL;
	stop_all(st);
	ctl_free(lb.ctl);
	free_state(st); /* removed objects too: after the workers and QSBR are gone */
	if (epfd >= 0)
		close(epfd);
	if (sfd >= 0)
		close(sfd);
	if (rc == EXIT_OK)
		log_info("stopped");
	notify_close();
	return rc;
}
