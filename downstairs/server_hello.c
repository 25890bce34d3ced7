/* crucible-c downstairs: HELLO and ACTIVATE (server.h has the rules).
 *
 * With an auth key, HELLO_OK carries a fresh server nonce and
 * auth_required, and AUTH must prove the key (common/auth.h) before any
 * other frame: answered by AUTH_OK with the server's proof, or ERROR
 * EACCES and close.
 *
 * HELLO is refused (ERROR, then close) for another protocol version, a
 * uuid that is neither zero nor the region's (a region of no volume yet,
 * made by `create` without -u, accepts any: ACTIVATE names the uuid it
 * adopts, persisted before anything else), or (upstairs only) an
 * encryption flag that differs from the region's.  A repair peer may name
 * no uuid: `crucible-downstairs clone` learns the region from HELLO_OK.
 * ACTIVATE(gen) is refused for gen 0, gen below the region's highest
 * accepted generation, or gen equal to it from a session other than the
 * one that activated it in this process; the new generation is persisted
 * (region_set_highest_gen) before ACTIVATE_OK, and the previously active
 * connection gets NO_LONGER_ACTIVE and is closed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/auth.h"
#include "../common/geom.h"
#include "../common/log.h"
#include "server_int.h"

/* HELLO: check version, role, uuid, encryption; answer HELLO_OK. */
int ds_hello(struct ds_conn *c, const struct proto_hello *h)
{
  struct ds_server *srv = c->srv;
  const struct proto_region *d = &srv->def;
  if (h->version != PROTO_VERSION) {
    ds_conn_fail(c, EPROTONOSUPPORT,
                 "protocol version %u not supported (want %u)", h->version,
                 PROTO_VERSION);
    return -1;
  }
  /* A region of no volume yet (uuid all zero) answers any uuid: it takes
   * its volume's at ACTIVATE. */
  if (!geom_uuid_is_zero(h->uuid) && !geom_uuid_is_zero(d->uuid) &&
      memcmp(h->uuid, d->uuid, PROTO_UUID_LEN) != 0) {
    char a[37], b[37];
    geom_uuid_format(d->uuid, a);
    geom_uuid_format(h->uuid, b);
    ds_conn_fail(c, EINVAL, "region uuid mismatch: region %s, upstairs %s", a,
                 b);
    return -1;
  }
  /* A repair peer copies files it does not interpret; one that names no
   * uuid is a `clone` learning the region from HELLO_OK.  A status peer
   * (`status`) holds no key either. */
  if ((h->role == PROTO_ROLE_UPSTAIRS || h->role == PROTO_ROLE_SNAPSHOT) &&
      h->encrypted != d->encrypted) {
    ds_conn_fail(c, EINVAL, "%s",
                 d->encrypted
                     ? "region is encrypted but the upstairs has no key: "
                       "add key=+FILE (the volume's key)"
                     : "region is not encrypted but the upstairs has a key: "
                       "remove key=");
    return -1;
  }
  struct proto_hello_ok ok;
  memset(&ok, 0, sizeof ok);
  ok.version = PROTO_VERSION;
  ok.region = *d;
  ok.has_kcv = region_get_kcv(srv->region, &ok.kcv) == 1;
  ok.highest_gen = region_highest_gen(srv->region);
  ok.auth_required = srv->opts->auth && srv->opts->auth->len > 0;
  memcpy(ok.instance, srv->instance, PROTO_UUID_LEN);
  uint8_t f[PROTO_HELLO_OK_LEN];
  size_t n;
  if (ok.auth_required) {
    /* The decoder is strict, so re-encoding HELLO gives the bytes the
     * peer sent: the transcript both sides hash. */
    uint8_t hb[PROTO_HELLO_LEN];
    if (auth_random(ok.auth_nonce, sizeof ok.auth_nonce) < 0) {
      ds_conn_fail(c, EIO, "no random bytes for the auth nonce");
      return -1;
    }
    proto_put_hello(hb, h);
    n = proto_put_hello_ok(f, &ok);
    if (auth_transcript(hb, sizeof hb, f, n, c->auth_t) < 0) {
      ds_conn_fail(c, EIO, "hashing the handshake failed");
      return -1;
    }
    c->need_auth = true;
  }
  c->session_id = h->session_id;
  c->read_only = h->read_only;
  c->repair_peer = h->role == PROTO_ROLE_REPAIR_PEER;
  c->status_peer = h->role == PROTO_ROLE_STATUS;
  c->snap_reader = h->role == PROTO_ROLE_SNAPSHOT;
  if (c->snap_reader) /* it takes no generation: nothing written */
    c->read_only = true;
  c->state = DS_NEGOTIATED;
  if (c->snap_reader)
    log_info("%s: hello: snapshot reader, session %016llx", c->peer,
             (unsigned long long) h->session_id);
  else if (c->status_peer)
    log_info("%s: hello: status peer", c->peer);
  else if (c->repair_peer)
    log_info("%s: hello: repair peer", c->peer);
  else
    log_info("%s: hello: session %016llx gen %llu%s", c->peer,
             (unsigned long long) h->session_id, (unsigned long long) h->gen,
             h->read_only ? " read-only" : "");
  n = proto_put_hello_ok(f, &ok);
  return ds_conn_send_copy(c, f, n) < 0 ? -1 : 0;
}

/* AUTH: the peer's proof over this connection's transcript; answer with
 * ours, or refuse (one log line naming the peer, never the key). */
int ds_auth(struct ds_conn *c, const uint8_t mac[32])
{
  uint8_t f[PROTO_AUTH_LEN], ours[AUTH_MAC_LEN];
  const struct auth_key *k = c->srv->opts->auth;
  if (auth_check(k, AUTH_CLIENT, c->auth_t, mac) < 0) {
    log_warn("%s: authentication failed (wrong auth key or replayed "
             "handshake)",
             c->peer);
    ds_conn_fail(c, EACCES, "authentication failed");
    return -1;
  }
  if (auth_mac(k, AUTH_SERVER, c->auth_t, ours) < 0) {
    ds_conn_fail(c, EIO, "computing the auth proof failed");
    return -1;
  }
  c->need_auth = false;
  log_info("%s: authenticated", c->peer);
  size_t n = proto_put_auth(f, PROTO_T_AUTH_OK, ours);
  return ds_conn_send_copy(c, f, n) < 0 ? -1 : 0;
}

/* Key check value part of ACTIVATE: store it or compare it. */
static int activate_kcv(struct ds_conn *c, const struct proto_activate *a)
{
  struct proto_kcv have;
  int has = region_get_kcv(c->srv->region, &have) == 1;
  if (!a->set_kcv)
    return 0;
  if (has) {
    if (memcmp(&have, &a->kcv, sizeof have) != 0) {
      ds_conn_fail(c, EACCES, "key check value differs");
      return -1;
    }
    return 0;
  }
  int r = region_set_kcv(c->srv->region, &a->kcv);
  if (r < 0) {
    ds_conn_fail(c, -r, "storing key check value: %s", log_strerror(-r));
    return -1;
  }
  return 0;
}

/* Volume uuid part of ACTIVATE: a region of no volume yet takes the one
 * named (persisted first: the key check value it may store next is bound
 * to it); one that has a uuid must be named it or nothing. */
static int activate_uuid(struct ds_conn *c, const struct proto_activate *a)
{
  struct ds_server *srv = c->srv;
  bool none = geom_uuid_is_zero(srv->def.uuid);
  char have[37], want[37];

  if (!a->set_uuid) {
    if (!none)
      return 0;
    ds_conn_fail(c, EINVAL,
                 "region has no volume uuid yet and ACTIVATE "
                 "names none");
    return -1;
  }
  geom_uuid_format(srv->def.uuid, have);
  geom_uuid_format(a->uuid, want);
  int r = region_set_uuid(srv->region, a->uuid);
  if (r == -EEXIST) {
    ds_conn_fail(c, EINVAL, "region uuid mismatch: region %s, upstairs %s",
                 have, want);
    return -1;
  }
  if (r < 0) {
    ds_conn_fail(c, -r, "storing volume uuid: %s", log_strerror(-r));
    return -1;
  }
  if (none) {
    memcpy(srv->def.uuid, a->uuid, PROTO_UUID_LEN);
    log_info("%s: region adopts volume uuid %s", c->peer, want);
  }
  return 0;
}

/* ACTIVATE(gen): the generation rules of server.h, persisted before the
 * reply; the previous active connection is told and closed. */
int ds_activate(struct ds_conn *c, const struct proto_activate *a)
{
  struct ds_server *srv = c->srv;
  uint64_t high = region_highest_gen(srv->region);
  unsigned long long g = a->gen, h = high;
  if (a->gen == 0) {
    ds_conn_fail(c, EINVAL, "generation 0 is not allowed");
    return -1;
  }
  if (a->gen < high) {
    ds_conn_fail(c, ESTALE,
                 "generation %llu is lower than %llu already accepted", g, h);
    return -1;
  }
  if (a->gen == high && srv->have_session && srv->session_id != c->session_id) {
    ds_conn_fail(c, ESTALE,
                 "generation %llu was already activated by another session", g);
    return -1;
  }
  if (a->gen == high && !srv->have_session)
    log_warn("%s: generation %llu re-activated by session %016llx "
             "(the activating session is not known since restart)",
             c->peer, g, (unsigned long long) c->session_id);
  if (activate_uuid(c, a) < 0 || activate_kcv(c, a) < 0)
    return -1;
  if (a->gen > high) {
    int r = region_set_highest_gen(srv->region, a->gen);
    if (r < 0) {
      ds_conn_fail(c, -r, "persisting generation %llu: %s", g,
                   log_strerror(-r));
      return -1;
    }
  }
  srv->have_session = true;
  srv->session_id = c->session_id;
  struct ds_conn *old = srv->active;
  srv->active = c;
  c->state = DS_ACTIVE;
  log_info("%s: activated generation %llu (session %016llx)", c->peer, g,
           (unsigned long long) c->session_id);
  uint8_t f[PROTO_ACTIVATE_OK_LEN];
  size_t n = proto_put_activate_ok(f, a->gen);
  if (ds_conn_send_copy(c, f, n) < 0)
    return -1;
  if (old && old != c) {
    char why[128];
    snprintf(why, sizeof why, "taken over by %s with generation %llu", c->peer,
             g);
    n = proto_put_no_longer_active(f, a->gen);
    if (ds_conn_send_copy(old, f, n) == 0)
      ds_conn_close(old, 0, why);
  }
  return 0;
}
