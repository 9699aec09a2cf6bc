/* The control commands behind the socket (control.c does the I/O): parse one request line,
 * act on the running state, answer with one JSON line. */
#ifndef LB_CONTROL_CMDS_H
#define LB_CONTROL_CMDS_H

#include <stddef.h>

struct lb_state;

/* Execute one request line (without its newline). Returns the response line, '\n'
 * included, malloc'd (caller frees), its length in *outlen; NULL only on ENOMEM. */
char *ctl_cmds_execute(struct lb_state *st, const char *line, size_t len, size_t *outlen);
/* The response line for an error not tied to a parsed request (e.g. an oversized line). */
char *ctl_cmds_error(const char *msg, size_t *outlen);

#endif
