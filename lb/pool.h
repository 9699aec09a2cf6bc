/* Pools and backends: the state shared by workers, the prober and the control plane.
 * Workers only read health/admin/weight and bump counters (atomics); everything an
 * algorithm needs is a snapshot rebuilt off the data path and published by pointer swap. */
#ifndef LB_POOL_H
#define LB_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lb/addr.h"
#include "lb/config.h"
#include "lb/queue.h"

struct lb_algorithm;
struct qsbr;

enum backend_health { BACKEND_UNKNOWN = 0, BACKEND_UP = 1, BACKEND_DOWN = 2 };
enum backend_admin { BACKEND_ENABLED = 0, BACKEND_DISABLED = 1, BACKEND_DRAINING = 2 };

struct backend {
	char *name;
	char *address;
	char *hash_key; /* ip_hash's key: the config's hash_key, else the resolved address */
	struct lb_addr addr;
	_Atomic int check_port; /* health checks go here on addr's host; 0: the pool's */
	bool backup;
	struct pool *pool;

	_Atomic int health;	  /* enum backend_health: what the data path obeys */
	_Atomic int hc_verdict;	  /* the prober's own opinion, kept while health is forced */
	_Atomic int health_force; /* 0 = the prober decides; BACKEND_UP/DOWN = forced (lbctl) */
	_Atomic int admin;	  /* enum backend_admin */
	_Atomic int weight;	  /* the configured (or lbctl's) weight */
	_Atomic int max_conns;	  /* 0 = none */
	/* Slow start: after coming up (from down) or being added, the weight algorithms see
	 * ramps from 1/BACKEND_WEIGHT_SCALE of weight to all of it over slow_start_ms. The
	 * prober steps ramp_weight (scaled; 0 = not ramping) and republishes. */
	_Atomic uint64_t slow_start_ms; /* 0 = no slow start */
	_Atomic uint64_t ramp_start_ms; /* when the ramp began (timer_now_ms); 0 = none */
	_Atomic int ramp_weight;

	/* The agent check (pool "agent", health/prober.c): what the backend's agent said last.
	 * Workers obey pct (of the weight), admin and down alongside the operator's and the
	 * health check's state. */
	_Atomic int agent_port;	     /* 0: the pool's agent port */
	_Atomic int agent_pct;	     /* weight percent, 100 until an agent says otherwise */
	_Atomic int agent_admin;     /* enum backend_admin from ready/drain/maint */
	_Atomic bool agent_down;     /* down/fail/stopped; up lifts it */
	_Atomic char agent_last[64]; /* its last answer or error, for lbctl (may tear) */

	_Atomic int active; /* open connections/sessions */
	_Atomic uint64_t total;
	_Atomic uint64_t bytes_in;  /* from backend to client */
	_Atomic uint64_t bytes_out; /* from client to backend */
	_Atomic uint64_t connect_failures;
	_Atomic int fail_streak;   /* consecutive failed connects (passive check) */
	_Atomic uint32_t kill_gen; /* bumped by `kill`: connections started before it close */

	/* ---- health results, written by the prober (health/prober.c) only; read them as
	 * one consistent set with prober_last_check() (health/prober.h) ---- */
	_Atomic uint32_t hc_seq;	/* seqlock over the fields below: odd while written */
	_Atomic int hc_last;		/* enum prober_last: none yet, pass, fail */
	_Atomic uint32_t hc_latency_us; /* last check: connect start to verdict */
	_Atomic uint64_t hc_checks;	/* checks completed */
	_Atomic uint64_t hc_slot_ms;	/* when the last check was due: a restarted prober
					 * does not check again in the same slot */
	_Atomic char hc_reason[64];	/* why the last check failed ("timeout"); "" on pass */
};

/* What an algorithm's build() sees: one group (primaries or backups) of a pool. */
struct pool_view {
	struct backend **backends; /* every backend of the group, usable or not */
	size_t n;
	/* The group's pick counter, owned by the pool and shared by all its snapshots, so that
	 * a rotation continues where it was when a health or admin change rebuilds the
	 * snapshot instead of starting over at the first backend. */
	_Atomic uint64_t *cursor;
};

/* Per-pick input. tried lists backends already attempted for this connection (retries
 * never go to the same backend twice); pick must skip them and unusable ones. */
/* A connection's place in a rotation, before it has one. */
#define PICK_NO_TURN UINT64_MAX

struct pick_ctx {
	const struct sockaddr *client;
	uint32_t hash; /* addr_hash_ip(client) */
	struct backend *const *tried;
	size_t ntried;
	/* The connection's turn in a rotation (round_robin): taken from the shared cursor on
	 * its first pick (*turn == PICK_NO_TURN), reused by its retries, so that a retry never
	 * takes a turn from new connections. NULL: every pick takes a new turn. */
	uint64_t *turn;
	/* Set by pool_pick while the pool is in panic (panic_threshold): health is ignored. */
	bool panic;
};

/* A published, immutable view of a pool for the data path. */
struct pool_snapshot {
	const struct lb_algorithm *alg;
	void *primary_state; /* alg->build() over primaries */
	void *backup_state;  /* alg->build() over backups */
	struct backend **primaries, **backups;
	size_t nprimaries, nbackups;
	uint64_t fingerprint; /* alg->fingerprint() of both groups; 0 = the algorithm has none */
	bool panic;	      /* too few primaries up (panic_threshold): balance over all */
};

struct pool {
	char *name;
	_Atomic int retries; /* a reload may change it while workers read it */
	_Atomic int on_down; /* enum cfg_on_down; read by the prober and the control plane */
	/* Percent of primaries that must be up; below it picks ignore health (0: never). */
	_Atomic int panic_threshold;
	uint64_t slow_start_ms; /* the pool's slow_start, for backends without their own */
	/* The agent check's settings as the prober's probes read them (interval, timeout, port);
	 * interval_ms 0: no agent. */
	struct cfg_health agent;
	_Atomic bool panic;	      /* the published snapshot's panic, for metrics */
	_Atomic uint64_t panic_total; /* times it entered panic */
	struct pool_queue queue;      /* clients waiting for a free slot (lb/queue.h) */
	struct cfg_health health;
	const struct lb_algorithm *algorithm;
	struct backend **backends; /* owned */
	size_t nbackends;
	_Atomic(struct pool_snapshot *) snap;
	_Atomic uint64_t cursor[2];   /* pool_view.cursor of the primaries, of the backups */
	_Atomic uint64_t fingerprint; /* of the published snapshot, for the control plane */
	/* Serialises rebuilds and changes of backends/algorithm between the prober and the
	 * control plane; never taken by workers. */
	pthread_mutex_t lock;
};

/* The ip_hash key a backend built from cb gets: its hash_key, else its resolved address
 * formatted into buf (ADDR_STR_MAX). */
const char *pool_hash_key(const struct cfg_backend *cb, char *buf, size_t len);

/* The weight algorithms balance by, scaled by BACKEND_WEIGHT_SCALE so that a ramp can start
 * below a weight of 1: weight x BACKEND_WEIGHT_SCALE, or the slow-start ramp's part of it. */
#define BACKEND_WEIGHT_SCALE 16
int backend_weight(const struct backend *b);
/* The ramp's scaled weight elapsed_ms into a slow start of ramp_ms for weight: from 1 up to
 * weight x BACKEND_WEIGHT_SCALE, linear. */
int backend_ramp_weight(int weight, uint64_t elapsed_ms, uint64_t ramp_ms);
/* Begin b's slow start now (no-op without one). The caller republishes the snapshot. */
void backend_ramp_begin(struct backend *b, uint64_t now_ms);
/* Step b's ramp to now: true if its effective weight changed (republish the snapshot).
 * Ends the ramp once it is over. Prober thread. */
bool backend_ramp_step(struct backend *b, uint64_t now_ms);

/* Forget what b's agent said (the pool has no agent any more). */
void backend_agent_reset(struct backend *b);

/* Usable for a new connection: health not down, admin enabled, weight > 0, below max_conns. */
bool backend_usable(const struct backend *b);
/* True if b is usable and not in ctx->tried. Algorithms call this for every candidate. */
bool pick_allowed(const struct pick_ctx *ctx, const struct backend *b);

/* Count a new connection on b: ++active, unless max_conns > 0 and b is already full (then
 * false and nothing changes). On success also ++total. Lock-free. */
bool backend_take(struct backend *b);
/* The connection taken with backend_take() has ended: --active, and the freed slot goes to
 * the pool's queue if a client waits. */
void backend_release(struct backend *b);

/* A backend's load for least-loaded choices, read once (weight may change under us). */
struct backend_load {
	int64_t active, weight;
};
struct backend_load backend_load(const struct backend *b);
/* a carries strictly less load per unit of weight than b (cross-multiplied integers; both
 * weights are at most CFG_MAX_WEIGHT x BACKEND_WEIGHT_SCALE, so the products fit). A weight <= 0 is
 * never lighter. */
bool backend_load_lighter(struct backend_load a, struct backend_load b);

/* Build a pool (and its backends, and a first snapshot) from its config. NULL on ENOMEM or
 * unknown algorithm. */
struct pool *pool_create(const struct cfg_pool *cp);
/* Free a pool, its backends and its current snapshot. No worker may use it any more. */
void pool_destroy(struct pool *p);

/* Choose a backend for a new connection: primaries first, backups only when no primary is
 * allowed. Lock-free and allocation-free. NULL = nothing usable. */
struct backend *pool_pick(struct pool *p, const struct pick_ctx *ctx);

/* Whether a client refused for want of a free slot may wait in p's queue: the queue is on and
 * a backend not in ctx->tried is usable but for its max_conns (so a slot may free). */
bool pool_may_queue(struct pool *p, const struct pick_ctx *ctx);

/* Rebuild and publish the snapshot after health/admin/weight/backend-list changes. The old
 * snapshot is retired through q (freed once no worker can hold it), or freed at once if q is
 * NULL (no worker runs yet). Returns 0, or -ENOMEM with the old snapshot still published.
 * Call from one thread at a time (prober/control), never from a worker. */
int pool_rebuild(struct pool *p, struct qsbr *q);
void pool_snapshot_free(struct pool_snapshot *s);

/* The published snapshot's table fingerprint as 8 hex digits into buf (>= 9 bytes); false
 * (buf "") when the pool's algorithm keeps no table. Any thread. */
bool pool_fingerprint(const struct pool *p, char *buf, size_t len);

/* Set the health the prober decided (verdict); it takes effect unless the health is forced.
 * Returns true if the effective health changed. Prober thread. */
bool backend_health_verdict(struct backend *b, int verdict);
/* Force the health (BACKEND_UP/BACKEND_DOWN), or hand it back to the prober (0). The caller
 * republishes the snapshot. Control thread. */
void backend_health_force(struct backend *b, int forced);

/* ---- control-plane operations (main thread; each publishes a new snapshot via q) ---- */

/* The pool called name among pools[0..n), or NULL. */
struct pool *pool_find(struct pool *const *pools, size_t n, const char *name);
/* The backend called name, or NULL. */
struct backend *pool_find_backend(const struct pool *p, const char *name);
/* Add a backend built from cb (address already resolved). It starts up for health "none",
 * else unknown; the prober checks it once restarted over the pools (reload_prober_sync).
 * 0, -EEXIST (name taken) or -ENOMEM. */
int pool_add_backend(struct pool *p, const struct cfg_backend *cb, struct qsbr *q,
		     struct backend **out);
/* Unpublish b: no new connection picks it once workers pass a quiescent point. The caller
 * owns b from then on: free it with pool_backend_free once nothing can reference it (the
 * graveyard, lb/retire.h). 0, or -ENOMEM/-ENOENT with nothing changed. */
int pool_remove_backend(struct pool *p, struct backend *b, struct qsbr *q);
void pool_backend_free(struct backend *b);
/* Apply a reloaded pool config's settings (retries, health, algorithm) and publish; the
 * backends are left alone. The prober must not run. 0, -EINVAL (unknown algorithm) or
 * -ENOMEM (nothing changed). */
int pool_reconfigure(struct pool *p, const struct cfg_pool *cp, struct qsbr *q);
/* Switch the algorithm and publish. 0 or -ENOMEM (old algorithm kept). */
int pool_set_algorithm(struct pool *p, const struct lb_algorithm *alg, struct qsbr *q);

#endif
