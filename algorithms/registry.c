/* The algorithm registry: the one place that maps a configured name to a module, so that the
 * config loader, the control plane and pools never switch on an algorithm's name. */
#include <stddef.h>
#include <string.h>

#include "algorithms/algorithm.h"

struct algorithm_entry {
	const char *name;
	const struct lb_algorithm *alg;
};

/* Canonical names first, in the order algorithm_names() lists them, then aliases. */
static const struct algorithm_entry algorithms[] = {
    {"round_robin", &algorithm_round_robin},
    {"weighted_round_robin", &algorithm_weighted_round_robin},
    {"least_conn", &algorithm_least_conn},
    {"ip_hash", &algorithm_ip_hash},
    {"random_two", &algorithm_random_two},
    {"weighted", &algorithm_weighted_round_robin},
};

const struct lb_algorithm *algorithm_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof(algorithms) / sizeof(algorithms[0]); i++)
		if (strcmp(algorithms[i].name, name) == 0)
			return algorithms[i].alg;
	return NULL;
}

const char *algorithm_names(void)
{
	/* A literal, not built from the table, so that it needs no mutable global; the unit
	 * tests check that every name here resolves to a module under that same name. */
	return "round_robin, weighted_round_robin, least_conn, ip_hash, random_two";
}
