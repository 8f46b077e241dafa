// connbench: short connections per second through a TCP relay or a SOCKS5 proxy.
// Each connection: connect, (SOCKS5 no-auth greeting + CONNECT 127.0.0.1:TARGET), one HTTP/1.1
// request with "Connection: close", read to EOF, check the status line, close with RST (no
// TIME_WAIT on the client side, so a bounded run cannot exhaust ephemeral ports).
// usage: connbench tcp|socks5 PROXY_PORT TARGET_PORT PATH THREADS SECONDS
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 100000 /* 10 us each: up to 1 s; slower goes in the last bucket */

static int socks, proxy_port, target_port;
static const char *path;
static double deadline;
static atomic_long ok_count, err_count;
static atomic_long hist[BUCKETS];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int read_full(int s, unsigned char *b, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(s, b + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int one(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct linger lg = {1, 0};
  setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(proxy_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = -1;
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) goto out;
  if (socks) {
    unsigned char g[3] = {5, 1, 0}, r[32];
    if (write(s, g, 3) != 3 || read_full(s, r, 2) || r[0] != 5 || r[1] != 0) goto out;
    unsigned char c[10] = {5, 1, 0, 1, 127, 0, 0, 1, (unsigned char)(target_port >> 8), (unsigned char)target_port};
    if (write(s, c, 10) != 10 || read_full(s, r, 4) || r[1] != 0) goto out;
    size_t rest = r[3] == 1 ? 6 : r[3] == 4 ? 18 : 0;
    if (r[3] == 3) {
      if (read_full(s, r, 1)) goto out;
      rest = (size_t)r[0] + 2;
    }
    if (rest == 0 || rest > sizeof r || read_full(s, r, rest)) goto out;
  }
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, target_port);
  if (write(s, req, (size_t)n) != n) goto out;
  char buf[16384];
  size_t total = 0;
  int status_ok = 0;
  for (;;) {
    ssize_t r = read(s, buf, sizeof buf);
    if (r < 0) goto out;
    if (r == 0) break;
    if (total == 0 && r >= 12 && memcmp(buf + 9, "200", 3) == 0) status_ok = 1;
    total += (size_t)r;
  }
  rc = status_ok ? 0 : -1;
out:
  close(s);
  return rc;
}

static void *worker(void *arg) {
  (void)arg;
  while (now() < deadline) {
    double t0 = now();
    if (one() == 0) {
      long b = (long)((now() - t0) * 1e5);
      if (b >= BUCKETS) b = BUCKETS - 1;
      atomic_fetch_add(&hist[b], 1);
      atomic_fetch_add(&ok_count, 1);
    } else {
      atomic_fetch_add(&err_count, 1);
    }
  }
  return NULL;
}

static long pct(double p) {
  long total = atomic_load(&ok_count), want = (long)(total * p), acc = 0;
  for (long i = 0; i < BUCKETS; i++) {
    acc += atomic_load(&hist[i]);
    if (acc > want) return i * 10;
  }
  return (BUCKETS - 1) * 10;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s tcp|socks5 PROXY_PORT TARGET_PORT PATH THREADS SECONDS\n", argv[0]);
    return 2;
  }
  socks = strcmp(argv[1], "socks5") == 0;
  proxy_port = atoi(argv[2]);
  target_port = atoi(argv[3]);
  path = argv[4];
  int threads = atoi(argv[5]);
  double secs = atof(argv[6]);
  if (threads < 1 || threads > 1024 || secs <= 0 || secs > 600) return 2;
  double start = now();
  deadline = start + secs;
  pthread_t t[1024];
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double el = now() - start;
  printf("CONNBENCH ok=%ld err=%ld seconds=%.3f p50_us=%ld p99_us=%ld\n", atomic_load(&ok_count),
         atomic_load(&err_count), el, pct(0.50), pct(0.99));
  return 0;
}
