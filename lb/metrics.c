/* Prometheus metrics: render the shared atomics as text exposition format 0.0.4, and serve it
 * over a minimal HTTP/1.1 listener on the main loop (one request per connection, then close).
 * Read-only over the data plane's state: nothing here is on a worker's path. */
#include "lb/control_cmds.h"
#include "lb/metrics.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "algorithms/algorithm.h"
#include "health/prober.h"
#include "lb/list.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/engine.h"
#include "lb/mainloop.h"
#include "lb/pool.h"
#include "lb/ready.h"
#include "lb/state.h"
#include "lb/timer.h"

/* The status page (lb/status.html, embedded by CMake into status_page.c). */
extern const unsigned char status_page_html[];
extern const unsigned long status_page_len;

/* Longest request head we read; a scraper's GET is a few hundred bytes. */
#define HTTP_REQ_MAX 8192
/* Concurrent clients; a new one beyond this closes the oldest (Prometheus scrapes one at a
 * time, so the oldest is the one that lingers). */
#define HTTP_MAX_CLIENTS 64
/* A client must finish its request and read the answer within this long. */
#define HTTP_CLIENT_TIMEOUT_MS 10000
/* Label value buffer; names are at most a few hundred bytes in practice. */
#define LABEL_MAX 1024

size_t metrics_escape(const char *s, char *buf, size_t cap)
{
	size_t n = 0;

	for (; *s; s++) {
		const char *rep = NULL;
		char one[2] = {*s, 0};

		if (*s == '\\')
			rep = "\\\\";
		else if (*s == '"')
			rep = "\\\"";
		else if (*s == '\n')
			rep = "\\n";
		else
			rep = one;
		for (; *rep; rep++, n++)
			if (n + 1 < cap)
				buf[n] = *rep;
	}
	if (cap)
		buf[n < cap ? n : cap - 1] = '\0';
	return n;
}

static const char *esc(const char *s, char *buf)
{
	metrics_escape(s, buf, LABEL_MAX);
	return buf;
}

static void header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One line per backend of every pool: value(b) formatted by fmt. */
enum backend_metric {
	BM_UP,
	BM_ACTIVE,
	BM_TOTAL,
	BM_BYTES,
	BM_FAILURES,
	BM_WEIGHT,
	BM_ADMIN,
	BM_CHECK
};

static void backend_line(FILE *f, const char *name, struct backend *b, enum backend_metric m)
{
	char pool[LABEL_MAX], be[LABEL_MAX];
	const char *labels_fmt = "%s{pool=\"%s\",backend=\"%s\"";

	fprintf(f, labels_fmt, name, esc(b->pool->name, pool), esc(b->name, be));
	switch (m) {
	case BM_UP:
		/* Unknown (not checked yet) counts as up: the backend is usable. */
		fprintf(f, "} %d\n", atomic_load(&b->health) != BACKEND_DOWN);
		break;
	case BM_ACTIVE:
		fprintf(f, "} %d\n", atomic_load(&b->active));
		break;
	case BM_TOTAL:
		fprintf(f, "} %llu\n", (unsigned long long)atomic_load(&b->total));
		break;
	case BM_BYTES:
		fprintf(f, ",direction=\"in\"} %llu\n",
			(unsigned long long)atomic_load(&b->bytes_in));
		fprintf(f, labels_fmt, name, pool, be);
		fprintf(f, ",direction=\"out\"} %llu\n",
			(unsigned long long)atomic_load(&b->bytes_out));
		break;
	case BM_FAILURES:
		fprintf(f, "} %llu\n", (unsigned long long)atomic_load(&b->connect_failures));
		break;
	case BM_WEIGHT:
		fprintf(f, "} %d\n", atomic_load(&b->weight));
		break;
	case BM_ADMIN:
		fprintf(f, ",state=\"enabled\"} %d\n", atomic_load(&b->admin) == BACKEND_ENABLED);
		fprintf(f, labels_fmt, name, pool, be);
		fprintf(f, ",state=\"disabled\"} %d\n", atomic_load(&b->admin) == BACKEND_DISABLED);
		fprintf(f, labels_fmt, name, pool, be);
		fprintf(f, ",state=\"draining\"} %d\n", atomic_load(&b->admin) == BACKEND_DRAINING);
		break;
	case BM_CHECK: {
		struct prober_check chk;
		prober_last_check(b, &chk);
		fprintf(f, "} %.6f\n", chk.latency_us / 1e6);
		break;
	}
	}
}

static void backend_family(FILE *f, const struct lb_state *st, const char *name, const char *type,
			   const char *help, enum backend_metric m)
{
	header(f, name, type, help);
	for (size_t i = 0; i < st->npools; i++) {
		struct pool *p = st->pools[i];
		for (size_t j = 0; j < p->nbackends; j++) {
			struct prober_check chk;
			if (m == BM_CHECK) {
				prober_last_check(p->backends[j], &chk);
				if (chk.last == PROBER_LAST_NONE)
					continue; /* never checked: no duration to report */
			}
			backend_line(f, name, p->backends[j], m);
		}
	}
}

static void listener_metrics(FILE *f, const struct lb_state *st)
{
	char name[LABEL_MAX];

	header(f, "lb_listener_connections_total", "counter",
	       "Connections accepted (tcp) or new sessions asked for (udp: datagrams from a "
	       "client without a session), before ACL and limits.");
	for (size_t i = 0; i < st->nlisteners; i++) {
		struct listener *l = st->listeners[i];
		fprintf(f, "lb_listener_connections_total{listener=\"%s\"} %llu\n",
			esc(l->cfg->name, name), (unsigned long long)atomic_load(&l->accepted));
	}
	header(f, "lb_listener_active_connections", "gauge",
	       "Connections (tcp) or sessions (udp) open on the listener now.");
	for (size_t i = 0; i < st->nlisteners; i++) {
		struct listener *l = st->listeners[i];
		fprintf(f, "lb_listener_active_connections{listener=\"%s\"} %d\n",
			esc(l->cfg->name, name), atomic_load(&l->active));
	}
	header(f, "lb_listener_rejected_total", "counter",
	       "Connections closed (tcp) or datagrams dropped (udp) without reaching a backend, "
	       "by reason.");
	for (size_t i = 0; i < st->nlisteners; i++) {
		struct listener *l = st->listeners[i];
		for (int r = 0; r < LISTENER_REJECT_COUNT; r++)
			fprintf(f,
				"lb_listener_rejected_total{listener=\"%s\",reason=\"%s\"} %llu\n",
				esc(l->cfg->name, name), listener_reject_name(r),
				(unsigned long long)atomic_load(&l->rejected[r]));
	}
	header(f, "lb_udp_sessions_active", "gauge", "UDP sessions open on the listener now.");
	for (size_t i = 0; i < st->nlisteners; i++) {
		struct listener *l = st->listeners[i];
		if (l->cfg->protocol == CFG_PROTO_UDP)
			fprintf(f, "lb_udp_sessions_active{listener=\"%s\"} %d\n",
				esc(l->cfg->name, name), atomic_load(&l->active));
	}
}

/* Accepts that failed for want of fds or memory, on the listeners and the main loop's
 * sockets. */
static void accept_error_metrics(FILE *f, const struct lb_state *st)
{
	char name[LABEL_MAX];

	header(f, "lb_listener_accept_errors_total", "counter",
	       "Accepts that failed on the listener (lb out of file descriptors or memory); "
	       "accepting pauses briefly after each.");
	for (size_t i = 0; i < st->nlisteners; i++) {
		struct listener *l = st->listeners[i];
		if (l->cfg->protocol == CFG_PROTO_TCP)
			fprintf(f, "lb_listener_accept_errors_total{listener=\"%s\"} %llu\n",
				esc(l->cfg->name, name),
				(unsigned long long)atomic_load(&l->accept_errors));
	}
	header(f, "lb_control_accept_errors_total", "counter",
	       "Accepts that failed on the control socket or the metrics listener (lb out of "
	       "file descriptors or memory); accepting pauses briefly after each.");
	fprintf(f, "lb_control_accept_errors_total{socket=\"control\"} %llu\n",
		(unsigned long long)st->control_accept.errors);
	fprintf(f, "lb_control_accept_errors_total{socket=\"metrics\"} %llu\n",
		(unsigned long long)st->metrics_accept.errors);
}

/* Pools' connection queues (pool "queue"), for pools that have one. */
static void queue_metrics(FILE *f, const struct lb_state *st)
{
	char pool[LABEL_MAX];

	header(f, "lb_pool_queue_length", "gauge",
	       "Clients waiting in the pool's queue for a backend with room (pool \"queue\").");
	for (size_t i = 0; i < st->npools; i++)
		if (atomic_load(&st->pools[i]->queue.max) > 0 ||
		    atomic_load(&st->pools[i]->queue.len))
			fprintf(f, "lb_pool_queue_length{pool=\"%s\"} %d\n",
				esc(st->pools[i]->name, pool),
				atomic_load(&st->pools[i]->queue.len));
	header(f, "lb_pool_queued_total", "counter",
	       "Clients that had to wait in the pool's queue.");
	for (size_t i = 0; i < st->npools; i++)
		if (atomic_load(&st->pools[i]->queue.max) > 0)
			fprintf(f, "lb_pool_queued_total{pool=\"%s\"} %llu\n",
				esc(st->pools[i]->name, pool),
				(unsigned long long)atomic_load(&st->pools[i]->queue.queued_total));
	header(f, "lb_pool_queue_rejected_total", "counter",
	       "Clients closed by the pool's queue: reason=\"full\" (refused, queue full) or "
	       "\"timeout\" (waited the queue timeout).");
	for (size_t i = 0; i < st->npools; i++) {
		const struct pool_queue *q = &st->pools[i]->queue;
		if (atomic_load(&q->max) <= 0)
			continue;
		esc(st->pools[i]->name, pool);
		fprintf(f, "lb_pool_queue_rejected_total{pool=\"%s\",reason=\"full\"} %llu\n", pool,
			(unsigned long long)atomic_load(&q->full_total));
		fprintf(f, "lb_pool_queue_rejected_total{pool=\"%s\",reason=\"timeout\"} %llu\n",
			pool, (unsigned long long)atomic_load(&q->timeout_total));
	}
	header(f, "lb_pool_queue_wait_seconds", "histogram",
	       "How long the clients that got a backend waited in the pool's queue.");
	for (size_t i = 0; i < st->npools; i++) {
		const struct pool_queue *q = &st->pools[i]->queue;
		uint64_t cum = 0;
		if (atomic_load(&q->max) <= 0)
			continue;
		esc(st->pools[i]->name, pool);
		for (size_t b = 0; b < QUEUE_WAIT_BUCKETS; b++) {
			cum += atomic_load(&q->wait_bucket[b]);
			fprintf(f,
				"lb_pool_queue_wait_seconds_bucket{pool=\"%s\",le=\"%g\"} %llu\n",
				pool, queue_wait_bucket_ms[b] / 1000.0, (unsigned long long)cum);
		}
		cum += atomic_load(&q->wait_bucket[QUEUE_WAIT_BUCKETS]);
		fprintf(f, "lb_pool_queue_wait_seconds_bucket{pool=\"%s\",le=\"+Inf\"} %llu\n",
			pool, (unsigned long long)cum);
		fprintf(f, "lb_pool_queue_wait_seconds_sum{pool=\"%s\"} %.3f\n", pool,
			atomic_load(&q->wait_sum_ms) / 1000.0);
		fprintf(f, "lb_pool_queue_wait_seconds_count{pool=\"%s\"} %llu\n", pool,
			(unsigned long long)cum);
	}
}

/* What a fleet compares across its instances: readiness and each table's fingerprint. */
static void fleet_metrics(FILE *f, const struct lb_state *st)
{
	char why[READY_REASON_MAX], pool[LABEL_MAX], fp[32];

	header(f, "lb_ready", "gauge",
	       "1 if GET /ready answers 200: not withdrawn or stopping, and every listener's pool "
	       "has a usable backend.");
	fprintf(f, "lb_ready %d\n", ready_check(st, why, sizeof(why)));
	header(f, "lb_pool_panic", "gauge",
	       "1 while fewer than panic_threshold percent of the pool's backends are up and lb "
	       "balances over all of them.");
	for (size_t i = 0; i < st->npools; i++)
		fprintf(f, "lb_pool_panic{pool=\"%s\"} %d\n", esc(st->pools[i]->name, pool),
			atomic_load(&st->pools[i]->panic) ? 1 : 0);
	header(f, "lb_pool_panic_total", "counter", "Times the pool entered panic mode.");
	for (size_t i = 0; i < st->npools; i++)
		fprintf(f, "lb_pool_panic_total{pool=\"%s\"} %llu\n", esc(st->pools[i]->name, pool),
			(unsigned long long)atomic_load(&st->pools[i]->panic_total));
	queue_metrics(f, st);
	header(f, "lb_pool_table_info", "gauge",
	       "Fingerprint of the pool's lookup table (ip_hash: Maglev); equal on every lb that "
	       "sends each client to the same backend.");
	for (size_t i = 0; i < st->npools; i++) {
		struct pool *p = st->pools[i];
		if (pool_fingerprint(p, fp, sizeof(fp)))
			fprintf(f,
				"lb_pool_table_info{pool=\"%s\",algorithm=\"%s\",fingerprint=\"%"
				"s\"} 1\n",
				esc(p->name, pool), p->algorithm->name, fp);
	}
}

char *metrics_render(const struct lb_state *st, size_t *len)
{
	char *buf = NULL, v[LABEL_MAX], e[LABEL_MAX];
	FILE *f = open_memstream(&buf, len);

	if (!f)
		return NULL;
	header(f, "lb_build_info", "gauge", "Version and event engine of the running lb.");
	fprintf(f, "lb_build_info{version=\"%s\",engine=\"%s\"} 1\n", esc(st->version, v),
		esc(st->engine->name, e));
	backend_family(f, st, "lb_backend_up", "gauge",
		       "1 if the backend's health is up or not yet known, 0 if down.", BM_UP);
	backend_family(f, st, "lb_backend_active_connections", "gauge",
		       "Connections open to the backend now.", BM_ACTIVE);
	backend_family(f, st, "lb_backend_connections_total", "counter",
		       "Connections sent to the backend.", BM_TOTAL);
	backend_family(f, st, "lb_backend_bytes_total", "counter",
		       "Bytes relayed: in = from the backend, out = to the backend.", BM_BYTES);
	backend_family(f, st, "lb_backend_connect_failures_total", "counter",
		       "Failed or timed-out connects to the backend.", BM_FAILURES);
	backend_family(f, st, "lb_backend_weight", "gauge", "The backend's current weight.",
		       BM_WEIGHT);
	backend_family(f, st, "lb_backend_admin_state", "gauge",
		       "1 for the backend's current admin state.", BM_ADMIN);
	backend_family(f, st, "lb_health_check_duration_seconds", "gauge",
		       "Duration of the backend's last health check.", BM_CHECK);
	listener_metrics(f, st);
	accept_error_metrics(f, st);
	fleet_metrics(f, st);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- the HTTP listener ---- */

struct mclient {
	struct mainloop_handler h;
	struct metrics_http *m;
	int fd;
	uint64_t deadline;
	char req[HTTP_REQ_MAX];
	size_t reqlen;
	char *out; /* response being written, malloc'd */
	size_t outlen, outoff;
	struct list_head link; /* in metrics_http.clients */
};

struct metrics_http {
	struct mainloop_handler h;
	int epfd, fd;
	const struct lb_state *st;
	struct accept_guard *guard; /* the state's metrics_accept: the one field written here */
	struct list_head clients;
	size_t nclients;
};

static void mclient_close(struct mclient *c)
{
	struct metrics_http *m = c->m;

	close(c->fd); /* also leaves the epoll set */
	list_del(&c->link);
	m->nclients--;
	free(c->out);
	free(c);
}

static void respond(struct mclient *c, const char *status, const char *ctype, const char *body,
		    size_t bodylen, bool head_only)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f) {
		mclient_close(c);
		return;
	}
	fprintf(f,
		"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		"Connection: close\r\n\r\n",
		status, ctype, bodylen);
	if (!head_only)
		fwrite(body, 1, bodylen, f);
	if (fclose(f) != 0) {
		free(buf);
		mclient_close(c);
		return;
	}
	c->out = buf;
	c->outlen = len;
	c->outoff = 0;
	mainloop_watch(c->m->epfd, EPOLL_CTL_MOD, c->fd, EPOLLOUT, &c->h);
}

/* 200 "ready" or 503 "not ready: REASON", for a routing watchdog or a load balancer's check. */
static void serve_ready(struct mclient *c, bool head)
{
	char why[READY_REASON_MAX], body[READY_REASON_MAX + 16];
	bool ok = ready_check(c->m->st, why, sizeof(why));
	int n = snprintf(body, sizeof(body), ok ? "ready\n" : "not ready: %s\n", why);

	respond(c, ok ? "200 OK" : "503 Service Unavailable", "text/plain; charset=utf-8", body,
		(size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1, head);
}

static void serve(struct mclient *c)
{
	static const char text[] = "text/plain; charset=utf-8";
	char method[16], target[256];
	bool head;

	if (sscanf(c->req, "%15s %255s HTTP/1.", method, target) != 2) {
		respond(c, "400 Bad Request", text, "bad request\n", 12, false);
		return;
	}
	head = strcmp(method, "HEAD") == 0;
	if (strcmp(method, "GET") != 0 && !head) {
		respond(c, "405 Method Not Allowed", text, "only GET\n", 9, false);
		return;
	}
	if (strcmp(target, "/ready") == 0) {
		serve_ready(c, head);
		return;
	}
	if (strcmp(target, "/") == 0 || strcmp(target, "/index.html") == 0) {
		respond(c, "200 OK", "text/html; charset=utf-8", (const char *)status_page_html,
			status_page_len, head);
		return;
	}
	if (strcmp(target, "/status.json") == 0) {
		size_t len;
		char *body = ctl_status_json(c->m->st, &len);
		if (!body) {
			respond(c, "500 Internal Server Error", text, "out of memory\n", 14, head);
			return;
		}
		respond(c, "200 OK", "application/json", body, len, head);
		free(body);
		return;
	}
	if (strcmp(target, "/metrics") != 0 && strncmp(target, "/metrics?", 9) != 0) {
		static const char nf[] = "not found; try /, /status.json, /metrics or /ready\n";
		respond(c, "404 Not Found", text, nf, sizeof(nf) - 1, head);
		return;
	}
	size_t len;
	char *body = metrics_render(c->m->st, &len);
	if (!body) {
		respond(c, "500 Internal Server Error", text, "out of memory\n", 14, head);
		return;
	}
	respond(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, len, head);
	free(body);
}

static void mclient_write(struct mclient *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
		if (n > 0) {
			c->outoff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		break;
	}
	mclient_close(c);
}

static void mclient_ready(struct mainloop_handler *h, uint32_t events)
{
	struct mclient *c = (struct mclient *)h;

	if (c->out) {
		mclient_write(c);
		return;
	}
	if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
		mclient_close(c);
		return;
	}
	ssize_t n = recv(c->fd, c->req + c->reqlen, sizeof(c->req) - 1 - c->reqlen, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		mclient_close(c);
		return;
	}
	c->reqlen += (size_t)n;
	c->req[c->reqlen] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
		serve(c);
	else if (c->reqlen == sizeof(c->req) - 1)
		respond(c, "431 Request Header Fields Too Large", "text/plain", "too large\n", 10,
			false);
}

static void accept_ready(struct mainloop_handler *h, uint32_t events)
{
	struct metrics_http *m = (struct metrics_http *)h;
	(void)events;

	for (;;) {
		int fd = mainloop_accept(m->epfd, m->fd, &m->h, m->guard);
		if (fd < 0)
			return;
		/* At the cap the oldest client goes: idle connections never lock scrapes out. */
		if (m->nclients >= HTTP_MAX_CLIENTS)
			mclient_close(list_entry(m->clients.prev, struct mclient, link));
		struct mclient *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->h.fn = mclient_ready;
		c->m = m;
		c->fd = fd;
		c->deadline = timer_now_ms() + HTTP_CLIENT_TIMEOUT_MS;
		if (mainloop_watch(m->epfd, EPOLL_CTL_ADD, fd, EPOLLIN, &c->h) < 0) {
			close(fd);
			free(c);
			continue;
		}
		list_add(&c->link, &m->clients);
		m->nclients++;
	}
}

/* Not listener_socket(): without SO_REUSEPORT a second lb on the same port fails to start
 * instead of silently sharing the scrapes. */
static int http_socket(const struct lb_addr *addr)
{
	int one = 1, err;
	int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) == 0 && listen(fd, 64) == 0)
		return fd;
	err = -errno;
	close(fd);
	return err;
}

int metrics_http_open(int epfd, const struct lb_addr *addr, struct lb_state *st,
		      struct metrics_http **out)
{
	struct metrics_http *m = calloc(1, sizeof(*m));
	int err;

	if (!m)
		return -ENOMEM;
	m->h.fn = accept_ready;
	m->epfd = epfd;
	list_init(&m->clients);
	m->st = st;
	m->guard = &st->metrics_accept;
	m->guard->what = "metrics listener";
	m->fd = http_socket(addr);
	if (m->fd < 0) {
		err = m->fd;
		free(m);
		return err;
	}
	if (mainloop_watch(epfd, EPOLL_CTL_ADD, m->fd, EPOLLIN, &m->h) < 0) {
		err = -errno;
		close(m->fd);
		free(m);
		return err;
	}
	*out = m;
	return 0;
}

int metrics_http_tick(struct metrics_http *m)
{
	uint64_t now = timer_now_ms(), next = UINT64_MAX;

	if (!m)
		return -1;
	struct mclient *c, *nx;
	list_for_each_entry_safe(c, nx, &m->clients, link)
	{
		if (now >= c->deadline)
			mclient_close(c);
		else if (c->deadline < next)
			next = c->deadline;
	}
	int paused = mainloop_accept_tick(m->epfd, m->fd, &m->h, m->guard);
	if (paused >= 0 && now + (uint64_t)paused < next)
		next = now + (uint64_t)paused;
	return next == UINT64_MAX ? -1 : (int)(next - now);
}

void metrics_http_close(struct metrics_http *m)
{
	if (!m)
		return;
	while (!list_empty(&m->clients))
		mclient_close(list_first_entry(&m->clients, struct mclient, link));
	close(m->fd);
	free(m);
}
