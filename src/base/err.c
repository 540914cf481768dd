/*
 * err.c - names and descriptions of enum cfx_err, and errno mapping.
 */
#include "base/err.h"

#include <errno.h>

const char *cfx_err_name(int err)
{
	switch (err) {
#define CFX_ERR_NAME_(name, value, desc) \
	case value: \
		return #name;
		CFX_ERR_MAP(CFX_ERR_NAME_)
#undef CFX_ERR_NAME_
	}
	return "UNKNOWN";
}

const char *cfx_strerror(int err)
{
	switch (err) {
#define CFX_ERR_DESC_(name, value, desc) \
	case value: \
		return desc;
		CFX_ERR_MAP(CFX_ERR_DESC_)
#undef CFX_ERR_DESC_
	}
	return "unknown error";
}

int cfx_err_from_errno(int errnum)
{
	switch (errnum) {
	case 0:
		return CFX_OK;
	case EAGAIN:
		return CFX_AGAIN;
	case EINVAL:
		return CFX_EINVAL;
	case ENOMEM:
		return CFX_ENOMEM;
	case ENOENT:
		return CFX_ENOENT;
	case EEXIST:
		return CFX_EEXIST;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return CFX_ENOSPC;
	case EIO:
		return CFX_EIO;
	case ERANGE:
		return CFX_ERANGE;
	case EOPNOTSUPP:
		return CFX_EUNSUPPORTED;
	case ETIMEDOUT:
		return CFX_ETIMEDOUT;
	case E2BIG:
		return CFX_E2BIG;
	case EMSGSIZE:
		return CFX_EMSGSIZE;
	default:
		return CFX_ESYS;
	}
}
