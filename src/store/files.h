/*
 * files.h - file-system helpers of the store module (internal).
 */
#ifndef CFX_STORE_FILES_H
#define CFX_STORE_FILES_H

#include "base/fileops.h"

/*
 * Lists files in `dir` named by a 20-digit number followed by `suffix`
 * (".seg"), sorted ascending. *out is malloc'ed (free with cfx_free).
 * A missing directory lists as empty.
 */
int store__list_numbered(const char *dir, const char *suffix, uint64_t **out, uint32_t *n);

/* Deletes leftover "*.tmp" files of interrupted creations in `dir`. */
int store__remove_tmp_files(const char *dir);

/*
 * Creates `path` atomically with `size` bytes reserved on disk and `head`
 * written at offset 0: write as path.tmp, sync, rename, sync the directory.
 * Returns 0 with the open fd and a read-write mapping of the whole file.
 */
int store__create_file(const struct cfx_file_ops *fops, const char *path, uint64_t size,
		       const void *head, size_t head_len, int *fd_out, uint8_t **map_out);

/* Makes bytes [off, size) of a mapped file read as zeros, durably. */
int store__zero_tail(const struct cfx_file_ops *fops, int fd, uint8_t *map, uint64_t size,
		     uint64_t off);

/* rm -r */
int store__rmtree(const char *path);

#endif
