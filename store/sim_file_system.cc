#include "store/sim_file_system.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/raft/check.h"

namespace kvstore::store {
namespace {

// strerror's words with the errno name, as PosixFileSystem writes them, so a message reads the
// same from either implementation.
constexpr absl::string_view kNoEntry = "No such file or directory (ENOENT)";
constexpr absl::string_view kExists = "File exists (EEXIST)";
constexpr absl::string_view kIsDirectory = "Is a directory (EISDIR)";
constexpr absl::string_view kNotDirectory = "Not a directory (ENOTDIR)";
constexpr absl::string_view kBadHandle = "Bad file descriptor (EBADF): opened read-only";
constexpr absl::string_view kNoSpace = "No space left on device (ENOSPC)";

std::string Message(absl::string_view operation, absl::string_view path, absl::string_view error) {
  return absl::StrCat(operation, " ", path, ": ", error);
}

// Independent generators from one seed (see SimFileSystem's members).
enum class Stream : uint64_t { kFault = 1, kCrash, kCorruption, kLatency };

raft::SplitMix64 StreamGenerator(uint64_t seed, Stream stream) {
  return raft::SplitMix64(seed ^ raft::SplitMix64::Mix(static_cast<uint64_t>(stream)));
}

// What reaches the disk of the write at a file's crash cut point.
enum class CutOutcome : uint8_t { kLost, kWhole, kTorn };

}  // namespace

// --- Content ---

void SimFileSystem::Content::Write(uint64_t offset, std::shared_ptr<const std::string> buffer) {
  const uint64_t size = buffer->size();
  WritePiece(offset, Piece{offset, std::move(buffer), 0, size});
}

void SimFileSystem::Content::Write(uint64_t offset, std::string bytes) {
  Write(offset, std::make_shared<const std::string>(std::move(bytes)));
}

size_t SimFileSystem::Content::FirstEndingAfter(uint64_t offset) const {
  // Pieces never overlap, so their ends are in order too.
  return std::partition_point(
             pieces_.begin(), pieces_.end(),
             [&](const Piece& piece) { return piece.offset + piece.size <= offset; }) -
         pieces_.begin();
}

void SimFileSystem::Content::WritePiece(uint64_t offset, Piece piece) {
  if (piece.size == 0) return;
  const uint64_t end = offset + piece.size;
  size_bytes_ = std::max(size_bytes_, end);
  // An append (the common case): past every piece.
  if (pieces_.empty() || pieces_.back().offset + pieces_.back().size <= offset) {
    pieces_.push_back(std::move(piece));
    return;
  }
  // Pieces [first, last) overlap [offset, end): replaced by the head of the first before
  // `offset`, the new piece, and the tail of the last past `end`.
  const size_t first = FirstEndingAfter(offset);
  size_t last = first;
  while (last < pieces_.size() && pieces_[last].offset < end) ++last;
  std::vector<Piece> replacement;
  if (first < last && pieces_[first].offset < offset) {
    Piece head = pieces_[first];
    head.size = offset - head.offset;
    replacement.push_back(std::move(head));
  }
  replacement.push_back(std::move(piece));
  if (first < last) {
    const Piece& before_tail = pieces_[last - 1];
    const uint64_t tail_end = before_tail.offset + before_tail.size;
    if (tail_end > end) {
      Piece tail = before_tail;
      tail.begin += end - tail.offset;
      tail.size = tail_end - end;
      tail.offset = end;
      replacement.push_back(std::move(tail));
    }
  }
  pieces_.erase(pieces_.begin() + first, pieces_.begin() + last);
  pieces_.insert(pieces_.begin() + first, std::make_move_iterator(replacement.begin()),
                 std::make_move_iterator(replacement.end()));
}

std::string SimFileSystem::Content::Read(uint64_t offset, uint64_t size) const {
  if (offset >= size_bytes_) return "";
  const uint64_t end = offset + std::min(size, size_bytes_ - offset);
  std::string out(end - offset, '\0');
  for (size_t i = FirstEndingAfter(offset); i < pieces_.size() && pieces_[i].offset < end; ++i) {
    const Piece& piece = pieces_[i];
    const uint64_t copy_begin = std::max(offset, piece.offset);
    const uint64_t copy_end = std::min(end, piece.offset + piece.size);
    if (copy_begin >= copy_end) continue;
    std::memcpy(out.data() + (copy_begin - offset),
                piece.buffer->data() + piece.begin + (copy_begin - piece.offset),
                copy_end - copy_begin);
  }
  return out;
}

void SimFileSystem::Content::Resize(uint64_t size_bytes) {
  if (size_bytes < size_bytes_) {
    while (!pieces_.empty() && pieces_.back().offset >= size_bytes) pieces_.pop_back();
    if (!pieces_.empty()) {
      Piece& piece = pieces_.back();
      if (piece.offset + piece.size > size_bytes) piece.size = size_bytes - piece.offset;
    }
  }
  size_bytes_ = size_bytes;
}

void SimFileSystem::Content::FlipBit(uint64_t offset, int bit) {
  RAFT_CHECK(offset < size_bytes_) << "flip at " << offset << " of " << size_bytes_ << " bytes";
  const size_t i = FirstEndingAfter(offset);
  if (i < pieces_.size() && pieces_[i].offset <= offset) {
    // The buffer may be shared with other versions of the file: this one gets its own copy.
    Piece& piece = pieces_[i];
    std::string bytes(piece.view());
    bytes[offset - piece.offset] ^= static_cast<char>(1 << bit);
    piece.buffer = std::make_shared<const std::string>(std::move(bytes));
    piece.begin = 0;
    return;
  }
  // An implied zero byte: it becomes a written byte with only that bit set.
  Write(offset, std::string(1, static_cast<char>(1 << bit)));
}

uint64_t SimFileSystem::Content::stored_bytes() const {
  uint64_t total = 0;
  for (const Piece& piece : pieces_) total += piece.size;
  return total;
}

// --- Handles ---

class SimFileSystem::SimFile : public File {
 public:
  SimFile(SimFileSystem* fs, uint64_t inode_id, std::string path, bool writable)
      : fs_(fs),
        inode_id_(inode_id),
        path_(std::move(path)),
        writable_(writable),
        boot_(fs->boot_) {
    ++fs_->live_handles_;
    ++fs_->inodes_.at(inode_id_).open_handles;
  }

  ~SimFile() override {
    --fs_->live_handles_;
    if (stale()) return;  // Crash() already forgot this boot's handles
    Inode& inode = fs_->inodes_.at(inode_id_);
    RAFT_CHECK(inode.open_handles > 0) << "handle count of " << path_;
    --inode.open_handles;
    fs_->CollectGarbage();
  }

  absl::Status Append(absl::string_view data) override {
    if (stale()) return StaleError("append");
    return Write("append", fs_->inodes_.at(inode_id_).current.size_bytes(), data);
  }

  absl::Status WriteAt(uint64_t offset, absl::string_view data) override {
    if (stale()) return StaleError("pwrite");
    return Write("pwrite", offset, data);
  }

  absl::Status WriteAtOwned(uint64_t offset, std::string data) override {
    if (stale()) return StaleError("pwrite");
    return Write("pwrite", offset, data, &data);
  }

  absl::Status ReadAt(uint64_t offset, size_t size, std::string* out) const override {
    if (stale()) return StaleError("pread");
    fs_->AddLatency();
    *out = fs_->inodes_.at(inode_id_).current.Read(offset, size);
    return absl::OkStatus();
  }

  absl::Status Sync() override { return SyncAs("fsync"); }
  absl::Status DataSync() override { return SyncAs("fdatasync"); }

  absl::Status Truncate(uint64_t size) override {
    if (stale()) return StaleError("ftruncate");
    fs_->AddLatency();
    absl::Status status = CheckWritable("ftruncate");
    if (!status.ok()) return status;
    Inode& inode = fs_->inodes_.at(inode_id_);
    const uint64_t size_bytes = inode.current.size_bytes();
    status = fs_->CheckCapacity(size > size_bytes ? size - size_bytes : 0, "ftruncate", path_);
    if (!status.ok()) return status;
    inode.current.Resize(size);
    inode.pending.push_back({PendingWrite::Kind::kTruncate, size, nullptr});
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Size() const override {
    if (stale()) return StaleError("fstat");
    fs_->AddLatency();
    return fs_->inodes_.at(inode_id_).current.size_bytes();
  }

  const std::string& path() const override { return path_; }

 private:
  bool stale() const { return boot_ != fs_->boot_; }

  absl::Status StaleError(absl::string_view operation) const {
    return absl::FailedPreconditionError(
        Message(operation, path_, "stale handle after crash (opened before Crash())"));
  }

  // EBADF on a read-only handle, else an armed or seeded EIO. Checked before ENOSPC; a failing
  // write changes nothing either way.
  absl::Status CheckWritable(absl::string_view operation) {
    if (!writable_) return absl::InternalError(Message(operation, path_, kBadHandle));
    return fs_->InjectedEio(&fs_->armed_write_failures_, fs_->faults_.write_eio_per_million,
                            operation, path_);
  }

  // `owned`, when given, holds `data` and is taken for the pending write instead of a copy.
  absl::Status Write(absl::string_view operation, uint64_t offset, absl::string_view data,
                     std::string* owned = nullptr) {
    fs_->AddLatency();
    absl::Status status = CheckWritable(operation);
    if (!status.ok()) return status;
    Inode& inode = fs_->inodes_.at(inode_id_);
    const uint64_t end = offset + data.size();
    const uint64_t size_bytes = inode.current.size_bytes();
    status = fs_->CheckCapacity(end > size_bytes ? end - size_bytes : 0, operation, path_);
    if (!status.ok() || data.empty()) return status;
    // One buffer for the current view, the pending write and, once synced, the durable bytes.
    auto buffer = std::make_shared<const std::string>(owned != nullptr ? std::move(*owned)
                                                                       : std::string(data));
    inode.current.Write(offset, buffer);
    inode.pending.push_back({PendingWrite::Kind::kWrite, offset, std::move(buffer)});
    return absl::OkStatus();
  }

  absl::Status SyncAs(absl::string_view operation) {
    if (stale()) return StaleError(operation);
    fs_->AddLatency();
    Inode& inode = fs_->inodes_.at(inode_id_);
    if (inode.poisoned) {
      return absl::InternalError(Message(
          operation, path_, "Input/output error (EIO): an earlier sync of this file failed"));
    }
    absl::Status status = fs_->InjectedEio(&fs_->armed_sync_failures_,
                                           fs_->faults_.sync_eio_per_million, operation, path_);
    if (!status.ok()) {
      inode.poisoned = true;
      return status;
    }
    for (const PendingWrite& write : inode.pending) ApplyWrite(write, &inode.durable);
    inode.pending.clear();
    ++fs_->synced_ops_;
    return absl::OkStatus();
  }

  SimFileSystem* const fs_;
  const uint64_t inode_id_;
  const std::string path_;
  const bool writable_;
  const uint64_t boot_;
};

class SimFileSystem::SimFileLock : public FileLock {
 public:
  SimFileLock(SimFileSystem* fs, uint64_t inode_id)
      : fs_(fs), inode_id_(inode_id), boot_(fs->boot_) {
    ++fs_->live_handles_;
    fs_->locked_inodes_.insert(inode_id_);
  }

  ~SimFileLock() override {
    --fs_->live_handles_;
    if (boot_ != fs_->boot_) return;  // Crash() released it
    fs_->locked_inodes_.erase(inode_id_);
    fs_->CollectGarbage();
  }

 private:
  SimFileSystem* const fs_;
  const uint64_t inode_id_;
  const uint64_t boot_;
};

// --- SimFileSystem ---

SimFileSystem::SimFileSystem(uint64_t seed, const SimDiskFaults& faults)
    : fault_rng_(StreamGenerator(seed, Stream::kFault)),
      crash_rng_(StreamGenerator(seed, Stream::kCrash)),
      corruption_rng_(StreamGenerator(seed, Stream::kCorruption)),
      latency_rng_(StreamGenerator(seed, Stream::kLatency)) {
  set_faults(faults);
}

SimFileSystem::~SimFileSystem() {
  RAFT_CHECK(live_handles_ == 0) << live_handles_
                                 << " Files or FileLocks outlive their SimFileSystem";
}

void SimFileSystem::set_faults(const SimDiskFaults& faults) {
  RAFT_CHECK(faults.write_eio_per_million <= kPerMillion) << faults.write_eio_per_million;
  RAFT_CHECK(faults.sync_eio_per_million <= kPerMillion) << faults.sync_eio_per_million;
  RAFT_CHECK(faults.latency_micros_min <= faults.latency_micros_max)
      << faults.latency_micros_min << " > " << faults.latency_micros_max;
  RAFT_CHECK(faults.slowness >= 1) << "slowness " << faults.slowness;
  faults_ = faults;
}

absl::StatusOr<std::string> SimFileSystem::Normalize(absl::string_view operation,
                                                     const std::string& path) {
  if (!absl::StartsWith(path, "/")) {
    return absl::InvalidArgumentError(
        Message(operation, path, "the simulated file system takes absolute paths only"));
  }
  std::string normalized;
  for (char c : path) {
    if (c == '/' && !normalized.empty() && normalized.back() == '/') continue;
    normalized.push_back(c);
  }
  if (normalized.size() > 1 && normalized.back() == '/') normalized.pop_back();
  return normalized;
}

std::string SimFileSystem::Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool SimFileSystem::IsDirectory(const std::string& path) const {
  if (path == "/") return true;
  auto it = names_.find(path);
  return it != names_.end() && it->second.kind == Entry::Kind::kDirectory;
}

void SimFileSystem::AddLatency() const {
  const uint64_t spread_micros = faults_.latency_micros_max - faults_.latency_micros_min;
  const uint64_t micros = faults_.latency_micros_min +
                          (spread_micros > 0 ? latency_rng_.Uniform(spread_micros + 1) : 0);
  latency_micros_ += micros * faults_.slowness;
}

absl::Status SimFileSystem::InjectedEio(std::vector<std::string>* armed_prefixes,
                                        uint32_t rate_per_million, absl::string_view operation,
                                        const std::string& path) {
  auto armed =
      std::find_if(armed_prefixes->begin(), armed_prefixes->end(),
                   [&](const std::string& prefix) { return absl::StartsWith(path, prefix); });
  bool fail = armed != armed_prefixes->end();
  if (fail) armed_prefixes->erase(armed);
  // Drawn only for a nonzero rate, so a run without random faults draws nothing.
  if (!fail && rate_per_million > 0) fail = fault_rng_.Uniform(kPerMillion) < rate_per_million;
  if (!fail) return absl::OkStatus();
  return absl::InternalError(Message(operation, path, "Input/output error (EIO), injected"));
}

uint64_t SimFileSystem::logical_bytes() const {
  uint64_t used_bytes = 0;
  for (const auto& [id, inode] : inodes_) used_bytes += inode.current.size_bytes();
  return used_bytes;
}

absl::Status SimFileSystem::CheckCapacity(uint64_t growth_bytes, absl::string_view operation,
                                          const std::string& path) const {
  if (faults_.capacity_bytes == 0 || growth_bytes == 0) return absl::OkStatus();
  const uint64_t used_bytes = logical_bytes();
  if (used_bytes + growth_bytes <= faults_.capacity_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      Message(operation, path,
              absl::StrCat(kNoSpace, ": ", used_bytes, " + ", growth_bytes, " bytes > capacity ",
                           faults_.capacity_bytes)));
}

void SimFileSystem::ApplyDirOp(const DirOp& op, std::map<std::string, Entry>* names) {
  for (const auto& [path, entry] : op.changes) {
    RAFT_CHECK(Parent(path) == op.dir) << path << " changed by an operation of " << op.dir;
    if (entry.has_value()) {
      (*names)[path] = *entry;
    } else {
      names->erase(path);
    }
  }
}

uint64_t SimFileSystem::CreateFile(const std::string& path) {
  const uint64_t inode_id = next_inode_id_++;
  inodes_.emplace(inode_id, Inode());
  RecordDirOp({Parent(path), {{path, Entry{Entry::Kind::kFile, inode_id}}}});
  return inode_id;
}

void SimFileSystem::RecordDirOp(DirOp op) {
  ApplyDirOp(op, &names_);
  pending_dir_ops_.push_back(std::move(op));
}

void SimFileSystem::ApplyWrite(const PendingWrite& write, Content* content) {
  switch (write.kind) {
    case PendingWrite::Kind::kWrite:
      content->Write(write.offset, write.data);  // shares the buffer
      break;
    case PendingWrite::Kind::kTruncate:
      content->Resize(write.offset);
      break;
  }
}

absl::StatusOr<std::unique_ptr<File>> SimFileSystem::Open(const std::string& path, OpenMode mode) {
  absl::StatusOr<std::string> normalized = Normalize("open", path);
  if (!normalized.ok()) return normalized.status();
  AddLatency();
  if (!IsDirectory(Parent(*normalized))) {
    return absl::NotFoundError(Message("open", *normalized, kNoEntry));
  }
  if (IsDirectory(*normalized))
    return absl::InternalError(Message("open", *normalized, kIsDirectory));
  auto it = names_.find(*normalized);
  const bool exists = it != names_.end();
  switch (mode) {
    case OpenMode::kRead:
    case OpenMode::kReadWrite:
      if (!exists) return absl::NotFoundError(Message("open", *normalized, kNoEntry));
      break;
    case OpenMode::kCreate:
      if (exists) return absl::AlreadyExistsError(Message("open", *normalized, kExists));
      break;
    case OpenMode::kCreateTruncate:
      if (exists) {
        Inode& inode = inodes_.at(it->second.inode_id);
        inode.current.Resize(0);
        inode.pending.push_back({PendingWrite::Kind::kTruncate, 0, nullptr});
      }
      break;
  }
  const uint64_t inode_id = exists ? it->second.inode_id : CreateFile(*normalized);
  return std::make_unique<SimFile>(this, inode_id, *normalized, mode != OpenMode::kRead);
}

absl::Status SimFileSystem::Rename(const std::string& from, const std::string& to) {
  absl::StatusOr<std::string> source = Normalize("rename", from);
  if (!source.ok()) return source.status();
  absl::StatusOr<std::string> target = Normalize("rename", to);
  if (!target.ok()) return target.status();
  AddLatency();
  const std::string description = absl::StrCat(*source, " -> ", *target);
  auto it = names_.find(*source);
  if (it == names_.end()) return absl::NotFoundError(Message("rename", description, kNoEntry));
  if (it->second.kind == Entry::Kind::kDirectory) {
    return absl::UnimplementedError(
        Message("rename", description, "renaming a directory is not simulated"));
  }
  const std::string target_parent = Parent(*target);
  if (!IsDirectory(target_parent)) {
    return absl::NotFoundError(Message("rename", description, kNoEntry));
  }
  if (IsDirectory(*target))
    return absl::InternalError(Message("rename", description, kIsDirectory));
  if (*source == *target) return absl::OkStatus();  // rename(2) of a name onto itself
  const Entry entry = it->second;
  const std::string source_parent = Parent(*source);
  if (source_parent == target_parent) {
    RecordDirOp({source_parent, {{*target, entry}, {*source, std::nullopt}}});
  } else {
    RecordDirOp({target_parent, {{*target, entry}}});
    RecordDirOp({source_parent, {{*source, std::nullopt}}});
  }
  CollectGarbage();
  return absl::OkStatus();
}

absl::Status SimFileSystem::SyncDir(const std::string& dir) {
  absl::StatusOr<std::string> normalized = Normalize("fsync directory", dir);
  if (!normalized.ok()) return normalized.status();
  AddLatency();
  if (!IsDirectory(*normalized)) {
    return absl::NotFoundError(Message("fsync directory", *normalized, kNoEntry));
  }
  absl::Status status = InjectedEio(&armed_sync_failures_, faults_.sync_eio_per_million,
                                    "fsync directory", *normalized);
  if (!status.ok()) return status;
  // Operations on different directories change different names, so making one directory's
  // operations durable ahead of earlier ones elsewhere keeps every name's own order.
  for (const DirOp& op : pending_dir_ops_) {
    if (op.dir == *normalized) ApplyDirOp(op, &durable_names_);
  }
  std::erase_if(pending_dir_ops_, [&](const DirOp& op) { return op.dir == *normalized; });
  ++synced_ops_;
  CollectGarbage();
  return absl::OkStatus();
}

absl::Status SimFileSystem::Remove(const std::string& path) {
  absl::StatusOr<std::string> normalized = Normalize("unlink", path);
  if (!normalized.ok()) return normalized.status();
  AddLatency();
  auto it = names_.find(*normalized);
  if (it == names_.end()) return absl::NotFoundError(Message("unlink", *normalized, kNoEntry));
  if (it->second.kind == Entry::Kind::kDirectory) {
    return absl::InternalError(Message("unlink", *normalized, kIsDirectory));
  }
  RecordDirOp({Parent(*normalized), {{*normalized, std::nullopt}}});
  CollectGarbage();
  return absl::OkStatus();
}

absl::Status SimFileSystem::CreateDir(const std::string& dir) {
  absl::StatusOr<std::string> normalized = Normalize("mkdir", dir);
  if (!normalized.ok()) return normalized.status();
  AddLatency();
  // Each ancestor below the root, then `dir` itself.
  for (size_t end = 1; end <= normalized->size(); ++end) {
    if (end < normalized->size() && (*normalized)[end] != '/') continue;
    const std::string prefix = normalized->substr(0, end);
    if (prefix == "/") continue;
    auto it = names_.find(prefix);
    if (it == names_.end()) {
      RecordDirOp({Parent(prefix), {{prefix, Entry{Entry::Kind::kDirectory, 0}}}});
    } else if (it->second.kind != Entry::Kind::kDirectory) {
      return absl::InternalError(Message("mkdir", prefix, kNotDirectory));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SimFileSystem::List(const std::string& dir) const {
  absl::StatusOr<std::string> normalized = Normalize("opendir", dir);
  if (!normalized.ok()) return normalized.status();
  AddLatency();
  if (!IsDirectory(*normalized)) {
    if (names_.contains(*normalized)) {
      return absl::InternalError(Message("opendir", *normalized, kNotDirectory));
    }
    return absl::NotFoundError(Message("opendir", *normalized, kNoEntry));
  }
  const std::string prefix = *normalized == "/" ? "/" : *normalized + "/";
  // Paths that share `prefix` sort by the rest of the path, bytewise: the children come out in
  // name order, with each one's descendants (skipped) after it.
  std::vector<std::string> names;
  for (auto it = names_.lower_bound(prefix);
       it != names_.end() && absl::StartsWith(it->first, prefix); ++it) {
    absl::string_view name = absl::string_view(it->first).substr(prefix.size());
    if (!absl::StrContains(name, '/')) names.emplace_back(name);
  }
  return names;
}

bool SimFileSystem::Exists(const std::string& path) const {
  absl::StatusOr<std::string> normalized = Normalize("stat", path);
  if (!normalized.ok()) return false;
  AddLatency();
  return *normalized == "/" || names_.contains(*normalized);
}

absl::StatusOr<std::unique_ptr<FileLock>> SimFileSystem::Lock(const std::string& path) {
  absl::StatusOr<std::string> normalized = Normalize("lock", path);
  if (!normalized.ok()) return normalized.status();
  AddLatency();
  if (!IsDirectory(Parent(*normalized))) {
    return absl::NotFoundError(Message("lock", *normalized, kNoEntry));
  }
  if (IsDirectory(*normalized))
    return absl::InternalError(Message("lock", *normalized, kIsDirectory));
  auto it = names_.find(*normalized);
  // Like flock, the lock belongs to the file, not to its name.
  const uint64_t inode_id = it != names_.end() ? it->second.inode_id : CreateFile(*normalized);
  if (locked_inodes_.contains(inode_id)) {
    return absl::FailedPreconditionError(Message(
        "lock", *normalized, "another process holds it (or another FileLock of this process)"));
  }
  return std::make_unique<SimFileLock>(this, inode_id);
}

void SimFileSystem::TearOnNextCrash(const std::string& path_prefix) {
  tear_on_crash_.push_back(path_prefix);
}

void SimFileSystem::Crash() {
  // The files to tear, by the names they have before the crash.
  std::set<uint64_t> torn;
  for (const auto& [path, entry] : names_) {
    for (const std::string& prefix : tear_on_crash_) {
      if (entry.kind == Entry::Kind::kFile && path.rfind(prefix, 0) == 0)
        torn.insert(entry.inode_id);
    }
  }
  tear_on_crash_.clear();
  ++boot_;
  locked_inodes_.clear();
  // Names: a prefix of the unsynced operations reached the disk.
  const uint64_t kept_dir_ops = crash_rng_.Uniform(pending_dir_ops_.size() + 1);
  for (uint64_t i = 0; i < kept_dir_ops; ++i) ApplyDirOp(pending_dir_ops_[i], &durable_names_);
  pending_dir_ops_.clear();
  // A name whose directory did not survive is lost with it; parents sort before children.
  for (auto it = durable_names_.begin(); it != durable_names_.end();) {
    const std::string parent = Parent(it->first);
    auto parent_it = durable_names_.find(parent);
    const bool parent_survived =
        parent == "/" ||
        (parent_it != durable_names_.end() && parent_it->second.kind == Entry::Kind::kDirectory);
    it = parent_survived ? std::next(it) : durable_names_.erase(it);
  }
  names_ = durable_names_;
  for (auto& [id, inode] : inodes_) inode.open_handles = 0;
  CollectGarbage();
  // Contents, in inode order (creation order) so the draws are the same on every run.
  for (auto& [id, inode] : inodes_) {
    if (inode.poisoned) {
      // Linux dropped the failed pages: nothing pending reaches the disk.
    } else if (torn.contains(id)) {
      TearFile(&inode);
    } else {
      CrashFile(&inode);
    }
    inode.pending.clear();
    inode.poisoned = false;
    inode.current = inode.durable;
  }
}

void SimFileSystem::CrashFile(Inode* inode) {
  if (inode->pending.empty()) return;
  const uint64_t cut = crash_rng_.Uniform(inode->pending.size() + 1);
  for (uint64_t i = 0; i < cut; ++i) ApplyWrite(inode->pending[i], &inode->durable);
  if (cut == inode->pending.size()) return;
  const PendingWrite& write = inode->pending[cut];
  // A Truncate changes only the size: it happens or not.
  const uint64_t outcomes = write.kind == PendingWrite::Kind::kTruncate ? 2 : 3;
  const auto outcome = static_cast<CutOutcome>(crash_rng_.Uniform(outcomes));
  switch (outcome) {
    case CutOutcome::kLost:
      return;
    case CutOutcome::kWhole:
      ApplyWrite(write, &inode->durable);
      return;
    case CutOutcome::kTorn:
      break;
  }
  // A prefix of the write's sectors (at least one) reaches the disk, the last of them possibly
  // garbled: the drive lost power while writing it.
  const uint64_t first_sector = write.offset / kSectorBytes;
  const uint64_t end = write.offset + write.size();
  const uint64_t sector_count = (end - 1) / kSectorBytes - first_sector + 1;
  const uint64_t reached_sectors = 1 + crash_rng_.Uniform(sector_count);
  const uint64_t reached_end = std::min(end, (first_sector + reached_sectors) * kSectorBytes);
  std::string bytes = write.data->substr(0, reached_end - write.offset);
  if (crash_rng_.Percent(50)) {
    const uint64_t garbled_begin =
        std::max(write.offset, (first_sector + reached_sectors - 1) * kSectorBytes);
    for (uint64_t i = garbled_begin - write.offset; i < bytes.size(); ++i) {
      bytes[i] = static_cast<char>(crash_rng_.Next());
    }
  }
  inode->durable.Write(write.offset, std::move(bytes));
}

void SimFileSystem::TearFile(Inode* inode) {
  size_t last = inode->pending.size();
  while (last > 0 && inode->pending[last - 1].kind == PendingWrite::Kind::kTruncate) --last;
  if (last == 0) return CrashFile(inode);
  for (size_t i = 0; i + 1 < last; ++i) ApplyWrite(inode->pending[i], &inode->durable);
  const PendingWrite& write = inode->pending[last - 1];
  // Half its sectors (at least one) reach the disk, the last of them garbled.
  const uint64_t first_sector = write.offset / kSectorBytes;
  const uint64_t end = write.offset + write.size();
  const uint64_t sector_count = (end - 1) / kSectorBytes - first_sector + 1;
  const uint64_t reached_sectors = std::max<uint64_t>(1, sector_count / 2);
  const uint64_t reached_end = std::min(end, (first_sector + reached_sectors) * kSectorBytes);
  std::string bytes = write.data->substr(0, reached_end - write.offset);
  const uint64_t garbled_begin =
      std::max(write.offset, (first_sector + reached_sectors - 1) * kSectorBytes);
  for (uint64_t i = garbled_begin - write.offset; i < bytes.size(); ++i) {
    bytes[i] = static_cast<char>(crash_rng_.Next() | 1);
  }
  inode->durable.Write(write.offset, std::move(bytes));
}

void SimFileSystem::CollectGarbage() {
  std::set<uint64_t> reached = locked_inodes_;
  for (const auto* names : {&names_, &durable_names_}) {
    for (const auto& [path, entry] : *names) {
      if (entry.kind == Entry::Kind::kFile) reached.insert(entry.inode_id);
    }
  }
  for (const DirOp& op : pending_dir_ops_) {
    for (const auto& [path, entry] : op.changes) {
      if (entry.has_value() && entry->kind == Entry::Kind::kFile) reached.insert(entry->inode_id);
    }
  }
  std::erase_if(inodes_, [&](const auto& id_and_inode) {
    const auto& [id, inode] = id_and_inode;
    return inode.open_handles == 0 && !reached.contains(id);
  });
}

void SimFileSystem::FailNextWrite(const std::string& path_prefix) {
  armed_write_failures_.push_back(path_prefix);
}

void SimFileSystem::FailNextSync(const std::string& path_prefix) {
  armed_sync_failures_.push_back(path_prefix);
}

void SimFileSystem::ClearArmedFailures() {
  armed_write_failures_.clear();
  armed_sync_failures_.clear();
}

absl::Status SimFileSystem::FlipBit(const std::string& path, uint64_t offset, int bit) {
  absl::StatusOr<std::string> normalized = Normalize("flip bit", path);
  if (!normalized.ok()) return normalized.status();
  if (bit < 0 || bit > 7) {
    return absl::InvalidArgumentError(Message("flip bit", *normalized, absl::StrCat("bit ", bit)));
  }
  auto it = names_.find(*normalized);
  if (it == names_.end() || it->second.kind != Entry::Kind::kFile) {
    return absl::NotFoundError(Message("flip bit", *normalized, kNoEntry));
  }
  Inode& inode = inodes_.at(it->second.inode_id);
  if (offset >= inode.durable.size_bytes() && offset >= inode.current.size_bytes()) {
    return absl::OutOfRangeError(
        Message("flip bit", *normalized, absl::StrCat("offset ", offset, " is past the end")));
  }
  if (offset < inode.durable.size_bytes()) inode.durable.FlipBit(offset, bit);
  if (offset < inode.current.size_bytes()) inode.current.FlipBit(offset, bit);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SimFileSystem::CorruptRandomDurableByte(const std::string& path) {
  absl::StatusOr<std::string> normalized = Normalize("corrupt", path);
  if (!normalized.ok()) return normalized.status();
  auto it = names_.find(*normalized);
  if (it == names_.end() || it->second.kind != Entry::Kind::kFile) {
    return absl::NotFoundError(Message("corrupt", *normalized, kNoEntry));
  }
  const uint64_t size_bytes = inodes_.at(it->second.inode_id).durable.size_bytes();
  if (size_bytes == 0) {
    return absl::FailedPreconditionError(
        Message("corrupt", *normalized, "no durable bytes to corrupt"));
  }
  const uint64_t offset = corruption_rng_.Uniform(size_bytes);
  const int bit = static_cast<int>(corruption_rng_.Uniform(8));
  absl::Status status = FlipBit(*normalized, offset, bit);
  RAFT_CHECK(status.ok()) << status.ToString();
  return offset;
}

uint64_t SimFileSystem::TakeLatencyMicros() { return std::exchange(latency_micros_, 0); }

bool SimFileSystem::HasUnsynced(const std::string& path) const {
  absl::StatusOr<std::string> normalized = Normalize("stat", path);
  if (!normalized.ok()) return false;
  auto it = names_.find(*normalized);
  if (it != names_.end() && it->second.kind == Entry::Kind::kFile &&
      !inodes_.at(it->second.inode_id).pending.empty()) {
    return true;
  }
  for (const DirOp& op : pending_dir_ops_) {
    for (const auto& [changed_path, entry] : op.changes) {
      if (changed_path == *normalized) return true;
    }
  }
  return false;
}

std::optional<std::string> SimFileSystem::DurableContent(const std::string& path) const {
  absl::StatusOr<std::string> normalized = Normalize("read", path);
  if (!normalized.ok()) return std::nullopt;
  auto it = durable_names_.find(*normalized);
  if (it == durable_names_.end() || it->second.kind != Entry::Kind::kFile) return std::nullopt;
  const Content& durable = inodes_.at(it->second.inode_id).durable;
  return durable.Read(0, durable.size_bytes());
}

size_t SimFileSystem::file_count() const {
  return std::count_if(names_.begin(), names_.end(), [](const auto& path_and_entry) {
    return path_and_entry.second.kind == Entry::Kind::kFile;
  });
}

uint64_t SimFileSystem::stored_bytes() const {
  uint64_t total = 0;
  for (const auto& [id, inode] : inodes_) {
    total += inode.durable.stored_bytes() + inode.current.stored_bytes();
    for (const PendingWrite& write : inode.pending) total += write.size();
  }
  return total;
}

}  // namespace kvstore::store
