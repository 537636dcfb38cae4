/* error.c - resolver_strerror. */
#include "resolver.h"

const char *resolver_strerror(int code)
{
    switch (code) {
    case RESOLVER_OK:
        return "success";
    case RESOLVER_ERR_NOMEM:
        return "out of memory";
    case RESOLVER_ERR_INVALID:
        return "invalid argument";
    case RESOLVER_ERR_CONFIG:
        return "invalid configuration";
    case RESOLVER_ERR_IO:
        return "system call failed";
    case RESOLVER_ERR_DECODE:
        return "cannot decode input";
    case RESOLVER_ERR_NO_INSTANCE:
        return "no instances known";
    case RESOLVER_ERR_NONE_READY:
        return "no instance is ready";
    case RESOLVER_ERR_NOT_FOUND:
        return "not found";
    case RESOLVER_ERR_PROTOCOL:
        return "protocol error";
    case RESOLVER_ERR_CONNECT:
        return "cannot reach the daemon";
    case RESOLVER_ERR_TIMEOUT:
        return "timed out";
    case RESOLVER_ERR_LIMIT:
        return "limit reached";
    case RESOLVER_ERR_DENIED:
        return "permission denied";
    case RESOLVER_ERR_CLOSED:
        return "shutting down";
    case RESOLVER_ERR_INTERNAL:
        return "internal error";
    default:
        return "unknown error";
    }
}

#define RSV_STR2(x) #x
#define RSV_STR(x) RSV_STR2(x)

const char *resolver_version(void)
{
    return RSV_STR(RESOLVER_VERSION_MAJOR) "." RSV_STR(RESOLVER_VERSION_MINOR) "." RSV_STR(
        RESOLVER_VERSION_PATCH);
}
