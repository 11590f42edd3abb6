/*
 * delay: the one-way delay (and random loss) of the WAN bench's emulated path.
 *
 * It takes the packets an iptables NFQUEUE rule hands to queue <q>, holds each
 * for a fixed delay, then tells the kernel to let it go (NF_ACCEPT). With -l it
 * drops a fraction of them at random instead (NF_DROP, at once). The delay is
 * the same for every packet, so packets leave in the order they came: a FIFO
 * of (packet id, due time) and one batch verdict for every packet due.
 *
 * Only the first bytes of each packet are copied to user space (the IP header,
 * for the byte count): the kernel keeps the packet itself while it is held.
 *
 * Built by the bench at run time:
 *   gcc -O2 -Wall -o delay bench/wan/delay.c -lnetfilter_queue
 * Run in the namespace whose iptables rule queues to <q>:
 *   delay -q <queue> -d <delay µs> [-l <loss, parts per million>] [-s <seed>]
 *         [-g] [-m <queue length>]
 * -g asks for GSO packets whole (one verdict per up-to-64 KiB TCP segment
 * train); without it the kernel splits them into wire-sized packets first,
 * which is what a loss rate per packet needs.
 *
 * It prints "ready" once bound, a JSON line of counters on SIGUSR1 and at
 * exit (SIGTERM, SIGINT); every packet still held is let go at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef NETLINK_NO_ENOBUFS
#define NETLINK_NO_ENOBUFS 5
#endif
#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

struct held {
  uint32_t id;
  uint32_t bytes;
  uint64_t due_ns;
};

struct state {
  struct nfq_q_handle *qh;
  struct held *ring;
  size_t cap; /* a power of two */
  size_t head;
  size_t tail; /* head == tail: empty */
  uint64_t delay_ns;
  uint32_t loss_ppm;
  uint64_t rng;
  uint64_t now_ns; /* clock at the last read from the socket */
  /* counters */
  uint64_t packets, bytes, lost, overflow, verdicts, held_bytes, max_held, max_held_bytes, late_max_ns;
  uint64_t late_sum_ns, released, late_1ms, late_5ms;
};

static volatile sig_atomic_t stop_requested = 0;
static volatile sig_atomic_t report_requested = 0;

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void on_report(int sig) {
  (void)sig;
  report_requested = 1;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: a fast, seedable generator; quality is ample for a loss rate. */
static uint64_t next_random(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static size_t held_count(const struct state *st) {
  return (st->tail - st->head) & (st->cap - 1);
}

static void report(const struct state *st, const char *event) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               (double)ru.ru_stime.tv_usec / 1e6;
  printf("{\"event\":\"%s\",\"packets\":%llu,\"bytes\":%llu,\"lost\":%llu,\"overflow\":%llu,\"verdicts\":%llu,"
         "\"held\":%zu,\"maxHeld\":%llu,\"maxHeldBytes\":%llu,\"lateMeanUs\":%.1f,\"lateMaxUs\":%.1f,"
         "\"lateOver1ms\":%llu,\"lateOver5ms\":%llu,\"cpuSeconds\":%.3f}\n",
         event, (unsigned long long)st->packets, (unsigned long long)st->bytes, (unsigned long long)st->lost,
         (unsigned long long)st->overflow, (unsigned long long)st->verdicts, held_count(st),
         (unsigned long long)st->max_held, (unsigned long long)st->max_held_bytes,
         st->released > 0 ? (double)st->late_sum_ns / (double)st->released / 1000.0 : 0.0, (double)st->late_max_ns / 1000.0,
         (unsigned long long)st->late_1ms, (unsigned long long)st->late_5ms, cpu);
  fflush(stdout);
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg;
  struct state *st = data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (ph == NULL) return 0;
  uint32_t id = ntohl(ph->packet_id);
  unsigned char *payload = NULL;
  int len = nfq_get_payload(nfa, &payload);
  uint32_t bytes = 0;
  if (len >= 4 && payload != NULL && (payload[0] >> 4) == 4) bytes = ((uint32_t)payload[2] << 8) | payload[3];
  st->packets++;
  st->bytes += bytes;
  if (st->loss_ppm > 0 && next_random(&st->rng) % 1000000u < st->loss_ppm) {
    st->lost++;
    nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    return 0;
  }
  if (held_count(st) == st->cap - 1) {
    /* Never reached with the default length: the kernel's queue is shorter. */
    st->overflow++;
    nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    return 0;
  }
  struct held *h = &st->ring[st->tail];
  h->id = id;
  h->bytes = bytes;
  h->due_ns = st->now_ns + st->delay_ns;
  st->tail = (st->tail + 1) & (st->cap - 1);
  st->held_bytes += bytes;
  size_t n = held_count(st);
  if (n > st->max_held) st->max_held = n;
  if (st->held_bytes > st->max_held_bytes) st->max_held_bytes = st->held_bytes;
  return 0;
}

/* Lets go every packet whose time has come, with one batch verdict. */
static void release_due(struct state *st, uint64_t now) {
  size_t last = st->cap; /* none */
  while (st->head != st->tail && st->ring[st->head].due_ns <= now) {
    const struct held *h = &st->ring[st->head];
    uint64_t late = now - h->due_ns;
    if (late > st->late_max_ns) st->late_max_ns = late;
    st->late_sum_ns += late;
    st->released++;
    if (late > 1000000ull) st->late_1ms++;
    if (late > 5000000ull) st->late_5ms++;
    st->held_bytes -= h->bytes;
    last = st->head;
    st->head = (st->head + 1) & (st->cap - 1);
  }
  if (last != st->cap) {
    /* Packet ids grow in the order packets are queued: every id up to this one is due (or already dropped). */
    nfq_set_verdict_batch(st->qh, st->ring[last].id, NF_ACCEPT);
    st->verdicts++;
  }
}

static void usage(void) {
  fprintf(stderr, "usage: delay -q <queue> -d <delay us> [-l <loss ppm>] [-s <seed>] [-g] [-m <queue length>]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int queue = -1;
  long long delay_us = -1;
  long loss_ppm = 0;
  unsigned long long seed = 0x9E3779B97F4A7C15ull;
  int gso = 0;
  long maxlen = 1 << 20;
  int opt;
  while ((opt = getopt(argc, argv, "q:d:l:s:gm:")) != -1) {
    switch (opt) {
      case 'q': queue = atoi(optarg); break;
      case 'd': delay_us = atoll(optarg); break;
      case 'l': loss_ppm = atol(optarg); break;
      case 's': seed = strtoull(optarg, NULL, 0); break;
      case 'g': gso = 1; break;
      case 'm': maxlen = atol(optarg); break;
      default: usage();
    }
  }
  if (queue < 0 || queue > 65535 || delay_us < 0 || loss_ppm < 0 || loss_ppm > 1000000 || maxlen < 16) usage();

  struct state st;
  memset(&st, 0, sizeof st);
  st.delay_ns = (uint64_t)delay_us * 1000ull;
  st.loss_ppm = (uint32_t)loss_ppm;
  st.rng = seed != 0 ? seed : 1;
  st.cap = 1;
  while (st.cap < (size_t)maxlen + 1) st.cap <<= 1;
  st.ring = calloc(st.cap, sizeof *st.ring);
  if (st.ring == NULL) {
    perror("calloc");
    return 1;
  }

  /* Wake-ups on time, not 50 µs late. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  struct nfq_handle *h = nfq_open();
  if (h == NULL) {
    perror("nfq_open");
    return 1;
  }
  nfq_bind_pf(h, AF_INET); /* a no-op on current kernels, required on old ones */
  st.qh = nfq_create_queue(h, (uint16_t)queue, on_packet, &st);
  if (st.qh == NULL) {
    fprintf(stderr, "nfq_create_queue %d: %s (another process bound to it?)\n", queue, strerror(errno));
    return 1;
  }
  if (nfq_set_mode(st.qh, NFQNL_COPY_PACKET, 64) < 0) {
    perror("nfq_set_mode");
    return 1;
  }
  if (nfq_set_queue_maxlen(st.qh, (uint32_t)maxlen) < 0) {
    perror("nfq_set_queue_maxlen");
    return 1;
  }
  if (gso && nfq_set_queue_flags(st.qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0) {
    perror("nfq_set_queue_flags(GSO)");
    return 1;
  }
  int fd = nfq_fd(h);
  /* Room for every message of a full queue: a short socket buffer would drop packets. */
  nfnl_rcvbufsiz(nfq_nfnlh(h), 128u * 1024u * 1024u);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_report;
  sigaction(SIGUSR1, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  printf("ready queue=%d delay_us=%lld loss_ppm=%ld gso=%d maxlen=%ld\n", queue, delay_us, loss_ppm, gso, maxlen);
  fflush(stdout);

  static char buf[1 << 17];
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  while (!stop_requested) {
    uint64_t now = mono_ns();
    release_due(&st, now);
    if (report_requested) {
      report_requested = 0;
      report(&st, "stats");
    }
    struct timespec timeout;
    struct timespec *tp = NULL;
    if (st.head != st.tail) {
      uint64_t due = st.ring[st.head].due_ns;
      uint64_t wait = due > now ? due - now : 0;
      timeout.tv_sec = (time_t)(wait / 1000000000ull);
      timeout.tv_nsec = (long)(wait % 1000000000ull);
      tp = &timeout;
    }
    int r = ppoll(&pfd, 1, tp, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      perror("ppoll");
      break;
    }
    if (r == 0) continue;
    /* Drain the socket: every message waiting, each stamped with the time it was read. */
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == ENOBUFS) continue; /* messages were lost: the kernel counts them (queue_dropped) */
        perror("recv");
        stop_requested = 1;
        break;
      }
      if (n == 0) break;
      st.now_ns = mono_ns();
      nfq_handle_packet(h, buf, (int)n);
      /* Keep releasing on time under a flood of arrivals. */
      release_due(&st, st.now_ns);
    }
  }

  /* Let go of what is still held: nothing stays stuck once the bench stops. */
  if (st.head != st.tail) {
    size_t last = (st.tail - 1) & (st.cap - 1);
    nfq_set_verdict_batch(st.qh, st.ring[last].id, NF_ACCEPT);
    st.head = st.tail;
    st.held_bytes = 0;
  }
  report(&st, "exit");
  nfq_destroy_queue(st.qh);
  nfq_close(h);
  free(st.ring);
  return 0;
}
