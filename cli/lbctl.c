/* lbctl: the control CLI (SPEC.md "Control API and lbctl"). A thin parser over the control
 * socket's NDJSON: one command line -> one request -> one response, printed as an aligned
 * table (or the raw data with --json). Exit 0 ok, 1 error response, 2 usage/unreachable. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_USAGE = 2 };

/* Socket used without -s and $LB_SOCKET: lb's default is "lb.sock" beside its config. */
#define DEFAULT_SOCKET "./lb.sock"
/* How long to wait for lb's answer; every command is answered in milliseconds. */
#define REPLY_TIMEOUT_MS 10000
#define MAX_COLS	 16
/* One formatted cell: room for a readiness reason with a listener and a pool name. */
#define FMT_MAX 160

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: lbctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
	    "\n"
	    "commands:\n"
	    "  status                              version, engine, uptime, listeners, totals\n"
	    "  backends [POOL]                     backends with state, counters, last check\n"
	    "  enable|disable|drain POOL/BACKEND   set the admin state\n"
	    "  kill POOL/BACKEND                   close the backend's open connections\n"
	    "  weight POOL/BACKEND N               set the weight (0-1000)\n"
	    "  add POOL NAME ADDRESS [--weight N] [--max-conns N] [--backup] [--hash-key K]\n"
	    "  remove POOL/BACKEND [--force]       refused while busy unless --force\n"
	    "  algorithm POOL NAME                 switch the pool's algorithm\n"
	    "  reload                              re-read the configuration file\n"
	    "  metrics                             Prometheus text, as GET /metrics\n"
	    "  health POOL/BACKEND up|down|auto    force the health (a shared verdict); auto =\n"
	    "                                      the prober decides again\n"
	    "  ready                               ready for traffic? (as GET /ready; exit 1 if "
	    "not)\n"
	    "  withdraw                            report not ready (routes go), keep serving\n"
	    "  rejoin                              report readiness again after withdraw\n"
	    "\n"
	    "options:\n"
	    "  -s, --socket PATH  control socket (default: $LB_SOCKET, else %s)\n"
	    "  --json             print the response's raw data as JSON\n"
	    "  -h, --help         this text\n"
	    "\n"
	    "exit status: 0 success, 1 lb answered with an error, 2 usage error or lb "
	    "unreachable\n",
	    DEFAULT_SOCKET);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("lbctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(see lbctl --help)\n", stderr);
	return EXIT_USAGE;
}

/* ---- talking to lb ---- */

static const char *errno_name(int err)
{
	const char *n = strerrorname_np(err);
	return n ? n : "?";
}

static int dial(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "lbctl: socket path too long: %s\n", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return fd;
	int err = errno;
	fprintf(stderr, "lbctl: cannot connect to %s: is lb running? (%s)\n", path,
		errno_name(err));
	if (fd >= 0)
		close(fd);
	return -1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Send req as one line, read one line back. Returns the parsed response or NULL. */
static json_t *roundtrip(const char *path, json_t *req)
{
	char *line = json_dumps(req, JSON_COMPACT), *buf = NULL;
	size_t len = 0, cap = 0;
	json_t *resp = NULL;
	int fd = dial(path);

	if (fd < 0 || !line)
		goto out;
	size_t n = strlen(line);
	line[n] = '\n'; /* json_dumps' NUL becomes the newline; we send n + 1 bytes */
	for (size_t off = 0; off <= n;) {
		ssize_t w = send(fd, line + off, n + 1 - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, "lbctl: %s: send: %s\n", path, strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}
	uint64_t deadline = now_ms() + REPLY_TIMEOUT_MS;
	for (;;) {
		if (len && buf[len - 1] == '\n')
			break;
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 65536;
			char *b = realloc(buf, cap);
			if (!b)
				goto out;
			buf = b;
		}
		uint64_t now = now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) == 0) {
			fprintf(stderr, "lbctl: %s: no answer within %d ms\n", path,
				REPLY_TIMEOUT_MS);
			goto out;
		}
		ssize_t r = recv(fd, buf + len, cap - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "lbctl: %s: connection closed before the answer%s%s\n",
				path, r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
			goto out;
		}
		len += (size_t)r;
	}
	json_error_t jerr;
	resp = json_loadb(buf, len, 0, &jerr);
	if (!resp || !json_is_object(resp) || !json_is_boolean(json_object_get(resp, "ok"))) {
		fprintf(stderr, "lbctl: %s: malformed answer: %s\n", path,
			resp ? "no \"ok\" member" : jerr.text);
		json_decref(resp);
		resp = NULL;
	}
out:
	if (fd >= 0)
		close(fd);
	free(line);
	free(buf);
	return resp;
}

/* ---- tables ---- */

struct table {
	size_t ncols, nrows;
	char **cells; /* nrows * ncols, row-major */
};

static void table_row(struct table *t, ...)
{
	va_list ap;
	char **c = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(*c));

	if (!c)
		return;
	t->cells = c;
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);
		c[t->nrows * t->ncols + i] = strdup(s ? s : "");
	}
	va_end(ap);
	t->nrows++;
}

static void table_print(struct table *t)
{
	size_t w[MAX_COLS] = {0};

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			size_t l = s ? strlen(s) : 0;
			if (l > w[i])
				w[i] = l;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			if (i + 1 < t->ncols)
				printf("%-*s  ", (int)w[i], s ? s : "");
			else
				printf("%s\n", s ? s : "");
		}
		for (size_t i = 0; i < t->ncols; i++)
			free(t->cells[r * t->ncols + i]);
	}
	free(t->cells);
	t->cells = NULL;
	t->nrows = 0;
}

/* ---- formatting ---- */

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static long long num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? json_integer_value(v) : (long long)json_number_value(v);
}

/* Rotating static buffers: several formatted numbers may feed one table row. */
static char *fmtbuf(void)
{
	static char bufs[16][FMT_MAX];
	static unsigned i;
	return bufs[i++ % 16];
}

static const char *fmt_str(const char *fmt, const char *s)
{
	char *b = fmtbuf();
	snprintf(b, FMT_MAX, fmt, s);
	return b;
}

static const char *fmt_int(json_t *o, const char *key)
{
	char *b = fmtbuf();
	snprintf(b, FMT_MAX, "%lld", num(o, key));
	return b;
}

/* Bytes with an IEC suffix: 999B, 1.5KiB, 12MiB. */
static const char *fmt_bytes(long long v)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	char *b = fmtbuf();
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(b, FMT_MAX, "%lldB", v);
	else
		snprintf(b, FMT_MAX, d < 10 ? "%.1f%s" : "%.0f%s", d, unit[u]);
	return b;
}

static const char *fmt_duration(long long s)
{
	char *b = fmtbuf();
	if (s >= 86400)
		snprintf(b, FMT_MAX, "%lldd%02lldh%02lldm", s / 86400, s % 86400 / 3600,
			 s % 3600 / 60);
	else if (s >= 3600)
		snprintf(b, FMT_MAX, "%lldh%02lldm%02llds", s / 3600, s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(b, FMT_MAX, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(b, FMT_MAX, "%llds", s);
	return b;
}

static const char *fmt_check(json_t *b)
{
	char *out = fmtbuf();
	const char *res = str(b, "check");

	if (strcmp(res, "pass") == 0)
		snprintf(out, FMT_MAX, "pass %.1fms",
			 json_number_value(json_object_get(b, "check_latency_ms")));
	else if (strcmp(res, "fail") == 0)
		snprintf(out, FMT_MAX, "fail: %s", str(b, "check_reason"));
	else
		snprintf(out, FMT_MAX, "-");
	return out;
}

/* Pools whose algorithm keeps a table: its fingerprint, equal across a fleet that agrees. */
static void print_tables(json_t *tables)
{
	struct table tab = {.ncols = 3};
	json_t *t;
	size_t i;

	table_row(&tab, "POOL", "ALGORITHM", "TABLE FINGERPRINT");
	json_array_foreach (tables, i, t)
		if (json_is_string(json_object_get(t, "fingerprint")))
			table_row(&tab, str(t, "pool"), str(t, "algorithm"), str(t, "fingerprint"));
	if (tab.nrows > 1) {
		printf("\n");
		table_print(&tab);
	} else {
		table_print(&tab); /* frees the header row */
	}
}

static void print_status(json_t *d)
{
	json_t *t = json_object_get(d, "totals"), *ls = json_object_get(d, "listeners"), *l;
	struct table tab = {.ncols = 2};
	size_t i;

	table_row(&tab, "version:", str(d, "version"));
	table_row(&tab, "engine:", str(d, "engine"));
	table_row(&tab, "workers:", fmt_int(d, "workers"));
	table_row(&tab, "pid:", fmt_int(d, "pid"));
	table_row(&tab, "uptime:", fmt_duration(num(d, "uptime_s")));
	table_row(&tab, "config:", str(d, "config"));
	table_row(&tab, "pools:", fmt_int(d, "pools"));
	table_row(&tab, "backends:", fmt_int(d, "backends"));
	table_row(&tab, "ready:",
		  json_is_true(json_object_get(d, "ready"))
		      ? "yes"
		      : fmt_str("no: %s", str(d, "ready_reason")));
	table_row(&tab, "connections:", fmt_int(t, "connections"));
	table_row(&tab, "active:", fmt_int(t, "active"));
	table_row(&tab, "rejected:", fmt_int(t, "rejected"));
	char io[112];
	snprintf(io, sizeof(io), "%s / %s", fmt_bytes(num(t, "bytes_in")),
		 fmt_bytes(num(t, "bytes_out")));
	table_row(&tab, "bytes in/out:", io);
	table_print(&tab);
	printf("\n");
	tab.ncols = 7;
	table_row(&tab, "LISTENER", "PROTOCOL", "LISTEN", "POOL", "ACTIVE", "ACCEPTED", "REJECTED");
	json_array_foreach (ls, i, l) {
		json_t *rej = json_object_get(l, "rejected"), *v;
		const char *k;
		long long sum = 0;
		json_object_foreach (rej, k, v)
			sum += json_integer_value(v);
		char *r = fmtbuf();
		snprintf(r, FMT_MAX, "%lld", sum);
		table_row(&tab, str(l, "name"), str(l, "protocol"), str(l, "listen"),
			  str(l, "pool"), fmt_int(l, "active"), fmt_int(l, "accepted"), r);
	}
	table_print(&tab);
	print_tables(json_object_get(d, "tables"));
}

static void print_backends(json_t *d)
{
	struct table tab = {.ncols = 12};
	json_t *b;
	size_t i;

	table_row(&tab, "POOL", "NAME", "ADDRESS", "STATE", "ADMIN", "WEIGHT", "ACTIVE", "TOTAL",
		  "IN", "OUT", "FAILURES", "CHECK");
	json_array_foreach (d, i, b) {
		char *w = fmtbuf();
		snprintf(w, FMT_MAX, "%lld%s", num(b, "weight"),
			 json_is_true(json_object_get(b, "backup")) ? " (backup)" : "");
		const char *state = str(b, "state");
		if (strcmp(str(b, "health_source"), "forced") == 0)
			state = fmt_str("%s (forced)", state);
		table_row(&tab, str(b, "pool"), str(b, "name"), str(b, "address"), state,
			  str(b, "admin"), w, fmt_int(b, "active"), fmt_int(b, "total"),
			  fmt_bytes(num(b, "bytes_in")), fmt_bytes(num(b, "bytes_out")),
			  fmt_int(b, "failures"), fmt_check(b));
		if (tab.nrows >= 64)
			table_print(&tab); /* bounded memory; widths then restart per block */
	}
	table_print(&tab);
	const char *last = NULL;
	json_array_foreach (d, i, b) {
		const char *fp = json_string_value(json_object_get(b, "fingerprint"));
		if (!fp || (last && strcmp(last, str(b, "pool")) == 0))
			continue;
		last = str(b, "pool");
		printf("pool %s: table fingerprint %s\n", last, fp);
	}
}

static void print_result(const char *cmd, json_t *d)
{
	if (strcmp(cmd, "status") == 0)
		print_status(d);
	else if (strcmp(cmd, "backends") == 0)
		print_backends(d);
	else if (strcmp(cmd, "metrics") == 0)
		fputs(json_string_value(d) ? json_string_value(d) : "", stdout);
	else if (strcmp(cmd, "kill") == 0)
		printf("%s/%s: closing %lld connections\n", str(d, "pool"), str(d, "backend"),
		       num(d, "killed"));
	else if (strcmp(cmd, "remove") == 0)
		printf("%s/%s: removed%s\n", str(d, "pool"), str(d, "backend"),
		       num(d, "killed") ? " (its connections are being closed)" : "");
	else if (strcmp(cmd, "algorithm") == 0)
		printf("%s: algorithm %s (was %s)\n", str(d, "pool"), str(d, "algorithm"),
		       str(d, "previous"));
	else if (strcmp(cmd, "weight") == 0)
		printf("%s/%s: weight %lld\n", str(d, "pool"), str(d, "name"), num(d, "weight"));
	else if (strcmp(cmd, "add") == 0)
		printf("%s/%s: added (%s, weight %lld)\n", str(d, "pool"), str(d, "name"),
		       str(d, "address"), num(d, "weight"));
	else if (strcmp(cmd, "ready") == 0 || strcmp(cmd, "withdraw") == 0 ||
		 strcmp(cmd, "rejoin") == 0)
		printf(json_is_true(json_object_get(d, "ready")) ? "%sready\n"
								 : "%snot ready: %s\n",
		       strcmp(cmd, "ready") == 0      ? ""
		       : strcmp(cmd, "withdraw") == 0 ? "withdrawn: "
						      : "rejoined: ",
		       str(d, "reason"));
	else if (strcmp(cmd, "health") == 0)
		printf("%s/%s: %s (%s)\n", str(d, "pool"), str(d, "name"), str(d, "state"),
		       strcmp(str(d, "health_source"), "forced") == 0 ? "forced"
								      : "decided by the prober");
	else if (json_is_object(d) && json_object_get(d, "admin"))
		printf("%s/%s: %s\n", str(d, "pool"), str(d, "name"), str(d, "admin"));
	else {
		char *s = json_dumps(d, JSON_INDENT(2) | JSON_ENCODE_ANY);
		if (s)
			puts(s);
		free(s);
	}
}

/* ---- command line -> request ---- */

struct args {
	const char *pos[8];
	int npos;
	const char *weight, *max_conns, *hash_key;
	bool backup, force;
};

static bool parse_num(const char *s, long long min, long long max, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* "POOL/BACKEND" -> members pool and backend. */
static bool set_target(json_t *req, const char *s)
{
	const char *slash = strchr(s, '/');
	if (!slash || slash == s || !slash[1])
		return false;
	json_object_set_new(req, "pool", json_stringn(s, (size_t)(slash - s)));
	json_object_set_new(req, "backend", json_string(slash + 1));
	return true;
}

/* Build the request for cmd, or print a usage error and return NULL. */
static json_t *build(const char *cmd, struct args *a, int *rc)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd);
	long long v;
	*rc = EXIT_USAGE;

#define NEED(n, what)                                                                              \
	do {                                                                                       \
		if (a->npos != (n)) {                                                              \
			usage_error("usage: lbctl %s %s", cmd, what);                              \
			goto bad;                                                                  \
		}                                                                                  \
	} while (0)
	if ((a->weight || a->max_conns || a->backup || a->hash_key) && strcmp(cmd, "add") != 0) {
		usage_error("--weight, --max-conns, --backup and --hash-key go with add");
		goto bad;
	}
	if (a->force && strcmp(cmd, "remove") != 0) {
		usage_error("--force goes with remove");
		goto bad;
	}
	if (!strcmp(cmd, "status") || !strcmp(cmd, "reload") || !strcmp(cmd, "metrics") ||
	    !strcmp(cmd, "ready") || !strcmp(cmd, "withdraw") || !strcmp(cmd, "rejoin")) {
		NEED(0, "");
	} else if (!strcmp(cmd, "backends")) {
		if (a->npos > 1) {
			usage_error("usage: lbctl backends [POOL]");
			goto bad;
		}
		if (a->npos == 1)
			json_object_set_new(req, "pool", json_string(a->pos[0]));
	} else if (!strcmp(cmd, "enable") || !strcmp(cmd, "disable") || !strcmp(cmd, "drain") ||
		   !strcmp(cmd, "kill") || !strcmp(cmd, "remove")) {
		NEED(1, "POOL/BACKEND");
		if (!set_target(req, a->pos[0])) {
			usage_error("expected POOL/BACKEND, got \"%s\"", a->pos[0]);
			goto bad;
		}
		if (a->force)
			json_object_set_new(req, "force", json_true());
	} else if (!strcmp(cmd, "weight")) {
		NEED(2, "POOL/BACKEND N");
		if (!set_target(req, a->pos[0]) || !parse_num(a->pos[1], 0, 1000, &v)) {
			usage_error("usage: lbctl weight POOL/BACKEND N (N from 0 to 1000)");
			goto bad;
		}
		json_object_set_new(req, "weight", json_integer(v));
	} else if (!strcmp(cmd, "add")) {
		NEED(3, "POOL NAME ADDRESS [--weight N] [--max-conns N] [--backup]");
		json_object_set_new(req, "pool", json_string(a->pos[0]));
		json_object_set_new(req, "name", json_string(a->pos[1]));
		json_object_set_new(req, "address", json_string(a->pos[2]));
		if (a->weight) {
			if (!parse_num(a->weight, 0, 1000, &v)) {
				usage_error("--weight takes 0 to 1000, not \"%s\"", a->weight);
				goto bad;
			}
			json_object_set_new(req, "weight", json_integer(v));
		}
		if (a->max_conns) {
			if (!parse_num(a->max_conns, 0, 1000000000, &v)) {
				usage_error("--max-conns takes a number >= 0, not \"%s\"",
					    a->max_conns);
				goto bad;
			}
			json_object_set_new(req, "max_conns", json_integer(v));
		}
		if (a->backup)
			json_object_set_new(req, "backup", json_true());
		if (a->hash_key)
			json_object_set_new(req, "hash_key", json_string(a->hash_key));
	} else if (!strcmp(cmd, "health")) {
		NEED(2, "POOL/BACKEND up|down|auto");
		if (!set_target(req, a->pos[0]) ||
		    (strcmp(a->pos[1], "up") && strcmp(a->pos[1], "down") &&
		     strcmp(a->pos[1], "auto"))) {
			usage_error("usage: lbctl health POOL/BACKEND up|down|auto");
			goto bad;
		}
		json_object_set_new(req, "state", json_string(a->pos[1]));
	} else if (!strcmp(cmd, "algorithm")) {
		NEED(2, "POOL NAME");
		json_object_set_new(req, "pool", json_string(a->pos[0]));
		json_object_set_new(req, "algorithm", json_string(a->pos[1]));
	} else {
		usage_error("unknown command \"%s\"", cmd);
		goto bad;
	}
#undef NEED
	return req;
bad:
	json_decref(req);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *sock = getenv("LB_SOCKET"), *cmd = NULL;
	bool as_json = false;
	struct args a = {0};

	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		const char **val = NULL;

		if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
			usage(stdout);
			return EXIT_OK;
		} else if (!strcmp(s, "--json")) {
			as_json = true;
		} else if (!strcmp(s, "--backup")) {
			a.backup = true;
		} else if (!strcmp(s, "--force") || !strcmp(s, "-f")) {
			a.force = true;
		} else if (!strcmp(s, "-s") || !strcmp(s, "--socket")) {
			val = &sock;
		} else if (!strncmp(s, "--socket=", 9)) {
			sock = s + 9;
		} else if (!strcmp(s, "--weight")) {
			val = &a.weight;
		} else if (!strncmp(s, "--weight=", 9)) {
			a.weight = s + 9;
		} else if (!strcmp(s, "--hash-key")) {
			val = &a.hash_key;
		} else if (!strncmp(s, "--hash-key=", 11)) {
			a.hash_key = s + 11;
		} else if (!strcmp(s, "--max-conns")) {
			val = &a.max_conns;
		} else if (!strncmp(s, "--max-conns=", 12)) {
			a.max_conns = s + 12;
		} else if (s[0] == '-' && s[1]) {
			return usage_error("unknown option %s", s);
		} else if (!cmd) {
			cmd = s;
		} else if (a.npos < (int)(sizeof(a.pos) / sizeof(a.pos[0]))) {
			a.pos[a.npos++] = s;
		} else {
			return usage_error("too many arguments");
		}
		if (val) {
			if (++i >= argc)
				return usage_error("%s needs a value", s);
			*val = argv[i];
		}
	}
	if (!cmd) {
		usage(stderr);
		return EXIT_USAGE;
	}
	int rc;
	json_t *req = build(cmd, &a, &rc);
	if (!req)
		return rc;
	json_t *resp = roundtrip(sock, req);
	json_decref(req);
	if (!resp)
		return EXIT_USAGE;
	rc = EXIT_OK;
	if (!json_is_true(json_object_get(resp, "ok"))) {
		fprintf(stderr, "lbctl: %s\n", str(resp, "error"));
		rc = EXIT_ERROR;
	} else if (as_json) {
		char *s =
		    json_dumps(json_object_get(resp, "data"), JSON_INDENT(2) | JSON_ENCODE_ANY);
		if (s)
			puts(s);
		free(s);
	} else {
		print_result(cmd, json_object_get(resp, "data"));
	}
	/* `lbctl ready` answers in its exit status too, for watchdogs and track scripts. */
	if (rc == EXIT_OK && strcmp(cmd, "ready") == 0 &&
	    !json_is_true(json_object_get(json_object_get(resp, "data"), "ready")))
		rc = EXIT_ERROR;
	json_decref(resp);
	return rc;
}
