/* crucible-c: wire protocol codec (see proto.h for the frame format):
 * the frame header, the session and admin frames (handshake, activation,
 * pings, status) and proto_decode; the job frames are in proto_job.c.
 *
 * Byte layout of every fixed header, offsets from the start of the frame:
 *
 *   all       0 u32 length, 4 u16 type, 6 u16 flags (0, or CTX_ONLY on
 *             READ and READ_DONE)
 *   HELLO     8 u32 version, 12 u8 role, 13 u8 read_only, 14 u8 encrypted,
 *             15 u8 pad, 16 uuid[16], 32 u64 session, 40 u64 gen,
 *             48 auth_nonce[32]                                   (80)
 *   HELLO_OK  8 u32 version, 12 u32 block_size, 16 u64 extent_size,
 *             24 u32 extent_count, 28 u8 encrypted, 29 u8 has_kcv,
 *             30 u8 auth_required, 31 u8 pad, 32 uuid[16], 48 u64 highest_gen,
 *             56 kcv nonce[12], 68 kcv tag[16], 84 auth_nonce[32],
 *             116 instance[16] (the region's random id: two addresses
 *             of one region are told apart from two replicas), 132 u32
 *             pad                                                 (136)
 *   ERROR     8 i32 err, 12 u32 pad, 16 u64 job_id, 24 text     (24 + text)
 *   EXTENT_STATES 8 u32 count, 12 u32 pad, 16 count * {u64 gen,
 *             u64 flush, u8 dirty, 7 pad}                       (16 + 24n)
 *   ACTIVATE  8 u64 gen, 16 u8 set_kcv, 17 u8 set_uuid, 18 pad[2],
 *             20 nonce[12], 32 tag[16], 48 uuid[16] (all zero
 *             unless set_uuid, never all zero with it)           (64)
 *   ACTIVATE_OK, NO_LONGER_ACTIVE  8 u64 gen                      (16)
 *   PING/PONG 8 u64 value                                          (16)
 *   AUTH, AUTH_OK  8 mac[32]                                      (40)
 *   STATUS_REQ     (header only)                                  (8)
 *   STATUS    8 u32 block_size, 12 u32 extent_count, 16 u64 extent_size,
 *             24 uuid[16], 40 u8 encrypted, 41 u8 has_active, 42 u16 pad,
 *             44 u32 connections, 48 u64 highest_gen, 56 u64 session,
 *             64 u64 idle_ms, 72 instance[16], 88 u64 pad,
 *             96 peer[64] (printable, NUL-terminated, zero-padded)  (168)
 *
 * Every pad byte must be zero and every boolean 0 or 1: a strict decoder
 * leaves no room for two peers to disagree about what a frame meant.
 */
#include "proto_int.h"

#include <errno.h>
#include <string.h>

#include "geom.h"

int64_t proto_frame_len(const uint8_t *buf, size_t avail)
{
  if (avail < 4)
    return 0;
  uint32_t len = proto_rd32(buf);
  if (len < PROTO_FRAME_HDR_LEN || len > PROTO_MAX_FRAME)
    return -EPROTO;
  return len;
}

const char *proto_type_name(unsigned type)
{
  switch (type) {
  case PROTO_T_HELLO: return "HELLO";
  case PROTO_T_HELLO_OK: return "HELLO_OK";
  case PROTO_T_ERROR: return "ERROR";
  case PROTO_T_EXTENT_STATES_REQ: return "EXTENT_STATES_REQ";
  case PROTO_T_EXTENT_STATES: return "EXTENT_STATES";
  case PROTO_T_ACTIVATE: return "ACTIVATE";
  case PROTO_T_ACTIVATE_OK: return "ACTIVATE_OK";
  case PROTO_T_NO_LONGER_ACTIVE: return "NO_LONGER_ACTIVE";
  case PROTO_T_WRITE: return "WRITE";
  case PROTO_T_READ: return "READ";
  case PROTO_T_FLUSH: return "FLUSH";
  case PROTO_T_TRIM: return "TRIM";
  case PROTO_T_JOB_DONE: return "JOB_DONE";
  case PROTO_T_READ_DONE: return "READ_DONE";
  case PROTO_T_PING: return "PING";
  case PROTO_T_PONG: return "PONG";
  case PROTO_T_EXTENT_FLUSH: return "EXTENT_FLUSH";
  case PROTO_T_EXTENT_MARK: return "EXTENT_MARK";
  case PROTO_T_EXTEND: return "EXTEND";
  case PROTO_T_SNAPSHOT: return "SNAPSHOT";
  case PROTO_T_SNAPSHOTS: return "SNAPSHOTS";
  case PROTO_T_FILE_REQ: return "FILE_REQ";
  case PROTO_T_FILE_DATA: return "FILE_DATA";
  case PROTO_T_AUTH: return "AUTH";
  case PROTO_T_AUTH_OK: return "AUTH_OK";
  case PROTO_T_EXTENT_MAP_REQ: return "EXTENT_MAP_REQ";
  case PROTO_T_EXTENT_MAP: return "EXTENT_MAP";
  case PROTO_T_STATUS_REQ: return "STATUS_REQ";
  case PROTO_T_STATUS: return "STATUS";
  default: return "?";
  }
}
size_t proto_put_hello(uint8_t *buf, const struct proto_hello *h)
{
  memset(buf, 0, PROTO_HELLO_LEN);
  put_hdr(buf, PROTO_HELLO_LEN, PROTO_T_HELLO);
  proto_le32(buf + 8, h->version);
  buf[12] = h->role;
  buf[13] = h->read_only;
  buf[14] = h->encrypted;
  memcpy(buf + 16, h->uuid, PROTO_UUID_LEN);
  proto_le64(buf + 32, h->session_id);
  proto_le64(buf + 40, h->gen);
  memcpy(buf + 48, h->auth_nonce, PROTO_AUTH_NONCE_LEN);
  return PROTO_HELLO_LEN;
}

size_t proto_put_hello_ok(uint8_t *buf, const struct proto_hello_ok *h)
{
  memset(buf, 0, PROTO_HELLO_OK_LEN);
  put_hdr(buf, PROTO_HELLO_OK_LEN, PROTO_T_HELLO_OK);
  proto_le32(buf + 8, h->version);
  proto_le32(buf + 12, h->region.block_size);
  proto_le64(buf + 16, h->region.extent_size);
  proto_le32(buf + 24, h->region.extent_count);
  buf[28] = h->region.encrypted;
  buf[29] = h->has_kcv;
  buf[30] = h->auth_required;
  memcpy(buf + 32, h->region.uuid, PROTO_UUID_LEN);
  proto_le64(buf + 48, h->highest_gen);
  memcpy(buf + 56, h->kcv.nonce, PROTO_NONCE_LEN);
  memcpy(buf + 68, h->kcv.tag, PROTO_TAG_LEN);
  memcpy(buf + 84, h->auth_nonce, PROTO_AUTH_NONCE_LEN);
  memcpy(buf + 116, h->instance, PROTO_UUID_LEN);
  return PROTO_HELLO_OK_LEN;
}

size_t proto_put_auth(uint8_t *buf, uint16_t type, const uint8_t mac[32])
{
  put_hdr(buf, PROTO_AUTH_LEN, type);
  memcpy(buf + 8, mac, 32);
  return PROTO_AUTH_LEN;
}

size_t proto_put_status_req(uint8_t *buf)
{
  return put_hdr(buf, PROTO_STATUS_REQ_LEN, PROTO_T_STATUS_REQ);
}

size_t proto_put_status(uint8_t *buf, const struct proto_status *s)
{
  size_t pl = strnlen(s->active_peer, PROTO_STATUS_PEER_LEN - 1);

  memset(buf, 0, PROTO_STATUS_LEN);
  put_hdr(buf, PROTO_STATUS_LEN, PROTO_T_STATUS);
  proto_le32(buf + 8, s->region.block_size);
  proto_le32(buf + 12, s->region.extent_count);
  proto_le64(buf + 16, s->region.extent_size);
  memcpy(buf + 24, s->region.uuid, PROTO_UUID_LEN);
  buf[40] = s->region.encrypted;
  buf[41] = s->has_active;
  proto_le32(buf + 44, s->connections);
  proto_le64(buf + 48, s->highest_gen);
  proto_le64(buf + 56, s->active_session);
  proto_le64(buf + 64, s->idle_ms);
  memcpy(buf + 72, s->instance, PROTO_UUID_LEN);
  memcpy(buf + 96, s->active_peer, pl);
  return PROTO_STATUS_LEN;
}

size_t proto_put_error(uint8_t *buf, int32_t err, uint64_t job_id,
                       const char *text)
{
  size_t tl = text ? strnlen(text, PROTO_MAX_MSG) : 0;
  size_t len = PROTO_ERROR_HDR_LEN + tl;
  put_hdr(buf, (uint32_t) len, PROTO_T_ERROR);
  proto_le32(buf + 8, (uint32_t) err);
  proto_le32(buf + 12, 0);
  proto_le64(buf + 16, job_id);
  if (tl)
    memcpy(buf + PROTO_ERROR_HDR_LEN, text, tl);
  return len;
}

size_t proto_put_extent_states_req(uint8_t *buf)
{
  return put_hdr(buf, PROTO_EXTENT_STATES_REQ_LEN, PROTO_T_EXTENT_STATES_REQ);
}

size_t proto_put_extent_states_hdr(uint8_t *buf, uint32_t count)
{
  uint64_t len =
      PROTO_EXTENT_STATES_HDR_LEN + (uint64_t) count * PROTO_EXTENT_STATE_LEN;
  put_hdr(buf, (uint32_t) len, PROTO_T_EXTENT_STATES);
  proto_le32(buf + 8, count);
  proto_le32(buf + 12, 0);
  return PROTO_EXTENT_STATES_HDR_LEN;
}

size_t proto_put_activate(uint8_t *buf, const struct proto_activate *a)
{
  memset(buf, 0, PROTO_ACTIVATE_LEN);
  put_hdr(buf, PROTO_ACTIVATE_LEN, PROTO_T_ACTIVATE);
  proto_le64(buf + 8, a->gen);
  buf[16] = a->set_kcv;
  buf[17] = a->set_uuid;
  memcpy(buf + 20, a->kcv.nonce, PROTO_NONCE_LEN);
  memcpy(buf + 32, a->kcv.tag, PROTO_TAG_LEN);
  if (a->set_uuid)
    memcpy(buf + 48, a->uuid, PROTO_UUID_LEN);
  return PROTO_ACTIVATE_LEN;
}

/* ACTIVATE_OK, NO_LONGER_ACTIVE, PING and PONG share one shape. */
static size_t put_u64_frame(uint8_t *buf, uint16_t type, uint64_t v)
{
  put_hdr(buf, PROTO_FRAME_HDR_LEN + 8, type);
  proto_le64(buf + 8, v);
  return PROTO_FRAME_HDR_LEN + 8;
}

size_t proto_put_activate_ok(uint8_t *buf, uint64_t gen)
{
  return put_u64_frame(buf, PROTO_T_ACTIVATE_OK, gen);
}

size_t proto_put_no_longer_active(uint8_t *buf, uint64_t gen)
{
  return put_u64_frame(buf, PROTO_T_NO_LONGER_ACTIVE, gen);
}

size_t proto_put_ping(uint8_t *buf, uint16_t type, uint64_t v)
{
  return put_u64_frame(buf, type, v);
}

void proto_extent_state_put(uint8_t *p, const struct proto_extent_state *s)
{
  proto_le64(p, s->gen);
  proto_le64(p + 8, s->flush);
  memset(p + 16, 0, 8);
  p[16] = s->dirty;
}

void proto_extent_state_get(const uint8_t *p, struct proto_extent_state *s)
{
  s->gen = proto_rd64(p);
  s->flush = proto_rd64(p + 8);
  s->dirty = p[16];
}

/* ---- decoding ---- */

/* STATUS: every pad zero, booleans 0/1, the peer text printable and
 * NUL-terminated with zeroes after it. */
static int dec_status(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_status *s = &m->u.status;
  const uint8_t *p = b + 96;
  size_t pl;

  if (len != PROTO_STATUS_LEN)
    return -EPROTO;
  memset(s, 0, sizeof *s);
  s->region.block_size = proto_rd32(b + 8);
  s->region.extent_count = proto_rd32(b + 12);
  s->region.extent_size = proto_rd64(b + 16);
  memcpy(s->region.uuid, b + 24, PROTO_UUID_LEN);
  s->region.encrypted = b[40];
  s->has_active = b[41];
  s->connections = proto_rd32(b + 44);
  s->highest_gen = proto_rd64(b + 48);
  s->active_session = proto_rd64(b + 56);
  s->idle_ms = proto_rd64(b + 64);
  memcpy(s->instance, b + 72, PROTO_UUID_LEN);
  if (!is_bool(s->region.encrypted) || !is_bool(s->has_active) ||
      proto_rd16(b + 42) || proto_rd64(b + 88))
    return -EPROTO;
  pl = strnlen((const char *) p, PROTO_STATUS_PEER_LEN);
  if (pl == PROTO_STATUS_PEER_LEN)
    return -EPROTO;
  for (size_t i = 0; i < PROTO_STATUS_PEER_LEN; i++)
    if ((i < pl && (p[i] < 0x20 || p[i] >= 0x7f)) || (i > pl && p[i]))
      return -EPROTO;
  memcpy(s->active_peer, p, pl);
  return 0;
}

static int dec_hello(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_hello *h = &m->u.hello;
  if (len != PROTO_HELLO_LEN)
    return -EPROTO;
  h->version = proto_rd32(b + 8);
  h->role = b[12];
  h->read_only = b[13];
  h->encrypted = b[14];
  if (b[15] || !is_bool(h->read_only) || !is_bool(h->encrypted) ||
      (h->role != PROTO_ROLE_UPSTAIRS && h->role != PROTO_ROLE_REPAIR_PEER &&
       h->role != PROTO_ROLE_STATUS && h->role != PROTO_ROLE_SNAPSHOT))
    return -EPROTO;
  memcpy(h->uuid, b + 16, PROTO_UUID_LEN);
  h->session_id = proto_rd64(b + 32);
  h->gen = proto_rd64(b + 40);
  memcpy(h->auth_nonce, b + 48, PROTO_AUTH_NONCE_LEN);
  return 0;
}

static int dec_hello_ok(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_hello_ok *h = &m->u.hello_ok;
  if (len != PROTO_HELLO_OK_LEN)
    return -EPROTO;
  h->version = proto_rd32(b + 8);
  h->region.block_size = proto_rd32(b + 12);
  h->region.extent_size = proto_rd64(b + 16);
  h->region.extent_count = proto_rd32(b + 24);
  h->region.encrypted = b[28];
  h->has_kcv = b[29];
  h->auth_required = b[30];
  if (!is_bool(h->region.encrypted) || !is_bool(h->has_kcv) ||
      !is_bool(h->auth_required) || b[31] || proto_rd32(b + 132) ||
      geom_check(&h->region) < 0)
    return -EPROTO;
  memcpy(h->region.uuid, b + 32, PROTO_UUID_LEN);
  h->highest_gen = proto_rd64(b + 48);
  memcpy(h->kcv.nonce, b + 56, PROTO_NONCE_LEN);
  memcpy(h->kcv.tag, b + 68, PROTO_TAG_LEN);
  memcpy(h->auth_nonce, b + 84, PROTO_AUTH_NONCE_LEN);
  memcpy(h->instance, b + 116, PROTO_UUID_LEN);
  return 0;
}

static int dec_error(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_error *e = &m->u.error;
  if (len < PROTO_ERROR_HDR_LEN || len > PROTO_ERROR_HDR_LEN + PROTO_MAX_MSG)
    return -EPROTO;
  e->err = (int32_t) proto_rd32(b + 8);
  if (e->err <= 0 || proto_rd32(b + 12))
    return -EPROTO;
  e->job_id = proto_rd64(b + 16);
  size_t tl = len - PROTO_ERROR_HDR_LEN;
  /* The text ends up in logs: keep it printable and on one line. */
  for (size_t i = 0; i < tl; i++) {
    uint8_t c = b[PROTO_ERROR_HDR_LEN + i];
    e->text[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
  }
  e->text[tl] = '\0';
  return 0;
}

static int dec_extent_states(const uint8_t *b, size_t len, struct proto_msg *m)
{
  if (len < PROTO_EXTENT_STATES_HDR_LEN)
    return -EPROTO;
  uint32_t count = proto_rd32(b + 8);
  if (count == 0 || count > PROTO_MAX_EXTENTS || proto_rd32(b + 12) ||
      len != PROTO_EXTENT_STATES_HDR_LEN +
                 (uint64_t) count * PROTO_EXTENT_STATE_LEN)
    return -EPROTO;
  const uint8_t *s = b + PROTO_EXTENT_STATES_HDR_LEN;
  for (uint32_t i = 0; i < count; i++, s += PROTO_EXTENT_STATE_LEN)
    if (!is_bool(s[16]) || !all_zero(s + 17, 7))
      return -EPROTO;
  m->u.extent_states.count = count;
  m->u.extent_states.states = b + PROTO_EXTENT_STATES_HDR_LEN;
  return 0;
}

static int dec_activate(const uint8_t *b, size_t len, struct proto_msg *m)
{
  struct proto_activate *a = &m->u.activate;
  if (len != PROTO_ACTIVATE_LEN)
    return -EPROTO;
  a->gen = proto_rd64(b + 8);
  a->set_kcv = b[16];
  a->set_uuid = b[17];
  if (!is_bool(a->set_kcv) || !is_bool(a->set_uuid) || !all_zero(b + 18, 2))
    return -EPROTO;
  /* The uuid is there exactly when set_uuid says so. */
  if (all_zero(b + 48, PROTO_UUID_LEN) == (a->set_uuid != 0))
    return -EPROTO;
  memcpy(a->kcv.nonce, b + 20, PROTO_NONCE_LEN);
  memcpy(a->kcv.tag, b + 32, PROTO_TAG_LEN);
  memcpy(a->uuid, b + 48, PROTO_UUID_LEN);
  return 0;
}

static int dec_u64(const uint8_t *b, size_t len, uint64_t *v)
{
  if (len != PROTO_FRAME_HDR_LEN + 8)
    return -EPROTO;
  *v = proto_rd64(b + 8);
  return 0;
}

int proto_decode(const uint8_t *b, size_t len, uint32_t block_size,
                 struct proto_msg *m)
{
  memset(m, 0, sizeof *m);
  if (len < PROTO_FRAME_HDR_LEN || len > PROTO_MAX_FRAME)
    return len > PROTO_MAX_FRAME ? -EMSGSIZE : -EPROTO;
  if (proto_rd32(b) != len)
    return -EPROTO;
  m->type = proto_rd16(b + 4);
  m->flags = proto_rd16(b + 6);
  if (m->flags & ~(PROTO_F_CTX_ONLY | PROTO_F_VERSIONS) ||
      (m->flags && m->type != PROTO_T_READ && m->type != PROTO_T_READ_DONE) ||
      ((m->flags & PROTO_F_VERSIONS) &&
       (m->type != PROTO_T_READ || !(m->flags & PROTO_F_CTX_ONLY))))
    return -EPROTO;
  switch (m->type) {
  case PROTO_T_HELLO: return dec_hello(b, len, m);
  case PROTO_T_HELLO_OK: return dec_hello_ok(b, len, m);
  case PROTO_T_ERROR: return dec_error(b, len, m);
  case PROTO_T_EXTENT_STATES_REQ:
    return len == PROTO_EXTENT_STATES_REQ_LEN ? 0 : -EPROTO;
  case PROTO_T_EXTENT_STATES: return dec_extent_states(b, len, m);
  case PROTO_T_ACTIVATE: return dec_activate(b, len, m);
  case PROTO_T_ACTIVATE_OK:
  case PROTO_T_NO_LONGER_ACTIVE:
    if (dec_u64(b, len, &m->u.gen) < 0 || m->u.gen == 0)
      return -EPROTO;
    return 0;
  case PROTO_T_PING:
  case PROTO_T_PONG: return dec_u64(b, len, &m->u.ping);
  case PROTO_T_AUTH:
  case PROTO_T_AUTH_OK:
    if (len != PROTO_AUTH_LEN)
      return -EPROTO;
    memcpy(m->u.auth_mac, b + 8, sizeof m->u.auth_mac);
    return 0;
  case PROTO_T_STATUS_REQ: return len == PROTO_STATUS_REQ_LEN ? 0 : -EPROTO;
  case PROTO_T_STATUS: return dec_status(b, len, m);
  default: return proto__decode_job(b, len, block_size, m);
  }
}
