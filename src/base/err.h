/*
 * err.h - the one error type of Conflux.
 *
 * Every fallible function of the core returns an `enum cfx_err`: 0 is
 * success, failures are negative. "Not yet" values (CFX_AGAIN,
 * CFX_NEED_MORE) are not errors; callers test for them explicitly.
 * Front ends map these codes to their wire codes in one function each
 * (for example kafka_err_from_cfx); nothing else of the core leaks out.
 *
 * Names and strings come from one X-macro so they can never drift apart.
 */
#ifndef CFX_BASE_ERR_H
#define CFX_BASE_ERR_H

/* X(name, value, description) */
#define CFX_ERR_MAP(X)                                                        \
	X(OK, 0, "success")                                                   \
	X(AGAIN, -1, "try again later")                                       \
	X(NEED_MORE, -2, "need more input")                                   \
	X(EINVAL, -10, "invalid argument")                                    \
	X(ENOMEM, -11, "out of memory")                                       \
	X(ERANGE, -12, "value out of range")                                  \
	X(E2BIG, -13, "too large")                                            \
	X(ENOENT, -14, "not found")                                           \
	X(EEXIST, -15, "already exists")                                      \
	X(ETOPIC, -16, "invalid topic name")                                  \
	X(EQUEUE, -17, "invalid queue id")                                    \
	X(EMSGSIZE, -18, "message too large")                                 \
	X(EBATCHSIZE, -19, "batch too large")                                 \
	X(EOFFSET, -20, "offset out of range")                                \
	X(ECLOSED, -21, "closed")                                             \
	X(ETIMEDOUT, -22, "timed out")                                        \
	X(EUNSUPPORTED, -23, "unsupported")                                   \
	X(EPARSE, -30, "malformed input")                                     \
	X(ECORRUPT, -31, "data corrupted")                                    \
	X(EVERSION, -32, "unsupported format version")                        \
	X(ECRC, -33, "checksum mismatch")                                     \
	X(EIO, -40, "input/output error")                                     \
	X(ENOSPC, -41, "no space left on device")                             \
	X(EFSYNC, -42, "flush to disk failed; store is read-only until restart") \
	X(ESYS, -43, "system call failed")                                    \
	X(ELOCKED, -44, "data directory is in use by another process")       \
	X(EAUTH, -50, "authentication failed")                                \
	X(EDENIED, -51, "not authorized")

enum cfx_err {
#define CFX_ERR_ENUM_(name, value, desc) CFX_##name = (value),
	CFX_ERR_MAP(CFX_ERR_ENUM_)
#undef CFX_ERR_ENUM_
};

/* Returns the symbolic name ("EINVAL") of `err`; "UNKNOWN" if not an error code. */
const char *cfx_err_name(int err);

/* Returns a human-readable, static description of `err`. */
const char *cfx_strerror(int err);

/* Maps an errno value to the closest cfx_err (ENOSPC -> CFX_ENOSPC, ...). */
int cfx_err_from_errno(int errnum);

#endif
