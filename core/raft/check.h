#ifndef KVSTORE_CORE_RAFT_CHECK_H_
#define KVSTORE_CORE_RAFT_CHECK_H_

// RAFT_CHECK(condition) << "context": a broken invariant is a crash, never an error value
// (bad input from outside is a Status). The message should name the node, term and indexes.

#include <string>
#include <type_traits>

#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kvstore::raft::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  // Prints the message and aborts.
  ~CheckFailure();

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

}  // namespace kvstore::raft::internal

#define RAFT_CHECK(condition)         \
  if (ABSL_PREDICT_TRUE(condition)) { \
  } else                              \
    ::kvstore::raft::internal::CheckFailure(__FILE__, __LINE__, #condition)

#endif  // KVSTORE_CORE_RAFT_CHECK_H_
