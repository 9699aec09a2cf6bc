/* The control commands behind the socket (control.c does the I/O): parse one request line,
 * act on pools and backends, answer with one JSON line. Also owns backends removed at run
 * time until no worker can reference them any more. */
#ifndef LB_CONTROL_CMDS_H
#define LB_CONTROL_CMDS_H

#include <stddef.h>

#include "lb/control.h"

struct ctl_cmds;

struct ctl_cmds *ctl_cmds_create(const struct ctl_env *env);
/* Execute one request line (without its newline). Returns the response line, '\n'
 * included, malloc'd (caller frees), its length in *outlen; NULL only on ENOMEM. */
char *ctl_cmds_execute(struct ctl_cmds *x, const char *line, size_t len, size_t *outlen);
/* The response line for an error not tied to a parsed request (e.g. an oversized line). */
char *ctl_cmds_error(const char *msg, size_t *outlen);
/* Free removed backends that became unreachable. ms until the next call, or -1. */
int ctl_cmds_tick(struct ctl_cmds *x);
/* Free everything left: only once every worker has stopped and QSBR was destroyed. */
void ctl_cmds_free(struct ctl_cmds *x);

#endif
