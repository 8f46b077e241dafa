// tlsbench: HTTPS requests per second through an HTTP proxy that is asked to CONNECT (and may inspect).
// Each thread: connect to the proxy, CONNECT HOST:PORT, TLS handshake verifying the certificate against CAFILE
// for HOST (SNI HOST, ALPN http/1.1), then
//   keepalive: GET PATH again and again on that connection until the time is up;
//   new:       one GET PATH per connection (proxy connection, CONNECT and handshake every time).
// Counts 200 responses whose body arrived whole (Content-Length). Latency per request (new: per connection).
// A HOST with %d (n%d.bench.localhost) gets a fresh number per connection: a new name for the proxy to mint for.
// usage: tlsbench PROXY_PORT HOST PORT PATH CAFILE THREADS SECONDS keepalive|new
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 100000 /* 10 us each: up to 1 s; slower goes in the last bucket */

static int proxy_port, port, keepalive;
static const char *host, *path;
static SSL_CTX *ctx;
static double deadline;
static atomic_long ok_count, err_count, names;
static atomic_long hist[BUCKETS];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void record(double t0) {
  long b = (long)((now() - t0) * 1e5);
  if (b >= BUCKETS) b = BUCKETS - 1;
  atomic_fetch_add(&hist[b], 1);
  atomic_fetch_add(&ok_count, 1);
}

/* Proxy connection and CONNECT: the socket, or -1. */
static int tunnel(const char *host) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct linger lg = {1, 0};
  setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  struct timeval tv = {10, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(proxy_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) goto fail;
  char req[512];
  int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host, port);
  if (write(s, req, (size_t)n) != n) goto fail;
  /* Read the reply head byte by byte: nothing of the TLS that follows may be eaten. */
  char head[1024];
  size_t got = 0;
  while (got < sizeof head - 1) {
    ssize_t r = read(s, head + got, 1);
    if (r <= 0) goto fail;
    got++;
    if (got >= 4 && memcmp(head + got - 4, "\r\n\r\n", 4) == 0) break;
  }
  head[got] = 0;
  if (got < 12 || memcmp(head + 9, "200", 3) != 0) goto fail;
  return s;
fail:
  close(s);
  return -1;
}

/* One GET on an established TLS connection: 0 when a 200 with its whole body came back. */
static int get(SSL *ssl, const char *host, int close_after) {
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", path, host, port,
                   close_after ? "Connection: close\r\n" : "");
  if (SSL_write(ssl, req, n) != n) return -1;
  static __thread char buf[65536];
  size_t got = 0;
  char *end = NULL;
  while (!end) {
    if (got == sizeof buf) return -1;
    int r = SSL_read(ssl, buf + got, (int)(sizeof buf - got));
    if (r <= 0) return -1;
    got += (size_t)r;
    end = memmem(buf, got, "\r\n\r\n", 4);
  }
  if (got < 12 || memcmp(buf + 9, "200", 3) != 0) return -1;
  char *cl = memmem(buf, (size_t)(end - buf), "\r\nContent-Length:", 17);
  if (!cl) cl = memmem(buf, (size_t)(end - buf), "\r\ncontent-length:", 17);
  if (!cl) return -1;
  long want = atol(cl + 17);
  long have = (long)(got - (size_t)(end + 4 - buf));
  while (have < want) {
    int r = SSL_read(ssl, buf, (int)sizeof buf);
    if (r <= 0) return -1;
    have += r;
  }
  return have == want ? 0 : -1;
}

static SSL *handshake(int s, const char *host) {
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, s);
  SSL_set_tlsext_host_name(ssl, host);
  SSL_set1_host(ssl, host);
  if (SSL_connect(ssl) != 1) {
    SSL_free(ssl);
    return NULL;
  }
  return ssl;
}

static void *worker(void *arg) {
  (void)arg;
  while (now() < deadline) {
    double t0 = now();
    char name[256];
    if (strchr(host, '%')) snprintf(name, sizeof name, host, (int)atomic_fetch_add(&names, 1));
    else snprintf(name, sizeof name, "%s", host);
    int s = tunnel(name);
    if (s < 0) { atomic_fetch_add(&err_count, 1); continue; }
    SSL *ssl = handshake(s, name);
    if (!ssl) { atomic_fetch_add(&err_count, 1); close(s); continue; }
    if (keepalive) {
      while (now() < deadline) {
        double t1 = now();
        if (get(ssl, name, 0) != 0) { atomic_fetch_add(&err_count, 1); break; }
        record(t1);
      }
    } else {
      if (get(ssl, name, 1) == 0) record(t0);
      else atomic_fetch_add(&err_count, 1);
    }
    SSL_free(ssl);
    close(s);
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
  if (argc != 9) {
    fprintf(stderr, "usage: %s PROXY_PORT HOST PORT PATH CAFILE THREADS SECONDS keepalive|new\n", argv[0]);
    return 2;
  }
  proxy_port = atoi(argv[1]);
  host = argv[2];
  port = atoi(argv[3]);
  path = argv[4];
  int threads = atoi(argv[6]);
  double secs = atof(argv[7]);
  keepalive = strcmp(argv[8], "keepalive") == 0;
  if (threads < 1 || threads > 1024 || secs <= 0 || secs > 600) return 2;
  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (SSL_CTX_load_verify_locations(ctx, argv[5], NULL) != 1) {
    fprintf(stderr, "tlsbench: cannot load %s\n", argv[5]);
    return 2;
  }
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
  /* No session resumption: every new connection pays the full handshake, as a new client would. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  double start = now();
  deadline = start + secs;
  pthread_t t[1024];
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double el = now() - start;
  printf("TLSBENCH ok=%ld err=%ld seconds=%.3f p50_us=%ld p99_us=%ld\n", atomic_load(&ok_count),
         atomic_load(&err_count), el, pct(0.50), pct(0.99));
  return 0;
}
