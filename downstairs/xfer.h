/* crucible-c downstairs: raw image export and import (`crucible-downstairs
 * export` / `import`).
 *
 * Both work on an open region (so the region's exclusive lock keeps a
 * downstairs from serving it meanwhile) and only on UNENCRYPTED regions
 * (-EPERM otherwise): an encrypted region's blocks are ciphertext and the
 * downstairs has no key.
 *
 * Export reads every block through region_read (unwritten = zeroes) and
 * writes the image, region_size bytes; into a regular file it writes only
 * the non-zero chunks (the file is truncated first, so it stays sparse).
 *
 * Import writes the image's non-zero blocks with contexts a plain upstairs
 * would send (hash = crypt_hash_plain, version = gen << 32 | seq with
 * gen = the region's highest generation + 1, so 1 on a new region, seq
 * counting from 1), trims zero blocks (and every block past the image
 * end) unless the region is known blank, then records gen as the highest
 * generation and flushes with a flush number above every extent's.  An
 * image shorter than the region is padded with zeroes; a partial last
 * block too.  Afterwards the region reads back exactly the image.
 *
 * Return 0 or a negative errno; -EFBIG if the image is larger than the
 * region.  Progress is reported in bytes on *p (see downstairs/progress.h).
 */
#ifndef CRUCIBLE_XFER_H
#define CRUCIBLE_XFER_H

#include <stdbool.h>
#include <stdint.h>

#include "progress.h"
#include "region.h"

#define XFER_CHUNK_BLOCKS 256 /* blocks per region call: 1 MiB at 4 KiB */

/* -EBADMSG (and *bad = its LBA) if a written block's bytes do not match
 * its hash: a corrupt replica is never exported as good.  snap: the
 * snapshot of that name instead of the live region (its size then), or
 * NULL; -ENOENT if there is none. */
int xfer_export(struct region *r, const char *snap, int fd, struct progress *p,
                uint64_t *bad);
int xfer_import(struct region *r, int fd, uint64_t size, bool blank,
                struct progress *p);

#endif
