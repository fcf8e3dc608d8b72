// KVSTORE_TSAN: defined in a translation unit built with ThreadSanitizer (GCC or clang). One
// definition for the product's annotations (cross_thread.h) and the interposers and tests under
// tools/sanitizers.

#ifndef KVSTORE_NET_TSAN_BUILD_H_
#define KVSTORE_NET_TSAN_BUILD_H_

#if defined(__SANITIZE_THREAD__)
#define KVSTORE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KVSTORE_TSAN 1
#endif
#endif

#endif  // KVSTORE_NET_TSAN_BUILD_H_
