/* crucible-c fuzz harness: the downstairs request path, in process.
 *
 * server.c has no seam to feed bytes to a connection without a socket
 * (conn_feed/conn_frame are static and connections only come from the
 * listener), so this harness runs the real server, ds_server_run(), on
 * a thread of the fuzzer process, serving a small unencrypted region in
 * a temporary directory on 127.0.0.1, and sends each input over a fresh
 * TCP connection.  The server code is compiled with the sanitizers and
 * coverage, so libFuzzer still sees and steers it.
 *
 * Input: byte 0 is a mode; the rest is the byte stream sent.
 *   bit 0: first do HELLO + ACTIVATE(highest generation + 1) ourselves,
 *          so the stream is parsed by an ACTIVE connection (IO jobs);
 *          otherwise it starts in state NEW (HELLO, then anything).
 *   bit 1: send the stream in pieces of (byte 0 >> 2) + 1 bytes, to
 *          exercise frames split across reads.
 * Then the write side is shut down and replies are read until the
 * server closes (bounded), so every frame of an input is handled before
 * the next input starts.  A crash, a sanitizer report or a server that
 * stops accepting connections is a finding.
 *
 * The seam that would make this deterministic and socket-free is
 * described in tests/fuzz/README.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../common/log.h"
#include "../../common/proto.h"
#include "../../downstairs/cli.h"
#include "../../downstairs/region.h"
#include "../../downstairs/server.h"

static struct ds_server_opts opts;
static uint16_t port;
static uint64_t session = 0x66757a7aULL;

/* Drop the server's log lines: a malformed frame logs one each. */
static void quiet(enum log_level level, const char *msg)
{
  if (level == LOG_ERROR && getenv("FUZZ_DS_VERBOSE"))
    fprintf(stderr, "%s\n", msg);
}

static void *server_thread(void *arg)
{
  (void) arg;
  int r = ds_server_run(&opts);
  fprintf(stderr, "fuzz_ds_request: server returned %d\n", r);
  abort(); /* the server never stops while we fuzz */
}

/* A port that was free a moment ago. */
static uint16_t pick_port(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t al = sizeof a;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, (struct sockaddr *) &a, sizeof a) < 0 ||
      getsockname(s, (struct sockaddr *) &a, &al) < 0)
    abort();
  close(s);
  return ntohs(a.sin_port);
}

/* A connected socket with 2 s send/receive timeouts, or -1. */
static int dial(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  struct timeval tv = {.tv_sec = 2};
  int one = 1, s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0)
    return -1;
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(s, (struct sockaddr *) &a, sizeof a) < 0) {
    close(s);
    return -1;
  }
  return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void) argc;
  (void) argv;
  static char dir[512];
  const char *t = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/crucible-fuzz-ds.XXXXXX", t ? t : "/tmp");
  if (!mkdtemp(dir))
    abort();
  strcat(dir, "/region");
  log_set_sink(quiet);
  struct proto_region def = {
      .block_size = 512, .extent_size = 64, .extent_count = 4, .encrypted = 0};
  memset(def.uuid, 0x11, sizeof def.uuid);
  struct region *r;
  if (region_create(dir, &def) < 0 || region_open(dir, &r) < 0)
    abort();
  port = pick_port();
  opts = (struct ds_server_opts){.dir = dir,
                                 .region = r,
                                 .addr = "127.0.0.1",
                                 .port = port,
                                 .max_conns = 64,
                                 .idle_timeout = 30};
  if (cli_listen(opts.addr, opts.port, &opts.listen_fd) < 0)
    abort();
  opts.have_listen_fd = true;
  pthread_t th;
  if (pthread_create(&th, NULL, server_thread, NULL) != 0)
    abort();
  for (int i = 0; i < 500; i++) {
    int s = dial();
    if (s >= 0) {
      close(s);
      return 0;
    }
    usleep(10000);
  }
  abort();
}

/* Read one frame into f (cap bytes); its type, or -1. */
static int recv_frame(int s, uint8_t *f, size_t cap)
{
  size_t got = 0, want = 4;
  while (got < want) {
    ssize_t n = recv(s, f + got, want - got, 0);
    if (n <= 0)
      return -1;
    got += (size_t) n;
    if (got == 4) {
      want = proto_rd32(f);
      if (want < PROTO_FRAME_HDR_LEN || want > cap)
        return -1;
    }
  }
  return proto_rd16(f + 4);
}

/* HELLO + ACTIVATE one generation above the highest accepted. */
static void activate(int s)
{
  uint8_t f[1024];
  struct proto_msg m;
  struct proto_hello h = {.version = PROTO_VERSION,
                          .role = PROTO_ROLE_UPSTAIRS,
                          .session_id = ++session};
  size_t n = proto_put_hello(f, &h);
  if (send(s, f, n, MSG_NOSIGNAL) != (ssize_t) n ||
      recv_frame(s, f, sizeof f) != PROTO_T_HELLO_OK ||
      proto_decode(f, proto_rd32(f), 0, &m) < 0 ||
      m.u.hello_ok.highest_gen >= UINT64_MAX / 2)
    return; /* a fuzzed ACTIVATE took the generations: fuzz unactivated */
  struct proto_activate a = {.gen = m.u.hello_ok.highest_gen + 1};
  n = proto_put_activate(f, &a);
  if (send(s, f, n, MSG_NOSIGNAL) == (ssize_t) n)
    recv_frame(s, f, sizeof f);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
  if (size < 1)
    return 0;
  static uint8_t data[1 << 20];
  if (size > sizeof data)
    size = sizeof data;
  memcpy(data, in, size);
  int s = -1;
  for (int i = 0; i < 200 && s < 0; i++) {
    s = dial();
    if (s < 0)
      usleep(10000);
  }
  if (s < 0) {
    fprintf(stderr, "fuzz_ds_request: the server stopped accepting\n");
    abort();
  }
  uint8_t mode = data[0];
  if (mode & 1)
    activate(s);
  size_t piece = (mode & 2) ? (size_t) (mode >> 2) + 1 : size;
  for (size_t off = 1; off < size;) {
    size_t k = size - off < piece ? size - off : piece;
    ssize_t n = send(s, data + off, k, MSG_NOSIGNAL);
    if (n <= 0)
      break; /* closed by the server: fine */
    off += (size_t) n;
  }
  shutdown(s, SHUT_WR);
  static uint8_t sink[65536];
  while (recv(s, sink, sizeof sink, 0) > 0)
    ;
  close(s);
  return 0;
}
