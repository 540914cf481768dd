/*
 * log.c - formatting and writing log lines; per-site rate limiting.
 */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

int cfx_log_level_cur = CFX_LOG_INFO;
unsigned cfx_log_debug_mask = ~0u;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void cfx_log_set_level(int level)
{
	if (level < CFX_LOG_ERROR)
		level = CFX_LOG_ERROR;
	if (level > CFX_LOG_DEBUG)
		level = CFX_LOG_DEBUG;
	cfx_log_level_cur = level;
}

int cfx_log_level_parse(const char *name)
{
	for (int i = 0; i < (int)CFX_ARRAY_LEN(level_names); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	if (strcasecmp(name, "warning") == 0)
		return CFX_LOG_WARN;
	return -1;
}

void cfx_log_write(int level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof line - n, ".%03ldZ %s ", ts.tv_nsec / 1000000L,
		     level_names[level < 0 ? 0 : level > 3 ? 3 : level]);
	if (r > 0)
		n += (size_t)r;
	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof line - n, fmt, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t)r;
	if (n >= sizeof line - 1) {
		n = sizeof line - 5;
		memcpy(line + n, "...", 3);
		n += 3;
	}
	line[n++] = '\n';
	/* One write per line keeps lines of concurrent threads whole. */
	ssize_t w = write(STDERR_FILENO, line, n);
	CFX_UNUSED(w);
}

int cfx_log_ratelimit_allow(struct cfx_log_ratelimit *rl)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	int64_t now = cfx_clock_mono_ms();
	uint32_t dropped = 0;
	int allow;

	pthread_mutex_lock(&mu);
	if (now - rl->window_start_ms >= rl->interval_ms) {
		dropped = rl->suppressed;
		rl->window_start_ms = now;
		rl->count = 0;
		rl->suppressed = 0;
	}
	allow = rl->count < rl->burst;
	if (allow)
		rl->count++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&mu);
	if (dropped)
		cfx_log_write(CFX_LOG_WARN, "(%u similar messages suppressed)", dropped);
	return allow;
}
