/* The worker loop: wait on the engine, run due timers, accept on this worker's listener
 * copies (or read datagrams, for UDP ones), and on request stop accepting and drain. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lb/list.h"
#include "lb/log.h"
#include "lb/state.h"
#include "lb/tcp_relay.h"
#include "lb/udp_relay.h"
#include "lb/worker.h"

/* After EMFILE/ENFILE, wait this long before accepting again instead of spinning. */
#define ACCEPT_RETRY_MS 100
/* Spare empty pipes a worker keeps; more are closed when given back. */
#define PIPE_POOL_SPARE 64
/* 256 KiB pipes: one splice moves up to this much; the default 64 KiB costs more calls. */
#define PIPE_SIZE (256 * 1024)
/* At most one accept-error line per listener copy this often; keeps the log readable under
 * fd pressure. */
#define ACCEPT_LOG_INTERVAL_MS 1000
/* Registrations an engine is sized for (a hint: both engines grow or have fixed rings). */
#define ENGINE_MAX_FDS 1024

static void accept_ready(void *arg, uint32_t events);
static bool wl_watch(struct worker *w, struct worker_listener *wl);

/* A new listener set for one worker, built by the main thread (worker_set_listeners). */
struct worker_ls_update {
	uint64_t gen;
	size_t n;
	bool *keep;		     /* keep[i]: reuse the worker's socket for ls[i]->l */
	struct worker_listener **ls; /* pre-allocated entries, fd set unless keep[i] */
};

/* Accepting failed with err (EMFILE...): count it, say so (at most once a second per
 * worker) and try again in ACCEPT_RETRY_MS instead of spinning. */
static void accept_pause(struct worker_listener *wl, int err)
{
	struct worker *w = wl->w;
	static _Thread_local uint64_t last_log;

	atomic_fetch_add_explicit(&wl->l->accept_errors, 1, memory_order_relaxed);
	if (w->now - last_log >= ACCEPT_LOG_INTERVAL_MS) {
		last_log = w->now;
		log_warn("listener %s: accept: %s; pausing accepts for %d ms", wl->l->cfg->name,
			 strerror(err), ACCEPT_RETRY_MS);
	}
	timer_arm(&w->timers, &wl->retry, w->now + ACCEPT_RETRY_MS);
}

static void accept_retry(struct timer *t, uint64_t now)
{
	struct worker_listener *wl = container_of(t, struct worker_listener, retry);
	(void)now;
	if (wl->fd < 0)
		return;
	if (wl->watch)
		accept_ready(wl, ENGINE_READ);
	else if (!wl_watch(wl->w, wl))
		accept_pause(wl, errno);
}

/* A connection the engine accepted (engine_ops.accept_start), or an error. */
static void accept_done(void *arg, int fd, const struct sockaddr *sa, socklen_t len)
{
	struct worker_listener *wl = arg;
	struct worker *w = wl->w;

	if (fd >= 0) {
		tcp_relay_accept(w, wl->l, fd, (const struct sockaddr_storage *)sa, len);
		return;
	}
	w->ops->accept_stop(w->eng, wl->acc);
	wl->acc = NULL;
	accept_pause(wl, -fd);
}

static void accept_ready(void *arg, uint32_t events)
{
	struct worker_listener *wl = arg;
	struct worker *w = wl->w;
	(void)events;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd =
		    accept4(wl->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			tcp_relay_accept(w, wl->l, fd, &ss, len);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN)
			return;
		accept_pause(wl, errno);
		return;
	}
}

static struct worker_listener *wl_new(struct worker *w, struct listener *l, int fd)
{
	struct worker_listener *wl = calloc(1, sizeof(*wl));
	if (!wl)
		return NULL;
	wl->w = w;
	wl->l = l;
	wl->fd = fd;
	timer_init(&wl->retry, accept_retry);
	return wl;
}

/* Watch a listener copy: accept for TCP (by the engine where it can), datagrams for UDP.
 * False on failure. */
static bool wl_watch(struct worker *w, struct worker_listener *wl)
{
	bool udp = wl->l->cfg->protocol == CFG_PROTO_UDP;
	if (!udp && w->ops->accept_start) {
		wl->acc = w->ops->accept_start(w->eng, wl->fd, accept_done, wl);
		if (wl->acc)
			return true;
	}
	wl->watch = w->ops->watch(w->eng, wl->fd, ENGINE_READ,
				  udp ? udp_relay_listener_ready : accept_ready, wl);
	return wl->watch != NULL;
}

static void wl_close(struct worker *w, struct worker_listener *wl)
{
	if (wl->fd < 0)
		return;
	/* UDP sessions reply through this socket: they end with it. */
	udp_relay_listener_closed(w, wl);
	if (wl->watch)
		w->ops->unwatch(w->eng, wl->watch);
	wl->watch = NULL;
	if (wl->acc)
		w->ops->accept_stop(w->eng, wl->acc);
	wl->acc = NULL;
	timer_cancel(&w->timers, &wl->retry);
	/* shutdown() leaves LISTEN at once, whoever else still holds a file reference
	 * (an io_uring poll does until its removal completes): connects get refused. */
	(void)shutdown(wl->fd, SHUT_RDWR);
	/* Through the engine where it can: a re-armed accept queued this turn names the fd,
	 * whose number must not go to a new socket before that is submitted. */
	if (!w->ops->close_fd || !w->ops->close_fd(w->eng, wl->fd))
		close(wl->fd);
	wl->fd = -1;
}

static void update_free(struct worker_ls_update *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n; i++) {
		if (u->ls[i] && u->ls[i]->fd >= 0)
			close(u->ls[i]->fd);
		free(u->ls[i]);
	}
	free(u->ls);
	free(u->keep);
	free(u);
}

static struct worker_listener *take_existing(struct worker *w, const struct listener *l)
{
	for (size_t i = 0; i < w->nls; i++) {
		struct worker_listener *wl = w->ls[i];
		if (wl && wl->l == l) {
			w->ls[i] = NULL;
			return wl;
		}
	}
	return NULL;
}

/* Switch to the listener set the main thread posted: surviving sockets move over without
 * a gap, new ones get watched, the rest are closed here, on the thread owning the engine. */
static void apply_listeners(struct worker *w)
{
	struct worker_ls_update *u = atomic_exchange(&w->ls_pending, NULL);
	if (!u)
		return;
	bool running = atomic_load(&w->state) == WORKER_RUNNING;
	for (size_t i = 0; i < u->n; i++) {
		struct worker_listener *wl = u->ls[i];
		struct worker_listener *old = u->keep[i] ? take_existing(w, wl->l) : NULL;
		if (old) {
			free(wl);
			u->ls[i] = old;
			continue;
		}
		if (wl->fd < 0)
			continue;
		if (!running || !wl_watch(w, wl)) {
			log_error("worker %d: listener %s: cannot watch the new socket", w->id,
				  wl->l->cfg->name);
			close(wl->fd);
			wl->fd = -1;
		}
	}
	for (size_t i = 0; i < w->nls; i++) {
		if (!w->ls[i])
			continue;
		wl_close(w, w->ls[i]);
		free(w->ls[i]);
	}
	free(w->ls);
	w->ls = u->ls;
	w->nls = u->n;
	atomic_store(&w->ls_applied, u->gen);
	free(u->keep);
	free(u);
}

static void wake_ready(void *arg, uint32_t events)
{
	struct worker *w = arg;
	uint64_t v;
	(void)events;
	while (read(w->wake_fd, &v, sizeof(v)) > 0)
		;
	apply_listeners(w); /* a wake may come from a reload, */
	if (atomic_exchange(&w->kill_pending, false)) {
		tcp_relay_kill_scan(w); /* from `kill` (worker_kick), */
		udp_relay_kill_scan(w);
	}
	tcp_relay_queue_run(w); /* or from a pool's queue */
}

struct worker *worker_create(int id, const struct lb_state *st, const struct engine_params *ep,
			     const int *listen_fds)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->id = id;
	w->ops = st->engine;
	w->eng_params = *ep;
	if (!w->eng_params.max_fds)
		w->eng_params.max_fds = ENGINE_MAX_FDS;
	w->qsbr = (struct qsbr *)&st->qsbr;
	w->log_access = st->cfg->log_access;
	w->udp_budget = (struct session_budget *)&st->udp_sessions;
	w->wake_fd = -1;
	w->nls = st->nlisteners;
	w->ls = calloc(w->nls ? w->nls : 1, sizeof(*w->ls));
	if (!w->ls) {
		free(w);
		return NULL;
	}
	for (size_t i = 0; i < w->nls; i++) {
		w->ls[i] = wl_new(w, st->listeners[i], listen_fds[i]);
		if (!w->ls[i])
			goto fail;
	}
	if (tcp_relay_init(w) < 0 || udp_relay_init(w) < 0)
		goto fail;
	pipe_pool_init(&w->pipes, PIPE_POOL_SPARE, PIPE_SIZE);
	return w;
fail:
	tcp_relay_free(w);
	for (size_t i = 0; i < w->nls; i++)
		free(w->ls[i]);
	free(w->ls);
	free(w);
	return NULL;
}

static int worker_setup(struct worker *w)
{
	w->eng = w->ops->create(&w->eng_params);
	if (!w->eng)
		return -errno;
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -errno;
	w->wake_watch = w->ops->watch(w->eng, w->wake_fd, ENGINE_READ, wake_ready, w);
	if (!w->wake_watch)
		return -ENOMEM;
	for (size_t i = 0; i < w->nls; i++) {
		struct worker_listener *wl = w->ls[i];
		if (wl->fd >= 0 && !wl_watch(w, wl))
			return -ENOMEM;
	}
	return 0;
}

static void close_listeners(struct worker *w)
{
	for (size_t i = 0; i < w->nls; i++)
		wl_close(w, w->ls[i]);
}

/* Hand queued registrations and removals to the kernel now: io_uring keeps a socket open
 * until its poll removal is submitted, so a closed listener would otherwise linger. */
static void flush(struct worker *w)
{
	if (w->ops->wait(w->eng, 0) == 0)
		w->ops->dispatch(w->eng);
}

static void worker_loop(struct worker *w)
{
	for (;;) {
		w->now = timer_now_ms();
		int state = atomic_load(&w->state);
		if (state == WORKER_DRAIN_REQUESTED) {
			close_listeners(w);
			flush(w);
			w->grace_deadline = w->now + atomic_load(&w->grace_ms);
			atomic_store(&w->state, WORKER_DRAINING);
			state = WORKER_DRAINING;
		}
		if (state == WORKER_DRAINING) {
			if (!tcp_relay_conns(w))
				return;
			if (w->now >= w->grace_deadline) {
				tcp_relay_close_all(w);
				return;
			}
		}
		int timeout = timer_next_ms(&w->timers, w->now);
		if (state == WORKER_DRAINING) {
			int left = (int)(w->grace_deadline - w->now);
			if (timeout < 0 || timeout > left)
				timeout = left;
		}
		/* Blocked in wait, this worker holds no snapshot: let writers reclaim. */
		qsbr_offline(w->qsbr, w->id);
		int ret = w->ops->wait(w->eng, timeout);
		qsbr_online(w->qsbr, w->id);
		if (ret < 0) {
			log_error("worker %d: %s wait failed: %s", w->id, w->ops->name,
				  strerror(-ret));
			tcp_relay_close_all(w);
			return;
		}
		/* The wait may have slept long: callbacks arm timers from the time now. */
		w->now = timer_now_ms();
		w->ops->dispatch(w->eng);
		timer_run(&w->timers, w->now);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int err = worker_setup(w);
	if (err < 0) {
		w->start_err = err;
		atomic_store(&w->state, WORKER_FAILED);
		return NULL;
	}
	qsbr_online(w->qsbr, w->id);
	atomic_store(&w->state, WORKER_RUNNING);
	worker_loop(w);
	close_listeners(w);
	flush(w);
	qsbr_offline(w->qsbr, w->id);
	atomic_store(&w->state, WORKER_DONE);
	return NULL;
}

int worker_start(struct worker *w)
{
	int err = pthread_create(&w->thread, NULL, worker_main, w);
	if (err)
		return -err;
	/* Poll for the thread's verdict: start-up happens once, 1 ms granularity is plenty. */
	const struct timespec tick = {0, 1000000};
	while (atomic_load(&w->state) == WORKER_STARTING)
		nanosleep(&tick, NULL);
	if (atomic_load(&w->state) == WORKER_FAILED) {
		pthread_join(w->thread, NULL);
		w->thread = 0;
		return w->start_err;
	}
	return 0;
}

void worker_drain(struct worker *w, uint64_t grace_ms)
{
	int expected = WORKER_RUNNING;
	atomic_store(&w->grace_ms, grace_ms);
	if (!atomic_compare_exchange_strong(&w->state, &expected, WORKER_DRAIN_REQUESTED))
		return;
	uint64_t one = 1;
	if (write(w->wake_fd, &one, sizeof(one)) < 0)
		log_warn("worker %d: wake: %s", w->id, strerror(errno));
}

void worker_kick(struct worker *w)
{
	atomic_store(&w->kill_pending, true);
	worker_wake(w);
}

void worker_wake(struct worker *w)
{
	uint64_t one = 1;
	if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("worker %d: wake: %s", w->id, strerror(errno));
}

int worker_set_listeners(struct worker *w, struct listener *const *ls, const int *fds, size_t n)
{
	struct worker_ls_update *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->ls = calloc(n ? n : 1, sizeof(*u->ls));
	u->keep = calloc(n ? n : 1, sizeof(*u->keep));
	if (!u->ls || !u->keep)
		goto fail;
	for (; u->n < n; u->n++) {
		bool keep = fds[u->n] == WORKER_FD_KEEP;
		u->ls[u->n] = wl_new(w, ls[u->n], keep ? -1 : fds[u->n]);
		if (!u->ls[u->n])
			goto fail;
		u->keep[u->n] = keep;
	}
	u->gen = ++w->ls_gen;
	/* The previous update is always applied or waited for first (reloads are serial). */
	update_free(atomic_exchange(&w->ls_pending, u));
	worker_kick(w);
	return 0;
fail:
	for (size_t i = 0; i < u->n; i++)
		u->ls[i]->fd = -1; /* not ours to close on failure */
	update_free(u);
	return -ENOMEM;
}

bool worker_listeners_wait(struct worker *w, int timeout_ms)
{
	/* Reloads are rare and a worker answers within one loop turn: 1 ms polling is plenty. */
	const struct timespec tick = {0, 1000000};
	for (int i = 0; i <= timeout_ms; i++) {
		if (atomic_load(&w->ls_applied) == w->ls_gen)
			return true;
		nanosleep(&tick, NULL);
	}
	return false;
}

void worker_join(struct worker *w)
{
	if (w && w->thread) {
		pthread_join(w->thread, NULL);
		w->thread = 0;
	}
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	worker_join(w);
	if (w->eng) {
		close_listeners(w);
		if (w->wake_watch)
			w->ops->unwatch(w->eng, w->wake_watch);
		w->ops->destroy(w->eng);
	}
	for (size_t i = 0; i < w->nls; i++) {
		if (w->ls[i]->fd >= 0)
			close(w->ls[i]->fd);
		free(w->ls[i]);
	}
	update_free(atomic_exchange(&w->ls_pending, NULL));
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	tcp_relay_free(w);
	udp_relay_free(w);
	pipe_pool_free(&w->pipes);
	timer_heap_free(&w->timers);
	free(w->ls);
	free(w);
}
