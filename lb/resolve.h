/* Host names in backend addresses, looked up with a time bound: each name on a thread of its
 * own, so that a resolver that never answers costs the caller RESOLVE_TIMEOUT_MS at most,
 * not the system resolver's own timeouts (10 s and more per name). */
#ifndef LB_RESOLVE_H
#define LB_RESOLVE_H

#include <stddef.h>

#include "lb/addr.h"

/* How long one config load, or one `lbctl add`, waits for its names in all. A resolver that
 * answers does so in milliseconds; glibc's own per-try timeout is 5 s (resolv.conf(5)), so a
 * name that needs more is as good as unresolvable for a reload someone waits on. */
#define RESOLVE_TIMEOUT_MS 5000

struct resolve_name {
	const char *address;	  /* in: "host:port"; numeric addresses are parsed, not looked up */
	struct lb_addr addr;	  /* out, when err is 0 */
	int err;		  /* out: 0, -EINVAL (not an address), -ENOENT (no such name),
				   * -ETIMEDOUT (no answer in time), -EAGAIN (no thread to ask) */
	const char *why;	  /* out: static text saying why, when err */
	char host[ADDR_HOST_MAX]; /* out: the host part of a name, for messages ("" if numeric) */
};

/* Parse names[0..n) and look up the host names among them in parallel, waiting at most
 * timeout_ms for them all. Blocks its caller: never the main loop once it runs. A lookup that
 * outlives the wait finishes on its own thread, which then frees what it holds. Returns how
 * many names failed. */
size_t resolve_names(struct resolve_name *names, size_t n, int timeout_ms);

/* One address, as resolve_names: 0, or its err with *why set (why may be NULL). */
int resolve_address(const char *s, struct lb_addr *out, int timeout_ms, const char **why);

#endif
