/* Inside the TCP relay: the connection pair shared by tcp_relay.c (readiness and splice,
 * the connection's life cycle) and tcp_uring.c (the completion path: the engine receives
 * into its buffers and sends from them). Nothing outside these two files includes it. */
#ifndef LB_TCP_RELAY_INT_H
#define LB_TCP_RELAY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lb/list.h"
#include "lb/listener.h"
#include "lb/pipe_pool.h"
#include "lb/queue.h"
#include "lb/timer.h"

struct engine_recv;
struct engine_send;
struct engine_watch;
struct held_q; /* tcp_uring.c's buffers waiting for the sink */

/* QUEUED: waiting in the pool's queue for a free slot (lb/queue.h), no backend yet. */
/* PROXY_IN: waiting for the client's PROXY header (listener accept_proxy). */
enum conn_state { CONN_CONNECTING, CONN_RELAY, CONN_QUEUED, CONN_PROXY_IN };

/* One direction of the pair. */
struct half {
	struct engine_recv *rx; /* the engine reads the source (completion mode); NULL: not */
	struct engine_send *tx; /* completion mode: the send in flight to the sink */
	char *tx_data;		/* ... its bytes, */
	uint32_t tx_len;	/* ... their count */
	uint32_t tx_buf;	/* ... and the engine buffer holding them */
	struct held_q *held;	/* completion mode: data waiting behind tx */
	struct lb_pipe pipe;	/* rd == -1: none borrowed */
	uint32_t in_pipe;	/* bytes read from the source, not yet written to the sink */
	char *big;		/* bulk: a large copy buffer borrowed while streaming; or NULL */
	uint32_t big_off;	/* ... where its unsent bytes start, */
	uint32_t big_len;	/* ... and how many there are */
	bool eof;		/* the source sent FIN */
	bool shut;		/* FIN forwarded to the sink */
	bool bulk;		/* a read filled a whole buffer: splice from now on */
	bool drain;		/* the source hung up or failed: read until EOF/EAGAIN */
	bool ready;		/* the source signalled data before the backend was connected */
	uint64_t bytes;		/* delivered to the sink */
};

struct conn {
	struct worker *w;
	struct listener *l;
	struct backend *be;
	int cfd, bfd;
	struct engine_watch *cwatch, *bwatch;
	struct engine_connect *bconn; /* the engine's connect to the backend, while it runs */
	uint8_t state;
	uint8_t ntried;
	bool rx_mode;	    /* the engine reads both sockets (engine_recv) once connected */
	bool per_client;    /* counted under the listener's max_conns_per_client */
	uint32_t kill_gen;  /* c->be->kill_gen when the connect started */
	uint64_t turn;	    /* its place in the pool's rotation (pick_ctx.turn) */
	struct half up;	    /* client -> backend */
	struct half down;   /* backend -> client */
	struct timer timer; /* connect timeout, then idle timeout */
	uint64_t start, last_active;
	struct list_head link;	/* in the worker's tcp_state.conns */
	struct pool *qpool;	/* the pool whose queue it waits in (CONN_QUEUED) */
	struct queue_waiter qw; /* its place there */
	struct backend *tried[LISTENER_MAX_TRIES];
	struct sockaddr_storage client;
};

enum pump_result { PUMP_OK, PUMP_SRC_ERR, PUMP_DST_ERR, PUMP_NO_MEM };

/* tcp_relay.c */

/* End the pair: close both sides (resetting those asked), give everything back. */
void tcp_conn_finish(struct conn *c, const char *how, bool reset_client, bool reset_backend);
/* Move what h's source has towards its sink (readiness way) until one of them would block. */
enum pump_result tcp_pump(struct conn *c, struct half *h, int src, int dst);
/* Add the bytes delivered since up0/down0 to the backend's counters. */
void tcp_count_bytes(struct conn *c, uint64_t up0, uint64_t down0);
/* Act on a pump's outcome: end the pair on error or once both FINs are through. */
void tcp_relay_outcome(struct conn *c, enum pump_result r, bool client_failed);
/* Run the directions asked for, the readiness way. */
void tcp_relay_run(struct conn *c, bool do_up, bool do_down);
/* Leave completion mode on h for good: the source gets a watch for READ and tcp_pump reads
 * it itself; the sink gets one for WRITE if it has none. False if a watch could not be
 * made. */
bool tcp_half_to_readiness(struct conn *c, struct half *h);
/* Drop both sockets' watches: in completion mode the engine's receives and sends report all
 * a connection needs. */
void tcp_uring_unwatch(struct conn *c);

/* tcp_uring.c */

/* Connected in completion mode: the engine reads both sockets from now on (a side it
 * cannot take is read the readiness way). May end the pair. */
void tcp_uring_start(struct conn *c);
/* Stop the engine's receive and send on h, give back every buffer it holds (the pair is
 * ending). */
void tcp_uring_release(struct worker *w, struct half *h);

#endif
