/* wsbench.c - a single-threaded epoll WebSocket load generator: echo throughput and latency
 * with pipelined masked frames (-m echo), or N idle open connections for memory tests (-m idle). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define RBUF_SIZE (256 * 1024)   /* one shared read buffer: all parsing is streaming */
#define SENDBUF_CAP (256 * 1024) /* at most this many bytes of precomputed frames per conn */
#define HS_MAX 4096              /* largest 101 response we accept */
#define TS_LEN 8                 /* the timestamp at the start of each payload */
#define MAX_ERR_PRINT 10

enum mode { MODE_ECHO, MODE_IDLE };

enum cstate {
	CS_CONNECTING, /* non-blocking connect() in progress, waiting for EPOLLOUT */
	CS_HANDSHAKE,  /* upgrade request (partly) sent, collecting the 101 response */
	CS_OPEN,       /* WebSocket open: frames flow */
	CS_CLOSING,    /* we sent a close frame; waiting for the server's close or EOF */
	CS_DEAD,       /* socket closed; struct kept only for accounting */
};

struct conn {
	int fd;
	enum cstate state;
	uint32_t events; /* epoll events currently registered */

	/* handshake */
	char key[25]; /* base64 Sec-WebSocket-Key */
	char *hs;     /* request while sending, then response while receiving */
	size_t hs_len, hs_off;
	bool req_sent; /* the whole upgrade request is written */

	/* output: a batch of precomputed frames (sendbuf[0 .. out_len)) or a control frame */
	uint8_t *sendbuf;         /* nframes copies of one masked frame, each with its own mask */
	size_t frame_len;         /* bytes of one frame in sendbuf */
	size_t ts_off;            /* offset of the payload (the timestamp) inside a frame */
	unsigned nframes;         /* copies in sendbuf */
	size_t out_off, out_len;  /* pending batch: bytes of sendbuf still to write */
	uint8_t ctl[2 + 4 + 125]; /* one pending masked control frame (pong or close) */
	size_t ctl_off, ctl_len;

	unsigned inflight; /* messages sent and not yet echoed */

	/* streaming frame parser: never buffers payload */
	uint8_t hdr[14];
	unsigned hdr_have, hdr_need;
	uint64_t payload_left; /* bytes left in the current frame's payload */
	unsigned frame_op;     /* opcode of the current frame */
	bool frame_fin;        /* the current frame ends its message */
	bool in_payload;
	bool in_message;          /* a fragmented data message is in progress */
	unsigned msg_op;          /* opcode of the message being received */
	uint64_t msg_off;         /* payload offset inside the current message */
	uint8_t ts[TS_LEN];       /* first bytes of the message, captured for latency */
	uint8_t ctl_payload[125]; /* payload of a control frame being received */
	unsigned ctl_have;
};

struct hist {
	uint64_t b[2048];
	uint64_t count, max, min;
};

static struct {
	const char *host, *port, *path;
	unsigned conns, window, size;
	double duration, warmup;
	bool text;
	enum mode mode;
	unsigned max_pending; /* connections allowed in connect/handshake at once */
	long server_pid;      /* -S: sample this process's CPU over the measured interval */
} opt = {"127.0.0.1", "8080", "/echo", 1, 1, 64, 10, 1, false, MODE_ECHO, 256, 0};

static struct addrinfo *g_addr;
static int g_ep;
static struct conn *g_conns;
static uint8_t g_rbuf[RBUF_SIZE];
static uint8_t *g_pattern; /* expected payload bytes (after the timestamp) */
static uint64_t g_t0;      /* start of the run, ns */
static bool g_measuring, g_sending;
static uint64_t g_msgs, g_bytes; /* echoes counted while measuring */
static uint64_t g_msgs_total;    /* echoes over the whole run, warmup included */
static uint64_t g_errors, g_closed_by_peer;
static unsigned g_open, g_pending, g_next_conn, g_dead;
static struct hist g_hist;
static uint64_t g_rng;
static volatile sig_atomic_t g_stop;

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
rng_next(void)
{
	/* xorshift64*: masks only need to vary, not to be secret */
	g_rng ^= g_rng >> 12;
	g_rng ^= g_rng << 25;
	g_rng ^= g_rng >> 27;
	return g_rng * 2685821657736338717ull;
}

static void conn_error(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
conn_close(struct conn *c)
{
	if (c->state == CS_DEAD)
		return;
	if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE)
		g_pending--;
	else
		g_open--;
	epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->state = CS_DEAD;
	g_dead++;
	free(c->hs);
	c->hs = NULL;
	free(c->sendbuf);
	c->sendbuf = NULL;
}

static void
conn_error(struct conn *c, const char *fmt, ...)
{
	g_errors++;
	if (g_errors <= MAX_ERR_PRINT) {
		va_list ap;
		fprintf(stderr, "wsbench: conn %u: ", (unsigned)(c - g_conns));
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	} else if (g_errors == MAX_ERR_PRINT + 1) {
		fprintf(stderr, "wsbench: more errors not shown\n");
	}
	conn_close(c);
}

static void
set_events(struct conn *c, uint32_t ev)
{
	if (c->events == ev)
		return;
	struct epoll_event e = {.events = ev, .data.ptr = c};
	if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e) == -1) {
		perror("epoll_ctl");
		exit(2);
	}
	c->events = ev;
}

/* ---- histogram: log-linear, 32 sub-buckets per power of two (about 3% resolution) ---- */

static unsigned
hist_index(uint64_t v)
{
	if (v < 64)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - 5;
	return 64 + (shift - 1) * 32 + (unsigned)((v >> shift) - 32);
}

static uint64_t
hist_value(unsigned idx)
{
	if (idx < 64)
		return idx;
	unsigned shift = (idx - 64) / 32 + 1;
	uint64_t lo = (uint64_t)((idx - 64) % 32 + 32) << shift;
	return lo + ((1ull << shift) >> 1); /* middle of the bucket */
}

static void
hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
	if (h->count == 1 || v < h->min)
		h->min = v;
}

static double
hist_pct(const struct hist *h, double p)
{
	if (h->count == 0)
		return 0;
	uint64_t want = (uint64_t)(p / 100.0 * (double)h->count);
	if (want >= h->count)
		want = h->count - 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < 2048; i++) {
		seen += h->b[i];
		if (seen > want) {
			uint64_t v = hist_value(i);
			return (double)(v > h->max ? h->max : v);
		}
	}
	return (double)h->max;
}

/* ---- timestamps: 8 printable characters (6 bits each, 48 bits of ns since start) so
 * that text frames stay valid UTF-8 ---- */

static const char ts_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
ts_encode(uint8_t out[TS_LEN], uint64_t v)
{
	for (int i = TS_LEN - 1; i >= 0; i--) {
		out[i] = (uint8_t)ts_alpha[v & 63];
		v >>= 6;
	}
}

static int
ts_decode(const uint8_t in[TS_LEN], uint64_t *v)
{
	uint64_t r = 0;
	for (int i = 0; i < TS_LEN; i++) {
		unsigned d;
		uint8_t ch = in[i];
		if (ch >= 'A' && ch <= 'Z')
			d = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			d = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			d = ch - '0' + 52;
		else if (ch == '+')
			d = 62;
		else if (ch == '/')
			d = 63;
		else
			return -1;
		r = (r << 6) | d;
	}
	*v = r;
	return 0;
}

/* ---- handshake ---- */

static void
base64(const uint8_t *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static void
ws_accept_for(const char *key, char out[29])
{
	char buf[64 + sizeof(WS_GUID)];
	uint8_t md[SHA_DIGEST_LENGTH];
	int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)buf, (size_t)n, md);
	base64(md, sizeof(md), out);
}

/* Case-insensitive search for a header line; returns its value (trimmed) in out. */
static bool
header_value(const char *resp, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name);
	const char *p = strstr(resp, "\r\n");
	while (p != NULL) {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			const char *e = strstr(v, "\r\n");
			if (e == NULL)
				return false;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			size_t n = (size_t)(e - v);
			if (n >= outsz)
				n = outsz - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return true;
		}
		p = strstr(p, "\r\n");
	}
	return false;
}

static void conn_feed(struct conn *c, const uint8_t *p, size_t n, uint64_t now);
static void conn_flush(struct conn *c);

static void
conn_start(struct conn *c)
{
	int fd = socket(g_addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		fprintf(stderr, "wsbench: socket: %s (raise ulimit -n?)\n", strerror(errno));
		exit(2);
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->state = CS_CONNECTING;
	g_pending++;
	struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
	c->events = EPOLLOUT;
	if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &e) == -1) {
		perror("epoll_ctl");
		exit(2);
	}
	if (connect(fd, g_addr->ai_addr, g_addr->ai_addrlen) == -1 && errno != EINPROGRESS) {
		conn_error(c, "connect: %s", strerror(errno));
		return;
	}
}

static void
start_more_conns(void)
{
	while (g_next_conn < opt.conns && g_pending < opt.max_pending)
		conn_start(&g_conns[g_next_conn++]);
}

static void
conn_send_request(struct conn *c)
{
	uint8_t raw[16];
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
		perror("getrandom");
		exit(2);
	}
	base64(raw, sizeof(raw), c->key);
	c->hs = malloc(HS_MAX + 1);
	if (c->hs == NULL) {
		perror("malloc");
		exit(2);
	}
	int n = snprintf(c->hs, HS_MAX,
	                 "GET %s HTTP/1.1\r\n"
	                 "Host: %s:%s\r\n"
	                 "Upgrade: websocket\r\n"
	                 "Connection: Upgrade\r\n"
	                 "Sec-WebSocket-Key: %s\r\n"
	                 "Sec-WebSocket-Version: 13\r\n"
	                 "\r\n",
	                 opt.path, opt.host, opt.port, c->key);
	c->hs_len = (size_t)n;
	c->hs_off = 0;
	c->state = CS_HANDSHAKE;
}

/* Precomputes nframes masked copies of one message, each with its own mask key. */
static void
conn_build_frames(struct conn *c)
{
	size_t hlen = opt.size < 126 ? 2 : opt.size < 65536 ? 4 : 10;
	c->frame_len = hlen + 4 + opt.size;
	c->ts_off = hlen + 4;
	unsigned n = opt.window;
	if ((size_t)n * c->frame_len > SENDBUF_CAP)
		n = (unsigned)(SENDBUF_CAP / c->frame_len);
	if (n == 0)
		n = 1;
	c->nframes = n;
	c->sendbuf = malloc((size_t)n * c->frame_len);
	if (c->sendbuf == NULL) {
		perror("malloc");
		exit(2);
	}
	for (unsigned i = 0; i < n; i++) {
		uint8_t *f = c->sendbuf + (size_t)i * c->frame_len;
		f[0] = 0x80 | (opt.text ? 1 : 2);
		if (hlen == 2) {
			f[1] = 0x80 | (uint8_t)opt.size;
		} else if (hlen == 4) {
			f[1] = 0x80 | 126;
			f[2] = (uint8_t)(opt.size >> 8);
			f[3] = (uint8_t)opt.size;
		} else {
			f[1] = 0x80 | 127;
			for (int k = 0; k < 8; k++)
				f[2 + k] = (uint8_t)((uint64_t)opt.size >> (56 - 8 * k));
		}
		uint32_t m = (uint32_t)rng_next();
		memcpy(f + hlen, &m, 4);
		uint8_t *mk = f + hlen;
		uint8_t *pl = f + hlen + 4;
		for (size_t k = 0; k < opt.size; k++) {
			uint8_t b = k < TS_LEN ? 'A' : g_pattern[k];
			pl[k] = b ^ mk[k & 3];
		}
	}
}

/* Sends a masked control frame (pong or close) before the next batch. */
static void
conn_queue_ctl(struct conn *c, unsigned op, const uint8_t *data, size_t len)
{
	if (c->ctl_len != 0)
		return; /* one pending control frame is enough for a benchmark client */
	uint8_t *f = c->ctl;
	f[0] = 0x80 | (uint8_t)op;
	f[1] = 0x80 | (uint8_t)len;
	uint32_t m = (uint32_t)rng_next();
	memcpy(f + 2, &m, 4);
	for (size_t k = 0; k < len; k++)
		f[6 + k] = data[k] ^ f[2 + (k & 3)];
	c->ctl_len = 6 + len;
	c->ctl_off = 0;
}

static void
conn_handshake_done(struct conn *c, size_t hdr_end, size_t have, uint64_t now)
{
	char want[29], got[64];
	c->hs[have] = '\0';
	if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
		char *e = strstr(c->hs, "\r\n");
		if (e)
			*e = '\0';
		conn_error(c, "handshake refused: %s", c->hs);
		return;
	}
	ws_accept_for(c->key, want);
	if (!header_value(c->hs, "Sec-WebSocket-Accept", got, sizeof(got)) ||
	    strcmp(got, want) != 0) {
		conn_error(c, "bad Sec-WebSocket-Accept");
		return;
	}
	/* bytes after the header are already WebSocket frames */
	size_t extra = have - hdr_end;
	uint8_t tmp[HS_MAX];
	memcpy(tmp, c->hs + hdr_end, extra);
	free(c->hs);
	c->hs = NULL;
	c->state = CS_OPEN;
	c->hdr_need = 2;
	g_pending--;
	g_open++;
	if (opt.mode == MODE_ECHO)
		conn_build_frames(c);
	set_events(c, EPOLLIN);
	if (extra)
		conn_feed(c, tmp, extra, now);
	start_more_conns();
}

static void
conn_handshake_io(struct conn *c, uint32_t ev)
{
	if (c->state == CS_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err != 0) {
			conn_error(c, "connect: %s", strerror(err));
			return;
		}
		conn_send_request(c);
	}
	if (!c->req_sent) {
		ssize_t n = write(c->fd, c->hs + c->hs_off, c->hs_len - c->hs_off);
		if (n < 0 && errno != EAGAIN) {
			conn_error(c, "write request: %s", strerror(errno));
			return;
		}
		if (n > 0)
			c->hs_off += (size_t)n;
		if (c->hs_off < c->hs_len) {
			set_events(c, EPOLLOUT);
			return;
		}
		/* request sent: reuse the buffer for the response */
		c->req_sent = true;
		c->hs_len = 0;
		set_events(c, EPOLLIN);
		return;
	}
	if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t n = read(c->fd, c->hs + c->hs_len, HS_MAX - c->hs_len);
	if (n < 0) {
		if (errno == EAGAIN)
			return;
		conn_error(c, "read response: %s", strerror(errno));
		return;
	}
	if (n == 0) {
		conn_error(c, "server closed during handshake");
		return;
	}
	size_t old = c->hs_len;
	c->hs_len += (size_t)n;
	c->hs[c->hs_len] = '\0';
	size_t from = old >= 3 ? old - 3 : 0;
	char *e = strstr(c->hs + from, "\r\n\r\n");
	if (e != NULL) {
		conn_handshake_done(c, (size_t)(e + 4 - c->hs), c->hs_len, now_ns());
		return;
	}
	if (c->hs_len >= HS_MAX)
		conn_error(c, "handshake response too large");
}

/* ---- echo traffic ---- */

/* Writes what is pending; starts a new batch that fills the window when nothing is. */
static void
conn_flush(struct conn *c)
{
	for (;;) {
		if (c->out_off < c->out_len) {
			ssize_t n = write(c->fd, c->sendbuf + c->out_off, c->out_len - c->out_off);
			if (n < 0) {
				if (errno == EAGAIN)
					break;
				conn_error(c, "write: %s", strerror(errno));
				return;
			}
			c->out_off += (size_t)n;
			if (c->out_off < c->out_len)
				break;
			c->out_off = c->out_len = 0;
		}
		if (c->ctl_off < c->ctl_len) {
			ssize_t n = write(c->fd, c->ctl + c->ctl_off, c->ctl_len - c->ctl_off);
			if (n < 0) {
				if (errno == EAGAIN)
					break;
				conn_error(c, "write: %s", strerror(errno));
				return;
			}
			c->ctl_off += (size_t)n;
			if (c->ctl_off < c->ctl_len)
				break;
			c->ctl_off = c->ctl_len = 0;
		}
		if (!g_sending || c->state != CS_OPEN || c->inflight >= opt.window)
			break;
		unsigned k = opt.window - c->inflight;
		if (k > c->nframes)
			k = c->nframes;
		uint8_t ts[TS_LEN];
		ts_encode(ts, now_ns() - g_t0);
		for (unsigned i = 0; i < k; i++) {
			uint8_t *f = c->sendbuf + (size_t)i * c->frame_len;
			const uint8_t *mk = f + c->ts_off - 4;
			uint8_t *pl = f + c->ts_off;
			for (unsigned j = 0; j < TS_LEN && j < opt.size; j++)
				pl[j] = ts[j] ^ mk[j & 3];
		}
		c->inflight += k;
		c->out_off = 0;
		c->out_len = (size_t)k * c->frame_len;
	}
	uint32_t want =
	    EPOLLIN | ((c->out_off < c->out_len || c->ctl_off < c->ctl_len) ? EPOLLOUT : 0);
	set_events(c, want);
}

static void
message_done(struct conn *c, uint64_t now)
{
	if (opt.mode != MODE_ECHO) {
		conn_error(c, "unexpected data message in idle mode");
		return;
	}
	if (c->msg_op != (opt.text ? 1u : 2u)) {
		conn_error(c, "echo has opcode %u, sent %u", c->msg_op, opt.text ? 1u : 2u);
		return;
	}
	if (c->msg_off != opt.size) {
		conn_error(c, "echo has %" PRIu64 " bytes, sent %u", c->msg_off, opt.size);
		return;
	}
	if (c->inflight == 0) {
		conn_error(c, "echo received with nothing in flight");
		return;
	}
	c->inflight--;
	g_msgs_total++;
	if (g_measuring) {
		g_msgs++;
		g_bytes += opt.size;
		if (opt.size >= TS_LEN) {
			uint64_t ts;
			if (ts_decode(c->ts, &ts) == -1) {
				conn_error(c, "echo carries a corrupt timestamp");
				return;
			}
			uint64_t sent = g_t0 + ts;
			hist_add(&g_hist, now > sent ? now - sent : 0);
		}
	}
}

static void
control_done(struct conn *c)
{
	switch (c->frame_op) {
	case 9: /* ping: answer with a pong carrying the same payload */
		conn_queue_ctl(c, 10, c->ctl_payload, c->ctl_have);
		break;
	case 10: /* pong: nothing to do */
		break;
	case 8: { /* close */
		unsigned code = c->ctl_have >= 2
		                    ? (unsigned)(c->ctl_payload[0] << 8 | c->ctl_payload[1])
		                    : 1005;
		if (c->state == CS_CLOSING) {
			conn_close(c);
		} else {
			g_closed_by_peer++;
			conn_error(c, "server sent close %u", code);
		}
		break;
	}
	default:
		conn_error(c, "unknown opcode %u", c->frame_op);
	}
}

/* Streaming frame parser: consumes n bytes, keeping only the header, the first TS_LEN
 * payload bytes and control payloads; checks the rest of the payload against the pattern. */
static void
conn_feed(struct conn *c, const uint8_t *p, size_t n, uint64_t now)
{
	while (n > 0 && c->state != CS_DEAD) {
		if (!c->in_payload) {
			size_t take = c->hdr_need - c->hdr_have;
			if (take > n)
				take = n;
			memcpy(c->hdr + c->hdr_have, p, take);
			c->hdr_have += (unsigned)take;
			p += take;
			n -= take;
			if (c->hdr_have < c->hdr_need)
				return;
			if (c->hdr_need == 2) {
				if (c->hdr[1] & 0x80) {
					conn_error(c, "server frame is masked");
					return;
				}
				if (c->hdr[0] & 0x70) {
					conn_error(c, "RSV bits set: 0x%02x", c->hdr[0]);
					return;
				}
				unsigned l7 = c->hdr[1] & 0x7f;
				c->hdr_need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
				if (c->hdr_have < c->hdr_need)
					continue;
			}
			unsigned l7 = c->hdr[1] & 0x7f;
			uint64_t len = l7;
			if (l7 == 126) {
				len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
			} else if (l7 == 127) {
				len = 0;
				for (int k = 0; k < 8; k++)
					len = len << 8 | c->hdr[2 + k];
			}
			bool fin = c->hdr[0] & 0x80;
			unsigned op = c->hdr[0] & 0x0f;
			c->frame_op = op;
			c->frame_fin = fin;
			c->payload_left = len;
			c->hdr_have = 0;
			c->hdr_need = 2;
			if (op >= 8) {
				if (!fin || len > 125) {
					conn_error(c, "bad control frame");
					return;
				}
				c->ctl_have = 0;
			} else if (op == 0) {
				if (!c->in_message) {
					conn_error(c, "continuation without a message");
					return;
				}
			} else if (op == 1 || op == 2) {
				if (c->in_message) {
					conn_error(c, "new message inside a fragmented one");
					return;
				}
				c->in_message = true;
				c->msg_op = op;
				c->msg_off = 0;
			} else {
				conn_error(c, "reserved opcode %u", op);
				return;
			}
			c->in_payload = true;
			if (len == 0)
				goto frame_end;
			continue;
		}
		/* payload bytes */
		size_t take = c->payload_left < n ? (size_t)c->payload_left : n;
		if (c->frame_op >= 8) {
			memcpy(c->ctl_payload + c->ctl_have, p, take);
			c->ctl_have += (unsigned)take;
		} else {
			uint64_t off = c->msg_off;
			size_t i = 0;
			for (; i < take && off + i < TS_LEN; i++)
				c->ts[off + i] = p[i];
			if (i < take) {
				uint64_t o = off + i;
				if (o + (take - i) > opt.size ||
				    memcmp(p + i, g_pattern + o, take - i) != 0) {
					conn_error(c, "echo payload differs from what was sent");
					return;
				}
			}
			c->msg_off += take;
		}
		c->payload_left -= take;
		p += take;
		n -= take;
		if (c->payload_left > 0)
			return;
	frame_end:
		c->in_payload = false;
		if (c->frame_op >= 8) {
			control_done(c);
		} else if (c->frame_fin) {
			c->in_message = false;
			message_done(c, now);
		}
	}
}

static void
conn_read(struct conn *c)
{
	ssize_t n = read(c->fd, g_rbuf, sizeof(g_rbuf));
	if (n < 0) {
		if (errno == EAGAIN)
			return;
		if (c->state == CS_CLOSING) {
			conn_close(c);
			return;
		}
		conn_error(c, "read: %s", strerror(errno));
		return;
	}
	if (n == 0) {
		if (c->state == CS_CLOSING) {
			conn_close(c);
			return;
		}
		g_closed_by_peer++;
		conn_error(c, "server closed the connection");
		return;
	}
	conn_feed(c, g_rbuf, (size_t)n, now_ns());
}

static void
on_event(struct conn *c, uint32_t ev)
{
	if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) {
		conn_handshake_io(c, ev);
		if (c->state == CS_OPEN)
			conn_flush(c); /* a pong for a ping that came with the 101 */
		return;
	}
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
		conn_read(c);
	if (c->state == CS_OPEN || c->state == CS_CLOSING)
		conn_flush(c);
}

/* Runs the loop until deadline (ns) or until done() says so. */
static void
loop_until(uint64_t deadline, bool (*done)(void))
{
	struct epoll_event evs[512];
	while (!g_stop) {
		if (done != NULL && done())
			return;
		uint64_t now = now_ns();
		if (now >= deadline)
			return;
		uint64_t left_ms = (deadline - now) / 1000000 + 1;
		int n = epoll_wait(g_ep, evs, 512, left_ms > 100 ? 100 : (int)left_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			exit(2);
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->state != CS_DEAD)
				on_event(c, evs[i].events);
		}
	}
}

static bool
all_settled(void)
{
	return g_next_conn == opt.conns && g_pending == 0;
}

static bool
none_inflight(void)
{
	for (unsigned i = 0; i < opt.conns; i++)
		if (g_conns[i].state == CS_OPEN && g_conns[i].inflight > 0)
			return false;
	return true;
}

static bool
all_dead(void)
{
	return g_dead == opt.conns;
}

/* CPU time (ns) every thread of pid ran and waited runnable (/proc/PID/task/N/schedstat). */
static bool
proc_sched(long pid, uint64_t *run, uint64_t *wait)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	DIR *d = opendir(path);
	if (d == NULL)
		return false;
	*run = *wait = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char p2[128];
		snprintf(p2, sizeof(p2), "/proc/%ld/task/%.20s/schedstat", pid, de->d_name);
		FILE *f = fopen(p2, "r");
		if (f == NULL)
			continue;
		unsigned long long r, w;
		if (fscanf(f, "%llu %llu", &r, &w) == 2) {
			*run += r;
			*wait += w;
		}
		fclose(f);
	}
	closedir(d);
	return true;
}

static uint64_t
self_cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

static void
on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: wsbench [-m echo|idle] [-h host] [-p port] [-P path] [-c conns] [-s size]\n"
	        "               [-w window] [-d seconds] [-W warmup_seconds] [-t text|binary]\n"
	        "               [-C max_concurrent_handshakes] [-S server_pid]\n"
	        "  echo: every connection keeps -w messages of -s bytes in flight for -d seconds\n"
	        "        after -W seconds of warmup; prints msgs/s, MB/s, latency percentiles\n"
	        "  idle: opens -c connections, prints \"READY n\", holds them -d seconds\n"
	        "  -S: report the CPU the server process used during the measured interval\n");
	exit(2);
}

static void
raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && opt.conns + 16 > rl.rlim_cur) {
		fprintf(stderr, "wsbench: %u connections need more than the open-file limit %llu\n",
		        opt.conns, (unsigned long long)rl.rlim_cur);
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "m:h:p:P:c:s:w:d:W:t:C:S:")) != -1) {
		switch (ch) {
		case 'm':
			if (strcmp(optarg, "echo") == 0)
				opt.mode = MODE_ECHO;
			else if (strcmp(optarg, "idle") == 0)
				opt.mode = MODE_IDLE;
			else
				usage();
			break;
		case 'h':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = optarg;
			break;
		case 'P':
			opt.path = optarg;
			break;
		case 'c':
			opt.conns = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			opt.size = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'w':
			opt.window = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'd':
			opt.duration = strtod(optarg, NULL);
			break;
		case 'W':
			opt.warmup = strtod(optarg, NULL);
			break;
		case 'S':
			opt.server_pid = strtol(optarg, NULL, 10);
			break;
		case 'C':
			opt.max_pending = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 't':
			if (strcmp(optarg, "text") == 0)
				opt.text = true;
			else if (strcmp(optarg, "binary") == 0)
				opt.text = false;
			else
				usage();
			break;
		default:
			usage();
		}
	}
	if (opt.conns == 0 || opt.window == 0 || opt.duration <= 0 || opt.warmup < 0 ||
	    opt.max_pending == 0)
		usage();
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (getrandom(&g_rng, sizeof(g_rng), 0) != sizeof(g_rng) || g_rng == 0)
		g_rng = 0x9e3779b97f4a7c15ull;

	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	int gai = getaddrinfo(opt.host, opt.port, &hints, &g_addr);
	if (gai != 0) {
		fprintf(stderr, "wsbench: %s:%s: %s\n", opt.host, opt.port, gai_strerror(gai));
		return 2;
	}
	g_pattern = malloc(opt.size + 1);
	for (unsigned i = 0; i < opt.size; i++)
		g_pattern[i] = (uint8_t)('a' + i % 26); /* ASCII: valid UTF-8 for text frames */
	g_conns = calloc(opt.conns, sizeof(*g_conns));
	g_ep = epoll_create1(EPOLL_CLOEXEC);
	if (g_pattern == NULL || g_conns == NULL || g_ep == -1) {
		perror("wsbench: setup");
		return 2;
	}

	/* 1. open every connection (at most -C handshakes at a time) */
	uint64_t t_conn = now_ns();
	start_more_conns();
	loop_until(t_conn + 30ull * 1000000000u, all_settled);
	double conn_secs = (double)(now_ns() - t_conn) / 1e9;
	if (g_open != opt.conns) {
		fprintf(stderr, "wsbench: only %u of %u connections opened (%" PRIu64 " errors)\n",
		        g_open, opt.conns, g_errors);
		return 1;
	}
	fprintf(stderr, "wsbench: %u connections open in %.2f s\n", g_open, conn_secs);

	if (opt.mode == MODE_IDLE) {
		printf("READY %u\n", g_open);
		fflush(stdout);
		loop_until(now_ns() + (uint64_t)(opt.duration * 1e9), NULL);
		printf("idle: %u connections held %.1f s, %u still open, errors %" PRIu64 "\n",
		       opt.conns, opt.duration, g_open, g_errors);
		printf("RESULT mode=idle conns=%u open=%u errors=%" PRIu64 "\n", opt.conns, g_open,
		       g_errors);
		return g_errors != 0 || g_open != opt.conns;
	}

	/* 2. warmup, then measure */
	g_t0 = now_ns();
	g_sending = true;
	for (unsigned i = 0; i < opt.conns; i++)
		conn_flush(&g_conns[i]);
	loop_until(g_t0 + (uint64_t)(opt.warmup * 1e9), NULL);
	uint64_t srv_run0 = 0, srv_wait0 = 0, srv_run1 = 0, srv_wait1 = 0;
	bool srv_ok = opt.server_pid > 0 && proc_sched(opt.server_pid, &srv_run0, &srv_wait0);
	uint64_t gen0 = self_cpu_ns();
	uint64_t t_start = now_ns();
	g_measuring = true;
	loop_until(t_start + (uint64_t)(opt.duration * 1e9), NULL);
	g_measuring = false;
	uint64_t t_end = now_ns();
	uint64_t gen1 = self_cpu_ns();
	srv_ok = srv_ok && proc_sched(opt.server_pid, &srv_run1, &srv_wait1);

	/* 3. drain echoes still in flight, close cleanly */
	g_sending = false;
	loop_until(now_ns() + 2000000000ull, none_inflight);
	unsigned stuck = 0;
	for (unsigned i = 0; i < opt.conns; i++) {
		struct conn *c = &g_conns[i];
		if (c->state != CS_OPEN)
			continue;
		if (c->inflight > 0)
			stuck++;
		static const uint8_t bye[2] = {0x03, 0xe8}; /* 1000 */
		conn_queue_ctl(c, 8, bye, 2);
		c->state = CS_CLOSING;
		conn_flush(c);
	}
	loop_until(now_ns() + 1000000000ull, all_dead);
	if (stuck)
		fprintf(stderr, "wsbench: %u connections still had echoes in flight after 2 s\n",
		        stuck);

	double secs = (double)(t_end - t_start) / 1e9;
	double rate = (double)g_msgs / secs;
	double mbs = (double)g_bytes / secs / 1e6;
	printf("target     ws://%s:%s%s  mode=echo conns=%u window=%u size=%u type=%s\n", opt.host,
	       opt.port, opt.path, opt.conns, opt.window, opt.size, opt.text ? "text" : "binary");
	printf("time       warmup %.1f s, measured %.2f s\n", opt.warmup, secs);
	printf("throughput %.0f msg/s  %.2f MB/s  (%" PRIu64 " echoes)\n", rate, mbs, g_msgs);
	if (opt.size >= TS_LEN)
		printf("latency us p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
		       hist_pct(&g_hist, 50) / 1e3, hist_pct(&g_hist, 90) / 1e3,
		       hist_pct(&g_hist, 99) / 1e3, hist_pct(&g_hist, 99.9) / 1e3,
		       (double)g_hist.max / 1e3);
	double span = (double)(t_end - t_start);
	double gen_pct = 100.0 * (double)(gen1 - gen0) / span;
	double srv_pct = -1, srv_wait_pct = -1, srv_ns_msg = -1;
	if (srv_ok) {
		srv_pct = 100.0 * (double)(srv_run1 - srv_run0) / span;
		srv_wait_pct = 100.0 * (double)(srv_wait1 - srv_wait0) / span;
		srv_ns_msg = g_msgs ? (double)(srv_run1 - srv_run0) / (double)g_msgs : 0;
		printf("server     cpu %.0f%% of one core, runnable-but-waiting %.0f%%, %.0f ns "
		       "cpu/msg\n",
		       srv_pct, srv_wait_pct, srv_ns_msg);
	}
	printf("generator  cpu %.0f%% of one core%s\n", gen_pct,
	       gen_pct > 90 ? "  (WARNING: the generator may be the bottleneck)" : "");
	printf("errors     %" PRIu64 " (closed by server %" PRIu64 ")\n", g_errors,
	       g_closed_by_peer);
	printf("RESULT mode=echo conns=%u window=%u size=%u msgs=%" PRIu64 " secs=%.3f "
	       "msgs_per_s=%.0f mb_per_s=%.2f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
	       "p999_us=%.1f max_us=%.1f srv_cpu_pct=%.1f srv_wait_pct=%.1f srv_ns_per_msg=%.0f "
	       "gen_cpu_pct=%.1f errors=%" PRIu64 "\n",
	       opt.conns, opt.window, opt.size, g_msgs, secs, rate, mbs,
	       hist_pct(&g_hist, 50) / 1e3, hist_pct(&g_hist, 90) / 1e3,
	       hist_pct(&g_hist, 99) / 1e3, hist_pct(&g_hist, 99.9) / 1e3, (double)g_hist.max / 1e3,
	       srv_pct, srv_wait_pct, srv_ns_msg, gen_pct, g_errors);
	freeaddrinfo(g_addr);
	if (g_errors != 0 || g_msgs == 0)
		return 1;
	return 0;
}
