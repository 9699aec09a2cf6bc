/* Path-aware JSON reading for the config loader (config.c): every getter validates one key
 * and records an error naming the file, the JSON path and what was expected, so that the
 * loader can collect every problem in one pass. Internal to the loader. */
#ifndef LB_CONFIG_JSON_H
#define LB_CONFIG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lb/config.h"

/* Longest JSON path we print; deeper or longer paths are cut (messages stay readable). */
#define CFG_PATH_MAX 256

/* Getter results: the key was absent (output untouched), present and valid, or invalid (an
 * error has been recorded). */
enum { CFG_ABSENT = 0, CFG_OK = 1, CFG_BAD = -1 };

struct cfg_ctx {
	const char *file; /* as given by the caller; prefixes every message */
	struct cfg_errors *errs;
	bool oom;
};

/* ---- messages: each adds one error to c->errs (c->oom on allocation failure) ---- */

/* Take ownership of msg (NULL: out of memory). */
void cfg_err_add(struct cfg_ctx *c, char *msg);

/* "FILE: PATH: <fmt>", or "FILE: <fmt>" when path is empty (the document itself). */
void cfg_err_at(struct cfg_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "FILE: PATH: expected <what>, got <v>" */
void cfg_err_got(struct cfg_ctx *c, const char *path, const json_t *v, const char *what);

/* "FILE: PATH: expected <what>, got <v> (<why>)": why says which part of v is wrong. */
void cfg_err_got_why(struct cfg_ctx *c, const char *path, const json_t *v, const char *what,
		     const char *why);

/* "FILE: PARENT.KEY: missing; expected <what>" */
void cfg_err_missing(struct cfg_ctx *c, const char *parent, const char *key, const char *what);

/* ---- paths (out holds CFG_PATH_MAX bytes) ---- */

/* "parent.key", or "key" at the top. */
void cfg_path_key(char *out, const char *parent, const char *key);
/* "parent[i]" */
void cfg_path_index(char *out, const char *parent, size_t i);

/* ---- allocation: NULL sets c->oom ---- */

char *cfg_strdup(struct cfg_ctx *c, const char *s);
void *cfg_calloc(struct cfg_ctx *c, size_t n, size_t size);

/* ---- typed getters: CFG_OK (output set), CFG_ABSENT (untouched) or CFG_BAD (reported) ---- */

/* Reports every key of obj that is not in allowed. */
void cfg_check_keys(struct cfg_ctx *c, const json_t *obj, const char *parent,
		    const char *const *allowed);

/* Present and an object: CFG_OK with *out set; absent: CFG_ABSENT; else CFG_BAD. */
int cfg_get_object(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		   const json_t **out);

/* A string; what names the expectation in the message. */
int cfg_get_string(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		   const char *what, const char **out);

/* Integer in [min, max]; max == INT_MAX reads as "no upper bound" in the message. */
int cfg_get_int(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key, int min,
		int max, int *out);

/* true or false. */
int cfg_get_bool(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		 bool *out);

/* One of names (NULL-terminated); *out is the index. */
int cfg_get_enum(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		 const char *const *names, int *out);

/* A duration string or integer milliseconds, at most CFG_MAX_DURATION_MS; positive excludes 0. */
int cfg_get_duration(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		     bool positive, uint64_t *out);

/* Optional "name": non-empty, no control characters (nor '/', unless allow_slash);
 * duplicated into *out. */
int cfg_get_name(struct cfg_ctx *c, const json_t *obj, const char *parent, bool allow_slash,
		 char **out);

#endif
