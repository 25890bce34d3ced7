/* Unit test: common/ helpers: base64 (RFC 4648 section 10 vectors), parsers, geometry. */
#include <errno.h>
#include <string.h>

#include "../../common/base64.h"
#include "../../common/geom.h"
#include "../../common/parse.h"
#include "../../downstairs/extent.h"
#include "test.h"

static void test_base64(void)
{
  static const char *const plain[] = {"",     "f",     "fo",    "foo",
                                      "foob", "fooba", "foobar"};
  static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                    "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  char out[64];
  uint8_t dec[64];
  size_t n;
  for (int i = 0; i < 7; i++) {
    base64_encode((const uint8_t *) plain[i], strlen(plain[i]), out);
    CHECK(strcmp(out, enc[i]) == 0);
    CHECK(base64_decode(enc[i], dec, sizeof dec, &n) == 0);
    CHECK(n == strlen(plain[i]) && memcmp(dec, plain[i], n) == 0);
  }
  CHECK(base64_decode("  Zm9v\n", dec, sizeof dec, &n) == 0 && n == 3);
  CHECK(base64_decode("Zm9", dec, sizeof dec, &n) == -EINVAL);
  CHECK(base64_decode("Zm=v", dec, sizeof dec, &n) == -EINVAL);
  CHECK(base64_decode("Z!9v", dec, sizeof dec, &n) == -EINVAL);
  CHECK(base64_decode("Zg==Zg==", dec, sizeof dec, &n) == -EINVAL);
  CHECK(base64_decode("Zm9vYmFy", dec, 5, &n) == -ENOSPC);
  /* 32-byte keys round trip. */
  uint8_t key[32];
  for (int i = 0; i < 32; i++)
    key[i] = (uint8_t) (255 - i * 3);
  char k64[BASE64_ENCODED_LEN(32)];
  base64_encode(key, 32, k64);
  CHECK(strlen(k64) == 44);
  CHECK(base64_decode(k64, dec, sizeof dec, &n) == 0 && n == 32 &&
        memcmp(dec, key, 32) == 0);
}

static void test_parse(void)
{
  char host[PARSE_HOST_MAX];
  uint16_t port;
  uint64_t v;
  CHECK(parse_hostport("127.0.0.1:3810", host, &port) == 0);
  CHECK(strcmp(host, "127.0.0.1") == 0 && port == 3810);
  CHECK(parse_hostport("[::1]:99", host, &port) == 0);
  CHECK(strcmp(host, "::1") == 0 && port == 99);
  CHECK(parse_hostport("example.org:65535", host, &port) == 0 && port == 65535);
  CHECK(parse_hostport("host", host, &port) == -EINVAL);
  CHECK(parse_hostport(":80", host, &port) == -EINVAL);
  CHECK(parse_hostport("h:0", host, &port) == -ERANGE);
  CHECK(parse_hostport("h:65536", host, &port) == -ERANGE);
  CHECK(parse_hostport("h:8x", host, &port) == -EINVAL);
  CHECK(parse_hostport("::1:80", host, &port) == -EINVAL);
  CHECK(parse_u64("18446744073709551615", UINT64_MAX, &v) == 0 &&
        v == UINT64_MAX);
  CHECK(parse_u64("18446744073709551616", UINT64_MAX, &v) == -ERANGE);
  CHECK(parse_u64("", 10, &v) == -EINVAL);
  CHECK(parse_u64("11", 10, &v) == -ERANGE);
  CHECK(parse_u64("-1", 10, &v) == -EINVAL);
  CHECK(parse_size("2G", UINT64_MAX, &v) == 0 && v == 2ull << 30);
  CHECK(parse_size("4096", UINT64_MAX, &v) == 0 && v == 4096);
  CHECK(parse_size("128m", UINT64_MAX, &v) == 0 && v == 128ull << 20);
  CHECK(parse_size("1T", 1ull << 39, &v) == -ERANGE);
  CHECK(parse_size("16777216T", UINT64_MAX, &v) == -ERANGE);
  CHECK(parse_size("G", UINT64_MAX, &v) == -EINVAL);
  CHECK(parse_size("1.5G", UINT64_MAX, &v) == -EINVAL);
  CHECK(parse_size("", UINT64_MAX, &v) == -EINVAL);
}

static void test_geom(void)
{
  struct proto_region r = {
      .block_size = 4096, .extent_size = 32768, .extent_count = 8};
  char p[EXT_PATH_MAX], u[37];
  uint8_t uuid[16], back[16];
  CHECK(geom_check(&r) == 0);
  CHECK(geom_size(&r) == 1ull << 30);
  CHECK(geom_extent_of(&r, 32767) == 0 && geom_extent_of(&r, 32768) == 1);
  CHECK(geom_left_in_extent(&r, 32760) == 8);
  r.block_size = 3000;
  CHECK(geom_check(&r) == -EINVAL);
  r.block_size = 256;
  CHECK(geom_check(&r) == -EINVAL);
  r.block_size = 512;
  r.extent_count = 0;
  CHECK(geom_check(&r) == -EINVAL);
  r.extent_count = 1;
  r.extent_size = GEOM_MAX_EXTENT_SIZE + 1;
  CHECK(geom_check(&r) == -EINVAL);
  ext_path(0, p);
  CHECK(strcmp(p, "00/000/000") == 0);
  ext_path(0x12345678, p);
  CHECK(strcmp(p, "12/345/678") == 0);
  ext_path(0xabc, p);
  CHECK(strcmp(p, "00/000/ABC") == 0);
  for (int i = 0; i < 16; i++)
    uuid[i] = (uint8_t) (i * 17);
  geom_uuid_format(uuid, u);
  CHECK(strcmp(u, "00112233-4455-6677-8899-aabbccddeeff") == 0);
  CHECK(geom_uuid_parse(u, back) == 0 && memcmp(uuid, back, 16) == 0);
  memset(back, 0, 16);
  geom_uuid_format(back, u);
  CHECK(strcmp(u, "none") == 0);
  CHECK(geom_uuid_parse("00112233-4455-6677-8899-aabbccddeef", back) ==
        -EINVAL);
  CHECK(geom_uuid_parse("00112233x4455-6677-8899-aabbccddeeff", back) ==
        -EINVAL);
  CHECK(!geom_uuid_is_zero(uuid));
  memset(uuid, 0, 16);
  CHECK(geom_uuid_is_zero(uuid));
}

int main(void)
{
  test_base64();
  test_parse();
  test_geom();
  return test_done("test_common");
}
