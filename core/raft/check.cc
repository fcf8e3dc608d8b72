#include "core/raft/check.h"

#include <cstdlib>

#include "absl/base/internal/raw_logging.h"

namespace kvstore::raft::internal {

CheckFailure::CheckFailure(const char* file, int line, const char* condition)
    : message_(absl::StrCat(file, ":", line, ": invariant violated: ", condition, ": ")) {}

CheckFailure::~CheckFailure() {
  ABSL_RAW_LOG(ERROR, "%s", message_.c_str());
  std::abort();
}

}  // namespace kvstore::raft::internal
