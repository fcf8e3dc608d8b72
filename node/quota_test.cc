// The quota on a real LMDB file: the member raises the NOSPACE alarm once the backend's file
// grows past --quota-backend-bytes, refuses writes that add data with NO_SPACE, and still serves
// reads and deletes (etcd's quota behaviour), on the production backend rather than the
// in-memory one.

#include <cstdlib>
#include <deque>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"
#include "node/member.h"
#include "store/lmdb_backend.h"
#include "store/posix_file_system.h"

namespace kvstore::node {
namespace {

constexpr uint64_t kQuotaBytes = 1 << 20;

class QuotaTest : public ::testing::Test,
                  public PeerTransport,
                  public SyncExecutor,
                  public ClientSink {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/quota");
    ASSERT_EQ(std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()), 0);
    ASSERT_TRUE(store::CreateDirDurably(&fs_, dir_).ok());
    auto backend = store::LmdbBackend::Open(dir_ + "/db", {});
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    MemberOptions options;
    options.server.id = 1;
    options.server.quota_bytes = kQuotaBytes;
    MemberIo io;
    io.transport = this;
    io.sync = this;
    io.sink = this;
    auto member = Member::Open(options, &fs_, dir_ + "/wal", backend_.get(), io,
                               {server::Member{1, "one", {"http://127.0.0.1:2380"}}});
    ASSERT_TRUE(member.ok()) << member.status();
    member_ = std::move(*member);
    member_->Drain();
    for (int i = 0; i < 100 && !member_->server().is_leader(); ++i) {
      member_->Tick();
      RunSyncs();
    }
    ASSERT_TRUE(member_->server().is_leader());
  }

  void RunSyncs() {
    while (!syncs_.empty()) {
      store::Wal::SyncBatch* batch = syncs_.front();
      syncs_.pop_front();
      member_->OnSyncDone(batch->Run());
    }
  }

  server::Response Call(server::Request request) {
    const server::RequestId id = member_->Submit(std::move(request));
    for (int i = 0; i < 10 && responses_.count(id) == 0; ++i) {
      RunSyncs();
      member_->Tick();
    }
    RunSyncs();
    EXPECT_EQ(responses_.count(id), 1u);
    return responses_[id];
  }

  server::Response Put(const std::string& key, const std::string& value) {
    server::Request request;
    request.type = server::RequestType::kPut;
    request.put.key = key;
    request.put.value = value;
    return Call(std::move(request));
  }

  void Send(const raft::Message&) override {}
  void Start(store::Wal::SyncBatch* batch) override { syncs_.push_back(batch); }
  void OnResponse(const server::Response& response) override {
    responses_[response.request_id] = response;
  }
  void OnWatchResponse(const mvcc::WatchResponse&) override {}
  void OnStop(const absl::Status& why) override { ADD_FAILURE() << why; }

  store::PosixFileSystem fs_;
  std::string dir_;
  std::unique_ptr<store::LmdbBackend> backend_;
  std::unique_ptr<Member> member_;
  std::deque<store::Wal::SyncBatch*> syncs_;
  std::map<server::RequestId, server::Response> responses_;
};

TEST_F(QuotaTest, FileSizePastTheQuotaRaisesNoSpaceAndRefusesOnlyWritesThatAddData) {
  const std::string value(32 << 10, 'x');
  int written = 0;
  server::Response last;
  for (; written < 200; ++written) {
    ASSERT_TRUE(backend_->Flush().ok());  // the file grows as batches become durable
    last = Put(absl::StrCat("key", written), value);
    if (!last.status.ok()) break;
  }
  ASSERT_LT(written, 200) << "the quota never tripped; file size " << backend_->SizeBytes();
  EXPECT_EQ(CodeOf(last.status), ErrorCode::kNoSpace) << last.status;
  // etcd 3.4's quota check: the file's size plus the put's cost (256 bytes, its key and value)
  // reaches the quota; the refusal raised the alarm.
  EXPECT_GE(backend_->SizeBytes() + 256 + 8 + value.size(), kQuotaBytes);
  ASSERT_EQ(member_->server().Alarms().size(), 1u);
  EXPECT_EQ(member_->server().Alarms()[0].type, server::AlarmType::kNoSpace);

  // Reads and deletes still work.
  server::Request get;
  get.type = server::RequestType::kRange;
  get.range.key = "key0";
  server::Response got = Call(get);
  ASSERT_TRUE(got.status.ok()) << got.status;
  ASSERT_EQ(got.range.kvs.size(), 1u);
  server::Request del;
  del.type = server::RequestType::kDeleteRange;
  del.delete_range.key = "key";
  del.delete_range.range_end = mvcc::PrefixEnd("key");
  server::Response deleted = Call(del);
  ASSERT_TRUE(deleted.status.ok()) << deleted.status;
  EXPECT_EQ(deleted.delete_range.deleted, written);
}

}  // namespace
}  // namespace kvstore::node
