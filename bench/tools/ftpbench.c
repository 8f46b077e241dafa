// ftpbench: short FTP sessions per second through an FTP gateway (or straight to the server).
// Each session: connect, greeting, USER/PASS (anonymous), TYPE I, SIZE FILE, PASV (what every FTP
// gateway understands; Debian's ftp-proxy has no EPSV), data connection to the port it names,
// RETR FILE read to EOF and checked for SIZE bytes, 226, QUIT, close. Both connections are closed with
// RST (no TIME_WAIT on the client side, so a bounded run cannot exhaust ephemeral ports).
// usage: ftpbench PORT FILE THREADS SECONDS
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

static int port;
static const char *file;
static double deadline;
static atomic_long ok_count, err_count;
static atomic_long hist[BUCKETS];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(int p) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct linger lg = {1, 0};
  setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
    close(s);
    return -1;
  }
  return s;
}

// A control connection with its read buffer.
struct ctl {
  int s;
  char buf[4096];
  size_t len;
};

// Reads one reply (multi-line aware); returns its code, or -1. The last line is left in `line`.
static int reply(struct ctl *c, char *line, size_t cap) {
  int code = -1, multi = 0;
  for (;;) {
    char *lf;
    while ((lf = memchr(c->buf, '\n', c->len)) == NULL) {
      if (c->len == sizeof c->buf) return -1;
      ssize_t r = read(c->s, c->buf + c->len, sizeof c->buf - c->len);
      if (r <= 0) return -1;
      c->len += (size_t)r;
    }
    size_t n = (size_t)(lf - c->buf) + 1;
    size_t keep = n < cap ? n : cap - 1;
    memcpy(line, c->buf, keep);
    line[keep] = 0;
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    if (n < 4) return -1;
    int this_code = atoi(line);
    if (code < 0) {
      code = this_code;
      multi = line[3] == '-';
      if (!multi) return code;
    } else if (this_code == code && line[3] == ' ') {
      return code;
    }
  }
}

static int cmd(struct ctl *c, const char *text, char *line, size_t cap) {
  size_t n = strlen(text);
  if (write(c->s, text, n) != (ssize_t)n) return -1;
  return reply(c, line, cap);
}

static int one(void) {
  char line[512], req[512];
  struct ctl c = {.len = 0};
  int data = -1, rc = -1;
  c.s = dial(port);
  if (c.s < 0) return -1;
  if (reply(&c, line, sizeof line) != 220) goto out;
  int code = cmd(&c, "USER anonymous\r\n", line, sizeof line);
  if (code == 331) code = cmd(&c, "PASS bench@\r\n", line, sizeof line);
  if (code != 230) goto out;
  if (cmd(&c, "TYPE I\r\n", line, sizeof line) != 200) goto out;
  snprintf(req, sizeof req, "SIZE %s\r\n", file);
  if (cmd(&c, req, line, sizeof line) != 213) goto out;
  long size = atol(line + 4);
  if (cmd(&c, "PASV\r\n", line, sizeof line) != 227) goto out;
  char *p = strchr(line, '(');
  int h1, h2, h3, h4, p1, p2;
  if (!p || sscanf(p, "(%d,%d,%d,%d,%d,%d)", &h1, &h2, &h3, &h4, &p1, &p2) != 6) goto out;
  data = dial(p1 * 256 + p2);
  if (data < 0) goto out;
  snprintf(req, sizeof req, "RETR %s\r\n", file);
  code = cmd(&c, req, line, sizeof line);
  if (code != 150 && code != 125) goto out;
  char buf[16384];
  long total = 0;
  for (;;) {
    ssize_t r = read(data, buf, sizeof buf);
    if (r < 0) goto out;
    if (r == 0) break;
    total += r;
  }
  close(data);
  data = -1;
  if (total != size || reply(&c, line, sizeof line) != 226) goto out;
  if (cmd(&c, "QUIT\r\n", line, sizeof line) != 221) goto out;
  rc = 0;
out:
  if (data >= 0) close(data);
  close(c.s);
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

static long pct(double q) {
  long total = atomic_load(&ok_count), want = (long)(total * q), acc = 0;
  for (long i = 0; i < BUCKETS; i++) {
    acc += atomic_load(&hist[i]);
    if (acc > want) return i * 10;
  }
  return (BUCKETS - 1) * 10;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s PORT FILE THREADS SECONDS\n", argv[0]);
    return 2;
  }
  port = atoi(argv[1]);
  file = argv[2];
  int threads = atoi(argv[3]);
  double secs = atof(argv[4]);
  if (threads < 1 || threads > 1024 || secs <= 0 || secs > 600) return 2;
  double start = now();
  deadline = start + secs;
  pthread_t t[1024];
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double el = now() - start;
  printf("FTPBENCH ok=%ld err=%ld seconds=%.3f p50_us=%ld p99_us=%ld\n", atomic_load(&ok_count),
         atomic_load(&err_count), el, pct(0.50), pct(0.99));
  return 0;
}
