/* crucible-c: the integrity hashes both sides compute (XXH3-64), and the
 * CSPRNG and memory wiping both sides use (libcrypto's RAND_bytes and
 * OPENSSL_cleanse).  No cipher here: the downstairs links this file, not
 * common/crypt.c (docs/DESIGN.md "Layout").
 *
 * The integrity hash lets a downstairs check what it stores without the
 * key:
 *   encrypted:   XXH3(nonce || tag || ciphertext)
 *   unencrypted: XXH3(plain block)
 */
#ifndef CRUCIBLE_HASH_H
#define CRUCIBLE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CRYPT_NONCE_LEN 12
#define CRYPT_TAG_LEN 16

uint64_t crypt_hash_cipher(const uint8_t nonce[CRYPT_NONCE_LEN],
                           const uint8_t tag[CRYPT_TAG_LEN],
                           const uint8_t *data, size_t len);
uint64_t crypt_hash_plain(const uint8_t *data, size_t len);

/* CSPRNG bytes; -EIO on failure. */
int crypt_random(void *buf, size_t len);

/* Wipe memory the compiler may not optimise away (OPENSSL_cleanse). */
void crypt_wipe(void *p, size_t len);

#endif
