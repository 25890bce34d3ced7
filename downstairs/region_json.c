/* crucible-c downstairs: region.json, the region's own small JSON file.
 *
 *   {"version":1,"block_size":4096,"extent_size":{"value":N,"shift":12},
 *    "extent_count":M,"uuid":"<36 chars>"|null,"encrypted":true,
 *    "highest_gen":G,"kcv":"<base64 of nonce||tag>"|null,
 *    "instance":"<36 chars>"}
 *
 * "uuid" null: a region made without one (`create` without -u) that
 * takes its volume's at the first activation (region_set_uuid).
 *
 * "instance" is a random 128-bit id of this replica (uuid format), made
 * when region.json is first written and kept by every rewrite; the
 * upstairs compares it (HELLO_OK) to catch one region given under two
 * addresses.  A region.json written before it existed has none: reading
 * it makes one in memory (instance_new), and the running downstairs
 * writes it at start (ds_region_instance, server.c).
 *
 * Written by a tiny formatter, read by a strict parser that accepts
 * exactly that document (any key order and whitespace, no escapes, no
 * unknown or repeated keys, shift = log2(block_size), geometry checked by
 * geom_check) and returns -EINVAL for anything else.  Every change
 * replaces the file atomically, so a crash leaves the old or the new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/base64.h"
#include "../common/geom.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "extent.h"
#include "region_json.h"

#define REGION_JSON "region.json"
#define REGION_JSON_TMP "region.json.tmp"
#define REGION_JSON_MAX 4096
#define KCV_LEN (PROTO_NONCE_LEN + PROTO_TAG_LEN)

static unsigned log2u(uint32_t v)
{
  unsigned s = 0;
  while ((1u << s) < v)
    s++;
  return s;
}

/* Serialize m into buf (REGION_JSON_MAX). */
static int json_format(const struct region_meta *m, char *buf)
{
  char uuid[40] = "null", inst[37];
  char kcv[BASE64_ENCODED_LEN(KCV_LEN) + 2] = "null";
  if (!geom_uuid_is_zero(m->def.uuid)) {
    uuid[0] = '"';
    geom_uuid_format(m->def.uuid, uuid + 1);
    strcat(uuid, "\"");
  }
  geom_uuid_format(m->instance, inst);
  if (m->has_kcv) {
    uint8_t raw[KCV_LEN];
    memcpy(raw, m->kcv.nonce, PROTO_NONCE_LEN);
    memcpy(raw + PROTO_NONCE_LEN, m->kcv.tag, PROTO_TAG_LEN);
    kcv[0] = '"';
    base64_encode(raw, KCV_LEN, kcv + 1);
    strcat(kcv, "\"");
  }
  int n =
      snprintf(buf, REGION_JSON_MAX,
               "{\"version\":1,\"block_size\":%" PRIu32
               ",\"extent_size\":{\"value\":%" PRIu64 ",\"shift\":%u},"
               "\"extent_count\":%" PRIu32 ",\"uuid\":%s,"
               "\"encrypted\":%s,\"highest_gen\":%" PRIu64
               ",\"kcv\":%s,\"instance\":\"%s\"}\n",
               m->def.block_size, m->def.extent_size, log2u(m->def.block_size),
               m->def.extent_count, uuid, m->def.encrypted ? "true" : "false",
               m->highest_gen, kcv, inst);
  return n > 0 && n < REGION_JSON_MAX ? n : -EINVAL;
}

/* A strict parser for exactly the document json_format writes (any key
 * order and whitespace; no escapes, no unknown or repeated keys). */
struct jp {
  const char *p;
};

static void jp_ws(struct jp *j)
{
  while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r')
    j->p++;
}

static int jp_char(struct jp *j, char c)
{
  jp_ws(j);
  if (*j->p != c)
    return -EINVAL;
  j->p++;
  return 0;
}

static int jp_str(struct jp *j, char *out, size_t cap)
{
  size_t n = 0;
  if (jp_char(j, '"') < 0)
    return -EINVAL;
  while (*j->p != '"') {
    if (*j->p == '\0' || *j->p == '\\' || (unsigned char) *j->p < 0x20 ||
        n + 1 >= cap)
      return -EINVAL;
    out[n++] = *j->p++;
  }
  j->p++;
  out[n] = '\0';
  return 0;
}

static int jp_u64(struct jp *j, uint64_t *v)
{
  jp_ws(j);
  if (*j->p < '0' || *j->p > '9' ||
      (j->p[0] == '0' && j->p[1] >= '0' && j->p[1] <= '9'))
    return -EINVAL;
  *v = 0;
  while (*j->p >= '0' && *j->p <= '9') {
    unsigned d = (unsigned) (*j->p++ - '0');
    if (*v > (UINT64_MAX - d) / 10)
      return -EINVAL;
    *v = *v * 10 + d;
  }
  return 0;
}

static int jp_word(struct jp *j, const char *w)
{
  jp_ws(j);
  size_t n = strlen(w);
  if (strncmp(j->p, w, n) != 0)
    return -EINVAL;
  j->p += n;
  return 0;
}

/* Iterate "key": of an object; *first tracks the comma.  Returns 1 with
 * key filled, 0 at '}', -EINVAL. */
static int jp_key(struct jp *j, bool *first, char *key, size_t cap)
{
  jp_ws(j);
  if (*j->p == '}') {
    j->p++;
    return 0;
  }
  if (!*first && jp_char(j, ',') < 0)
    return -EINVAL;
  *first = false;
  if (jp_str(j, key, cap) < 0 || jp_char(j, ':') < 0)
    return -EINVAL;
  return 1;
}

static int jp_extent_size(struct jp *j, uint64_t *value, uint64_t *shift)
{
  char key[16];
  bool first = true;
  unsigned seen = 0;
  int k;
  if (jp_char(j, '{') < 0)
    return -EINVAL;
  while ((k = jp_key(j, &first, key, sizeof key)) == 1) {
    unsigned bit = strcmp(key, "value") == 0   ? 1
                   : strcmp(key, "shift") == 0 ? 2
                                               : 0;
    if (bit == 0 || (seen & bit) || jp_u64(j, bit == 1 ? value : shift) < 0)
      return -EINVAL;
    seen |= bit;
  }
  return k == 0 && seen == 3 ? 0 : -EINVAL;
}

static int jp_kcv(struct jp *j, struct region_meta *m)
{
  char s[64];
  uint8_t raw[KCV_LEN];
  size_t len;
  jp_ws(j);
  if (jp_word(j, "null") == 0) {
    m->has_kcv = false;
    return 0;
  }
  if (jp_str(j, s, sizeof s) < 0 ||
      base64_decode(s, raw, sizeof raw, &len) < 0 || len != KCV_LEN)
    return -EINVAL;
  memcpy(m->kcv.nonce, raw, PROTO_NONCE_LEN);
  memcpy(m->kcv.tag, raw + PROTO_NONCE_LEN, PROTO_TAG_LEN);
  m->has_kcv = true;
  return 0;
}

static const char *const json_keys[] = {
    "version",   "block_size",  "extent_size", "extent_count", "uuid",
    "encrypted", "highest_gen", "kcv",         "instance",
};
#define JSON_NKEYS 9
#define JSON_REQUIRED ((1u << 8) - 1) /* all but "instance" (older files) */

/* One top-level value, by key index. */
static int jp_field(struct jp *j, int k, struct region_meta *m, uint64_t *shift)
{
  uint64_t v;
  char s[40];
  switch (k) {
  case 0: return jp_u64(j, &v) < 0 || v != 1 ? -EINVAL : 0;
  case 1:
    if (jp_u64(j, &v) < 0 || v > UINT32_MAX)
      return -EINVAL;
    m->def.block_size = (uint32_t) v;
    return 0;
  case 2: return jp_extent_size(j, &m->def.extent_size, shift);
  case 3:
    if (jp_u64(j, &v) < 0 || v > UINT32_MAX)
      return -EINVAL;
    m->def.extent_count = (uint32_t) v;
    return 0;
  case 4:
    if (jp_word(j, "null") == 0)
      return 0; /* no volume yet: all zero */
    if (jp_str(j, s, sizeof s) < 0 || geom_uuid_parse(s, m->def.uuid) < 0 ||
        geom_uuid_is_zero(m->def.uuid))
      return -EINVAL;
    return 0;
  case 5:
    if (jp_word(j, "true") == 0)
      m->def.encrypted = 1;
    else if (jp_word(j, "false") == 0)
      m->def.encrypted = 0;
    else
      return -EINVAL;
    return 0;
  case 6: return jp_u64(j, &m->highest_gen);
  case 7: return jp_kcv(j, m);
  case 8:
    return jp_str(j, s, sizeof s) < 0 ? -EINVAL
                                      : geom_uuid_parse(s, m->instance);
  }
  return -EINVAL;
}

static int json_parse(const char *text, struct region_meta *m)
{
  struct jp j = {text};
  char key[32];
  bool first = true;
  unsigned seen = 0;
  uint64_t shift = 0;
  int k;
  memset(m, 0, sizeof *m);
  if (jp_char(&j, '{') < 0)
    return -EINVAL;
  while ((k = jp_key(&j, &first, key, sizeof key)) == 1) {
    int i = 0;
    while (i < JSON_NKEYS && strcmp(key, json_keys[i]) != 0)
      i++;
    if (i == JSON_NKEYS || (seen & (1u << i)) || jp_field(&j, i, m, &shift) < 0)
      return -EINVAL;
    seen |= 1u << i;
  }
  jp_ws(&j);
  if (k != 0 || (seen & JSON_REQUIRED) != JSON_REQUIRED || *j.p != '\0' ||
      geom_check(&m->def) < 0 || shift != log2u(m->def.block_size))
    return -EINVAL;
  if (!(seen & (1u << 8))) {
    m->instance_new = true;
    return crypt_random(m->instance, PROTO_UUID_LEN);
  }
  return 0;
}

int region_meta_read(int dirfd, struct region_meta *m)
{
  char buf[REGION_JSON_MAX + 1];
  int fd = openat(dirfd, REGION_JSON, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  size_t len = 0;
  ssize_t n;
  while ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
    len += (size_t) n;
  int r = n < 0 ? -errno : 0;
  close(fd);
  if (r < 0)
    return r;
  if (len >= sizeof buf - 1 || memchr(buf, '\0', len) != NULL)
    return -EINVAL;
  buf[len] = '\0';
  return json_parse(buf, m);
}

/* Replace region.json atomically: temp file, fsync, rename, fsync dir.
 * An all-zero instance id (a region being created) gets a random one. */
int region_meta_write(int dirfd, const struct region_meta *meta)
{
  char buf[REGION_JSON_MAX];
  struct region_meta m1 = *meta, *m = &m1;
  static const uint8_t zero[PROTO_UUID_LEN];
  if (memcmp(m->instance, zero, sizeof zero) == 0 &&
      crypt_random(m->instance, PROTO_UUID_LEN) < 0)
    return -EIO;
  int len = json_format(m, buf);
  if (len < 0)
    return len;
  int fd = openat(dirfd, REGION_JSON_TMP,
                  O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  int r = 0;
  ssize_t w = write(fd, buf, (size_t) len);
  if (w != len)
    r = w < 0 ? -errno : -EIO;
  if (r == 0 && fsync(fd) < 0)
    r = -errno;
  if (close(fd) < 0 && r == 0)
    r = -errno;
  if (r == 0 && renameat(dirfd, REGION_JSON_TMP, dirfd, REGION_JSON) < 0)
    r = -errno;
  if (r == 0 && fsync(dirfd) < 0)
    r = -errno;
  if (r < 0) {
    log_error("region.json: %s", log_strerror(-r));
    unlinkat(dirfd, REGION_JSON_TMP, 0);
  }
  return r;
}
