/* crucible-c downstairs: the repair peer protocol (FILE_REQ/FILE_DATA)
 * and what interrupted repair copies left behind (docs/DESIGN.md,
 * "Region on disk").
 *
 * Client side, for `crucible-downstairs clone` (clone.c), which copies
 * every extent of a live source into a new region: ds_repair_peer_open is
 * the only place that says HELLO as a repair peer, ds_repair_fetch_file
 * downloads one extent file in FILE_REQ chunks (blocking).
 *
 * Source side (ds_repair_read_chunk): a chunk of an extent file, read with
 * pread; the caller closes the extent first so its database is whole
 * (WAL checkpointed) and keeps IO off that extent (the scheduler does).
 *
 * Leftovers (ds_repair_recover, at region open, before any extent is
 * read): the file-copy live repair that replaced an extent's files
 * downstairs-to-downstairs (EXTENT_REPAIR, retired with protocol version
 * 3) committed a copy by renaming XX/YYY/ZZZ.copy/ to ZZZ.replace/.  A
 * region last run by such a downstairs may still hold one: a .replace/ is
 * finished (its files moved over the originals; a file already moved is
 * absent, so this is idempotent), a .copy/ (never committed) and a
 * .completed/ are deleted.  The extent is then entirely old or entirely
 * new, never half.
 *
 * All functions return 0 or -errno.
 */
#ifndef CRUCIBLE_DS_REPAIR_H
#define CRUCIBLE_DS_REPAIR_H

#include <stdint.h>
#include <sys/socket.h>

#include "../common/proto.h"

/* Bytes asked per FILE_REQ: the most one request may carry.  Few round
 * trips, few closes of the source's extent (each FILE_REQ closes it), and
 * a database up to this size (every context of a fully written 128 MiB
 * extent) arrives as one snapshot. */
#define DS_REPAIR_CHUNK PROTO_MAX_JOB_BYTES
/* Received pieces of this many zero bytes are not written (holes). */
#define DS_REPAIR_SPARSE (1u << 20)
/* Receive buffer for the client side: the largest FILE_DATA frame. */
#define DS_REPAIR_BUF_LEN (PROTO_FILE_DATA_HDR_LEN + DS_REPAIR_CHUNK)

struct proto_hello_ok;
struct auth_key;

/* Connect to src (blocking; tmo seconds bound connect and each reply) and
 * say HELLO as a repair peer, proving auth (NULL or empty: no key) if the
 * source asks; a source that asks while we have no key, or does not ask
 * while we have one, or fails to prove the key itself is refused with
 * -EACCES (logged).  def->uuid all zero: learn the region from
 * HELLO_OK (clone); otherwise its uuid and geometry must equal def's
 * (-EPROTO).  buf (cap >= DS_REPAIR_BUF_LEN) receives frames.  *ok, if not
 * NULL, gets the HELLO_OK.  Returns the socket (caller closes) or -errno;
 * an ERROR frame is logged and gives its errno. */
int ds_repair_peer_open(const struct proto_region *def,
                        const struct sockaddr_storage *src, unsigned tmo,
                        const struct auth_key *auth, uint8_t *buf, size_t cap,
                        struct proto_hello_ok *ok);

/* Download file (PROTO_FILE_*) of extent eid over the peer socket fd into
 * dst (relative to dirfd; created or truncated, zero chunks left sparse,
 * fsynced).  want_size: the size the file must have, 0 = any.  tick, if
 * not NULL, is called after each chunk with its length; a negative return
 * stops the download with that error. */
int ds_repair_fetch_file(int fd, int dirfd, const char *dst, uint32_t eid,
                         uint8_t file, uint64_t want_size, uint8_t *buf,
                         size_t cap, int (*tick)(void *arg, uint32_t n),
                         void *arg);

/* Finish or discard what interrupted repairs left (region open). */
int ds_repair_recover(int dirfd, const struct proto_region *def);

/* Read up to len bytes at off of extent eid's file (PROTO_FILE_*) into
 * buf; *n gets the count (short at the end), *size the file size. */
int ds_repair_read_chunk(int dirfd, uint32_t eid, uint8_t file, uint64_t off,
                         uint32_t len, uint8_t *buf, uint32_t *n,
                         uint64_t *size);

#endif
