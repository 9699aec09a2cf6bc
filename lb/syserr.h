/* Classifying system call errors. */
#ifndef LB_SYSERR_H
#define LB_SYSERR_H

#include <errno.h>
#include <stdbool.h>

/* err (a positive errno) is lb's own shortage of file descriptors, memory or buffers, not
 * a failure of the peer it was about to talk to: it must never count against a backend. */
static inline bool syserr_local_shortage(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

#endif
