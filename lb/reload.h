/* Hot reload (SPEC.md "Behaviour on the data path", DESIGN.md "Hot reload"): load and
 * validate a new config beside the running one, then swap it in. Pools and backends matched
 * by name keep their objects (counters, health, admin state, open connections); listeners
 * whose address did not change keep their sockets. Restarts the prober over the new
 * pools. */
#ifndef LB_RELOAD_H
#define LB_RELOAD_H

#include <jansson.h>
#include <stddef.h>

struct lb_state;

/* Reload st->config_path into st (main thread). On success returns 0 and *changes, a JSON
 * object naming what changed (caller decrefs); what left the running set goes to st's
 * graveyard. On failure returns -1 with every error in err, and nothing running changed. */
int reload_run(struct lb_state *st, json_t **changes, char *err, size_t errlen);

#endif
