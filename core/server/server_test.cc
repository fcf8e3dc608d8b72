// Tests of the replicated server core through its public API, on ServerCluster.

#include <string>

#include "core/base/errors.h"
#include "core/server/testing/server_cluster.h"
#include "gtest/gtest.h"

namespace kvstore::server {
namespace {

using testing::GetRequest;
using testing::PutRequest;
using testing::ServerCluster;

TEST(ServerTest, PutThenLinearizableGetOnEveryMember) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  auto put = cluster.Call(leader, PutRequest("foo", "bar"));
  ASSERT_TRUE(put.has_value());
  ASSERT_TRUE(put->status.ok()) << put->status;
  EXPECT_EQ(put->put.revision, 2);
  for (raft::NodeId id : cluster.ids()) {
    auto get = cluster.Call(id, GetRequest("foo"));
    ASSERT_TRUE(get.has_value()) << "member " << id;
    ASSERT_TRUE(get->status.ok()) << get->status;
    ASSERT_EQ(get->range.kvs.size(), 1u);
    EXPECT_EQ(get->range.kvs[0].value, "bar");
  }
}

}  // namespace
}  // namespace kvstore::server
