/* service.c - the service manager's two protocols: readiness notifications to NOTIFY_SOCKET and
 * sockets inherited through LISTEN_FDS. With libsystemd (HAVE_SYSTEMD) its sd_notify and
 * sd_listen_fds speak them; without it the few lines below do, as sd_notify(3) documents. */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "config.h"
#include "log.h"

#define SERVICE_FDS_START 3 /* SD_LISTEN_FDS_START */
#define SERVICE_MAX_FDS 64  /* more listen lines than anyone writes */

struct service_fd {
	int fd;
	int claimed;                  /* a listen line uses it */
	struct sockaddr_storage addr; /* where it is bound (getsockname) */
	socklen_t addrlen;
};

/* Written once by service_listen_fds_take before the workers start; read-only afterwards. */
static struct service_fd service_fds[SERVICE_MAX_FDS];
static int service_nfds;

/* The passed fds, or -1 when none are for us (by hand: sd_listen_fds(3)'s checks). */
static int
service_listen_fds_env(void)
{
#ifdef HAVE_SYSTEMD
	int n = sd_listen_fds(1);

	if (n < 0)
		log_warnx("LISTEN_FDS: %s", strerror(-n));
	return n;
#else
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	char *end;
	long p, n;
	int r = 0;

	if (pid == NULL || fds == NULL)
		goto out;
	errno = 0;
	p = strtol(pid, &end, 10);
	if (errno != 0 || *end != '\0' || p != (long)getpid())
		goto out; /* meant for another process (our parent's) */
	n = strtol(fds, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0 || n > 4096) {
		log_warnx("LISTEN_FDS=%s: not a count of descriptors", fds);
		r = -1;
		goto out;
	}
	for (long i = 0; i < n; i++)
		(void)fcntl(SERVICE_FDS_START + (int)i, F_SETFD, FD_CLOEXEC);
	r = (int)n;
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return r;
#endif
}

/* 1 when sf->fd is a listening TCP socket (its address kept in sf), else 0 (logged). */
static int
service_fd_probe(struct service_fd *sf)
{
	int type = 0, listening = 0;
	socklen_t tlen = sizeof(type), llen = sizeof(listening);

	sf->addrlen = sizeof(sf->addr);
	if (getsockopt(sf->fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 ||
	    getsockopt(sf->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen) < 0 ||
	    getsockname(sf->fd, (struct sockaddr *)&sf->addr, &sf->addrlen) < 0) {
		log_warn("LISTEN_FDS: descriptor %d", sf->fd);
		return 0;
	}
	if (type != SOCK_STREAM || !listening ||
	    (sf->addr.ss_family != AF_INET && sf->addr.ss_family != AF_INET6)) {
		log_warnx("LISTEN_FDS: descriptor %d is not a listening TCP socket; ignored",
		          sf->fd);
		return 0;
	}
	return 1;
}

int
service_listen_fds_take(void)
{
	int n = service_listen_fds_env();

	for (int i = 0; i < n; i++) {
		int fd = SERVICE_FDS_START + i;
		struct service_fd *sf;

		if (service_nfds == SERVICE_MAX_FDS) {
			log_warnx("LISTEN_FDS: descriptor %d beyond the %d used; closed", fd,
			          SERVICE_MAX_FDS);
			close(fd);
			continue;
		}
		sf = &service_fds[service_nfds];
		sf->fd = fd;
		if (service_fd_probe(sf))
			service_nfds++;
		else
			close(fd);
	}
	return service_nfds;
}

static int
service_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return 0;
}

int
service_listen_fd_match(const struct config_listen *cl)
{
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1;

	if (service_nfds == 0)
		return -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if (getaddrinfo(cl->host, cl->port, &hints, &res) != 0)
		return -1; /* listener_new resolves again and says why */
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
		for (int i = 0; i < service_nfds; i++)
			if (service_addr_equal(ai->ai_addr,
			                       (const struct sockaddr *)&service_fds[i].addr)) {
				service_fds[i].claimed = 1;
				fd = service_fds[i].fd;
				break;
			}
	freeaddrinfo(res);
	return fd;
}

void
service_listen_fds_unclaimed(void)
{
	for (int i = 0; i < service_nfds; i++) {
		struct service_fd *sf = &service_fds[i];
		char host[NI_MAXHOST], port[NI_MAXSERV];

		if (sf->claimed || sf->fd < 0)
			continue;
		if (getnameinfo((const struct sockaddr *)&sf->addr, sf->addrlen, host, sizeof(host),
		                port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
			snprintf(host, sizeof(host), "?"), snprintf(port, sizeof(port), "?");
		log_warnx("LISTEN_FDS: socket %s port %s matches no listen line; closed", host,
		          port);
		close(sf->fd);
		sf->fd = -1;
	}
}

void
service_listen_fds_close(void)
{
	for (int i = 0; i < service_nfds; i++)
		if (service_fds[i].fd >= 0)
			close(service_fds[i].fd);
	service_nfds = 0;
}

/* One datagram to NOTIFY_SOCKET; failures only matter to the manager, which times out. */
static void
service_notify(const char *msg)
{
#ifdef HAVE_SYSTEMD
	int r = sd_notify(0, msg);

	if (r < 0)
		log_warnx("sd_notify: %s", strerror(-r));
#else
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	size_t plen;
	int fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (plen = strlen(path)) >= sizeof(sun.sun_path))
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, plen);
	if (path[0] == '@')
		sun.sun_path[0] = '\0'; /* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
		log_warn("NOTIFY_SOCKET: socket");
		return;
	}
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
		log_warn("NOTIFY_SOCKET %s", path);
	close(fd);
#endif
}

void
service_notify_ready(const char *status)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	service_notify(msg);
}

void
service_notify_reloading(void)
{
	struct timespec ts;
	char msg[96];

	/* MONOTONIC_USEC: what systemd >= 253's Type=notify-reload checks; older ones ignore it. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	             (unsigned long long)ts.tv_nsec / 1000);
	service_notify(msg);
}

void
service_notify_stopping(void)
{
	service_notify("STOPPING=1\nSTATUS=draining");
}

void
service_notify_status(const char *status)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "STATUS=%s", status);
	service_notify(msg);
}
