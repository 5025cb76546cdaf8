/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define MAX(a, b)                                                                                  \
	({                                                                                         \
		__typeof__(a) _a_ = (a);                                                           \
		__typeof__(b) _b_ = (b);                                                           \
		_a_ > _b_ ? _a_ : _b_;                                                             \
	})
#define MIN(a, b)                                                                                  \
	({                                                                                         \
		__typeof__(a) _a_ = (a);                                                           \
		__typeof__(b) _b_ = (b);                                                           \
		_a_ < _b_ ? _a_ : _b_;                                                             \
	})

/* Whether x equals one of the (integer) arguments. */
#define IN_SET(x, ...)                                                                             \
	({                                                                                         \
		const int _set_[] = { __VA_ARGS__ };                                               \
		bool _found_ = false;                                                              \
		for (size_t _i_ = 0; _i_ < ELEMENTSOF(_set_); _i_++)                               \
			if (_set_[_i_] == (int)(x))                                                \
				_found_ = true;                                                    \
		_found_;                                                                           \
	})

#define _unused_ __attribute__((__unused__))
#define _printf_(a, b) __attribute__((__format__(printf, a, b)))
#define _cleanup_(f) __attribute__((__cleanup__(f)))
#define _warn_unused_result_ __attribute__((__warn_unused_result__))

/* Hand ownership of *p to the caller and leave NULL behind for the cleanup handler. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _p_ = (p);                                                           \
		(p) = NULL;                                                                        \
		_p_;                                                                               \
	})

#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _fd_ = (fd);                                                                   \
		(fd) = -EBADF;                                                                     \
		_fd_;                                                                              \
	})

static inline void *mfree(void *p)
{
	free(p);
	return NULL;
}

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
	if (*fd >= 0)
		(void)close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Define a cleanup function for a pointer type from its NULL-safe destructor. */
#define DEFINE_POINTER_CLEANUP(type, func)                                                         \
	static inline void func##p(type **p)                                                       \
	{                                                                                          \
		func(*p);                                                                          \
	}

static inline bool streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return streq(a, b);
}
