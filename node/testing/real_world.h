#ifndef KVSTORE_NODE_TESTING_REAL_WORLD_H_
#define KVSTORE_NODE_TESTING_REAL_WORLD_H_

// A cluster of real kvnode processes on loopback as a world a scenario runs in (sim/world.h), so
// the scenario files of testdata/scenarios run through the simulator's own runner
// (sim::RunScenarioIn) against real members (issue 13 §6).
//
// What each step becomes:
//   - crash and kill: kill -9 (Cluster::Kill; a real machine's power is not cut, so a crash of
//     a member already down does nothing); restart: the member's process again on its data
//     directory, waited for until it answers Maintenance.status (the simulation's restart is
//     instant);
//   - pause: SIGSTOP, and SIGCONT after the pause (messages to it wait in the kernel's buffers);
//   - partition, isolate, block, link_delay, heal: faults of the per-link proxy (link_proxy.h):
//     a cut is a refused link (connections reset), a delay the middle of the scenario's range;
//   - start_workload / stop_workload: the HistoryWorkload's clients (puts and linearizable gets
//     with failover), whose history the runner's linearizability check judges;
//   - request: one call to the member's own client URL (followers forward leader-only requests);
//     member adds get a member slot of the Cluster, whose process StartJoiner starts, and a
//     "bad://" URL a slot that is never started (nothing listens at its peer URL);
//   - observation: Maintenance.status of each running member (leader, term, revision), the
//     member list (voters), and store hashes compared at one revision (hashes_equal).
//   - options: knobs.quota_bytes becomes every member's --quota-backend-bytes (the NOSPACE
//     runbook's scenario), knobs.wal_segment_bytes (else RealWorldOptions::wal_segment_bytes,
//     32 KiB) its --experimental-wal-segment-bytes, with --max-request-bytes 4 KiB below it
//     (node/config.h's bound); the other knobs are the simulation's. Small segments, as in the
//     simulation, so that a scenario's writes fill several and an old one can be corrupted.
//   - storage faults, as the simulator's disk (store/sim_file_system.h) does them, on the
//     member's real files. Every member runs with the fault shim preloaded (fault_shim.cc:
//     LD_PRELOAD=libkvfault.so), which reads <data-dir>.faults:
//       CORRUPT_RECORD / CORRUPT_OLD_SEGMENT: a bit flipped in the payload of the middle entry of
//         the member's WAL (of its oldest segment), found with store::ScanWal and chosen by
//         store::PickCorruptionSpot as in the simulation, running or not;
//       TORN_WRITE_CRASH: the shim kills the member (SIGKILL) at its next WAL fsync with a write
//         not yet synced, and the world tears that write as SimFileSystem::TearFile does (half its
//         sectors kept, the last of them garbled, the rest zeros); none in flight within the
//         wait: not placed (the runner crashes it plainly). Unlike the simulation's power loss,
//         the kill keeps every other unsynced write (the page cache survives a process);
//       KILL_MID_WRITE: the same kill in the fsync, and the write stays whole (none in flight
//         within the wait: the runner kills it plainly);
//       WRITE_EIO / FSYNC_EIO: the shim fails the process's next WAL write / fsync with EIO (an
//         armed error belongs to the process: a crash or restart disarms it);
//       DISK_FULL: the shim refuses with ENOSPC whatever grows a file of the data directory by
//         more than 4 KiB in all (a real full disk: the WAL's preallocated segment takes writes,
//         the next segment and the backend's growing file do not); DISK_SPACE_FREED lifts it;
//       SLOW_DISK: the shim delays each WAL fsync by [latency/2, latency] (time_scale'd);
//       DISK_HEALED: room, no slow disk, no armed error left.
//     refused_to_start: the member's last start exited 1 with the store's corruption error
//     ("wal: corrupt record in <file> at offset <n>") on stderr, naming a record the world
//     corrupted (another one is a violation); stopped_on_storage_failure: the
//     process started last exited 1 having logged "member stopped" (or "cannot start") with an
//     I/O error (EIO or ENOSPC). As in the simulation, a refusal on a disk nothing corrupted on
//     purpose (torn writes and crashes only) is a violation.
// Steps a real cluster cannot do (corrupting an old segment when every member's log still has
// one segment, and then the refusal it would cause; skewing a member's tick rate, the
// simulation's network knobs, its watch checker, votes over incarnations, joint-configuration
// counts) are refused in CannotRun, which the runner reports as skipped by name.
//
// Standing checker: every status answer goes into an election record; two leaders of one term
// are a violation.
//
// Time: real milliseconds. A fixed wait (run_ms, a pause) lasts time_scale times the scenario's
// milliseconds; a wait for something (a leader, a request's answer) may take wait_slack times
// as long, since it ends as soon as it is met and real members are slower than virtual ones.
//
// Threads: everything runs on the calling thread's kj event loop (which the world creates), and
// the proxy on its own thread.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "node/testing/cluster.h"
#include "node/testing/history_workload.h"
#include "sim/scenario.pb.h"
#include "sim/world.h"

namespace kvstore::node::testing {

struct RealWorldOptions {
  std::string name = "scenario";  // the data directories' folder and the cluster token
  int64_t heartbeat_ms = 50;
  int64_t election_ms = 400;
  double time_scale = 1.0;
  double wait_slack = 3.0;
  // Bounds of one status poll and of a restarted member's start.
  int64_t status_timeout_ms = 500;
  int64_t start_timeout_ms = 10000;
  // Every member's --experimental-wal-segment-bytes when the scenario's knobs set none: twice
  // the simulation's 16 KiB (sim/simulation.h), which would leave --max-request-bytes below the
  // NOSPACE runbook's 16 KiB puts. wal_old_segment_corruption's 4 s of writes filled 8 here.
  uint64_t wal_segment_bytes = 32 << 10;
};

class RealWorld : public sim::ScenarioWorld {
 public:
  // Starts options.voters() members (at least 1), proxied, and waits until each answers.
  static absl::StatusOr<std::unique_ptr<RealWorld>> Start(const sim::pb::Options& options,
                                                          RealWorldOptions real);
  ~RealWorld() override;

  std::string CannotRun(const sim::pb::Step& step) override;

  int64_t now_ms() override;
  void RunFor(int64_t ms) override;
  bool RunUntil(const std::function<bool()>& done, int64_t max_ms) override;

  void Partition(const std::vector<std::vector<NodeId>>& groups) override;
  void BlockLink(NodeId from, NodeId to) override;
  void SetLinkDelay(NodeId from, NodeId to, int64_t min_ms, int64_t max_ms) override;
  void Heal() override;
  void Isolate(NodeId id) override;
  void Crash(NodeId id) override;
  void Kill(NodeId id) override { Crash(id); }  // SIGKILL either way
  void Restart(NodeId id) override;
  void Pause(NodeId id, int64_t ms) override;
  bool CorruptRecord(NodeId id, bool oldest_segment) override;
  bool CrashMidWrite(NodeId id, int64_t max_ms) override;
  bool KillMidWrite(NodeId id, int64_t max_ms) override;
  void FailNextWalSync(NodeId id) override;
  void FailNextWalWrite(NodeId id) override;
  void FillDisk(NodeId id) override;
  void FreeDisk(NodeId id) override;
  void HealDisk(NodeId id) override;
  void SetDiskLatency(NodeId id, int64_t min_ms, int64_t max_ms) override;

  void StartWorkload() override;
  void StopWorkload() override;
  std::optional<server::Response> Call(NodeId node, server::Request request,
                                       int64_t timeout_ms) override;
  std::string PeerUrlFor(const std::string& name, const std::string& requested) override;
  void StartJoiner(NodeId id) override;

  NodeId Leader() override;
  std::vector<NodeId> node_ids() override;
  bool up(NodeId id) override;
  std::optional<raft::Term> Term(NodeId id) override;
  std::optional<int64_t> Revision(NodeId id) override;
  std::vector<NodeId> Voters() override;
  std::optional<raft::ConfState> ConfState(NodeId id) override;
  std::string CheckHashes() override;
  bool refused_to_start(NodeId id) override;
  bool stopped_on_storage_failure(NodeId id) override;

  std::vector<std::string> TakeViolations() override;
  sim::History TakeHistory() override;
  void Describe(sim::RunResult& result) override;

  Cluster& cluster() { return *cluster_; }
  // Each running member's stderr, for a failure message.
  std::string MemberLogs();

 private:
  RealWorld(const sim::pb::Options& options, RealWorldOptions real);
  // Scenario ids are member indexes + 1.
  static size_t IndexOf(NodeId id) { return static_cast<size_t>(id - 1); }
  bool Known(NodeId id) const { return id >= 1 && id <= cluster_->size(); }
  bool Paused(NodeId id);
  kj::WaitScope& wait_scope() { return io_->io.waitScope; }
  kj::Timer& timer() { return io_->io.provider->getTimer(); }
  void Sleep(int64_t real_ms);
  // Reads what the members wrote (ChildProcess::ReadAvailable).
  void ReadMemberOutput();
  // The client of member `id`'s own endpoint (made on first use).
  net::Client& ClientOf(NodeId id);
  // Maintenance.status of member `id` within the status timeout; records leaders by term.
  std::optional<net::MemberStatusInfo> Status(NodeId id);
  // The member list at `id`, with scenario ids (0 for a peer URL no member slot has).
  absl::StatusOr<std::vector<std::pair<NodeId, server::Member>>> MembersAt(NodeId id);
  NodeId IdOfUrl(const std::vector<std::string>& peer_urls) const;
  // The real member id of scenario id `id` (0 if no member list knows it yet).
  raft::NodeId RealId(NodeId id);
  // Re-applies the link faults: blocked links refused, delayed links delayed.
  void ApplyLinks();
  // Storage faults: member `id`'s WAL directory, and its one-shot error `kind` armed ("" disarms
  // it; a full or slow disk stays so).
  std::string WalDir(NodeId id) const;
  void ArmFault(NodeId id, const std::string& kind);
  // Arms the shim's "tear", so that the member kills itself in its next WAL fsync with a write
  // not yet synced, and waits up to `max_ms` for it: the shim's "<path> <offset> <bytes>" of
  // that write, or empty when none came (the member is then still up).
  std::string KillInWalFsync(NodeId id, int64_t max_ms);
  // Writes the shim's control file from the faults armed, full and slow disks.
  void WriteFaults(NodeId id);
  // Starts member `id`'s process (its last start's outcome forgotten).
  absl::Status StartMember(NodeId id);
  // Reaps member `id`'s process if it has exited, and judges how it ended (refused_, stopped_).
  void NoteExit(NodeId id);
  // Kills (if running) and reaps member `id`'s process, noting how it ended first.
  void KillMember(NodeId id);
  // Whether some member's WAL has more than one segment (CORRUPT_OLD_SEGMENT needs one).
  bool SomeLogHasSeveralSegments();

  // kj's objects have throwing destructors: kept behind a pointer, destroyed last.
  struct Loop {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    kj::Vector<kj::Promise<void>> resumes;  // SIGCONTs of paused members, due
  };
  std::unique_ptr<Loop> io_;
  RealWorldOptions real_;
  sim::pb::Options options_;
  uint64_t wal_segment_bytes_ = 0;  // the members' --experimental-wal-segment-bytes
  int64_t started_at_ms_ = 0;       // steady clock
  std::unique_ptr<Cluster> cluster_;
  std::map<NodeId, std::unique_ptr<net::Client>> clients_;
  std::unique_ptr<net::Client> workload_client_;
  std::unique_ptr<HistoryWorkload> workload_;
  bool workload_stopped_ = false;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  std::map<std::pair<NodeId, NodeId>, int64_t> delays_ms_;
  // Paused members: the process stopped.
  std::map<NodeId, pid_t> paused_;
  std::map<NodeId, raft::NodeId> real_ids_;
  std::set<NodeId> never_started_;  // "bad://" members
  std::map<raft::Term, raft::NodeId> leader_of_term_;
  std::vector<std::string> violations_;
  // Storage faults.
  int64_t fault_generation_ = 0;
  std::map<NodeId, std::pair<std::string, int64_t>> armed_;        // one-shot kind, generation
  std::map<NodeId, int64_t> disk_full_;                            // the fault's generation
  std::map<NodeId, std::pair<int64_t, int64_t>> disk_latency_ms_;  // slow disks: [min, max] ms
  std::set<NodeId> corrupted_;  // a record corrupted on purpose (a refusal is then expected)
  // The records corrupted, as the store's refusal names them: "<segment file name> at offset
  // <n>".
  std::map<NodeId, std::set<std::string>> corrupted_records_;
  std::set<NodeId> refused_;     // its last start refused a corrupt WAL
  std::set<NodeId> stopped_;     // its last process stopped on a storage failure
  std::set<NodeId> exit_noted_;  // its last process's end was judged
  bool corruption_skipped_ = false;
  std::mt19937_64 tear_rng_{1};     // the garbled bytes of a torn write
  std::vector<std::string> notes_;  // what the storage faults did, for the transcript
};

}  // namespace kvstore::node::testing

#endif  // KVSTORE_NODE_TESTING_REAL_WORLD_H_
