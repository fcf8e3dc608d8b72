#include "store/file_system.h"

#include "absl/strings/str_cat.h"

namespace kvstore::store {

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

}  // namespace kvstore::store
