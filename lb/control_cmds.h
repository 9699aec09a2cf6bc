/* The control commands behind the socket (control.c does the I/O): parse one request line,
 * act on the running state, answer with one JSON line. */
#ifndef LB_CONTROL_CMDS_H
#define LB_CONTROL_CMDS_H

#include <stddef.h>

struct lb_state;
struct ctl_pending;

/* A client's end of a command that answers later (`reload`, `add` with a host name: they
 * wait for work off the main loop). Owned by control.c, one per client. */
struct ctl_waiter {
	/* Main thread: the answer line, '\n' included, malloc'd (taken; NULL on ENOMEM). */
	void (*answer)(struct ctl_waiter *w, char *line, size_t len);
	struct ctl_pending *pending; /* the command it waits for; NULL: none */
};

/* Execute one request line (without its newline). Returns the response line, '\n'
 * included, malloc'd (caller frees), its length in *outlen. NULL with w->pending set: the
 * command answers later through w->answer (and clears w->pending first); NULL otherwise
 * only on ENOMEM. */
char *ctl_cmds_execute(struct lb_state *st, const char *line, size_t len, size_t *outlen,
		       struct ctl_waiter *w);
/* {"status": what `status` answers, "backends": what `backends` answers}, as one JSON
 * text (malloc'd, length in *len), for the status page; NULL on ENOMEM. */
char *ctl_status_json(const struct lb_state *st, size_t *len);
/* The client of w is going away: its pending command goes on but answers nobody. */
void ctl_cmds_abandon(struct ctl_waiter *w);
/* The response line for an error not tied to a parsed request (e.g. an oversized line). */
char *ctl_cmds_error(const char *msg, size_t *outlen);

#endif
