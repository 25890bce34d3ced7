/* crucible-c: region geometry and naming.
 *
 * A region is extent_count extents of extent_size blocks of block_size
 * bytes.  LBA l lives in extent l / extent_size at block l % extent_size.
 * Extent eid's files are XX/YYY/ZZZ (+ ".db") under the region directory,
 * XX = (eid >> 24) & 0xff, YYY = (eid >> 12) & 0xfff, ZZZ = eid & 0xfff,
 * in upper-case hex.  Pure functions; no IO.
 */
#ifndef CRUCIBLE_GEOM_H
#define CRUCIBLE_GEOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define GEOM_DEFAULT_BLOCK_SIZE 4096u
#define GEOM_DEFAULT_EXTENT_SIZE 32768u /* blocks: 128 MiB at 4 KiB */
#define GEOM_MIN_BLOCK_SIZE 512u
#define GEOM_MAX_BLOCK_SIZE 65536u
#define GEOM_MAX_EXTENT_SIZE (1u << 24) /* blocks */

/* 0 if the geometry is usable: block_size a power of two in
 * [GEOM_MIN_BLOCK_SIZE, GEOM_MAX_BLOCK_SIZE], extent_size in
 * [1, GEOM_MAX_EXTENT_SIZE], extent_count in [1, PROTO_MAX_EXTENTS] and the
 * total size fits in int64; else -EINVAL. */
int geom_check(const struct proto_region *r);

static inline uint64_t geom_blocks(const struct proto_region *r)
{
  return r->extent_size * r->extent_count;
}
static inline uint64_t geom_size(const struct proto_region *r)
{
  return geom_blocks(r) * r->block_size;
}
static inline uint32_t geom_extent_of(const struct proto_region *r,
                                      uint64_t lba)
{
  return (uint32_t) (lba / r->extent_size);
}
/* Blocks from lba to the end of its extent. */
static inline uint64_t geom_left_in_extent(const struct proto_region *r,
                                           uint64_t lba)
{
  return r->extent_size - lba % r->extent_size;
}

/* UUID text form, 36 chars + NUL ("none" for the all-zero uuid of a
 * region of no volume yet); parse returns 0 or -EINVAL. */
void geom_uuid_format(const uint8_t uuid[PROTO_UUID_LEN], char out[37]);
int geom_uuid_parse(const char *s, uint8_t uuid[PROTO_UUID_LEN]);
bool geom_uuid_is_zero(const uint8_t uuid[PROTO_UUID_LEN]);

#endif
