/* crucible-c downstairs: extent repair copy (docs/DESIGN.md "Repair copy").
 *
 * Target side (ds_repair_fetch, blocking, on a worker thread): connect to
 * the source downstairs as a REPAIR_PEER, download the extent's data file
 * and database with FILE_REQ/FILE_DATA into XX/YYY/ZZZ.copy/, fsync the
 * files and the directory, rename it to ZZZ.replace/ (the commit point),
 * fsync, then move each file over the original (deleting any old -wal and
 * -shm first), fsync, rename to ZZZ.completed/ and delete it.
 *
 * Invariant: after kill -9 at any instant the extent is either entirely
 * old (no .replace/ yet: a leftover .copy/ is deleted) or entirely new
 * (.replace/ exists: ds_repair_recover finishes moving its files), never
 * half.  ds_repair_recover runs at region open, before any extent is
 * read; an interrupted repair itself is redone by the next reconciliation
 * because the target's extent state still differs from the source's.
 *
 * The pieces are shared with `crucible-downstairs clone` (clone.c), which
 * copies every extent of a live source into a new region:
 * ds_repair_peer_open is the only place that says HELLO as a repair peer,
 * ds_repair_fetch_file downloads one file.
 *
 * Source side (ds_repair_read_chunk): a chunk of an extent file, read with
 * pread; the caller closes the extent first so its database is whole
 * (WAL checkpointed) and holds IO to that extent (the scheduler does).
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

/* Replace extent eid's files (closed by the caller) by the source's. */
int ds_repair_fetch(int dirfd, const struct proto_region *def, uint32_t eid,
                    const struct sockaddr_storage *src, unsigned timeout_s,
                    const struct auth_key *auth);

/* Finish or discard what interrupted repairs left (region open). */
int ds_repair_recover(int dirfd, const struct proto_region *def);

/* Read up to len bytes at off of extent eid's file (PROTO_FILE_*) into
 * buf; *n gets the count (short at the end), *size the file size. */
int ds_repair_read_chunk(int dirfd, uint32_t eid, uint8_t file, uint64_t off,
                         uint32_t len, uint8_t *buf, uint32_t *n,
                         uint64_t *size);

#endif
