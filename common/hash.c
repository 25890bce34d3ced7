/* crucible-c: XXH3 integrity hashes, the CSPRNG, wiping (hash.h). */
#include "hash.h"

#include <errno.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

void crypt_wipe(void *p, size_t len)
{
  OPENSSL_cleanse(p, len);
}

int crypt_random(void *buf, size_t len)
{
  return RAND_bytes(buf, (int) len) == 1 ? 0 : -EIO;
}

uint64_t crypt_hash_cipher(const uint8_t nonce[CRYPT_NONCE_LEN],
                           const uint8_t tag[CRYPT_TAG_LEN],
                           const uint8_t *data, size_t len)
{
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, nonce, CRYPT_NONCE_LEN);
  XXH3_64bits_update(&st, tag, CRYPT_TAG_LEN);
  XXH3_64bits_update(&st, data, len);
  return XXH3_64bits_digest(&st);
}

uint64_t crypt_hash_plain(const uint8_t *data, size_t len)
{
  return XXH3_64bits(data, len);
}
