/*
 * common.c - assertion failure and aborting allocators.
 */
#include "base/common.h"

#include <stdio.h>
#include <stdlib.h>

void cfx_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "assertion failed: %s (%s:%d)\n", expr, file, line);
	fflush(stderr);
	abort();
}

static CFX_NORETURN void oom(size_t size)
{
	fprintf(stderr, "out of memory allocating %zu bytes\n", size);
	fflush(stderr);
	abort();
}

void *cfx_malloc(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (CFX_UNLIKELY(!p))
		oom(size);
	return p;
}

void *cfx_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (CFX_UNLIKELY(!p))
		oom(n * size);
	return p;
}

void *cfx_realloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);
	if (CFX_UNLIKELY(!q))
		oom(size);
	return q;
}

char *cfx_strdup(const char *s)
{
	return cfx_strndup(s, strlen(s));
}

char *cfx_strndup(const char *s, size_t n)
{
	char *d = cfx_malloc(n + 1);
	if (n)
		memcpy(d, s, n); /* s may be NULL when n is 0 (an empty view) */
	d[n] = '\0';
	return d;
}

void cfx_free(void *p)
{
	free(p);
}
