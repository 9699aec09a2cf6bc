/* The control socket (SPEC.md "Control API and lbctl"): a Unix stream socket on the main
 * loop speaking newline-delimited JSON, one request per line and one response per line.
 * Admin commands change the backends' atomics and republish pool snapshots. */
#ifndef LB_CONTROL_H
#define LB_CONTROL_H

#include <stddef.h>

struct lb_state;

/* Longest request line; a longer one gets an error and is skipped up to its newline. */
#define CTL_LINE_MAX (64 * 1024)

struct ctl;

/* Bind st->cfg->control_socket (replacing a stale socket file, refusing if another lb
 * answers on it), chmod it to the configured mode and serve it on epfd (the main loop).
 * 0 and the control plane in *out, or -errno with a message in why. */
int ctl_open(int epfd, struct lb_state *st, struct ctl **out, char *why, size_t whylen);
/* Periodic work (resuming accepts after a pause for want of fds). Returns the ms until the
 * next call is due, or -1 if none is. */
int ctl_tick(struct ctl *c);
/* Stop serving: close the socket and every client, unlink the socket file. NULL: no-op. */
void ctl_shutdown(struct ctl *c);
/* Free the rest (after ctl_shutdown, or doing it). NULL: no-op. */
void ctl_free(struct ctl *c);

#endif
