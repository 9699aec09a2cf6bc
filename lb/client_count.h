/* Connections (tcp) or sessions (udp) per client IP on one listener, shared by the workers,
 * for the listener's max_conns_per_client. Touched once when a connection or session starts
 * and once when it ends, never per byte. */
#ifndef LB_CLIENT_COUNT_H
#define LB_CLIENT_COUNT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct client_entry;

struct client_count {
	pthread_mutex_t lock;
	struct client_entry **buckets; /* NULL until the first client is counted */
	size_t mask;		       /* buckets - 1 */
	size_t n;		       /* clients with at least one connection */
};

void client_count_init(struct client_count *cc);
/* Free the table: only when no connection is counted any more. */
void client_count_destroy(struct client_count *cc);
/* One more connection of client if it has fewer than max: true (then client_count_release
 * it when it ends). False if the client is at max, or on ENOMEM (nothing counted). */
bool client_count_take(struct client_count *cc, const struct sockaddr *client, int max);
void client_count_release(struct client_count *cc, const struct sockaddr *client);
/* Connections counted for client now (tests, status). */
int client_count_get(struct client_count *cc, const struct sockaddr *client);

#endif
