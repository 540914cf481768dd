/*
 * conf.h - declarative settings.
 *
 * A program describes its settings once, in a table of cfx_conf_def rows
 * (name, type, default, range, help). The same table drives parsing of the
 * key = value config file, command-line overrides, `--help`, and the
 * generated docs/configuration.md, so they can never disagree.
 *
 * Values are stored into a caller-defined struct at each row's offset:
 * int64_t for INT, SIZE (bytes) and DURATION (milliseconds); int for BOOL
 * and ENUM (index into enum_names); char * for STRING (owned, freed by
 * cfx_conf_free).
 */
#ifndef CFX_BASE_CONF_H
#define CFX_BASE_CONF_H

#include <stdio.h>

#include "base/common.h"

enum cfx_conf_type {
	CFX_CONF_BOOL,
	CFX_CONF_INT,
	CFX_CONF_SIZE,	   /* bytes; accepts 512, 64KiB, 1MiB, 1GiB, 1TiB, 1KB, 1MB ... */
	CFX_CONF_DURATION, /* milliseconds; accepts 250ms, 5s, 10m, 3h, 3d; bare = ms */
	CFX_CONF_STRING,
	CFX_CONF_ENUM,
};

#define CFX_CONF_RELOADABLE 0x1u /* may change without restart */

struct cfx_conf_def {
	const char *name;		 /* "store.segment_bytes" */
	const char *cli;		 /* extra command-line spelling ("data-dir") or NULL */
	enum cfx_conf_type type;
	size_t offset;			 /* where the value lives in the settings struct */
	const char *def;		 /* default, in the same syntax as the file */
	int64_t min, max;		 /* inclusive range for numeric types (0,0 = none) */
	const char *const *enum_names;	 /* NULL-terminated, for ENUM */
	unsigned flags;
	const char *help;
};

/* Applies every default; returns 0 or CFX_EINVAL if a default is invalid. */
int cfx_conf_defaults(const struct cfx_conf_def *defs, size_t n, void *obj);

/*
 * Sets one setting by name (or its cli spelling; '-' and '_' are the same).
 * Returns 0, CFX_ENOENT for an unknown name, CFX_EINVAL/CFX_ERANGE for a bad
 * value; `err` (may be NULL) receives a message naming the setting.
 */
int cfx_conf_set(const struct cfx_conf_def *defs, size_t n, void *obj, const char *name,
		 const char *value, char *err, size_t err_len);

/* Loads a key = value file ('#' comments, optional double quotes). */
int cfx_conf_load_file(const struct cfx_conf_def *defs, size_t n, void *obj, const char *path,
		       char *err, size_t err_len);

/* Finds a row by name or cli spelling; NULL if none. */
const struct cfx_conf_def *cfx_conf_find(const struct cfx_conf_def *defs, size_t n,
					 const char *name);

/* Writes the current value of `def` in file syntax into buf. */
void cfx_conf_format(const struct cfx_conf_def *def, const void *obj, char *buf, size_t len);

void cfx_conf_print_help(const struct cfx_conf_def *defs, size_t n, FILE *out);
void cfx_conf_print_markdown(const struct cfx_conf_def *defs, size_t n, FILE *out);

/* Frees owned STRING values. */
void cfx_conf_free(const struct cfx_conf_def *defs, size_t n, void *obj);

/* Unit parsers, also used by the CLI. Return 0 or CFX_EINVAL/CFX_ERANGE. */
int cfx_parse_size(const char *s, int64_t *out);
int cfx_parse_duration_ms(const char *s, int64_t *out);
int cfx_parse_int(const char *s, int64_t *out);
int cfx_parse_bool(const char *s, int *out);

#endif
