/* crucible-c downstairs: `crucible-downstairs status` and its server side.
 *
 * A status peer says HELLO with role STATUS (no uuid, no key), proves
 * the auth key if the downstairs asks for one (same AUTH exchange as an
 * upstairs; a client holding a key refuses a downstairs that does not
 * ask), then sends STATUS_REQ and gets STATUS: the region (uuid,
 * geometry, encrypted, instance), the highest accepted generation, the
 * number of connections and the active upstairs session (id, address,
 * milliseconds since its last frame).  It may send nothing else
 * (server.c frame_allowed); the server closes after the answer.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/auth.h"
#include "../common/geom.h"
#include "../common/log.h"
#include "server_int.h"
#include "status.h"

int ds_status(struct ds_conn *c)
{
  struct ds_server *srv = c->srv;
  struct proto_status s;
  uint8_t f[PROTO_STATUS_LEN];
  size_t n;

  memset(&s, 0, sizeof s);
  s.region = srv->def;
  memcpy(s.instance, srv->instance, PROTO_UUID_LEN);
  s.highest_gen = region_highest_gen(srv->region);
  s.connections = srv->nlive;
  if (srv->active) {
    uint64_t now = uv_now(&srv->loop);
    s.has_active = 1;
    s.active_session = srv->active->session_id;
    s.idle_ms =
        now > srv->active->last_frame_ms ? now - srv->active->last_frame_ms : 0;
    snprintf(s.active_peer, sizeof s.active_peer, "%s", srv->active->peer);
  }
  log_info("%s: status answered", c->peer);
  n = proto_put_status(f, &s);
  if (ds_conn_send_copy(c, f, n) < 0)
    return -1;
  ds_conn_close(c, 0, "status answered");
  return -1; /* closed: nothing more from this connection */
}

/* ---- the client ---- */

/* Milliseconds on CLOCK_MONOTONIC. */
static int64_t st_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be ready for ev before end: 0 or -ETIMEDOUT/-errno. */
static int st_wait(int fd, short ev, int64_t end)
{
  for (;;) {
    struct pollfd p = {.fd = fd, .events = ev};
    int64_t left = end - st_ms();
    int r;
    if (left <= 0)
      return -ETIMEDOUT;
    r = poll(&p, 1, (int) left);
    if (r > 0)
      return 0;
    if (r < 0 && errno != EINTR)
      return -errno;
  }
}

static int st_send(int fd, const uint8_t *b, size_t len, int64_t end)
{
  while (len > 0) {
    ssize_t n;
    int r = st_wait(fd, POLLOUT, end);
    if (r < 0)
      return r;
    n = send(fd, b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n <= 0)
      return n < 0 ? -errno : -EPIPE;
    b += n;
    len -= (size_t) n;
  }
  return 0;
}

static int st_recv(int fd, uint8_t *b, size_t len, int64_t end)
{
  while (len > 0) {
    ssize_t n;
    int r = st_wait(fd, POLLIN, end);
    if (r < 0)
      return r;
    n = recv(fd, b, len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n == 0)
      return -ECONNRESET;
    if (n < 0)
      return -errno;
    b += n;
    len -= (size_t) n;
  }
  return 0;
}

/* Read one frame (at most sizeof of a small frame) into buf and decode
 * it; an ERROR frame becomes err text.  0 or -errno. */
static int st_frame(int fd, uint8_t *buf, size_t cap, size_t *len,
                    struct proto_msg *m, int64_t end, char *err, size_t esz)
{
  int64_t fl;
  int r = st_recv(fd, buf, 4, end);

  if (r < 0) {
    snprintf(err, esz, "%s",
             r == -ECONNRESET ? "connection closed by the "
                                "downstairs"
                              : log_strerror(-r));
    return r;
  }
  fl = proto_frame_len(buf, 4);
  if (fl <= 0 || (size_t) fl > cap) {
    snprintf(err, esz, "bad frame from the downstairs (length %lld)",
             (long long) fl);
    return -EPROTO;
  }
  if ((r = st_recv(fd, buf + 4, (size_t) fl - 4, end)) < 0) {
    snprintf(err, esz, "%s", log_strerror(-r));
    return r;
  }
  *len = (size_t) fl;
  if ((r = proto_decode(buf, *len, 0, m)) < 0) {
    snprintf(err, esz, "malformed %s frame from the downstairs",
             proto_type_name(proto_rd16(buf + 4)));
    return r;
  }
  if (m->type == PROTO_T_ERROR) {
    snprintf(err, esz, "refused: %s", m->u.error.text);
    return -EACCES;
  }
  return 0;
}

/* Connect to host:port before end: the fd, or -errno (err says why). */
static int st_connect(const char *host, uint16_t port, int64_t end, char *err,
                      size_t esz)
{
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  char ps[8];
  int fd, r, soerr = 0;
  socklen_t sl = sizeof soerr;

  snprintf(ps, sizeof ps, "%u", port);
  if ((r = getaddrinfo(host, ps, &hints, &ai)) != 0) {
    snprintf(err, esz, "%s: %s", host, gai_strerror(r));
    return -EINVAL;
  }
  fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    r = -errno;
    freeaddrinfo(ai);
    snprintf(err, esz, "socket: %s", log_strerror(-r));
    return r;
  }
  r = connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
  freeaddrinfo(ai);
  if (r == -EINPROGRESS) {
    r = st_wait(fd, POLLOUT, end);
    if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0)
      r = -soerr;
  }
  if (r < 0) {
    snprintf(err, esz, "%s:%u: %s", host, port, log_strerror(-r));
    close(fd);
    return r;
  }
  return fd;
}

/* The handshake and question on a connected fd. */
static int st_ask(int fd, const struct auth_key *auth, struct proto_status *out,
                  int64_t end, char *err, size_t esz)
{
  struct proto_hello h;
  struct proto_msg m;
  uint8_t hb[PROTO_HELLO_LEN], buf[1024], t[AUTH_MAC_LEN], mac[AUTH_MAC_LEN];
  uint8_t f[PROTO_AUTH_LEN];
  size_t len;
  int r;

  memset(&h, 0, sizeof h);
  h.version = PROTO_VERSION;
  h.role = PROTO_ROLE_STATUS;
  if (auth_random(h.auth_nonce, sizeof h.auth_nonce) < 0) {
    snprintf(err, esz, "no random bytes");
    return -EIO;
  }
  proto_put_hello(hb, &h);
  if ((r = st_send(fd, hb, sizeof hb, end)) < 0 ||
      (r = st_frame(fd, buf, sizeof buf, &len, &m, end, err, esz)) < 0) {
    if (r != -EACCES && !err[0])
      snprintf(err, esz, "%s", log_strerror(-r));
    return r;
  }
  if (m.type != PROTO_T_HELLO_OK) {
    snprintf(err, esz, "unexpected %s from the downstairs",
             proto_type_name(m.type));
    return -EPROTO;
  }
  if (m.u.hello_ok.auth_required && (!auth || !auth->len)) {
    snprintf(err, esz,
             "the downstairs requires an auth key (--auth-key "
             "FILE)");
    return -EACCES;
  }
  if (!m.u.hello_ok.auth_required && auth && auth->len) {
    snprintf(err, esz,
             "the downstairs does not ask for the auth key "
             "given: refused (not the downstairs expected?)");
    return -EACCES;
  }
  if (m.u.hello_ok.auth_required) {
    if (auth_transcript(hb, sizeof hb, buf, len, t) < 0 ||
        auth_mac(auth, AUTH_CLIENT, t, mac) < 0) {
      snprintf(err, esz, "computing the auth proof failed");
      return -EIO;
    }
    proto_put_auth(f, PROTO_T_AUTH, mac);
    if ((r = st_send(fd, f, sizeof f, end)) < 0 ||
        (r = st_frame(fd, buf, sizeof buf, &len, &m, end, err, esz)) < 0)
      return r;
    if (m.type != PROTO_T_AUTH_OK ||
        auth_check(auth, AUTH_SERVER, t, m.u.auth_mac) < 0) {
      snprintf(err, esz, "the downstairs did not prove the auth key");
      return -EACCES;
    }
  }
  proto_put_status_req(f);
  if ((r = st_send(fd, f, PROTO_STATUS_REQ_LEN, end)) < 0 ||
      (r = st_frame(fd, buf, sizeof buf, &len, &m, end, err, esz)) < 0)
    return r;
  if (m.type != PROTO_T_STATUS) {
    snprintf(err, esz, "unexpected %s from the downstairs",
             proto_type_name(m.type));
    return -EPROTO;
  }
  *out = m.u.status;
  return 0;
}

int ds_status_query(const char *host, uint16_t port,
                    const struct auth_key *auth, unsigned timeout_s,
                    struct proto_status *out, char *err, size_t esz)
{
  int64_t end = st_ms() + (int64_t) timeout_s * 1000;
  int fd, r;

  err[0] = '\0';
  fd = st_connect(host, port, end, err, esz);
  if (fd < 0)
    return fd;
  r = st_ask(fd, auth, out, end, err, esz);
  close(fd);
  return r;
}
