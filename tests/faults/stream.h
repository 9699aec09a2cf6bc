/* The fault suite's verified streams: a byte pattern that any receiver can check at any
 * offset, FNV-1a-64 and a length over what passed, a streaming echo client, and a stream
 * server that checks an upload or sends a download, so that each direction through lb is
 * verified on its own. No Check here: every function reports, the suite decides. */
#ifndef LB_FAULTS_STREAM_H
#define LB_FAULTS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fill buf with the len pattern bytes of stream seed from offset off on. */
void fs_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t len);

/* What one side saw of a stream: its length, FNV-1a-64 over its bytes, and the offset of the
 * first byte that differs from the pattern (-1: none). */
struct fs_sum {
	uint64_t seed;
	uint64_t len;
	uint64_t hash;
	int64_t first_bad;
};

void fs_sum_init(struct fs_sum *s, uint64_t seed);
/* Add the next n bytes of the stream, checking them against the pattern. */
void fs_sum_add(struct fs_sum *s, const uint8_t *data, size_t n);
/* true if b received exactly what a sent: same length and hash, no byte off the pattern. */
bool fs_sum_same(const struct fs_sum *a, const struct fs_sum *b);

/* How a pump or a read ended. */
enum fs_end {
	FS_LIMIT,   /* the byte count asked for was reached */
	FS_EOF,	    /* the peer closed cleanly */
	FS_RESET,   /* the connection was reset (or failed otherwise: errno in fs_flow.err) */
	FS_TIMEOUT, /* no end within the time given */
};
const char *fs_end_name(enum fs_end e);

/* A verified echo stream on a connected non-blocking socket: sent and received checked
 * against the same pattern. */
struct fs_flow {
	int fd;
	struct fs_sum out, in;
	int err; /* errno of the failure that ended the flow */
};

/* Make fd non-blocking and start a flow of stream seed on it. */
void fs_flow_init(struct fs_flow *f, int fd, uint64_t seed);
/* Send the pattern and read the echo (sending no more than window bytes ahead of it) until
 * in.len reaches until_rx, the peer closes, or timeout_ms pass. With send_more false it
 * only reads. */
enum fs_end fs_flow_pump(struct fs_flow *f, uint64_t until_rx, bool send_more, int timeout_ms);

/* A stream server: one thread, one connection at a time. A client sends 'U' and then a
 * stream of seed FS_SEED_UP until its FIN; the server answers with the 24-byte struct
 * fs_wire_sum of what it received. Or the client sends 'D' and an 8-byte length (host
 * order): the server sends that many bytes of stream FS_SEED_DOWN, then its FIN. */
#define FS_SEED_UP   0x75706c6f6164ULL
#define FS_SEED_DOWN 0x646f776e6c64ULL
struct fs_wire_sum {
	uint64_t len, hash;
	int64_t first_bad;
};
struct fs_server;

/* Start a stream server on 127.0.0.1 (a free port). NULL on failure. */
struct fs_server *fs_server_start(void);
const char *fs_server_address(const struct fs_server *s); /* "127.0.0.1:PORT" */
void fs_server_free(struct fs_server *s);		  /* stops, joins, frees */

/* Upload total bytes of stream FS_SEED_UP to port; *sent and *got (the server's view) are
 * filled. true if the exchange completed, whatever the sums say. */
bool fs_upload(int port, uint64_t total, struct fs_sum *sent, struct fs_sum *got, int timeout_ms);
/* Download total bytes from port into *got (seed FS_SEED_DOWN). Returns how it ended:
 * FS_EOF after the whole stream is the success. */
enum fs_end fs_download(int port, uint64_t total, struct fs_sum *got, int timeout_ms);

#endif
