/* crucible-c: what the two halves of the wire codec share: proto.c (the
 * frame header, session and admin frames, proto_decode) and proto_job.c
 * (the job frames and their replies).  Not a public API: callers use
 * proto.h.
 */
#ifndef CRUCIBLE_PROTO_INT_H
#define CRUCIBLE_PROTO_INT_H

#include "proto.h"

/* Write the common frame header. */
static inline size_t put_hdr(uint8_t *buf, uint32_t len, uint16_t type)
{
  proto_le32(buf, len);
  proto_le16(buf + 4, type);
  proto_le16(buf + 6, 0);
  return PROTO_FRAME_HDR_LEN;
}

static inline int all_zero(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

static inline int is_bool(uint8_t v)
{
  return v <= 1;
}

/* proto_job.c: decode the job frame b of len bytes whose header
 * proto_decode checked (m->type and m->flags set); 0, -EPROTO if
 * malformed, -ENOTSUP if m->type is no job frame. */
int proto__decode_job(const uint8_t *b, size_t len, uint32_t block_size,
                      struct proto_msg *m);

#endif
