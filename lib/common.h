/* common.h — attribute macros only. */
#ifndef KR_COMMON_H
#define KR_COMMON_H

#define KR_NODISCARD __attribute__((warn_unused_result))
#define KR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define KR_UNUSED __attribute__((unused))
#define KR_NORETURN __attribute__((noreturn))
#define KR_NELEM(a) (sizeof(a) / sizeof((a)[0]))

#endif
