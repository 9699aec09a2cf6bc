/* The worker loop: wait on the engine, run due timers, accept on this worker's listener
 * copies, and on request stop accepting and drain. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lb/log.h"
#include "lb/tcp_relay.h"
#include "lb/worker.h"

/* After EMFILE/ENFILE, wait this long before accepting again instead of spinning. */
#define ACCEPT_RETRY_MS 100
/* Spare empty pipes a worker keeps; more are closed when given back. */
#define PIPE_POOL_SPARE 64
/* 256 KiB pipes: one splice moves up to this much; the default 64 KiB costs more calls. */
#define PIPE_SIZE (256 * 1024)
/* Max conns to close per accept error message; keeps the log readable under fd pressure. */
#define ACCEPT_LOG_INTERVAL_MS 1000

static void accept_ready(void *arg, uint32_t events);

static void accept_retry(struct timer *t, uint64_t now)
{
	struct worker_listener *wl =
	    (struct worker_listener *)((char *)t - offsetof(struct worker_listener, retry));
	(void)now;
	if (wl->fd >= 0)
		accept_ready(wl, ENGINE_READ);
}

static void accept_ready(void *arg, uint32_t events)
{
	struct worker_listener *wl = arg;
	struct worker *w = wl->w;
	static _Thread_local uint64_t last_log;
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
		if (w->now - last_log >= ACCEPT_LOG_INTERVAL_MS) {
			last_log = w->now;
			log_warn("listener %s: accept: %s; pausing accepts for %d ms",
				 wl->l->cfg->name, strerror(errno), ACCEPT_RETRY_MS);
		}
		timer_arm(&w->timers, &wl->retry, w->now + ACCEPT_RETRY_MS);
		return;
	}
}

static void wake_ready(void *arg, uint32_t events)
{
	struct worker *w = arg;
	uint64_t v;
	(void)events;
	while (read(w->wake_fd, &v, sizeof(v)) > 0)
		;
	tcp_relay_kill_scan(w); /* a wake may come from `kill` (worker_kick) */
}

struct worker *worker_create(int id, const struct lb_runtime *rt, const int *listen_fds)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->id = id;
	w->rt = rt;
	w->ops = rt->engine;
	w->wake_fd = -1;
	w->nls = rt->nlisteners;
	w->ls = calloc(w->nls ? w->nls : 1, sizeof(*w->ls));
	if (!w->ls) {
		free(w);
		return NULL;
	}
	for (size_t i = 0; i < w->nls; i++) {
		w->ls[i].w = w;
		w->ls[i].l = &rt->listeners[i];
		w->ls[i].fd = listen_fds[i];
		timer_init(&w->ls[i].retry, accept_retry);
	}
	pipe_pool_init(&w->pipes, PIPE_POOL_SPARE, PIPE_SIZE);
	tcp_relay_init(w);
	return w;
}

static int worker_setup(struct worker *w)
{
	w->eng = w->ops->create(1024);
	if (!w->eng)
		return -errno;
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -errno;
	w->wake_watch = w->ops->watch(w->eng, w->wake_fd, ENGINE_READ, wake_ready, w);
	if (!w->wake_watch)
		return -ENOMEM;
	for (size_t i = 0; i < w->nls; i++) {
		struct worker_listener *wl = &w->ls[i];
		if (wl->fd < 0)
			continue;
		wl->watch = w->ops->watch(w->eng, wl->fd, ENGINE_READ, accept_ready, wl);
		if (!wl->watch)
			return -ENOMEM;
	}
	return 0;
}

static void close_listeners(struct worker *w)
{
	for (size_t i = 0; i < w->nls; i++) {
		struct worker_listener *wl = &w->ls[i];
		if (wl->fd < 0)
			continue;
		if (wl->watch)
			w->ops->unwatch(w->eng, wl->watch);
		wl->watch = NULL;
		timer_cancel(&w->timers, &wl->retry);
		/* shutdown() leaves LISTEN at once, whoever else still holds a file reference
		 * (an io_uring poll does until its removal completes): connects get refused. */
		(void)shutdown(wl->fd, SHUT_RDWR);
		close(wl->fd);
		wl->fd = -1;
	}
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
			if (!w->nconns)
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
		qsbr_offline(w->rt->qsbr, w->id);
		int ret = w->ops->wait(w->eng, timeout);
		qsbr_online(w->rt->qsbr, w->id);
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
	qsbr_online(w->rt->qsbr, w->id);
	atomic_store(&w->state, WORKER_RUNNING);
	worker_loop(w);
	close_listeners(w);
	flush(w);
	qsbr_offline(w->rt->qsbr, w->id);
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
	uint64_t one = 1;
	if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("worker %d: wake: %s", w->id, strerror(errno));
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	if (w->thread)
		pthread_join(w->thread, NULL);
	if (w->eng) {
		close_listeners(w);
		if (w->wake_watch)
			w->ops->unwatch(w->eng, w->wake_watch);
		w->ops->destroy(w->eng);
	}
	for (size_t i = 0; i < w->nls; i++)
		if (w->ls[i].fd >= 0)
			close(w->ls[i].fd);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	objpool_destroy(&w->conn_pool);
	pipe_pool_free(&w->pipes);
	timer_heap_free(&w->timers);
	free(w->ls);
	free(w);
}
