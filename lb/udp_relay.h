/* UDP sessions: a session per client address:port on each listener, with its own socket
 * connected to the backend chosen when the session began. Datagrams are read and written in
 * batches (recvmmsg/sendmmsg); replies leave from the address the client sent to; a session
 * ends after the listener's idle timeout. Written once against engine.h for both engines. */
#ifndef LB_UDP_RELAY_H
#define LB_UDP_RELAY_H

#include <stdbool.h>
#include <stdint.h>

struct worker;
struct worker_listener;

/* Engine callback for a UDP listener socket (owner: its struct worker_listener). */
void udp_relay_listener_ready(void *wl, uint32_t events);
/* The listener socket of wl is about to close: end its sessions (they cannot reply). */
void udp_relay_listener_closed(struct worker *w, struct worker_listener *wl);
/* End every session of w whose backend was killed since the session began. */
void udp_relay_kill_scan(struct worker *w);
/* UDP GRO (runs of equal datagrams received as one message, sent on whole with UDP GSO):
 * on unless LB_UDP_GRO=0 is in the environment (for A/B runs). */
bool udp_relay_gro_wanted(void);
/* Ask for GRO on UDP socket fd if on (best effort). */
void udp_relay_gro(int fd, bool on);
/* Set up / free w's session table, object pool and datagram buffers (allocated lazily). */
int udp_relay_init(struct worker *w);
void udp_relay_free(struct worker *w);

#endif
