/* The prober thread (DESIGN.md "Threads and data flow"): timers -> checks -> rise/fall ->
 * backend state -> pool snapshot rebuild. Every probe is a small state machine on one
 * non-blocking socket in the prober's epoll; the check modules (health/checks.c) only say
 * what to send and judge the reply. Workers never wait on anything here. */
#include "health/prober.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "health/checks.h"
#include "lb/log.h"
#include "lb/timer.h"

/* Passive checks and QSBR reclaim run on this period (the data plane only counts). */
#define PROBER_TICK_MS 100
/* Events taken per epoll_wait; more simply wait for the next turn. */
#define PROBER_MAX_EVENTS 64

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum probe_state { PROBE_IDLE, PROBE_CONNECTING, PROBE_SENDING, PROBE_READING };

/* One backend's checks. */
struct probe {
	struct prober *pr;
	struct backend *b;
	size_t pool_idx;
	const struct cfg_health *h; /* the pool's health settings */
	const struct hc_check *chk; /* the configured type */
	const struct hc_check *run; /* what the running probe does: chk, or tcp to recover */
	bool recovering;	    /* type none, marked down by passive checks: probe until up */
	uint8_t *req;		    /* chk's request, built once; NULL if none */
	size_t reqlen, sent;
	struct timer timer; /* next start while idle, the timeout while running */
	int fd;
	enum probe_state state;
	uint64_t started_ms, started_ns;
	int passes, fails; /* consecutive results */
	size_t len;	   /* reply bytes in buf */
	uint8_t buf[HC_REPLY_MAX];
};

struct prober {
	struct pool **pools;
	size_t npools;
	struct qsbr *q;
	bool *dirty; /* per pool: state changed, snapshot to rebuild */
	struct probe *probes;
	size_t nprobes;
	struct timer_heap timers;
	struct timer tick;
	int epfd, evfd;
	pthread_t thread;
	uint64_t rng; /* xorshift64 state for the start-up spread */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(struct prober *pr)
{
	pr->rng ^= pr->rng << 13;
	pr->rng ^= pr->rng >> 7;
	pr->rng ^= pr->rng << 17;
	return pr->rng;
}

/* ---- results, shared with readers through the backend's seqlock ---- */

/* Every access is seq_cst: a reader that sees any byte of a newer result then sees the
 * newer (odd or advanced) sequence and retries. Fence-free, so ThreadSanitizer follows it;
 * the cost is a few dozen locked stores per check. */
static void store_result(struct backend *b, bool pass, uint32_t latency_us, const char *reason)
{
	uint32_t seq = atomic_load(&b->hc_seq);
	size_t i = 0;

	atomic_store(&b->hc_seq, seq + 1);
	atomic_store(&b->hc_last, pass ? PROBER_LAST_PASS : PROBER_LAST_FAIL);
	atomic_store(&b->hc_latency_us, latency_us);
	atomic_fetch_add(&b->hc_checks, 1);
	for (; reason && reason[i] && i + 1 < sizeof(b->hc_reason); i++)
		atomic_store(&b->hc_reason[i], reason[i]);
	atomic_store(&b->hc_reason[i], '\0');
	atomic_store(&b->hc_seq, seq + 2);
}

void prober_last_check(const struct backend *b, struct prober_check *out)
{
	uint32_t s1, s2;

	_Static_assert(sizeof(out->reason) == sizeof(b->hc_reason), "reason sizes differ");
	do {
		s1 = atomic_load(&b->hc_seq);
		out->last = atomic_load(&b->hc_last);
		out->latency_us = atomic_load(&b->hc_latency_us);
		out->checks = atomic_load(&b->hc_checks);
		for (size_t i = 0; i < sizeof(out->reason); i++)
			out->reason[i] = atomic_load(&b->hc_reason[i]);
		s2 = atomic_load(&b->hc_seq);
	} while ((s1 & 1) || s1 != s2);
	out->reason[sizeof(out->reason) - 1] = '\0';
}

/* ---- rise/fall ---- */

static void set_health(struct probe *p, int health)
{
	atomic_store_explicit(&p->b->health, health, memory_order_relaxed);
	p->pr->dirty[p->pool_idx] = true;
}

static void mark_up(struct probe *p, const char *why)
{
	struct backend *b = p->b;

	set_health(p, BACKEND_UP);
	/* Connects that failed before the backend went down must not count again now. */
	atomic_store_explicit(&b->fail_streak, 0, memory_order_relaxed);
	p->recovering = false;
	log_info("pool %s: backend %s (%s) is UP (%s)", b->pool->name, b->name, b->address, why);
}

static void mark_down(struct probe *p, const char *reason, const char *why)
{
	struct backend *b = p->b;

	set_health(p, BACKEND_DOWN);
	log_warn("pool %s: backend %s (%s) is DOWN: %s%s%s%s", b->pool->name, b->name, b->address,
		 reason, why ? " (" : "", why ? why : "", why ? ")" : "");
}

/* SPEC: a backend starts `unknown` (usable) "until the first result". Our reading: the first
 * check result decides at once (pass -> up, failure -> down); rise and fall count from then
 * on. Waiting for `fall` failures would keep a dead backend in rotation for fall x interval
 * after start-up, and a pass only confirms what `unknown` already allows. */
static void apply_result(struct probe *p, bool pass, const char *reason)
{
	int health = atomic_load_explicit(&p->b->health, memory_order_relaxed);
	char why[48];

	if (pass) {
		p->fails = 0;
		if (p->passes < INT_MAX)
			p->passes++;
		if (health == BACKEND_UNKNOWN) {
			mark_up(p, "first check passed");
		} else if (health == BACKEND_DOWN && p->passes >= p->h->rise) {
			snprintf(why, sizeof(why), "%d consecutive pass%s", p->passes,
				 p->passes == 1 ? "" : "es");
			mark_up(p, why);
		}
		return;
	}
	p->passes = 0;
	if (p->fails < INT_MAX)
		p->fails++;
	if (health == BACKEND_UNKNOWN) {
		mark_down(p, reason, "first check");
	} else if (health == BACKEND_UP && p->fails >= p->h->fall) {
		snprintf(why, sizeof(why), "%d consecutive failure%s", p->fails,
			 p->fails == 1 ? "" : "s");
		mark_down(p, reason, why);
	}
}

/* ---- one probe ---- */

static bool probe_wanted(const struct probe *p)
{
	return p->chk->socktype != 0 || p->recovering;
}

static void probe_close(struct probe *p)
{
	if (p->fd < 0)
		return;
	if (p->run->socktype == SOCK_STREAM) {
		/* Reset instead of FIN: the prober never holds TIME_WAIT, which at 200 backends
		 * every 100 ms would pin thousands of local ports. */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(p->fd); /* also leaves the epoll set */
	p->fd = -1;
}

static void probe_finish(struct probe *p, bool pass, const char *reason)
{
	uint64_t now = timer_now_ms();
	uint64_t next = p->started_ms + p->h->interval_ms;
	uint64_t us = (now_ns() - p->started_ns) / 1000;

	probe_close(p);
	p->state = PROBE_IDLE;
	store_result(p->b, pass, us > UINT32_MAX ? UINT32_MAX : (uint32_t)us, pass ? "" : reason);
	log_debug("pool %s: check of %s %s%s (%llu us)", p->b->pool->name, p->b->name,
		  pass ? "passed" : "failed: ", pass ? "" : reason, (unsigned long long)us);
	apply_result(p, pass, reason);
	/* Timer slots are reserved up front (prober_start), so arming cannot fail. */
	if (probe_wanted(p))
		timer_arm(&p->pr->timers, &p->timer, next > now ? next : now);
	else
		timer_cancel(&p->pr->timers, &p->timer);
}

static void probe_fail_errno(struct probe *p, int err)
{
	char buf[HC_REASON_MAX], ebuf[64];
	const char *r;

	switch (err) {
	case ECONNREFUSED:
		r = "connection refused";
		break;
	case ECONNRESET:
		r = "connection reset";
		break;
	case EPIPE:
		r = "connection closed";
		break;
	case ETIMEDOUT:
		r = "timeout";
		break;
	case EHOSTUNREACH:
		r = "host unreachable";
		break;
	case ENETUNREACH:
		r = "network unreachable";
		break;
	default:
		snprintf(buf, sizeof(buf), "socket error: %s", strerror_r(err, ebuf, sizeof(ebuf)));
		r = buf;
	}
	probe_finish(p, false, r);
}

static int probe_watch(struct probe *p, uint32_t events, bool add)
{
	struct epoll_event ev = {.events = events, .data.ptr = p};

	return epoll_ctl(p->pr->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, p->fd, &ev);
}

static void probe_read(struct probe *p)
{
	char reason[HC_REASON_MAX];
	bool dgram = p->run->socktype == SOCK_DGRAM;

	for (;;) {
		/* A datagram is judged alone; a stream reply accumulates. */
		size_t off = dgram ? 0 : p->len;
		ssize_t n = recv(p->fd, p->buf + off, sizeof(p->buf) - off, 0);
		enum hc_result r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				probe_fail_errno(p, errno);
			return;
		}
		if (n == 0 && !dgram) {
			if (p->len)
				hc_bad_reply(reason, sizeof(reason), p->buf, p->len);
			probe_finish(p, false, p->len ? reason : "connection closed");
			return;
		}
		p->len = off + (size_t)n;
		r = hc_judge(p->run, p->buf, p->len, p->h, reason, sizeof(reason));
		if (r != HC_NEED_MORE) {
			probe_finish(p, r == HC_PASS, reason);
			return;
		}
	}
}

static void probe_send(struct probe *p)
{
	while (p->sent < p->reqlen) {
		ssize_t n = send(p->fd, p->req + p->sent, p->reqlen - p->sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (p->state != PROBE_SENDING) {
				p->state = PROBE_SENDING;
				if (probe_watch(p, EPOLLOUT, false) < 0)
					probe_fail_errno(p, errno);
			}
			return;
		}
		if (n < 0) {
			probe_fail_errno(p, errno);
			return;
		}
		p->sent += (size_t)n;
	}
	p->state = PROBE_READING;
	if (probe_watch(p, EPOLLIN | EPOLLRDHUP, false) < 0)
		probe_fail_errno(p, errno);
}

static void probe_connected(struct probe *p)
{
	if (!p->run->parse) { /* tcp: the connect was the whole check */
		probe_finish(p, true, "");
		return;
	}
	probe_send(p);
}

static void probe_begin(struct probe *p, uint64_t now)
{
	const struct lb_addr *a = &p->b->addr;
	int rc;

	p->run = p->chk->socktype ? p->chk : &hc_check_tcp;
	p->started_ms = now;
	p->started_ns = now_ns();
	p->len = 0;
	p->sent = 0;
	p->fd = socket(a->ss.ss_family, p->run->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		probe_fail_errno(p, errno);
		return;
	}
	timer_arm(&p->pr->timers, &p->timer, now + p->h->timeout_ms);
	p->state = PROBE_CONNECTING;
	rc = connect(p->fd, (const struct sockaddr *)&a->ss, a->len);
	if (rc < 0 && errno != EINPROGRESS) {
		probe_fail_errno(p, errno);
		return;
	}
	if (probe_watch(p, EPOLLOUT, true) < 0) {
		probe_fail_errno(p, errno);
		return;
	}
	if (rc == 0) /* loopback and udp connect at once */
		probe_connected(p);
}

static void probe_io(struct probe *p, uint32_t events)
{
	int err = 0;
	socklen_t elen = sizeof(err);

	switch (p->state) {
	case PROBE_CONNECTING:
		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
		if (err)
			probe_fail_errno(p, err);
		else if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			probe_connected(p);
		break;
	case PROBE_SENDING:
		probe_send(p);
		break;
	case PROBE_READING:
		probe_read(p);
		break;
	case PROBE_IDLE:
		break;
	}
}

/* Idle: start the next check. Running: it timed out. */
static void probe_timer(struct timer *t, uint64_t now)
{
	struct probe *p = container_of(t, struct probe, timer);

	if (p->state == PROBE_IDLE)
		probe_begin(p, now);
	else
		probe_finish(p, false, "timeout");
}

/* ---- passive checks ---- */

static void passive_check(struct probe *p, uint64_t now)
{
	struct backend *b = p->b;
	int streak = atomic_load_explicit(&b->fail_streak, memory_order_relaxed);
	char reason[HC_REASON_MAX];

	if (streak < p->h->fall ||
	    atomic_load_explicit(&b->health, memory_order_relaxed) == BACKEND_DOWN)
		return;
	snprintf(reason, sizeof(reason), "%d consecutive failed connects from the data plane",
		 streak);
	mark_down(p, reason, NULL);
	p->passes = 0;
	/* A pool without active checks probes with a plain connect until rise passes. */
	if (!p->chk->socktype && !p->recovering) {
		p->recovering = true;
		timer_arm(&p->pr->timers, &p->timer, now + p->h->interval_ms);
	}
}

static void tick(struct timer *t, uint64_t now)
{
	struct prober *pr = container_of(t, struct prober, tick);

	for (size_t i = 0; i < pr->nprobes; i++)
		passive_check(&pr->probes[i], now);
	if (pr->q)
		qsbr_reclaim(pr->q);
	timer_arm(&pr->timers, &pr->tick, now + PROBER_TICK_MS);
}

/* ---- the thread ---- */

static void publish(struct prober *pr)
{
	for (size_t i = 0; i < pr->npools; i++) {
		if (!pr->dirty[i])
			continue;
		pr->dirty[i] = false;
		if (pool_rebuild(pr->pools[i], pr->q) < 0) {
			pr->dirty[i] = true; /* out of memory: try again on the next change */
			log_warn("pool %s: cannot rebuild the snapshot: out of memory",
				 pr->pools[i]->name);
		}
	}
}

static void *prober_main(void *arg)
{
	struct prober *pr = arg;
	struct epoll_event ev[PROBER_MAX_EVENTS];

	for (;;) {
		int n = epoll_wait(pr->epfd, ev, PROBER_MAX_EVENTS,
				   timer_next_ms(&pr->timers, timer_now_ms()));

		if (n < 0 && errno != EINTR) {
			log_error("health prober stops: epoll_wait: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			if (!ev[i].data.ptr)
				return NULL; /* prober_stop */
			probe_io(ev[i].data.ptr, ev[i].events);
		}
		timer_run(&pr->timers, timer_now_ms());
		publish(pr);
	}
}

/* ---- set-up and tear-down ---- */

static int probe_init(struct prober *pr, struct probe *p, struct pool *pool, size_t pool_idx,
		      struct backend *b, const struct hc_check *chk)
{
	p->pr = pr;
	p->b = b;
	p->pool_idx = pool_idx;
	p->h = &pool->health;
	p->chk = chk;
	p->run = chk;
	p->fd = -1;
	timer_init(&p->timer, probe_timer);
	if (!chk->request)
		return 0;
	p->reqlen = chk->request(p->h, b->address, NULL, 0);
	if (!p->reqlen)
		return 0;
	p->req = malloc(p->reqlen + 1); /* +1: snprintf-style builders write a NUL */
	if (!p->req)
		return -ENOMEM;
	chk->request(p->h, b->address, p->req, p->reqlen + 1);
	return 0;
}

static int probes_create(struct prober *pr)
{
	size_t n = 0;

	for (size_t i = 0; i < pr->npools; i++)
		n += pr->pools[i]->nbackends;
	pr->probes = calloc(n ? n : 1, sizeof(*pr->probes));
	/* One heap slot per probe plus the tick: arming in the loop never allocates. */
	pr->timers.v = calloc(n + 1, sizeof(*pr->timers.v));
	pr->timers.cap = n + 1;
	if (!pr->probes || !pr->timers.v)
		return -ENOMEM;
	for (size_t i = 0; i < pr->npools; i++) {
		struct pool *pool = pr->pools[i];
		const struct hc_check *chk =
		    hc_find(pool->health.type ? pool->health.type : "none");

		if (!chk) {
			log_error("pool %s: unknown health type %s", pool->name, pool->health.type);
			return -EINVAL;
		}
		for (size_t j = 0; j < pool->nbackends; j++) {
			int rc = probe_init(pr, &pr->probes[pr->nprobes], pool, i,
					    pool->backends[j], chk);
			if (rc < 0)
				return rc;
			pr->nprobes++;
		}
	}
	return 0;
}

/* First checks spread at random over one interval, so that N backends are not probed in
 * lockstep; later ones keep that phase. */
static void probes_schedule(struct prober *pr, uint64_t now)
{
	for (size_t i = 0; i < pr->nprobes; i++) {
		struct probe *p = &pr->probes[i];
		uint64_t spread = p->h->interval_ms ? rng_next(pr) % p->h->interval_ms : 0;

		if (probe_wanted(p))
			timer_arm(&pr->timers, &p->timer, now + spread);
	}
	timer_init(&pr->tick, tick);
	timer_arm(&pr->timers, &pr->tick, now + PROBER_TICK_MS);
}

static void prober_free(struct prober *pr)
{
	if (!pr)
		return;
	for (size_t i = 0; i < pr->nprobes; i++) {
		probe_close(&pr->probes[i]);
		free(pr->probes[i].req);
	}
	free(pr->probes);
	timer_heap_free(&pr->timers);
	free(pr->dirty);
	if (pr->epfd >= 0)
		close(pr->epfd);
	if (pr->evfd >= 0)
		close(pr->evfd);
	free(pr);
}

static int prober_spawn(struct prober *pr)
{
	sigset_t all, old;
	int rc;

	/* Signals belong to the main thread's signalfd, never to the prober. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&pr->thread, NULL, prober_main, pr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

struct prober *prober_start(struct pool **pools, size_t npools, struct qsbr *q)
{
	struct prober *pr = calloc(1, sizeof(*pr));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	int rc = -ENOMEM;

	if (!pr)
		goto fail;
	pr->epfd = pr->evfd = -1;
	pr->pools = pools;
	pr->npools = npools;
	pr->q = q;
	pr->rng = now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)pr;
	if (!pr->rng)
		pr->rng = 1;
	pr->dirty = calloc(npools ? npools : 1, sizeof(*pr->dirty));
	if (!pr->dirty)
		goto fail;
	rc = probes_create(pr);
	if (rc < 0)
		goto fail;
	pr->epfd = epoll_create1(EPOLL_CLOEXEC);
	pr->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pr->epfd < 0 || pr->evfd < 0 || epoll_ctl(pr->epfd, EPOLL_CTL_ADD, pr->evfd, &ev) < 0) {
		rc = -errno;
		goto fail;
	}
	probes_schedule(pr, timer_now_ms());
	rc = prober_spawn(pr);
	if (rc < 0)
		goto fail;
	log_info("health prober started: %zu backends in %zu pools", pr->nprobes, npools);
	return pr;
fail:
	prober_free(pr);
	errno = -rc;
	return NULL;
}

void prober_stop(struct prober *pr)
{
	uint64_t one = 1;

	if (!pr)
		return;
	while (write(pr->evfd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(pr->thread, NULL);
	prober_free(pr);
}
