/* lbctl: the control CLI (SPEC.md "Control API and lbctl"). A thin parser over the control
 * socket's NDJSON: one command line -> one request -> one response, printed as an aligned
 * table (or the raw data with --json). Exit 0 ok, 1 error response, 2 usage/unreachable.
 * What the commands and options are comes from the tables in commands.c. */
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

#include "cli/lbctl.h"

/* How long to wait for lb's answer; every command is answered in milliseconds. */
#define REPLY_TIMEOUT_MS 10000
/* --help: command synopses are padded to this column, then the help line follows. */
#define HELP_COLUMN 38

int lbctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("lbctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(see lbctl --help)\n", stderr);
	return LBCTL_USAGE;
}

/* ---- reading the tables ---- */

int lbctl_spec_word(const char *spec, int i, char *buf, size_t len, bool *optional)
{
	const char *p = spec;

	for (;;) {
		while (*p == ' ')
			p++;
		if (!*p)
			return -1;
		size_t n = strcspn(p, " ");
		if (i-- == 0) {
			*optional = p[0] == '[';
			if (*optional) {
				p++;
				n -= n >= 2 ? 2 : 1;
			}
			snprintf(buf, len, "%.*s", (int)n, p);
			return (int)n;
		}
		p += n;
	}
}

/* How many positional arguments the spec takes: at least *min, at most *max. */
static void spec_arity(const char *spec, int *min, int *max)
{
	char w[SPEC_WORD_MAX];
	bool opt;

	*min = *max = 0;
	while (lbctl_spec_word(spec, *max, w, sizeof(w), &opt) >= 0) {
		if (!opt)
			(*min)++;
		(*max)++;
	}
}

/* A lower-case spec word is a list of literal choices; is arg one of them? */
static bool spec_allows(const char *word, const char *arg)
{
	size_t n = strlen(arg);

	if (word[0] < 'a' || word[0] > 'z')
		return true; /* a value, checked by the command's build */
	if (strchr(arg, '|'))
		return false; /* "up|down" is the list, not a choice in it */
	for (const char *p = word; p; p = strchr(p, '|')) {
		if (*p == '|')
			p++;
		if (strncmp(p, arg, n) == 0 && (p[n] == '|' || !p[n]))
			return true;
	}
	return false;
}

int lbctl_synopsis(FILE *out, const struct lbctl_cmd *c)
{
	int n = fprintf(out, "%s%s%s", c->name, *c->args ? " " : "", c->args);

	for (int i = 0; i < OPT_COUNT; i++) {
		const struct lbctl_opt *o = &lbctl_opts[i];
		if (c->opts & OPT_BIT(i))
			n += fprintf(out, " [%s%s%s]", o->name, o->value ? " " : "",
				     o->value ? o->value : "");
	}
	return n;
}

int lbctl_cmd_usage(const struct lbctl_cmd *c, const char *extra)
{
	fputs("lbctl: usage: lbctl ", stderr);
	lbctl_synopsis(stderr, c);
	if (extra)
		fprintf(stderr, " %s", extra);
	fputs("\n(see lbctl --help)\n", stderr);
	return LBCTL_USAGE;
}

static const struct lbctl_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < lbctl_ncmds; i++)
		if (strcmp(lbctl_cmds[i].name, name) == 0)
			return &lbctl_cmds[i];
	return NULL;
}

/* Print text indented to col after the first line, which starts where the cursor is. */
static void print_indented(FILE *out, const char *text, int col)
{
	for (const char *p = text;;) {
		size_t n = strcspn(p, "\n");
		fprintf(out, "%.*s\n", (int)n, p);
		if (!p[n])
			return;
		p += n + 1;
		fprintf(out, "%*s", col, "");
	}
}

static void usage(FILE *out)
{
	fputs("usage: lbctl", out);
	for (int i = 0; i < OPT_COUNT; i++) {
		const struct lbctl_opt *o = &lbctl_opts[i];
		if (o->global && o->value)
			fprintf(out, " [%s %s]", o->alias ? o->alias : o->name, o->value);
		else if (o->global && i != OPT_HELP)
			fprintf(out, " [%s]", o->alias ? o->alias : o->name);
	}
	fputs(" COMMAND [ARGS]\n\ncommands:\n", out);
	for (size_t i = 0; i < lbctl_ncmds; i++) {
		int n = fprintf(out, "  ") + lbctl_synopsis(out, &lbctl_cmds[i]);
		if (n >= HELP_COLUMN - 1)
			n = fprintf(out, "\n") - 1;
		fprintf(out, "%*s", HELP_COLUMN - n, "");
		print_indented(out, lbctl_cmds[i].help, HELP_COLUMN);
	}
	fputs("\noptions:\n", out);
	for (int i = 0; i < OPT_COUNT; i++) {
		const struct lbctl_opt *o = &lbctl_opts[i];
		char flag[64];
		snprintf(flag, sizeof(flag), "%s%s%s%s%s", o->alias ? o->alias : "",
			 o->alias ? ", " : "", o->name, o->value ? " " : "",
			 o->value ? o->value : "");
		fprintf(out, "  %-18s %s\n", flag, o->help);
	}
	fputs("\nexit status: 0 success, 1 lb answered with an error, 2 usage error or lb "
	      "unreachable\n",
	      out);
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

/* ---- command line ---- */

/* The option argv[*i] names, with its value (from "--name=VALUE" or the next argument) in
 * a->opt. Returns 0, or LBCTL_USAGE after saying why. */
static int take_option(int argc, char **argv, int *i, struct lbctl_args *a)
{
	const char *s = argv[*i];

	for (int id = 0; id < OPT_COUNT; id++) {
		const struct lbctl_opt *o = &lbctl_opts[id];
		size_t n = strlen(o->name);

		if (!strcmp(s, o->name) || (o->alias && !strcmp(s, o->alias))) {
			if (!o->value) {
				a->opt[id] = "";
			} else if (++*i >= argc) {
				return lbctl_usage_error("%s needs a value", s);
			} else {
				a->opt[id] = argv[*i];
			}
			return 0;
		}
		if (o->value && !strncmp(s, o->name, n) && s[n] == '=') {
			a->opt[id] = s + n + 1;
			return 0;
		}
	}
	return lbctl_usage_error("unknown option %s", s);
}

/* The command names that take option id, comma-separated, into buf. */
static const char *cmds_taking(int id, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < lbctl_ncmds && off < len; i++)
		if (lbctl_cmds[i].opts & OPT_BIT(id))
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? ", " : "",
						lbctl_cmds[i].name);
	return buf;
}

/* Is a's command line right for c: options, number of arguments, literal choices? */
static int check_args(const struct lbctl_cmd *c, const struct lbctl_args *a)
{
	char w[SPEC_WORD_MAX];
	int min, max;
	bool opt;

	for (int id = 0; id < OPT_COUNT; id++)
		if (a->opt[id] && !lbctl_opts[id].global && !(c->opts & OPT_BIT(id))) {
			char buf[256];
			return lbctl_usage_error("%s goes with %s", lbctl_opts[id].name,
						 cmds_taking(id, buf, sizeof(buf)));
		}
	spec_arity(c->args, &min, &max);
	if (a->npos < min || a->npos > max)
		return lbctl_cmd_usage(c, NULL);
	for (int i = 0; i < a->npos; i++)
		if (lbctl_spec_word(c->args, i, w, sizeof(w), &opt) >= 0 &&
		    !spec_allows(w, a->pos[i]))
			return lbctl_cmd_usage(c, NULL);
	return 0;
}

int lbctl_call(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t **resp_out)
{
	const char *sock = a->opt[OPT_SOCKET];
	json_t *req = json_pack("{s:s}", "cmd", c->name), *resp;
	int rc = c->build ? c->build(c, a, req) : 0;

	*resp_out = NULL;
	if (rc) {
		json_decref(req);
		return rc;
	}
	if (!sock) {
		sock = getenv("LB_SOCKET");
		if (!sock || !*sock)
			sock = access(LBCTL_DEFAULT_SOCKET, F_OK) != 0 &&
				       access(LBCTL_SERVICE_SOCKET, F_OK) == 0
				   ? LBCTL_SERVICE_SOCKET
				   : LBCTL_DEFAULT_SOCKET;
	}
	resp = roundtrip(sock, req);
	json_decref(req);
	if (!resp)
		return LBCTL_USAGE;
	if (!json_is_true(json_object_get(resp, "ok"))) {
		const char *err = json_string_value(json_object_get(resp, "error"));
		fprintf(stderr, "lbctl: %s\n", err ? err : "");
		json_decref(resp);
		return LBCTL_ERROR;
	}
	*resp_out = resp;
	return LBCTL_OK;
}

/* Send c's request, print the answer. */
static int request(const struct lbctl_cmd *c, const struct lbctl_args *a)
{
	json_t *resp, *data;
	int rc = lbctl_call(c, a, &resp);

	if (rc)
		return rc;
	data = json_object_get(resp, "data");
	if (a->opt[OPT_JSON]) {
		char *s = json_dumps(data, JSON_INDENT(2) | JSON_ENCODE_ANY);
		if (s)
			puts(s);
		free(s);
	} else {
		c->print(data);
	}
	rc = c->status ? c->status(data) : LBCTL_OK;
	json_decref(resp);
	return rc;
}

int main(int argc, char **argv)
{
	const char *name = NULL;
	struct lbctl_args a = {0};
	const struct lbctl_cmd *c;

	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		int rc;

		if (s[0] == '-' && s[1]) {
			rc = take_option(argc, argv, &i, &a);
			if (rc)
				return rc;
			if (a.opt[OPT_HELP]) {
				usage(stdout);
				return LBCTL_OK;
			}
		} else if (!name) {
			name = s;
		} else if (a.npos < LBCTL_MAX_POS) {
			a.pos[a.npos++] = s;
		} else {
			return lbctl_usage_error("too many arguments");
		}
	}
	if (!name) {
		usage(stderr);
		return LBCTL_USAGE;
	}
	c = find_cmd(name);
	if (!c)
		return lbctl_usage_error("unknown command \"%s\"", name);
	int rc = check_args(c, &a);
	if (rc)
		return rc;
	return c->run ? c->run(&a) : request(c, &a);
}
