/* Least privilege: the config's "user"/"group" resolved at load, and the switch to them once
 * main.c has bound every socket (listeners, control socket, metrics). Only
 * CAP_NET_BIND_SERVICE may survive, and only when a listener port needs it. */
#ifndef LB_PRIVS_H
#define LB_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct config;

/* Below this port a bind needs CAP_NET_BIND_SERVICE (the kernel's PROT_SOCK, by default). */
#define PRIVS_LOW_PORT 1024

/* The user called name: its uid and primary group. 0, -ENOENT if there is none, or -errno
 * if the lookup itself failed (getpwnam_r). */
int privs_user_lookup(const char *name, uid_t *uid, gid_t *gid);
/* The group called name. 0, -ENOENT or -errno (getgrnam_r). */
int privs_group_lookup(const char *name, gid_t *gid);

/* Before anything is bound: can this process become cfg's user and group? Only root can
 * switch; anyone else may only name itself. 0, or -EPERM with the reason in why. */
int privs_check(const struct config *cfg, char *why, size_t len);

/* After everything is bound: become cfg->user and cfg->group (supplementary groups: the
 * user's), keep CAP_NET_BIND_SERVICE on this thread (and so on the threads it starts from
 * now on) only if a listener port is below PRIVS_LOW_PORT (so that a reload can bind new
 * low ports), and make sure root cannot be regained. Logs what it did and kept; as root without
 * "user", warns instead. Call it on the main thread (the one that binds on reload). 0, or -errno
 * with the reason in why. */
int privs_drop(const struct config *cfg, char *why, size_t len);

#endif
