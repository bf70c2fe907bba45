/* upstream_tls.c - TLS towards wss:// backends: one verifying client SSL_CTX per route and
 * client bufferevents with SNI and host (or IP) verification. Nothing else in the proxy touches
 * OpenSSL objects. */
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "upstream.h"

SSL_CTX *
upstream_tls_ctx_new(const char *ca_file, char *err, size_t errsz)
{
	SSL_CTX *ctx;
	unsigned long e;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errsz, "SSL_CTX_new failed");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Verification is never optional: a backend is reached over networks we do not own. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* Idle sessions keep no 34 KiB read/write buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (ca_file != NULL && ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			e = ERR_peek_last_error();
			snprintf(err, errsz, "cannot load ca_file %s: %s", ca_file,
			         e ? ERR_reason_error_string(e) : "unknown error");
			ERR_clear_error();
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errsz, "cannot load the system CA store");
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void
upstream_tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

static int
upstream_tls_is_ip(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

struct bufferevent *
upstream_tls_bev_new(struct event_base *base, SSL_CTX *ctx, const char *host)
{
	struct bufferevent *bev;
	SSL *ssl;

	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	if (upstream_tls_is_ip(host)) {
		/* RFC 6066 3: no SNI for an address; the certificate must name the IP. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
			goto fail;
	} else if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) {
		goto fail;
	}
	/* The bufferevent owns ssl from here (BEV_OPT_CLOSE_ON_FREE frees it with the socket). */
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL; /* libevent freed ssl on failure */
	/* A backend that drops TCP without close_notify is EOF, not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
fail:
	ERR_clear_error();
	SSL_free(ssl);
	return NULL;
}

int
upstream_tls_error(struct bufferevent *bev, char *out, size_t outsz)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e = bufferevent_get_openssl_error(bev);
	long vr;
	char buf[256];
	int found = 1;

	if (ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(out, outsz, "TLS: certificate verify failed: %s",
		         X509_verify_cert_error_string(vr));
	} else if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(out, outsz, "TLS: %s", buf);
	} else {
		found = 0;
	}
	/* Later errors must not be reported against another connection. */
	while (bufferevent_get_openssl_error(bev) != 0)
		;
	ERR_clear_error();
	return found;
}
