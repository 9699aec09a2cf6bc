/* systemd's service notification protocol (sd_notify(3)) without libsystemd: one datagram of
 * "KEY=VALUE" lines per state change to the socket in $NOTIFY_SOCKET, so that a unit with
 * Type=notify knows when lb is serving (READY=1), reloading (RELOADING=1) and stopping
 * (STOPPING=1). Without $NOTIFY_SOCKET every call does nothing. Main thread only. */
#ifndef LB_NOTIFY_H
#define LB_NOTIFY_H

/* Connect to $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace) and take it out of
 * the environment, so that nothing lb starts inherits it. Call before dropping privileges.
 * 0 (also when unset), or -errno with a log line; lb runs on either way. */
int notify_open(void);
/* Send one message; failures are logged once and otherwise ignored. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1 with the MONOTONIC_USEC systemd wants beside it (Type=notify-reload). */
void notify_reloading(void);
void notify_close(void);

#endif
