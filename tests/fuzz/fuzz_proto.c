/* crucible-c fuzz harness: the wire codec (common/proto.c).
 *
 * Input: byte 0 picks the negotiated block size (0 = before HELLO_OK,
 * 512, 1024, 4096), the rest is one frame.  proto_frame_len must agree
 * with the length field; proto_decode must never read past the frame.
 * Every frame format is canonical (pads zero, booleans 0/1), so a frame
 * that decodes is re-encoded with the matching proto_put_* and must come
 * out byte for byte identical (ERROR: only when its text is printable,
 * since the decoder replaces other bytes with '?').
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/proto.h"

static const uint32_t block_sizes[] = {0, 512, 1024, 4096};

/* Re-encode a WRITE or READ_DONE bulk area (contexts, then data). */
static void put_bulk(uint8_t *out, const uint8_t *ctxs, const uint8_t *data,
                     uint32_t n, uint32_t bs)
{
  struct proto_ctx c;
  for (uint32_t i = 0; i < n; i++) {
    proto_ctx_get(ctxs + (size_t) i * PROTO_CTX_LEN, &c);
    proto_ctx_put(out + (size_t) i * PROTO_CTX_LEN, &c);
  }
  if (bs)
    memcpy(out + (size_t) n * PROTO_CTX_LEN, data, (size_t) n * bs);
}

/* Encode m again into out (len bytes); returns the encoded length. */
static size_t reencode(const struct proto_msg *m, uint32_t bs, uint8_t *out,
                       size_t len)
{
  const struct proto_io *io = &m->u.io;
  size_t n = 0;
  switch (m->type) {
  case PROTO_T_HELLO: return proto_put_hello(out, &m->u.hello);
  case PROTO_T_HELLO_OK: return proto_put_hello_ok(out, &m->u.hello_ok);
  case PROTO_T_ERROR:
    return proto_put_error(out, m->u.error.err, m->u.error.job_id,
                           m->u.error.text);
  case PROTO_T_EXTENT_STATES_REQ: return proto_put_extent_states_req(out);
  case PROTO_T_EXTENT_STATES: {
    struct proto_extent_state s;
    n = proto_put_extent_states_hdr(out, m->u.extent_states.count);
    for (uint32_t i = 0; i < m->u.extent_states.count; i++) {
      proto_extent_state_get(m->u.extent_states.states + i * 24u, &s);
      proto_extent_state_put(out + n + i * 24u, &s);
    }
    return n + (size_t) m->u.extent_states.count * PROTO_EXTENT_STATE_LEN;
  }
  case PROTO_T_ACTIVATE: return proto_put_activate(out, &m->u.activate);
  case PROTO_T_ACTIVATE_OK: return proto_put_activate_ok(out, m->u.gen);
  case PROTO_T_NO_LONGER_ACTIVE:
    return proto_put_no_longer_active(out, m->u.gen);
  case PROTO_T_WRITE:
    n = proto_put_write_hdr(out, io->job_id, io->lba, io->n, bs);
    put_bulk(out + n, io->ctxs, io->data, io->n, bs);
    return n + (size_t) io->n * (PROTO_CTX_LEN + bs);
  case PROTO_T_READ:
    return proto_put_read(out, io->job_id, io->lba, io->n, m->flags);
  case PROTO_T_TRIM:
    return proto_put_trim(out, io->job_id, io->lba, io->n, io->version);
  case PROTO_T_FLUSH: return proto_put_flush(out, &m->u.flush);
  case PROTO_T_JOB_DONE:
    return proto_put_job_done(out, m->u.job_done.job_id, m->u.job_done.err);
  case PROTO_T_READ_DONE: {
    const struct proto_read_done *r = &m->u.read_done;
    uint32_t dbs = m->flags & PROTO_F_CTX_ONLY ? 0 : bs;
    n = proto_put_read_done_hdr(out, r->job_id, r->err, r->n, bs, m->flags);
    if (r->n)
      put_bulk(out + n, r->ctxs, r->data, r->n, dbs);
    return n + (size_t) r->n * (PROTO_CTX_LEN + dbs);
  }
  case PROTO_T_PING:
  case PROTO_T_PONG: return proto_put_ping(out, m->type, m->u.ping);
#ifdef PROTO_EXTENT_FLUSH_LEN /* repair frames */
  case PROTO_T_EXTENT_FLUSH:
  case PROTO_T_EXTENT_MARK: return proto_put_extent_op(out, m->type, &m->u.ext);
  case PROTO_T_FILE_REQ: return proto_put_file_req(out, &m->u.file_req);
  case PROTO_T_FILE_DATA:
    n = proto_put_file_data_hdr(out, &m->u.file_data);
    memcpy(out + n, m->u.file_data.data, m->u.file_data.n);
    return n + m->u.file_data.n;
#endif
  }
  (void) len;
  return 0; /* a type this harness does not know yet: no comparison */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  uint32_t bs = block_sizes[data[0] & 3];
  const uint8_t *f = data + 1;
  size_t len = size - 1;

  int64_t fl = proto_frame_len(f, len);
  if (len < 4 && fl != 0)
    abort();
  if (len >= 4) {
    uint32_t want = proto_rd32(f);
    if (fl > 0 && (uint64_t) fl != want)
      abort();
    if (fl < 0 && want >= PROTO_FRAME_HDR_LEN && want <= PROTO_MAX_FRAME)
      abort();
  }

  /* Copy into an exact-size heap buffer so ASan sees any overread. */
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf)
    return 0;
  memcpy(buf, f, len);
  struct proto_msg m;
  int r = proto_decode(buf, len, bs, &m);
  if (r != 0 && r != -EPROTO && r != -EMSGSIZE && r != -ENOTSUP)
    abort();
  if (r == 0) {
    if ((uint64_t) fl != len)
      abort(); /* a frame that decodes has a consistent length field */
    int canonical = 1;
    if (m.type == PROTO_T_ERROR)
      canonical = strchr(m.u.error.text, '?') == NULL;
    uint8_t *out = malloc(len + PROTO_MAX_MSG);
    if (!out)
      abort();
    memset(out, 0xa5, len + PROTO_MAX_MSG);
    size_t n = reencode(&m, bs, out, len);
    if (n != 0 && n != len)
      abort();
    if (n != 0 && (canonical && memcmp(out, buf, len) != 0))
      abort();
    free(out);
  }
  free(buf);
  return 0;
}
