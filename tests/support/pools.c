/* Hand-built pools for the unit suites: a pool config without a JSON document, so that a
 * test names only what it varies (algorithm, size, weights). Needs Check, like suite.c. */
#include "support.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "lb/pool.h"

size_t t_pool_cfg_init(struct t_pool_cfg *t, const char *alg, const char *prefix, int n, int skip,
		       const int *weights)
{
	size_t k = 0;

	ck_assert_int_le(n, T_POOL_MAX);
	memset(t, 0, sizeof(*t));
	t->cp.name = "test";
	t->cp.algorithm = (char *)alg;
	t->cp.retries = CFG_DEFAULT_RETRIES;
	t->cp.health.type = "none";
	t->cp.backends = t->be;
	for (int i = 0; i < n; i++) {
		if (i == skip)
			continue;
		snprintf(t->names[k], sizeof(t->names[k]), "%s%d", prefix, i);
		t->be[k].name = t->names[k];
		t->be[k].address = t->names[k];
		t->be[k].hash_key = t->names[k]; /* no resolved address here: key by name */
		t->be[k].weight = weights ? weights[i] : 1;
		k++;
	}
	t->cp.nbackends = k;
	return k;
}

struct pool *t_pool_make(const char *alg, const char *prefix, int n, int skip, const int *weights)
{
	struct t_pool_cfg t;
	struct pool *p;

	t_pool_cfg_init(&t, alg, prefix, n, skip, weights);
	p = pool_create(&t.cp);
	ck_assert_ptr_nonnull(p);
	return p;
}
