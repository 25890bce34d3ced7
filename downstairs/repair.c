/* crucible-c downstairs: the repair peer protocol and leftover repair
 * copies (see repair.h). */
#include "repair.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "../common/auth.h"
#include "../common/geom.h"
#include "../common/log.h"
#include "extent.h"
#include "fsutil.h"

/* Paths of one extent: rel "XX/YYY/ZZZ", its directory "XX/YYY" and its
 * base name "ZZZ". */
struct rpaths {
  char rel[EXT_PATH_MAX];
  char dir[EXT_PATH_MAX];
  const char *base;
};

static void rpaths_init(struct rpaths *p, uint32_t eid)
{
  ext_path(eid, p->rel);
  memcpy(p->dir, p->rel, sizeof p->dir);
  char *slash = strrchr(p->dir, '/');
  *slash = '\0';
  p->base = p->rel + (slash - p->dir) + 1;
}

/* .replace/ exists: the new copy is committed.  Move its files over the
 * originals (a file already moved is simply absent), then retire it. */
static int finish_replace(int dirfd, const struct rpaths *p)
{
  char rep[48], comp[48], from[96], to[96];
  static const char *const sfx[] = {"", ".db"};
  int r = 0;

  snprintf(rep, sizeof rep, "%s.replace", p->rel);
  snprintf(comp, sizeof comp, "%s.completed", p->rel);
  /* The old database's WAL must never be replayed onto the new one (its
   * journal could not be: another epoch; it goes too). */
  static const char *const side[] = {"-wal", "-shm", "-jnl"};
  for (int i = 0; i < 3; i++) {
    snprintf(to, sizeof to, "%s.db%s", p->rel, side[i]);
    if (unlinkat(dirfd, to, 0) < 0 && errno != ENOENT)
      return -errno;
  }
  for (int i = 0; i < 2; i++) {
    snprintf(from, sizeof from, "%s/%s%s", rep, p->base, sfx[i]);
    snprintf(to, sizeof to, "%s%s", p->rel, sfx[i]);
    if (renameat(dirfd, from, dirfd, to) < 0 && errno != ENOENT)
      return -errno;
  }
  if ((r = fs_fsync_at(dirfd, p->dir, 0)) < 0)
    return r;
  if (renameat(dirfd, rep, dirfd, comp) < 0)
    return -errno;
  if ((r = fs_fsync_at(dirfd, p->dir, 0)) < 0)
    return r;
  return fs_rm_rf(dirfd, comp);
}

int ds_repair_recover(int dirfd, const struct proto_region *def)
{
  for (uint32_t eid = 0; eid < def->extent_count; eid++) {
    struct rpaths p;
    char path[PATH_MAX];
    struct stat st;
    int r = 0;

    rpaths_init(&p, eid);
    snprintf(path, sizeof path, "%s.replace", p.rel);
    if (fstatat(dirfd, path, &st, 0) == 0) {
      log_info("extent %u: finishing an interrupted repair", eid);
      r = finish_replace(dirfd, &p);
    }
    snprintf(path, sizeof path, "%s.copy", p.rel);
    if (r == 0 && fstatat(dirfd, path, &st, 0) == 0) {
      log_info("extent %u: discarding an interrupted repair copy", eid);
      r = fs_rm_rf(dirfd, path);
    }
    snprintf(path, sizeof path, "%s.completed", p.rel);
    if (r == 0 && fstatat(dirfd, path, &st, 0) == 0)
      r = fs_rm_rf(dirfd, path);
    if (r < 0) {
      log_error("extent %u: repair recovery: %s", eid, log_strerror(-r));
      return r;
    }
  }
  return 0;
}

int ds_repair_read_chunk(int dirfd, uint32_t eid, uint8_t file, uint64_t off,
                         uint32_t len, uint8_t *buf, uint32_t *n,
                         uint64_t *size)
{
  struct rpaths p;
  char path[PATH_MAX];
  struct stat st;

  rpaths_init(&p, eid);
  snprintf(path, sizeof path, "%s%s", p.rel,
           file == PROTO_FILE_DB ? ".db" : "");
  int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int r = fstat(fd, &st) < 0 ? -errno : 0;
  *n = 0;
  if (r == 0 && off > (uint64_t) st.st_size)
    r = -EINVAL;
  if (r == 0) {
    uint64_t left = (uint64_t) st.st_size - off;
    uint32_t want = left < len ? (uint32_t) left : len;
    *size = (uint64_t) st.st_size;
    while (*n < want) {
      ssize_t k = pread(fd, buf + *n, want - *n, (off_t) (off + *n));
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0) {
        r = k < 0 ? -errno : -EIO;
        break;
      }
      *n += (uint32_t) k;
    }
  }
  close(fd);
  return r;
}

/* ---- target side: a blocking repair-peer client ---- */

static int send_all(int fd, const uint8_t *p, size_t len)
{
  while (len) {
    ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      return errno == EAGAIN ? -ETIMEDOUT : -errno;
    p += k;
    len -= (size_t) k;
  }
  return 0;
}

static int recv_all(int fd, uint8_t *p, size_t len)
{
  while (len) {
    ssize_t k = recv(fd, p, len, 0);
    if (k < 0 && errno == EINTR)
      continue;
    if (k == 0)
      return -ECONNRESET;
    if (k < 0)
      return errno == EAGAIN ? -ETIMEDOUT : -errno;
    p += k;
    len -= (size_t) k;
  }
  return 0;
}

/* Receive one frame of at most cap bytes into buf and decode it. */
static int recv_frame(int fd, uint8_t *buf, size_t cap, struct proto_msg *m)
{
  int r = recv_all(fd, buf, 4);
  if (r < 0)
    return r;
  int64_t fl = proto_frame_len(buf, 4);
  if (fl < PROTO_FRAME_HDR_LEN || (size_t) fl > cap)
    return -EPROTO;
  if ((r = recv_all(fd, buf + 4, (size_t) fl - 4)) < 0)
    return r;
  r = proto_decode(buf, (size_t) fl, 0, m);
  if (r == 0 && m->type == PROTO_T_ERROR) {
    log_error("repair source refused: %s", m->u.error.text);
    return m->u.error.err > 0 ? -m->u.error.err : -EIO;
  }
  return r;
}

/* After HELLO_OK (in buf; hb is the HELLO we sent): prove the auth key
 * and check the source's proof (common/auth.h).  Both sides must agree on
 * whether there is a key. */
static int peer_auth(int fd, const struct auth_key *auth, const uint8_t *hb,
                     uint8_t *buf, size_t cap, bool required)
{
  uint8_t t[AUTH_MAC_LEN], mac[AUTH_MAC_LEN], f[PROTO_AUTH_LEN];
  struct proto_msg m;
  bool have = auth && auth->len > 0;
  int r;

  if (required && !have) {
    log_error("repair source requires authentication: give --auth-key "
              "with its key");
    return -EACCES;
  }
  if (!required && have) {
    log_error("repair source does not require authentication but "
              "--auth-key was given (refusing a possible impostor)");
    return -EACCES;
  }
  if (!have)
    return 0;
  r = auth_transcript(hb, PROTO_HELLO_LEN, buf, PROTO_HELLO_OK_LEN, t);
  if (r == 0)
    r = auth_mac(auth, AUTH_CLIENT, t, mac);
  if (r == 0)
    r = send_all(fd, f, proto_put_auth(f, PROTO_T_AUTH, mac));
  OPENSSL_cleanse(mac, sizeof mac);
  if (r == 0)
    r = recv_frame(fd, buf, cap, &m);
  if (r == 0 && m.type != PROTO_T_AUTH_OK)
    r = -EPROTO;
  if (r == 0 && auth_check(auth, AUTH_SERVER, t, m.u.auth_mac) < 0) {
    log_error("repair source failed to prove the auth key");
    r = -EACCES;
  }
  return r;
}

/* The one place that says HELLO as a repair peer, and proves the auth
 * key if asked.  def->uuid all zero: learn the region (clone); otherwise
 * HELLO_OK must describe exactly def. */
int ds_repair_peer_open(const struct proto_region *def,
                        const struct sockaddr_storage *src, unsigned tmo,
                        const struct auth_key *auth, uint8_t *buf, size_t cap,
                        struct proto_hello_ok *ok)
{
  struct timeval tv = {.tv_sec = tmo};
  socklen_t alen = src->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6);
  int one = 1, r = 0;
  int fd = socket(src->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  /* Blocking socket: SO_SNDTIMEO also bounds connect(); SO_RCVTIMEO bounds
   * each reply, so a silent source fails the copy in tmo seconds. */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *) src, alen) < 0)
    r = errno == EINPROGRESS || errno == EAGAIN ? -ETIMEDOUT : -errno;
  struct proto_hello h = {.version = PROTO_VERSION,
                          .role = PROTO_ROLE_REPAIR_PEER,
                          .encrypted = def->encrypted};
  memcpy(h.uuid, def->uuid, PROTO_UUID_LEN);
  uint8_t hb[PROTO_HELLO_LEN];
  struct proto_msg m;
  if (r == 0)
    r = auth_random(h.auth_nonce, sizeof h.auth_nonce);
  if (r == 0)
    r = send_all(fd, hb, proto_put_hello(hb, &h));
  if (r == 0)
    r = recv_frame(fd, buf, cap, &m);
  if (r == 0 && m.type != PROTO_T_HELLO_OK)
    r = -EPROTO;
  const struct proto_region *g = &m.u.hello_ok.region;
  if (r == 0 && !geom_uuid_is_zero(def->uuid) &&
      (memcmp(g->uuid, def->uuid, PROTO_UUID_LEN) != 0 ||
       g->block_size != def->block_size || g->extent_size != def->extent_size ||
       g->extent_count != def->extent_count))
    r = -EPROTO;
  if (r == 0 && ok)
    *ok = m.u.hello_ok;
  if (r == 0)
    r = peer_auth(fd, auth, hb, buf, cap, m.u.hello_ok.auth_required);
  if (r < 0) {
    close(fd);
    return r;
  }
  return fd;
}

/* pwrite n bytes at off, skipping DS_REPAIR_SPARSE pieces of zeroes (the
 * file was truncated: they stay holes). */
static int write_sparse(int out, const uint8_t *p, uint32_t n, uint64_t off)
{
  for (uint32_t at = 0; at < n;) {
    uint32_t len = n - at < DS_REPAIR_SPARSE ? n - at : DS_REPAIR_SPARSE;
    bool zero = p[at] == 0 && memcmp(p + at, p + at + 1, len - 1) == 0;
    for (uint32_t done = 0; !zero && done < len;) {
      ssize_t k =
          pwrite(out, p + at + done, len - done, (off_t) (off + at + done));
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0)
        return k < 0 ? -errno : -EIO;
      done += (uint32_t) k;
    }
    at += len;
  }
  return 0;
}

/* Download one file of the extent into dst (relative to dirfd).  Pieces
 * of zeroes are not written: the file stays sparse. */
int ds_repair_fetch_file(int fd, int dirfd, const char *dst, uint32_t eid,
                         uint8_t file, uint64_t want_size, uint8_t *buf,
                         size_t cap, int (*tick)(void *arg, uint32_t n),
                         void *arg)
{
  int out = openat(dirfd, dst, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (out < 0)
    return -errno;
  uint64_t off = 0, size = UINT64_MAX;
  int r = 0;
  for (uint64_t id = 1; r == 0 && off < size; id++) {
    struct proto_file_req q = {.job_id = id,
                               .eid = eid,
                               .file = file,
                               .offset = off,
                               .len = DS_REPAIR_CHUNK};
    uint8_t qb[PROTO_FILE_REQ_LEN];
    struct proto_msg m;
    const struct proto_file_data *d = &m.u.file_data;
    r = send_all(fd, qb, proto_put_file_req(qb, &q));
    if (r == 0)
      r = recv_frame(fd, buf, cap, &m);
    if (r == 0 &&
        (m.type != PROTO_T_FILE_DATA || d->job_id != id || d->offset != off))
      r = -EPROTO;
    if (r == 0 && d->err)
      r = -d->err;
    if (r == 0 && size == UINT64_MAX) {
      size = d->file_size;
      if ((want_size && size != want_size) || size == 0)
        r = -EPROTO;
    }
    if (r == 0 && (d->file_size != size || (d->n == 0 && off < size)))
      r = -EPROTO;
    if (r < 0)
      break;
    r = write_sparse(out, d->data, d->n, off);
    off += d->n;
    if (r == 0 && tick)
      r = tick(arg, d->n);
  }
  if (r == 0 && ftruncate(out, (off_t) size) < 0)
    r = -errno;
  if (r == 0 && fsync(out) < 0)
    r = -errno;
  close(out);
  return r;
}
