/*
 * replay_main.c - runs a fuzz target's LLVMFuzzerTestOneInput on inputs
 * from files, without libFuzzer, so that the committed corpora are replayed
 * by every build (gcc, Release, ASan+UBSan) under ctest.
 *
 *   fuzz_entry_replay tests/fuzz/corpus/fuzz_entry [more dirs or files...]
 *
 * Directories are read one level deep, in name order, skipping dot files.
 * Each input is passed in a buffer of exactly its size, as libFuzzer does,
 * so ASan catches a read one byte past the end. A crash or failed check in
 * the target ends the process (naming the input on stderr first); an
 * argument that cannot be read, or no input at all, fails the run.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs larger than this are not fuzz inputs: refuse rather than guess. */
#define INPUT_BYTES_MAX (16u << 20)

static int run_file(const char *path)
{
	struct stat sb;
	uint8_t *buf;
	size_t got;
	FILE *f;

	f = fopen(path, "rb");
	if (!f || fstat(fileno(f), &sb) != 0) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if (sb.st_size < 0 || (uint64_t)sb.st_size > INPUT_BYTES_MAX) {
		fprintf(stderr, "replay: %s is too large for a fuzz input\n", path);
		fclose(f);
		return -1;
	}
	/* malloc(0) may return NULL; one spare byte is never handed to the target. */
	buf = malloc((size_t)sb.st_size ? (size_t)sb.st_size : 1);
	if (!buf) {
		fclose(f);
		return -1;
	}
	got = fread(buf, 1, (size_t)sb.st_size, f);
	fclose(f);
	if (got != (size_t)sb.st_size) {
		fprintf(stderr, "replay: short read of %s\n", path);
		free(buf);
		return -1;
	}
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, got);
	LLVMFuzzerTestOneInput(buf, got);
	free(buf);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of `dir`; returns the count or -1. */
static int run_dir(const char *dir)
{
	char **names = NULL, path[PATH_MAX];
	size_t n = 0, cap = 0;
	struct dirent *de;
	int count = 0, rc = 0;
	DIR *d = opendir(dir);

	if (!d) {
		fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof *names);
			if (!names)
				abort();
		}
		names[n] = strdup(de->d_name);
		if (!names[n])
			abort();
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof *names, name_cmp);
	for (size_t i = 0; i < n; i++) {
		struct stat sb;

		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
			if (run_file(path) != 0)
				rc = -1;
			else
				count++;
		}
		free(names[i]);
	}
	free(names);
	return rc ? -1 : count;
}

int main(int argc, char **argv)
{
	int total = 0, failed = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat sb;
		int n;

		if (stat(argv[i], &sb) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			failed = 1;
			continue;
		}
		n = S_ISDIR(sb.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0 ? 1 : -1;
		if (n < 0)
			failed = 1;
		else
			total += n;
	}
	fprintf(stderr, "replay: %d inputs ran\n", total);
	if (total == 0) {
		fprintf(stderr, "replay: no inputs found\n");
		return 1;
	}
	return failed;
}
