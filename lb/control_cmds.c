/* Control commands: one NDJSON request in, one response out. Admin changes store the
 * backend's atomics and republish the pool snapshot, so new connections see them at once.
 * The commands read the running state; they change it only through reload_start, the
 * graveyard (`remove`, lb/state.h) and the readiness flags. */
#include "lb/control_cmds.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "algorithms/algorithm.h"
#include "health/prober.h"
#include "lb/config.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/metrics.h"
#include "lb/pool.h"
#include "lb/qsbr.h"
#include "lb/ready.h"
#include "lb/offload.h"
#include "lb/reload.h"
#include "lb/resolve.h"
#include "lb/state.h"
#include "lb/timer.h"
#include "lb/engine.h"

/* Room for every validation error of a rejected reload. */
#define ERR_MAX RELOAD_ERR_MAX

struct req {
	struct lb_state *st;
	json_t *obj;
	struct ctl_waiter *w; /* the client, for a command that answers later */
	bool pending;	      /* it will: no answer now */
	char err[ERR_MAX];
};

/* A command that answers later: whom it answers, if the client is still there. */
struct ctl_pending {
	struct ctl_waiter *to; /* NULL once the client has gone */
};

static char *respond(json_t *data, const char *err, size_t *outlen);

typedef json_t *(*cmd_fn)(struct req *r);

static json_t *fail(struct req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *fail(struct req *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	return NULL;
}

/* ---- answering later ---- */

/* The command of r answers later, through p. */
static void pending_attach(struct req *r, struct ctl_pending *p)
{
	p->to = r->w;
	r->w->pending = p;
	r->pending = true;
}

/* Answer p's client, if it is still there (main thread). Takes data (NULL: err). */
static void pending_answer(struct ctl_pending *p, json_t *data, const char *err)
{
	struct ctl_waiter *w = p->to;
	size_t len = 0;

	if (!w) {
		json_decref(data);
		return;
	}
	char *line = respond(data, err, &len);
	w->pending = NULL;
	p->to = NULL;
	w->answer(w, line, len);
}

void ctl_cmds_abandon(struct ctl_waiter *w)
{
	if (!w->pending)
		return;
	w->pending->to = NULL;
	w->pending = NULL;
}

/* ---- request fields ---- */

/* 1 found, 0 absent (not required), -1 error set. */
static int field_str(struct req *r, const char *key, bool required, const char **out)
{
	json_t *v = json_object_get(r->obj, key);

	if (!v || json_is_null(v)) {
		if (required)
			fail(r, "missing \"%s\"", key);
		return required ? -1 : 0;
	}
	if (!json_is_string(v)) {
		fail(r, "\"%s\" must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 1;
}

static int field_int(struct req *r, const char *key, bool required, long long min, long long max,
		     int *out)
{
	json_t *v = json_object_get(r->obj, key);

	if (!v || json_is_null(v)) {
		if (required)
			fail(r, "missing \"%s\"", key);
		return required ? -1 : 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		fail(r, "\"%s\" must be an integer from %lld to %lld", key, min, max);
		return -1;
	}
	*out = (int)json_integer_value(v);
	return 1;
}

static int field_bool(struct req *r, const char *key, bool *out)
{
	json_t *v = json_object_get(r->obj, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v)) {
		fail(r, "\"%s\" must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 1;
}

static struct pool *find_pool(struct req *r, const char *name)
{
	struct pool *p = pool_find(r->st->pools, r->st->npools, name);

	if (!p)
		fail(r, "no such pool: %s", name);
	return p;
}

/* "pool" and "backend", or "backend" as "POOL/BACKEND". */
static struct backend *target(struct req *r)
{
	const char *pool = NULL, *be = NULL;
	char buf[2 * CFG_NAME_MAX + 2];
	struct pool *p;
	struct backend *b;

	if (field_str(r, "pool", false, &pool) < 0 || field_str(r, "backend", true, &be) < 0)
		return NULL;
	if (!pool) {
		const char *slash = strchr(be, '/');
		if (!slash || (size_t)(slash - be) >= sizeof(buf)) {
			fail(r, "missing \"pool\" (or give \"backend\" as POOL/BACKEND)");
			return NULL;
		}
		memcpy(buf, be, (size_t)(slash - be));
		buf[slash - be] = '\0';
		pool = buf;
		be = slash + 1;
	}
	p = find_pool(r, pool);
	if (!p)
		return NULL;
	b = pool_find_backend(p, be);
	if (!b)
		fail(r, "no such backend: %s/%s", pool, be);
	return b;
}

/* ---- views ---- */

static const char *health_name(int h)
{
	return h == BACKEND_UP ? "up" : h == BACKEND_DOWN ? "down" : "unknown";
}

static const char *admin_name(int a)
{
	return a == BACKEND_DISABLED ? "disabled" : a == BACKEND_DRAINING ? "draining" : "enabled";
}

/* A pool's queue (pool "queue"), or NULL when it has none and nobody waits. */
static json_t *queue_json(const struct pool *p)
{
	const struct pool_queue *q = &p->queue;
	int len = atomic_load(&q->len), max = atomic_load(&q->max);
	uint64_t served = atomic_load(&q->wait_count);

	if (max <= 0 && len <= 0)
		return NULL;
	uint64_t p99 = queue_wait_p99_ms(q);
	return json_pack("{s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:o*}", "pool",
			 p->name, "length", len, "max", max, "timeout_ms",
			 (json_int_t)atomic_load(&q->timeout_ms), "queued",
			 (json_int_t)atomic_load(&q->queued_total), "served", (json_int_t)served,
			 "full", (json_int_t)atomic_load(&q->full_total), "timeouts",
			 (json_int_t)atomic_load(&q->timeout_total), "wait_avg_ms",
			 served ? (double)atomic_load(&q->wait_sum_ms) / (double)served : 0.0,
			 "wait_last_ms", (json_int_t)atomic_load(&q->wait_last_ms), "wait_p99_ms",
			 p99 == UINT64_MAX ? NULL : json_integer((json_int_t)p99));
}

static json_t *backend_json(struct backend *b)
{
	struct prober_check chk;
	static const char *const results[] = {"none", "pass", "fail"};

	int forced = atomic_load(&b->health_force);
	char fp[32];

	prober_last_check(b, &chk);
	json_t *o = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:i, s:I, s:I, s:I, s:I, s:s, s:f, s:s, "
	    "s:s, s:s, s:s*}",
	    "pool", b->pool->name, "name", b->name, "address", b->address, "state",
	    health_name(atomic_load(&b->health)), "admin", admin_name(atomic_load(&b->admin)),
	    "weight", atomic_load(&b->weight), "max_conns", atomic_load(&b->max_conns), "backup",
	    b->backup, "active", atomic_load(&b->active), "total",
	    (json_int_t)atomic_load(&b->total), "bytes_in", (json_int_t)atomic_load(&b->bytes_in),
	    "bytes_out", (json_int_t)atomic_load(&b->bytes_out), "failures",
	    (json_int_t)atomic_load(&b->connect_failures), "check",
	    results[chk.last >= 0 && chk.last <= 2 ? chk.last : 0], "check_latency_ms",
	    chk.latency_us / 1000.0, "check_reason", chk.reason, "hash_key", b->hash_key,
	    "health_source", forced ? "forced" : "prober", "fingerprint",
	    pool_fingerprint(b->pool, fp, sizeof(fp)) ? fp : NULL);
	/* Where its checks go, when not to its own port (check_port, else health.port). */
	int port = atomic_load(&b->check_port);
	if (!port)
		port = b->pool->health.port;
	if (o && port)
		json_object_set_new(o, "check_port", json_integer(port));
	/* The agent check: what it said last and what that does. */
	if (o && b->pool->agent.interval_ms) {
		char last[sizeof(b->agent_last)];
		size_t i = 0;
		for (; i + 1 < sizeof(last); i++)
			if (!(last[i] =
				  atomic_load_explicit(&b->agent_last[i], memory_order_relaxed)))
				break;
		last[i] = '\0';
		json_object_set_new(o, "agent",
				    json_pack("{s:s, s:s, s:b, s:i}", "last", last, "admin",
					      admin_name(atomic_load(&b->agent_admin)), "down",
					      atomic_load(&b->agent_down), "weight_pct",
					      atomic_load(&b->agent_pct)));
	}
	/* Slow start: how far the ramp is, in percent of the weight. */
	int ramp = atomic_load(&b->ramp_weight), w = atomic_load(&b->weight);
	if (o && ramp > 0 && w > 0)
		json_object_set_new(o, "slow_start_pct",
				    json_integer(ramp * 100 / (w * BACKEND_WEIGHT_SCALE)));
	json_t *q = queue_json(b->pool);
	if (o && q)
		json_object_set_new(o, "queue", q);
	else
		json_decref(q);
	return o;
}

static json_t *listener_json(struct listener *l)
{
	json_t *rej = json_object();

	for (int i = 0; i < LISTENER_REJECT_COUNT; i++)
		json_object_set_new(rej, listener_reject_name(i),
				    json_integer((json_int_t)atomic_load(&l->rejected[i])));
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:o}", "name", l->cfg->name, "protocol",
			 l->cfg->protocol == CFG_PROTO_UDP ? "udp" : "tcp", "listen",
			 l->cfg->listen, "pool", l->cfg->pool, "active", atomic_load(&l->active),
			 "accepted", (json_int_t)atomic_load(&l->accepted), "rejected", rej);
}

/* Each pool's table fingerprint (null for algorithms without one), for fleet comparison. */
static json_t *tables_json(const struct lb_state *st)
{
	json_t *arr = json_array();
	char fp[32];

	for (size_t i = 0; i < st->npools; i++) {
		struct pool *p = st->pools[i];
		bool has = pool_fingerprint(p, fp, sizeof(fp));
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s*}", "pool", p->name,
						     "algorithm", p->algorithm->name, "fingerprint",
						     has ? fp : NULL));
	}
	return arr;
}

static json_t *status_data(const struct lb_state *st)
{
	json_t *ls = json_array(), *queues = json_array();
	json_int_t active = 0, accepted = 0, rejected = 0, in = 0, out = 0, nb = 0;

	for (size_t i = 0; i < st->nlisteners; i++) {
		struct listener *l = st->listeners[i];
		json_array_append_new(ls, listener_json(l));
		active += atomic_load(&l->active);
		accepted += (json_int_t)atomic_load(&l->accepted);
		for (int k = 0; k < LISTENER_REJECT_COUNT; k++)
			rejected += (json_int_t)atomic_load(&l->rejected[k]);
	}
	for (size_t i = 0; i < st->npools; i++) {
		struct pool *p = st->pools[i];
		json_t *q = queue_json(p);
		if (q)
			json_array_append_new(queues, q);
		nb += (json_int_t)p->nbackends;
		for (size_t j = 0; j < p->nbackends; j++) {
			in += (json_int_t)atomic_load(&p->backends[j]->bytes_in);
			out += (json_int_t)atomic_load(&p->backends[j]->bytes_out);
		}
	}
	char why[READY_REASON_MAX];
	bool ready = ready_check(st, why, sizeof(why));
	return json_pack("{s:s, s:s, s:i, s:i, s:I, s:s, s:I, s:I, s:o, s:{s:I, s:I, s:I, "
			 "s:I, s:I}, s:o, s:o, s:b, s:s}",
			 "version", st->version, "engine", st->engine->name, "workers",
			 st->nworkers, "pid", (int)getpid(), "uptime_s",
			 (json_int_t)((timer_now_ms() - st->started_ms) / 1000), "config",
			 st->cfg->path ? st->cfg->path : "", "pools", (json_int_t)st->npools,
			 "backends", nb, "listeners", ls, "totals", "active", active, "connections",
			 accepted, "rejected", rejected, "bytes_in", in, "bytes_out", out, "tables",
			 tables_json(st), "queues", queues, "ready", ready, "ready_reason", why);
}

static json_t *cmd_status(struct req *r)
{
	return status_data(r->st);
}

/* The backends of pool (every pool if NULL), as `backends` answers. */
static json_t *backends_data(const struct lb_state *st, const char *pool)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < st->npools; i++) {
		struct pool *p = st->pools[i];
		if (pool && strcmp(p->name, pool) != 0)
			continue;
		for (size_t j = 0; j < p->nbackends; j++)
			json_array_append_new(arr, backend_json(p->backends[j]));
	}
	return arr;
}

static json_t *cmd_backends(struct req *r)
{
	const char *pool = NULL;

	if (field_str(r, "pool", false, &pool) < 0)
		return NULL;
	if (pool && !find_pool(r, pool))
		return NULL;
	return backends_data(r->st, pool);
}

char *ctl_status_json(const struct lb_state *st, size_t *len)
{
	json_t *o =
	    json_pack("{s:o, s:o}", "status", status_data(st), "backends", backends_data(st, NULL));
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (s)
		*len = strlen(s);
	return s;
}

/* ---- admin ---- */

static json_t *republish(struct req *r, struct backend *b)
{
	if (pool_rebuild(b->pool, &r->st->qsbr) < 0)
		return fail(r, "out of memory publishing the change (applied to the backend)");
	return backend_json(b);
}

static json_t *set_admin(struct req *r, int admin)
{
	struct backend *b = target(r);

	if (!b)
		return NULL;
	atomic_store(&b->admin, admin);
	log_info("control: backend %s/%s is now %s", b->pool->name, b->name, admin_name(admin));
	return republish(r, b);
}

static json_t *cmd_enable(struct req *r)
{
	return set_admin(r, BACKEND_ENABLED);
}

static json_t *cmd_disable(struct req *r)
{
	return set_admin(r, BACKEND_DISABLED);
}

static json_t *cmd_drain(struct req *r)
{
	return set_admin(r, BACKEND_DRAINING);
}

static json_t *cmd_kill(struct req *r)
{
	struct backend *b = target(r);

	if (!b)
		return NULL;
	int open = atomic_load(&b->active);
	state_kill_backend(r->st, b);
	log_info("control: closing %d connections of backend %s/%s", open, b->pool->name, b->name);
	return json_pack("{s:s, s:s, s:i}", "pool", b->pool->name, "backend", b->name, "killed",
			 open);
}

static json_t *cmd_weight(struct req *r)
{
	struct backend *b = target(r);
	int w;

	if (!b || field_int(r, "weight", true, 0, CFG_MAX_WEIGHT, &w) < 0)
		return NULL;
	atomic_store(&b->weight, w);
	log_info("control: backend %s/%s weight %d", b->pool->name, b->name, w);
	return republish(r, b);
}

/* The prober checks exactly the backends in the pools: tell it after add and remove. */
static void prober_follow(struct req *r)
{
	state_prober_sync(r->st);
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CFG_NAME_MAX)
		return false;
	for (; *s; s++)
		if (*s == '/' || (unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* add's fields into cb and *pname (strings point into r->obj). 0, or -1 with r->err. */
static int add_fields(struct req *r, struct cfg_backend *cb, const char **pname)
{
	const char *name, *address;

	if (field_str(r, "pool", true, pname) < 0 || field_str(r, "name", true, &name) < 0 ||
	    field_str(r, "address", true, &address) < 0 ||
	    field_int(r, "weight", false, 0, CFG_MAX_WEIGHT, &cb->weight) < 0 ||
	    field_int(r, "max_conns", false, 0, CFG_ADD_MAX_CONNS, &cb->max_conns) < 0 ||
	    field_bool(r, "backup", &cb->backup) < 0 ||
	    field_str(r, "hash_key", false, (const char **)&cb->hash_key) < 0)
		return -1;
	if (cb->hash_key && (!*cb->hash_key || strlen(cb->hash_key) > CFG_HASH_KEY_MAX)) {
		fail(r, "\"hash_key\" must be a non-empty string of at most %d bytes",
		     CFG_HASH_KEY_MAX);
		return -1;
	}
	cb->name = (char *)name; /* pool_add_backend copies them */
	cb->address = (char *)address;
	if (!name_ok(cb->name)) {
		fail(r, "bad backend name \"%s\": 1-%d characters, no '/' or control characters",
		     cb->name, CFG_NAME_MAX);
		return -1;
	}
	return 0;
}

/* Add cb (its address known) to pool pname, found again: it may have gone meanwhile. */
static json_t *add_apply(struct req *r, struct cfg_backend *cb, const char *pname)
{
	struct pool *p = find_pool(r, pname);
	struct backend *b;

	if (!p)
		return NULL;
	int err = pool_add_backend(p, cb, &r->st->qsbr, &b);
	if (err == -EEXIST)
		return fail(r, "backend %s/%s already exists", pname, cb->name);
	if (err < 0)
		return fail(r, "cannot add backend: %s", strerror(-err));
	log_info("control: added backend %s/%s (%s)", p->name, b->name, b->address);
	prober_follow(r);
	return backend_json(b);
}

/* `add` with a host name: looked up off the main loop, then added there. */
struct pending_add {
	struct offload_job job;
	struct ctl_pending p;
	struct lb_state *st;
	json_t *obj; /* the request (one reference), read again once the name is known */
	struct resolve_name rn;
};

static void add_lookup(struct offload_job *j)
{
	struct pending_add *pa = container_of(j, struct pending_add, job);

	resolve_names(&pa->rn, 1, RESOLVE_TIMEOUT_MS);
}

static void add_looked_up(struct offload_job *j)
{
	struct pending_add *pa = container_of(j, struct pending_add, job);
	struct req r = {.st = pa->st, .obj = pa->obj};
	struct cfg_backend cb = {.weight = 1};
	const struct resolve_name *rn = &pa->rn;
	const char *pname;
	json_t *data = NULL;

	if (rn->err == -ETIMEDOUT)
		fail(&r, "bad address \"%s\": cannot resolve \"%s\" within %d s", rn->address,
		     rn->host, RESOLVE_TIMEOUT_MS / 1000);
	else if (rn->err)
		fail(&r, "bad address \"%s\": %s", rn->address, rn->why);
	else if (add_fields(&r, &cb, &pname) == 0) {
		cb.addr = rn->addr;
		data = add_apply(&r, &cb, pname);
	}
	pending_answer(&pa->p, data, r.err);
	json_decref(pa->obj);
	free(pa);
}

static void add_drop(struct offload_job *j)
{
	struct pending_add *pa = container_of(j, struct pending_add, job);

	json_decref(pa->obj);
	free(pa);
}

static json_t *add_later(struct req *r, const char *address)
{
	struct pending_add *pa = calloc(1, sizeof(*pa));

	if (!pa)
		return fail(r, "out of memory");
	pa->job.work = add_lookup;
	pa->job.done = add_looked_up;
	pa->job.drop = add_drop;
	pa->st = r->st;
	pa->obj = json_incref(r->obj);
	pa->rn.address = address; /* inside obj */
	int rc = offload_start(r->st->offload, &pa->job);
	if (rc < 0) {
		json_decref(pa->obj);
		free(pa);
		return fail(r, "cannot look up \"%s\": %s", address, strerror(-rc));
	}
	pending_attach(r, &pa->p);
	return NULL;
}

static json_t *cmd_add(struct req *r)
{
	struct cfg_backend cb = {.weight = 1};
	const char *pname, *why = "";
	char host[ADDR_HOST_MAX];
	uint16_t port;

	if (add_fields(r, &cb, &pname) < 0 || !find_pool(r, pname))
		return NULL;
	int rc = addr_parse_host(cb.address, &cb.addr, host, &port, &why);
	if (rc < 0)
		return fail(r, "bad address \"%s\": %s", cb.address, why);
	if (rc == 1) /* a name: the main loop must not wait for DNS */
		return add_later(r, cb.address);
	return add_apply(r, &cb, pname);
}

static json_t *cmd_remove(struct req *r)
{
	struct backend *b = target(r);
	bool force = false;

	if (!b || field_bool(r, "force", &force) < 0)
		return NULL;
	int open = atomic_load(&b->active);
	if (open > 0 && !force)
		return fail(r,
			    "backend %s/%s has %d open connections; drain it first or use "
			    "--force to close them",
			    b->pool->name, b->name, open);
	json_t *data = json_pack("{s:s, s:s, s:b, s:i}", "pool", b->pool->name, "backend", b->name,
				 "removed", 1, "killed", force ? open : 0);
	int rc = state_remove_backend(r->st, b, force); /* freed by a later graveyard tick */
	if (rc < 0) {
		json_decref(data);
		return fail(r, "cannot remove backend: %s", strerror(-rc));
	}
	log_info("control: removed backend %s/%s%s", b->pool->name, b->name,
		 force ? " (closing its connections)" : "");
	return data;
}

static json_t *cmd_algorithm(struct req *r)
{
	const char *pname, *name;
	const struct lb_algorithm *alg;
	struct pool *p;

	if (field_str(r, "pool", true, &pname) < 0 || field_str(r, "algorithm", true, &name) < 0)
		return NULL;
	p = find_pool(r, pname);
	if (!p)
		return NULL;
	alg = algorithm_find(name);
	if (!alg)
		return fail(r, "unknown algorithm: %s (known: %s)", name, algorithm_names());
	const char *prev = p->algorithm->name;
	if (pool_set_algorithm(p, alg, &r->st->qsbr) < 0)
		return fail(r, "out of memory switching the algorithm");
	log_info("control: pool %s algorithm %s (was %s)", p->name, alg->name, prev);
	return json_pack("{s:s, s:s, s:s}", "pool", p->name, "algorithm", alg->name, "previous",
			 prev);
}

/* ---- fleet: readiness and shared verdicts ---- */

static json_t *ready_json(struct req *r)
{
	char why[READY_REASON_MAX];
	bool ready = ready_check(r->st, why, sizeof(why));

	return json_pack("{s:b, s:s, s:b}", "ready", ready, "reason", why, "withdrawn",
			 r->st->ready.withdrawn);
}

static json_t *cmd_ready(struct req *r)
{
	return ready_json(r);
}

static json_t *set_withdrawn(struct req *r, bool withdrawn)
{
	struct readiness *rd = &r->st->ready;

	if (!withdrawn && rd->stopping)
		return fail(r, "lb is stopping (SIGTERM): it cannot rejoin");
	if (ready_set_withdrawn(rd, withdrawn))
		log_info("control: %s", withdrawn ? "withdrawn: /ready answers 503 until rejoin; "
						    "connections are still accepted"
						  : "rejoined: /ready follows the pools again");
	return ready_json(r);
}

static json_t *cmd_withdraw(struct req *r)
{
	return set_withdrawn(r, true);
}

static json_t *cmd_rejoin(struct req *r)
{
	return set_withdrawn(r, false);
}

/* An external verdict (a peer, an orchestrator) overrides the prober until "auto". */
static json_t *cmd_health(struct req *r)
{
	static const char *const names[] = {"auto", "up", "down", NULL};
	static const int forced[] = {0, BACKEND_UP, BACKEND_DOWN};
	struct backend *b = target(r);
	const char *state;
	size_t i;

	if (!b || field_str(r, "state", true, &state) < 0)
		return NULL;
	for (i = 0; names[i] && strcmp(names[i], state) != 0; i++)
		;
	if (!names[i])
		return fail(r, "\"state\" must be up, down or auto, not \"%.40s\"", state);
	int was = atomic_load(&b->health);
	backend_health_force(b, forced[i]);
	log_info("control: backend %s/%s health %s", b->pool->name, b->name,
		 forced[i] ? (forced[i] == BACKEND_UP ? "forced up" : "forced down")
			   : "back to the prober");
	if (was != BACKEND_DOWN && atomic_load(&b->health) == BACKEND_DOWN)
		state_backend_down(r->st, b);
	return republish(r, b);
}

static json_t *cmd_metrics(struct req *r)
{
	size_t len;
	char *text = metrics_render(r->st, &len);

	if (!text)
		return fail(r, "out of memory");
	json_t *s = json_stringn(text, len);
	free(text);
	return s ? s : fail(r, "metrics text is not valid UTF-8");
}

/* A reload answers once the file is loaded (off the main loop) and swapped in. */
struct pending_reload {
	struct reload_job rj;
	struct ctl_pending p;
};

static void reload_answered(struct reload_job *rj, int rc, json_t *changes, const char *err)
{
	struct pending_reload *pr = container_of(rj, struct pending_reload, rj);

	pending_answer(&pr->p, rc == 0 ? changes : NULL, err);
	free(pr);
}

static void reload_freed(struct reload_job *rj)
{
	free(container_of(rj, struct pending_reload, rj));
}

static json_t *cmd_reload(struct req *r)
{
	struct pending_reload *pr = calloc(1, sizeof(*pr));

	if (!pr)
		return fail(r, "out of memory");
	pr->rj.done = reload_answered;
	pr->rj.free = reload_freed;
	int rc = reload_start(r->st, &pr->rj);
	if (rc < 0) {
		free(pr);
		if (rc == -EBUSY)
			return fail(r, "a reload is already running; try again once it has "
				       "answered");
		return fail(r, "cannot start the reload: %s", strerror(-rc));
	}
	log_info("control: reloading %s", r->st->config_path);
	pending_attach(r, &pr->p);
	return NULL;
}

static const struct {
	const char *name;
	cmd_fn fn;
} commands[] = {
    {"status", cmd_status},	  {"backends", cmd_backends}, {"enable", cmd_enable},
    {"disable", cmd_disable},	  {"drain", cmd_drain},	      {"kill", cmd_kill},
    {"weight", cmd_weight},	  {"add", cmd_add},	      {"remove", cmd_remove},
    {"algorithm", cmd_algorithm}, {"metrics", cmd_metrics},   {"reload", cmd_reload},
    {"ready", cmd_ready},	  {"withdraw", cmd_withdraw}, {"rejoin", cmd_rejoin},
    {"health", cmd_health},
};

/* ---- the request/response cycle ---- */

static char *dump_line(json_t *resp, size_t *outlen)
{
	char *s = json_dumps(resp, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(resp);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*outlen = n + 1;
	return line;
}

char *ctl_cmds_error(const char *msg, size_t *outlen)
{
	return dump_line(json_pack("{s:b, s:s}", "ok", 0, "error", msg), outlen);
}

static json_t *run(struct req *r, const char *line, size_t len)
{
	json_error_t jerr;
	const char *cmd;

	r->obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!r->obj)
		return fail(r, "bad JSON at column %d: %s", jerr.column, jerr.text);
	if (!json_is_object(r->obj))
		return fail(r, "a request must be a JSON object like {\"cmd\":\"status\"}");
	if (field_str(r, "cmd", true, &cmd) < 0)
		return NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, cmd) == 0)
			return commands[i].fn(r);
	return fail(r, "unknown command: %.100s", cmd);
}

/* The response line for data (taken), or for err when data is NULL. */
static char *respond(json_t *data, const char *err, size_t *outlen)
{
	json_t *resp;

	if (data)
		resp = json_pack("{s:b, s:o}", "ok", 1, "data", data);
	else
		resp = json_pack("{s:b, s:s}", "ok", 0, "error",
				 err && err[0] ? err : "out of memory");
	if (!resp)
		return ctl_cmds_error("cannot encode the response", outlen);
	return dump_line(resp, outlen);
}

char *ctl_cmds_execute(struct lb_state *st, const char *line, size_t len, size_t *outlen,
		       struct ctl_waiter *w)
{
	struct req r = {.st = st, .w = w};
	json_t *data = run(&r, line, len);
	char *resp = NULL;

	if (!r.pending)
		resp = respond(data, r.err, outlen);
	else
		*outlen = 0;
	json_decref(r.obj);
	return resp;
}
