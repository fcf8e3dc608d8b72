#include "node/member.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/raft/check.h"

namespace kvstore::node {

Member::Member(const MemberOptions& options, mvcc::Backend* backend, const MemberIo& io)
    : options_(options), backend_(backend), io_(io) {}

Member::~Member() = default;

absl::StatusOr<std::unique_ptr<Member>> Member::Open(const MemberOptions& options,
                                                     store::FileSystem* fs,
                                                     const std::string& wal_dir,
                                                     mvcc::Backend* backend, const MemberIo& io,
                                                     std::vector<server::Member> founding) {
  RAFT_CHECK(io.transport != nullptr && io.sync != nullptr && io.sink != nullptr)
      << "member " << options.server.id << ": transport, sync executor and sink are required";
  std::unique_ptr<Member> member(new Member(options, backend, io));
  auto wal = store::Wal::Open(fs, wal_dir, options.wal);
  if (!wal.ok()) return wal.status();
  member->wal_ = std::move(*wal);
  const bool snapshot_has_data = member->wal_->recovery().snapshot_has_data;
  raft::RestartState restart = member->wal_->TakeRecoveredState();
  const bool empty_log = restart.entries.empty() && restart.snapshot == nullptr &&
                         restart.hard_state == raft::HardState{};
  if (empty_log && !founding.empty()) {
    // A founding member: its bootstrap configuration entries are durable before it starts.
    restart = server::BootstrapState(founding);
    raft::PersistRequest bootstrap;
    bootstrap.hard_state = restart.hard_state;
    bootstrap.entries = restart.entries;
    if (absl::Status s = member->wal_->AppendAndSync(bootstrap); !s.ok()) return s;
  } else {
    founding.clear();
  }
  if (snapshot_has_data && restart.snapshot != nullptr) {
    // A snapshot received from a leader; the core restores it when the backend is older
    // (a crash between saving it and applying it), else ignores its data.
    auto data = member->wal_->ReadSnapshotData(restart.snapshot->metadata);
    if (!data.ok()) return data.status();
    auto snapshot = std::make_shared<raft::Snapshot>(*restart.snapshot);
    snapshot->data = std::move(*data);
    restart.snapshot = std::move(snapshot);
  }
  if (io.observer != nullptr) io.observer->OnRecovered(restart);
  auto server =
      server::Server::Create(options.server, backend, std::move(restart), std::move(founding));
  if (!server.ok()) return server.status();
  member->server_ = std::move(*server);
  if (member->server_->IsMemberRemoved(options.server.id)) {
    // etcd's removed member finds out from its peers' 410 Gone and stops; its data dir must go.
    return Error(ErrorCode::kMemberRemoved,
                 absl::StrCat("member ", absl::Hex(options.server.id),
                              " has been permanently removed from the cluster; its data dir "
                              "must be removed before it joins again (as a new member)"));
  }
  // What the core wrote while starting (its members, its request epoch) is durable before it
  // serves anything.
  if (absl::Status s = backend->Flush(); !s.ok()) return s;
  member->compacted_index_ = member->server_->applied_index();
  member->appended_hard_state_ = member->server_->hard_state();
  return member;
}

server::RequestId Member::Submit(server::Request request) {
  const server::RequestId id = server_->Submit(std::move(request));
  Drain();
  return id;
}

absl::Status Member::Step(raft::Message message) {
  absl::Status status = StepDeferred(std::move(message));
  Drain();
  return status;
}

absl::Status Member::StepDeferred(raft::Message message) {
  // kStopped, whatever stopped it: kMemberRemoved answers only for the sender's removal.
  if (stopped()) return Error(ErrorCode::kStopped, failure_.message());
  return server_->Step(std::move(message));
}

void Member::Tick() {
  if (stopped()) return;
  server_->Tick();
  MaybePublish();
  Drain();
}

void Member::MaybePublish() {
  if (options_.name.empty() || publish_id_ != 0) return;
  if (publish_backoff_ticks_ > 0) {
    --publish_backoff_ticks_;
    return;
  }
  // Runs every tick once published: the cheap accessors, not RaftStatus() and Members(), which
  // copy every peer's progress and every member (they were 15% of a simulated seed's CPU).
  if (server_->soft_state().leader == raft::kNoNode) return;
  const server::Member* member = server_->FindMember(options_.server.id);
  // Not (yet) a member as this member's log tells: nothing to publish to.
  if (member == nullptr) return;
  if (member->name == options_.name && member->client_urls == options_.client_urls) return;
  server::Request request;
  request.type = server::RequestType::kMemberPublish;
  request.member.id = member->id;
  request.member.name = options_.name;
  request.member.client_urls = options_.client_urls;
  publish_id_ = server_->Submit(std::move(request));
}

void Member::Drain() {
  if (stopped() || draining_) return;
  draining_ = true;
  while (!stopped() && server_->HasReady()) {
    const server::Ready& ready = server_->GetReady();
    if (!ready.storage_failure.ok()) {
      Stop(ready.storage_failure);
      break;
    }
    if (io_.observer != nullptr) io_.observer->OnReady(ready);
    const raft::Ready& rr = *ready.raft;
    if (rr.persist.id != 0) {
      // A write that only moves the commit index, with every earlier write acknowledged, is
      // acknowledged at once and rides along with the next sync (etcd's MustSync): otherwise
      // each commit would cost a second fsync that the next proposal waits behind.
      const raft::PersistRequest& persist = rr.persist;
      const bool commit_only =
          persist.entries.empty() && persist.snapshot == nullptr &&
          persist.hard_state.has_value() && persist.hard_state->term == appended_hard_state_.term &&
          persist.hard_state->vote == appended_hard_state_.vote && persisted_id_ == appended_id_;
      if (absl::Status s = wal_->Append(persist, /*needs_sync=*/!commit_only); !s.ok()) {
        Stop(s);
        break;
      }
      appended_id_ = persist.id;
      if (persist.hard_state.has_value()) appended_hard_state_ = *persist.hard_state;
      if (commit_only) {
        persisted_id_ = persist.id;
        server_->OnPersisted(persisted_id_);
      }
    }
    for (const raft::Message& message : rr.messages) io_.transport->Send(message);
    for (const server::Response& response : ready.responses) {
      if (publish_id_ != 0 && response.request_id == publish_id_) {
        // The member's own request: a failure (no leader, a timeout) is tried again later.
        publish_id_ = 0;
        if (!response.status.ok()) publish_backoff_ticks_ = 10;
        continue;
      }
      io_.sink->OnResponse(response);
    }
    for (const mvcc::WatchResponse& response : ready.watch_responses) {
      io_.sink->OnWatchResponse(response);
    }
    server_->Advance();
  }
  draining_ = false;
  if (stopped()) return;
  MaybeStopRemoved();
  if (stopped()) return;
  MaybeCompact();
  MaybeStartSync();
}

void Member::MaybeStopRemoved() {
  // A removed leader keeps leading until the remaining voters know the change committed (raft's
  // retirement, RaftState::MaybeFinishRetirement); then it is a follower like any other.
  if (!server_->IsMemberRemoved(options_.server.id) || server_->is_leader()) return;
  StopRemoved(
      Error(ErrorCode::kMemberRemoved, "the member has been permanently removed from the cluster"));
}

void Member::StopRemoved(const absl::Status& why) {
  if (stopped()) return;
  // A leader that applied its own removal is retiring: it must keep leading until the remaining
  // voters know the change committed, though peers that applied it already refuse its messages
  // (fuzz seed 161454: a replaced leader stopped on such a refusal, and a member that had not
  // learned the commit stayed in the joint configuration for good, its old half's quorum gone).
  // It stops once it steps down (MaybeStopRemoved).
  if (server_->is_leader() && server_->IsMemberRemoved(options_.server.id)) return;
  // The removal it applied is made durable, so the data dir is refused at the next start (a
  // removal learned from a peer may not be in it; the peers refuse that member again).
  if (absl::Status s = backend_->Flush(); !s.ok()) {
    return Stop(absl::Status(s.code(), absl::StrCat("backend flush failed: ", s.message())));
  }
  Stop(why.message().empty() ? Error(ErrorCode::kMemberRemoved, "removed from the cluster") : why);
}

void Member::MaybeStartSync() {
  if (stopped() || sync_ != nullptr || !wal_->HasUnsynced()) return;
  auto batch = wal_->StartSync();
  if (!batch.ok()) return Stop(batch.status());
  if (*batch == nullptr) return;
  sync_ = std::move(*batch);
  io_.sync->Start(sync_.get());
}

void Member::OnSyncDone(absl::Status result) {
  RAFT_CHECK(sync_ != nullptr) << "member " << options_.server.id << ": no sync in flight";
  std::unique_ptr<store::Wal::SyncBatch> batch = std::move(sync_);
  if (stopped()) return;
  if (absl::Status s = wal_->FinishSync(*batch, std::move(result)); !s.ok()) return Stop(s);
  if (batch->persist_id() > persisted_id_) {
    persisted_id_ = batch->persist_id();
    server_->OnPersisted(persisted_id_);
  }
  Drain();
  MaybeStartSync();
}

absl::Status Member::FlushBackend() {
  if (stopped()) return failure_;
  if (absl::Status s = backend_->Flush(); !s.ok()) {
    Stop(absl::Status(s.code(), absl::StrCat("backend flush failed: ", s.message())));
  }
  return failure_;
}

void Member::MaybeCompact() {
  const raft::Index applied = server_->applied_index();
  if (applied < compacted_index_ + options_.wal_compact_entries) return;
  const std::optional<raft::Term> term = server_->LogTerm(applied);
  if (!term.has_value()) return;
  // The backend must hold every entry the marker covers durably before the WAL may drop them.
  if (absl::Status s = backend_->Flush(); !s.ok()) return Stop(s);
  raft::SnapshotMetadata mark;
  mark.index = applied;
  mark.term = *term;
  mark.conf_state = server_->RaftConfState();
  if (absl::Status s = wal_->Compact(mark); !s.ok()) return Stop(s);
  compacted_index_ = applied;
}

void Member::Stop(absl::Status why) {
  if (stopped()) return;
  failure_ = absl::Status(why.code(),
                          absl::StrCat("member ", options_.server.id, " stopped: ", why.message()));
  // The error code (CodeOf) stays: hosts tell a removal (kMemberRemoved) from a failure.
  why.ForEachPayload([this](absl::string_view type_url, const absl::Cord& payload) {
    failure_.SetPayload(type_url, payload);
  });
  io_.sink->OnStop(failure_);
}

}  // namespace kvstore::node
