/* crucible-c: region geometry checks, extent paths and uuids. */
#include "geom.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int geom_check(const struct proto_region *r)
{
  uint32_t bs = r->block_size;
  if (bs < GEOM_MIN_BLOCK_SIZE || bs > GEOM_MAX_BLOCK_SIZE || (bs & (bs - 1)))
    return -EINVAL;
  if (r->extent_size == 0 || r->extent_size > GEOM_MAX_EXTENT_SIZE)
    return -EINVAL;
  if (r->extent_count == 0 || r->extent_count > PROTO_MAX_EXTENTS)
    return -EINVAL;
  /* At most 2^24 * 2^24 * 2^16 = 2^64 bytes: keep the size in int64. */
  if (geom_blocks(r) > (uint64_t) INT64_MAX / bs)
    return -EINVAL;
  return 0;
}

void geom_uuid_format(const uint8_t u[PROTO_UUID_LEN], char out[37])
{
  if (geom_uuid_is_zero(u)) {
    snprintf(out, 37, "none");
    return;
  }
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
           "%02x%02x%02x%02x%02x%02x",
           u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
           u[11], u[12], u[13], u[14], u[15]);
}

static int hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int geom_uuid_parse(const char *s, uint8_t u[PROTO_UUID_LEN])
{
  int n = 0;
  if (strlen(s) != 36)
    return -EINVAL;
  for (int i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i++] != '-')
        return -EINVAL;
      continue;
    }
    int hi = hexval(s[i]), lo = hexval(s[i + 1]);
    if (hi < 0 || lo < 0)
      return -EINVAL;
    u[n++] = (uint8_t) (hi << 4 | lo);
    i += 2;
  }
  return 0;
}

bool geom_uuid_is_zero(const uint8_t u[PROTO_UUID_LEN])
{
  for (int i = 0; i < PROTO_UUID_LEN; i++)
    if (u[i])
      return false;
  return true;
}
