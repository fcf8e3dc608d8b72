#include "node/learned_routes.h"

#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kvstore::node {
namespace {

// The ids a member lists or knows as removed: never routed by what a stream told.
struct Exclusions {
  std::set<raft::NodeId> ids;
  LearnedRoutes Routes() {
    return LearnedRoutes([this](raft::NodeId id) { return ids.count(id) > 0; });
  }
};

TEST(LearnedRoutesTest, KeepsTheFirstUsableUrlAndReportsOnlyWhatChanged) {
  Exclusions ex;
  LearnedRoutes routes = ex.Routes();
  EXPECT_EQ(routes.Learn(7, {"not a url", "http://127.0.0.1:2380", "http://127.0.0.1:2381"}),
            "http://127.0.0.1:2380");
  EXPECT_EQ(routes.Find(7), "http://127.0.0.1:2380");
  EXPECT_EQ(routes.Learn(7, {"http://127.0.0.1:2380"}), std::nullopt) << "nothing new";
  EXPECT_EQ(routes.Learn(7, {"http://127.0.0.1:2390"}), "http://127.0.0.1:2390") << "moved";
  EXPECT_EQ(routes.Find(7), "http://127.0.0.1:2390");
  EXPECT_EQ(routes.Learn(8, {"gopher://x", ""}), std::nullopt) << "no usable URL";
  EXPECT_EQ(routes.Find(8), std::nullopt);
  EXPECT_EQ(routes.Learn(raft::kNoNode, {"http://127.0.0.1:2380"}), std::nullopt);
  EXPECT_EQ(routes.size(), 1u);
}

TEST(LearnedRoutesTest, AListedOrRemovedIdIsNeverRoutedAndItsRouteIsForgotten) {
  Exclusions ex;
  LearnedRoutes routes = ex.Routes();
  ex.ids.insert(3);  // a member (its own entry wins) or a removed member (stays refused)
  EXPECT_EQ(routes.Learn(3, {"http://127.0.0.1:2380"}), std::nullopt);
  EXPECT_EQ(routes.Find(3), std::nullopt);

  ASSERT_TRUE(routes.Learn(4, {"http://127.0.0.1:2480"}).has_value());
  ASSERT_TRUE(routes.Learn(5, {"http://127.0.0.1:2580"}).has_value());
  ex.ids.insert(4);  // 4 became a member, or was removed
  EXPECT_EQ(routes.Find(4), std::nullopt) << "checked again when used";
  EXPECT_EQ(routes.size(), 1u);
  ex.ids.insert(5);
  std::vector<raft::NodeId> forgotten;
  routes.Prune([&](raft::NodeId id, const std::string& url) {
    forgotten.push_back(id);
    EXPECT_EQ(url, "http://127.0.0.1:2580");
  });
  EXPECT_EQ(forgotten, std::vector<raft::NodeId>{5});
  EXPECT_EQ(routes.size(), 0u);
}

TEST(LearnedRoutesTest, AtMostSixtyFourRoutesTheOldestDroppedFirst) {
  Exclusions ex;
  LearnedRoutes routes = ex.Routes();
  const auto url = [](raft::NodeId id) { return "http://127.0.0.1:" + std::to_string(10000 + id); };
  for (raft::NodeId id = 100; id < 100 + LearnedRoutes::kMaxRoutes; ++id) {
    ASSERT_TRUE(routes.Learn(id, {url(id)}).has_value());
  }
  // A route that moves keeps its place in the learned order.
  ASSERT_TRUE(routes.Learn(100, {"http://127.0.0.1:9999"}).has_value());
  ASSERT_TRUE(routes.Learn(1000, {url(1000)}).has_value());
  EXPECT_EQ(routes.size(), LearnedRoutes::kMaxRoutes);
  EXPECT_EQ(routes.Find(100), std::nullopt) << "the oldest learned went first";
  EXPECT_EQ(routes.Find(101), url(101));
  EXPECT_EQ(routes.Find(1000), url(1000));
}

}  // namespace
}  // namespace kvstore::node
