/* crucible-c: AES-256-GCM per block (the hash: common/hash.c).
 *
 * The block functions take an EVP_CIPHER_CTX from a small pool owned by
 * the struct crypt_key: each pooled context already holds the key
 * schedule and its direction, so a block costs one IV set + one pass
 * instead of a context allocation, a cipher fetch and a key expansion
 * (docs/PERFORMANCE.md, "Decisions").  A context is used by one thread at
 * a time (taken from the pool under the key's mutex, given back after).
 * crypt_key_free frees every pooled context (EVP_CIPHER_CTX_free wipes
 * the key schedule) and wipes the raw key, so no copy of the key outlives
 * the crypt_key.  The raw crypt_gcm_* functions (tests, key check value)
 * still use a context of their own per call.
 */
#include "crypt.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "proto.h"

/* Pooled contexts per direction; more callers than this at once simply
 * use a temporary context (still correct, just slower). */
#define CRYPT_POOL 32

struct crypt_key {
  uint8_t key[CRYPT_KEY_LEN];
  pthread_mutex_t lock;
  EVP_CIPHER_CTX *pool[2][CRYPT_POOL]; /* [enc]: free, keyed contexts */
  unsigned npool[2];
};

/* Nonces are drawn NONCE_POOL at a time into a per-thread pool and each
 * is handed out once: one CSPRNG call per 64 blocks instead of per block
 * (RAND_bytes costs about 1 us a call here, 5.7 % of nbdkit's CPU at
 * rand write 4k qd32).  Still fresh random nonces, as DESIGN says.  A
 * fork child starts with an empty pool (npool_child: only the forking
 * thread exists there), so parent and child never share one. */
#define NONCE_POOL 64

static __thread struct {
  uint8_t b[NONCE_POOL * CRYPT_NONCE_LEN];
  unsigned left;
} npool;
static pthread_once_t npool_once = PTHREAD_ONCE_INIT;

static void npool_child(void)
{
  npool.left = 0;
}

static void npool_init(void)
{
  pthread_atfork(NULL, NULL, npool_child);
}

int crypt_nonce(uint8_t nonce[CRYPT_NONCE_LEN])
{
  pthread_once(&npool_once, npool_init);
  if (npool.left == 0) {
    if (crypt_random(npool.b, sizeof npool.b) < 0)
      return -EIO;
    npool.left = NONCE_POOL;
  }
  npool.left--;
  memcpy(nonce, npool.b + (size_t) npool.left * CRYPT_NONCE_LEN,
         CRYPT_NONCE_LEN);
  return 0;
}

/* Fixed plaintext of the key check value. */
static const uint8_t kcv_plain[32] = "crucible-c key check value v1";

int crypt_key_new(const uint8_t key[CRYPT_KEY_LEN], struct crypt_key **out)
{
  struct crypt_key *k = malloc(sizeof *k);
  if (!k)
    return -ENOMEM;
  memset(k, 0, sizeof *k);
  memcpy(k->key, key, CRYPT_KEY_LEN);
  pthread_mutex_init(&k->lock, NULL);
  /* Keep the key out of swap where we can; failure (RLIMIT_MEMLOCK) is not
   * fatal, the key is still wiped on free. */
  (void) mlock(k, sizeof *k);
  *out = k;
  return 0;
}

void crypt_key_copy(const struct crypt_key *k, uint8_t out[CRYPT_KEY_LEN])
{
  memcpy(out, k->key, CRYPT_KEY_LEN);
}

void crypt_key_free(struct crypt_key *k)
{
  if (!k)
    return;
  for (int enc = 0; enc < 2; enc++)
    for (unsigned i = 0; i < k->npool[enc]; i++)
      EVP_CIPHER_CTX_free(k->pool[enc][i]);
  pthread_mutex_destroy(&k->lock);
  OPENSSL_cleanse(k->key, sizeof k->key);
  (void) munlock(k, sizeof *k);
  free(k);
}

/* One GCM pass; enc selects the direction.  On decrypt, tag is checked. */
static int gcm(int enc, const uint8_t *key, const uint8_t *iv,
               const uint8_t *aad, size_t aad_len, const uint8_t *in,
               size_t len, uint8_t *out, uint8_t *tag)
{
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int ok = 0, n;
  if (!c)
    return -ENOMEM;
  if (len > INT32_MAX || aad_len > INT32_MAX)
    goto out;
  if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, CRYPT_NONCE_LEN, NULL) !=
          1 ||
      EVP_CipherInit_ex(c, NULL, NULL, key, iv, enc) != 1)
    goto out;
  if (aad_len && EVP_CipherUpdate(c, NULL, &n, aad, (int) aad_len) != 1)
    goto out;
  if (len && EVP_CipherUpdate(c, out, &n, in, (int) len) != 1)
    goto out;
  if (!enc &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_LEN, tag) != 1)
    goto out;
  if (EVP_CipherFinal_ex(c, out + len, &n) != 1)
    goto out;
  if (enc &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG_LEN, tag) != 1)
    goto out;
  ok = 1;
out:
  EVP_CIPHER_CTX_free(c);
  if (ok)
    return 0;
  if (!enc) {
    /* Never leave unauthenticated plaintext behind. */
    OPENSSL_cleanse(out, len);
    return -EBADMSG;
  }
  return -EIO;
}

int crypt_gcm_encrypt(const uint8_t key[CRYPT_KEY_LEN],
                      const uint8_t iv[CRYPT_NONCE_LEN], const uint8_t *aad,
                      size_t aad_len, const uint8_t *in, size_t len,
                      uint8_t *out, uint8_t tag[CRYPT_TAG_LEN])
{
  return gcm(1, key, iv, aad, aad_len, in, len, out, tag);
}

int crypt_gcm_decrypt(const uint8_t key[CRYPT_KEY_LEN],
                      const uint8_t iv[CRYPT_NONCE_LEN], const uint8_t *aad,
                      size_t aad_len, const uint8_t *in, size_t len,
                      uint8_t *out, const uint8_t tag[CRYPT_TAG_LEN])
{
  uint8_t t[CRYPT_TAG_LEN];
  memcpy(t, tag, sizeof t);
  return gcm(0, key, iv, aad, aad_len, in, len, out, t);
}

/* A context keyed with k for direction enc: from the pool, or a new one.
 * NULL on allocation or cipher failure. */
static EVP_CIPHER_CTX *ctx_get(struct crypt_key *k, int enc)
{
  EVP_CIPHER_CTX *c = NULL;
  pthread_mutex_lock(&k->lock);
  if (k->npool[enc] > 0)
    c = k->pool[enc][--k->npool[enc]];
  pthread_mutex_unlock(&k->lock);
  if (c)
    return c;
  c = EVP_CIPHER_CTX_new();
  if (c &&
      (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
       EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, CRYPT_NONCE_LEN, NULL) !=
           1 ||
       EVP_CipherInit_ex(c, NULL, NULL, k->key, NULL, enc) != 1)) {
    EVP_CIPHER_CTX_free(c);
    c = NULL;
  }
  return c;
}

/* Give c back to k's pool (or free it when the pool is full). */
static void ctx_put(struct crypt_key *k, int enc, EVP_CIPHER_CTX *c)
{
  pthread_mutex_lock(&k->lock);
  if (k->npool[enc] < CRYPT_POOL) {
    k->pool[enc][k->npool[enc]++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&k->lock);
  EVP_CIPHER_CTX_free(c);
}

/* One GCM pass with a pooled context of k: only the IV is set per call,
 * the key schedule is reused.  Same results as gcm(). */
static int gcm_pooled(const struct crypt_key *kc, int enc, const uint8_t *iv,
                      const uint8_t *aad, size_t aad_len, const uint8_t *in,
                      size_t len, uint8_t *out, uint8_t *tag)
{
  struct crypt_key *k = (struct crypt_key *) kc; /* the pool is not the key */
  EVP_CIPHER_CTX *c;
  int ok = 0, n;
  if (len > INT32_MAX || aad_len > INT32_MAX)
    goto fail;
  if ((c = ctx_get(k, enc)) == NULL)
    goto fail;
  if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc) == 1 &&
      (!aad_len || EVP_CipherUpdate(c, NULL, &n, aad, (int) aad_len) == 1) &&
      (!len || EVP_CipherUpdate(c, out, &n, in, (int) len) == 1) &&
      (enc ||
       EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG_LEN, tag) == 1) &&
      EVP_CipherFinal_ex(c, out + len, &n) == 1 &&
      (!enc ||
       EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG_LEN, tag) == 1))
    ok = 1;
  if (ok) {
    ctx_put(k, enc, c);
    return 0;
  }
  EVP_CIPHER_CTX_free(c); /* a failed context is not reused */
fail:
  if (!enc) {
    /* Never leave unauthenticated plaintext behind. */
    OPENSSL_cleanse(out, len);
    return -EBADMSG;
  }
  return -EIO;
}

/* AAD = uuid || LBA || version, little-endian: binds place and age. */
static void make_aad(uint8_t aad[32], const uint8_t uuid[CRYPT_UUID_LEN],
                     uint64_t lba, uint64_t version)
{
  memcpy(aad, uuid, CRYPT_UUID_LEN);
  proto_le64(aad + 16, lba);
  proto_le64(aad + 24, version);
}

int crypt_block_encrypt(const struct crypt_key *k,
                        const uint8_t uuid[CRYPT_UUID_LEN], uint64_t lba,
                        uint64_t version, const uint8_t *plain, size_t len,
                        uint8_t *cipher, uint8_t nonce[CRYPT_NONCE_LEN],
                        uint8_t tag[CRYPT_TAG_LEN])
{
  uint8_t aad[32];
  if (crypt_nonce(nonce) < 0)
    return -EIO;
  make_aad(aad, uuid, lba, version);
  return gcm_pooled(k, 1, nonce, aad, sizeof aad, plain, len, cipher, tag);
}

int crypt_block_encrypt_nonce(const struct crypt_key *k,
                              const uint8_t uuid[CRYPT_UUID_LEN], uint64_t lba,
                              uint64_t version, const uint8_t *plain,
                              size_t len, uint8_t *cipher,
                              const uint8_t nonce[CRYPT_NONCE_LEN],
                              uint8_t tag[CRYPT_TAG_LEN])
{
  uint8_t aad[32];
  make_aad(aad, uuid, lba, version);
  return gcm_pooled(k, 1, nonce, aad, sizeof aad, plain, len, cipher, tag);
}

int crypt_block_decrypt(const struct crypt_key *k,
                        const uint8_t uuid[CRYPT_UUID_LEN], uint64_t lba,
                        uint64_t version, const uint8_t *cipher, size_t len,
                        const uint8_t nonce[CRYPT_NONCE_LEN],
                        const uint8_t tag[CRYPT_TAG_LEN], uint8_t *plain)
{
  uint8_t aad[32], t[CRYPT_TAG_LEN];
  make_aad(aad, uuid, lba, version);
  memcpy(t, tag, sizeof t);
  return gcm_pooled(k, 0, nonce, aad, sizeof aad, cipher, len, plain, t);
}

int crypt_kcv_make(const struct crypt_key *k,
                   const uint8_t uuid[CRYPT_UUID_LEN],
                   uint8_t nonce[CRYPT_NONCE_LEN], uint8_t tag[CRYPT_TAG_LEN])
{
  uint8_t ct[sizeof kcv_plain];
  if (crypt_random(nonce, CRYPT_NONCE_LEN) < 0)
    return -EIO;
  return crypt_gcm_encrypt(k->key, nonce, uuid, CRYPT_UUID_LEN, kcv_plain,
                           sizeof kcv_plain, ct, tag);
}

int crypt_kcv_check(const struct crypt_key *k,
                    const uint8_t uuid[CRYPT_UUID_LEN],
                    const uint8_t nonce[CRYPT_NONCE_LEN],
                    const uint8_t tag[CRYPT_TAG_LEN])
{
  uint8_t ct[sizeof kcv_plain], t[CRYPT_TAG_LEN];
  int r = crypt_gcm_encrypt(k->key, nonce, uuid, CRYPT_UUID_LEN, kcv_plain,
                            sizeof kcv_plain, ct, t);
  if (r < 0)
    return r;
  return CRYPTO_memcmp(t, tag, CRYPT_TAG_LEN) == 0 ? 0 : -EACCES;
}
