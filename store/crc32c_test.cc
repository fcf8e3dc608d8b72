#include "store/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace kvstore::store {
namespace {

// RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(descending), 0x113FDB5Cu);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, HardwareAndPortableAgreeAtEveryLengthAndSplit) {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 7 + 3));
  for (size_t n = 0; n <= data.size(); ++n) {
    const absl::string_view prefix(data.data(), n);
    ASSERT_EQ(Crc32c(prefix), Crc32cPortable(prefix)) << n;
    // Extending a CRC piecewise equals computing it at once.
    const size_t split = n / 3;
    ASSERT_EQ(Crc32c(prefix.substr(split), Crc32c(prefix.substr(0, split))), Crc32c(prefix));
  }
}

}  // namespace
}  // namespace kvstore::store
