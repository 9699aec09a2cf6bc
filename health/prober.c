/* The prober thread (DESIGN.md "Threads and data flow"): timers -> checks -> rise/fall ->
 * backend state -> pool snapshot rebuild. Every probe is a small state machine on one
 * non-blocking socket in the prober's epoll; the check modules (health/checks.c) only say
 * what to send and judge the reply. Workers never wait on anything here. */
#include "health/prober.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include "lb/list.h"
#include "lb/log.h"
#include "lb/syserr.h"
#include "lb/timer.h"
#include "lb/hash.h"

/* Passive checks and QSBR reclaim run on this period (the data plane only counts). */
#define PROBER_TICK_MS 100
/* Checks start on a 10 ms grid (probe_slot): the backends that share a slot start in one
 * wakeup of the prober and their replies come back in a few. Measured at 200 backends every
 * 100 ms: 0.26 epoll_wait and 0.41 context switches per check, against 1.58 and 0.91 with
 * 1 ms slots. */
#define PROBER_SLOT_MS 10
/* Events taken per epoll_wait; more simply wait for the next turn. */
#define PROBER_MAX_EVENTS 64
/* At most one "check skipped" line (lb out of fds) this often. */
#define PROBE_SKIP_LOG_MS 1000
/* A socket joins the epoll set once, when it is opened, for every event a check waits for,
 * edge-triggered: probe_io acts only on the events of the probe's state, and a socket kept
 * from one check to the next never changes its interest. */
#define PROBE_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

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
	bool agent;		    /* the backend's agent check, not its health check */
	uint8_t *req;		    /* chk's request, built once; NULL if none */
	size_t reqlen, sent;
	struct timer timer; /* next start while idle, the timeout while running */
	uint64_t phase;	    /* where in each interval the checks start (probe_phase) */
	uint64_t due_ms;    /* the slot the current or next check starts in */
	int fd; /* a tcp probe keeps its socket from one check to the next (probe_hangup) */
	enum probe_state state;
	uint64_t started_ns;
	int passes, fails; /* consecutive results */
	size_t len;	   /* reply bytes in buf */
	uint8_t buf[HC_REPLY_MAX];
};

struct prober {
	struct pool **pools;
	size_t npools;
	struct qsbr *q;
	struct prober_hooks hooks;
	bool *dirty; /* per pool: state changed, snapshot to rebuild */
	struct probe *probes;
	size_t nprobes;
	struct timer_heap timers;
	struct timer tick;
	int epfd, evfd;
	pthread_t thread;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* Record the prober's verdict. False while lbctl forces the health: the verdict is kept for
 * `health auto` but not applied. */
static bool set_health(struct probe *p, int health)
{
	if (backend_health_verdict(p->b, health))
		p->pr->dirty[p->pool_idx] = true;
	return !atomic_load(&p->b->health_force);
}

static void mark_up(struct probe *p, const char *why)
{
	struct backend *b = p->b;

	bool was_down = atomic_load(&b->hc_verdict) == BACKEND_DOWN;
	bool applied = set_health(p, BACKEND_UP);
	/* Back from down, a server is cold (slow_start): not at lb's start, when every backend's
	 * first check passes. */
	if (was_down && atomic_load(&b->slow_start_ms))
		backend_ramp_begin(b, timer_now_ms());
	/* Connects that failed before the backend went down must not count again now. */
	atomic_store_explicit(&b->fail_streak, 0, memory_order_relaxed);
	p->recovering = false;
	log_info("pool %s: backend %s (%s) is UP (%s)%s", b->pool->name, b->name, b->address, why,
		 applied ? "" : "; health is forced by lbctl, not applied");
}

static void mark_down(struct probe *p, const char *reason, const char *why)
{
	struct backend *b = p->b;

	bool applied = set_health(p, BACKEND_DOWN);
	log_warn("pool %s: backend %s (%s) is DOWN: %s%s%s%s%s", b->pool->name, b->name, b->address,
		 reason, why ? " (" : "", why ? why : "", why ? ")" : "",
		 applied ? "" : "; health is forced by lbctl, not applied");
	if (applied && p->pr->hooks.backend_down)
		p->pr->hooks.backend_down(p->pr->hooks.ctx, b);
}

/* SPEC: a backend starts `unknown` (usable) "until the first result". Our reading: the first
 * check result decides at once (pass -> up, failure -> down); rise and fall count from then
 * on. Waiting for `fall` failures would keep a dead backend in rotation for fall x interval
 * after start-up, and a pass only confirms what `unknown` already allows. */
static void apply_result(struct probe *p, bool pass, const char *reason)
{
	int health = atomic_load_explicit(&p->b->hc_verdict, memory_order_relaxed);
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
	return p->agent || hc_probes(p->chk) || p->recovering;
}

/* Checks start on a fixed beat: the times t with t % interval == phase, a multiple of
 * PROBER_SLOT_MS picked by a hash of the backend's address in memory. That spreads N backends
 * over the interval, and a prober restarted over the same backends (reload, lbctl add/remove)
 * keeps each one's beat instead of delaying its next check by up to an interval. */
static uint64_t probe_phase(const struct backend *b, uint64_t interval_ms)
{
	uint64_t slots = interval_ms / PROBER_SLOT_MS;

	return slots ? hash_mix64((uintptr_t)b) % slots * PROBER_SLOT_MS : 0;
}

/* The first time at or after t on p's beat. */
static uint64_t probe_slot(const struct probe *p, uint64_t t)
{
	uint64_t iv = p->h->interval_ms;

	return iv ? t + (p->phase + iv - t % iv) % iv : t;
}

/* Idle until the first slot at or after t. Timer slots are reserved up front (prober_start),
 * so arming cannot fail. */
static void probe_plan(struct probe *p, uint64_t t)
{
	p->due_ms = probe_slot(p, t);
	timer_arm(&p->pr->timers, &p->timer, p->due_ms);
}

/* The socket for a new check: the one the last check kept, or a new one. 0 or -errno. */
static int probe_open(struct probe *p)
{
	struct epoll_event ev = {.events = PROBE_EVENTS, .data.ptr = p};
	int err;

	if (p->fd >= 0)
		return 0;
	p->fd = socket(p->b->addr.ss.ss_family, p->run->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0)
		return -errno;
	if (epoll_ctl(p->pr->epfd, EPOLL_CTL_ADD, p->fd, &ev) == 0)
		return 0;
	err = errno;
	close(p->fd);
	p->fd = -1;
	return -err;
}

/* End the check's connection with a reset, never a FIN: the prober never holds TIME_WAIT,
 * which at 200 backends every 100 ms would pin thousands of local ports. With keep, a tcp
 * socket stays for the next check: connect() to AF_UNSPEC resets the connection and leaves
 * the socket as new, which saves socket(), SO_LINGER, close() and the epoll registration on
 * every check. A udp socket is always closed, so that a late reply never reaches the next
 * check. */
static void probe_hangup(struct probe *p, bool keep)
{
	static const struct sockaddr unspec = {.sa_family = AF_UNSPEC};
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (p->fd < 0)
		return;
	if (p->run->socktype == SOCK_STREAM) {
		if (keep && connect(p->fd, &unspec, sizeof(unspec)) == 0)
			return;
		setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(p->fd); /* also leaves the epoll set */
	p->fd = -1;
}

/* ---- the agent check (HAProxy's agent protocol) ---- */

static void agent_note(struct backend *b, const char *s)
{
	size_t i = 0;

	for (; s[i] && i + 1 < sizeof(b->agent_last); i++)
		atomic_store_explicit(&b->agent_last[i], s[i], memory_order_relaxed);
	atomic_store_explicit(&b->agent_last[i], '\0', memory_order_relaxed);
}

/* One word of an agent's line: true if it changed what workers see. */
static bool agent_word(struct probe *p, const char *w)
{
	struct backend *b = p->b;
	char *end;

	if (!strcmp(w, "up"))
		return atomic_exchange(&b->agent_down, false);
	if (!strcmp(w, "down") || !strcmp(w, "fail") || !strcmp(w, "failed") ||
	    !strcmp(w, "stopped"))
		return !atomic_exchange(&b->agent_down, true);
	if (!strcmp(w, "ready"))
		return atomic_exchange(&b->agent_admin, BACKEND_ENABLED) != BACKEND_ENABLED;
	if (!strcmp(w, "drain"))
		return atomic_exchange(&b->agent_admin, BACKEND_DRAINING) != BACKEND_DRAINING;
	if (!strcmp(w, "maint"))
		return atomic_exchange(&b->agent_admin, BACKEND_DISABLED) != BACKEND_DISABLED;
	if (!strncmp(w, "maxconn:", 8)) {
		long v = strtol(w + 8, &end, 10);
		if (*end || end == w + 8 || v < 0 || v > CFG_ADD_MAX_CONNS)
			goto unknown;
		atomic_store(&b->max_conns, (int)v);
		return false;
	}
	size_t n = strlen(w);
	if (n >= 2 && w[n - 1] == '%') {
		long v = strtol(w, &end, 10);
		if (end != w + n - 1 || v < 0 || v > 100)
			goto unknown;
		return atomic_exchange(&b->agent_pct, (int)v) != (int)v;
	}
unknown:
	log_debug("pool %s: agent of %s said \"%s\": not a word lb knows; ignored", b->pool->name,
		  b->name, w);
	return false;
}

/* A check of the agent ended: on a line, apply each word; on a failure (refused, timeout,
 * garbage), change nothing (HAProxy: an agent that fails does not take a server down). */
static void agent_result(struct probe *p, bool pass, const char *reason)
{
	struct backend *b = p->b;
	char line[HC_AGENT_LINE_MAX + 1], note[64], *save = NULL;
	size_t n = p->len < HC_AGENT_LINE_MAX ? p->len : HC_AGENT_LINE_MAX;
	bool changed = false;

	if (!pass) {
		snprintf(note, sizeof(note), "error: %s", reason);
		agent_note(b, note);
		log_debug("pool %s: agent of %s: %s", b->pool->name, b->name, reason);
		return;
	}
	memcpy(line, p->buf, n);
	line[n] = '\0';
	line[strcspn(line, "\r\n#")] = '\0'; /* one line; '#' starts a description */
	for (char *c = line; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	agent_note(b, line);
	snprintf(note, sizeof(note), "%s", line);
	for (char *w = strtok_r(line, ", \t", &save); w; w = strtok_r(NULL, ", \t", &save))
		changed |= agent_word(p, w);
	if (changed) {
		log_info("pool %s: backend %s: agent says \"%s\"", b->pool->name, b->name, note);
		p->pr->dirty[p->pool_idx] = true;
	}
}

static void probe_finish(struct probe *p, bool pass, const char *reason)
{
	uint64_t now = timer_now_ms();
	uint64_t us = (now_ns() - p->started_ns) / 1000;

	p->state = PROBE_IDLE;
	if (p->agent) {
		agent_result(p, pass, reason);
		probe_hangup(p, false);
		probe_plan(p, now > p->due_ms ? now : p->due_ms + 1);
		return;
	}
	store_result(p->b, pass, us > UINT32_MAX ? UINT32_MAX : (uint32_t)us, pass ? "" : reason);
	/* Tested first: log_msg costs a few hundred instructions even when it drops the line. */
	if (log_enabled(LOG_DEBUG))
		log_debug("pool %s: check of %s %s%s (%llu us)", p->b->pool->name, p->b->name,
			  pass ? "passed" : "failed: ", pass ? "" : reason, (unsigned long long)us);
	apply_result(p, pass, reason);
	probe_hangup(p, probe_wanted(p));
	/* The next slot after this check's; the first one from now if this check overran it. */
	if (probe_wanted(p))
		probe_plan(p, now > p->due_ms ? now : p->due_ms + 1);
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
			if (p->agent && p->len) { /* an agent may close after its line */
				probe_finish(p, true, "");
				return;
			}
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

/* Send what is left of the request, then wait for the reply. Called before the connect is
 * known to be done: a stream socket still connecting says EAGAIN (EPOLLOUT comes once it is
 * connected), and a failed connect comes back as send's error (ECONNREFUSED). */
static void probe_send(struct probe *p)
{
	while (p->sent < p->reqlen) {
		ssize_t n = send(p->fd, p->req + p->sent, p->reqlen - p->sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			probe_fail_errno(p, errno);
			return;
		}
		p->sent += (size_t)n;
	}
	p->state = PROBE_READING;
}

/* Hold back the handshake's last ACK so that it leaves with the request (what HAProxy does
 * when it has data to send): one packet less per check, and the backend wakes once for the
 * new connection and its request. Never without a request: the ACK would wait for a timer.
 * Only an optimisation, so a failure is ignored. */
static void delay_handshake_ack(int fd)
{
	int off = 0;

	setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &off, sizeof(off));
}

/* No socket for this check because lb itself is out of fds or memory: that says nothing
 * about the backend, so no verdict; try again in the next slot. */
static void probe_skip(struct probe *p, uint64_t now, int err)
{
	static uint64_t last_log, unlogged;

	p->state = PROBE_IDLE;
	if (now - last_log >= PROBE_SKIP_LOG_MS || !last_log) {
		log_warn("pool %s: check of %s skipped: %s (lb's own shortage; not counted "
			 "against the backend; %llu more skipped since the last line)",
			 p->b->pool->name, p->b->name, strerror(err), (unsigned long long)unlogged);
		last_log = now;
		unlogged = 0;
	} else {
		unlogged++;
	}
	if (probe_wanted(p))
		probe_plan(p, p->due_ms + 1);
	else
		timer_cancel(&p->pr->timers, &p->timer);
}

/* Where p's checks go: the backend's address, with the port of its check_port, else of the
 * pool's health.port, if set. */
static void probe_target(const struct probe *p, struct lb_addr *out)
{
	int port = atomic_load_explicit(p->agent ? &p->b->agent_port : &p->b->check_port,
					memory_order_relaxed);

	*out = p->b->addr;
	if (!port)
		port = p->h->port;
	if (!port)
		return;
	if (out->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
}

static void probe_begin(struct probe *p, uint64_t now)
{
	struct lb_addr target;
	const struct lb_addr *a = &target;
	int rc;

	probe_target(p, &target);

	p->run = p->agent || hc_probes(p->chk) ? p->chk : &hc_check_tcp;
	if (!p->agent)
		atomic_store_explicit(&p->b->hc_slot_ms, p->due_ms, memory_order_relaxed);
	p->started_ns = now_ns();
	p->len = 0;
	p->sent = 0;
	rc = probe_open(p);
	if (rc < 0 && syserr_local_shortage(-rc)) {
		probe_skip(p, now, -rc);
		return;
	}
	if (rc < 0) {
		probe_fail_errno(p, -rc);
		return;
	}
	timer_arm(&p->pr->timers, &p->timer, now + p->h->timeout_ms);
	if (p->run->socktype == SOCK_STREAM && p->run->parse && p->reqlen)
		delay_handshake_ack(p->fd);
	if (connect(p->fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
		probe_fail_errno(p, errno);
		return;
	}
	if (!p->run->parse) { /* tcp: the connect completing is the whole check */
		p->state = PROBE_CONNECTING;
		return;
	}
	/* No wait for the connect: on loopback the handshake is already done, and a udp socket
	 * is connected at once. */
	p->state = PROBE_SENDING;
	probe_send(p);
}

/* tcp: writable without an error is connected; SO_ERROR only to say why not. */
static void probe_connected(struct probe *p, uint32_t events)
{
	int err = 0;
	socklen_t elen = sizeof(err);

	if ((events & (EPOLLERR | EPOLLHUP)) &&
	    getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		err = errno;
	if (err)
		probe_fail_errno(p, err);
	else
		probe_finish(p, true, "");
}

/* Edge-triggered (PROBE_EVENTS): an event can be stale or meant for a later state, and each
 * comes once, so every state that the probe passes through here takes what it needs. */
static void probe_io(struct probe *p, uint32_t events)
{
	bool out = events & (EPOLLOUT | EPOLLERR | EPOLLHUP);
	bool in = events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP);

	if (p->state == PROBE_CONNECTING && out)
		probe_connected(p, events);
	if (p->state == PROBE_SENDING && out)
		probe_send(p);
	if (p->state == PROBE_READING && in)
		probe_read(p);
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
	    atomic_load_explicit(&b->hc_verdict, memory_order_relaxed) == BACKEND_DOWN)
		return;
	snprintf(reason, sizeof(reason), "%d consecutive failed connects from the data plane",
		 streak);
	mark_down(p, reason, NULL);
	p->passes = 0;
	/* A pool without active checks probes with a plain connect until rise passes. */
	if (!hc_probes(p->chk) && !p->recovering) {
		p->recovering = true;
		probe_plan(p, now);
	}
}

static void tick(struct timer *t, uint64_t now)
{
	struct prober *pr = container_of(t, struct prober, tick);

	for (size_t i = 0; i < pr->nprobes; i++) {
		if (pr->probes[i].agent)
			continue;
		passive_check(&pr->probes[i], now);
		if (backend_ramp_step(pr->probes[i].b, now)) /* slow start */
			pr->dirty[pr->probes[i].pool_idx] = true;
	}
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
	/* A restart must not forget a backend that passive checks took down in a pool without
	 * active checks: nothing else would ever bring it back. */
	p->recovering = !hc_probes(chk) &&
			atomic_load_explicit(&b->hc_verdict, memory_order_relaxed) == BACKEND_DOWN;
	p->phase = probe_phase(b, p->h->interval_ms);
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
		n += pr->pools[i]->nbackends * (pr->pools[i]->agent.interval_ms ? 2 : 1);
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
			if (!pool->agent.interval_ms)
				continue;
			struct probe *a = &pr->probes[pr->nprobes++];
			probe_init(pr, a, pool, i, pool->backends[j], &hc_check_agent);
			a->agent = true;
			a->recovering = false;
			a->h = &pool->agent;
			a->phase = probe_phase(pool->backends[j], a->h->interval_ms);
		}
	}
	return 0;
}

/* Each backend's first check in its next slot (probe_slot). */
static void probes_schedule(struct prober *pr, uint64_t now)
{
	for (size_t i = 0; i < pr->nprobes; i++) {
		struct probe *p = &pr->probes[i];

		/* Not the slot a previous prober already checked (a restart within the same
		 * millisecond as a check would otherwise check twice). */
		uint64_t done =
		    p->agent ? 0 : atomic_load_explicit(&p->b->hc_slot_ms, memory_order_relaxed);
		if (probe_wanted(p))
			probe_plan(p, now > done ? now : done + 1);
	}
	timer_init(&pr->tick, tick);
	timer_arm(&pr->timers, &pr->tick, now + PROBER_TICK_MS);
}

static void prober_free(struct prober *pr)
{
	if (!pr)
		return;
	for (size_t i = 0; i < pr->nprobes; i++) {
		probe_hangup(&pr->probes[i], false);
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

int prober_start(struct pool **pools, size_t npools, struct qsbr *q,
		 const struct prober_hooks *hooks, struct prober **out)
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
	if (hooks)
		pr->hooks = *hooks;
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
	*out = pr;
	return 0;
fail:
	prober_free(pr);
	return rc;
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
