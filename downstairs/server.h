/* crucible-c downstairs: the libuv TCP server.
 *
 * Serves one region to one active upstairs at a time (plus any number of
 * connections in handshake).  Per connection: frames are read with
 * proto_frame_len / proto_decode (a malformed frame closes that connection
 * with one logged reason); HELLO -> HELLO_OK | ERROR; EXTENT_STATES_REQ;
 * ACTIVATE(gen) accepted only if gen > region_highest_gen, or equal from the
 * same session id, persisted before ACTIVATE_OK; a previously active
 * connection then gets NO_LONGER_ACTIVE and is closed.
 *
 * Job ordering rule: IO jobs (WRITE, READ, TRIM, FLUSH) of the active
 * connection run on the libuv thread pool.  A job may start only when no
 * earlier, still-running job overlaps it (same extent; FLUSH overlaps
 * everything, both ways).  So overlapping jobs apply in the order received
 * and non-overlapping ones run in parallel.  Replies are sent as jobs
 * complete (not necessarily in order); each names its job id.
 *
 * ds_server_run() blocks running the loop until SIGINT/SIGTERM, then
 * stops accepting, waits for running jobs, closes the region cleanly and
 * returns 0; or returns a negative errno if it cannot start (port in use:
 * -EADDRINUSE, with a log line naming the address).
 */
#ifndef CRUCIBLE_SERVER_H
#define CRUCIBLE_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/auth.h"
#include "region.h"

struct ds_server_opts {
  const char *dir;       /* region directory, for log lines */
  struct region *region; /* opened by the caller; not freed by the server */
  const char *addr;      /* listen address, default "0.0.0.0" */
  uint16_t port;
  /* A socket bound to addr:port and listening (cli_listen: `run` binds
   * it first, to refuse a busy port or a bad address in one line before
   * anything starts); the server owns it from ds_server_run on.
   * have_listen_fd must be set. */
  bool have_listen_fd;
  int listen_fd;
  unsigned max_conns;         /* connection cap (default 64) */
  unsigned idle_timeout;      /* seconds without a frame before closing (120) */
  unsigned handshake_timeout; /* the same before activation (10) */
  /* NULL or len 0: no authentication (a warning is logged).  Otherwise
   * every peer must prove it (common/auth.h) before anything but HELLO;
   * this server's own repair connections prove it to their source. */
  const struct auth_key *auth;
};

int ds_server_run(const struct ds_server_opts *opts);

#endif
