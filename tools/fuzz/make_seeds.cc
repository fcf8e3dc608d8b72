// Writes the seed corpora of the fuzz targets (testdata/fuzz/<target>/seed_*) with the project's
// real encoders, so seeds stay valid as formats evolve: run it again after a format change.
//
//   bazel run //tools/fuzz:make_seeds -- "$PWD/testdata/fuzz"
//
// Seeds are small valid inputs of each shape a decoder accepts; libFuzzer mutates from there.
// Files named crash-* or regression-* beside them are kept inputs that once failed; this tool
// never touches them.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "core/raft/raft.h"
#include "core/raft/types.h"
#include "core/server/codec.h"
#include "core/server/requests.pb.h"
#include "net/client.capnp.h"
#include "net/convert.h"
#include "net/peer.capnp.h"
#include "net/raft_stream.h"
#include "store/sim_file_system.h"
#include "store/snapshot_file.h"
#include "store/wal.h"
#include "tools/fuzz/fuzz_util.h"

namespace kvstore::fuzz {
namespace {

namespace rpc = net::rpc;

std::filesystem::path out_root;
int written = 0;

void Write(const std::string& target, const std::string& name, absl::string_view bytes) {
  const std::filesystem::path dir = out_root / target;
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / ("seed_" + name), std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_seeds: cannot write %s/%s\n", dir.c_str(), name.c_str());
    std::exit(1);
  }
  ++written;
}

void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "make_seeds: %s: %s\n", what, std::string(status.message()).c_str());
    std::exit(1);
  }
}

raft::Entry MakeEntry(raft::Index index, raft::Term term, std::string data) {
  raft::Entry e;
  e.index = index;
  e.term = term;
  e.data = raft::Bytes(data);
  return e;
}

raft::ConfState Conf() {
  raft::ConfState conf;
  conf.voters = {1, 2, 3};
  conf.learners = {4};
  return conf;
}

// --- wal and snapshot_file ----------------------------------------------------------------------

constexpr char kWalDir[] = "/wal";
constexpr uint64_t kSegmentBytes = 8 << 10;  // as wal_fuzzer.cc

// The log's files as a bundle; segments without their preallocated zeros (the fuzzer pads them).
std::string WalBundle(store::SimFileSystem& fs) {
  std::vector<BundleFile> files;
  const std::vector<std::string> names = *fs.List(kWalDir);
  for (const std::string& name : names) {
    std::string content = *fs.DurableContent(store::JoinPath(kWalDir, name));
    if (absl::string_view(name).size() > 4 && name.substr(name.size() - 4) == ".wal") {
      content.erase(content.find_last_not_of('\0') + 1);
    }
    files.push_back(BundleFile{name, content});
  }
  return EncodeBundle(files);
}

void WalSeed(const std::string& name, const std::function<void(store::Wal&)>& write,
             const std::function<void(store::SimFileSystem&)>& damage = nullptr) {
  store::SimFileSystem fs(/*seed=*/1);
  store::WalOptions options;
  options.segment_bytes = kSegmentBytes;
  options.write_buffer_bytes = 4 << 10;
  {
    auto wal = store::Wal::Open(&fs, kWalDir, options);
    Check(wal.status(), "wal open");
    write(**wal);
  }
  if (damage) damage(fs);
  const std::string bundle = WalBundle(fs);
  Write("wal", name, std::string(1, '\0') + bundle);
  Write("wal", name + "_fixcrc", std::string(1, '\1') + bundle);
}

void Persist(store::Wal& wal, uint64_t id, std::vector<raft::Entry> entries,
             raft::HardState hard_state, std::shared_ptr<const raft::Snapshot> snapshot = nullptr) {
  raft::PersistRequest request;
  request.id = id;
  request.entries = entries;
  request.hard_state = hard_state;
  request.snapshot = std::move(snapshot);
  Check(wal.AppendAndSync(request), "wal append");
}

void WalSeeds() {
  WalSeed("empty", [](store::Wal&) {});
  WalSeed("entries", [](store::Wal& wal) {
    Persist(wal, 1, {MakeEntry(1, 1, "a"), MakeEntry(2, 1, "b")}, {1, 1, 1});
    Persist(wal, 2, {MakeEntry(3, 2, "c")}, {2, 2, 2});
    Persist(wal, 3, {MakeEntry(3, 3, "conflicting suffix")}, {3, 1, 2});
  });
  WalSeed("segments", [](store::Wal& wal) {
    for (uint64_t i = 1; i <= 40; ++i) {
      Persist(wal, i, {MakeEntry(i, 1 + i / 10, std::string(300, 'a' + i % 26))},
              {1 + i / 10, 1, i});
    }
  });
  WalSeed("compacted", [](store::Wal& wal) {
    for (uint64_t i = 1; i <= 40; ++i) {
      Persist(wal, i, {MakeEntry(i, 2, std::string(400, 'x'))}, {2, 1, i});
    }
    raft::SnapshotMetadata mark;
    mark.index = 30;
    mark.term = 2;
    mark.conf_state = Conf();
    Check(wal.Compact(mark), "compact");
    Persist(wal, 41, {MakeEntry(41, 2, "after")}, {2, 1, 41});
  });
  WalSeed("snapshot", [](store::Wal& wal) {
    auto snapshot = std::make_shared<raft::Snapshot>();
    snapshot->metadata.index = 10;
    snapshot->metadata.term = 3;
    snapshot->metadata.conf_state = Conf();
    snapshot->data = raft::Bytes(std::string("state machine image"));
    Persist(wal, 1, {MakeEntry(11, 3, "next")}, {3, 2, 10}, snapshot);
  });
  WalSeed(
      "torn_tail",
      [](store::Wal& wal) {
        Persist(wal, 1, {MakeEntry(1, 1, "kept")}, {1, 1, 1});
        Persist(wal, 2, {MakeEntry(2, 1, std::string(600, 't'))}, {1, 1, 1});
      },
      [](store::SimFileSystem& fs) {
        const std::string path = store::JoinPath(kWalDir, (*fs.List(kWalDir)).back());
        std::string content = *fs.DurableContent(path);
        content.erase(content.find_last_not_of('\0') + 1);
        Check(fs.FlipBit(path, content.size() - 100, 3), "flip");
      });
}

void SnapshotFileSeeds() {
  struct Case {
    std::string name;
    raft::ConfState conf;
    std::string data;
  };
  raft::ConfState joint = Conf();
  joint.voters_outgoing = {1, 2, 5};
  joint.learners_next = {5};
  joint.auto_leave = true;
  raft::ConfState single;
  single.voters = {1};
  for (const Case& c : {Case{"single", single, ""}, Case{"learners", Conf(), "data"},
                        Case{"joint", joint, std::string(200, 's')}}) {
    store::SimFileSystem fs(/*seed=*/1);
    Check(fs.CreateDir("/snap"), "mkdir");
    raft::SnapshotMetadata metadata;
    metadata.index = 7;  // as snapshot_file_fuzzer.cc
    metadata.term = 3;
    metadata.conf_state = c.conf;
    Check(store::SaveSnapshotFile(&fs, "/snap", metadata, c.data), "save snapshot");
    const std::string file =
        *fs.DurableContent(store::JoinPath("/snap", store::SnapshotFileName(3, 7)));
    Write("snapshot_file", c.name, std::string(1, '\0') + file);
    Write("snapshot_file", c.name + "_fixcrc", std::string(1, '\1') + file);
  }
}

// --- codec --------------------------------------------------------------------------------------

mvcc::TxnRequest Txn(int depth) {
  mvcc::TxnRequest txn;
  mvcc::Compare compare;
  compare.key = "k";
  compare.target = mvcc::Compare::Target::kVersion;
  compare.result = mvcc::Compare::Result::kGreater;
  compare.number = 1;
  txn.compare.push_back(compare);
  mvcc::RequestOp put;
  put.kind = mvcc::RequestOp::Kind::kPut;
  put.put.key = "k";
  put.put.value = "v";
  txn.success.push_back(put);
  mvcc::RequestOp range;
  range.kind = mvcc::RequestOp::Kind::kRange;
  range.range.key = "a";
  range.range.range_end = "z";
  range.range.limit = 10;
  range.range.sort_order = mvcc::SortOrder::kDescend;
  txn.failure.push_back(range);
  if (depth > 0) {
    mvcc::RequestOp nested;
    nested.kind = mvcc::RequestOp::Kind::kTxn;
    nested.txn = std::make_shared<mvcc::TxnRequest>(Txn(depth - 1));
    txn.success.push_back(nested);
  }
  return txn;
}

void CodecSeeds() {
  server::pb::InternalRequest put;
  put.set_id(1);
  put.set_member_id(2);
  mvcc::PutRequest p;
  p.key = "key";
  p.value = "value";
  p.lease = 5;
  p.prev_kv = true;
  server::ToProto(p, put.mutable_put());
  Write("codec", "put", put.SerializeAsString());

  server::pb::InternalRequest del;
  mvcc::DeleteRangeRequest d;
  d.key = "a";
  d.range_end = "b";
  server::ToProto(d, del.mutable_delete_range());
  Write("codec", "delete_range", del.SerializeAsString());

  server::pb::InternalRequest txn;
  server::ToProto(Txn(3), txn.mutable_txn());
  Write("codec", "txn", txn.SerializeAsString());

  server::pb::InternalRequest lease;
  lease.mutable_lease_grant()->set_id(9);
  lease.mutable_lease_grant()->set_ttl_seconds(60);
  Write("codec", "lease_grant", lease.SerializeAsString());

  server::pb::InternalRequest compaction;
  compaction.mutable_compaction()->set_revision(12);
  Write("codec", "compaction", compaction.SerializeAsString());

  server::pb::MemberChange change;
  change.set_request_id(3);
  change.mutable_member()->set_id(4);
  change.mutable_member()->set_name("n4");
  change.mutable_member()->add_peer_urls("http://127.0.0.1:2380");
  Write("codec", "member_change", change.SerializeAsString());
}

// --- peer_message and client_message -------------------------------------------------------------

template <typename T, typename F>
std::string Capnp(char selector, F&& build) {
  capnp::MallocMessageBuilder builder;
  build(builder.initRoot<T>());
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(1, selector) +
         std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// --- peer_stream ---------------------------------------------------------------------------------

std::string RaftBatchFrame(const std::vector<raft::Message>& messages, bool ack) {
  capnp::MallocMessageBuilder builder;
  auto batch = builder.initRoot<rpc::RaftBatch>();
  batch.setClusterId(77);
  batch.setAckWanted(ack);
  auto list = batch.initMessages(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) net::ToCapnp(messages[i], list[i]);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

std::string RaftAckFrame(uint64_t batches, const std::string& refusal) {
  capnp::MallocMessageBuilder builder;
  auto ack = builder.initRoot<rpc::RaftAck>();
  ack.setBatches(batches);
  if (!refusal.empty()) ack.setRefusal(refusal);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// The first byte is peer_stream_fuzzer.cc's mode: bit 0 acknowledgements, bit 1 the magic added,
// bit 2 the small limit, bits 3-7 the read size's cube root.
void PeerStreamSeeds(const std::vector<raft::Message>& messages) {
  const std::string magic(net::kRaftStreamMagic, sizeof(net::kRaftStreamMagic));
  const std::string frames = RaftBatchFrame({messages[0], messages[1]}, false) +
                             RaftBatchFrame({messages[2], messages[3]}, true) +
                             RaftBatchFrame({}, true);
  Write("peer_stream", "stream", std::string(1, '\0') + magic + frames);
  Write("peer_stream", "frames_read_by_8",
        std::string(1, static_cast<char>(2 | (2 << 3))) + frames);
  Write("peer_stream", "frames_small_limit",
        std::string(1, static_cast<char>(2 | 4 | (5 << 3))) + frames);
  Write("peer_stream", "acks",
        std::string(1, static_cast<char>(1 | (3 << 3))) + RaftAckFrame(1, "") +
            RaftAckFrame(2, "") +
            RaftAckFrame(2, "refused: cluster id mismatch: local 4d, remote 7"));
  // The hostile shapes raft_stream_test names, each after a valid frame.
  const std::string valid = RaftBatchFrame({messages[1]}, false);
  const std::string huge("\0\0\0\0\xff\xff\xff\xff", 8);  // one segment of 2^32 - 1 words
  Write("peer_stream", "huge_length_prefix", std::string(1, '\2') + valid + huge);
  Write("peer_stream", "zero_length_frame", std::string(1, '\2') + valid + std::string(8, '\0'));
  Write("peer_stream", "truncated_frame",
        std::string(1, '\2') + valid + valid.substr(0, valid.size() - 3));
  Write("peer_stream", "garbage_after_frame",
        std::string(1, '\2') + valid + std::string(8, '\x7f') + "garbage");
}

void PeerSeeds() {
  raft::Message app;
  app.type = raft::MessageType::kApp;
  app.to = 2;
  app.from = 1;
  app.term = 3;
  app.log_term = 2;
  app.index = 5;
  app.commit = 5;
  app.entries.push_back(MakeEntry(6, 3, "payload"));
  app.entries.push_back(MakeEntry(7, 3, ""));
  raft::Message heartbeat;
  heartbeat.type = raft::MessageType::kHeartbeat;
  heartbeat.to = 3;
  heartbeat.from = 1;
  heartbeat.term = 3;
  heartbeat.context = raft::Bytes(std::string("read-1"));
  raft::Message vote;
  vote.type = raft::MessageType::kVote;
  vote.to = 1;
  vote.from = 2;
  vote.term = 4;
  vote.log_term = 3;
  vote.index = 7;
  raft::Message reject;
  reject.type = raft::MessageType::kAppResp;
  reject.to = 1;
  reject.from = 2;
  reject.term = 3;
  reject.reject = true;
  reject.reject_hint = 4;
  Write("peer_message", "send", Capnp<rpc::Peer::SendParams>(0, [&](auto params) {
          params.setClusterId(77);
          auto list = params.initMessages(4);
          net::ToCapnp(app, list[0]);
          net::ToCapnp(heartbeat, list[1]);
          net::ToCapnp(vote, list[2]);
          net::ToCapnp(reject, list[3]);
        }));
  PeerStreamSeeds({app, heartbeat, vote, reject});
  raft::Message snap;
  snap.type = raft::MessageType::kSnap;
  snap.to = 2;
  snap.from = 1;
  snap.term = 3;
  auto snapshot = std::make_shared<raft::Snapshot>();
  snapshot->metadata.index = 10;
  snapshot->metadata.term = 3;
  snapshot->metadata.conf_state = Conf();
  snap.snapshot = snapshot;
  Write("peer_message", "send_snapshot", Capnp<rpc::Peer::SendSnapshotParams>(1, [&](auto params) {
          params.setClusterId(77);
          net::ToCapnp(snap, params.initMessage());
        }));
  Write("peer_message", "members", Capnp<rpc::Peer::MembersResults>(2, [&](auto results) {
          auto list = results.initMembers(2);
          server::Member a{1, "n1", {"http://127.0.0.1:12380"}, false};
          server::Member b{4, "n4", {"http://127.0.0.1:42380", "http://[::1]:42380"}, true};
          net::ToCapnp(a, list[0]);
          net::ToCapnp(b, list[1]);
        }));
}

void ClientSeeds() {
  // Selectors: the index of the decoder in client_message_fuzzer.cc's table.
  server::Request range;
  range.type = server::RequestType::kRange;
  range.range.key = "a";
  range.range.range_end = "\0";
  range.range.limit = 5;
  range.range.keys_only = true;
  Write("client_message", "range",
        Capnp<rpc::Kv::RangeParams>(0, [&](auto p) { net::FillParams(range, p); }));
  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "k";
  put.put.value = "v";
  put.put.lease = 3;
  Write("client_message", "put",
        Capnp<rpc::Kv::PutParams>(1, [&](auto p) { net::FillParams(put, p); }));
  server::Request del;
  del.type = server::RequestType::kDeleteRange;
  del.delete_range.key = "a";
  del.delete_range.range_end = "c";
  Write("client_message", "delete_range",
        Capnp<rpc::Kv::DeleteRangeParams>(2, [&](auto p) { net::FillParams(del, p); }));
  server::Request txn;
  txn.type = server::RequestType::kTxn;
  txn.txn = Txn(2);
  Write("client_message", "txn",
        Capnp<rpc::Kv::TxnParams>(3, [&](auto p) { net::FillParams(txn, p); }));
  server::Request grant;
  grant.type = server::RequestType::kLeaseGrant;
  grant.ttl_seconds = 30;
  Write("client_message", "lease_grant",
        Capnp<rpc::Lease::GrantParams>(5, [&](auto p) { net::FillParams(grant, p); }));
  server::Request add;
  add.type = server::RequestType::kMemberAdd;
  add.member.name = "n4";
  add.member.peer_urls = {"http://127.0.0.1:42380"};
  add.member.is_learner = true;
  Write("client_message", "member_add",
        Capnp<rpc::Cluster::MemberAddParams>(11, [&](auto p) { net::FillParams(add, p); }));
  mvcc::WatchRequest watch;
  watch.key = "w";
  watch.range_end = "x";
  watch.start_revision = 4;
  watch.prev_kv = true;
  Write("client_message", "watch",
        Capnp<rpc::WatchRequest>(19, [&](auto r) { net::ToCapnp(watch, r); }));

  server::Response ranged;
  ranged.type = server::RequestType::kRange;
  ranged.header = {1, 9, 2};
  mvcc::KeyValue kv;
  kv.key = "a";
  kv.value = "1";
  kv.create_revision = 2;
  kv.mod_revision = 9;
  kv.version = 3;
  ranged.range.kvs = {kv, kv};
  ranged.range.more = true;
  ranged.range.count = 7;
  Write("client_message", "range_results",
        Capnp<rpc::Kv::RangeResults>(20, [&](auto r) { net::FillResults(ranged, r); }));
  server::Response failed;
  failed.type = server::RequestType::kTxn;
  failed.status = absl::InvalidArgumentError("too many operations in txn request");
  Write("client_message", "txn_results_error",
        Capnp<rpc::Kv::TxnResults>(23, [&](auto r) { net::FillResults(failed, r); }));
  server::Response members;
  members.type = server::RequestType::kMemberList;
  members.members = {server::Member{1, "n1", {"http://127.0.0.1:12380"}, false}};
  Write("client_message", "member_list_results",
        Capnp<rpc::Cluster::MemberListResults>(29, [&](auto r) { net::FillResults(members, r); }));
  mvcc::WatchResponse events;
  events.watch_id = 2;
  events.header_revision = 9;
  mvcc::Event event;
  event.kv = kv;
  event.prev_kv = kv;
  events.events = {event};
  Write("client_message", "watch_response",
        Capnp<rpc::WatchResponse>(40, [&](auto r) { net::ToCapnp(events, r); }));
}

// --- history, scenario, config ------------------------------------------------------------------

void TextSeeds() {
  Write("history", "race",
        "# two clients race on key x\n"
        "@10 0 invoke write x 1\n"
        "@11 1 invoke read  x nil\n"
        "@12 0 ok     write x 1\n"
        "@14 1 ok     read  x 1\n"
        "@15 0 invoke cas   x 1->2\n"
        "@19 0 fail   cas   x 1->2\n"
        "@20 1 invoke append x ab\n"
        "@25 1 info   append x ab\n");
  Write("history", "refused",
        "0 invoke write x 1\n0 ok write x 1\n1 invoke cas x 1->2\n2 invoke write x 3\n"
        "2 ok write x 3\n1 refused cas x 1->2\n3 invoke cas x nil->4\n3 refused cas x nil->4\n");
  Write("history", "not_linearizable",
        "0 invoke write k a\n0 ok write k a\n1 invoke read k nil\n1 ok read k b\n"
        "2 invoke delete k nil\n2 ok delete k nil\n3 invoke get k nil\n");
  Write("history", "register",
        "0 invoke put r 1\n1 invoke cas r nil->2\n0 ok put r 1\n1 ok cas r nil->2\n"
        "2 invoke read r nil\n2 ok read r 2\n");

  Write("config", "default", "");
  Write("config", "cluster",
        "--name\nn1\n--data-dir=/tmp/n1\n--initial-cluster\n"
        "n1=http://127.0.0.1:12380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380\n"
        "--listen-client-urls=http://127.0.0.1:12379\n--listen-peer-urls=http://127.0.0.1:12380\n"
        "--initial-advertise-peer-urls=http://127.0.0.1:12380\n--initial-cluster-state=new\n"
        "--heartbeat-interval=50\n--election-timeout=500\n--snapshot-count=1000\n");
  Write("config", "environment",
        "ETCD_NAME=n2\nETCD_INITIAL_CLUSTER_TOKEN=tok\nETCD_QUOTA_BACKEND_BYTES=1048576\n"
        "--max-request-bytes=2097152\n--log-level=debug\n--initial-cluster-state=existing\n");
  Write("config", "bad_url", "--listen-client-urls=https://[::1]:99999\n");
}

void ScenarioSeeds(const std::filesystem::path& workspace) {
  // The smallest scenarios of the suite: each a valid file using different steps.
  std::vector<std::pair<uintmax_t, std::filesystem::path>> files;
  for (const auto& entry : std::filesystem::directory_iterator(workspace / "testdata/scenarios")) {
    if (entry.path().extension() == ".textproto") {
      files.emplace_back(entry.file_size(), entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (size_t i = 0; i < files.size() && i < 8; ++i) {
    std::ifstream in(files[i].second, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Write("scenario", files[i].second.stem().string(), text);
  }
}

}  // namespace
}  // namespace kvstore::fuzz

int main(int argc, char** argv) {
  using namespace kvstore::fuzz;
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  if (argc != 2 || workspace == nullptr) {
    std::fprintf(stderr, "usage: bazel run //tools/fuzz:make_seeds -- \"$PWD/testdata/fuzz\"\n");
    return 2;
  }
  out_root = argv[1];
  WalSeeds();
  SnapshotFileSeeds();
  CodecSeeds();
  PeerSeeds();
  ClientSeeds();
  TextSeeds();
  ScenarioSeeds(workspace);
  std::printf("make_seeds: wrote %d seeds under %s\n", written, out_root.c_str());
  return 0;
}
