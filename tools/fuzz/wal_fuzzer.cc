// Fuzzes WAL recovery (store/wal.h) and the snapshot files a marker points at, over the simulated
// disk: the input is a file bundle (fuzz_util.h) put in the log's directory as it would be found
// after a crash. Segment files are padded to the segment size, as preallocation leaves them.
//
// The first byte selects options: bit 0 recomputes every record's CRC before the files are
// written, so mutations reach the record decoders instead of stopping at the checksum (a real
// torn or corrupted record is what the other inputs exercise).
//
// Properties, beyond "no crash, no leak, no allocation above libFuzzer's -malloc_limit_mb":
//   - a read-only recovery and a normal one agree: both refuse, or both see the same log;
//   - a log that recovers can be continued: one more entry appended and synced, and the log
//     reopened, holds it (a recovery that accepts a state it cannot append to is a latent outage);
//   - ScanWal never fails on what Open accepted.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/raft/raft.h"
#include "store/crc32c.h"
#include "store/sim_file_system.h"
#include "store/wal.h"
#include "tools/fuzz/fuzz_util.h"

namespace kvstore::fuzz {
namespace {

constexpr char kDir[] = "/wal";
// Small segments keep padding cheap and make multi-segment logs common.
constexpr uint64_t kSegmentBytes = 8 << 10;
// Above this the input is skipped: it would only slow the fuzzer down.
constexpr size_t kMaxInputBytes = 256 << 10;

uint32_t ReadU32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(s[at + i])} << (8 * i);
  return v;
}

void WriteU32(std::string* s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*s)[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// Walks the records of a segment (length | crc | type | payload) and makes every CRC right.
void FixRecordCrcs(std::string* segment) {
  size_t at = 0;
  while (at + store::kRecordHeaderBytes <= segment->size()) {
    const uint32_t length = ReadU32(*segment, at);
    if (length == 0 && (*segment)[at + 8] == 0) return;  // the zeros after the last record
    const size_t end = at + store::kRecordHeaderBytes + length;
    if (end > segment->size() || end < at) return;
    WriteU32(segment, at + 4,
             store::Crc32c(absl::string_view(*segment).substr(at + 8, end - at - 8)));
    at = end;
  }
}

struct Opened {
  bool ok = false;
  raft::Index last_index = 0;
  raft::Index snapshot_index = 0;
  raft::HardState hard_state;
  size_t entries = 0;
};

Opened Describe(const store::Wal& wal) {
  Opened out;
  out.ok = true;
  const raft::RestartState& state = wal.recovery().state;
  out.last_index = wal.last_index();
  out.snapshot_index = state.snapshot != nullptr ? state.snapshot->metadata.index : 0;
  out.hard_state = state.hard_state;
  out.entries = state.entries.size();
  for (size_t i = 1; i < state.entries.size(); ++i) {
    FUZZ_CHECK(state.entries[i].index == state.entries[i - 1].index + 1,
               "recovered entries not contiguous at %zu", i);
  }
  if (!state.entries.empty()) {
    FUZZ_CHECK(state.entries.back().index == wal.last_index(), "last index %llu vs entries %llu",
               static_cast<unsigned long long>(wal.last_index()),
               static_cast<unsigned long long>(state.entries.back().index));
  }
  return out;
}

}  // namespace
}  // namespace kvstore::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstore;
  using namespace kvstore::fuzz;
  if (size < 1 || size > kMaxInputBytes) return 0;
  const bool fix_crcs = (data[0] & 1) != 0;
  std::vector<BundleFile> files =
      ParseBundle(absl::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));

  store::SimFileSystem fs(/*seed=*/1);
  FUZZ_CHECK(fs.CreateDir(kDir).ok(), "mkdir");
  for (BundleFile& file : files) {
    const bool segment = absl::string_view(file.name).size() > 4 &&
                         absl::string_view(file.name).substr(file.name.size() - 4) == ".wal";
    if (segment && fix_crcs) FixRecordCrcs(&file.content);
    auto out = fs.Open(store::JoinPath(kDir, file.name), store::OpenMode::kCreateTruncate);
    if (!out.ok()) continue;  // a duplicate name, say
    FUZZ_CHECK((*out)->Append(file.content).ok(), "write");
    if (segment && file.content.size() < kSegmentBytes) {
      FUZZ_CHECK((*out)->Truncate(kSegmentBytes).ok(), "preallocate");
    }
    FUZZ_CHECK((*out)->Sync().ok(), "sync");
  }
  FUZZ_CHECK(fs.SyncDir(kDir).ok(), "syncdir");

  store::WalOptions options;
  options.segment_bytes = kSegmentBytes;
  options.write_buffer_bytes = 4 << 10;

  Opened read_only;
  {
    store::WalOptions ro = options;
    ro.read_only = true;
    auto wal = store::Wal::Open(&fs, kDir, ro);
    if (wal.ok()) read_only = Describe(**wal);
  }
  auto scanned = store::ScanWal(&fs, kDir, options);

  auto wal = store::Wal::Open(&fs, kDir, options);
  if (!wal.ok()) {
    FUZZ_CHECK(!read_only.ok, "read-only recovery accepted what recovery refused: %s",
               std::string(wal.status().message()).c_str());
    return 0;
  }
  const Opened opened = Describe(**wal);
  FUZZ_CHECK(read_only.ok, "recovery accepted what read-only recovery refused");
  FUZZ_CHECK(read_only.last_index == opened.last_index && read_only.entries == opened.entries &&
                 read_only.snapshot_index == opened.snapshot_index,
             "read-only recovery saw last %llu, recovery %llu",
             static_cast<unsigned long long>(read_only.last_index),
             static_cast<unsigned long long>(opened.last_index));
  FUZZ_CHECK(scanned.ok(), "ScanWal failed on a log Open accepted: %s",
             std::string(scanned.status().message()).c_str());

  if ((*wal)->recovery().snapshot_has_data && (*wal)->recovery().state.snapshot != nullptr) {
    (void)(*wal)->ReadSnapshotData((*wal)->recovery().state.snapshot->metadata);
  }

  // Continue the log by one entry, then recover it again.
  const raft::RestartState& state = (*wal)->recovery().state;
  raft::Term term = std::max<raft::Term>(state.hard_state.term, 1);
  if (!state.entries.empty()) term = std::max(term, state.entries.back().term);
  if (state.snapshot != nullptr) term = std::max(term, state.snapshot->metadata.term);
  if (term == UINT64_MAX || opened.last_index == UINT64_MAX) return 0;
  raft::Entry entry;
  entry.index = opened.last_index + 1;
  entry.term = term;
  entry.data = raft::Bytes(std::string("fuzz"));
  std::vector<raft::Entry> entries = {entry};
  raft::PersistRequest request;
  request.id = (*wal)->appended_persist_id() + 1;
  request.entries = entries;
  request.hard_state = raft::HardState{term, state.hard_state.vote, state.hard_state.commit};
  const absl::Status appended = (*wal)->AppendAndSync(request);
  FUZZ_CHECK(appended.ok(), "append after recovery: %s", std::string(appended.message()).c_str());
  wal->reset();

  auto again = store::Wal::Open(&fs, kDir, options);
  FUZZ_CHECK(again.ok(), "the continued log does not recover: %s",
             std::string(again.status().message()).c_str());
  FUZZ_CHECK((*again)->last_index() == entry.index, "reopened at %llu, expected %llu",
             static_cast<unsigned long long>((*again)->last_index()),
             static_cast<unsigned long long>(entry.index));
  return 0;
}
