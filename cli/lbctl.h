/* lbctl's command table: one row per command and one per option. Parsing, dispatch, --help
 * and the bash completion script all read these tables, so a command exists in all of them
 * or in none (the relayctl parser.c idea, with C functions in place of token chains). */
#ifndef LBCTL_H
#define LBCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

enum { LBCTL_OK = 0, LBCTL_ERROR = 1, LBCTL_USAGE = 2 };

/* Socket used without -s and $LB_SOCKET: lb's default is "lb.sock" beside its config. */
#define LBCTL_DEFAULT_SOCKET "./lb.sock"
/* Where the packaged lb.service puts it (/etc/lb/lb.json): used when ./lb.sock is absent. */
#define LBCTL_SERVICE_SOCKET "/run/lb/lb.sock"
/* Most positional arguments accepted after the command: more than any command takes. */
#define LBCTL_MAX_POS 8
/* Longest word of an argument spec ("POOL/BACKEND", "up|down|auto"). */
#define SPEC_WORD_MAX 64

enum lbctl_opt_id {
	OPT_SOCKET,
	OPT_JSON,
	OPT_HELP,
	OPT_WEIGHT,
	OPT_MAX_CONNS,
	OPT_BACKUP,
	OPT_HASH_KEY,
	OPT_FORCE,
	OPT_ITERATIONS,
	OPT_COUNT
};
#define OPT_BIT(id) (1u << (id))

struct lbctl_opt {
	const char *name;  /* "--weight"; a value may also follow as "--weight=N" */
	const char *alias; /* "-s", or NULL */
	const char *value; /* name of its value in help ("N"), NULL for a flag */
	bool global;	   /* goes with every command; else only with those listing it */
	const char *help;
};

/* A parsed command line. */
struct lbctl_args {
	const char *pos[LBCTL_MAX_POS]; /* arguments after the command word */
	int npos;
	const char *opt[OPT_COUNT]; /* an option's value ("" for a flag), NULL if not given */
};

/* The positional arguments of a command are a spec such as "POOL/BACKEND up|down|auto":
 * upper-case words name a value, lower-case words are the literal choices ('|' between
 * them), and "[WORD]" is optional (only at the end). */
struct lbctl_cmd {
	const char *name;
	const char *args; /* the spec, "" for none */
	unsigned opts;	  /* OPT_BIT()s of the non-global options it takes */
	/* Add the arguments to req ({"cmd": name} already). 0, or LBCTL_USAGE after saying why.
	 * NULL: nothing to add. */
	int (*build)(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t *req);
	void (*print)(json_t *data); /* human output of the answer's data */
	int (*status)(json_t *data); /* exit status the data implies; NULL: LBCTL_OK */
	/* A local command: runs instead of a request (build, print and status unused). */
	int (*run)(const struct lbctl_args *a);
	const char *help; /* one line; '\n' starts another */
};

extern const struct lbctl_opt lbctl_opts[OPT_COUNT];
extern const struct lbctl_cmd lbctl_cmds[];
extern const size_t lbctl_ncmds;

/* "lbctl: MSG\n(see lbctl --help)" on stderr; returns LBCTL_USAGE. */
int lbctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "usage: lbctl NAME ARGS [OPTIONS] EXTRA" as a usage error; returns LBCTL_USAGE. */
int lbctl_cmd_usage(const struct lbctl_cmd *c, const char *extra);
/* Print c's synopsis ("add POOL NAME ADDRESS [--weight N] ...") to out; its length. */
int lbctl_synopsis(FILE *out, const struct lbctl_cmd *c);

/* Word i (from 0) of a spec, brackets stripped, into buf; its length, or -1 past the end.
 * *optional tells whether it was in brackets. */
int lbctl_spec_word(const char *spec, int i, char *buf, size_t len, bool *optional);

/* Send c's request (built from a) to lb and wait for the answer. LBCTL_OK with the whole
 * answer in *resp (caller decrefs; its "data" is the command's), else LBCTL_ERROR (lb said
 * no) or LBCTL_USAGE (bad arguments, or lb unreachable), said on stderr. */
int lbctl_call(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t **resp);

/* `lbctl completion bash`: the completion script, from the tables, on stdout. */
int lbctl_completion(const struct lbctl_args *a);

#endif
