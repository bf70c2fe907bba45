/* tls_idle_client.c - opens N WebSocket connections over TLS (or plain TCP with -x), completes
 * each upgrade, prints "READY ok=N failed=F" and holds them idle for -d seconds: the load side of
 * bench/run-tls-idle-memory.sh, run as a separate process from the server it measures.
 *   tls_idle_client -p PORT [-H 127.0.0.1] [-n 10000] [-c 200] [-d 8] [-P /echo] [-s SNI] [-x]
 * Built by the script: cc -O2 tls_idle_client.c $(pkg-config --cflags --libs libevent_openssl) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

struct client {
	struct bufferevent *bev;
	int upgraded;
};

static struct event_base *base;
static SSL_CTX *ctx;
static struct sockaddr_in addr;
static const char *path = "/echo", *sni;
static char host[64] = "127.0.0.1";
static int plain, total = 10000, concurrency = 200, hold = 8;
static int started, ok, failed, inflight, reported;
static long pings; /* answered */
static struct client *clients;
static struct timespec t0;

static void start_more(void);

static double
elapsed(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
}

static void
hold_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(base);
}

static void
maybe_report(void)
{
	static struct event *timer;
	struct timeval tv = {hold, 0};

	if (reported || ok + failed < total)
		return;
	reported = 1;
	printf("READY ok=%d failed=%d seconds=%.2f\n", ok, failed, elapsed());
	fflush(stdout);
	timer = evtimer_new(base, hold_done, NULL);
	evtimer_add(timer, &tv);
}

static void
client_fail(struct client *c, const char *why)
{
	static int logged;

	if (logged++ < 5)
		fprintf(stderr, "tls_idle_client: connection %ld: %s\n", (long)(c - clients), why);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
	if (!c->upgraded) {
		failed++;
		inflight--;
		start_more();
	}
	maybe_report();
}

/* Idle: the server's heartbeat pings are answered (a masked pong with a zero key, so the
 * payload goes back as it came); anything else is dropped. */
static void
answer_pings(struct bufferevent *bev, struct evbuffer *in)
{
	uint8_t h[14], pong[2 + 4 + 125];
	size_t have, hl, len;

	while ((have = evbuffer_get_length(in)) >= 2) {
		evbuffer_copyout(in, h, have < sizeof(h) ? have : sizeof(h));
		len = h[1] & 0x7f;
		hl = 2;
		if (len == 126) {
			if (have < 4)
				return;
			len = (size_t)h[2] << 8 | h[3];
			hl = 4;
		} else if (len == 127) {
			if (have < 10)
				return;
			len = 0;
			for (int k = 0; k < 8; k++)
				len = len << 8 | h[2 + k];
			hl = 10;
		}
		if (have < hl + len)
			return;
		if ((h[0] & 0x0f) == 0x9 && len <= 125) {
			pong[0] = 0x8a;
			pong[1] = (uint8_t)(0x80 | len);
			memset(pong + 2, 0, 4);
			evbuffer_drain(in, hl);
			evbuffer_remove(in, pong + 6, len);
			bufferevent_write(bev, pong, 6 + len);
			pings++;
			continue;
		}
		evbuffer_drain(in, hl + len);
	}
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr end;
	char head[16];

	if (c->upgraded) {
		answer_pings(bev, in);
		return;
	}
	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos < 0)
		return;
	if (evbuffer_copyout(in, head, 12) != 12 || memcmp(head, "HTTP/1.1 101", 12) != 0) {
		client_fail(c, "upgrade refused");
		return;
	}
	evbuffer_drain(in, (size_t)end.pos + 4);
	c->upgraded = 1;
	ok++;
	inflight--;
	start_more();
	maybe_report();
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;
	char req[512];
	int n;

	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;

		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		n = snprintf(
		    req, sizeof(req),
		    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
		    "13\r\n\r\n",
		    path, sni != NULL ? sni : host);
		bufferevent_write(bev, req, (size_t)n);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		unsigned long e = plain ? 0 : bufferevent_get_openssl_error(bev);
		char buf[256];

		if (e != 0)
			ERR_error_string_n(e, buf, sizeof(buf));
		else
			snprintf(buf, sizeof(buf), "%s",
			         (what & BEV_EVENT_EOF)
			             ? "EOF"
			             : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		if (c->upgraded) {
			/* closed by the server while idle */
			bufferevent_free(c->bev);
			c->bev = NULL;
			c->upgraded = 0;
			ok--;
			failed++;
			fprintf(stderr, "tls_idle_client: an idle connection was closed: %s\n",
			        buf);
			return;
		}
		client_fail(c, buf);
	}
}

static void
start_one(struct client *c)
{
	SSL *ssl;

	if (plain) {
		c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	} else {
		if ((ssl = SSL_new(ctx)) == NULL) {
			client_fail(c, "SSL_new");
			return;
		}
		if (sni != NULL)
			SSL_set_tlsext_host_name(ssl, sni);
		c->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
		                                        BEV_OPT_CLOSE_ON_FREE);
		if (c->bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	}
	if (c->bev == NULL) {
		client_fail(c, "bufferevent");
		return;
	}
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		client_fail(c, "connect");
}

static void
start_more(void)
{
	while (inflight < concurrency && started < total) {
		inflight++;
		start_one(&clients[started++]);
	}
}

int
main(int argc, char **argv)
{
	int ch, port = 0;

	while ((ch = getopt(argc, argv, "p:H:n:c:d:P:s:x")) != -1) {
		switch (ch) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'H':
			snprintf(host, sizeof(host), "%s", optarg);
			break;
		case 'n':
			total = atoi(optarg);
			break;
		case 'c':
			concurrency = atoi(optarg);
			break;
		case 'd':
			hold = atoi(optarg);
			break;
		case 'P':
			path = optarg;
			break;
		case 's':
			sni = optarg;
			break;
		case 'x':
			plain = 1;
			break;
		default:
			fprintf(stderr,
			        "usage: %s -p PORT [-H host] [-n N] [-c concurrent] [-d hold_s] "
			        "[-P path] [-s sni] [-x (plain)]\n",
			        argv[0]);
			return 2;
		}
	}
	if (port <= 0 || total <= 0 || concurrency <= 0) {
		fprintf(stderr, "%s: -p PORT required; -n and -c positive\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		fprintf(stderr, "%s: -H takes an IPv4 address\n", argv[0]);
		return 2;
	}
	if ((clients = calloc((size_t)total, sizeof(*clients))) == NULL ||
	    (base = event_base_new()) == NULL)
		return 1;
	if (!plain) {
		/* Load, not trust: the server's certificate is not verified. */
		ctx = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	start_more();
	event_base_dispatch(base);
	printf("DONE ok=%d failed=%d pongs=%ld\n", ok, failed, pings);
	for (int i = 0; i < total; i++)
		if (clients[i].bev != NULL)
			bufferevent_free(clients[i].bev);
	event_base_free(base);
	SSL_CTX_free(ctx);
	free(clients);
	return failed > 0 ? 1 : 0;
}
