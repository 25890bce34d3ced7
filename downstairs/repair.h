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

/* Bytes asked per FILE_REQ. */
#define DS_REPAIR_CHUNK (1u << 20)

/* Replace extent eid's files (closed by the caller) by the source's. */
int ds_repair_fetch(int dirfd, const struct proto_region *def, uint32_t eid,
                    const struct sockaddr_storage *src, unsigned timeout_s);

/* Finish or discard what interrupted repairs left (region open). */
int ds_repair_recover(int dirfd, const struct proto_region *def);

/* Read up to len bytes at off of extent eid's file (PROTO_FILE_*) into
 * buf; *n gets the count (short at the end), *size the file size. */
int ds_repair_read_chunk(int dirfd, uint32_t eid, uint8_t file, uint64_t off,
                         uint32_t len, uint8_t *buf, uint32_t *n,
                         uint64_t *size);

#endif
