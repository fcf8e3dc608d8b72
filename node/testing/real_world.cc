#include "node/testing/real_world.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "kj/debug.h"
#include "node/crash_process.h"
#include "sim/runner.h"
#include "store/posix_file_system.h"
#include "store/wal.h"

namespace kvstore::node::testing {
namespace {

using sim::pb::DiskFault;
using sim::pb::Expect;
using sim::pb::Step;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Whether `pid` has exited (a zombie not yet reaped by its ChildProcess counts as exited).
bool Exited(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return true;
  const char state = text[paren + 2];
  return state == 'Z' || state == 'X';
}

// Why a real cluster cannot carry out a disk fault; empty when it can.
std::string DiskFaultReason(DiskFault::Kind kind) {
  switch (kind) {
    case DiskFault::TORN_WRITE_CRASH:
    case DiskFault::KILL_MID_WRITE:
    case DiskFault::CORRUPT_RECORD:
    case DiskFault::CORRUPT_OLD_SEGMENT:
    case DiskFault::FSYNC_EIO:
    case DiskFault::WRITE_EIO:
    case DiskFault::DISK_FULL:
    case DiskFault::DISK_SPACE_FREED:
    case DiskFault::DISK_HEALED:
    case DiskFault::SLOW_DISK:
      return "";
    default:
      return "not implemented for a real cluster";
  }
}

// Reads a whole small file ("" when it cannot).
std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Writes `text` at `offset` of `path`; false on failure.
bool WriteAt(const std::string& path, uint64_t offset, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = ::pwrite(fd, text.data(), text.size(), static_cast<off_t>(offset));
  ::close(fd);
  return n == static_cast<ssize_t>(text.size());
}

// The line of `text` holding `needle` ("" if none).
std::string LineWith(const std::string& text, const std::string& needle) {
  const size_t at = text.find(needle);
  if (at == std::string::npos) return "";
  const size_t begin = text.rfind('\n', at);
  const size_t end = text.find('\n', at);
  return text.substr(begin == std::string::npos ? 0 : begin + 1,
                     end == std::string::npos ? std::string::npos : end - begin - 1);
}

// The same, for an expectation this world cannot judge; empty when it can.
std::string ExpectReason(const Expect& expect) {
  switch (expect.check_case()) {
    case Expect::kNoLeader:
    case Expect::kLeaderIn:
    case Expect::kAllAcknowledgedWritesPresent:
    case Expect::kTermOfNodeAtMost:
    case Expect::kTermAtMost:
    case Expect::kRevisionAtLeast:
    case Expect::kHashesEqual:
    case Expect::kVotersAre:
    case Expect::kNospaceAlarm:
    case Expect::kNoAlarm:
      return "";
    case Expect::kVotedNever:
      return "a real member's votes in earlier incarnations are not observable";
    case Expect::kRefusedToStart:
    case Expect::kStoppedOnStorageFailure:
      return "";
    case Expect::kNoJointConfiguration:
    case Expect::kJointConfigurationsAtLeast:
      return "a real member does not report its joint configurations";
    default:
      return "not implemented for a real cluster";
  }
}

}  // namespace

RealWorld::RealWorld(const sim::pb::Options& options, RealWorldOptions real)
    : io_(std::make_unique<Loop>()), real_(std::move(real)), options_(options) {}

absl::StatusOr<std::unique_ptr<RealWorld>> RealWorld::Start(const sim::pb::Options& options,
                                                            RealWorldOptions real) {
  std::unique_ptr<RealWorld> world(new RealWorld(options, std::move(real)));
  ClusterOptions cluster;
  cluster.members = std::max(1, options.voters() > 0 ? options.voters() : 3);
  cluster.name = world->real_.name;
  cluster.heartbeat_ms = world->real_.heartbeat_ms;
  cluster.election_ms = world->real_.election_ms;
  cluster.proxied = true;
  cluster.proxy_seed = options.seed() == 0 ? 1 : options.seed();
  // The knobs a real member takes from the scenario: its quota (the NOSPACE scenarios') and its
  // WAL segment size.
  cluster.quota_backend_bytes = options.knobs().quota_bytes();
  world->wal_segment_bytes_ = options.knobs().wal_segment_bytes() > 0
                                  ? options.knobs().wal_segment_bytes()
                                  : world->real_.wal_segment_bytes;
  // As flags' ETCD_* variables, which every member inherits (Cluster passes its own flags only);
  // --max-request-bytes as large as kvnode takes with the segment (node/config.h:
  // kWalSegmentHeadroomBytes).
  constexpr uint64_t kWalSegmentHeadroomBytes = 4 << 10;
  if (world->wal_segment_bytes_ < 2 * kWalSegmentHeadroomBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("wal_segment_bytes ", world->wal_segment_bytes_, " is below 8 KiB"));
  }
  ::setenv("ETCD_EXPERIMENTAL_WAL_SEGMENT_BYTES", absl::StrCat(world->wal_segment_bytes_).c_str(),
           1);
  ::setenv("ETCD_MAX_REQUEST_BYTES",
           absl::StrCat(world->wal_segment_bytes_ - kWalSegmentHeadroomBytes).c_str(), 1);
  // Every member runs with the fault shim preloaded (inert until its control file arms a fault).
  const std::string shim = crash::RunfilePath("node/libkvfault.so");
  if (::access(shim.c_str(), R_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("no fault shim at ", shim));
  }
  ::setenv("LD_PRELOAD", shim.c_str(), 1);
  // The shim comes before a dynamically linked ASan runtime (gcc's) in the members' library
  // list, which ASan refuses unless told not to check (ignored by other builds).
  const char* asan = std::getenv("ASAN_OPTIONS");
  if (asan == nullptr || !absl::StrContains(asan, "verify_asan_link_order")) {
    ::setenv("ASAN_OPTIONS",
             absl::StrCat(asan == nullptr ? "" : asan, asan == nullptr ? "" : ":",
                          "verify_asan_link_order=0")
                 .c_str(),
             1);
  }
  auto made = Cluster::Create(cluster);
  if (!made.ok()) return made.status();
  world->cluster_ = std::move(*made);
  world->tear_rng_.seed(cluster.proxy_seed);
  if (absl::Status s = world->cluster_->StartAll(); !s.ok()) return s;
  world->started_at_ms_ = SteadyMs();
  for (NodeId id = 1; id <= world->cluster_->size(); ++id) {
    if (!world->RunUntil([&] { return world->Status(id).has_value(); },
                         world->real_.start_timeout_ms)) {
      return absl::DeadlineExceededError(absl::StrCat("n", id, " did not answer within ",
                                                      world->real_.start_timeout_ms,
                                                      " ms of starting:\n", world->MemberLogs()));
    }
  }
  return world;
}

RealWorld::~RealWorld() {
  for (const auto& [id, pid] : paused_) ::kill(pid, SIGCONT);
}

std::string RealWorld::CannotRun(const Step& step) {
  switch (step.action_case()) {
    case Step::kRunMs:
    case Step::kWaitForLeader:
    case Step::kPartition:
    case Step::kHeal:
    case Step::kIsolate:
    case Step::kCrash:
    case Step::kKill:
    case Step::kRestart:
    case Step::kPause:
    case Step::kStartWorkload:
    case Step::kStopWorkload:
    case Step::kRequest:
    case Step::kBlock:
    case Step::kLinkDelay:
    case Step::kRememberNode:
    case Step::kRememberTerm:
    case Step::kRememberRevision:
      return "";
    case Step::kExpect:
      if (step.expect().check_case() == Expect::kRefusedToStart && corruption_skipped_) {
        return "the corruption that would make it refuse was not placed (its step was skipped)";
      }
      return ExpectReason(step.expect());
    case Step::kDiskFault: {
      std::string reason = DiskFaultReason(step.disk_fault().kind());
      if (reason.empty() && step.disk_fault().kind() == DiskFault::CORRUPT_OLD_SEGMENT &&
          !SomeLogHasSeveralSegments()) {
        reason =
            absl::StrCat("no member's WAL has a second segment to corrupt (the scenario's ",
                         "writes have not filled a segment of ", wal_segment_bytes_, " bytes)");
      }
      if (!reason.empty() && (step.disk_fault().kind() == DiskFault::CORRUPT_RECORD ||
                              step.disk_fault().kind() == DiskFault::CORRUPT_OLD_SEGMENT)) {
        corruption_skipped_ = true;
      }
      return reason;
    }
    case Step::kRepairRefused:
      return "";
    case Step::kTickRate:
      return "a real member ticks on the machine's clock: its rate cannot be skewed from outside";
    case Step::kNetwork:
      return "the link proxy has no cluster-wide delay, loss or duplication knob";
    case Step::kWatch:
      return "scenario watches are judged by the simulation's watch checker only";
    default:
      return "not implemented for a real cluster";
  }
}

int64_t RealWorld::now_ms() {
  return static_cast<int64_t>((SteadyMs() - started_at_ms_) / real_.time_scale);
}

void RealWorld::Sleep(int64_t real_ms) {
  // In slices, reading the members' output between them: a member whose stderr pipe fills
  // (say at --log-level info) would block.
  for (int64_t left = std::max<int64_t>(real_ms, 0); left > 0;) {
    const int64_t slice = std::min<int64_t>(left, 100);
    timer().afterDelay(slice * kj::MILLISECONDS).wait(wait_scope());
    left -= slice;
    ReadMemberOutput();
  }
}

void RealWorld::ReadMemberOutput() {
  for (size_t i = 0; i < cluster_->size(); ++i) {
    const ClusterMember& m = cluster_->member(i);
    if (m.process != nullptr) m.process->ReadAvailable();
  }
}

void RealWorld::RunFor(int64_t ms) { Sleep(static_cast<int64_t>(ms * real_.time_scale)); }

bool RealWorld::RunUntil(const std::function<bool()>& done, int64_t max_ms) {
  const int64_t deadline =
      SteadyMs() + static_cast<int64_t>(max_ms * real_.time_scale * real_.wait_slack);
  while (true) {
    if (done()) return true;
    if (SteadyMs() >= deadline) return false;
    Sleep(20);
  }
}

void RealWorld::ApplyLinks() {
  for (NodeId from = 1; from <= cluster_->size(); ++from) {
    for (NodeId to = 1; to <= cluster_->size(); ++to) {
      if (from == to) continue;
      LinkFault fault = LinkFault::Healthy();
      if (blocked_.count({from, to}) > 0) {
        fault = LinkFault::Refused();
      } else if (auto it = delays_ms_.find({from, to}); it != delays_ms_.end()) {
        fault = LinkFault::Delayed(it->second);
      }
      cluster_->proxy()->SetFault(static_cast<int>(IndexOf(from)), static_cast<int>(IndexOf(to)),
                                  fault);
    }
  }
}

void RealWorld::Partition(const std::vector<std::vector<NodeId>>& groups) {
  blocked_.clear();
  std::map<NodeId, size_t> group_of;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (NodeId id : groups[g]) group_of[id] = g + 1;
  }
  for (NodeId a = 1; a <= cluster_->size(); ++a) {
    for (NodeId b = 1; b <= cluster_->size(); ++b) {
      if (a == b) continue;
      const size_t ga = group_of.count(a) ? group_of[a] : 0;
      const size_t gb = group_of.count(b) ? group_of[b] : 0;
      if (ga == 0 || ga != gb) blocked_.insert({a, b});
    }
  }
  ApplyLinks();
}

void RealWorld::BlockLink(NodeId from, NodeId to) {
  if (!Known(from) || !Known(to)) return;
  blocked_.insert({from, to});
  ApplyLinks();
}

void RealWorld::SetLinkDelay(NodeId from, NodeId to, int64_t min_ms, int64_t max_ms) {
  if (!Known(from) || !Known(to)) return;
  // The proxy delays a link by a fixed latency: the middle of the scenario's range.
  delays_ms_[{from, to}] =
      static_cast<int64_t>((min_ms + std::max(min_ms, max_ms)) / 2 * real_.time_scale);
  ApplyLinks();
}

void RealWorld::Heal() {
  blocked_.clear();
  delays_ms_.clear();
  cluster_->proxy()->HealAll();
}

void RealWorld::Isolate(NodeId id) {
  if (!Known(id)) return;
  for (NodeId other = 1; other <= cluster_->size(); ++other) {
    if (other == id) continue;
    blocked_.insert({id, other});
    blocked_.insert({other, id});
  }
  ApplyLinks();
}

void RealWorld::Crash(NodeId id) {
  if (!Known(id)) return;
  paused_.erase(id);
  KillMember(id);
}

void RealWorld::Restart(NodeId id) {
  if (!Known(id) || never_started_.count(id) > 0 || up(id)) return;
  if (absl::Status s = StartMember(id); !s.ok()) {
    violations_.push_back(absl::StrCat("n", id, " could not be restarted: ", s.ToString()));
    return;
  }
  // The simulation's restart recovers at once; a real member is waited for until it serves (or
  // exits).
  (void)RunUntil([&] { return !up(id) || Status(id).has_value(); },
                 static_cast<int64_t>(real_.start_timeout_ms / real_.wait_slack));
}

absl::Status RealWorld::StartMember(NodeId id) {
  KillMember(id);  // reaps an exited process, judging how it ended
  // An injected error belongs to the process it was aimed at; a full disk stays full.
  ArmFault(id, "");
  refused_.erase(id);
  stopped_.erase(id);
  return cluster_->Start(IndexOf(id));
}

void RealWorld::KillMember(NodeId id) {
  if (!Known(id)) return;
  NoteExit(id);
  cluster_->Kill(IndexOf(id));
  exit_noted_.erase(id);
}

void RealWorld::NoteExit(NodeId id) {
  if (!Known(id)) return;
  ClusterMember& m = cluster_->member(IndexOf(id));
  if (m.process == nullptr || exit_noted_.count(id) > 0 || !Exited(m.process->pid())) return;
  exit_noted_.insert(id);
  auto exit = m.process->Wait(crash::Clock::now() + std::chrono::seconds(5));
  if (!exit.ok() || !exit->Exited(1)) return;
  const std::string& err = m.process->stderr_text();
  // The store's file-and-offset error (store/wal.h: Open refuses a corrupt record).
  const std::string corrupt = LineWith(err, "wal: corrupt record in ");
  if (absl::StrContains(corrupt, "cannot start") && absl::StrContains(corrupt, " at offset ")) {
    refused_.insert(id);
    notes_.push_back(absl::StrCat("n", id, " refused to start: ", corrupt));
    // As in the simulation: torn writes and crashes alone must always recover.
    if (corrupted_.count(id) == 0) {
      violations_.push_back(
          absl::StrCat("n", id, " refuses to start on a disk nothing corrupted: ", corrupt));
      return;
    }
    // And the record it names is one the world corrupted (the store found that flip).
    const std::set<std::string>& records = corrupted_records_[id];
    if (std::none_of(records.begin(), records.end(), [&](const std::string& record) {
          return absl::StrContains(corrupt, absl::StrCat("/", record, ":"));
        })) {
      violations_.push_back(absl::StrCat("n", id, " refuses to start naming a record other than ",
                                         absl::StrJoin(records, ", "), ": ", corrupt));
    }
    return;
  }
  for (const char* what : {"\"member stopped\"", "\"cannot start\""}) {
    const std::string line = LineWith(err, what);
    if (absl::StrContains(line, "Input/output error") ||
        absl::StrContains(line, "No space left on device")) {
      stopped_.insert(id);
      notes_.push_back(absl::StrCat("n", id, " stopped on a storage failure: ", line));
      return;
    }
  }
}

std::string RealWorld::WalDir(NodeId id) const {
  return absl::StrCat(cluster_->member(IndexOf(id)).dir, "/member/wal");
}

void RealWorld::ArmFault(NodeId id, const std::string& kind) {
  if (kind.empty()) {
    armed_.erase(id);
  } else {
    armed_[id] = {kind, ++fault_generation_};
  }
  WriteFaults(id);
}

void RealWorld::WriteFaults(NodeId id) {
  // One line per fault (fault_shim.cc): the one-shot error, a full disk, a slow disk. Each keeps
  // the generation it was armed with, so rewriting the file fires nothing again.
  std::string lines;
  if (auto it = armed_.find(id); it != armed_.end()) {
    absl::StrAppend(&lines, it->second.first, " ", it->second.second, "\n");
  }
  if (auto it = disk_full_.find(id); it != disk_full_.end()) {
    absl::StrAppend(&lines, "full ", it->second, "\n");
  }
  if (auto it = disk_latency_ms_.find(id); it != disk_latency_ms_.end()) {
    absl::StrAppend(&lines, "slow 0 ", it->second.first, " ", it->second.second, "\n");
  }
  const std::string path = absl::StrCat(cluster_->member(IndexOf(id)).dir, ".faults");
  if (lines.empty()) {
    ::unlink(path.c_str());
    return;
  }
  // Written whole, then renamed into place: the shim never reads half a file.
  const std::string temporary = absl::StrCat(path, ".new");
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << lines;
  }
  KJ_ASSERT(::rename(temporary.c_str(), path.c_str()) == 0, path);
}

bool RealWorld::SomeLogHasSeveralSegments() {
  store::PosixFileSystem fs;
  for (NodeId id : node_ids()) {
    auto listed = fs.List(WalDir(id));
    if (!listed.ok()) continue;
    const auto segments = std::count_if(listed->begin(), listed->end(), [](const std::string& f) {
      return absl::EndsWith(f, ".wal");
    });
    if (segments > 1) return true;
  }
  return false;
}

bool RealWorld::CorruptRecord(NodeId id, bool oldest_segment) {
  if (!Known(id)) return false;
  // As Simulation::CorruptRecord: a bit flipped in the payload of the middle entry of the log (of
  // its oldest segment), so that records follow it and recovery cannot take it for a torn tail.
  store::PosixFileSystem fs;
  store::WalOptions wal;
  wal.segment_bytes = wal_segment_bytes_;
  auto records = store::ScanWal(&fs, WalDir(id), wal);
  if (!records.ok()) return false;
  const std::optional<store::CorruptionSpot> spot =
      store::PickCorruptionSpot(*records, oldest_segment);
  if (!spot.has_value()) return false;
  const store::WalRecordLocation& victim = *spot->record;
  const uint64_t offset = spot->offset;
  const int fd = ::open(victim.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char byte = 0;
  const ssize_t read = ::pread(fd, &byte, 1, static_cast<off_t>(offset));
  ::close(fd);
  if (read != 1) return false;
  byte = static_cast<char>(byte ^ (1 << 3));
  if (!WriteAt(victim.path, offset, std::string(1, byte))) return false;
  corrupted_.insert(id);
  // By the segment's file name: the member names it under its own spelling of the directory.
  const size_t slash = victim.path.rfind('/');
  corrupted_records_[id].insert(
      absl::StrCat(slash == std::string::npos ? victim.path : victim.path.substr(slash + 1),
                   " at offset ", victim.offset));
  std::set<std::string> segments;
  for (const store::WalRecordLocation& record : *records) segments.insert(record.path);
  notes_.push_back(absl::StrCat("n", id, ": bit 3 flipped at offset ", offset, " of ", victim.path,
                                " (the entry at ", victim.offset, "; the log has ", segments.size(),
                                " segments of ", wal_segment_bytes_, " bytes)"));
  return true;
}

std::string RealWorld::KillInWalFsync(NodeId id, int64_t max_ms) {
  if (!up(id) || Paused(id)) return "";
  const std::string torn_path = absl::StrCat(cluster_->member(IndexOf(id)).dir, ".torn");
  ::unlink(torn_path.c_str());
  ArmFault(id, "tear");
  // The shim kills the process at its next WAL fsync with a write not yet synced.
  (void)RunUntil([&] { return !up(id); }, max_ms);
  ArmFault(id, "");
  const std::string torn = ReadSmallFile(torn_path);
  if (torn.empty()) return "";  // none in flight: the runner crashes or kills it plainly
  // A process the shim fired in just as the wait ended dies now anyway.
  paused_.erase(id);
  KillMember(id);
  ::unlink(torn_path.c_str());
  return torn;
}

bool RealWorld::KillMidWrite(NodeId id, int64_t max_ms) {
  const std::string torn = KillInWalFsync(id, max_ms);
  if (torn.empty()) return false;
  // The page cache keeps the write whole: nothing to tear.
  notes_.push_back(absl::StrCat("n", id, " killed in its WAL fsync with a write not yet synced: ",
                                absl::StripAsciiWhitespace(torn)));
  return true;
}

bool RealWorld::CrashMidWrite(NodeId id, int64_t max_ms) {
  const std::string torn = KillInWalFsync(id, max_ms);
  if (torn.empty()) return false;
  // "<path> <offset> <bytes>": the write in flight. As SimFileSystem::TearFile: half its sectors
  // (at least one) reach the disk, the last of them garbled; the rest of it never does.
  std::vector<std::string> fields = absl::StrSplit(absl::StripAsciiWhitespace(torn), ' ');
  uint64_t offset = 0;
  uint64_t bytes = 0;
  if (fields.size() != 3 || !absl::SimpleAtoi(fields[1], &offset) ||
      !absl::SimpleAtoi(fields[2], &bytes) || bytes == 0) {
    violations_.push_back(
        absl::StrCat("n", id, ": the fault shim's torn write is unreadable: ", torn));
    return true;
  }
  const std::string& path = fields[0];
  const uint64_t sector = store::kSectorBytes;
  const uint64_t first_sector = offset / sector;
  const uint64_t end = offset + bytes;
  const uint64_t sector_count = (end - 1) / sector - first_sector + 1;
  const uint64_t reached_sectors = std::max<uint64_t>(1, sector_count / 2);
  const uint64_t reached_end = std::min(end, (first_sector + reached_sectors) * sector);
  const uint64_t garbled_begin = std::max(offset, (first_sector + reached_sectors - 1) * sector);
  std::string garbled(reached_end - garbled_begin, '\0');
  for (char& c : garbled) c = static_cast<char>(tear_rng_() | 1);
  if (!WriteAt(path, garbled_begin, garbled) ||
      !WriteAt(path, reached_end, std::string(end - reached_end, '\0'))) {
    violations_.push_back(absl::StrCat("n", id, ": could not tear ", path));
    return true;
  }
  notes_.push_back(absl::StrCat("n", id, " killed with a write in flight: ", bytes, " bytes at ",
                                offset, " of ", path, ", torn to ", reached_end - offset,
                                " bytes, the last ", garbled.size(), " garbled"));
  return true;
}

void RealWorld::FailNextWalSync(NodeId id) {
  if (up(id)) ArmFault(id, "fsync_eio");  // aimed at a running process
}

void RealWorld::FailNextWalWrite(NodeId id) {
  if (up(id)) ArmFault(id, "write_eio");
}

void RealWorld::FillDisk(NodeId id) {
  if (!Known(id)) return;
  disk_full_[id] = ++fault_generation_;
  WriteFaults(id);
}

void RealWorld::FreeDisk(NodeId id) {
  if (!Known(id)) return;
  disk_full_.erase(id);
  WriteFaults(id);
}

void RealWorld::HealDisk(NodeId id) {
  if (!Known(id)) return;
  armed_.erase(id);
  disk_full_.erase(id);
  disk_latency_ms_.erase(id);
  WriteFaults(id);
}

void RealWorld::SetDiskLatency(NodeId id, int64_t min_ms, int64_t max_ms) {
  if (!Known(id)) return;
  const auto scaled = [&](int64_t ms) {
    return static_cast<int64_t>(std::max<int64_t>(0, ms) * real_.time_scale);
  };
  disk_latency_ms_[id] = {scaled(min_ms), std::max(scaled(min_ms), scaled(max_ms))};
  WriteFaults(id);
}

bool RealWorld::refused_to_start(NodeId id) {
  NoteExit(id);
  return refused_.count(id) > 0;
}

bool RealWorld::stopped_on_storage_failure(NodeId id) {
  NoteExit(id);
  return stopped_.count(id) > 0;
}

void RealWorld::Pause(NodeId id, int64_t ms) {
  if (!up(id) || Paused(id)) return;
  const pid_t pid = cluster_->member(IndexOf(id)).process->pid();
  ::kill(pid, SIGSTOP);
  const int64_t real_ms = static_cast<int64_t>(ms * real_.time_scale);
  paused_[id] = pid;
  io_->resumes.add(timer()
                       .afterDelay(real_ms * kj::MILLISECONDS)
                       .then([this, id, pid]() {
                         auto it = paused_.find(id);
                         if (it == paused_.end() || it->second != pid) return;
                         ::kill(pid, SIGCONT);
                         paused_.erase(it);
                       })
                       .eagerlyEvaluate(nullptr));
}

bool RealWorld::Paused(NodeId id) { return paused_.count(id) > 0; }

void RealWorld::StartWorkload() {
  if (workload_ != nullptr) return;
  net::ClientOptions client;
  client.endpoints = cluster_->Endpoints();
  client.per_try_timeout = 1 * kj::SECONDS;
  client.endpoint_backoff_min = 100 * kj::MILLISECONDS;
  client.endpoint_backoff_max = 500 * kj::MILLISECONDS;
  auto made = net::Client::Create(io_->io.provider->getNetwork(), timer(), client);
  KJ_ASSERT(made.ok(), made.status().ToString());
  workload_client_ = std::move(*made);
  WorkloadOptions workload;
  if (options_.clients() > 0) workload.clients = options_.clients();
  if (options_.keys() > 0) workload.keys = options_.keys();
  if (options_.seed() != 0) workload.seed = options_.seed();
  workload_ = std::make_unique<HistoryWorkload>(*workload_client_, timer(), workload);
  workload_->Start();
}

void RealWorld::StopWorkload() {
  if (workload_ == nullptr || workload_stopped_) return;
  workload_stopped_ = true;
  workload_->Stop(wait_scope());
}

net::Client& RealWorld::ClientOf(NodeId id) {
  auto it = clients_.find(id);
  if (it != clients_.end()) return *it->second;
  net::ClientOptions options;
  options.endpoints = {cluster_->member(IndexOf(id)).endpoint()};
  // Every wait is bounded here, by the caller's timeout.
  options.per_try_timeout = 30 * kj::SECONDS;
  options.endpoint_backoff_min = 10 * kj::MILLISECONDS;
  options.endpoint_backoff_max = 10 * kj::MILLISECONDS;
  auto made = net::Client::Create(io_->io.provider->getNetwork(), timer(), options);
  KJ_ASSERT(made.ok(), made.status().ToString());
  return *clients_.emplace(id, std::move(*made)).first->second;
}

std::optional<net::MemberStatusInfo> RealWorld::Status(NodeId id) {
  if (!up(id) || Paused(id)) return std::nullopt;
  auto status = ClientOf(id)
                    .StatusAsync(0)
                    .exclusiveJoin(timer()
                                       .afterDelay(real_.status_timeout_ms * kj::MILLISECONDS)
                                       .then([]() -> absl::StatusOr<net::EndpointStatus> {
                                         return absl::DeadlineExceededError("no status in time");
                                       }))
                    .wait(wait_scope());
  if (!status.ok()) return std::nullopt;
  const net::MemberStatusInfo& member = status->member;
  real_ids_[id] = member.id;
  if (member.id != raft::kNoNode && member.leader == member.id) {
    auto [it, inserted] = leader_of_term_.emplace(member.term, member.id);
    if (it->second != member.id) {
      violations_.push_back(absl::StrCat("two leaders in term ", member.term, ": ",
                                         absl::Hex(it->second), " and ", absl::Hex(member.id),
                                         " (n", id, ")"));
    }
  }
  return member;
}

raft::NodeId RealWorld::IdOfUrl(const std::vector<std::string>& peer_urls) const {
  if (peer_urls.empty()) return raft::kNoNode;
  for (size_t i = 0; i < cluster_->size(); ++i) {
    if (cluster_->member(i).peer_url() == peer_urls.front()) return i + 1;
  }
  return raft::kNoNode;
}

absl::StatusOr<std::vector<std::pair<raft::NodeId, server::Member>>> RealWorld::MembersAt(
    NodeId id) {
  if (!up(id) || Paused(id)) return absl::UnavailableError(absl::StrCat("n", id, " is down"));
  server::Request list;
  list.type = server::RequestType::kMemberList;
  auto response =
      ClientOf(id)
          .CallEndpointAsync(0, list)
          .exclusiveJoin(timer()
                             .afterDelay(real_.status_timeout_ms * kj::MILLISECONDS)
                             .then([]() -> absl::StatusOr<server::Response> {
                               return absl::DeadlineExceededError("no member list in time");
                             }))
          .wait(wait_scope());
  if (!response.ok()) return response.status();
  std::vector<std::pair<NodeId, server::Member>> members;
  for (const server::Member& m : response->members) {
    const NodeId sid = IdOfUrl(m.peer_urls);
    if (sid != raft::kNoNode) real_ids_[sid] = m.id;
    members.emplace_back(sid, m);
  }
  return members;
}

raft::NodeId RealWorld::RealId(NodeId id) {
  if (auto it = real_ids_.find(id); it != real_ids_.end()) return it->second;
  for (NodeId at : node_ids()) {
    if (MembersAt(at).ok()) break;
  }
  auto it = real_ids_.find(id);
  return it == real_ids_.end() ? raft::kNoNode : it->second;
}

std::optional<server::Response> RealWorld::Call(NodeId node, server::Request request,
                                                int64_t timeout_ms) {
  if (!up(node)) return std::nullopt;
  const bool adds = request.type == server::RequestType::kMemberAdd ||
                    request.type == server::RequestType::kMemberReplace;
  if (request.member.id != raft::kNoNode) {
    // Scenario ids out, real member ids in (an id no member has stays unknown to the cluster).
    const raft::NodeId real = RealId(request.member.id);
    request.member.id = real == raft::kNoNode ? request.member.id : real;
  }
  if (adds) {
    const NodeId sid = IdOfUrl(request.member.peer_urls);
    if (sid != raft::kNoNode) request.member.name = cluster_->member(IndexOf(sid)).name;
  }
  const int64_t real_ms =
      std::max<int64_t>(1, static_cast<int64_t>(timeout_ms * real_.time_scale * real_.wait_slack));
  bool timed_out = false;
  auto response = ClientOf(node)
                      .CallEndpointAsync(0, std::move(request))
                      .exclusiveJoin(timer().afterDelay(real_ms * kj::MILLISECONDS).then([&]() {
                        timed_out = true;
                        return absl::StatusOr<server::Response>(
                            absl::DeadlineExceededError("no answer in time"));
                      }))
                      .wait(wait_scope());
  if (timed_out) return std::nullopt;
  server::Response out;
  if (!response.ok()) {
    out.status = response.status();
    return out;
  }
  out = std::move(*response);
  if (out.member.id != raft::kNoNode) {
    NodeId sid = IdOfUrl(out.member.peer_urls);
    for (const auto& [scenario_id, real] : real_ids_) {
      if (sid == raft::kNoNode && real == out.member.id) sid = scenario_id;
    }
    if (sid != raft::kNoNode) {
      real_ids_[sid] = out.member.id;
      out.member.id = sid;
    }
  }
  for (server::Alarm& alarm : out.alarms) {
    // The alarm's member by its scenario id (a real id no member slot has stays as it is).
    for (NodeId sid : node_ids()) {
      if (RealId(sid) == alarm.member_id) {
        alarm.member_id = sid;
        break;
      }
    }
  }
  return out;
}

std::string RealWorld::PeerUrlFor(const std::string& name, const std::string& requested) {
  // A slot of the cluster: ports, data directory, a proxy destination. A misconfigured member's
  // slot is never started, so nothing ever listens at its peer URL.
  auto index = cluster_->AddMember();
  KJ_ASSERT(index.ok(), index.status().ToString(), name);
  if (absl::StartsWith(requested, "bad://")) never_started_.insert(*index + 1);
  ApplyLinks();
  return cluster_->member(*index).peer_url();
}

void RealWorld::StartJoiner(NodeId id) {
  if (!Known(id) || never_started_.count(id) > 0 || cluster_->member(IndexOf(id)).running()) {
    return;
  }
  if (absl::Status s = StartMember(id); !s.ok()) {
    violations_.push_back(absl::StrCat("n", id, " could not be started: ", s.ToString()));
    return;
  }
  // The simulation's new member exists at once. A real joiner first asks the cluster for its
  // members (and exits if it reaches none, as etcd does): wait until it serves or exits, so a
  // fault the scenario puts on it next finds a member, not a process still starting.
  (void)RunUntil([&] { return !up(id) || Status(id).has_value(); },
                 static_cast<int64_t>(real_.start_timeout_ms / real_.wait_slack));
}

raft::NodeId RealWorld::Leader() {
  NodeId leader = raft::kNoNode;
  raft::Term best = 0;
  for (NodeId id : node_ids()) {
    std::optional<net::MemberStatusInfo> status = Status(id);
    if (!status.has_value() || status->leader != status->id) continue;
    if (status->term >= best) {
      best = status->term;
      leader = id;
    }
  }
  return leader;
}

std::vector<raft::NodeId> RealWorld::node_ids() {
  std::vector<NodeId> ids;
  for (NodeId id = 1; id <= cluster_->size(); ++id) ids.push_back(id);
  return ids;
}

bool RealWorld::up(NodeId id) {
  if (!Known(id)) return false;
  const ClusterMember& member = cluster_->member(IndexOf(id));
  return member.running() && !Exited(member.process->pid());
}

std::optional<raft::Term> RealWorld::Term(NodeId id) {
  std::optional<net::MemberStatusInfo> status = Status(id);
  if (!status.has_value()) return std::nullopt;
  return status->term;
}

std::optional<int64_t> RealWorld::Revision(NodeId id) {
  // A serializable read answers with the member's own store revision.
  if (!up(id) || Paused(id)) return std::nullopt;
  server::Request read;
  read.type = server::RequestType::kRange;
  read.range.key = "k0";
  read.range.serializable = true;
  auto response = Call(id, read, static_cast<int64_t>(real_.status_timeout_ms / real_.wait_slack));
  if (!response.has_value() || !response->status.ok()) return std::nullopt;
  return response->header.revision;
}

std::vector<raft::NodeId> RealWorld::Voters() {
  for (NodeId id : node_ids()) {
    std::optional<raft::ConfState> conf = ConfState(id);
    if (conf.has_value()) return conf->voters;
  }
  return {};
}

std::optional<raft::ConfState> RealWorld::ConfState(NodeId id) {
  auto members = MembersAt(id);
  if (!members.ok()) return std::nullopt;
  raft::ConfState conf;
  for (const auto& [sid, member] : *members) {
    if (sid == raft::kNoNode) continue;
    (member.is_learner ? conf.learners : conf.voters).push_back(sid);
  }
  std::sort(conf.voters.begin(), conf.voters.end());
  std::sort(conf.learners.begin(), conf.learners.end());
  return conf;
}

std::string RealWorld::CheckHashes() {
  // As the simulation (sim/checkers.cc, AnswerCheckers::CheckHashes): every pair of live members
  // agrees on the store's hash at the lower of their two revisions, unless one has compacted
  // past it. A member that lags (one removed from the cluster keeps its last revision) is
  // compared on its prefix. Members still applying are given up to a second to meet first, so
  // the usual case compares one revision everywhere.
  std::vector<NodeId> live;
  for (NodeId id : node_ids()) {
    if (up(id) && !Paused(id)) live.push_back(id);
  }
  if (live.size() < 2) return "";
  std::map<NodeId, int64_t> revisions;
  (void)RunUntil(
      [&] {
        std::set<int64_t> distinct;
        for (NodeId id : live) {
          revisions[id] = Revision(id).value_or(-1);
          distinct.insert(revisions[id]);
        }
        return distinct.size() == 1;
      },
      static_cast<int64_t>(1000 / real_.wait_slack));
  // Each member hashes each revision once: (id, revision) -> (hash, compact revision).
  std::map<std::pair<NodeId, int64_t>, std::optional<std::pair<uint64_t, int64_t>>> hashes;
  const auto hash_at = [&](NodeId id, int64_t revision) {
    auto it = hashes.find({id, revision});
    if (it != hashes.end()) return it->second;
    server::Request hash;
    hash.type = server::RequestType::kHash;
    hash.revision = revision;
    std::optional<std::pair<uint64_t, int64_t>> result;
    auto response = Call(id, hash, 1000);
    if (response.has_value() && response->status.ok()) {
      result = std::make_pair(response->hash.hash, response->hash.compact_revision);
    }
    hashes.emplace(std::make_pair(id, revision), result);
    return result;
  };
  std::vector<std::string> differ;
  for (size_t i = 0; i + 1 < live.size(); ++i) {
    for (size_t j = i + 1; j < live.size(); ++j) {
      const NodeId a = live[i];
      const NodeId b = live[j];
      const int64_t revision = std::min(revisions[a], revisions[b]);
      if (revision <= 0) continue;  // one did not answer, or holds nothing yet
      const auto ha = hash_at(a, revision);
      const auto hb = hash_at(b, revision);
      // Not hashable there (compacted past it on one side): nothing to compare, as in the
      // simulation.
      if (!ha.has_value() || !hb.has_value() || ha->second != hb->second) continue;
      if (ha->first != hb->first) {
        differ.push_back(absl::StrCat("n", a, " and n", b,
                                      " disagree on the store hash at revision ", revision, " (",
                                      absl::Hex(ha->first), " vs ", absl::Hex(hb->first), ")"));
      }
    }
  }
  return absl::StrJoin(differ, "; ");
}

std::vector<std::string> RealWorld::TakeViolations() { return std::move(violations_); }

sim::History RealWorld::TakeHistory() {
  return workload_ == nullptr ? sim::History() : workload_->history();
}

void RealWorld::Describe(sim::RunResult& result) {
  result.virtual_ms = now_ms();
  for (NodeId id : node_ids()) NoteExit(id);
  for (const std::string& note : notes_) result.transcript.push_back(absl::StrCat("disk: ", note));
  if (workload_ != nullptr) {
    result.transcript.push_back(absl::StrCat("workload: ", workload_->Summary()));
  }
}

std::string RealWorld::MemberLogs() {
  ReadMemberOutput();
  std::string logs;
  for (size_t i = 0; i < cluster_->size(); ++i) {
    const ClusterMember& m = cluster_->member(i);
    if (m.running() && !m.process->stderr_text().empty()) {
      absl::StrAppend(&logs, m.name, " stderr:\n", m.process->stderr_text(), "\n");
    }
  }
  return logs;
}

}  // namespace kvstore::node::testing
