// Conversions between Cap'n Proto and the core's structs: every field of every message survives
// the trip over the wire (encode, serialize, read back with the receive limits, decode), and
// malformed or oversize messages decode to INVALID_ARGUMENT naming what is wrong, never to a
// value and never to a crash.

#include "net/convert.h"

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "core/base/errors.h"
#include "core/server/codec.h"
#include "gtest/gtest.h"

namespace kvstore::net {
namespace {

// A message as it arrives: serialized, then read back with `options`.
class Wire {
 public:
  template <typename T>
  typename T::Builder Init() {
    return builder_.initRoot<T>();
  }
  template <typename T>
  typename T::Reader Read(capnp::ReaderOptions options) {
    words_ = capnp::messageToFlatArray(builder_);
    reader_ = std::make_unique<capnp::FlatArrayMessageReader>(words_.asPtr(), options);
    return reader_->getRoot<T>();
  }

 private:
  capnp::MallocMessageBuilder builder_;
  kj::Array<capnp::word> words_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

// --- Describers: one line per value, so a failed comparison shows what differs. ---

std::string Describe(const mvcc::RangeRequest& r) {
  server::pb::RangeRequest p;
  server::ToProto(r, &p);
  return p.ShortDebugString();
}
std::string Describe(const mvcc::PutRequest& r) {
  server::pb::PutRequest p;
  server::ToProto(r, &p);
  return p.ShortDebugString();
}
std::string Describe(const mvcc::DeleteRangeRequest& r) {
  server::pb::DeleteRangeRequest p;
  server::ToProto(r, &p);
  return p.ShortDebugString();
}
std::string Describe(const mvcc::TxnRequest& r) {
  server::pb::TxnRequest p;
  server::ToProto(r, &p);
  return p.ShortDebugString();
}
std::string Describe(const mvcc::KeyValue& kv) {
  return absl::StrCat("{", kv.key, "=", kv.value, " c", kv.create_revision, " m", kv.mod_revision,
                      " v", kv.version, " l", kv.lease, "}");
}
std::string Describe(const std::vector<mvcc::KeyValue>& kvs) {
  std::string out;
  for (const mvcc::KeyValue& kv : kvs) absl::StrAppend(&out, Describe(kv));
  return out;
}
std::string Describe(const mvcc::TxnResponse& t) {
  std::string out = absl::StrCat("txn r", t.revision, t.succeeded ? " ok[" : " failed[");
  for (const mvcc::ResponseOp& op : t.responses) {
    switch (op.kind) {
      case mvcc::RequestOp::Kind::kRange:
        absl::StrAppend(&out, "range r", op.range.revision, " ", Describe(op.range.kvs), " more",
                        op.range.more, " count", op.range.count, ";");
        break;
      case mvcc::RequestOp::Kind::kPut:
        absl::StrAppend(&out, "put r", op.put.revision, " ",
                        op.put.prev_kv ? Describe(*op.put.prev_kv) : "-", ";");
        break;
      case mvcc::RequestOp::Kind::kDeleteRange:
        absl::StrAppend(&out, "delete r", op.delete_range.revision, " ", op.delete_range.deleted,
                        " ", Describe(op.delete_range.prev_kvs), ";");
        break;
      case mvcc::RequestOp::Kind::kTxn:
        absl::StrAppend(&out, op.txn ? Describe(*op.txn) : "null", ";");
        break;
    }
  }
  return out + "]";
}
std::string Describe(const server::Member& m) {
  return absl::StrCat("{", m.id, " ", m.name, " ", absl::StrJoin(m.peer_urls, ","),
                      m.is_learner ? " learner}" : "}");
}

std::string Describe(const server::Request& r) {
  std::string out =
      absl::StrCat("type ", static_cast<int>(r.type), " rev ", r.revision, " lease ", r.lease_id,
                   " ttl ", r.ttl_seconds, " member ", Describe(r.member));
  absl::StrAppend(&out, " range ", Describe(r.range), " put ", Describe(r.put), " delete ",
                  Describe(r.delete_range), " txn ", Describe(r.txn));
  return out;
}

std::string Describe(const server::Response& r) {
  std::string out =
      absl::StrCat("type ", static_cast<int>(r.type), " ", r.status.ToString(), " header ",
                   r.header.member_id, "/", r.header.revision, "/", r.header.raft_term);
  absl::StrAppend(&out, " range r", r.range.revision, " ", Describe(r.range.kvs), " ", r.range.more,
                  " ", r.range.count);
  absl::StrAppend(&out, " put r", r.put.revision, " ",
                  r.put.prev_kv ? Describe(*r.put.prev_kv) : "-");
  absl::StrAppend(&out, " delete r", r.delete_range.revision, " ", r.delete_range.deleted, " ",
                  Describe(r.delete_range.prev_kvs));
  absl::StrAppend(&out, " ", Describe(r.txn), " compact ", r.compact.revision);
  absl::StrAppend(&out, " hash ", r.hash.hash, "/", r.hash.revision, "/", r.hash.compact_revision);
  absl::StrAppend(&out, " lease ", r.lease.id, "/", r.lease.granted_ttl_seconds, "/",
                  r.lease.remaining_ttl_seconds, "/", absl::StrJoin(r.lease.keys, ","));
  absl::StrAppend(&out, " leases ", absl::StrJoin(r.leases, ","), " member ", Describe(r.member),
                  " members");
  for (const server::Member& m : r.members) absl::StrAppend(&out, " ", Describe(m));
  absl::StrAppend(&out, " alarms");
  for (const server::Alarm& a : r.alarms) {
    absl::StrAppend(&out, " ", a.member_id, ":", static_cast<int>(a.type));
  }
  return out;
}

// --- Raft messages ---

raft::Message FullMessage() {
  raft::Message m;
  m.type = raft::MessageType::kApp;
  m.to = 2;
  m.from = 1;
  m.term = 7;
  m.log_term = 6;
  m.index = 10;
  m.commit = 9;
  m.reject = true;
  m.reject_hint = 4;
  m.entries.push_back(raft::Entry{6, 11, raft::EntryType::kNormal, raft::Bytes("a\0b")});
  m.entries.push_back(raft::Entry{7, 12, raft::EntryType::kConfChange, raft::Bytes("cc")});
  m.context = raft::Bytes(std::string("ctx\0x", 5));
  return m;
}

raft::Message SnapMessage() {
  raft::Message m;
  m.type = raft::MessageType::kSnap;
  m.to = 3;
  m.from = 1;
  m.term = 9;
  auto snapshot = std::make_shared<raft::Snapshot>();
  snapshot->metadata.index = 100;
  snapshot->metadata.term = 8;
  snapshot->metadata.conf_state.voters = {1, 2};
  snapshot->metadata.conf_state.voters_outgoing = {1, 2, 4};
  snapshot->metadata.conf_state.learners = {3};
  snapshot->metadata.conf_state.learners_next = {4};
  snapshot->metadata.conf_state.auto_leave = true;
  snapshot->data = raft::Bytes("not sent");
  m.snapshot = snapshot;
  return m;
}

absl::StatusOr<raft::Message> RoundTrip(const raft::Message& m) {
  Wire wire;
  ToCapnp(m, wire.Init<rpc::Message>());
  return FromCapnp(wire.Read<rpc::Message>(PeerReaderOptions()));
}

TEST(ConvertRaftTest, EveryFieldSurvives) {
  const raft::Message in = FullMessage();
  absl::StatusOr<raft::Message> out = RoundTrip(in);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(raft::DescribeMessage(*out), raft::DescribeMessage(in));
  EXPECT_EQ(out->type, in.type);
  EXPECT_EQ(out->log_term, in.log_term);
  EXPECT_EQ(out->reject_hint, in.reject_hint);
  ASSERT_EQ(out->entries.size(), 2u);
  EXPECT_EQ(out->entries[0], in.entries[0]);
  EXPECT_EQ(out->entries[1], in.entries[1]);
  EXPECT_EQ(out->context, in.context);
  EXPECT_EQ(out->snapshot, nullptr);
}

TEST(ConvertRaftTest, SnapshotMetadataTravelsWithoutItsData) {
  const raft::Message in = SnapMessage();
  absl::StatusOr<raft::Message> out = RoundTrip(in);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_NE(out->snapshot, nullptr);
  EXPECT_EQ(out->snapshot->metadata.index, 100u);
  EXPECT_EQ(out->snapshot->metadata.term, 8u);
  EXPECT_EQ(out->snapshot->metadata.conf_state, in.snapshot->metadata.conf_state);
  EXPECT_TRUE(out->snapshot->data.empty());
}

TEST(ConvertRaftTest, EveryMessageTypeSurvives) {
  for (int type = 0; type <= static_cast<int>(raft::MessageType::kReadIndexResp); ++type) {
    raft::Message m = static_cast<raft::MessageType>(type) == raft::MessageType::kSnap
                          ? SnapMessage()
                          : FullMessage();
    m.type = static_cast<raft::MessageType>(type);
    absl::StatusOr<raft::Message> out = RoundTrip(m);
    ASSERT_TRUE(out.ok()) << raft::MessageTypeName(m.type) << ": " << out.status();
    EXPECT_EQ(out->type, m.type);
  }
}

// Edits a valid message's wire form, then expects the decoder to refuse it naming `what`.
void ExpectRefused(const raft::Message& valid,
                   const std::function<void(rpc::Message::Builder)>& edit,
                   const std::string& what) {
  Wire wire;
  rpc::Message::Builder builder = wire.Init<rpc::Message>();
  ToCapnp(valid, builder);
  edit(builder);
  absl::StatusOr<raft::Message> out = FromCapnp(wire.Read<rpc::Message>(PeerReaderOptions()));
  ASSERT_FALSE(out.ok()) << what;
  EXPECT_EQ(CodeOf(out.status()), ErrorCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find(what), std::string::npos) << out.status();
}

TEST(ConvertRaftTest, MalformedMessagesAreRefused) {
  ExpectRefused(
      FullMessage(), [](auto m) { m.setType(14); }, "raft message type 14");
  ExpectRefused(
      FullMessage(), [](auto m) { m.getEntries()[1].setType(2); }, "raft entry type 2");
  ExpectRefused(
      FullMessage(), [](auto m) { m.setFrom(0); }, "raft message from 0");
  ExpectRefused(
      FullMessage(), [](auto m) { m.setTo(0); }, "to 0");
  ExpectRefused(
      FullMessage(), [](auto m) { m.getEntries()[1].setIndex(14); },
      "append entry index 14, expected 12");
  ExpectRefused(
      FullMessage(), [](auto m) { m.getEntries()[0].setIndex(12); },
      "append entry index 12, expected 11");
  ExpectRefused(
      FullMessage(), [](auto m) { m.getEntries()[1].setTerm(5); }, "append entry 12 of term 5");
  ExpectRefused(
      FullMessage(), [](auto m) { m.getEntries()[1].setTerm(8); },
      "append entry 12 of term 8 in a message of term 7");
  ExpectRefused(
      FullMessage(), [](auto m) { m.setHasSnapshot(true); },
      "snapshot metadata on a message of type App");
  ExpectRefused(
      SnapMessage(), [](auto m) { m.setHasSnapshot(false); },
      "snapshot metadata missing on a message of type Snap");
  ExpectRefused(
      SnapMessage(), [](auto m) { m.getSnapshot().getConfState().getVoters().set(0, 3); },
      "snapshot voters: not sorted or duplicate node 2");
  ExpectRefused(
      SnapMessage(), [](auto m) { m.getSnapshot().getConfState().getLearners().set(0, 0); },
      "snapshot learners: node 0");
  ExpectRefused(
      SnapMessage(), [](auto m) { m.getSnapshot().getConfState().getLearners().set(0, 2); },
      "snapshot learner 2 is also a voter");
  ExpectRefused(
      SnapMessage(), [](auto m) { m.getSnapshot().getConfState().getLearnersNext().set(0, 5); },
      "snapshot next learner 5 is not an outgoing voter");
  ExpectRefused(
      SnapMessage(), [](auto m) { m.getSnapshot().getConfState().initVoters(0); },
      "snapshot configuration without voters");
}

// --- Values of the client API ---

mvcc::RangeRequest FullRange() {
  mvcc::RangeRequest r;
  r.key = std::string("k\0a", 3);
  r.range_end = "z";
  r.limit = 7;
  r.revision = 42;
  r.sort_order = mvcc::SortOrder::kDescend;
  r.sort_target = mvcc::SortTarget::kValue;
  r.serializable = true;
  r.keys_only = true;
  r.count_only = true;
  r.min_mod_revision = 3;
  r.max_mod_revision = 30;
  r.min_create_revision = 2;
  r.max_create_revision = 20;
  return r;
}

mvcc::PutRequest FullPut() {
  mvcc::PutRequest p;
  p.key = "key";
  p.value = std::string("v\0v", 3);
  p.lease = 0x1234;
  p.prev_kv = true;
  p.ignore_value = true;
  p.ignore_lease = true;
  return p;
}

mvcc::DeleteRangeRequest FullDelete() {
  mvcc::DeleteRangeRequest d;
  d.key = "a";
  d.range_end = std::string(1, '\0');
  d.prev_kv = true;
  return d;
}

// A txn with every op kind, every compare, and `depth` levels of nested txns below it.
mvcc::TxnRequest FullTxn(int depth) {
  mvcc::TxnRequest t;
  for (int target = 0; target <= static_cast<int>(mvcc::Compare::Target::kLease); ++target) {
    mvcc::Compare c;
    c.result = static_cast<mvcc::Compare::Result>(target % 4);
    c.target = static_cast<mvcc::Compare::Target>(target);
    c.key = absl::StrCat("c", target);
    c.range_end = "d";
    c.number = target * 10;
    c.value = "x";
    t.compare.push_back(c);
  }
  mvcc::RequestOp range;
  range.kind = mvcc::RequestOp::Kind::kRange;
  range.range = FullRange();
  mvcc::RequestOp put;
  put.kind = mvcc::RequestOp::Kind::kPut;
  put.put = FullPut();
  mvcc::RequestOp del;
  del.kind = mvcc::RequestOp::Kind::kDeleteRange;
  del.delete_range = FullDelete();
  t.success = {range, put};
  t.failure = {del};
  if (depth > 0) {
    mvcc::RequestOp nested;
    nested.kind = mvcc::RequestOp::Kind::kTxn;
    nested.txn = std::make_shared<mvcc::TxnRequest>(FullTxn(depth - 1));
    t.failure.push_back(nested);
  }
  return t;
}

mvcc::KeyValue Kv(const std::string& key, mvcc::Revision revision) {
  mvcc::KeyValue kv;
  kv.key = key;
  kv.create_revision = revision - 1;
  kv.mod_revision = revision;
  kv.version = 3;
  kv.value = std::string("val\0", 4);
  kv.lease = 77;
  return kv;
}

// A txn response whose revisions are all `revision`, as the wire carries one (see convert.h).
mvcc::TxnResponse FullTxnResponse(mvcc::Revision revision, int depth) {
  mvcc::TxnResponse t;
  t.revision = revision;
  t.succeeded = depth % 2 == 0;
  mvcc::ResponseOp range;
  range.kind = mvcc::RequestOp::Kind::kRange;
  range.range.revision = revision;
  range.range.kvs = {Kv("a", 5), Kv("b", 6)};
  range.range.more = true;
  range.range.count = 9;
  mvcc::ResponseOp put;
  put.kind = mvcc::RequestOp::Kind::kPut;
  put.put.revision = revision;
  put.put.prev_kv = Kv("p", 4);
  mvcc::ResponseOp del;
  del.kind = mvcc::RequestOp::Kind::kDeleteRange;
  del.delete_range.revision = revision;
  del.delete_range.deleted = 2;
  del.delete_range.prev_kvs = {Kv("d", 3)};
  t.responses = {range, put, del};
  if (depth > 0) {
    mvcc::ResponseOp nested;
    nested.kind = mvcc::RequestOp::Kind::kTxn;
    nested.txn = std::make_shared<mvcc::TxnResponse>(FullTxnResponse(revision, depth - 1));
    t.responses.push_back(nested);
  }
  return t;
}

TEST(ConvertValueTest, RequestsSurvive) {
  {
    Wire wire;
    ToCapnp(FullRange(), wire.Init<rpc::RangeRequest>());
    auto out = FromCapnp(wire.Read<rpc::RangeRequest>(RequestReaderOptions()));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(Describe(*out), Describe(FullRange()));
  }
  {
    Wire wire;
    ToCapnp(FullPut(), wire.Init<rpc::PutRequest>());
    auto out = FromCapnp(wire.Read<rpc::PutRequest>(RequestReaderOptions()));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(Describe(*out), Describe(FullPut()));
  }
  {
    Wire wire;
    ToCapnp(FullDelete(), wire.Init<rpc::DeleteRangeRequest>());
    auto out = FromCapnp(wire.Read<rpc::DeleteRangeRequest>(RequestReaderOptions()));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(Describe(*out), Describe(FullDelete()));
  }
  {
    const mvcc::TxnRequest in = FullTxn(3);
    Wire wire;
    ToCapnp(in, wire.Init<rpc::TxnRequest>());
    auto out = FromCapnp(wire.Read<rpc::TxnRequest>(RequestReaderOptions()));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(Describe(*out), Describe(in));
  }
}

TEST(ConvertValueTest, TxnNestsAsDeepAsTheCoreAllowsAndNoDeeper) {
  for (int depth : {server::kMaxTxnDepth, server::kMaxTxnDepth + 1}) {
    Wire wire;
    ToCapnp(FullTxn(depth), wire.Init<rpc::TxnRequest>());
    auto out = FromCapnp(wire.Read<rpc::TxnRequest>(RequestReaderOptions()));
    if (depth <= server::kMaxTxnDepth) {
      EXPECT_TRUE(out.ok()) << out.status();
      // The core's log codec accepts what the wire accepted.
      server::pb::TxnRequest proto;
      server::ToProto(*out, &proto);
      EXPECT_TRUE(server::FromProto(proto).ok());
    } else {
      ASSERT_FALSE(out.ok());
      EXPECT_EQ(CodeOf(out.status()), ErrorCode::kInvalidArgument);
      EXPECT_NE(out.status().message().find("txn nested deeper than 16"), std::string::npos)
          << out.status();
    }
  }
}

TEST(ConvertValueTest, NestingBeyondTheReadersLimitIsAnErrorNotACrash) {
  // A reader with a lower nesting limit throws inside the decoder, which answers an error.
  capnp::ReaderOptions shallow = RequestReaderOptions();
  shallow.nestingLimit = 8;
  Wire wire;
  ToCapnp(FullTxn(server::kMaxTxnDepth), wire.Init<rpc::TxnRequest>());
  auto out = FromCapnp(wire.Read<rpc::TxnRequest>(shallow));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(CodeOf(out.status()), ErrorCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("too deeply-nested"), std::string::npos) << out.status();
}

TEST(ConvertValueTest, ResponsesSurvive) {
  {
    mvcc::TxnResponse in = FullTxnResponse(12, 2);
    Wire wire;
    ToCapnp(in, wire.Init<rpc::TxnResponse>());
    auto out = FromCapnp(wire.Read<rpc::TxnResponse>(ResponseReaderOptions()), 12);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(Describe(*out), Describe(in));
  }
  {
    mvcc::WatchRequest in;
    in.key = "w";
    in.range_end = "x";
    in.start_revision = 5;
    in.no_put = true;
    in.no_delete = true;
    in.prev_kv = true;
    Wire wire;
    ToCapnp(in, wire.Init<rpc::WatchRequest>());
    auto out = FromCapnp(wire.Read<rpc::WatchRequest>(RequestReaderOptions()));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->key, "w");
    EXPECT_EQ(out->range_end, "x");
    EXPECT_EQ(out->start_revision, 5);
    EXPECT_TRUE(out->no_put && out->no_delete && out->prev_kv);
  }
  {
    mvcc::WatchResponse in;
    in.watch_id = 3;
    in.header_revision = 40;
    mvcc::Event put;
    put.kv = Kv("a", 39);
    put.prev_kv = Kv("a", 30);
    mvcc::Event del;
    del.type = mvcc::Event::Type::kDelete;
    del.kv = Kv("b", 40);
    in.events = {put, del};
    in.created = true;
    in.canceled = true;
    in.compact_revision = 8;
    in.cancel_reason = "why";
    in.progress = true;
    Wire wire;
    ToCapnp(in, wire.Init<rpc::WatchResponse>());
    auto out = FromCapnp(wire.Read<rpc::WatchResponse>(ResponseReaderOptions()));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->watch_id, 3);
    EXPECT_EQ(out->header_revision, 40);
    ASSERT_EQ(out->events.size(), 2u);
    EXPECT_EQ(out->events[0].type, mvcc::Event::Type::kPut);
    EXPECT_EQ(out->events[0].kv, put.kv);
    EXPECT_EQ(out->events[0].prev_kv, put.prev_kv);
    EXPECT_EQ(out->events[1].type, mvcc::Event::Type::kDelete);
    EXPECT_EQ(out->events[1].kv, del.kv);
    EXPECT_FALSE(out->events[1].prev_kv.has_value());
    EXPECT_TRUE(out->created && out->canceled && out->progress);
    EXPECT_EQ(out->compact_revision, 8);
    EXPECT_EQ(out->cancel_reason, "why");
  }
  {
    server::Member in{9, "n9", {"http://a:1", "http://b:2"}, true};
    Wire wire;
    ToCapnp(in, wire.Init<rpc::PeerMember>());
    auto out = FromCapnp(wire.Read<rpc::PeerMember>(PeerReaderOptions()));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(Describe(*out), Describe(in));
  }
}

TEST(ConvertValueTest, StatusKeepsItsCodeAndMessage) {
  for (const absl::Status& in :
       {absl::OkStatus(), Error(ErrorCode::kCompacted, "revision 3 compacted at 5"),
        Error(ErrorCode::kNoLeader, "no leader"), Error(ErrorCode::kStopped, "stopped")}) {
    Wire wire;
    ToCapnp(in, wire.Init<rpc::Status>());
    const absl::Status out = StatusFromCapnp(wire.Read<rpc::Status>(ResponseReaderOptions()));
    EXPECT_EQ(out, in);
    EXPECT_EQ(CodeOf(out), CodeOf(in));
  }
  // A status from outside the code table keeps its canonical code in the text.
  Wire wire;
  ToCapnp(absl::InternalError("disk on fire"), wire.Init<rpc::Status>());
  const absl::Status out = StatusFromCapnp(wire.Read<rpc::Status>(ResponseReaderOptions()));
  EXPECT_EQ(CodeOf(out), ErrorCode::kInvalidArgument);
  EXPECT_NE(out.message().find("INTERNAL: disk on fire"), std::string::npos) << out;
}

TEST(ConvertValueTest, UnknownStatusCodeIsNotOk) {
  Wire wire;
  auto status = wire.Init<rpc::Status>();
  status.setCode("FROM_THE_FUTURE");
  status.setMessage("m");
  const absl::Status out = StatusFromCapnp(wire.Read<rpc::Status>(ResponseReaderOptions()));
  EXPECT_EQ(CodeOf(out), ErrorCode::kInvalidArgument);
  EXPECT_NE(out.message().find("unknown status code FROM_THE_FUTURE"), std::string::npos);
}

TEST(ConvertValueTest, BadEnumsAreRefusedNamingTheField) {
  auto refused = [](const absl::Status& status, const std::string& what) {
    EXPECT_EQ(CodeOf(status), ErrorCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(what), std::string::npos) << status;
  };
  {
    Wire wire;
    auto r = wire.Init<rpc::RangeRequest>();
    r.setSortOrder(3);
    refused(FromCapnp(wire.Read<rpc::RangeRequest>(RequestReaderOptions())).status(),
            "sort order 3");
  }
  {
    Wire wire;
    auto r = wire.Init<rpc::RangeRequest>();
    r.setSortTarget(5);
    refused(FromCapnp(wire.Read<rpc::RangeRequest>(RequestReaderOptions())).status(),
            "sort target 5");
  }
  {
    Wire wire;
    auto t = wire.Init<rpc::TxnRequest>();
    t.initCompare(1)[0].setResult(4);
    refused(FromCapnp(wire.Read<rpc::TxnRequest>(RequestReaderOptions())).status(),
            "compare result 4");
  }
  {
    Wire wire;
    auto t = wire.Init<rpc::TxnRequest>();
    t.initCompare(1)[0].setTarget(5);
    refused(FromCapnp(wire.Read<rpc::TxnRequest>(RequestReaderOptions())).status(),
            "compare target 5");
  }
  {
    // A bad enum inside a nested txn's range.
    Wire wire;
    auto t = wire.Init<rpc::TxnRequest>();
    t.initSuccess(1)[0].initTxn().initFailure(1)[0].initRange().setSortOrder(9);
    refused(FromCapnp(wire.Read<rpc::TxnRequest>(RequestReaderOptions())).status(), "sort order 9");
  }
  {
    Wire wire;
    auto w = wire.Init<rpc::WatchResponse>();
    w.initEvents(1)[0].setType(2);
    refused(FromCapnp(wire.Read<rpc::WatchResponse>(ResponseReaderOptions())).status(),
            "event type 2");
  }
  {
    Wire wire;
    auto a = wire.Init<rpc::Alarm>();
    a.setType(0);
    refused(FromCapnp(wire.Read<rpc::Alarm>(ResponseReaderOptions())).status(), "alarm type 0");
  }
}

// Peer.forward: a leader-only request and the leader's answer survive; anything else, or a
// lease or member id 0, is refused; an error keeps its code and message.
TEST(ConvertPeerTest, ForwardedRequestsAndAnswersSurvive) {
  {
    Wire wire;
    server::Request in;
    in.type = server::RequestType::kLeaseTimeToLive;
    in.lease_id = 42;
    in.token = "t";
    ToCapnp(in, wire.Init<rpc::ForwardRequest>());
    auto out = FromCapnp(wire.Read<rpc::ForwardRequest>(PeerReaderOptions()));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->type, server::RequestType::kLeaseTimeToLive);
    EXPECT_EQ(out->lease_id, 42);
    EXPECT_EQ(out->token, "t");
  }
  for (auto [type, lease, member] :
       {std::tuple{server::RequestType::kPut, int64_t{1}, uint64_t{1}},
        std::tuple{server::RequestType::kLeaseKeepAlive, int64_t{0}, uint64_t{1}},
        std::tuple{server::RequestType::kMemberPromote, int64_t{1}, uint64_t{0}}}) {
    Wire wire;
    server::Request in;
    in.type = type;
    in.lease_id = lease;
    in.member.id = member;
    ToCapnp(in, wire.Init<rpc::ForwardRequest>());
    EXPECT_EQ(CodeOf(FromCapnp(wire.Read<rpc::ForwardRequest>(PeerReaderOptions())).status()),
              ErrorCode::kInvalidArgument);
  }
  {
    Wire wire;
    server::Response in;
    in.lease.id = 42;
    in.lease.granted_ttl_seconds = 100;
    in.lease.remaining_ttl_seconds = 99;
    in.lease.keys = {"a", "b"};
    server::Member m;
    m.id = 7;
    m.name = "n7";
    m.peer_urls = {"http://127.0.0.1:2380"};
    m.client_urls = {"http://127.0.0.1:2379"};
    in.members = {m};
    ToCapnp(in, wire.Init<rpc::ForwardResponse>());
    auto out = FromCapnp(wire.Read<rpc::ForwardResponse>(PeerReaderOptions()),
                         server::RequestType::kLeaseTimeToLive);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(out->status.ok());
    EXPECT_EQ(out->lease.remaining_ttl_seconds, 99);
    EXPECT_EQ(out->lease.keys, (std::vector<std::string>{"a", "b"}));
    ASSERT_EQ(out->members.size(), 1u);
    EXPECT_EQ(out->members[0].client_urls, m.client_urls);
  }
  {
    Wire wire;
    server::Response in;
    in.status = Error(ErrorCode::kLeaseNotFound, "lease 5 not found");
    ToCapnp(in, wire.Init<rpc::ForwardResponse>());
    auto out = FromCapnp(wire.Read<rpc::ForwardResponse>(PeerReaderOptions()),
                         server::RequestType::kLeaseKeepAlive);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(CodeOf(out->status), ErrorCode::kLeaseNotFound);
    EXPECT_EQ(out->status, Error(ErrorCode::kLeaseNotFound, "lease 5 not found"));
  }
}

TEST(ConvertValueTest, WatchRequestCarriesProgressNotify) {
  Wire wire;
  mvcc::WatchRequest in;
  in.key = "k";
  in.progress_notify = true;
  ToCapnp(in, wire.Init<rpc::WatchRequest>());
  auto out = FromCapnp(wire.Read<rpc::WatchRequest>(RequestReaderOptions()));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->key, "k");
  EXPECT_TRUE(out->progress_notify);
}

TEST(ConvertLimitsTest, ReaderOptionsFollowTheNamedLimits) {
  EXPECT_EQ(RequestReaderOptions().traversalLimitInWords,
            (server::kDefaultMaxRequestBytes + kRequestEnvelopeBytes) / 8);
  EXPECT_EQ(RequestReaderOptions(10 << 20).traversalLimitInWords,
            ((10 << 20) + kRequestEnvelopeBytes) / 8);
  EXPECT_EQ(ResponseReaderOptions().traversalLimitInWords, kMaxResponseBytes / 8);
  EXPECT_EQ(PeerReaderOptions().traversalLimitInWords, kMaxPeerMessageBytes / 8);
  EXPECT_EQ(PeerReaderOptions().nestingLimit, kNestingLimit);
}

TEST(ConvertLimitsTest, AMessageBeyondTheTraversalLimitIsAnError) {
  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "big";
  put.put.value = std::string(server::kDefaultMaxRequestBytes + kRequestEnvelopeBytes, 'x');
  Wire wire;
  FillParams(put, wire.Init<rpc::Kv::PutParams>());
  auto out = ToRequest(wire.Read<rpc::Kv::PutParams>(RequestReaderOptions()));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(CodeOf(out.status()), ErrorCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("traversal limit"), std::string::npos) << out.status();
  // Just under the member's own limit passes (the core then judges the request's size).
  put.put.value = std::string(server::kDefaultMaxRequestBytes, 'x');
  Wire small;
  FillParams(put, small.Init<rpc::Kv::PutParams>());
  EXPECT_TRUE(ToRequest(small.Read<rpc::Kv::PutParams>(RequestReaderOptions())).ok());
}

// --- Client methods: request -> params -> request, response -> results -> response ---

template <typename Params>
server::Request RequestRoundTrip(const server::Request& in) {
  Wire wire;
  FillParams(in, wire.Init<Params>());
  absl::StatusOr<server::Request> out = ToRequest(wire.Read<Params>(RequestReaderOptions()));
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : server::Request();
}

// For methods without params.
template <typename Params>
server::Request EmptyRequestRoundTrip() {
  Wire wire;
  wire.Init<Params>();
  absl::StatusOr<server::Request> out = ToRequest(wire.Read<Params>(RequestReaderOptions()));
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : server::Request();
}

template <typename Results>
server::Response ResponseRoundTrip(const server::Response& in) {
  Wire wire;
  FillResults(in, wire.Init<Results>());
  absl::StatusOr<server::Response> out = ToResponse(wire.Read<Results>(ResponseReaderOptions()));
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : server::Response();
}

server::Request RequestOf(server::RequestType type) {
  server::Request r;
  r.type = type;
  return r;
}

server::Response ResponseOf(server::RequestType type) {
  server::Response r;
  r.type = type;
  r.header = {4, 12, 3};
  return r;
}

TEST(ConvertMethodTest, EveryRequestSurvives) {
  using server::RequestType;
  server::Request r = RequestOf(RequestType::kRange);
  r.range = FullRange();
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Kv::RangeParams>(r)), Describe(r));
  r = RequestOf(RequestType::kPut);
  r.put = FullPut();
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Kv::PutParams>(r)), Describe(r));
  r = RequestOf(RequestType::kDeleteRange);
  r.delete_range = FullDelete();
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Kv::DeleteRangeParams>(r)), Describe(r));
  r = RequestOf(RequestType::kTxn);
  r.txn = FullTxn(2);
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Kv::TxnParams>(r)), Describe(r));
  r = RequestOf(RequestType::kCompact);
  r.revision = 33;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Kv::CompactParams>(r)), Describe(r));
  r = RequestOf(RequestType::kLeaseGrant);
  r.ttl_seconds = 60;
  r.lease_id = 5;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Lease::GrantParams>(r)), Describe(r));
  r = RequestOf(RequestType::kLeaseRevoke);
  r.lease_id = 5;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Lease::RevokeParams>(r)), Describe(r));
  r = RequestOf(RequestType::kLeaseKeepAlive);
  r.lease_id = 5;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Lease::KeepAliveParams>(r)), Describe(r));
  r = RequestOf(RequestType::kLeaseTimeToLive);
  r.lease_id = 5;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Lease::TimeToLiveParams>(r)), Describe(r));
  r = RequestOf(RequestType::kMemberAdd);
  r.member.peer_urls = {"http://a:2380", "http://b:2380"};
  r.member.is_learner = true;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Cluster::MemberAddParams>(r)), Describe(r));
  r = RequestOf(RequestType::kMemberRemove);
  r.member.id = 8;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Cluster::MemberRemoveParams>(r)), Describe(r));
  r = RequestOf(RequestType::kMemberPromote);
  r.member.id = 8;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Cluster::MemberPromoteParams>(r)), Describe(r));
  r = RequestOf(RequestType::kMemberReplace);
  r.member.id = 8;
  r.member.peer_urls = {"http://c:2380"};
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Cluster::MemberReplaceParams>(r)), Describe(r));
  r = RequestOf(RequestType::kMemberUpdate);
  r.member.id = 8;
  r.member.peer_urls = {"http://c:2380", "http://d:2380"};
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Cluster::MemberUpdateParams>(r)), Describe(r));
  r = RequestOf(RequestType::kHash);
  r.revision = 17;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Maintenance::HashParams>(r)), Describe(r));
  r = RequestOf(RequestType::kMoveLeader);
  r.member.id = 3;
  EXPECT_EQ(Describe(RequestRoundTrip<rpc::Maintenance::MoveLeaderParams>(r)), Describe(r));

  EXPECT_EQ(Describe(EmptyRequestRoundTrip<rpc::Lease::LeasesParams>()),
            Describe(RequestOf(RequestType::kLeaseLeases)));
  EXPECT_EQ(Describe(EmptyRequestRoundTrip<rpc::Cluster::MemberListParams>()),
            Describe(RequestOf(RequestType::kMemberList)));
  EXPECT_EQ(Describe(EmptyRequestRoundTrip<rpc::Maintenance::DefragmentParams>()),
            Describe(RequestOf(RequestType::kDefragment)));
  EXPECT_EQ(Describe(EmptyRequestRoundTrip<rpc::Maintenance::AlarmListParams>()),
            Describe(RequestOf(RequestType::kAlarmList)));
  EXPECT_EQ(Describe(EmptyRequestRoundTrip<rpc::Maintenance::AlarmDisarmParams>()),
            Describe(RequestOf(RequestType::kAlarmDisarm)));
}

TEST(ConvertMethodTest, KeepAliveOfLeaseZeroIsRefused) {
  Wire wire;
  wire.Init<rpc::Lease::KeepAliveParams>().setId(0);
  auto out = ToRequest(wire.Read<rpc::Lease::KeepAliveParams>(RequestReaderOptions()));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(CodeOf(out.status()), ErrorCode::kInvalidArgument);
}

TEST(ConvertMethodTest, EveryResponseSurvives) {
  using server::RequestType;
  server::Response r = ResponseOf(RequestType::kRange);
  r.range.revision = 12;
  r.range.kvs = {Kv("a", 5), Kv("b", 7)};
  r.range.more = true;
  r.range.count = 10;
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Kv::RangeResults>(r)), Describe(r));

  r = ResponseOf(RequestType::kPut);
  r.put.revision = 12;
  r.put.prev_kv = Kv("a", 5);
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Kv::PutResults>(r)), Describe(r));
  r.put.prev_kv.reset();
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Kv::PutResults>(r)), Describe(r));

  r = ResponseOf(RequestType::kDeleteRange);
  r.delete_range.revision = 12;
  r.delete_range.deleted = 2;
  r.delete_range.prev_kvs = {Kv("a", 5)};
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Kv::DeleteRangeResults>(r)), Describe(r));

  r = ResponseOf(RequestType::kTxn);
  r.txn = FullTxnResponse(12, 2);
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Kv::TxnResults>(r)), Describe(r));

  r = ResponseOf(RequestType::kCompact);
  r.compact.revision = 12;
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Kv::CompactResults>(r)), Describe(r));

  r = ResponseOf(RequestType::kLeaseGrant);
  r.lease = {5, 60, 60, {}};
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Lease::GrantResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kLeaseRevoke);
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Lease::RevokeResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kLeaseTimeToLive);
  r.lease = {5,
             60,
             42,
             {"k1", std::string("k\0"
                                "2",
                                3)}};
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Lease::TimeToLiveResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kLeaseLeases);
  r.leases = {1, 5, 9};
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Lease::LeasesResults>(r)), Describe(r));
  {
    r = ResponseOf(RequestType::kLeaseKeepAlive);
    r.lease.id = 5;
    r.lease.granted_ttl_seconds = 30;
    r.lease.remaining_ttl_seconds = 30;
    Wire wire;
    FillResults(r, wire.Init<rpc::KeepAlive::KeepAliveResults>());
    auto out = ToResponse(wire.Read<rpc::KeepAlive::KeepAliveResults>(ResponseReaderOptions()), 5);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(Describe(*out), Describe(r));
  }

  const std::vector<server::Member> members = {{1, "a", {"http://a:2380"}, false},
                                               {2, "b", {"http://b:2380"}, true}};
  r = ResponseOf(RequestType::kMemberList);
  r.members = members;
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Cluster::MemberListResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kMemberAdd);
  r.member = members[1];
  r.members = members;
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Cluster::MemberAddResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kMemberRemove);
  r.members = members;
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Cluster::MemberRemoveResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kMemberPromote);
  r.members = members;
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Cluster::MemberPromoteResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kMemberReplace);
  r.member = members.back();
  r.members = members;
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Cluster::MemberReplaceResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kMemberUpdate);
  r.members = members;
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Cluster::MemberUpdateResults>(r)), Describe(r));

  r = ResponseOf(RequestType::kHash);
  r.hash = {0xdeadbeefcafe, 12, 4};
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Maintenance::HashResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kDefragment);
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Maintenance::DefragmentResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kAlarmList);
  r.alarms = {{1, server::AlarmType::kNoSpace}, {2, server::AlarmType::kNoSpace}};
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Maintenance::AlarmListResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kAlarmDisarm);
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Maintenance::AlarmDisarmResults>(r)), Describe(r));
  r = ResponseOf(RequestType::kMoveLeader);
  EXPECT_EQ(Describe(ResponseRoundTrip<rpc::Maintenance::MoveLeaderResults>(r)), Describe(r));
}

TEST(ConvertMethodTest, AnErrorCarriesItsStatusAndHeaderOnly) {
  server::Response r = ResponseOf(server::RequestType::kRange);
  r.status = Error(ErrorCode::kCompacted, "revision 2 compacted at 5");
  r.range.kvs = {Kv("a", 5)};  // not sent with an error
  server::Response out = ResponseRoundTrip<rpc::Kv::RangeResults>(r);
  EXPECT_EQ(out.status, r.status);
  EXPECT_EQ(out.header.revision, 12);
  EXPECT_TRUE(out.range.kvs.empty());
}

TEST(ConvertMethodTest, MemberStatusSurvives) {
  MemberStatusInfo in;
  in.id = 4;
  in.leader = 2;
  in.term = 9;
  in.commit_index = 100;
  in.applied_index = 99;
  in.db_size_bytes = 1 << 20;
  in.is_learner = true;
  in.errors = {"memberID:4 alarm:NOSPACE"};
  Wire wire;
  FillResults(in, "1.2.3", wire.Init<rpc::Maintenance::StatusResults>());
  auto out = ToMemberStatus(wire.Read<rpc::Maintenance::StatusResults>(ResponseReaderOptions()));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->status.ok());
  EXPECT_EQ(out->version, "1.2.3");
  EXPECT_EQ(out->member.id, 4u);
  EXPECT_EQ(out->member.leader, 2u);
  EXPECT_EQ(out->member.term, 9u);
  EXPECT_EQ(out->member.commit_index, 100u);
  EXPECT_EQ(out->member.applied_index, 99u);
  EXPECT_EQ(out->member.db_size_bytes, uint64_t{1} << 20);
  EXPECT_TRUE(out->member.is_learner);
  EXPECT_EQ(out->member.errors, in.errors);
}

}  // namespace
}  // namespace kvstore::net
