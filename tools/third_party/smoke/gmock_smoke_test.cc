#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int Now() = 0;
};

class FakeClock : public Clock {
 public:
  MOCK_METHOD(int, Now, (), (override));
};

TEST(GmockSmoke, ExpectationsAndMatchers) {
  FakeClock clock;
  EXPECT_CALL(clock, Now()).WillOnce(testing::Return(5));
  EXPECT_EQ(clock.Now(), 5);
  EXPECT_THAT((std::vector<int>{1, 2, 3}), testing::ElementsAre(1, 2, 3));
}

}  // namespace
