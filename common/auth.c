/* crucible-c: handshake authentication (see auth.h for the protocol). */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static const char label_client[] = "crucible-c auth v1 client";
static const char label_server[] = "crucible-c auth v1 server";

int auth_key_set(struct auth_key *k, const void *secret, size_t len,
                 const char **why)
{
  const uint8_t *s = secret;
  while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
    len--;
  if (len < AUTH_KEY_MIN || len > AUTH_KEY_MAX) {
    *why = len < AUTH_KEY_MIN ? "auth key is shorter than 16 bytes"
                              : "auth key is longer than 256 bytes";
    return -EINVAL;
  }
  /* The plugin reads its copy with nbdkit_read_password, a C string: a
   * NUL byte would silently shorten the key on one side only. */
  if (memchr(s, 0, len)) {
    *why = "auth key contains a NUL byte (use text, e.g. base64)";
    return -EINVAL;
  }
  memcpy(k->key, s, len);
  k->len = len;
  return 0;
}

int auth_key_load(struct auth_key *k, const char *path, const char **why)
{
  uint8_t buf[AUTH_KEY_MAX + 3];
  size_t got = 0;
  int r = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  while (got < sizeof buf) {
    ssize_t n = read(fd, buf + got, sizeof buf - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      r = -errno;
      break;
    }
    if (n == 0)
      break;
    got += (size_t) n;
  }
  close(fd);
  if (r == 0)
    r = auth_key_set(k, buf, got, why);
  OPENSSL_cleanse(buf, sizeof buf);
  return r;
}

void auth_key_wipe(struct auth_key *k)
{
  OPENSSL_cleanse(k, sizeof *k);
}

int auth_random(uint8_t *buf, size_t n)
{
  return RAND_bytes(buf, (int) n) == 1 ? 0 : -EIO;
}

int auth_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg,
                     size_t msg_len, uint8_t out[AUTH_MAC_LEN])
{
  size_t outl = 0;
  if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, msg, msg_len,
                 out, AUTH_MAC_LEN, &outl) ||
      outl != AUTH_MAC_LEN)
    return -EIO;
  return 0;
}

int auth_transcript(const uint8_t *hello, size_t hello_len,
                    const uint8_t *hello_ok, size_t hello_ok_len,
                    uint8_t t[AUTH_MAC_LEN])
{
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned tl = 0;
  int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
           EVP_DigestUpdate(c, hello, hello_len) &&
           EVP_DigestUpdate(c, hello_ok, hello_ok_len) &&
           EVP_DigestFinal_ex(c, t, &tl) && tl == AUTH_MAC_LEN;
  EVP_MD_CTX_free(c);
  return ok ? 0 : -EIO;
}

int auth_mac(const struct auth_key *k, enum auth_side side,
             const uint8_t t[AUTH_MAC_LEN], uint8_t mac[AUTH_MAC_LEN])
{
  const char *label = side == AUTH_CLIENT ? label_client : label_server;
  size_t ll = strlen(label) + 1; /* the NUL separates label and T */
  uint8_t msg[64 + AUTH_MAC_LEN];
  if (k->len == 0)
    return -EINVAL;
  memcpy(msg, label, ll);
  memcpy(msg + ll, t, AUTH_MAC_LEN);
  return auth_hmac_sha256(k->key, k->len, msg, ll + AUTH_MAC_LEN, mac);
}

int auth_check(const struct auth_key *k, enum auth_side side,
               const uint8_t t[AUTH_MAC_LEN], const uint8_t mac[AUTH_MAC_LEN])
{
  uint8_t want[AUTH_MAC_LEN];
  int r = auth_mac(k, side, t, want);
  if (r == 0 && CRYPTO_memcmp(want, mac, AUTH_MAC_LEN) != 0)
    r = -EACCES;
  OPENSSL_cleanse(want, sizeof want);
  return r;
}
