/* crucible-downstairs: region.json, one region's definition and the
 * replica's own state (region_json.c). */
#ifndef CRUCIBLE_REGION_JSON_H
#define CRUCIBLE_REGION_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/proto.h"

/* region.json, shared by region.c, server.c and cli_inspect.c (dump).
 * read: -ENOENT if absent, -EINVAL if malformed.  write: atomic replace
 * (temp file, fsync, rename, fsync directory). */
struct region_meta {
  struct proto_region def;
  uint64_t highest_gen;
  bool has_kcv;
  struct proto_kcv kcv;
  /* Random id of this replica (region_json.c): "instance" in region.json,
   * made by region_meta_write when all zero (create); a region written
   * before it existed gets one in memory from region_meta_read
   * (instance_new set) until its region.json is next rewritten. */
  uint8_t instance[PROTO_UUID_LEN];
  bool instance_new;
};
int region_meta_read(int dirfd, struct region_meta *m);
int region_meta_write(int dirfd, const struct region_meta *m);

#endif
