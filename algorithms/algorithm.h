/* The balancing-algorithm module interface and its registry (DESIGN.md).
 * Each algorithm is one file filling a const struct lb_algorithm; the core never switches
 * on an algorithm's name. */
#ifndef LB_ALGORITHM_H
#define LB_ALGORITHM_H

#include "lb/pool.h"

struct lb_algorithm {
	const char *name;
	/* Build per-group state from a view; called off the data path. NULL on ENOMEM.
	 * The view's array stays valid for the state's lifetime (it belongs to the snapshot). */
	void *(*build)(const struct pool_view *view);
	/* Choose; thread-safe, allocation-free. Only backends with pick_allowed() may be
	 * returned. NULL = nothing allowed. */
	struct backend *(*pick)(void *state, const struct pick_ctx *ctx);
	void (*destroy)(void *state);
	/* Optional: a digest of what build() made, equal on every lb whose config gives the
	 * same picks (ip_hash: the Maglev table), so that a fleet can compare. NULL = none. */
	uint64_t (*fingerprint)(const void *state);
};

/* Name or alias ("weighted") -> module; NULL if unknown. */
const struct lb_algorithm *algorithm_find(const char *name);
/* Comma-separated list of canonical names, for error messages. */
const char *algorithm_names(void);

extern const struct lb_algorithm algorithm_round_robin;
extern const struct lb_algorithm algorithm_weighted_round_robin;
extern const struct lb_algorithm algorithm_least_conn;
extern const struct lb_algorithm algorithm_ip_hash;
extern const struct lb_algorithm algorithm_random_two;

#endif
