/* crucible-c: block encryption and integrity hashing.
 *
 * AES-256-GCM per block with a fresh 12-byte CSPRNG nonce and a 16-byte
 * tag.  The associated data binds each ciphertext to its place and age:
 *
 *   AAD = region uuid (16 bytes) || LBA (u64 LE) || version (u64 LE)
 *
 * so a downstairs cannot move a block to another LBA or serve an older
 * version of it without the tag failing.  The integrity hash the
 * downstairs checks is in hash.h.
 *
 * struct crypt_key owns a copy of the key and wipes it (OPENSSL_cleanse)
 * when freed, with the pre-keyed cipher contexts it pools for the block
 * functions.  All functions are thread-safe on a shared crypt_key: each
 * call uses a context no other call holds.  Return 0 or a negative errno.
 */
#ifndef CRUCIBLE_CRYPT_H
#define CRUCIBLE_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h" /* the integrity hashes, CSPRNG, wiping */

#define CRYPT_KEY_LEN 32
#define CRYPT_UUID_LEN 16

struct crypt_key;

/* Copies key[32]; the caller should wipe its own copy.  -ENOMEM. */
int crypt_key_new(const uint8_t key[CRYPT_KEY_LEN], struct crypt_key **out);
/* Wipes and frees; NULL is fine. */
void crypt_key_free(struct crypt_key *k);
/* The key bytes into out, for a second crypt_key of the same volume in
 * this process (a snapshot rollback's reader): the caller wipes out. */
void crypt_key_copy(const struct crypt_key *k, uint8_t out[CRYPT_KEY_LEN]);

/* Raw AES-256-GCM with a 12-byte IV (used by the block functions and by
 * the NIST vector tests).  out may equal in.  decrypt returns -EBADMSG
 * when the tag does not verify (out is then wiped). */
int crypt_gcm_encrypt(const uint8_t key[CRYPT_KEY_LEN],
                      const uint8_t iv[CRYPT_NONCE_LEN], const uint8_t *aad,
                      size_t aad_len, const uint8_t *in, size_t len,
                      uint8_t *out, uint8_t tag[CRYPT_TAG_LEN]);
int crypt_gcm_decrypt(const uint8_t key[CRYPT_KEY_LEN],
                      const uint8_t iv[CRYPT_NONCE_LEN], const uint8_t *aad,
                      size_t aad_len, const uint8_t *in, size_t len,
                      uint8_t *out, const uint8_t tag[CRYPT_TAG_LEN]);

/* A fresh random nonce, never handed out twice (from a per-thread pool
 * the CSPRNG fills 64 at a time; a fork child refills its own).  -EIO if
 * the CSPRNG fails. */
int crypt_nonce(uint8_t nonce[CRYPT_NONCE_LEN]);

/* Encrypt one block: picks a random nonce (crypt_nonce), writes ciphertext (len bytes),
 * nonce and tag.  -EIO if the CSPRNG or cipher fails. */
int crypt_block_encrypt(const struct crypt_key *k,
                        const uint8_t uuid[CRYPT_UUID_LEN], uint64_t lba,
                        uint64_t version, const uint8_t *plain, size_t len,
                        uint8_t *cipher, uint8_t nonce[CRYPT_NONCE_LEN],
                        uint8_t tag[CRYPT_TAG_LEN]);
/* The same with a nonce the caller drew from crypt_nonce (fresh, never
 * reused under this key).  -EIO if the cipher fails. */
int crypt_block_encrypt_nonce(const struct crypt_key *k,
                              const uint8_t uuid[CRYPT_UUID_LEN], uint64_t lba,
                              uint64_t version, const uint8_t *plain,
                              size_t len, uint8_t *cipher,
                              const uint8_t nonce[CRYPT_NONCE_LEN],
                              uint8_t tag[CRYPT_TAG_LEN]);
/* Decrypt and authenticate one block; -EBADMSG if anything (data, nonce,
 * tag, uuid, lba, version) differs from what was encrypted. */
int crypt_block_decrypt(const struct crypt_key *k,
                        const uint8_t uuid[CRYPT_UUID_LEN], uint64_t lba,
                        uint64_t version, const uint8_t *cipher, size_t len,
                        const uint8_t nonce[CRYPT_NONCE_LEN],
                        const uint8_t tag[CRYPT_TAG_LEN], uint8_t *plain);

/* Key check value: GCM tag over a fixed string with AAD = uuid, under a
 * random nonce.  Stored by the region so a wrong key is refused at connect.
 * check returns 0 if the key matches, -EACCES if not. */
int crypt_kcv_make(const struct crypt_key *k,
                   const uint8_t uuid[CRYPT_UUID_LEN],
                   uint8_t nonce[CRYPT_NONCE_LEN], uint8_t tag[CRYPT_TAG_LEN]);
int crypt_kcv_check(const struct crypt_key *k,
                    const uint8_t uuid[CRYPT_UUID_LEN],
                    const uint8_t nonce[CRYPT_NONCE_LEN],
                    const uint8_t tag[CRYPT_TAG_LEN]);

#endif
