/* Readiness: whether this lb should receive new traffic from the routing layer (a BGP
 * watchdog, keepalived, an orchestrator). Served as GET /ready and `lbctl ready`; lowered by
 * `lbctl withdraw` and by SIGTERM for withdraw_delay, so that routes go before listeners do. */
#ifndef LB_READY_H
#define LB_READY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lb_state;

/* Room for a reason: a listener's and a pool's name. */
#define READY_REASON_MAX 600

/* Main thread only: written by the control commands and the signal handling of main.c. */
struct readiness {
	bool withdrawn;	   /* lbctl withdraw, until lbctl rejoin */
	bool stopping;	   /* SIGTERM received; listeners close after withdraw_delay */
	uint64_t since_ms; /* timer_now_ms() when withdrawn or stopping began */
};

/* Ready to receive traffic: not withdrawn or stopping, and every listener's pool has a usable
 * backend. When not, a short reason goes into why ("withdrawn", "listener pg: pool pg has no
 * usable backend"). */
bool ready_check(const struct lb_state *st, char *why, size_t len);

/* Withdraw (true) or rejoin (false). Returns false if nothing changed. */
bool ready_set_withdrawn(struct readiness *r, bool withdrawn);

/* SIGTERM: report not ready from now on. Returns the ms to keep accepting before listeners
 * close: delay_ms, less the time already spent withdrawn. */
uint64_t ready_stop(struct readiness *r, uint64_t delay_ms);

#endif
