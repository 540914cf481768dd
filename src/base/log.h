/*
 * log.h - leveled logging to stderr with optional rate limiting.
 *
 * Lines look like `2026-11-24T15:48:20.123Z INFO store: recovered ...`.
 * Logging is thread-safe (one write(2) per line) and never blocks on
 * anything but stderr itself. Debug output is split into categories
 * (a bitmask) so one subsystem can be traced without drowning in others.
 */
#ifndef CFX_BASE_LOG_H
#define CFX_BASE_LOG_H

#include "base/common.h"

enum cfx_log_level {
	CFX_LOG_ERROR = 0,
	CFX_LOG_WARN = 1,
	CFX_LOG_INFO = 2,
	CFX_LOG_DEBUG = 3,
};

/* Debug categories (bitmask for log.debug). */
enum cfx_log_cat {
	CFX_LOGC_STORE = 1u << 0,
	CFX_LOGC_NET = 1u << 1,
	CFX_LOGC_PROTO = 1u << 2,
	CFX_LOGC_BROKER = 1u << 3,
};

/* Current threshold; messages above it are dropped cheaply. */
extern int cfx_log_level_cur;
extern unsigned cfx_log_debug_mask;

void cfx_log_set_level(int level);

/* Parses "error|warn|info|debug"; returns -1 if unknown. */
int cfx_log_level_parse(const char *name);

void cfx_log_write(int level, const char *fmt, ...) CFX_PRINTF(2, 3);

#define cfx_log(level, ...) \
	do { \
		if ((level) <= cfx_log_level_cur) \
			cfx_log_write((level), __VA_ARGS__); \
	} while (0)

#define cfx_log_error(...) cfx_log(CFX_LOG_ERROR, __VA_ARGS__)
#define cfx_log_warn(...) cfx_log(CFX_LOG_WARN, __VA_ARGS__)
#define cfx_log_info(...) cfx_log(CFX_LOG_INFO, __VA_ARGS__)
#define cfx_log_debug(cat, ...) \
	do { \
		if (cfx_log_level_cur >= CFX_LOG_DEBUG && (cfx_log_debug_mask & (cat))) \
			cfx_log_write(CFX_LOG_DEBUG, __VA_ARGS__); \
	} while (0)

/*
 * A rate limiter for one call site: at most `burst` lines per `interval_ms`;
 * the first line after a suppressed run says how many were dropped.
 */
struct cfx_log_ratelimit {
	int64_t window_start_ms;
	uint32_t count;
	uint32_t suppressed;
	uint32_t burst;
	uint32_t interval_ms;
};

#define CFX_LOG_RATELIMIT_INIT(burst_, interval_ms_) \
	{ .burst = (burst_), .interval_ms = (interval_ms_) }

/* Returns 1 if the caller may log now (and logs a suppression summary first). */
int cfx_log_ratelimit_allow(struct cfx_log_ratelimit *rl);

#define cfx_log_ratelimited(level, ...) \
	do { \
		static struct cfx_log_ratelimit rl_ = CFX_LOG_RATELIMIT_INIT(10, 1000); \
		if ((level) <= cfx_log_level_cur && cfx_log_ratelimit_allow(&rl_)) \
			cfx_log_write((level), __VA_ARGS__); \
	} while (0)

#endif
