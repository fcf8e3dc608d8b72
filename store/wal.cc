#include "store/wal.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "core/base/encoding.h"
#include "core/raft/check.h"
#include "store/crc32c.h"
#include "store/snapshot_file.h"

namespace kvstore::store {
namespace {

constexpr absl::string_view kSegmentSuffix = ".wal";
constexpr uint8_t kMarkerHasData = 1;
constexpr uint8_t kMarkerReplacesLog = 2;

void PutFixed64(std::string* out, uint64_t value) {
  char buf[8];
  std::memcpy(buf, &value, 8);
  out->append(buf, 8);
}

bool GetFixed64(absl::string_view* in, uint64_t* value) {
  if (in->size() < 8) return false;
  std::memcpy(value, in->data(), 8);
  in->remove_prefix(8);
  return true;
}

uint32_t ReadFixed32(const char* p) {
  uint32_t value;
  std::memcpy(&value, p, 4);
  return value;
}

std::string SegmentName(uint64_t sequence) {
  return absl::StrFormat("%016x%s", sequence, kSegmentSuffix);
}

bool ParseSegmentName(absl::string_view name, uint64_t* sequence) {
  if (name.size() != 16 + kSegmentSuffix.size() || !absl::EndsWith(name, kSegmentSuffix)) {
    return false;
  }
  return absl::SimpleHexAtoi(name.substr(0, 16), sequence);
}

// Whether `name`, a snapshot file's name ("<term>-<index>.snap", hex: SnapshotFileName), is of
// an index above `index` (a name that does not parse: false).
bool AboveIndex(absl::string_view name, raft::Index index) {
  uint64_t parsed = 0;
  return name.size() == 16 + 1 + 16 + 5 && name[16] == '-' &&
         absl::SimpleHexAtoi(name.substr(17, 16), &parsed) && parsed > index;
}

bool AllZero(absl::string_view bytes) {
  // Every byte equals its successor and the first is zero: one vectorised memcmp, where a loop
  // over the bytes took most of the time recovery spends on a segment's zero tail.
  return bytes.empty() ||
         (bytes[0] == 0 && std::memcmp(bytes.data(), bytes.data() + 1, bytes.size() - 1) == 0);
}

uint64_t RoundUpToSector(uint64_t offset) {
  return (offset + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
}

// Recovery reads a segment this much at a time. A segment is preallocated (64 MiB) and mostly
// zeros past its records: read whole into one string, it cost a fresh page per 4 KiB of it.
constexpr size_t kReadChunkBytes = size_t{1} << 20;

// Reads one segment file through a window that slides forward, kReadChunkBytes at a time, in
// buffers the caller reuses across segments: memory is a chunk or two (or one record larger
// than that), not the segment. A view is valid until the next call to View. The first read
// error sticks (a file shorter than its size is one): views are empty from then on, so every
// verdict reached since is void and the caller must check status() before it trusts one.
class SegmentReader {
 public:
  SegmentReader(const File* file, uint64_t size_bytes, std::string* window, std::string* chunk)
      : file_(file), size_bytes_(size_bytes), window_(window), chunk_(chunk) {
    window_->clear();
  }

  uint64_t size() const { return size_bytes_; }
  const absl::Status& status() const { return status_; }

  // The bytes [offset, offset + length), cut at the end of the file.
  absl::string_view View(uint64_t offset, uint64_t length) {
    const uint64_t end = offset + std::min(length, size_bytes_ - std::min(offset, size_bytes_));
    if (offset >= end) return {};
    const uint64_t window_end = window_start_ + window_->size();
    if (offset < window_start_ || offset > window_end) {
      // A jump (back to a bad record, after checking the zeros past it): start over there.
      window_->clear();
      window_start_ = offset;
    } else if (end > window_end) {
      // Slide: keep only what lies from `offset` on.
      window_->erase(0, offset - window_start_);
      window_start_ = offset;
    }
    while (status_.ok() && window_start_ + window_->size() < end) {
      const uint64_t from = window_start_ + window_->size();
      const uint64_t want =
          std::min<uint64_t>(std::max<uint64_t>(end - from, kReadChunkBytes), size_bytes_ - from);
      if (absl::Status s = file_->ReadAt(from, want, chunk_); !s.ok()) {
        status_ = s;
        return {};
      }
      if (chunk_->size() < want) {
        status_ = absl::AbortedError(absl::StrCat("wal: ", file_->path(), " ends at ",
                                                  from + chunk_->size(), ", before its size ",
                                                  size_bytes_, ": it changed while read"));
        return {};
      }
      window_->append(*chunk_);
    }
    if (!status_.ok()) return {};
    return absl::string_view(*window_).substr(offset - window_start_, end - offset);
  }

 private:
  const File* file_;
  const uint64_t size_bytes_;
  std::string* window_;  // the bytes [window_start_, window_start_ + size())
  std::string* chunk_;   // one read
  uint64_t window_start_ = 0;
  absl::Status status_;
};

// Where the first nonzero byte at or after `offset` is (the file's size if none, or on a read
// error: reader.status() tells), read a chunk at a time.
uint64_t NextNonZero(SegmentReader& reader, uint64_t offset) {
  for (uint64_t at = offset; at < reader.size();) {
    const absl::string_view bytes = reader.View(at, kReadChunkBytes);
    if (bytes.empty()) break;
    if (!AllZero(bytes)) {
      return at + (std::find_if(bytes.begin(), bytes.end(), [](char c) { return c != 0; }) -
                   bytes.begin());
    }
    at += bytes.size();
  }
  return reader.size();
}

// Whether the file holds only zeros from `offset` to its end. False on a read error.
bool ZerosFrom(SegmentReader& reader, uint64_t offset) {
  return NextNonZero(reader, offset) == reader.size() && reader.status().ok();
}

// One decoded record of a segment.
struct Record {
  RecordType type;
  absl::string_view payload;  // a view of the reader: valid until its next View
};

// Why a record could not be read at an offset.
struct BadRecord {
  uint64_t offset = 0;
  // Where the bad record claims to end (its header alone when its length is implausible): a torn
  // write leaves nothing but zeros past the sector that holds this end.
  uint64_t claimed_end = 0;
  std::string reason;
};

// Whether the record at `at` is the first after the segment's preamble: from the start of the
// file, valid records of a fresh segment only (its header, then the latest snapshot marker and
// hard state, as Wal::CreateSegment writes them), the last ending at `at`.
bool FollowsSegmentPreamble(SegmentReader& reader, uint64_t at) {
  uint64_t offset = 0;
  for (int i = 0; i < 3 && offset < at; ++i) {
    const absl::string_view header = reader.View(offset, kRecordHeaderBytes);
    if (header.size() < kRecordHeaderBytes) return false;
    const uint64_t length = ReadFixed32(header.data());
    const uint32_t expected_crc = ReadFixed32(header.data() + 4);
    const uint8_t type = static_cast<uint8_t>(header[8]);
    const bool preamble = i == 0 ? type == static_cast<uint8_t>(RecordType::kSegmentHeader)
                                 : type == static_cast<uint8_t>(RecordType::kSnapshot) ||
                                       type == static_cast<uint8_t>(RecordType::kHardState);
    if (!preamble || offset + kRecordHeaderBytes + length > at) return false;
    // `header` is invalid from here.
    const absl::string_view bytes = reader.View(offset, kRecordHeaderBytes + length);
    if (bytes.size() < kRecordHeaderBytes + length) return false;
    if (Crc32c(bytes.substr(kRecordHeaderBytes), Crc32c(bytes.substr(8, 1))) != expected_crc) {
      return false;
    }
    offset += kRecordHeaderBytes + length;
  }
  return offset == at;
}

// Reads the record at `*offset` of the file: true and advances on a valid record; false at the
// end of the records (`bad` empty) or at a bad record (`bad` set), or on a read error
// (reader.status()).
bool ReadRecord(SegmentReader& reader, uint64_t preallocated_bytes, uint64_t* offset,
                Record* record, std::optional<BadRecord>* bad) {
  const uint64_t at = *offset;
  const uint64_t size = reader.size();
  if (at + kRecordHeaderBytes > size) {
    if (!ZerosFrom(reader, at)) {
      *bad = BadRecord{at, size, "a record header cut short by the end of the file"};
    }
    return false;
  }
  const absl::string_view header = reader.View(at, kRecordHeaderBytes);
  if (header.size() < kRecordHeaderBytes) return false;
  if (AllZero(header)) {
    // The end of the records, if only zeros follow.
    if (!ZerosFrom(reader, at)) *bad = BadRecord{at, at + kRecordHeaderBytes, "zero header"};
    return false;
  }
  const uint64_t length = ReadFixed32(header.data());
  const uint32_t expected_crc = ReadFixed32(header.data() + 4);
  const uint8_t type = static_cast<uint8_t>(header[8]);
  if (length > kMaxRecordBytes || at + kRecordHeaderBytes + length > size) {
    // In a file shorter than its preallocated size, a record cut by the end of the file is a
    // write the crash cut short. In a full-size file the length itself is garbage, with one
    // exception: a record too long for a whole segment is written into a fresh one right after
    // its preamble (Wal::MaybeCutSegment) and extends the file; cut short, the file ends anywhere
    // before the record's end, below, at or beyond the preallocated size.
    const bool oversized_alone =
        at + kRecordHeaderBytes + length > preallocated_bytes && FollowsSegmentPreamble(reader, at);
    const bool cut_short =
        length <= kMaxRecordBytes && (size < preallocated_bytes || oversized_alone);
    *bad = BadRecord{at, cut_short ? size : at + kRecordHeaderBytes,
                     absl::StrCat("record length ", length, " runs past the end of the file")};
    return false;
  }
  const absl::string_view bytes = reader.View(at, kRecordHeaderBytes + length);
  if (bytes.size() < kRecordHeaderBytes + length) return false;
  const absl::string_view payload = bytes.substr(kRecordHeaderBytes);
  const uint32_t found_crc = Crc32c(payload, Crc32c(bytes.substr(8, 1)));
  if (found_crc != expected_crc) {
    *bad = BadRecord{at, at + kRecordHeaderBytes + length,
                     absl::StrFormat("expected crc %08x, found %08x", expected_crc, found_crc)};
    return false;
  }
  if (type < static_cast<uint8_t>(RecordType::kSegmentHeader) ||
      type > static_cast<uint8_t>(RecordType::kSnapshot)) {
    *bad =
        BadRecord{at, at + kRecordHeaderBytes + length, absl::StrCat("unknown record type ", type)};
    return false;
  }
  record->type = static_cast<RecordType>(type);
  record->payload = payload;
  *offset = at + kRecordHeaderBytes + length;
  return true;
}

// Whether a valid record starts anywhere after `bad_offset`. A torn write never leaves one: the
// disk wrote a prefix of its sectors, so nothing written after the tear reached it. A bad record
// followed by a valid one is corruption. False on a read error too (reader.status() tells).
bool ValidRecordAfter(SegmentReader& reader, uint64_t preallocated_bytes, uint64_t bad_offset) {
  for (uint64_t at = bad_offset + 1; at + kRecordHeaderBytes <= reader.size();) {
    const absl::string_view header = reader.View(at, kRecordHeaderBytes);
    if (header.size() < kRecordHeaderBytes) return false;
    if (AllZero(header)) {
      // No record starts where its header is all zeros: the next candidate is the first start
      // whose header holds the next nonzero byte (past the last one, the loop ends).
      const uint64_t nonzero = NextNonZero(reader, at + kRecordHeaderBytes);
      if (!reader.status().ok()) return false;
      at = nonzero - (kRecordHeaderBytes - 1);
      continue;
    }
    uint64_t offset = at;
    Record record;
    std::optional<BadRecord> bad;
    if (ReadRecord(reader, preallocated_bytes, &offset, &record, &bad)) return true;
    ++at;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LogIndex

std::optional<raft::Term> Wal::LogIndex::TermOf(raft::Index index) const {
  if (index == snapshot_index) return snapshot_term;
  if (index < first || index >= first + terms.size()) return std::nullopt;
  return terms[index - first];
}

void Wal::LogIndex::AddEntry(raft::Index index, raft::Term term) {
  RAFT_CHECK(index > snapshot_index && index <= LastIndex() + 1)
      << "wal: entry " << index << " does not follow the log (snapshot " << snapshot_index
      << ", last " << LastIndex() << ")";
  if (terms.empty()) first = index;
  terms.resize(index - first);  // drops a conflicting suffix
  terms.push_back(term);
}

void Wal::LogIndex::AddMarker(raft::Index index, raft::Term term, bool replaces_log) {
  if (replaces_log) {
    terms.clear();
  } else if (index <= snapshot_index) {
    return;
  } else {
    while (!terms.empty() && first <= index) {
      terms.pop_front();
      ++first;
    }
  }
  snapshot_index = index;
  snapshot_term = term;
  if (terms.empty()) first = index + 1;
}

// ---------------------------------------------------------------------------------------------
// Wal

Wal::Wal(FileSystem* fs, std::string dir, const WalOptions& options)
    : fs_(fs), dir_(std::move(dir)), options_(options) {}

Wal::~Wal() = default;

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(FileSystem* fs, const std::string& dir,
                                               const WalOptions& options) {
  if (options.segment_bytes < 4 * kSectorBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("wal: segment_bytes ", options.segment_bytes, " is below ", 4 * kSectorBytes));
  }
  std::unique_ptr<Wal> wal(new Wal(fs, dir, options));
  if (options.read_only) {
    if (!fs->Exists(dir)) return absl::NotFoundError(absl::StrCat("wal: no directory ", dir));
  } else if (absl::Status s =
                 options.minimal_dir_syncs ? MakeDirDurable(fs, dir) : CreateDirDurably(fs, dir);
             !s.ok()) {
    return s;
  }
  if (absl::Status s = wal->Recover(); !s.ok()) return s;
  return wal;
}

std::vector<std::string> Wal::SegmentPaths() const {
  std::vector<std::string> paths;
  for (const Segment& segment : segments_) paths.push_back(segment.path);
  return paths;
}

absl::Status Wal::Recover() {
  auto names = fs_->List(dir_);
  if (!names.ok()) return names.status();
  std::vector<Segment> found;
  for (const std::string& name : *names) {
    uint64_t sequence = 0;
    if (ParseSegmentName(name, &sequence)) {
      found.push_back(Segment{sequence, JoinPath(dir_, name), 0});
    } else if (absl::EndsWith(name, ".tmp") && !options_.read_only) {
      // A snapshot file whose save never completed: never renamed, so never referenced.
      (void)fs_->Remove(JoinPath(dir_, name));
    }
  }
  // The complete log is the newest contiguous run of segments; older ones before a gap are
  // leftovers of a compaction whose removals were not all durable. They are removed only once
  // the run after the gap has recovered to an anchored log: if a segment in the middle went
  // missing instead (a lost file, fsck), recovery refuses and the older segments stay for the
  // operator.
  size_t start = found.size();
  while (start > 0 &&
         (start == found.size() || found[start - 1].sequence + 1 == found[start].sequence)) {
    --start;
  }
  std::vector<std::string> before_gap;
  for (size_t i = 0; i < start; ++i) before_gap.push_back(found[i].path);
  found.erase(found.begin(), found.begin() + start);

  raft::RestartState& state = recovery_.state;
  raft::SnapshotMetadata marker;
  bool have_marker = false;
  raft::Index unanchored_start = 0;  // the first entry, when the log does not start at 1
  bool awaiting_anchor = false;      // no marker has covered the entries before it yet
  bool saw_entry = false;            // an entry record was replayed
  std::string window, chunk;         // the segment readers' buffers, reused
  for (size_t i = 0; i < found.size(); ++i) {
    Segment& segment = found[i];
    const bool newest = i + 1 == found.size();
    auto file = fs_->Open(segment.path, OpenMode::kRead);
    if (!file.ok()) return file.status();
    auto size = (*file)->Size();
    if (!size.ok()) return size.status();
    SegmentReader reader(file->get(), *size, &window, &chunk);

    uint64_t offset = 0;
    uint64_t record_offset = 0;  // where the record being replayed starts
    Record record;
    std::optional<BadRecord> bad;
    bool saw_header = false;
    for (; ReadRecord(reader, options_.segment_bytes, &offset, &record, &bad);
         record_offset = offset) {
      absl::string_view in = record.payload;
      auto malformed = [&](absl::string_view what) {
        return absl::DataLossError(absl::StrCat("wal: malformed ", what, " record in ",
                                                segment.path, " at offset ", record_offset));
      };
      if (!saw_header && record.type != RecordType::kSegmentHeader) {
        return absl::DataLossError(
            absl::StrCat("wal: ", segment.path, " does not start with a segment header"));
      }
      ++recovery_.records;
      switch (record.type) {
        case RecordType::kSegmentHeader: {
          uint64_t sequence = 0;
          if (saw_header || !GetFixed64(&in, &sequence)) return malformed("segment header");
          if (sequence != segment.sequence) {
            return absl::DataLossError(
                absl::StrCat("wal: ", segment.path, " claims to be segment ", sequence));
          }
          saw_header = true;
          break;
        }
        case RecordType::kEntry: {
          raft::Entry entry;
          uint64_t type = 0;
          if (!GetFixed64(&in, &entry.term) || !GetFixed64(&in, &entry.index) || in.empty()) {
            return malformed("entry");
          }
          type = static_cast<uint8_t>(in[0]);
          in.remove_prefix(1);
          if (type > static_cast<uint8_t>(raft::EntryType::kConfChange)) return malformed("entry");
          entry.type = static_cast<raft::EntryType>(type);
          entry.data = raft::Bytes(in);
          // The oldest segment left by a compaction may begin in the middle of the log, before
          // the marker that covers its first entries: the log starts at its first entry. Until a
          // marker covers that start, an entry below it rewrites the log from there (a new
          // leader's conflicting suffix), which moves the start down.
          //
          // The segments before the first entry may hold no entries at all (a member that only
          // campaigned while isolated fills segments with hard states): compaction removed the
          // segments oldest first, and a crash kept only a prefix of those removals, so the
          // remaining run may begin with such segments, whose marker predates the log's start.
          // The marker that covers the start then comes later (the check after the loop).
          const bool log_starts_here =
              (!saw_entry && entry.index > written_.LastIndex() + 1) ||
              (awaiting_anchor && entry.index < unanchored_start && entry.index > marker.index);
          if (log_starts_here) {
            written_.terms.clear();
            state.entries.clear();
            written_.snapshot_index = entry.index - 1;
            written_.first = entry.index;
            written_.snapshot_term = 0;
            unanchored_start = entry.index;
            awaiting_anchor = true;
          }
          if (entry.index <= written_.snapshot_index || entry.index > written_.LastIndex() + 1) {
            return absl::DataLossError(absl::StrCat(
                "wal: entry ", entry.index, " in ", segment.path, " at offset ", record_offset,
                " does not follow the log (snapshot ", written_.snapshot_index, ", last ",
                written_.LastIndex(), "): entries are missing"));
          }
          const raft::Index keep = entry.index - written_.first;
          if (keep < state.entries.size()) state.entries.resize(keep);
          written_.AddEntry(entry.index, entry.term);
          state.entries.push_back(std::move(entry));
          saw_entry = true;
          segment.last_entry = std::max(segment.last_entry, written_.LastIndex());
          break;
        }
        case RecordType::kHardState: {
          raft::HardState hs;
          if (!GetFixed64(&in, &hs.term) || !GetFixed64(&in, &hs.vote) ||
              !GetFixed64(&in, &hs.commit)) {
            return malformed("hard state");
          }
          state.hard_state = hs;
          written_.hard_state = hs;
          break;
        }
        case RecordType::kSnapshot: {
          raft::SnapshotMetadata mark;
          absl::string_view conf;
          if (!GetFixed64(&in, &mark.index) || !GetFixed64(&in, &mark.term) || in.empty()) {
            return malformed("snapshot marker");
          }
          const uint8_t flags = static_cast<uint8_t>(in[0]);
          in.remove_prefix(1);
          if (!GetLengthPrefixed(&in, &conf)) return malformed("snapshot marker");
          auto cs = raft::DecodeConfState(conf);
          if (!cs.ok()) return malformed("snapshot marker");
          mark.conf_state = std::move(*cs);
          const bool replaces = (flags & kMarkerReplacesLog) != 0;
          // The marker that covers the entries before an unanchored start ends right before it.
          const bool anchors_start =
              awaiting_anchor && mark.index + 1 == unanchored_start && !replaces;
          if (anchors_start) {
            awaiting_anchor = false;
            written_.snapshot_term = mark.term;
            marker = std::move(mark);
            have_marker = true;
            recovery_.snapshot_has_data = (flags & kMarkerHasData) != 0;
          } else if (replaces || mark.index > written_.snapshot_index) {
            const raft::Index old_first = written_.first;
            written_.AddMarker(mark.index, mark.term, replaces);
            if (mark.index + 1 >= unanchored_start) awaiting_anchor = false;
            if (replaces) {
              state.entries.clear();
            } else {
              // state.entries[i] is entry old_first + i: drop those the marker covers.
              const size_t covered = mark.index >= old_first ? mark.index - old_first + 1 : 0;
              const size_t drop = std::min(state.entries.size(), covered);
              state.entries.erase(state.entries.begin(), state.entries.begin() + drop);
            }
            marker = std::move(mark);
            have_marker = true;
            recovery_.snapshot_has_data = (flags & kMarkerHasData) != 0;
          }
          break;
        }
      }
    }
    if (!reader.status().ok()) return reader.status();
    if (bad.has_value()) {
      // A torn tail leaves only zeros past the sector holding the bad record's claimed end.
      const uint64_t clean_from = std::min<uint64_t>(RoundUpToSector(bad->claimed_end), *size);
      const bool torn = newest && ZerosFrom(reader, clean_from) &&
                        !ValidRecordAfter(reader, options_.segment_bytes, bad->offset);
      if (!reader.status().ok()) return reader.status();
      if (!torn) {
        return absl::DataLossError(absl::StrCat("wal: corrupt record in ", segment.path,
                                                " at offset ", bad->offset, ": ", bad->reason));
      }
      recovery_.torn_file = segment.path;
      recovery_.torn_offset = bad->offset;
      recovery_.torn_bytes = clean_from - bad->offset;
      offset = bad->offset;
    }
    file->reset();
    if (!saw_header) {
      if (!newest) {
        return absl::DataLossError(absl::StrCat("wal: ", segment.path, " has no segment header"));
      }
      // A segment created just before a crash, before anything in it was durable.
      if (!options_.read_only) {
        if (absl::Status s = fs_->Remove(segment.path); !s.ok()) return s;
      }
      found.pop_back();
      break;
    }
    segment.last_entry = std::max(segment.last_entry, written_.LastIndex());
    if (newest && !options_.read_only) {
      // Continue writing where the records end; wipe a torn tail so it cannot resurface.
      auto out = fs_->Open(segment.path, OpenMode::kReadWrite);
      if (!out.ok()) return out.status();
      file_ = std::move(*out);
      if (bad.has_value()) {
        if (absl::Status s = file_->Truncate(offset); !s.ok()) return s;
        const uint64_t preallocated = std::max(*size, options_.segment_bytes);
        if (absl::Status s = file_->Truncate(preallocated); !s.ok()) return s;
        if (absl::Status s = file_->DataSync(); !s.ok()) return s;
      }
      file_offset_ = offset;
    }
  }
  if (unanchored_start > 1 && (awaiting_anchor || marker.index + 1 < unanchored_start)) {
    return absl::DataLossError(
        absl::StrCat("wal: the log in ", dir_, " starts at entry ", unanchored_start,
                     " but no snapshot marker covers the entries before it: segments are missing"));
  }
  // The directory sync below makes these removals durable.
  if (!options_.read_only) {
    for (const std::string& path : before_gap) (void)fs_->Remove(path);
  }
  segments_ = std::move(found);
  recovery_.segments = segments_.size();
  if (have_marker) {
    auto snapshot = std::make_shared<raft::Snapshot>();
    snapshot->metadata = marker;
    state.snapshot = std::move(snapshot);
    state.applied = marker.index;
    marker_ = marker;
    marker_has_data_ = recovery_.snapshot_has_data;
  }
  if (!options_.read_only && !segments_.empty()) {
    // What recovery read may sit only in the page cache: a process killed (not a machine)
    // before its sync leaves its last appends readable but not durable, and Raft takes what
    // recovery reports as persisted (its vote, entries it acknowledges to a leader). So it is
    // made durable first, as PostgreSQL syncs its data after a crash: the newest segment (a cut
    // syncs each older one before the next exists) and the directory that names them.
    if (file_ != nullptr) {
      if (absl::Status s = file_->DataSync(); !s.ok()) return s;
    }
    if (absl::Status s = fs_->SyncDir(dir_); !s.ok()) return s;
  }
  durable_ = written_;
  durable_marker_ = written_.snapshot_index;
  durable_marker_has_data_ = marker_has_data_;
  if (file_ == nullptr && !options_.read_only) {
    // No segment to continue: an empty directory, or the newest segment held nothing durable
    // and was dropped (its predecessor was full and synced when it was created).
    const uint64_t sequence = segments_.empty() ? 1 : segments_.back().sequence + 1;
    if (absl::Status s = CreateSegment(sequence); !s.ok()) return s;
    auto batch = StartSync();
    if (!batch.ok()) return batch.status();
    return FinishSync(**batch, (*batch)->Run());
  }
  return absl::OkStatus();
}

absl::Status Wal::CreateSegment(uint64_t sequence) {
  const std::string path = JoinPath(dir_, SegmentName(sequence));
  auto file = fs_->Open(path, OpenMode::kCreate);
  if (!file.ok()) return file.status();
  // Preallocate: appends then never change the file's size, and a full disk shows here, at a
  // clean point between records, rather than in the middle of a write.
  if (absl::Status s = (*file)->Truncate(options_.segment_bytes); !s.ok()) {
    (void)fs_->Remove(path);
    return s;
  }
  segments_.push_back(Segment{sequence, path, 0});
  file_ = std::move(*file);
  file_offset_ = 0;
  unsynced_files_.push_back(file_);
  new_segment_unsynced_ = true;
  // Every segment starts self-describing: its number, the latest marker, the latest hard state.
  const size_t header = BeginRecord(RecordType::kSegmentHeader, 8);
  PutFixed64(&buffer_, sequence);
  FinishRecord(header);
  if (marker_.index > 0) AppendMarker(marker_, marker_has_data_, /*replaces_log=*/false);
  AppendHardState(written_.hard_state);
  has_unsynced_ = true;
  return absl::OkStatus();
}

size_t Wal::BeginRecord(RecordType type, size_t payload_bytes) {
  // The payload is encoded straight after its header in the buffer, which FinishRecord then
  // fills in: no copy of the payload is made on the way to the file.
  const size_t start = buffer_.size();
  buffer_.reserve(start + kRecordHeaderBytes + payload_bytes);
  char header[kRecordHeaderBytes] = {};
  header[8] = static_cast<char>(type);
  buffer_.append(header, kRecordHeaderBytes);
  return start;
}

void Wal::FinishRecord(size_t start) {
  const size_t payload_start = start + kRecordHeaderBytes;
  const absl::string_view payload(buffer_.data() + payload_start, buffer_.size() - payload_start);
  RAFT_CHECK(payload.size() <= kMaxRecordBytes) << "wal: record of " << payload.size() << " bytes";
  const uint32_t length = static_cast<uint32_t>(payload.size());
  const uint32_t crc = Crc32c(payload, Crc32c(absl::string_view(&buffer_[start + 8], 1)));
  std::memcpy(&buffer_[start], &length, 4);
  std::memcpy(&buffer_[start + 4], &crc, 4);
}

void Wal::AppendEntry(const raft::Entry& entry) {
  const absl::string_view data = entry.data.view();
  const size_t header = BeginRecord(RecordType::kEntry, 17 + data.size());
  PutFixed64(&buffer_, entry.term);
  PutFixed64(&buffer_, entry.index);
  buffer_.push_back(static_cast<char>(entry.type));
  buffer_.append(data.data(), data.size());
  FinishRecord(header);
  written_.AddEntry(entry.index, entry.term);
  segments_.back().last_entry = std::max(segments_.back().last_entry, entry.index);
  unsynced_records_.push_back(PendingRecord{RecordType::kEntry, entry.index, entry.term, {}});
}

void Wal::AppendHardState(const raft::HardState& hard_state) {
  const size_t header = BeginRecord(RecordType::kHardState, 24);
  PutFixed64(&buffer_, hard_state.term);
  PutFixed64(&buffer_, hard_state.vote);
  PutFixed64(&buffer_, hard_state.commit);
  FinishRecord(header);
  written_.hard_state = hard_state;
  PendingRecord record{RecordType::kHardState};
  record.hard_state = hard_state;
  unsynced_records_.push_back(record);
}

void Wal::AppendMarker(const raft::SnapshotMetadata& mark, bool has_data, bool replaces_log) {
  const std::string conf_state = raft::EncodeConfState(mark.conf_state);
  const size_t header = BeginRecord(RecordType::kSnapshot, 17 + 10 + conf_state.size());
  PutFixed64(&buffer_, mark.index);
  PutFixed64(&buffer_, mark.term);
  buffer_.push_back(
      static_cast<char>((has_data ? kMarkerHasData : 0) | (replaces_log ? kMarkerReplacesLog : 0)));
  PutLengthPrefixed(&buffer_, conf_state);
  FinishRecord(header);
  written_.AddMarker(mark.index, mark.term, replaces_log);
  PendingRecord record{RecordType::kSnapshot, mark.index, mark.term, {}};
  record.replaces_log = replaces_log;
  record.has_data = has_data;
  record.segment = segments_.back().sequence;
  unsynced_records_.push_back(record);
}

absl::Status Wal::Fail(absl::Status status) {
  if (failure_.ok()) {
    failure_ = absl::Status(
        status.code(), absl::StrCat("wal: ", status.message(),
                                    " (the log's state on disk is unknown: the member stops)"));
  }
  return failure_;
}

absl::Status Wal::WriteBuffer() {
  if (buffer_.empty()) return absl::OkStatus();
  // The file takes the buffer (the simulator keeps it as the unsynced write, uncopied); the next
  // one starts with room for as much.
  const size_t size = buffer_.size();
  if (absl::Status s = file_->WriteAtOwned(file_offset_, std::move(buffer_)); !s.ok()) {
    return Fail(s);
  }
  file_offset_ += size;
  buffer_.clear();
  buffer_.reserve(size);
  if (unsynced_files_.empty() || unsynced_files_.back() != file_) unsynced_files_.push_back(file_);
  return absl::OkStatus();
}

absl::Status Wal::MaybeCutSegment(size_t next_record_bytes) {
  if (file_offset_ + buffer_.size() + next_record_bytes <= options_.segment_bytes ||
      file_offset_ + buffer_.size() == 0) {
    return absl::OkStatus();
  }
  // The segment is full. Make it durable before the next one exists, so recovery never meets a
  // torn record anywhere but in the newest segment.
  if (absl::Status s = WriteBuffer(); !s.ok()) return s;
  if (absl::Status s = file_->DataSync(); !s.ok()) return Fail(s);
  if (absl::Status s = CreateSegment(segments_.back().sequence + 1); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::Status Wal::Append(const raft::PersistRequest& request, bool needs_sync) {
  if (!failure_.ok()) return failure_;
  if (options_.read_only) return absl::FailedPreconditionError("wal: opened read-only");
  if (request.snapshot != nullptr) {
    const raft::Snapshot& snapshot = *request.snapshot;
    const bool has_data = !snapshot.data.empty();
    if (has_data) {
      // The data must be durable before a marker that refers to it can be.
      if (absl::Status s = SaveSnapshotFile(fs_, dir_, snapshot.metadata, snapshot.data.view());
          !s.ok()) {
        return Fail(s);
      }
    }
    if (absl::Status s = MaybeCutSegment(64 + kRecordHeaderBytes); !s.ok()) return s;
    AppendMarker(snapshot.metadata, has_data, /*replaces_log=*/true);
    marker_ = snapshot.metadata;
    marker_has_data_ = has_data;
  }
  for (const raft::Entry& entry : request.entries) {
    if (absl::Status s = MaybeCutSegment(entry.data.size() + 17 + kRecordHeaderBytes); !s.ok()) {
      return s;
    }
    AppendEntry(entry);
  }
  if (request.hard_state.has_value()) {
    if (absl::Status s = MaybeCutSegment(24 + kRecordHeaderBytes); !s.ok()) return s;
    AppendHardState(*request.hard_state);
  }
  if (request.id != 0) last_persist_id_ = request.id;
  if (needs_sync) has_unsynced_ = true;
  if (buffer_.size() >= options_.write_buffer_bytes) return WriteBuffer();
  return absl::OkStatus();
}

absl::Status Wal::Compact(const raft::SnapshotMetadata& mark) {
  if (!failure_.ok()) return failure_;
  if (options_.read_only) return absl::FailedPreconditionError("wal: opened read-only");
  if (mark.index <= written_.snapshot_index) return absl::OkStatus();
  const std::optional<raft::Term> term = written_.TermOf(mark.index);
  if (!term.has_value() || *term != mark.term) {
    return absl::InvalidArgumentError(absl::StrCat("wal: compaction at index ", mark.index,
                                                   " term ", mark.term, " does not match the log"));
  }
  if (absl::Status s = MaybeCutSegment(64 + kRecordHeaderBytes); !s.ok()) return s;
  AppendMarker(mark, /*has_data=*/false, /*replaces_log=*/false);
  marker_ = mark;
  marker_has_data_ = false;
  has_unsynced_ = true;
  return absl::OkStatus();
}

bool Wal::HasUnsynced() const { return has_unsynced_; }

absl::StatusOr<std::unique_ptr<Wal::SyncBatch>> Wal::StartSync() {
  if (!failure_.ok()) return failure_;
  if (in_flight_ || !has_unsynced_) return std::unique_ptr<SyncBatch>();
  if (absl::Status s = WriteBuffer(); !s.ok()) return s;
  auto batch = std::make_unique<SyncBatch>();
  batch->fs_ = fs_;
  batch->dir_ = dir_;
  batch->sync_dir_ = new_segment_unsynced_;
  batch->files_ = std::move(unsynced_files_);
  batch->persist_id_ = last_persist_id_;
  batch->sequence_ = next_batch_++;
  unsynced_files_.clear();
  new_segment_unsynced_ = false;
  in_flight_records_ = std::move(unsynced_records_);
  unsynced_records_.clear();
  has_unsynced_ = false;
  in_flight_ = true;
  return batch;
}

absl::Status Wal::SyncBatch::Run() {
  for (const std::shared_ptr<File>& file : files_) {
    if (absl::Status s = file->DataSync(); !s.ok()) return s;
  }
  if (sync_dir_) return fs_->SyncDir(dir_);
  return absl::OkStatus();
}

absl::Status Wal::FinishSync(const SyncBatch& batch, absl::Status result) {
  RAFT_CHECK(in_flight_ && batch.sequence_ + 1 == next_batch_)
      << "wal: FinishSync of batch " << batch.sequence_ << " which is not in flight";
  in_flight_ = false;
  if (!result.ok()) return Fail(result);
  if (!failure_.ok()) return failure_;
  const PendingRecord* marker = nullptr;
  for (const PendingRecord& record : in_flight_records_) {
    switch (record.type) {
      case RecordType::kEntry:
        durable_.AddEntry(record.index, record.term);
        break;
      case RecordType::kHardState:
        durable_.hard_state = record.hard_state;
        break;
      case RecordType::kSnapshot:
        durable_.AddMarker(record.index, record.term, record.replaces_log);
        // The first record of the marker the batch leaves durable: the oldest segment it went to.
        if (record.index == durable_.snapshot_index &&
            (marker == nullptr || marker->index != record.index)) {
          marker = &record;
        }
        break;
      case RecordType::kSegmentHeader:
        break;
    }
  }
  const bool marker_advanced = durable_.snapshot_index > durable_marker_;
  if (marker_advanced) {
    durable_marker_ = durable_.snapshot_index;
    durable_marker_segment_ = marker != nullptr ? marker->segment : 0;
    if (marker != nullptr) durable_marker_has_data_ = marker->has_data;
  }
  in_flight_records_.clear();
  return marker_advanced ? RemoveCoveredSegments() : absl::OkStatus();
}

absl::Status Wal::RemoveCoveredSegments() {
  // Oldest first, so what remains is always a contiguous run ending with the newest segment.
  // Never the segment that holds the durable marker, nor a later one: a segment cut after the
  // marker's batch started repeats the marker and the hard state in its header, but no sync has
  // made that header durable yet (fuzz seed 300713: removing everything older left a crash with
  // an empty log, the member's vote and term forgotten).
  size_t removed = 0;
  while (removed + 1 < segments_.size() && segments_[removed].sequence < durable_marker_segment_ &&
         segments_[removed].last_entry <= durable_marker_) {
    if (absl::Status s = fs_->Remove(segments_[removed].path); !s.ok()) return Fail(s);
    ++removed;
  }
  segments_.erase(segments_.begin(), segments_.begin() + removed);
  // Snapshot files other than the one the durable marker needs are never read again.
  auto names = fs_->List(dir_);
  if (!names.ok()) return Fail(names.status());
  // The durable marker's (what a crash now recovers) and the latest appended marker's.
  const std::string keep =
      durable_marker_has_data_ ? SnapshotFileName(durable_.snapshot_term, durable_marker_) : "";
  for (const std::string& name : *names) {
    // A file above the durable marker may belong to a marker still waiting for its sync (two
    // snapshots received within one sync: only the latest is marker_).
    if (absl::EndsWith(name, ".snap") && name != keep && !AboveIndex(name, durable_marker_) &&
        name != SnapshotFileName(marker_.term, marker_.index)) {
      if (absl::Status s = fs_->Remove(JoinPath(dir_, name)); !s.ok()) return Fail(s);
    }
  }
  return absl::OkStatus();
}

absl::Status Wal::AppendAndSync(const raft::PersistRequest& request) {
  if (absl::Status s = Append(request); !s.ok()) return s;
  auto batch = StartSync();
  if (!batch.ok()) return batch.status();
  if (*batch == nullptr) return absl::OkStatus();
  return FinishSync(**batch, (*batch)->Run());
}

absl::StatusOr<raft::Bytes> Wal::ReadSnapshotData(const raft::SnapshotMetadata& marker) const {
  auto snapshot = LoadSnapshotFile(fs_, dir_, marker.term, marker.index);
  if (!snapshot.ok()) return snapshot.status();
  return std::move(snapshot->data);
}

absl::StatusOr<std::vector<WalRecordLocation>> ScanWal(FileSystem* fs, const std::string& dir,
                                                       const WalOptions& options) {
  auto names = fs->List(dir);
  if (!names.ok()) return names.status();
  std::vector<WalRecordLocation> records;
  std::string window, chunk;
  for (const std::string& name : *names) {
    uint64_t sequence = 0;
    if (!ParseSegmentName(name, &sequence)) continue;
    const std::string path = JoinPath(dir, name);
    auto file = fs->Open(path, OpenMode::kRead);
    if (!file.ok()) return file.status();
    auto size = (*file)->Size();
    if (!size.ok()) return size.status();
    SegmentReader reader(file->get(), *size, &window, &chunk);
    uint64_t offset = 0;
    Record record;
    std::optional<BadRecord> bad;
    while (true) {
      const uint64_t at = offset;
      if (!ReadRecord(reader, options.segment_bytes, &offset, &record, &bad)) break;
      records.push_back(WalRecordLocation{path, at, offset - at, record.type});
    }
    if (!reader.status().ok()) return reader.status();
  }
  return records;
}

std::optional<CorruptionSpot> PickCorruptionSpot(const std::vector<WalRecordLocation>& records,
                                                 bool oldest_segment) {
  if (records.empty()) return std::nullopt;
  const std::string& oldest = records.front().path;
  const bool several_segments = records.back().path != oldest;
  if (oldest_segment && !several_segments) return std::nullopt;
  std::vector<const WalRecordLocation*> entries;
  for (const WalRecordLocation& record : records) {
    if (record.type != RecordType::kEntry) continue;
    if (oldest_segment && record.path != oldest) continue;
    entries.push_back(&record);
  }
  if (entries.size() < (oldest_segment ? 1u : 3u)) return std::nullopt;
  const WalRecordLocation& victim = *entries[entries.size() / 2];
  return CorruptionSpot{&victim, std::min(victim.offset + kRecordHeaderBytes + victim.bytes / 2,
                                          victim.offset + victim.bytes - 1)};
}

}  // namespace kvstore::store
