/* psbench.c - pub/sub fan-out benchmark: N WebSocket subscribers spread over several wsgate
 * instances, one publisher at a fixed rate (a WebSocket client of the first instance, or raw
 * RESP PUBLISH to Redis); each message carries its send time, every delivery is timed.
 * Single-threaded epoll; prints delivered/expected, order violations and latency percentiles.
 *
 * usage: psbench -g PORT[,PORT...] [-H 127.0.0.1] [-p /sub-path] [-n 1000] [-r 1000] [-d 10] [-K]
 *                [-s 64] [-W 1] [-m ws|redis] [-P /pub-path] [-R redis-port] [-C channel]
 *                [-e expected-numsub] [-S pid,pid,...]
 *   -g  gateway ports; subscribers are assigned round-robin
 *   -m  ws: publish as a WebSocket client of the first gateway on -P; redis: PUBLISH -C on -R
 *   -R  Redis port: also used before the run to wait until PUBSUB NUMSUB <channel> equals -e
 *       (default: the number of gateways), i.e. until every instance has subscribed
 *   -W  warm-up seconds at the same rate, not counted
 *   -K  delivery time = the kernel's receive time of the bytes (SO_TIMESTAMPNS), not the time
 *       this process got round to reading them: one process reading 100,000 messages a second
 *       queues behind its own reads, and that would count against every server. The latency
 *       seen by this reader (after epoll_wait) is printed too (p99_reader_us=).
 *   -S  server pids whose CPU time (all threads, from schedstat) is reported for the measured
 *       phase: summed as a % of one core, and per pid in ms (srv_cpu_ms=, srv_wait_ms= lists
 *       in -S order; wait = runnable but not running)
 * The last line is "RESULT key=value ..." for scripts. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_GW 16
#define MAX_PIDS 8
#define INFLIGHT_HS 100 /* handshakes in progress at once */
#define HDR_LEN 33      /* "M <seq:10> <send ns:19> " fixed prefix */

enum cstate { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_DEAD };

struct conn {
	int fd;
	enum cstate state;
	int gw;      /* index into gateway ports */
	bool is_pub; /* the WebSocket publisher */
	char key[25];
	char req[512];
	size_t req_len, req_off;
	uint8_t *in; /* unparsed input */
	size_t in_len, in_cap;
	uint8_t *out; /* pending output (publisher, pongs) */
	size_t out_len, out_cap;
	int64_t last_seq; /* highest measured seq seen */
	uint64_t got;     /* measured messages received */
};

static struct {
	const char *host;
	int ports[MAX_GW];
	int nports;
	const char *sub_path, *pub_path, *channel;
	int nconns, rate, duration, size, warmup;
	bool redis_pub;
	int redis_port;
	int expect_numsub;
	int pids[MAX_PIDS];
	int npids;
} opt = {"127.0.0.1", {0}, 0,     "/bench", "/bench-pub", "bench", 1000, 1000, 10,
         64,          1,   false, 0,        -1,           {0},     0};

static int ep;
static struct conn *conns; /* subscribers */
static struct conn pubc;   /* WebSocket publisher */
static int redis_fd = -1;  /* RESP publisher */
static uint8_t *redis_out;
static size_t redis_out_len, redis_out_cap;
static uint64_t redis_replies, redis_receivers;
static uint32_t *lat;   /* measured latencies, ns (capped) */
static uint32_t *rlat;  /* the same, as this reader saw them (-K: differs from lat) */
static bool ktime;      /* -K */
static int64_t rt_mono; /* CLOCK_REALTIME - CLOCK_MONOTONIC, ns (kernel stamps are realtime) */
static uint64_t nlat, lat_cap;
static uint64_t out_of_order, warm_got, bad_frames, disconnected, opened;
static uint64_t pub_lag_max_ns;

static void
die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "psbench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
buf_add(uint8_t **b, size_t *len, size_t *cap, const void *data, size_t n)
{
	if (*len + n > *cap) {
		size_t nc = *cap ? *cap : 4096;
		while (nc < *len + n)
			nc *= 2;
		if ((*b = realloc(*b, nc)) == NULL)
			die("out of memory");
		*cap = nc;
	}
	memcpy(*b + *len, data, n);
	*len += n;
}

static int
tcp_connect(int port, bool nonblock)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0), one = 1;

	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1)
		die("bad host %s", opt.host);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (ktime && setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0)
		die("SO_TIMESTAMPNS: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		die("connect to %d: %s", port, strerror(errno));
	return fd;
}

static void
ep_set(struct conn *c, uint32_t ev, int op)
{
	struct epoll_event e = {.events = ev, .data.ptr = c};
	if (epoll_ctl(ep, op, c->fd, &e) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

/* ---- WebSocket client side ------------------------------------------------------------- */

static void
ws_start(struct conn *c, int gw, const char *path, bool is_pub)
{
	uint8_t raw[16];

	memset(c, 0, sizeof(*c));
	c->gw = gw;
	c->is_pub = is_pub;
	c->last_seq = -1;
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
		die("getrandom");
	EVP_EncodeBlock((unsigned char *)c->key, raw, sizeof(raw));
	c->req_len = (size_t)snprintf(
	    c->req, sizeof(c->req),
	    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
	    path, opt.host, opt.ports[gw], c->key);
	c->fd = tcp_connect(opt.ports[gw], true);
	c->state = CS_CONNECTING;
	c->in_cap = (size_t)(opt.size * 2 + 4096);
	if ((c->in = malloc(c->in_cap)) == NULL)
		die("out of memory");
	ep_set(c, EPOLLOUT | EPOLLIN, EPOLL_CTL_ADD);
}

static void
ws_mark_dead(struct conn *c, const char *why)
{
	if (c->state == CS_DEAD)
		return;
	if (c->state == CS_OPEN)
		disconnected++;
	else
		fprintf(stderr, "psbench: connection to port %d failed: %s\n", opt.ports[c->gw],
		        why);
	if (c->is_pub)
		die("publisher connection lost: %s", why);
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->state = CS_DEAD;
}

/* A masked client frame into c->out. */
static void
ws_queue_frame(struct conn *c, unsigned opcode, const uint8_t *p, size_t n)
{
	uint8_t h[14], mask[4];
	size_t hl = 0;

	h[hl++] = (uint8_t)(0x80 | opcode);
	if (n <= 125) {
		h[hl++] = (uint8_t)(0x80 | n);
	} else if (n <= 0xffff) {
		h[hl++] = 0x80 | 126;
		h[hl++] = (uint8_t)(n >> 8);
		h[hl++] = (uint8_t)n;
	} else {
		h[hl++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
	}
	if (getrandom(mask, 4, 0) != 4)
		die("getrandom");
	memcpy(h + hl, mask, 4);
	hl += 4;
	buf_add(&c->out, &c->out_len, &c->out_cap, h, hl);
	buf_add(&c->out, &c->out_len, &c->out_cap, p, n);
	for (size_t i = 0; i < n; i++)
		c->out[c->out_len - n + i] ^= mask[i & 3];
}

static void
ws_flush(struct conn *c)
{
	while (c->out_len > 0) {
		ssize_t w = write(c->fd, c->out, c->out_len);
		if (w < 0) {
			if (errno == EAGAIN) {
				ep_set(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
				return;
			}
			ws_mark_dead(c, strerror(errno));
			return;
		}
		memmove(c->out, c->out + w, c->out_len - (size_t)w);
		c->out_len -= (size_t)w;
	}
	ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
}

/* "M 0000000123 0000000000012345678 xxxx": phase, seq, send time (ns). */
/* Fixed-width decimal field; false on a non-digit. */
static bool
digits(const uint8_t *p, int n, uint64_t *out)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return true;
}

/* "M 0000000123 0000000000012345678 xxxx": phase, seq, send time (ns). */
static void
on_message(struct conn *c, const uint8_t *p, size_t n, uint64_t t, uint64_t tr)
{
	uint64_t seq, ts;

	if (c->is_pub)
		return;
	if (n < HDR_LEN || (p[0] != 'M' && p[0] != 'W') || !digits(p + 2, 10, &seq) ||
	    !digits(p + 13, 19, &ts)) {
		bad_frames++;
		return;
	}
	if (p[0] == 'W') {
		warm_got++;
		return;
	}
	if ((int64_t)seq <= c->last_seq)
		out_of_order++;
	else
		c->last_seq = (int64_t)seq;
	c->got++;
	if (nlat < lat_cap) {
		uint64_t d = t > ts ? t - ts : 0, dr = tr > ts ? tr - ts : 0;

		rlat[nlat] = dr > UINT32_MAX ? UINT32_MAX : (uint32_t)dr;
		lat[nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
	}
}

static void
ws_parse(struct conn *c, uint64_t t, uint64_t tr)
{
	size_t off = 0;

	while (c->in_len - off >= 2) {
		const uint8_t *b = c->in + off;
		size_t avail = c->in_len - off, hl = 2;
		uint64_t n = b[1] & 0x7f;
		unsigned op = b[0] & 0x0f;

		if (b[1] & 0x80) {
			ws_mark_dead(c, "masked server frame");
			return;
		}
		if (n == 126) {
			if (avail < 4)
				break;
			n = ((uint64_t)b[2] << 8) | b[3];
			hl = 4;
		} else if (n == 127) {
			if (avail < 10)
				break;
			n = 0;
			for (int i = 0; i < 8; i++)
				n = (n << 8) | b[2 + i];
			hl = 10;
		}
		if (hl + n > c->in_cap) {
			ws_mark_dead(c, "frame larger than the input buffer");
			return;
		}
		if (avail < hl + n)
			break;
		if (op == 0x1 || op == 0x2) {
			if (!(b[0] & 0x80))
				bad_frames++; /* wsgate frames each message once, unfragmented */
			on_message(c, b + hl, (size_t)n, t, tr);
		} else if (op == 0x9) {
			ws_queue_frame(c, 0xA, b + hl, (size_t)n);
			ws_flush(c);
		} else if (op == 0x8) {
			ws_mark_dead(c, "close frame from the server");
			return;
		}
		off += hl + (size_t)n;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
}

static void
handshake_done(struct conn *c)
{
	unsigned char sha[SHA_DIGEST_LENGTH];
	char cat[128], accept[64], *end, *hdr;

	end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
	if (end == NULL)
		return;
	*end = '\0';
	if (strncmp((char *)c->in, "HTTP/1.1 101", 12) != 0) {
		ws_mark_dead(c, (char *)c->in);
		return;
	}
	snprintf(cat, sizeof(cat), "%s%s", c->key, WS_GUID);
	SHA1((unsigned char *)cat, strlen(cat), sha);
	EVP_EncodeBlock((unsigned char *)accept, sha, sizeof(sha));
	hdr = strcasestr((char *)c->in, "\r\nSec-WebSocket-Accept:");
	if (hdr == NULL || strstr(hdr, accept) == NULL) {
		ws_mark_dead(c, "bad Sec-WebSocket-Accept");
		return;
	}
	size_t used = (size_t)(end + 4 - (char *)c->in);
	memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
	c->state = CS_OPEN;
	opened++;
	ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
}

/* read(), or with -K recvmsg() and *t = the kernel's receive time (monotonic ns) of what was
 * read (TCP gives the stamp of the last segment read). */
static ssize_t
sub_read(struct conn *c, size_t room, uint64_t *t)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} cb;
	struct iovec iov = {.iov_base = c->in + c->in_len, .iov_len = room};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t r;

	if (!ktime)
		return read(c->fd, iov.iov_base, room);
	m.msg_control = cb.buf;
	m.msg_controllen = sizeof(cb.buf);
	if ((r = recvmsg(c->fd, &m, 0)) <= 0)
		return r;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h != NULL; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;

			memcpy(&ts, CMSG_DATA(h), sizeof(ts));
			*t = (uint64_t)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - rt_mono);
		}
	}
	return r;
}

static void
ws_event(struct conn *c, uint32_t ev, uint64_t t)
{
	if (c->state == CS_DEAD)
		return;
	if (c->state == CS_CONNECTING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			ws_mark_dead(c, strerror(err));
			return;
		}
		c->state = CS_HANDSHAKE;
	}
	if (c->state == CS_HANDSHAKE && c->req_off < c->req_len && (ev & EPOLLOUT)) {
		ssize_t w = write(c->fd, c->req + c->req_off, c->req_len - c->req_off);
		if (w > 0)
			c->req_off += (size_t)w;
		if (c->req_off == c->req_len)
			ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
	}
	if (c->state == CS_OPEN && (ev & EPOLLOUT))
		ws_flush(c);
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		for (;;) {
			if (c->in_len == c->in_cap) {
				ws_mark_dead(c, "input buffer full");
				return;
			}
			size_t room = c->in_cap - c->in_len;
			uint64_t tk = t;
			ssize_t r = sub_read(c, room, &tk);
			if (r < 0) {
				if (errno == EAGAIN)
					break;
				ws_mark_dead(c, strerror(errno));
				return;
			}
			if (r == 0) {
				ws_mark_dead(c, "EOF");
				return;
			}
			c->in_len += (size_t)r;
			if (c->state == CS_HANDSHAKE) {
				handshake_done(c);
				if (c->state != CS_OPEN)
					continue;
			}
			if (c->state == CS_OPEN)
				ws_parse(c, tk, t);
			if (c->state == CS_DEAD)
				return;
			/* Level-triggered: a short read took everything there was; a read to EAGAIN
			 * would double this reader's syscalls. */
			if ((size_t)r < room)
				break;
		}
	}
}

/* ---- Redis (blocking helpers for setup, non-blocking publisher) ------------------------- */

static void
resp_cmd(uint8_t **b, size_t *len, size_t *cap, int argc, const char **argv, const size_t *lens)
{
	char tmp[64];
	int n = snprintf(tmp, sizeof(tmp), "*%d\r\n", argc);
	buf_add(b, len, cap, tmp, (size_t)n);
	for (int i = 0; i < argc; i++) {
		n = snprintf(tmp, sizeof(tmp), "$%zu\r\n", lens[i]);
		buf_add(b, len, cap, tmp, (size_t)n);
		buf_add(b, len, cap, argv[i], lens[i]);
		buf_add(b, len, cap, "\r\n", 2);
	}
}

/* PUBSUB NUMSUB channel on a fresh blocking connection. */
static long
redis_numsub(const char *channel)
{
	const char *argv[] = {"PUBSUB", "NUMSUB", channel};
	size_t lens[] = {6, 6, strlen(channel)};
	uint8_t *b = NULL;
	size_t len = 0, cap = 0;
	char rbuf[512];
	size_t got = 0;
	int fd = tcp_connect(opt.redis_port, false);
	long n = -1;

	resp_cmd(&b, &len, &cap, 3, argv, lens);
	if (write(fd, b, len) != (ssize_t)len)
		die("redis write: %s", strerror(errno));
	free(b);
	/* *2\r\n$len\r\nchannel\r\n:N\r\n */
	while (got < sizeof(rbuf) - 1) {
		ssize_t r = read(fd, rbuf + got, sizeof(rbuf) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		rbuf[got] = '\0';
		char *colon = strchr(rbuf, ':');
		if (colon && strstr(colon, "\r\n")) {
			n = strtol(colon + 1, NULL, 10);
			break;
		}
	}
	close(fd);
	return n;
}

static void
redis_flush(void)
{
	while (redis_out_len > 0) {
		ssize_t w = write(redis_fd, redis_out, redis_out_len);
		if (w < 0) {
			if (errno == EAGAIN)
				return;
			die("redis publisher write: %s", strerror(errno));
		}
		memmove(redis_out, redis_out + w, redis_out_len - (size_t)w);
		redis_out_len -= (size_t)w;
	}
}

static void
redis_read(void)
{
	char b[65536];
	ssize_t r;

	while ((r = read(redis_fd, b, sizeof(b))) > 0) {
		/* Replies are ":N\r\n" (receivers of each PUBLISH). */
		for (ssize_t i = 0; i < r; i++) {
			static long cur;
			static int in_int;
			if (b[i] == ':') {
				in_int = 1;
				cur = 0;
			} else if (in_int && b[i] >= '0' && b[i] <= '9') {
				cur = cur * 10 + (b[i] - '0');
			} else if (in_int && b[i] == '\r') {
				in_int = 0;
				redis_replies++;
				redis_receivers += (uint64_t)cur;
			} else if (b[i] == '-') {
				die("redis error reply to PUBLISH");
			}
		}
	}
	if (r == 0)
		die("redis closed the publisher connection");
}

/* ---- publishing ------------------------------------------------------------------------ */

static void
publish(char phase, uint64_t seq, uint64_t scheduled)
{
	uint8_t *msg = malloc((size_t)opt.size);
	uint64_t t = now_ns();
	char hdr[HDR_LEN + 1];

	if (msg == NULL)
		die("out of memory");
	snprintf(hdr, sizeof(hdr), "%c %010llu %019llu ", phase, (unsigned long long)seq,
	         (unsigned long long)t);
	memset(msg, 'x', (size_t)opt.size);
	memcpy(msg, hdr, HDR_LEN);
	if (phase == 'M' && t > scheduled && t - scheduled > pub_lag_max_ns)
		pub_lag_max_ns = t - scheduled;
	if (opt.redis_pub) {
		const char *argv[] = {"PUBLISH", opt.channel, (const char *)msg};
		size_t lens[] = {7, strlen(opt.channel), (size_t)opt.size};
		resp_cmd(&redis_out, &redis_out_len, &redis_out_cap, 3, argv, lens);
		redis_flush();
	} else {
		ws_queue_frame(&pubc, 0x1, msg, (size_t)opt.size);
		ws_flush(&pubc);
	}
	free(msg);
}

/* ---- the run --------------------------------------------------------------------------- */

static void
poll_once(int timeout_ms)
{
	struct epoll_event evs[512];
	int n = epoll_wait(ep, evs, 512, timeout_ms);
	uint64_t t = now_ns();

	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == &redis_fd) {
			redis_read();
			redis_flush();
		} else if (evs[i].data.ptr != NULL) {
			ws_event(evs[i].data.ptr, evs[i].events, t);
		}
	}
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double
pct_of(const uint32_t *a, double p)
{
	if (nlat == 0)
		return 0;
	uint64_t i = (uint64_t)(p / 100.0 * (double)(nlat - 1) + 0.5);
	return a[i] / 1000.0;
}

static double
pct(double p)
{
	return pct_of(lat, p);
}

/* CPU time (ns) every thread of pid ran, and waited runnable, so far
 * (/proc/PID/task/N/schedstat: nanoseconds, where /proc/PID/stat has 10 ms ticks). */
static bool
proc_sched(int pid, uint64_t *run, uint64_t *wait)
{
	char path[64];
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	if ((d = opendir(path)) == NULL)
		return false;
	*run = *wait = 0;
	while ((de = readdir(d)) != NULL) {
		char p2[128];
		unsigned long long r, w;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(p2, sizeof(p2), "/proc/%d/task/%.20s/schedstat", pid, de->d_name);
		if ((f = fopen(p2, "r")) == NULL)
			continue;
		if (fscanf(f, "%llu %llu", &r, &w) == 2) {
			*run += r;
			*wait += w;
		}
		fclose(f);
	}
	closedir(d);
	return true;
}

static double
self_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: psbench -g PORT[,PORT...] [-H host] [-p sub-path] [-n conns] "
	        "[-r msgs/s] [-d secs] [-s size] [-W warmup-secs] [-m ws|redis] [-P pub-path] "
	        "[-R redis-port] [-C channel] [-e expected-numsub] [-S pid,...] [-K]\n");
	exit(2);
}

static void
parse_list(char *s, int *out, int *n, int max)
{
	for (char *tok = strtok(s, ","); tok != NULL; tok = strtok(NULL, ",")) {
		if (*n == max)
			die("too many values in %s", s);
		out[(*n)++] = atoi(tok);
	}
}

static void
run_phase(char phase, int secs)
{
	uint64_t total = (uint64_t)opt.rate * (uint64_t)secs, sent = 0;
	uint64_t t0 = now_ns(), period = 1000000000ull / (uint64_t)opt.rate;
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec its = {{0, 1000000}, {0, 1000000}}; /* 1 ms tick */
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};

	if (total == 0)
		return;
	timerfd_settime(tfd, 0, &its, NULL);
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e);
	while (sent < total) {
		poll_once(2);
		uint64_t t = now_ns();
		uint64_t tick;
		while (read(tfd, &tick, sizeof(tick)) > 0)
			;
		while (sent < total && t0 + sent * period <= t) {
			publish(phase, sent, t0 + sent * period);
			sent++;
		}
	}
	epoll_ctl(ep, EPOLL_CTL_DEL, tfd, NULL);
	close(tfd);
}

int
main(int argc, char **argv)
{
	int ch;
	struct rlimit rl;

	while ((ch = getopt(argc, argv, "g:H:p:n:r:d:s:W:m:P:R:C:e:S:K")) != -1) {
		switch (ch) {
		case 'g':
			parse_list(optarg, opt.ports, &opt.nports, MAX_GW);
			break;
		case 'H':
			opt.host = optarg;
			break;
		case 'p':
			opt.sub_path = optarg;
			break;
		case 'n':
			opt.nconns = atoi(optarg);
			break;
		case 'r':
			opt.rate = atoi(optarg);
			break;
		case 'd':
			opt.duration = atoi(optarg);
			break;
		case 's':
			opt.size = atoi(optarg);
			break;
		case 'W':
			opt.warmup = atoi(optarg);
			break;
		case 'm':
			if (strcmp(optarg, "redis") == 0)
				opt.redis_pub = true;
			else if (strcmp(optarg, "ws") != 0)
				usage();
			break;
		case 'P':
			opt.pub_path = optarg;
			break;
		case 'R':
			opt.redis_port = atoi(optarg);
			break;
		case 'C':
			opt.channel = optarg;
			break;
		case 'e':
			opt.expect_numsub = atoi(optarg);
			break;
		case 'K':
			ktime = true;
			break;
		case 'S':
			parse_list(optarg, opt.pids, &opt.npids, MAX_PIDS);
			break;
		default:
			usage();
		}
	}
	if (opt.nports == 0 || opt.nconns < 1 || opt.rate < 1 || opt.duration < 1 ||
	    opt.size < HDR_LEN || opt.size > 65536 || (opt.redis_pub && opt.redis_port == 0))
		usage();
	if (opt.expect_numsub < 0)
		opt.expect_numsub = opt.nports;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)opt.nconns + 64) {
		rl.rlim_cur =
		    rl.rlim_max < (rlim_t)opt.nconns + 64 ? rl.rlim_max : (rlim_t)opt.nconns + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((ep = epoll_create1(0)) < 0)
		die("epoll_create1: %s", strerror(errno));
	lat_cap = (uint64_t)opt.nconns * (uint64_t)opt.rate * (uint64_t)opt.duration;
	{
		struct timespec rt, mo;

		clock_gettime(CLOCK_REALTIME, &rt);
		clock_gettime(CLOCK_MONOTONIC, &mo);
		rt_mono = ((int64_t)rt.tv_sec - mo.tv_sec) * 1000000000 + (rt.tv_nsec - mo.tv_nsec);
	}
	if ((lat = malloc(lat_cap * sizeof(*lat))) == NULL ||
	    (rlat = malloc(lat_cap * sizeof(*rlat))) == NULL ||
	    (conns = calloc((size_t)opt.nconns, sizeof(*conns))) == NULL)
		die("out of memory");

	/* Subscribers, at most INFLIGHT_HS handshakes at a time. */
	uint64_t t_conn = now_ns();
	int started = 0;
	while (opened + disconnected < (uint64_t)opt.nconns) {
		while (started < opt.nconns && started - (int)opened < INFLIGHT_HS) {
			ws_start(&conns[started], started % opt.nports, opt.sub_path, false);
			started++;
		}
		poll_once(10);
		int dead = 0;
		for (int i = 0; i < started; i++)
			dead += conns[i].state == CS_DEAD;
		if (dead)
			die("%d subscriber(s) failed to connect", dead);
		if (now_ns() - t_conn > 30000000000ull)
			die("subscribers not connected within 30 s (%" PRIu64 " open)", opened);
	}
	double conn_secs = (double)(now_ns() - t_conn) / 1e9;

	/* Every instance subscribed before anything is published. */
	if (opt.redis_port) {
		uint64_t t = now_ns();
		long n;
		while ((n = redis_numsub(opt.channel)) != opt.expect_numsub) {
			if (now_ns() - t > 10000000000ull)
				die("PUBSUB NUMSUB %s = %ld, expected %d", opt.channel, n,
				    opt.expect_numsub);
			poll_once(50);
		}
	} else {
		for (int i = 0; i < 50; i++)
			poll_once(10);
	}

	/* The publisher. */
	if (opt.redis_pub) {
		static struct epoll_event e = {.events = EPOLLIN};
		redis_fd = tcp_connect(opt.redis_port, false);
		fcntl(redis_fd, F_SETFL, O_NONBLOCK);
		e.data.ptr = &redis_fd;
		epoll_ctl(ep, EPOLL_CTL_ADD, redis_fd, &e);
	} else {
		ws_start(&pubc, 0, opt.pub_path, true);
		uint64_t t = now_ns();
		while (pubc.state != CS_OPEN) {
			poll_once(10);
			if (now_ns() - t > 5000000000ull)
				die("publisher not connected");
		}
	}

	if (opt.warmup > 0) {
		run_phase('W', opt.warmup);
		for (int i = 0; i < 100; i++)
			poll_once(10); /* let the warm-up drain */
	}

	double cpu0 = self_cpu();
	uint64_t srv0[MAX_PIDS], wait0[MAX_PIDS], srv1[MAX_PIDS], wait1[MAX_PIDS];
	for (int i = 0; i < opt.npids; i++)
		if (!proc_sched(opt.pids[i], &srv0[i], &wait0[i]))
			die("no /proc/%d/task/*/schedstat", opt.pids[i]);
	uint64_t t_start = now_ns();
	/* For scripts that attach a profiler to the measured phase only (run-fanout.sh). */
	fprintf(stderr, "psbench: measuring\n");
	run_phase('M', opt.duration);
	uint64_t t_sent = now_ns();
	uint64_t expected = (uint64_t)opt.nconns * (uint64_t)opt.rate * (uint64_t)opt.duration;

	/* Drain: until everything arrived, or 3 s without progress (60 s at most). */
	uint64_t last_n = nlat, t_prog = now_ns();
	while (nlat < expected && now_ns() - t_sent < 60000000000ull &&
	       now_ns() - t_prog < 3000000000ull) {
		poll_once(20);
		if (nlat != last_n) {
			last_n = nlat;
			t_prog = now_ns();
		}
	}
	uint64_t t_end = now_ns();
	double wall = (double)(t_end - t_start) / 1e9;
	double gen_cpu = (self_cpu() - cpu0) / wall * 100.0;
	double srv_cpu = 0;
	for (int i = 0; i < opt.npids; i++) {
		if (!proc_sched(opt.pids[i], &srv1[i], &wait1[i]))
			die("pid %d gone during the run", opt.pids[i]);
		srv1[i] -= srv0[i];
		wait1[i] -= wait0[i];
		srv_cpu += (double)srv1[i] / 1e9;
	}
	srv_cpu = srv_cpu / wall * 100.0;

	qsort(lat, nlat, sizeof(*lat), cmp_u32);
	qsort(rlat, nlat, sizeof(*rlat), cmp_u32);
	uint64_t delivered = nlat, min_got = UINT64_MAX, max_got = 0;
	for (int i = 0; i < opt.nconns; i++) {
		if (conns[i].got < min_got)
			min_got = conns[i].got;
		if (conns[i].got > max_got)
			max_got = conns[i].got;
	}
	double pmax = nlat ? lat[nlat - 1] / 1000.0 : 0;

	printf("psbench: %d subscribers on %d gateway(s) (connected in %.2f s), publisher %s, "
	       "%d msg/s for %d s, %d-byte text messages\n",
	       opt.nconns, opt.nports, conn_secs,
	       opt.redis_pub ? "RESP PUBLISH" : "WebSocket client of gateway 1", opt.rate,
	       opt.duration, opt.size);
	printf("sent %llu, expected deliveries %llu, delivered %llu (%.4f%%), per subscriber "
	       "min %llu max %llu\n",
	       (unsigned long long)((uint64_t)opt.rate * opt.duration),
	       (unsigned long long)expected, (unsigned long long)delivered,
	       expected ? 100.0 * (double)delivered / (double)expected : 0,
	       (unsigned long long)min_got, (unsigned long long)max_got);
	printf("out of order or repeated %llu, malformed %llu, subscribers disconnected %llu\n",
	       (unsigned long long)out_of_order, (unsigned long long)bad_frames,
	       (unsigned long long)disconnected);
	printf("delivery latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", pct(50),
	       pct(90), pct(99), pct(99.9), pmax);
	printf("publisher lateness max %.0f us; generator CPU %.0f%% of one core",
	       pub_lag_max_ns / 1000.0, gen_cpu);
	if (opt.npids > 0)
		printf("; servers CPU %.0f%% (summed over -S pids)", srv_cpu);
	printf("\n");
	if (opt.redis_pub)
		printf("redis PUBLISH replies %llu, receivers summed %llu\n",
		       (unsigned long long)redis_replies, (unsigned long long)redis_receivers);
	printf("RESULT subscribers=%d gateways=%d rate=%d duration=%d size=%d sent=%llu "
	       "expected=%llu delivered=%llu delivered_pct=%.4f out_of_order=%llu malformed=%llu "
	       "disconnected=%llu p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f "
	       "pub_lag_max_us=%.0f gen_cpu_pct=%.0f",
	       opt.nconns, opt.nports, opt.rate, opt.duration, opt.size,
	       (unsigned long long)((uint64_t)opt.rate * opt.duration),
	       (unsigned long long)expected, (unsigned long long)delivered,
	       expected ? 100.0 * (double)delivered / (double)expected : 0,
	       (unsigned long long)out_of_order, (unsigned long long)bad_frames,
	       (unsigned long long)disconnected, pct(50), pct(90), pct(99), pct(99.9), pmax,
	       pub_lag_max_ns / 1000.0, gen_cpu);
	printf(" wall_ms=%.1f lat_clock=%s p50_reader_us=%.0f p99_reader_us=%.0f", wall * 1000.0,
	       ktime ? "kernel_rx" : "reader", pct_of(rlat, 50), pct_of(rlat, 99));
	if (opt.npids > 0) {
		printf(" srv_cpu_pct=%.0f srv_cpu_ms=", srv_cpu);
		for (int i = 0; i < opt.npids; i++)
			printf("%s%.2f", i ? "," : "", (double)srv1[i] / 1e6);
		printf(" srv_wait_ms=");
		for (int i = 0; i < opt.npids; i++)
			printf("%s%.2f", i ? "," : "", (double)wait1[i] / 1e6);
	}
	printf("\n");
	return delivered == expected && out_of_order == 0 && disconnected == 0 ? 0 : 1;
}
