/* crucible-c: authenticating a connection to a downstairs.
 *
 * A downstairs started with an auth key (`run --auth-key FILE`) serves
 * only peers that prove they know it; the upstairs (`auth-key=+FILE`)
 * and repair peers (another downstairs, `clone`) prove it the same way.
 * The key is a shared secret of 16..256 bytes, separate from the data
 * key, which is never sent.
 *
 * The proof is an HMAC-SHA256 challenge/response over the handshake
 * transcript, with fresh random nonces from both sides:
 *
 *   HELLO    (client -> server) carries a 32-byte client nonce
 *   HELLO_OK (server -> client) carries a 32-byte server nonce and
 *            auth_required
 *   T        = SHA-256(HELLO frame || HELLO_OK frame)
 *   AUTH     (client -> server) = HMAC(K, "crucible-c auth v1 client" || T)
 *   AUTH_OK  (server -> client) = HMAC(K, "crucible-c auth v1 server" || T)
 *
 * A recorded AUTH is useless on a new connection: the server's nonce is
 * new, so T is.  The two labels keep a server's answer from being
 * reflected as a client proof.  T covers every HELLO field (role, uuid,
 * session, generation), so a man in the middle cannot alter them either.
 * The server checks in constant time (CRYPTO_memcmp); so does the client,
 * which also refuses a server that does not ask for authentication when
 * it holds a key (no silent downgrade to an impostor).
 */
#ifndef CRUCIBLE_AUTH_H
#define CRUCIBLE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_MAC_LEN 32
#define AUTH_KEY_MIN 16
#define AUTH_KEY_MAX 256

struct auth_key {
  size_t len; /* 0: no key */
  uint8_t key[AUTH_KEY_MAX];
};

enum auth_side { AUTH_CLIENT = 0, AUTH_SERVER = 1 };

/* Set k from secret bytes (trailing CR/LF dropped).  -EINVAL with *why
 * set if the result is shorter than AUTH_KEY_MIN or longer than
 * AUTH_KEY_MAX. */
int auth_key_set(struct auth_key *k, const void *secret, size_t len,
                 const char **why);
/* Read the key from a file (at most AUTH_KEY_MAX + 2 bytes are read).
 * 0 or -errno; -EINVAL with *why for a bad length. */
int auth_key_load(struct auth_key *k, const char *path, const char **why);
/* Wipe (OPENSSL_cleanse). */
void auth_key_wipe(struct auth_key *k);

/* Fill buf with n random bytes (nonces).  0 or -EIO. */
int auth_random(uint8_t *buf, size_t n);

/* T = SHA-256(hello || hello_ok), the frames exactly as sent. */
int auth_transcript(const uint8_t *hello, size_t hello_len,
                    const uint8_t *hello_ok, size_t hello_ok_len,
                    uint8_t t[AUTH_MAC_LEN]);
/* The proof of one side over transcript t.  0 or -EIO. */
int auth_mac(const struct auth_key *k, enum auth_side side,
             const uint8_t t[AUTH_MAC_LEN], uint8_t mac[AUTH_MAC_LEN]);
/* 0 if mac is side's proof over t, else -EACCES (constant time). */
int auth_check(const struct auth_key *k, enum auth_side side,
               const uint8_t t[AUTH_MAC_LEN], const uint8_t mac[AUTH_MAC_LEN]);

/* Raw HMAC-SHA256 (exposed for the RFC 4231 vector tests). */
int auth_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg,
                     size_t msg_len, uint8_t out[AUTH_MAC_LEN]);

#endif
