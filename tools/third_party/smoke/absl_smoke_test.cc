#include <string>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace {

TEST(AbslSmoke, ContainersAndStrCat) {
  absl::flat_hash_map<std::string, int> counts;
  counts["a"] = 1;
  counts["b"] += 2;
  absl::btree_map<int, std::string> ordered = {{2, "two"}, {1, "one"}};
  EXPECT_EQ(absl::StrCat(ordered.begin()->second, "-", counts["a"] + counts["b"]), "one-3");
}

TEST(AbslSmoke, StatusOr) {
  absl::StatusOr<int> failed = absl::InvalidArgumentError("bad flag");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().message(), "bad flag");
  absl::StatusOr<int> fine = 7;
  EXPECT_EQ(*fine, 7);
}

}  // namespace
