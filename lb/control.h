/* The control socket (SPEC.md "Control API and lbctl"): a Unix stream socket on the main
 * loop speaking newline-delimited JSON, one request per line and one response per line.
 * Admin commands change the backends' atomics and republish pool snapshots. */
#ifndef LB_CONTROL_H
#define LB_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "lb/metrics.h"

struct config;
struct worker;
struct qsbr;
struct reload_env;

/* What the control plane acts on; owned by main.c and outliving the struct ctl. */
struct ctl_env {
	const struct config *cfg;
	struct metrics_src m; /* version, engine, pools, listeners */
	struct worker **workers;
	int nworkers;
	struct qsbr *qsbr;
	struct reload_env *reload; /* hot reload and prober membership (reload.h) */
	uint64_t started_ms;	   /* timer_now_ms() at start-up, for the uptime */
};

/* Longest request line; a longer one gets an error and is skipped up to its newline. */
#define CTL_LINE_MAX (64 * 1024)

struct ctl;

/* Bind env->cfg->control_socket (replacing a stale socket file, refusing if another lb
 * answers on it), chmod it to the configured mode and serve it on epfd. NULL with a message
 * in why on failure. */
struct ctl *ctl_open(int epfd, const struct ctl_env *env, char *why, size_t whylen);
/* Periodic work (freeing removed backends once unreachable). Returns the ms until the next
 * call is due, or -1 if none is. */
int ctl_tick(struct ctl *c);
/* Stop serving: close the socket and every client, unlink the socket file. */
void ctl_shutdown(struct ctl *c);
/* Free the rest, including removed backends: only after every worker has stopped. */
void ctl_free(struct ctl *c);

#endif
