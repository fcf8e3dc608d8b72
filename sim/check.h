#ifndef KVSTORE_SIM_CHECK_H_
#define KVSTORE_SIM_CHECK_H_

// SIM_CHECK(condition) << "context": a broken invariant of the simulator or its checkers is a
// crash, never an error value (bad input from outside, such as a malformed history file, is a
// Status). The message should name the values involved.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kvstore::sim::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition)
      : message_(absl::StrCat(file, ":", line, ": invariant violated: ", condition, ": ")) {}
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  // Prints the message and aborts.
  ~CheckFailure() {
    std::fprintf(stderr, "%s\n", message_.c_str());
    std::abort();
  }

  CheckFailure& operator<<(absl::string_view text) {
    absl::StrAppend(&message_, text);
    return *this;
  }
  CheckFailure& operator<<(const char* text) { return *this << absl::string_view(text); }
  CheckFailure& operator<<(const std::string& text) { return *this << absl::string_view(text); }
  template <typename T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
  CheckFailure& operator<<(T value) {
    absl::StrAppend(&message_, value);
    return *this;
  }

 private:
  std::string message_;
};

}  // namespace kvstore::sim::internal

#define SIM_CHECK(condition)          \
  if (ABSL_PREDICT_TRUE(condition)) { \
  } else                              \
    ::kvstore::sim::internal::CheckFailure(__FILE__, __LINE__, #condition)

#endif  // KVSTORE_SIM_CHECK_H_
