#ifndef KVSTORE_STORE_WAL_H_
#define KVSTORE_STORE_WAL_H_

// The write-ahead log: the durable truth of a member's Raft state (entries, hard state, snapshot
// markers), in the shape of etcd's WAL.
//
// On disk: a directory of segment files named by sequence number (%016x.wal), each preallocated
// to segment_bytes (etcd: 64 MB) so appends do not change file metadata. A segment is a run of
// records, then zeros:
//
//   record := length (u32 LE, of payload) | crc (u32 LE, CRC-32C of type and payload) | type (u8)
//             | payload
//
// A zero header ends the segment. Every segment starts with a header record (its sequence
// number), the latest snapshot marker and the latest hard state, so any contiguous run of
// segments ending with the newest one is a complete log: older segments whose entries a durable
// snapshot marker covers are simply removed (compaction drops whole segments), though never the
// segment that holds the durable marker, since a newer segment's header copy of it may not be
// durable yet. Recovery takes the newest contiguous run; segments before a gap (removals a crash
// kept only in part) go once that run has recovered to a log a marker anchors, and stay when it
// has not (a segment lost in the middle: recovery refuses and removes nothing).
//
// Records: kEntry (term, index, type, data); kHardState (term, vote, commit); kSnapshot, a
// marker (index, term, configuration, and whether a received snapshot's data was saved to a
// snapshot file beside the log: store/snapshot_file.h). Replaying the records in order rebuilds
// the log: an entry at index i replaces every entry at or after i (Raft's conflicting suffix), a
// marker drops every entry at or before its index.
//
// Group commit: Append encodes records into a buffer, StartSync writes the buffer to the segment
// and hands back a batch whose Run() does the fdatasyncs (on any thread; the node runs it on its
// fsync thread, the simulator at the simulated completion time), and FinishSync records what the
// batch made durable: its persist id is what the driver reports to Raft (OnPersisted). Appends
// that arrive while a batch runs go into the next one. At most one batch is in flight.
//
// Recovery (Open): every record's CRC is checked. A bad record in the newest segment that
// nothing valid follows is a torn tail, the remains of a write that never completed (and so was
// never acknowledged): the log is cut there and the member starts. A bad record anywhere else is
// corruption: Open refuses with an error naming the file, the offset, and the expected and found
// CRCs. The log never serves what it cannot verify.
//
// A failed sync is never retried as if it had worked (PostgreSQL's "fsyncgate"): the WAL turns
// failed and every later call returns the error; the member must stop.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/raft/raft.h"
#include "core/raft/types.h"
#include "store/file_system.h"

namespace kvstore::store {

inline constexpr uint64_t kDefaultSegmentBytes = uint64_t{64} << 20;  // etcd's SegmentSizeBytes
// Records above this are refused on append and treated as corruption on recovery: a length field
// garbled into a huge number must not make recovery allocate it.
inline constexpr uint64_t kMaxRecordBytes = uint64_t{512} << 20;
inline constexpr size_t kRecordHeaderBytes = 9;
// Bytes a torn write may leave garbled: the disk writes whole sectors.
inline constexpr uint64_t kSectorBytes = 512;

struct WalOptions {
  uint64_t segment_bytes = kDefaultSegmentBytes;
  // Append writes the buffer out once it holds this much (a StartSync writes it anyway).
  size_t write_buffer_bytes = size_t{1} << 20;
  // Recover and report only: change nothing on disk (no torn tail cut, no leftover removed, no
  // segment created); Append and Compact refuse. For verifiers and checkers.
  bool read_only = false;
  // Creates the log's directory with MakeDirDurable (fsyncs only the directories it changes: a
  // fresh one costs 3, an existing one 1) instead of CreateDirDurably (every ancestor up to /).
  // The node sets it. The simulator keeps the default: each fsync of its disk draws a seeded
  // latency, so fewer of them would move every pinned fuzz schedule.
  bool minimal_dir_syncs = false;
};

enum class RecordType : uint8_t {
  kSegmentHeader = 1,
  kEntry = 2,
  kHardState = 3,
  kSnapshot = 4,
};

// What recovery found, and what it did.
struct WalRecovery {
  // Hard state, the latest snapshot marker (data empty) and the entries after it.
  raft::RestartState state;
  // The marker is of a snapshot received from a leader whose data is in a snapshot file.
  bool snapshot_has_data = false;
  uint64_t segments = 0;
  uint64_t records = 0;
  // A torn tail that was cut: the file and offset, and how many bytes were dropped.
  std::string torn_file;
  uint64_t torn_offset = 0;
  uint64_t torn_bytes = 0;
};

class Wal {
 public:
  // The log's shape without payloads: term of every entry after the snapshot marker.
  struct LogIndex {
    raft::HardState hard_state;
    raft::Index snapshot_index = 0;
    raft::Term snapshot_term = 0;
    raft::Index first = 1;  // index of terms.front()
    std::deque<raft::Term> terms;
    raft::Index LastIndex() const {
      return terms.empty() ? snapshot_index : first + terms.size() - 1;
    }
    std::optional<raft::Term> TermOf(raft::Index index) const;
    void AddEntry(raft::Index index, raft::Term term);
    // A marker that replaces the log (a received snapshot) or compacts it (drops what it covers).
    void AddMarker(raft::Index index, raft::Term term, bool replaces_log);
  };
  // Opens the log in `dir` (created, with a first segment, when it holds none) and recovers it.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(FileSystem* fs, const std::string& dir,
                                                   const WalOptions& options = {});
  ~Wal();

  const WalRecovery& recovery() const { return recovery_; }
  // Moves the recovered entries out (they can be large); recovery().state is empty afterwards.
  raft::RestartState TakeRecoveredState() { return std::move(recovery_.state); }
  // The data of a recovered snapshot marker with data (recovery().snapshot_has_data), read from
  // its snapshot file and verified.
  absl::StatusOr<raft::Bytes> ReadSnapshotData(const raft::SnapshotMetadata& marker) const;

  // Appends the records of one Raft persist request, in Raft's order: the snapshot (its data
  // saved to a snapshot file first, durably), the entries, the hard state. With `needs_sync`
  // false the records wait in the buffer for the next sync something else needs (etcd's
  // MustSync: a hard state that only moves the commit index need not be durable, since a
  // commit index recovered lower is raised again by the leader and by the backend's consistent
  // index); HasUnsynced does not count them.
  absl::Status Append(const raft::PersistRequest& request, bool needs_sync = true);
  // Records a compaction point: entries up to mark.index are no longer needed (the state machine
  // holds them durably: the caller flushed its backend first). Once the marker is durable,
  // segments holding only entries at or before it, and older than the segment it went to, are
  // removed.
  absl::Status Compact(const raft::SnapshotMetadata& mark);

  // One group commit: the files to fdatasync and, when a segment was created, the directory.
  class SyncBatch {
   public:
    // Does the syncs. Safe on another thread while the loop appends.
    absl::Status Run();
    uint64_t persist_id() const { return persist_id_; }

   private:
    friend class Wal;
    FileSystem* fs_ = nullptr;
    std::string dir_;
    bool sync_dir_ = false;
    std::vector<std::shared_ptr<File>> files_;
    uint64_t persist_id_ = 0;
    uint64_t sequence_ = 0;
  };
  // Whether anything was appended since the last StartSync.
  bool HasUnsynced() const;
  bool sync_in_flight() const { return in_flight_; }
  // Writes what was appended and returns its batch (nullptr: nothing to sync, or one in flight).
  absl::StatusOr<std::unique_ptr<SyncBatch>> StartSync();
  // Records the batch's outcome. OK: what it covered is durable (durable_*() advance, covered
  // segments are removed). An error turns the WAL failed for good and is returned again.
  absl::Status FinishSync(const SyncBatch& batch, absl::Status result);
  // Append, StartSync, Run and FinishSync in one call (tests and tools).
  absl::Status AppendAndSync(const raft::PersistRequest& request);

  // The persist id of the latest Append (durable or not).
  uint64_t appended_persist_id() const { return last_persist_id_; }
  // The first error that failed the WAL (OK while healthy).
  const absl::Status& failure() const { return failure_; }

  // What is durable: every batch finished OK, replayed. For checkers and compaction decisions.
  const raft::HardState& durable_hard_state() const { return durable_.hard_state; }
  raft::Index durable_last_index() const { return durable_.LastIndex(); }
  raft::Index durable_snapshot_index() const { return durable_.snapshot_index; }
  // The durable term of entry `index` (nullopt if not durable or covered by the marker).
  std::optional<raft::Term> DurableTerm(raft::Index index) const { return durable_.TermOf(index); }
  const LogIndex& durable() const { return durable_; }
  // What was appended (durable or not).
  raft::Index last_index() const { return written_.LastIndex(); }
  std::optional<raft::Term> Term(raft::Index index) const { return written_.TermOf(index); }
  uint64_t segment_count() const { return segments_.size(); }
  // The segment files, oldest first (for fault injection and tests).
  std::vector<std::string> SegmentPaths() const;

 private:
  // What one batch carries, to replay onto durable_ when it completes.
  struct PendingRecord {
    RecordType type;
    raft::Index index = 0;
    raft::Term term = 0;
    raft::HardState hard_state;
    bool replaces_log = false;
    bool has_data = false;  // a marker whose snapshot data is in a file
    uint64_t segment = 0;   // the sequence of the segment a marker went to
  };
  struct Segment {
    uint64_t sequence = 0;
    std::string path;
    raft::Index last_entry = 0;  // highest entry index the segment holds (0: none)
  };

  Wal(FileSystem* fs, std::string dir, const WalOptions& options);
  absl::Status Recover();
  absl::Status CreateSegment(uint64_t sequence);
  // Appends a record header for `type` to buffer_ (room reserved for `payload_bytes` more) and
  // returns where it starts; the caller appends the payload, then FinishRecord fills in the
  // header's length and CRC.
  size_t BeginRecord(RecordType type, size_t payload_bytes);
  void FinishRecord(size_t start);
  void AppendEntry(const raft::Entry& entry);
  void AppendHardState(const raft::HardState& hard_state);
  void AppendMarker(const raft::SnapshotMetadata& mark, bool has_data, bool replaces_log);
  absl::Status WriteBuffer();
  absl::Status MaybeCutSegment(size_t next_record_bytes);
  absl::Status RemoveCoveredSegments();
  absl::Status Fail(absl::Status status);

  FileSystem* fs_;
  std::string dir_;
  WalOptions options_;
  WalRecovery recovery_;
  absl::Status failure_;

  std::vector<Segment> segments_;                      // oldest first; back() is written to
  std::shared_ptr<File> file_;                         // segments_.back()
  uint64_t file_offset_ = 0;                           // where the buffer goes in file_
  std::string buffer_;                                 // encoded records not yet written
  std::vector<std::shared_ptr<File>> unsynced_files_;  // written since the last StartSync
  bool new_segment_unsynced_ = false;  // a segment was created since the last StartSync

  LogIndex written_;
  LogIndex durable_;
  raft::SnapshotMetadata marker_;  // the latest marker appended (copied into new segments)
  bool marker_has_data_ = false;
  raft::Index durable_marker_ = 0;  // the latest durable marker's index
  // The oldest segment that holds the latest durable marker (its record, or a later segment's
  // header copy), whose sync made it durable; no segment from it on is removed.
  uint64_t durable_marker_segment_ = 0;
  bool durable_marker_has_data_ = false;         // its snapshot file must stay
  std::vector<PendingRecord> unsynced_records_;  // appended since the last StartSync
  std::vector<PendingRecord> in_flight_records_;
  uint64_t last_persist_id_ = 0;
  bool has_unsynced_ = false;
  bool in_flight_ = false;
  uint64_t next_batch_ = 1;
};

// Where one valid record lies, as a dump of the log lists it (tools and fault injection).
struct WalRecordLocation {
  std::string path;
  uint64_t offset = 0;
  uint64_t bytes = 0;  // header included
  RecordType type = RecordType::kEntry;
};
// The valid records of every segment in `dir`, oldest first, up to the first bad one of each.
absl::StatusOr<std::vector<WalRecordLocation>> ScanWal(FileSystem* fs, const std::string& dir,
                                                       const WalOptions& options = {});

// Where a CORRUPT_RECORD fault flips a bit, in the simulator and on a real member's files alike:
// the middle of the middle entry record of `records` (a ScanWal answer), or of its oldest segment
// when `oldest_segment`, so that records follow it and recovery cannot take it for a torn tail.
// None when there is no such record: fewer than three entries in the log, or, for the oldest
// segment, a log of one segment or an oldest segment without entries.
struct CorruptionSpot {
  const WalRecordLocation* record = nullptr;
  uint64_t offset = 0;  // of the byte to flip, in record->path
};
std::optional<CorruptionSpot> PickCorruptionSpot(const std::vector<WalRecordLocation>& records,
                                                 bool oldest_segment);

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_WAL_H_
