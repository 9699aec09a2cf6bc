/* Pools and backends: creation from config, the usability rules every algorithm applies, and
 * the snapshot an algorithm picks from. Workers only load the snapshot pointer and atomics;
 * the prober and the control plane rebuild and publish a new snapshot by pointer swap. */
#include "lb/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algorithms/algorithm.h"
#include "health/check_types.h"
#include "lb/hash.h"
#include "lb/log.h"
#include "lb/qsbr.h"
#include "lb/timer.h"

/* Seed that keeps the backups' table from cancelling the primaries' in the fingerprint. */
#define FINGERPRINT_SEED_BACKUPS 0x8cb92ba72f3d8dd7ull

bool backend_usable(const struct backend *b)
{
	int max;

	if (atomic_load_explicit(&b->health, memory_order_relaxed) == BACKEND_DOWN ||
	    atomic_load_explicit(&b->agent_down, memory_order_relaxed))
		return false;
	if (atomic_load_explicit(&b->admin, memory_order_relaxed) != BACKEND_ENABLED ||
	    atomic_load_explicit(&b->agent_admin, memory_order_relaxed) != BACKEND_ENABLED)
		return false;
	if (backend_weight(b) <= 0)
		return false;
	max = atomic_load_explicit(&b->max_conns, memory_order_relaxed);
	return max <= 0 || atomic_load_explicit(&b->active, memory_order_relaxed) < max;
}

static bool pick_tried(const struct pick_ctx *ctx, const struct backend *b)
{
	for (size_t i = 0; i < ctx->ntried; i++)
		if (ctx->tried[i] == b)
			return true;
	return false;
}

/* backend_usable() less the health: what panic mode balances over. */
static bool backend_usable_in_panic(const struct backend *b)
{
	int max;

	if (atomic_load_explicit(&b->admin, memory_order_relaxed) != BACKEND_ENABLED ||
	    atomic_load_explicit(&b->agent_admin, memory_order_relaxed) != BACKEND_ENABLED)
		return false;
	if (backend_weight(b) <= 0)
		return false;
	max = atomic_load_explicit(&b->max_conns, memory_order_relaxed);
	return max <= 0 || atomic_load_explicit(&b->active, memory_order_relaxed) < max;
}

bool pick_allowed(const struct pick_ctx *ctx, const struct backend *b)
{
	return (ctx->panic ? backend_usable_in_panic(b) : backend_usable(b)) && !pick_tried(ctx, b);
}

int backend_weight(const struct backend *b)
{
	int ramp = atomic_load_explicit(&b->ramp_weight, memory_order_relaxed);
	int w = atomic_load_explicit(&b->weight, memory_order_relaxed);

	int pct = atomic_load_explicit(&b->agent_pct, memory_order_relaxed);

	if (w <= 0 || pct <= 0)
		return 0;
	int full = ramp > 0 && ramp < w * BACKEND_WEIGHT_SCALE ? ramp : w * BACKEND_WEIGHT_SCALE;
	if (pct == 100)
		return full;
	int part = full * pct / 100;
	return part > 0 ? part : 1;
}

void backend_agent_reset(struct backend *b)
{
	atomic_store(&b->agent_pct, 100);
	atomic_store(&b->agent_admin, BACKEND_ENABLED);
	atomic_store(&b->agent_down, false);
	atomic_store(&b->agent_last[0], '\0');
}

int backend_ramp_weight(int weight, uint64_t elapsed_ms, uint64_t ramp_ms)
{
	uint64_t full = (uint64_t)(weight > 0 ? weight : 0) * BACKEND_WEIGHT_SCALE;

	if (!ramp_ms || elapsed_ms >= ramp_ms)
		return (int)full;
	uint64_t w = full * elapsed_ms / ramp_ms;
	return (int)(w ? w : 1);
}

void backend_ramp_begin(struct backend *b, uint64_t now_ms)
{
	if (!atomic_load(&b->slow_start_ms))
		return;
	atomic_store(&b->ramp_start_ms, now_ms ? now_ms : 1);
	atomic_store(&b->ramp_weight, 1);
}

bool backend_ramp_step(struct backend *b, uint64_t now_ms)
{
	uint64_t start = atomic_load(&b->ramp_start_ms), ramp = atomic_load(&b->slow_start_ms);

	if (!start)
		return false;
	int w = atomic_load(&b->weight);
	if (!ramp || now_ms - start >= ramp || w <= 0) {
		atomic_store(&b->ramp_start_ms, 0);
		atomic_store(&b->ramp_weight, 0);
		log_info("pool %s: backend %s slow start over: full weight %d", b->pool->name,
			 b->name, w);
		return true;
	}
	int next = backend_ramp_weight(w, now_ms - start, ramp);
	return atomic_exchange(&b->ramp_weight, next) != next;
}

struct backend_load backend_load(const struct backend *b)
{
	return (struct backend_load){
	    .active = atomic_load_explicit(&b->active, memory_order_relaxed),
	    .weight = backend_weight(b),
	};
}

bool backend_load_lighter(struct backend_load a, struct backend_load b)
{
	if (a.weight <= 0 || b.weight <= 0)
		return a.weight > 0 && b.weight <= 0;
	return a.active * b.weight < b.active * a.weight;
}

bool backend_take(struct backend *b)
{
	int max = atomic_load_explicit(&b->max_conns, memory_order_relaxed);
	int cur;

	if (max <= 0) {
		atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
	} else {
		/* A CAS loop rather than add-then-undo: a transient overshoot would make other
		 * workers see the backend as full and skip it for no reason. */
		cur = atomic_load_explicit(&b->active, memory_order_relaxed);
		do {
			if (cur >= max)
				return false;
		} while (!atomic_compare_exchange_weak_explicit(
		    &b->active, &cur, cur + 1, memory_order_relaxed, memory_order_relaxed));
	}
	atomic_fetch_add_explicit(&b->total, 1, memory_order_relaxed);
	return true;
}

void backend_release(struct backend *b)
{
	atomic_fetch_sub_explicit(&b->active, 1, memory_order_relaxed);
	queue_dispatch(b->pool);
}

/* strdup that passes NULL through; *ok turns false on ENOMEM. */
static char *dup_opt(const char *s, bool *ok)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*ok = false;
	return d;
}

/* Copy of len bytes plus a NUL (health payloads may hold NULs); NULL passes through. */
static char *dup_bytes(const char *s, size_t len, bool *ok)
{
	char *d;

	if (!s)
		return NULL;
	d = malloc(len + 1);
	if (!d) {
		*ok = false;
		return NULL;
	}
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

static bool health_copy(struct cfg_health *dst, const struct cfg_health *src)
{
	bool ok = true;

	*dst = *src;
	dst->type = dup_opt(src->type, &ok);
	dst->send = dup_bytes(src->send, src->send_len, &ok);
	dst->expect = dup_bytes(src->expect, src->expect_len, &ok);
	dst->path = dup_opt(src->path, &ok);
	dst->user = dup_opt(src->user, &ok);
	if (!ok) {
		cfg_health_free(dst);
		memset(dst, 0, sizeof(*dst)); /* pool_destroy frees it again */
	}
	return ok;
}

void pool_backend_free(struct backend *b)
{
	if (!b)
		return;
	free(b->name);
	free(b->address);
	free(b->hash_key);
	free(b);
}

const char *pool_hash_key(const struct cfg_backend *cb, char *buf, size_t len)
{
	if (cb->hash_key)
		return cb->hash_key;
	/* The resolved address, so that "db1:5432" and "10.0.0.11:5432" agree. */
	return addr_format((const struct sockaddr *)&cb->addr.ss, buf, len);
}

static struct backend *backend_create(struct pool *p, const struct cfg_backend *cb)
{
	struct backend *b = calloc(1, sizeof(*b));
	bool ok = true;
	/* A type that never probes leaves health to the passive checks: up until they fail. */
	const struct hc_check *chk = hc_find(p->health.type ? p->health.type : "none");
	bool passive_only = chk && !hc_probes(chk);

	if (!b)
		return NULL;
	b->address = dup_opt(cb->address, &ok);
	b->name = dup_opt(cb->name ? cb->name : cb->address, &ok);
	char key[ADDR_STR_MAX];
	b->hash_key = dup_opt(pool_hash_key(cb, key, sizeof(key)), &ok);
	if (!ok) {
		pool_backend_free(b);
		return NULL;
	}
	b->addr = cb->addr;
	b->backup = cb->backup;
	b->pool = p;
	atomic_init(&b->health, passive_only ? BACKEND_UP : BACKEND_UNKNOWN);
	atomic_init(&b->hc_verdict, passive_only ? BACKEND_UP : BACKEND_UNKNOWN);
	atomic_init(&b->admin, BACKEND_ENABLED);
	atomic_init(&b->weight, cb->weight);
	atomic_init(&b->max_conns, cb->max_conns);
	atomic_init(&b->check_port, cb->check_port);
	atomic_init(&b->slow_start_ms, cb->slow_start_ms ? cb->slow_start_ms : p->slow_start_ms);
	atomic_init(&b->agent_port, cb->agent_port);
	atomic_init(&b->agent_pct, 100);
	atomic_init(&b->agent_admin, BACKEND_ENABLED);
	return b;
}

/* The agent's probe settings: its interval, a timeout of the interval up to 1 s, its port. */
static void pool_agent_settings(struct pool *p, const struct cfg_pool *cp)
{
	uint64_t iv = cp->agent_port ? cp->agent_interval_ms : 0;

	p->agent = (struct cfg_health){
	    .interval_ms = iv,
	    .timeout_ms = iv < 1000 ? iv : 1000,
	    .port = cp->agent_port,
	};
}

struct pool *pool_create(const struct cfg_pool *cp)
{
	struct pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	queue_init(&p->queue);
	queue_configure(&p->queue, cp->queue_max, cp->queue_timeout_ms);
	p->algorithm = algorithm_find(cp->algorithm ? cp->algorithm : "round_robin");
	p->name = strdup(cp->name ? cp->name : "");
	if (!p->algorithm || !p->name || !health_copy(&p->health, &cp->health))
		goto fail;
	p->retries = cp->retries;
	p->on_down = cp->on_down;
	p->panic_threshold = cp->panic_threshold;
	p->slow_start_ms = cp->slow_start_ms;
	pool_agent_settings(p, cp);
	p->backends = calloc(cp->nbackends ? cp->nbackends : 1, sizeof(*p->backends));
	if (!p->backends)
		goto fail;
	for (; p->nbackends < cp->nbackends; p->nbackends++) {
		p->backends[p->nbackends] = backend_create(p, &cp->backends[p->nbackends]);
		if (!p->backends[p->nbackends])
			goto fail;
	}
	if (pool_rebuild(p, NULL) < 0)
		goto fail;
	return p;
fail:
	pool_destroy(p);
	return NULL;
}

void pool_destroy(struct pool *p)
{
	if (!p)
		return;
	pool_snapshot_free(atomic_load_explicit(&p->snap, memory_order_relaxed));
	for (size_t i = 0; i < p->nbackends; i++)
		pool_backend_free(p->backends[i]);
	free(p->backends);
	pthread_mutex_destroy(&p->lock);
	queue_destroy(&p->queue);
	cfg_health_free(&p->health);
	free(p->name);
	free(p);
}

static struct backend *group_pick(const struct pool_snapshot *s, void *state, size_t n,
				  const struct pick_ctx *ctx)
{
	if (n == 0)
		return NULL;
	return s->alg->pick(state, ctx);
}

struct backend *pool_pick(struct pool *p, const struct pick_ctx *ctx)
{
	/* Acquire pairs with the release in pool_rebuild: the snapshot's contents (arrays,
	 * algorithm state) are fully visible before we use them. */
	struct pool_snapshot *s = atomic_load_explicit(&p->snap, memory_order_acquire);
	struct backend *b;

	if (!s)
		return NULL;
	struct pick_ctx in_panic;
	if (s->panic) {
		in_panic = *ctx;
		in_panic.panic = true;
		b = group_pick(s, s->primary_state, s->nprimaries, &in_panic);
	} else {
		b = group_pick(s, s->primary_state, s->nprimaries, ctx);
	}
	if (b)
		return b;
	return group_pick(s, s->backup_state, s->nbackups, ctx);
}

static bool waits_for_room(const struct pick_ctx *ctx, const struct backend *b)
{
	return atomic_load_explicit(&b->max_conns, memory_order_relaxed) > 0 &&
	       atomic_load_explicit(&b->health, memory_order_relaxed) != BACKEND_DOWN &&
	       !atomic_load_explicit(&b->agent_down, memory_order_relaxed) &&
	       atomic_load_explicit(&b->admin, memory_order_relaxed) == BACKEND_ENABLED &&
	       atomic_load_explicit(&b->agent_admin, memory_order_relaxed) == BACKEND_ENABLED &&
	       backend_weight(b) > 0 && !pick_tried(ctx, b);
}

bool pool_may_queue(struct pool *p, const struct pick_ctx *ctx)
{
	const struct pool_snapshot *s = atomic_load_explicit(&p->snap, memory_order_acquire);

	if (!s || atomic_load_explicit(&p->queue.max, memory_order_relaxed) <= 0)
		return false;
	for (size_t i = 0; i < s->nprimaries; i++)
		if (waits_for_room(ctx, s->primaries[i]))
			return true;
	for (size_t i = 0; i < s->nbackups; i++)
		if (waits_for_room(ctx, s->backups[i]))
			return true;
	return false;
}

void pool_snapshot_free(struct pool_snapshot *s)
{
	if (!s)
		return;
	if (s->primary_state)
		s->alg->destroy(s->primary_state);
	if (s->backup_state)
		s->alg->destroy(s->backup_state);
	free(s->primaries);
	free(s->backups);
	free(s);
}

/* Split the pool's backends into the two groups, keeping config order (ip_hash and the
 * rotations are stable only if the order is). */
static bool snapshot_fill_groups(struct pool_snapshot *s, const struct pool *p)
{
	size_t cap = p->nbackends ? p->nbackends : 1;

	s->primaries = calloc(cap, sizeof(*s->primaries));
	s->backups = calloc(cap, sizeof(*s->backups));
	if (!s->primaries || !s->backups)
		return false;
	for (size_t i = 0; i < p->nbackends; i++) {
		struct backend *b = p->backends[i];

		if (b->backup)
			s->backups[s->nbackups++] = b;
		else
			s->primaries[s->nprimaries++] = b;
	}
	return true;
}

static struct pool_snapshot *snapshot_build(struct pool *p)
{
	struct pool_snapshot *s = calloc(1, sizeof(*s));
	struct pool_view primaries, backups;

	if (!s)
		return NULL;
	s->alg = p->algorithm;
	if (!snapshot_fill_groups(s, p))
		goto fail;
	primaries = (struct pool_view){
	    .backends = s->primaries, .n = s->nprimaries, .cursor = &p->cursor[0]};
	backups =
	    (struct pool_view){.backends = s->backups, .n = s->nbackups, .cursor = &p->cursor[1]};
	s->primary_state = s->alg->build(&primaries);
	s->backup_state = s->alg->build(&backups);
	if (!s->primary_state || !s->backup_state)
		goto fail;
	if (s->alg->fingerprint)
		s->fingerprint =
		    hash_mix64(s->alg->fingerprint(s->primary_state)) ^
		    hash_mix64(s->alg->fingerprint(s->backup_state) ^ FINGERPRINT_SEED_BACKUPS);
	return s;
fail:
	pool_snapshot_free(s);
	return NULL;
}

static void snapshot_free_cb(void *s)
{
	pool_snapshot_free(s);
}

/* Panic mode (Envoy's panic threshold): with fewer than panic_threshold percent of the
 * primaries up, balance over all of them, health ignored, rather than overload the few
 * left or refuse every client because checks time out under load. Logged and counted on
 * each change. */
static bool panic_check(struct pool *p, const struct pool_snapshot *s)
{
	int threshold = atomic_load_explicit(&p->panic_threshold, memory_order_relaxed);
	size_t up = 0;
	bool panic = false;

	if (threshold > 0 && s->nprimaries > 0) {
		for (size_t i = 0; i < s->nprimaries; i++)
			up += atomic_load_explicit(&s->primaries[i]->health,
						   memory_order_relaxed) != BACKEND_DOWN;
		panic = up * 100 < (size_t)threshold * s->nprimaries;
	}
	if (panic != atomic_load_explicit(&p->panic, memory_order_relaxed)) {
		atomic_store_explicit(&p->panic, panic, memory_order_relaxed);
		if (panic) {
			atomic_fetch_add_explicit(&p->panic_total, 1, memory_order_relaxed);
			log_warn(
			    "pool %s: panic: %zu of %zu backends up, below panic_threshold %d%%: "
			    "balancing over all of them, health ignored",
			    p->name, up, s->nprimaries, threshold);
		} else {
			log_info("pool %s: out of panic: %zu of %zu backends up", p->name, up,
				 s->nprimaries);
		}
	}
	return panic;
}

static int rebuild_locked(struct pool *p, struct qsbr *q)
{
	struct pool_snapshot *s = snapshot_build(p);
	struct pool_snapshot *old;

	/* On ENOMEM the old snapshot stays published: picks still honour live health and admin
	 * state through pick_allowed(), only weights and membership are stale. */
	if (!s)
		return -ENOMEM;
	s->panic = panic_check(p, s);
	old = atomic_exchange_explicit(&p->snap, s, memory_order_acq_rel);
	atomic_store_explicit(&p->fingerprint, s->fingerprint, memory_order_relaxed);
	/* A backend that came up, was added or got room may take waiting clients. */
	queue_dispatch(p);
	if (!old)
		return 0;
	if (q)
		qsbr_retire(q, old, snapshot_free_cb);
	else
		pool_snapshot_free(old);
	return 0;
}

int pool_rebuild(struct pool *p, struct qsbr *q)
{
	pthread_mutex_lock(&p->lock);
	int ret = rebuild_locked(p, q);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

bool pool_fingerprint(const struct pool *p, char *buf, size_t len)
{
	uint64_t fp = atomic_load_explicit(&p->fingerprint, memory_order_relaxed);

	if (!fp) {
		buf[0] = '\0';
		return false;
	}
	/* 32 bits: enough to tell tables apart at a glance, short enough to read aloud. */
	snprintf(buf, len, "%08x", (unsigned)(fp >> 32));
	return true;
}

bool backend_health_verdict(struct backend *b, int verdict)
{
	/* Sequentially consistent with backend_health_force(): either we see the force lifted
	 * and publish, or it sees our verdict and publishes it. */
	atomic_store(&b->hc_verdict, verdict);
	if (atomic_load(&b->health_force))
		return false;
	return atomic_exchange(&b->health, verdict) != verdict;
}

void backend_health_force(struct backend *b, int forced)
{
	int v;

	atomic_store(&b->health_force, forced);
	if (forced) {
		atomic_store(&b->health, forced);
		return;
	}
	/* Back to the prober's verdict; re-read in case it changed while we stored it. */
	do {
		v = atomic_load(&b->hc_verdict);
		atomic_store(&b->health, v);
	} while (atomic_load(&b->hc_verdict) != v);
}

struct pool *pool_find(struct pool *const *pools, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(pools[i]->name, name) == 0)
			return pools[i];
	return NULL;
}

struct backend *pool_find_backend(const struct pool *p, const char *name)
{
	for (size_t i = 0; i < p->nbackends; i++)
		if (strcmp(p->backends[i]->name, name) == 0)
			return p->backends[i];
	return NULL;
}

int pool_add_backend(struct pool *p, const struct cfg_backend *cb, struct qsbr *q,
		     struct backend **out)
{
	const char *name = cb->name ? cb->name : cb->address;
	struct backend *b;
	struct backend **arr;
	int ret = -ENOMEM;

	if (pool_find_backend(p, name))
		return -EEXIST;
	b = backend_create(p, cb);
	if (!b)
		return -ENOMEM;
	backend_ramp_begin(b, timer_now_ms()); /* a new backend is cold: slow start */
	pthread_mutex_lock(&p->lock);
	arr = realloc(p->backends, (p->nbackends + 1) * sizeof(*arr));
	if (arr) {
		p->backends = arr;
		p->backends[p->nbackends++] = b;
		ret = rebuild_locked(p, q);
		if (ret < 0)
			p->nbackends--;
	}
	pthread_mutex_unlock(&p->lock);
	if (ret < 0) {
		pool_backend_free(b);
		return ret;
	}
	if (out)
		*out = b;
	return 0;
}

int pool_remove_backend(struct pool *p, struct backend *b, struct qsbr *q)
{
	size_t i;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	for (i = 0; i < p->nbackends && p->backends[i] != b; i++)
		;
	if (i == p->nbackends) {
		ret = -ENOENT;
		goto out;
	}
	memmove(&p->backends[i], &p->backends[i + 1], (p->nbackends - i - 1) * sizeof(b));
	p->nbackends--;
	ret = rebuild_locked(p, q);
	if (ret < 0) {
		memmove(&p->backends[i + 1], &p->backends[i], (p->nbackends - i) * sizeof(b));
		p->backends[i] = b;
		p->nbackends++;
	}
out:
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int pool_reconfigure(struct pool *p, const struct cfg_pool *cp, struct qsbr *q)
{
	const struct lb_algorithm *alg =
	    algorithm_find(cp->algorithm ? cp->algorithm : "round_robin");
	struct cfg_health h;

	if (!alg)
		return -EINVAL;
	if (!health_copy(&h, &cp->health))
		return -ENOMEM;
	pthread_mutex_lock(&p->lock);
	cfg_health_free(&p->health);
	p->health = h;
	atomic_store(&p->retries, cp->retries);
	atomic_store(&p->on_down, cp->on_down);
	atomic_store(&p->panic_threshold, cp->panic_threshold);
	p->slow_start_ms = cp->slow_start_ms;
	pool_agent_settings(p, cp);
	if (!cp->agent_port)
		for (size_t i = 0; i < p->nbackends; i++)
			backend_agent_reset(p->backends[i]);
	queue_configure(&p->queue, cp->queue_max, cp->queue_timeout_ms);
	p->algorithm = alg;
	int ret = rebuild_locked(p, q); /* on ENOMEM picks keep the old snapshot's algorithm */
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int pool_set_algorithm(struct pool *p, const struct lb_algorithm *alg, struct qsbr *q)
{
	pthread_mutex_lock(&p->lock);
	const struct lb_algorithm *prev = p->algorithm;
	p->algorithm = alg;
	int ret = rebuild_locked(p, q);
	if (ret < 0)
		p->algorithm = prev;
	pthread_mutex_unlock(&p->lock);
	return ret;
}
