/* crucible-c downstairs: `crucible-downstairs clone` (clone.c): copy a
 * whole region from a running downstairs, to replace a dead host.
 *
 * The clone connects to the source as a repair peer with no uuid
 * (repair.h: ds_repair_peer_open), learns the region definition from
 * HELLO_OK, creates a region with the same uuid, geometry, encryption
 * flag, highest generation and key check value in DIR.clone-tmp, then
 * downloads every extent's data file and database with FILE_REQ, checks
 * each extent (clone.c says why that check is enough on a live source)
 * and re-fetches an extent that changed under the copy, up to
 * DS_CLONE_TRIES times.  Finally everything is made durable (syncfs) and
 * DIR.clone-tmp is renamed to DIR: DIR is either absent/empty or a whole
 * region, never half of one.  While it exists, DIR.clone-tmp holds the
 * file DS_CLONE_MARKER; a later clone into the same DIR deletes such a
 * leftover (and refuses a DIR.clone-tmp without it).
 *
 * Blocking, single-threaded (the command line calls it).  Returns 0 or
 * -errno; on failure err holds one line for the user and nothing is left
 * behind but an untouched DIR.
 */
#ifndef CRUCIBLE_DS_CLONE_H
#define CRUCIBLE_DS_CLONE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/proto.h"

struct auth_key;

#define DS_CLONE_TRIES 4      /* fetches of one extent before giving up */
#define DS_CLONE_TIMEOUT_S 30 /* default --timeout */
#define DS_CLONE_SUFFIX ".clone-tmp"
#define DS_CLONE_MARKER "CLONE-INCOMPLETE"

struct ds_clone_opts {
  const char *dir;    /* destination: absent, or an empty directory */
  const char *source; /* "HOST:PORT" as the user wrote it (messages) */
  const char *host;   /* the source, parsed */
  uint16_t port;
  unsigned timeout_s;          /* bounds connect and every reply */
  FILE *progress;              /* progress report stream (stderr); NULL: none */
  bool tty;                    /* redraw a bar (else plain periodic lines) */
  const struct auth_key *auth; /* --auth-key FILE; NULL: none */
};

struct ds_clone_result {
  struct proto_region def; /* the region cloned */
  uint64_t bytes;          /* extent data bytes copied (last fetches) */
  uint32_t refetched;      /* extent fetches redone (changed or torn) */
  double secs;             /* wall time */
};

int ds_clone(const struct ds_clone_opts *o, struct ds_clone_result *res,
             char *err, size_t errlen);

#endif
