/* Unit test: AES-256-GCM against the published GCM test vectors (McGrew &
 * Viega, "The Galois/Counter Mode of Operation", test cases 13-16, the
 * 256-bit key cases of the NIST GCM validation suite), the block API's
 * AAD binding (other LBA, other version, other uuid all fail), the key
 * check value, the integrity hash, and crypt_nonce (never the same nonce
 * twice: across pool refills, across threads, across fork). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../common/crypt.h"
#include "../../common/proto.h"
#include "test.h"

struct vec {
  const char *key, *iv, *pt, *aad, *ct, *tag;
};

static const struct vec vecs[] = {
    /* Test case 13 */
    {"0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "",
     "530f8afbc74536b9a963b4f1c4cb738b"},
    /* Test case 14 */
    {"0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "00000000000000000000000000000000", "",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    /* Test case 15 */
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    /* Test case 16 */
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void test_vectors(void)
{
  for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
    uint8_t key[32], iv[12], pt[64], aad[32], ct[64], tag[16];
    uint8_t out[64], otag[16], back[64];
    unhex(vecs[i].key, key);
    unhex(vecs[i].iv, iv);
    size_t pl = unhex(vecs[i].pt, pt), al = unhex(vecs[i].aad, aad);
    size_t cl = unhex(vecs[i].ct, ct);
    unhex(vecs[i].tag, tag);
    CHECK(pl == cl);
    CHECK(crypt_gcm_encrypt(key, iv, aad, al, pt, pl, out, otag) == 0);
    CHECK(memcmp(out, ct, cl) == 0);
    CHECK(memcmp(otag, tag, 16) == 0);
    CHECK(crypt_gcm_decrypt(key, iv, aad, al, ct, cl, back, tag) == 0);
    CHECK(memcmp(back, pt, pl) == 0);
    /* Any flipped bit of tag, ciphertext or AAD must fail. */
    tag[0] ^= 1;
    CHECK(crypt_gcm_decrypt(key, iv, aad, al, ct, cl, back, tag) == -EBADMSG);
    tag[0] ^= 1;
    if (cl) {
      ct[cl - 1] ^= 0x80;
      CHECK(crypt_gcm_decrypt(key, iv, aad, al, ct, cl, back, tag) == -EBADMSG);
      ct[cl - 1] ^= 0x80;
    }
    if (al) {
      aad[0] ^= 1;
      CHECK(crypt_gcm_decrypt(key, iv, aad, al, ct, cl, back, tag) == -EBADMSG);
    }
  }
}

static void test_blocks(void)
{
  uint8_t raw[32], uuid[16], uuid2[16], plain[4096], ct[4096], back[4096];
  uint8_t nonce[12], tag[16], nonce2[12], tag2[16];
  struct crypt_key *k, *k2;
  for (int i = 0; i < 32; i++)
    raw[i] = (uint8_t) (i * 7 + 1);
  CHECK(crypt_key_new(raw, &k) == 0);
  raw[0] ^= 1;
  CHECK(crypt_key_new(raw, &k2) == 0);
  memset(uuid, 0x11, 16);
  memcpy(uuid2, uuid, 16);
  uuid2[15] ^= 1;
  for (int i = 0; i < 4096; i++)
    plain[i] = (uint8_t) (i * 31);

  CHECK(crypt_block_encrypt(k, uuid, 42, 7, plain, 4096, ct, nonce, tag) == 0);
  CHECK(memcmp(ct, plain, 4096) != 0);
  CHECK(crypt_block_decrypt(k, uuid, 42, 7, ct, 4096, nonce, tag, back) == 0);
  CHECK(memcmp(back, plain, 4096) == 0);
  /* Relocation, rollback, other volume, other key: all rejected. */
  CHECK(crypt_block_decrypt(k, uuid, 43, 7, ct, 4096, nonce, tag, back) ==
        -EBADMSG);
  CHECK(crypt_block_decrypt(k, uuid, 42, 6, ct, 4096, nonce, tag, back) ==
        -EBADMSG);
  CHECK(crypt_block_decrypt(k, uuid2, 42, 7, ct, 4096, nonce, tag, back) ==
        -EBADMSG);
  CHECK(crypt_block_decrypt(k2, uuid, 42, 7, ct, 4096, nonce, tag, back) ==
        -EBADMSG);
  /* A failed decrypt leaves no plaintext behind. */
  for (int i = 0; i < 4096; i++)
    CHECK(back[i] == 0);

  /* Fresh nonce per write. */
  CHECK(crypt_block_encrypt(k, uuid, 42, 7, plain, 4096, back, nonce2, tag2) ==
        0);
  CHECK(memcmp(nonce, nonce2, 12) != 0);

  /* Caller-drawn nonce, pooled context: same bytes as a fresh context
   * with the same key, IV and AAD (uuid || lba || version), and the pool
   * still decrypts after the failed decrypts above. */
  {
    uint8_t aad[32], ct2[4096], ct3[4096], t2[16], t3[16];
    memcpy(aad, uuid, 16);
    proto_le64(aad + 16, 42);
    proto_le64(aad + 24, 7);
    raw[0] ^= 1; /* back to k's key */
    CHECK(crypt_block_encrypt_nonce(k, uuid, 42, 7, plain, 4096, ct2, nonce2,
                                    t2) == 0);
    CHECK(crypt_gcm_encrypt(raw, nonce2, aad, 32, plain, 4096, ct3, t3) == 0);
    CHECK(memcmp(ct2, ct3, 4096) == 0 && memcmp(t2, t3, 16) == 0);
    CHECK(crypt_block_decrypt(k, uuid, 42, 7, ct2, 4096, nonce2, t2, back) ==
          0);
    CHECK(memcmp(back, plain, 4096) == 0);
    raw[0] ^= 1;
  }

  /* Hashes: deterministic, sensitive to nonce, tag and data. */
  uint64_t h = crypt_hash_cipher(nonce, tag, ct, 4096);
  CHECK(h == crypt_hash_cipher(nonce, tag, ct, 4096));
  tag[3] ^= 1;
  CHECK(h != crypt_hash_cipher(nonce, tag, ct, 4096));
  tag[3] ^= 1;
  ct[100] ^= 1;
  CHECK(h != crypt_hash_cipher(nonce, tag, ct, 4096));
  CHECK(crypt_hash_plain(plain, 4096) == crypt_hash_plain(plain, 4096));
  CHECK(crypt_hash_plain(plain, 4096) != crypt_hash_plain(plain, 4095));

  /* Key check value. */
  CHECK(crypt_kcv_make(k, uuid, nonce, tag) == 0);
  CHECK(crypt_kcv_check(k, uuid, nonce, tag) == 0);
  CHECK(crypt_kcv_check(k2, uuid, nonce, tag) == -EACCES);
  CHECK(crypt_kcv_check(k, uuid2, nonce, tag) == -EACCES);

  crypt_key_free(k);
  crypt_key_free(k2);
  crypt_key_free(NULL);
}

#define NONCES_PER_THREAD 3000

static void *draw_nonces(void *arg)
{
  uint8_t *out = arg;
  for (int i = 0; i < NONCES_PER_THREAD; i++)
    if (crypt_nonce(out + (size_t) i * CRYPT_NONCE_LEN) < 0)
      return (void *) 1;
  return NULL;
}

static int nonce_cmp(const void *a, const void *b)
{
  return memcmp(a, b, CRYPT_NONCE_LEN);
}

static void test_nonces(void)
{
  enum { T = 3 };
  uint8_t *all = calloc((size_t) T * NONCES_PER_THREAD, CRYPT_NONCE_LEN);
  pthread_t th[T - 1];
  uint8_t next[CRYPT_NONCE_LEN], child[CRYPT_NONCE_LEN];
  int fds[2], st = 0;
  pid_t pid;

  CHECK(all != NULL);
  if (!all)
    return;
  /* Many pool refills in this thread and two others at once: all differ. */
  for (int t = 0; t < T - 1; t++)
    CHECK(pthread_create(&th[t], NULL, draw_nonces,
                         all + (size_t) (t + 1) * NONCES_PER_THREAD *
                                   CRYPT_NONCE_LEN) == 0);
  CHECK(draw_nonces(all) == NULL);
  for (int t = 0; t < T - 1; t++) {
    void *r;
    pthread_join(th[t], &r);
    CHECK(r == NULL);
  }
  qsort(all, (size_t) T * NONCES_PER_THREAD, CRYPT_NONCE_LEN, nonce_cmp);
  for (size_t i = 1; i < (size_t) T * NONCES_PER_THREAD; i++)
    CHECK(nonce_cmp(all + (i - 1) * CRYPT_NONCE_LEN,
                    all + i * CRYPT_NONCE_LEN) != 0);
  free(all);

  /* Fork with a partly used pool: the child's first nonce is not the one
   * the parent hands out next. */
  CHECK(crypt_nonce(next) == 0);
  CHECK(pipe(fds) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    ssize_t w =
        crypt_nonce(child) == 0 ? write(fds[1], child, sizeof child) : -1;
    _exit(w == (ssize_t) sizeof child ? 0 : 1);
  }
  close(fds[1]);
  CHECK(read(fds[0], child, sizeof child) == (ssize_t) sizeof child);
  close(fds[0]);
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(crypt_nonce(next) == 0);
  CHECK(memcmp(next, child, sizeof next) != 0);
}

int main(void)
{
  test_vectors();
  test_blocks();
  test_nonces();
  return test_done("test_crypt");
}
