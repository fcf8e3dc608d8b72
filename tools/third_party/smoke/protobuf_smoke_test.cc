#include <string>

#include "gtest/gtest.h"
#include "tools/third_party/smoke/smoke.pb.h"

namespace {

TEST(ProtobufSmoke, RoundTrip) {
  kvstore::smoke::Entry entry;
  entry.set_term(3);
  entry.set_index(42);
  entry.set_data(std::string("\x00\xff payload", 10));
  entry.add_tags("x");
  std::string wire;
  ASSERT_TRUE(entry.SerializeToString(&wire));

  kvstore::smoke::Entry decoded;
  ASSERT_TRUE(decoded.ParseFromString(wire));
  EXPECT_EQ(decoded.term(), 3u);
  EXPECT_EQ(decoded.index(), 42u);
  EXPECT_EQ(decoded.data(), entry.data());
  ASSERT_EQ(decoded.tags_size(), 1);
  EXPECT_EQ(decoded.tags(0), "x");
}

TEST(ProtobufSmoke, RejectsGarbage) {
  kvstore::smoke::Entry decoded;
  EXPECT_FALSE(decoded.ParseFromString(std::string("\xff\xff\xff", 3)));
}

}  // namespace
