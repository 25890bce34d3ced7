/* crucible-c upstairs: spacing of request returns after an error, the
 * defence against nbdkit 1.32.4-1.33.9's reply race.
 *
 * Those nbdkit versions abort() (`sock >= 0' in raw_send_socket) when a
 * worker thread's reply send fails because the client hung up (status
 * DEAD closes the socket) while another worker of that connection has
 * already returned from the plugin and is about to send its own reply.
 * A client hangs up like that after an error reply (nbdcopy at its first
 * EIO, with its other connections' requests in flight), which a
 * replicated volume returns exactly when it is in trouble: the abort
 * would take every client down with it.
 *
 * The gate makes that overlap practically impossible without giving up
 * parallel requests: before a request returns an error, it waits until
 * every earlier return (of any connection) is at least `space' old, so
 * their replies have gone out before the client sees the error; and for
 * `hold' after the last error, returns pass one at a time, each `space'
 * after the previous, so when the client hangs up at most one reply is
 * being sent (the one whose send fails, and it closes the socket itself).
 * Outside that window a return costs a clock read and two atomics.
 * What is left: a hang-up without a preceding error reply (kill -9 of a
 * client) racing two replies within microseconds; nbdkit's own error
 * replies (invalid requests) are not gated.
 */
#ifndef CRUCIBLE_REPLYGATE_H
#define CRUCIBLE_REPLYGATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct replygate {
  uint64_t space_ns, hold_ns;
  _Atomic uint64_t last_ns;  /* the last return (monotonic ns) */
  _Atomic uint64_t until_ns; /* gated until then (last error + hold) */
  pthread_mutex_t lock;      /* one gated return at a time */
};

/* space_ns == 0 disables the gate (every return passes at once). */
void rg_init(struct replygate *g, uint64_t space_ns, uint64_t hold_ns);
void rg_destroy(struct replygate *g);
/* Call just before a request returns to nbdkit; error: it fails. */
void rg_return(struct replygate *g, bool error);

#endif
