#include "store/snapshot_file.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/encoding.h"
#include "store/crc32c.h"

namespace kvstore::store {
namespace {

constexpr absl::string_view kMagic = "KVSNAP1\n";
constexpr size_t kHeaderBytes = 8 + 8 + 4;

void PutFixed64(std::string* out, uint64_t value) {
  char buf[8];
  std::memcpy(buf, &value, 8);
  out->append(buf, 8);
}

uint64_t ReadFixed64(const char* p) {
  uint64_t value;
  std::memcpy(&value, p, 8);
  return value;
}

}  // namespace

std::string SnapshotFileName(raft::Term term, raft::Index index) {
  return absl::StrFormat("%016x-%016x.snap", term, index);
}

absl::Status SaveSnapshotFile(FileSystem* fs, const std::string& dir,
                              const raft::SnapshotMetadata& metadata, absl::string_view data) {
  std::string body;
  body.reserve(16 + 64 + data.size());
  PutFixed64(&body, metadata.index);
  PutFixed64(&body, metadata.term);
  PutLengthPrefixed(&body, raft::EncodeConfState(metadata.conf_state));
  body.append(data.data(), data.size());
  std::string file(kMagic);
  PutFixed64(&file, body.size());
  const uint32_t crc = Crc32c(body);
  char crc_bytes[4];
  std::memcpy(crc_bytes, &crc, 4);
  file.append(crc_bytes, 4);
  file.append(body);

  return WriteFileDurably(fs, dir, SnapshotFileName(metadata.term, metadata.index), file);
}

absl::StatusOr<raft::Snapshot> LoadSnapshotFile(FileSystem* fs, const std::string& dir,
                                                raft::Term term, raft::Index index) {
  const std::string path = JoinPath(dir, SnapshotFileName(term, index));
  auto in = fs->Open(path, OpenMode::kRead);
  if (!in.ok()) return in.status();
  auto size = (*in)->Size();
  if (!size.ok()) return size.status();
  std::string file;
  if (absl::Status s = (*in)->ReadAt(0, *size, &file); !s.ok()) return s;
  if (file.size() < kHeaderBytes || absl::string_view(file).substr(0, 8) != kMagic) {
    return absl::DataLossError(absl::StrCat("snapshot file ", path, " has no valid header"));
  }
  const uint64_t body_bytes = ReadFixed64(file.data() + 8);
  uint32_t expected_crc;
  std::memcpy(&expected_crc, file.data() + 16, 4);
  if (body_bytes != file.size() - kHeaderBytes) {
    return absl::DataLossError(absl::StrCat("snapshot file ", path, " holds ",
                                            file.size() - kHeaderBytes,
                                            " bytes of body, header says ", body_bytes));
  }
  absl::string_view body = absl::string_view(file).substr(kHeaderBytes);
  const uint32_t found_crc = Crc32c(body);
  if (found_crc != expected_crc) {
    return absl::DataLossError(
        absl::StrFormat("snapshot file %s is corrupt: expected crc %08x, found %08x", path,
                        expected_crc, found_crc));
  }
  raft::Snapshot snapshot;
  absl::string_view conf;
  if (body.size() < 16) return absl::DataLossError(absl::StrCat(path, ": short body"));
  snapshot.metadata.index = ReadFixed64(body.data());
  snapshot.metadata.term = ReadFixed64(body.data() + 8);
  body.remove_prefix(16);
  if (!GetLengthPrefixed(&body, &conf)) {
    return absl::DataLossError(absl::StrCat(path, ": malformed configuration"));
  }
  auto conf_state = raft::DecodeConfState(conf);
  if (!conf_state.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", conf_state.status().message()));
  }
  snapshot.metadata.conf_state = std::move(*conf_state);
  if (snapshot.metadata.index != index || snapshot.metadata.term != term) {
    return absl::DataLossError(absl::StrCat(path, " holds the snapshot at index ",
                                            snapshot.metadata.index, " term ",
                                            snapshot.metadata.term));
  }
  snapshot.data = raft::Bytes(body);
  return snapshot;
}

}  // namespace kvstore::store
