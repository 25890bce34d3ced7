/* Unit test: the wire codec's frame header and session and admin frames
 * (common/proto.c).  Every frame type round-trips, every strict prefix is
 * rejected, random mutations stay inside the buffer (test_proto.h); the
 * job frames are test_proto_job.c's. */
#include "test_proto.h"

/* Build one frame of every type, decode it and check every field. */
static void build_and_roundtrip(void)
{
  struct proto_msg m;
  struct frame *f;

  struct proto_hello h = {.version = PROTO_VERSION,
                          .role = PROTO_ROLE_UPSTAIRS,
                          .encrypted = 1,
                          .session_id = 0x1122334455667788ull,
                          .gen = 9};
  fill(h.uuid, 16, 1);
  fill(h.auth_nonce, 32, 2);
  f = add();
  f->len = proto_put_hello(f->b, &h);
  CHECK(f->len == PROTO_HELLO_LEN);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.type == PROTO_T_HELLO);
  CHECK(memcmp(&m.u.hello.uuid, h.uuid, 16) == 0);
  CHECK(m.u.hello.session_id == h.session_id && m.u.hello.gen == 9);
  CHECK(m.u.hello.encrypted == 1 && m.u.hello.role == PROTO_ROLE_UPSTAIRS);
  CHECK(memcmp(m.u.hello.auth_nonce, h.auth_nonce, 32) == 0);

  struct proto_hello_ok ok = {.version = PROTO_VERSION,
                              .region = {.block_size = 4096,
                                         .extent_count = 8,
                                         .extent_size = 32768,
                                         .encrypted = 1},
                              .has_kcv = 1,
                              .highest_gen = 77,
                              .auth_required = 1};
  fill(ok.region.uuid, 16, 3);
  fill(ok.kcv.nonce, 12, 4);
  fill(ok.kcv.tag, 16, 5);
  fill(ok.instance, 16, 6);
  f = add();
  f->len = proto_put_hello_ok(f->b, &ok);
  CHECK(f->len == PROTO_HELLO_OK_LEN && f->len == 136);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.type == PROTO_T_HELLO_OK);
  CHECK(m.u.hello_ok.region.block_size == 4096 &&
        m.u.hello_ok.region.extent_size == 32768 &&
        m.u.hello_ok.region.extent_count == 8 &&
        m.u.hello_ok.region.encrypted == 1 && m.u.hello_ok.has_kcv == 1 &&
        m.u.hello_ok.highest_gen == 77 && m.u.hello_ok.auth_required == 1);
  CHECK(memcmp(m.u.hello_ok.region.uuid, ok.region.uuid, 16) == 0);
  CHECK(memcmp(m.u.hello_ok.kcv.nonce, ok.kcv.nonce, 12) == 0);
  CHECK(memcmp(m.u.hello_ok.kcv.tag, ok.kcv.tag, 16) == 0);
  CHECK(memcmp(m.u.hello_ok.instance, ok.instance, 16) == 0);
  f->b[132] = 1; /* the pad after the instance id */
  CHECK(proto_decode(f->b, f->len, 0, &m) == -EPROTO);
  f->b[132] = 0;

  f = add();
  f->len = proto_put_error(f->b, EACCES, 5, "key check\nvalue differs");
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.type == PROTO_T_ERROR);
  CHECK(m.u.error.err == EACCES && m.u.error.job_id == 5);
  CHECK(strcmp(m.u.error.text, "key check?value differs") == 0);

  f = add();
  f->len = proto_put_extent_states_req(f->b);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 &&
        m.type == PROTO_T_EXTENT_STATES_REQ);

  f = add();
  f->len = proto_put_extent_states_hdr(f->b, 3);
  for (int i = 0; i < 3; i++) {
    struct proto_extent_state s = {
        .gen = 10 + i, .flush = 20 + i, .dirty = i == 1};
    proto_extent_state_put(f->b + f->len, &s);
    f->len += PROTO_EXTENT_STATE_LEN;
  }
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.u.extent_states.count == 3);
  for (int i = 0; i < 3; i++) {
    struct proto_extent_state s;
    proto_extent_state_get(m.u.extent_states.states + i * 24, &s);
    CHECK(s.gen == 10u + i && s.flush == 20u + i && s.dirty == (i == 1));
  }

  struct proto_activate a = {.gen = 12, .set_kcv = 1};
  fill(a.kcv.nonce, 12, 6);
  fill(a.kcv.tag, 16, 7);
  f = add();
  f->len = proto_put_activate(f->b, &a);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.u.activate.gen == 12 &&
        m.u.activate.set_kcv == 1 &&
        memcmp(m.u.activate.kcv.tag, a.kcv.tag, 16) == 0 &&
        memcmp(m.u.activate.kcv.nonce, a.kcv.nonce, 12) == 0 &&
        m.u.activate.set_uuid == 0);
  /* set_uuid carries a uuid, never zero; without it the bytes are zero. */
  a.set_uuid = 1;
  fill(a.uuid, 16, 8);
  f = add();
  f->len = proto_put_activate(f->b, &a);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.u.activate.set_uuid == 1 &&
        memcmp(m.u.activate.uuid, a.uuid, 16) == 0);
  {
    uint8_t t[PROTO_ACTIVATE_LEN];
    memcpy(t, f->b, sizeof t);
    memset(t + 48, 0, 16); /* set_uuid with a zero uuid */
    CHECK(proto_decode(t, sizeof t, 0, &m) == -EPROTO);
    memcpy(t, f->b, sizeof t);
    t[17] = 0; /* a uuid without set_uuid */
    CHECK(proto_decode(t, sizeof t, 0, &m) == -EPROTO);
    memcpy(t, f->b, sizeof t);
    t[17] = 2; /* not a boolean */
    CHECK(proto_decode(t, sizeof t, 0, &m) == -EPROTO);
    memcpy(t, f->b, sizeof t);
    t[18] = 1; /* pad */
    CHECK(proto_decode(t, sizeof t, 0, &m) == -EPROTO);
  }
  a.set_uuid = 0;
  memset(a.uuid, 0, 16);

  f = add();
  f->len = proto_put_activate_ok(f->b, 12);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 &&
        m.type == PROTO_T_ACTIVATE_OK && m.u.gen == 12);
  f = add();
  f->len = proto_put_no_longer_active(f->b, 13);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 &&
        m.type == PROTO_T_NO_LONGER_ACTIVE && m.u.gen == 13);

  f = add();
  f->len = proto_put_ping(f->b, PROTO_T_PING, 31);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.type == PROTO_T_PING &&
        m.u.ping == 31);
  f = add();
  f->len = proto_put_ping(f->b, PROTO_T_PONG, 32);
  CHECK(proto_decode(f->b, f->len, 0, &m) == 0 && m.type == PROTO_T_PONG &&
        m.u.ping == 32);
}

/* Specific malformations the decoder must catch: the frame header and
 * the session frames. */
static void test_rejects(void)
{
  struct proto_msg m;
  uint8_t b[MAXF] = {0};
  size_t len;

  CHECK(proto_frame_len(b, 3) == 0);
  proto_le32(b, 7);
  CHECK(proto_frame_len(b, 4) == -EPROTO);
  proto_le32(b, PROTO_MAX_FRAME + 1);
  CHECK(proto_frame_len(b, 4) == -EPROTO);
  proto_le32(b, 100);
  CHECK(proto_frame_len(b, 4) == 100);

  len = proto_put_ping(b, PROTO_T_PING, 1);
  proto_le16(b + 4, 999); /* unknown type */
  CHECK(proto_decode(b, len, 0, &m) == -ENOTSUP);
  proto_le16(b + 4, PROTO_T_PING);
  proto_le16(b + 6, 1); /* unknown flag */
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  proto_le16(b + 6, 0);
  CHECK(proto_decode(b, len + 1, 0, &m) == -EPROTO); /* length mismatch */

  /* HELLO_OK with impossible geometry. */
  struct proto_hello_ok ok = {
      .region = {.block_size = 1000, .extent_count = 1, .extent_size = 1}};
  len = proto_put_hello_ok(b, &ok);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);

  /* ERROR with errno 0, and with a text past the cap. */
  len = proto_put_error(b, 0, 0, "x");
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  static uint8_t big[PROTO_ERROR_HDR_LEN + PROTO_MAX_MSG + 1];
  char text[PROTO_MAX_MSG + 2];
  memset(text, 'a', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  len = proto_put_error(big, EIO, 0, text);
  CHECK(len == PROTO_ERROR_HDR_LEN + PROTO_MAX_MSG);
  CHECK(proto_decode(big, len, 0, &m) == 0);
  proto_le32(big, (uint32_t) len + 1);
  CHECK(proto_decode(big, len + 1, 0, &m) == -EPROTO);

  /* HELLO_OK: auth_required not a boolean, then its pad byte. */
  struct proto_hello_ok hok = {
      .version = PROTO_VERSION,
      .region = {.block_size = 4096, .extent_count = 1, .extent_size = 8}};
  len = proto_put_hello_ok(b, &hok);
  CHECK(proto_decode(b, len, 0, &m) == 0);
  b[30] = 2;
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  b[30] = 1;
  b[31] = 1;
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  /* AUTH one byte short. */
  len = proto_put_auth(b, PROTO_T_AUTH, b + 100);
  proto_le32(b, (uint32_t) len - 1);
  CHECK(proto_decode(b, len - 1, 0, &m) == -EPROTO);
  /* ACTIVATE_OK with generation 0 is illegal. */
  len = proto_put_activate_ok(b, 0);
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
}

/* STATUS_REQ / STATUS (the status role): round trip and every
 * malformed variant refused. */
static void test_status(void)
{
  struct proto_msg m;
  struct proto_status st, *d = &m.u.status;
  struct proto_hello h;
  uint8_t b[PROTO_STATUS_LEN + 8], hb[PROTO_HELLO_LEN];
  size_t len;

  len = proto_put_status_req(b);
  CHECK(len == PROTO_STATUS_REQ_LEN);
  CHECK(proto_decode(b, len, 0, &m) == 0 && m.type == PROTO_T_STATUS_REQ);
  proto_le32(b, PROTO_STATUS_REQ_LEN + 8); /* a body it must not have */
  memset(b + 8, 0, 8);
  CHECK(proto_decode(b, PROTO_STATUS_REQ_LEN + 8, 0, &m) == -EPROTO);

  memset(&st, 0, sizeof st);
  st.region.block_size = 4096;
  st.region.extent_count = 16;
  st.region.extent_size = 1024;
  st.region.encrypted = 1;
  memset(st.region.uuid, 0xab, sizeof st.region.uuid);
  memset(st.instance, 0xcd, sizeof st.instance);
  st.highest_gen = 7;
  st.connections = 2;
  st.has_active = 1;
  st.active_session = 0x1122334455667788ull;
  st.idle_ms = 1234;
  snprintf(st.active_peer, sizeof st.active_peer, "127.0.0.1:4567");
  len = proto_put_status(b, &st);
  CHECK(len == PROTO_STATUS_LEN);
  CHECK(proto_decode(b, len, 0, &m) == 0 && m.type == PROTO_T_STATUS);
  CHECK(d->region.block_size == 4096 && d->region.extent_count == 16 &&
        d->region.extent_size == 1024 && d->region.encrypted == 1 &&
        d->highest_gen == 7 && d->connections == 2 && d->has_active == 1 &&
        d->active_session == st.active_session && d->idle_ms == 1234 &&
        memcmp(d->region.uuid, st.region.uuid, PROTO_UUID_LEN) == 0 &&
        memcmp(d->instance, st.instance, PROTO_UUID_LEN) == 0 &&
        strcmp(d->active_peer, "127.0.0.1:4567") == 0);
  for (size_t p = 0; p < len; p++) { /* every truncation, on the heap */
    uint8_t *t = malloc(p ? p : 1);
    CHECK(t != NULL);
    memcpy(t, b, p);
    CHECK(proto_decode(t, p, 0, &m) < 0);
    free(t);
  }
  proto_le32(b, PROTO_STATUS_LEN + 1); /* one byte long */
  b[PROTO_STATUS_LEN] = 0;
  CHECK(proto_decode(b, PROTO_STATUS_LEN + 1, 0, &m) == -EPROTO);
  proto_le32(b, PROTO_STATUS_LEN);
  {
    /* offset, bad value: booleans, pads, the peer text. */
    static const struct {
      size_t off;
      uint8_t v;
    } bad[] = {
        {40, 2},
        {41, 2},
        {42, 1},
        {43, 1},
        {88, 1},
        {95, 1},
        {96 + 3, 0x01}, /* control byte in the peer */
        {96 + 3, 0x80}, /* not ASCII */
        {96 + 20, 'x'}, /* junk after the NUL */
        {96 + PROTO_STATUS_PEER_LEN - 1, 'x'},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
      uint8_t save = b[bad[k].off];
      b[bad[k].off] = bad[k].v;
      CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
      b[bad[k].off] = save;
    }
  }
  memset(b + 96, 'a', PROTO_STATUS_PEER_LEN); /* no NUL at all */
  CHECK(proto_decode(b, len, 0, &m) == -EPROTO);
  /* An encoder given an over-long peer truncates and stays decodable. */
  memset(st.active_peer, 'z', sizeof st.active_peer);
  len = proto_put_status(b, &st);
  CHECK(proto_decode(b, len, 0, &m) == 0 &&
        strlen(d->active_peer) == PROTO_STATUS_PEER_LEN - 1);

  /* HELLO: the status and snapshot roles are known, the next one is
   * not. */
  memset(&h, 0, sizeof h);
  h.version = PROTO_VERSION;
  h.role = PROTO_ROLE_STATUS;
  len = proto_put_hello(hb, &h);
  CHECK(proto_decode(hb, len, 0, &m) == 0 &&
        m.u.hello.role == PROTO_ROLE_STATUS);
  hb[12] = PROTO_ROLE_SNAPSHOT;
  CHECK(proto_decode(hb, len, 0, &m) == 0 &&
        m.u.hello.role == PROTO_ROLE_SNAPSHOT);
  hb[12] = PROTO_ROLE_SNAPSHOT + 1;
  CHECK(proto_decode(hb, len, 0, &m) == -EPROTO);
  CHECK(strcmp(proto_type_name(PROTO_T_STATUS), "STATUS") == 0);
  CHECK(PROTO_T_STATUS < PROTO_T_MAX_);
}

int main(void)
{
  build_and_roundtrip();
  test_rejects();
  test_prefixes_and_mutations();
  test_status();
  return test_done("test_proto");
}
