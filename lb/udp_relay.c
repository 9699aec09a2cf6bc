/* UDP relay: per-worker session table keyed by (listener, client address:port), one
 * connected socket per session towards its backend, datagrams moved in batches with
 * recvmmsg/sendmmsg, runs of equal datagrams received whole (UDP_GRO) and sent whole
 * (UDP_SEGMENT). SO_REUSEPORT steers a client's datagrams to the same listener copy, so
 * each worker's table is private and nothing here takes a lock. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb/addr.h"
#include "lb/engine.h"
#include "lb/hash.h"
#include "lb/list.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/objpool.h"
#include "lb/pool.h"
#include "lb/syserr.h"
#include "lb/udp_relay.h"
#include "lb/worker.h"

/* Datagrams moved per recvmmsg/sendmmsg call. */
#define UDP_BATCH 32
/* The largest UDP payload (IPv6; IPv4 allows 65,507): every datagram fits its slot whole. */
#define UDP_DGRAM_MAX 65535
#define SESSION_SLAB  64
#define TABLE_MIN     64
/* Room for one IP_PKTINFO or IPV6_PKTINFO control message. */
#define CTL_SIZE CMSG_SPACE(sizeof(struct in6_pktinfo))
/* Room for what a received datagram carries: its destination (either family) and, with
 * UDP_GRO, the segment size of a run the kernel kept whole. */
#define RECV_CTL_SIZE (CTL_SIZE + CMSG_SPACE(sizeof(struct in_pktinfo)) + CMSG_SPACE(sizeof(int)))
/* Datagrams of one session sent in one go: a GRO receive holds up to 64 of them (128 from a
 * local GSO sender), so a batch of 32 receives can hold more than 32 datagrams. */
#define OUT_MAX 1024
/* UDP GSO: at most this many datagrams, and bytes, in one UDP_SEGMENT message (the kernel's
 * limits are 64 segments before 6.9 and 65,507 bytes over IPv4). */
#define GSO_SEGS_MAX  64
#define GSO_BYTES_MAX 65000
#define GSO_CTL_SIZE  (CTL_SIZE + CMSG_SPACE(sizeof(uint16_t)))

struct udp_session {
	struct worker *w;
	struct worker_listener *wl;
	struct backend *be;
	int fd; /* connected to be */
	struct engine_watch *watch;
	struct timer timer; /* idle expiry, lazily re-armed from last_active */
	uint64_t start, last_active;
	uint64_t bytes_up, bytes_down;
	uint64_t hash;
	uint32_t kill_gen;
	bool refused;	  /* the backend answered "port unreachable": move on the next datagram */
	bool per_client;  /* counted under the listener's max_conns_per_client */
	bool no_gso;	  /* a UDP_SEGMENT send failed (path MTU, no checksum offload): plain */
	int local_family; /* AF_INET/AF_INET6: reply from local (wildcard listener); 0: no need */
	union {
		struct in_pktinfo v4;
		struct in6_pktinfo v6;
	} local;
	struct udp_session *hnext; /* hash chain */
	struct list_head link;	   /* in udp_state.sessions */
	socklen_t client_len;
	struct sockaddr_storage client;
};

struct udp_state {
	struct udp_session **table;
	size_t mask; /* buckets - 1 (a power of two) */
	size_t n;
	uint64_t seed;
	struct list_head sessions; /* newest first */
	struct objpool pool;
	char *bufs; /* UDP_BATCH slots of UDP_DGRAM_MAX; untouched pages cost no memory */
	struct mmsghdr msgs[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	struct sockaddr_storage names[UDP_BATCH];
	_Alignas(struct cmsghdr) char ctl[UDP_BATCH][RECV_CTL_SIZE];
	_Alignas(struct cmsghdr) char reply_ctl[CTL_SIZE];
	/* One session's datagrams of a batch, one each (a GRO receive split), for its sendmmsg.
	 * The arrays below are touched only as far as they are used. */
	struct mmsghdr out[OUT_MAX];
	struct iovec out_iov[OUT_MAX];
	/* Runs of datagrams merged for UDP GSO: the messages, their iovecs and controls, and
	 * how many datagrams each carries. */
	struct mmsghdr gso[OUT_MAX];
	struct iovec gso_iov[OUT_MAX];
	_Alignas(struct cmsghdr) char gso_ctl[OUT_MAX][GSO_CTL_SIZE];
	int gso_count[OUT_MAX];
	bool gso_on; /* UDP GSO: LB_UDP_GSO=0 in the environment turns it off (A/B runs) */
	bool gro_on; /* UDP GRO on session sockets: LB_UDP_GRO=0 turns it off */
	int taken;   /* datagrams take_datagrams split out since the readiness event began */
};

/* A relay of datagrams of one session, in order: to its backend, or to its client. */
typedef void (*relay_fn)(struct udp_session *s, struct mmsghdr *v, int n);

/* n datagrams moved on one readiness event (a run received whole counts each of its
 * datagrams): under load, let the engine wait for a batch. */
static void note_work(struct worker *w, int n)
{
	if (n > 1 && w->ops->note_work)
		w->ops->note_work(w->eng, (unsigned)n);
}

static void session_ready(void *arg, uint32_t events);

/* ---- the session table ---- */

static uint64_t key_hash(const struct udp_state *u, const struct worker_listener *wl,
			 const struct sockaddr *sa)
{
	uint64_t h = hash_mix64(u->seed ^ (uintptr_t)wl);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		return hash_mix64(h ^ ((uint64_t)s4->sin_addr.s_addr << 16 | s4->sin_port));
	}
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
	uint64_t a, b;
	memcpy(&a, &s6->sin6_addr, 8);
	memcpy(&b, (const char *)&s6->sin6_addr + 8, 8);
	return hash_mix64(hash_mix64(hash_mix64(h ^ a) ^ b) ^ s6->sin6_port);
}

static bool same_client(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (b->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
	       x->sin6_scope_id == y->sin6_scope_id;
}

static struct udp_session *table_find(const struct udp_state *u, const struct worker_listener *wl,
				      const struct sockaddr *sa, uint64_t h)
{
	for (struct udp_session *s = u->table[h & u->mask]; s; s = s->hnext)
		if (s->hash == h && s->wl == wl && same_client(&s->client, sa))
			return s;
	return NULL;
}

/* Double the buckets when there are more sessions than buckets. Failure keeps the old
 * table: chains only get longer. */
static void table_grow(struct udp_state *u)
{
	size_t nb = (u->mask + 1) * 2;
	struct udp_session **t = calloc(nb, sizeof(*t));
	if (!t)
		return;
	for (size_t i = 0; i <= u->mask; i++) {
		for (struct udp_session *s = u->table[i], *next; s; s = next) {
			next = s->hnext;
			s->hnext = t[s->hash & (nb - 1)];
			t[s->hash & (nb - 1)] = s;
		}
	}
	free(u->table);
	u->table = t;
	u->mask = nb - 1;
}

static void table_insert(struct udp_state *u, struct udp_session *s)
{
	if (u->n >= u->mask + 1)
		table_grow(u);
	struct udp_session **b = &u->table[s->hash & u->mask];
	s->hnext = *b;
	*b = s;
	u->n++;
}

static void table_remove(struct udp_state *u, struct udp_session *s)
{
	struct udp_session **p = &u->table[s->hash & u->mask];
	while (*p != s)
		p = &(*p)->hnext;
	*p = s->hnext;
	u->n--;
}

/* ---- sessions ---- */

static void session_close(struct udp_session *s, const char *how)
{
	struct worker *w = s->w;
	struct udp_state *u = w->udp;

	timer_cancel(&w->timers, &s->timer);
	w->ops->unwatch(w->eng, s->watch);
	close(s->fd);
	if (w->log_access)
		listener_access_log(s->wl->l, (const struct sockaddr *)&s->client, s->be,
				    s->bytes_up, s->bytes_down, w->now - s->start, how);
	backend_release(s->be);
	listener_leave(s->wl->l, (const struct sockaddr *)&s->client, s->per_client);
	session_budget_release(w->udp_budget);
	table_remove(u, s);
	list_del(&s->link);
	objpool_put(&u->pool, s);
}

static void session_timer(struct timer *t, uint64_t now)
{
	struct udp_session *s = container_of(t, struct udp_session, timer);
	uint64_t idle = s->wl->l->cfg->idle_timeout_ms;

	if (!idle)
		return; /* a reload turned idle expiry off */
	if (now - s->last_active >= idle) {
		session_close(s, "idle timeout");
		return;
	}
	timer_arm(&s->w->timers, t, s->last_active + idle);
}

/* A socket connected to b, watched for replies to s. -errno on failure. */
static int backend_socket(struct udp_session *s, struct backend *b, struct engine_watch **watch)
{
	struct worker *w = s->w;
	int fd = socket(b->addr.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&b->addr.ss, b->addr.len) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	udp_relay_gro(fd, w->udp->gro_on);
	*watch = w->ops->watch(w->eng, fd, ENGINE_READ, session_ready, s);
	if (!*watch) {
		close(fd);
		return -ENOMEM;
	}
	return fd;
}

/* Pick a usable backend other than avoid, take a place on it and connect a socket: the
 * session's new backend, fd and watch. 0, or -ENOENT when nothing is usable, or the -errno
 * of the last socket that could not be opened (EMFILE...). s keeps its current backend,
 * fd and watch either way; the caller swaps. */
static int pick_backend(struct udp_session *s, struct backend *avoid, struct backend **be, int *fd,
			struct engine_watch **watch)
{
	struct backend *tried[LISTENER_MAX_TRIES], *b;
	uint8_t ntried = 0, avoided = 0;
	uint64_t turn = PICK_NO_TURN;
	int err = -ENOENT;

	if (avoid) {
		tried[ntried++] = avoid;
		avoided = 1;
	}
	while ((b = listener_pick_backend(s->wl->l, (const struct sockaddr *)&s->client, tried,
					  &ntried, avoided, &turn))) {
		*fd = backend_socket(s, b, watch);
		if (*fd >= 0) {
			*be = b;
			return 0;
		}
		/* Out of descriptors or memory is not the backend's fault, and the next backend
		 * would fare no better: the caller counts and logs it (rate-limited) with the
		 * datagram it drops. */
		err = *fd;
		backend_release(b);
		if (syserr_local_shortage(-err))
			break;
	}
	return err;
}

/* The session's backend is down or refused datagrams: move the session to another one
 * (SPEC: sessions on a dead backend continue elsewhere). Stays put if there is none. */
static void session_move(struct udp_session *s)
{
	struct worker *w = s->w;
	struct backend *be;
	struct engine_watch *watch;
	int fd;

	s->refused = false;
	if (pick_backend(s, s->be, &be, &fd, &watch) < 0)
		return;
	log_debug("listener %s: udp session moved from %s/%s to %s", s->wl->l->cfg->name,
		  s->be->pool->name, s->be->name, be->name);
	w->ops->unwatch(w->eng, s->watch);
	close(s->fd);
	backend_release(s->be);
	s->be = be;
	s->fd = fd;
	s->watch = watch;
	s->kill_gen = atomic_load_explicit(&be->kill_gen, memory_order_relaxed);
}

/* Remember the address a datagram was sent to (wildcard listeners only report it). */
static void note_local(struct udp_session *s, struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			s->local.v4 = (struct in_pktinfo){.ipi_spec_dst = pi.ipi_addr};
			s->local_family = AF_INET;
		} else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
			memcpy(&s->local.v6, CMSG_DATA(cm), sizeof(s->local.v6));
			s->local_family = AF_INET6;
		}
	}
}

/* A new session for the sender of mh, or NULL (its n datagrams are dropped and counted). */
static struct udp_session *session_new(struct worker *w, struct worker_listener *wl,
				       struct msghdr *mh, uint64_t n, uint64_t h)
{
	struct udp_state *u = w->udp;
	struct listener *l = wl->l;
	const struct cfg_listener *lc = l->cfg;
	const struct sockaddr *sa = mh->msg_name;

	bool per_client = false;

	if (!listener_admit(l, sa, n, w->now, &per_client))
		return NULL;
	if (!session_budget_take(w->udp_budget, w->now)) {
		listener_leave(l, sa, per_client);
		listener_reject(l, LISTENER_REJECT_RESOURCES, n, sa, "dropping datagram",
				"all UDP sessions lb may open are in use (fd limit)", w->now);
		return NULL;
	}
	struct udp_session *s = objpool_get(&u->pool);
	if (!s) {
		session_budget_release(w->udp_budget);
		listener_leave(l, sa, per_client);
		listener_reject(l, LISTENER_REJECT_RESOURCES, n, sa, "dropping datagram",
				"out of memory", w->now);
		return NULL;
	}
	memset(s, 0, sizeof(*s));
	s->per_client = per_client;
	s->w = w;
	s->wl = wl;
	s->hash = h;
	s->client_len = mh->msg_namelen;
	memcpy(&s->client, sa, mh->msg_namelen);
	int err = pick_backend(s, NULL, &s->be, &s->fd, &s->watch);
	if (err < 0) {
		session_budget_release(w->udp_budget);
		listener_leave(l, sa, per_client);
		objpool_put(&u->pool, s);
		listener_reject(l,
				syserr_local_shortage(-err) ? LISTENER_REJECT_RESOURCES
							    : LISTENER_REJECT_NO_BACKEND,
				n, sa, "dropping datagram",
				err == -ENOENT ? "no usable backend" : strerror(-err), w->now);
		return NULL;
	}
	s->kill_gen = atomic_load_explicit(&s->be->kill_gen, memory_order_relaxed);
	s->start = s->last_active = w->now;
	note_local(s, mh);
	timer_init(&s->timer, session_timer);
	if (lc->idle_timeout_ms)
		timer_arm(&w->timers, &s->timer, w->now + lc->idle_timeout_ms);
	table_insert(u, s);
	list_add(&s->link, &u->sessions);
	return s;
}

/* ---- datagrams ---- */

/* Receive up to UDP_BATCH messages from fd into the slots, with their control data (and
 * sender, if from_clients). A message is one datagram, or with UDP_GRO a run of them. Their
 * count, or -errno. */
static int batch_recv(struct udp_state *u, int fd, bool from_clients)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		u->iov[i] = (struct iovec){u->bufs + (size_t)i * UDP_DGRAM_MAX, UDP_DGRAM_MAX};
		u->msgs[i].msg_hdr = (struct msghdr){
		    .msg_name = from_clients ? &u->names[i] : NULL,
		    .msg_namelen = from_clients ? sizeof(u->names[i]) : 0,
		    .msg_iov = &u->iov[i],
		    .msg_iovlen = 1,
		    .msg_control = u->ctl[i],
		    .msg_controllen = RECV_CTL_SIZE,
		};
	}
	for (;;) {
		int n = recvmmsg(fd, u->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

/* Send v[0, n) with sendmmsg on fd until done or the socket refuses more. Returns how many
 * went out (the rest are dropped, as a full network queue would) and adds their bytes to
 * *bytes; *err is the errno that stopped it, 0 if none. */
static int batch_send(int fd, struct mmsghdr *v, int n, uint64_t *bytes, int *err)
{
	int sent = 0;
	*err = 0;
	while (sent < n) {
		int m = sendmmsg(fd, v + sent, (unsigned)(n - sent), MSG_DONTWAIT);
		if (m < 0 && errno == EINTR)
			continue;
		if (m <= 0) {
			*err = m < 0 ? errno : EAGAIN;
			break;
		}
		for (int i = sent; i < sent + m; i++)
			for (size_t j = 0; j < v[i].msg_hdr.msg_iovlen; j++)
				*bytes += v[i].msg_hdr.msg_iov[j].iov_len;
		sent += m;
	}
	return sent;
}

/* How many of v[0, n) go out as one GSO message: a run of datagrams of v[0]'s size, of
 * which only the last may be shorter. */
static int gso_run(const struct mmsghdr *v, int n)
{
	size_t size = v[0].msg_hdr.msg_iov->iov_len, total = size;
	int k = 1;

	if (size == 0)
		return 1;
	while (k < n && k < GSO_SEGS_MAX) {
		size_t len = v[k].msg_hdr.msg_iov->iov_len;
		if (len == 0 || len > size || total + len > GSO_BYTES_MAX)
			break;
		total += len;
		k++;
		if (len < size)
			break;
	}
	return k;
}

/* Merge v[0, n) (one destination, one control message each at most, alike) into GSO
 * messages in u->gso. Their count. */
static int gso_merge(struct udp_state *u, const struct mmsghdr *v, int n)
{
	int m = 0;

	for (int i = 0; i < n; m++) {
		int k = gso_run(v + i, n - i);
		const struct msghdr *first = &v[i].msg_hdr;
		struct msghdr *mh = &u->gso[m].msg_hdr;
		*mh = *first;
		u->gso_count[m] = k;
		if (k > 1) {
			for (int j = 0; j < k; j++)
				u->gso_iov[i + j] = *v[i + j].msg_hdr.msg_iov;
			mh->msg_iov = &u->gso_iov[i];
			mh->msg_iovlen = (size_t)k;
			char *ctl = u->gso_ctl[m];
			if (first->msg_controllen)
				memcpy(ctl, first->msg_control, first->msg_controllen);
			struct cmsghdr *cm = (struct cmsghdr *)(ctl + first->msg_controllen);
			uint16_t size = (uint16_t)first->msg_iov->iov_len;
			memset(cm, 0, CMSG_SPACE(sizeof(size)));
			cm->cmsg_level = SOL_UDP;
			cm->cmsg_type = UDP_SEGMENT;
			cm->cmsg_len = CMSG_LEN(sizeof(size));
			memcpy(CMSG_DATA(cm), &size, sizeof(size));
			mh->msg_control = ctl;
			mh->msg_controllen = first->msg_controllen + CMSG_SPACE(sizeof(size));
		}
		i += k;
	}
	return m;
}

/* batch_send for datagrams of one session: runs of equal size go out as UDP GSO messages
 * (one trip through the stack each), unless the session's GSO failed before. A GSO send
 * that fails for a reason other than a full queue turns GSO off for the session and sends
 * the rest one by one. */
static int session_send(struct udp_session *s, int fd, struct mmsghdr *v, int n, uint64_t *bytes,
			int *err)
{
	struct udp_state *u = s->w->udp;

	if (!u->gso_on || s->no_gso || n < 2)
		return batch_send(fd, v, n, bytes, err);
	int m = gso_merge(u, v, n);
	if (m == n)
		return batch_send(fd, v, n, bytes, err);
	int sent_msgs = batch_send(fd, u->gso, m, bytes, err);
	int sent = 0;
	for (int i = 0; i < sent_msgs; i++)
		sent += u->gso_count[i];
	if (*err && *err != EAGAIN && *err != ENOBUFS && *err != ECONNREFUSED &&
	    u->gso_count[sent_msgs] > 1) {
		log_debug("udp session: GSO send failed (%s); sending datagrams one by one",
			  strerror(*err));
		s->no_gso = true;
		sent += batch_send(fd, v + sent, n - sent, bytes, err);
	}
	return sent;
}

/* The segment size of a run of datagrams that UDP_GRO received as one message; 0 if it is
 * one datagram. */
static size_t gro_size(struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
			int size;
			memcpy(&size, CMSG_DATA(cm), sizeof(size));
			return size > 0 ? (size_t)size : 0;
		}
	}
	return 0;
}

/* The datagrams in received message m: a GRO run counts each. */
static uint64_t datagrams_in(struct mmsghdr *m)
{
	size_t seg = gro_size(&m->msg_hdr);
	return seg && seg < m->msg_len ? (m->msg_len + seg - 1) / seg : 1;
}

/* Append the datagrams of received message m (one, or a GRO run split back into its
 * datagrams) to u->out from index k, handing u->out to relay whenever it is full. The new
 * count. The entries keep m's header; relay sets their addresses. */
static int take_datagrams(struct udp_session *s, struct mmsghdr *m, int k, relay_fn relay)
{
	struct udp_state *u = s->w->udp;
	char *base = m->msg_hdr.msg_iov->iov_base;
	size_t len = m->msg_len, seg = gro_size(&m->msg_hdr), off = 0;

	if (!seg || seg > len)
		seg = len;
	do {
		if (k == OUT_MAX) {
			relay(s, u->out, k);
			k = 0;
		}
		size_t part = len - off < seg ? len - off : seg;
		u->out_iov[k] = (struct iovec){base + off, part};
		u->out[k].msg_hdr = m->msg_hdr;
		u->out[k].msg_hdr.msg_iov = &u->out_iov[k];
		u->out[k].msg_hdr.msg_iovlen = 1;
		k++;
		u->taken++;
		off += part;
	} while (off < len);
	return k;
}

/* v[0, n) came from s's client, in order: send them to its backend. */
static void forward(struct udp_session *s, struct mmsghdr *v, int n)
{
	struct backend *be0 = s->be;
	uint64_t bytes = 0;
	int err;

	if (s->refused ||
	    atomic_load_explicit(&s->be->health, memory_order_relaxed) == BACKEND_DOWN)
		session_move(s);
	for (int i = 0; i < n; i++) {
		v[i].msg_hdr.msg_name = NULL;
		v[i].msg_hdr.msg_namelen = 0;
		v[i].msg_hdr.msg_control = NULL;
		v[i].msg_hdr.msg_controllen = 0;
	}
	int sent = session_send(s, s->fd, v, n, &bytes, &err);
	if (err == ECONNREFUSED && sent < n) {
		/* An earlier datagram drew "port unreachable": this backend is gone. */
		atomic_fetch_add_explicit(&s->be->connect_failures, 1, memory_order_relaxed);
		session_move(s);
		if (s->be != be0)
			session_send(s, s->fd, v + sent, n - sent, &bytes, &err);
	}
	s->bytes_up += bytes;
	s->last_active = s->w->now;
	atomic_fetch_add_explicit(&s->be->bytes_out, bytes, memory_order_relaxed);
}

void udp_relay_listener_ready(void *arg, uint32_t events)
{
	struct worker_listener *wl = arg;
	struct worker *w = wl->w;
	struct udp_state *u = w->udp;
	struct udp_session *sess[UDP_BATCH];
	(void)events;

	u->taken = 0;
	for (;;) {
		int n = batch_recv(u, wl->fd, true);
		if (n < 0) {
			if (n != -EAGAIN)
				log_debug("listener %s: recvmmsg: %s", wl->l->cfg->name,
					  strerror(-n));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct msghdr *mh = &u->msgs[i].msg_hdr;
			const struct sockaddr *sa = mh->msg_name;
			sess[i] = NULL;
			if (mh->msg_flags & MSG_TRUNC ||
			    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
				continue;
			uint64_t h = key_hash(u, wl, sa);
			sess[i] = table_find(u, wl, sa, h);
			if (!sess[i])
				sess[i] = session_new(w, wl, mh, datagrams_in(&u->msgs[i]), h);
		}
		/* Each session's datagrams of the batch, in order, go out in one sendmmsg. */
		for (int i = 0; i < n; i++) {
			struct udp_session *s = sess[i];
			int k = 0;
			if (!s)
				continue;
			for (int j = i; j < n; j++) {
				if (sess[j] == s) {
					k = take_datagrams(s, &u->msgs[j], k, forward);
					sess[j] = NULL;
				}
			}
			forward(s, u->out, k);
		}
		if (n < UDP_BATCH)
			break; /* drained: the next datagram raises a new event */
	}
	note_work(w, u->taken);
}

/* Point v[0, n) at s's client, from the address it sent to. */
static void address_replies(struct udp_state *u, struct udp_session *s, struct mmsghdr *v, int n)
{
	size_t ctl_len = 0;

	if (s->local_family) {
		struct msghdr mh = {.msg_control = u->reply_ctl, .msg_controllen = CTL_SIZE};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		bool v4 = s->local_family == AF_INET;
		size_t len = v4 ? sizeof(s->local.v4) : sizeof(s->local.v6);
		memset(u->reply_ctl, 0, sizeof(u->reply_ctl));
		cm->cmsg_level = v4 ? IPPROTO_IP : IPPROTO_IPV6;
		cm->cmsg_type = v4 ? IP_PKTINFO : IPV6_PKTINFO;
		cm->cmsg_len = CMSG_LEN(len);
		memcpy(CMSG_DATA(cm), &s->local, len);
		ctl_len = CMSG_SPACE(len);
	}
	for (int i = 0; i < n; i++) {
		struct msghdr *mh = &v[i].msg_hdr;
		mh->msg_name = &s->client;
		mh->msg_namelen = s->client_len;
		mh->msg_control = ctl_len ? u->reply_ctl : NULL;
		mh->msg_controllen = ctl_len;
	}
}

/* v[0, n) came from s's backend, in order: send them to its client from the listener's
 * socket. */
static void reply(struct udp_session *s, struct mmsghdr *v, int n)
{
	uint64_t bytes = 0;
	int err;

	address_replies(s->w->udp, s, v, n);
	session_send(s, s->wl->fd, v, n, &bytes, &err);
	s->bytes_down += bytes;
	s->last_active = s->w->now;
	atomic_fetch_add_explicit(&s->be->bytes_in, bytes, memory_order_relaxed);
}

/* Replies from the backend: send them to the client. */
static void session_ready(void *arg, uint32_t events)
{
	struct udp_session *s = arg;
	struct udp_state *u = s->w->udp;
	(void)events;

	u->taken = 0;
	for (;;) {
		int n = batch_recv(u, s->fd, false);
		if (n == -ECONNREFUSED) {
			s->refused = true; /* a datagram drew "port unreachable" */
			atomic_fetch_add_explicit(&s->be->connect_failures, 1,
						  memory_order_relaxed);
			continue;
		}
		if (n < 0)
			break;
		s->refused = false;
		int k = 0;
		for (int i = 0; i < n; i++)
			k = take_datagrams(s, &u->msgs[i], k, reply);
		reply(s, u->out, k);
		if (n < UDP_BATCH)
			break;
	}
	note_work(s->w, u->taken);
}

/* ---- worker hooks ---- */

bool udp_relay_gro_wanted(void)
{
	const char *gro = getenv("LB_UDP_GRO");
	return !(gro && strcmp(gro, "0") == 0);
}

void udp_relay_gro(int fd, bool on)
{
	int one = 1;
	/* Best effort: without it (kernels before 5.0) datagrams arrive one by one. */
	if (on)
		(void)setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
}

void udp_relay_listener_closed(struct worker *w, struct worker_listener *wl)
{
	struct udp_session *s, *next;

	list_for_each_entry_safe(s, next, &w->udp->sessions, link)
	{
		if (s->wl == wl)
			session_close(s, "listener closed");
	}
}

void udp_relay_kill_scan(struct worker *w)
{
	struct udp_session *s, *next;

	list_for_each_entry_safe(s, next, &w->udp->sessions, link)
	{
		if (atomic_load_explicit(&s->be->kill_gen, memory_order_relaxed) != s->kill_gen)
			session_close(s, "killed");
	}
}

int udp_relay_init(struct worker *w)
{
	struct udp_state *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->table = calloc(TABLE_MIN, sizeof(*u->table));
	u->bufs = malloc((size_t)UDP_BATCH * UDP_DGRAM_MAX);
	if (!u->table || !u->bufs) {
		free(u->table);
		free(u->bufs);
		free(u);
		return -ENOMEM;
	}
	u->mask = TABLE_MIN - 1;
	const char *gso = getenv("LB_UDP_GSO");
	u->gso_on = !(gso && strcmp(gso, "0") == 0);
	u->gro_on = udp_relay_gro_wanted();
	list_init(&u->sessions);
	if (getrandom(&u->seed, sizeof(u->seed), GRND_NONBLOCK) != sizeof(u->seed))
		u->seed = timer_now_ms() ^ (uintptr_t)u;
	objpool_init(&u->pool, sizeof(struct udp_session), SESSION_SLAB);
	w->udp = u;
	return 0;
}

void udp_relay_free(struct worker *w)
{
	struct udp_state *u = w->udp;
	if (!u)
		return;
	objpool_destroy(&u->pool);
	free(u->table);
	free(u->bufs);
	free(u);
	w->udp = NULL;
}
