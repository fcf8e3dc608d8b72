// Fuzzes the loading of a snapshot file (store/snapshot_file.h): the input is the file's bytes,
// stored as the file of term 3, index 7. The first byte selects options: bit 0 rewrites the
// header's body length and CRC to match the body, so mutations reach the body's decoder (index,
// term, the configuration) instead of stopping at the checksum.
//
// Properties: no crash; a file that loads is the snapshot its name says (index 7, term 3), and
// saving what was loaded then loading it again gives the same snapshot.

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "store/crc32c.h"
#include "store/sim_file_system.h"
#include "store/snapshot_file.h"
#include "tools/fuzz/fuzz_util.h"

namespace {

constexpr char kDir[] = "/snap";
constexpr uint64_t kTerm = 3;
constexpr uint64_t kIndex = 7;
constexpr size_t kMagicBytes = 8;
constexpr size_t kHeaderBytes = kMagicBytes + 8 + 4;
constexpr size_t kMaxInputBytes = 1 << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstore;
  if (size < 1 || size > kMaxInputBytes) return 0;
  std::string file(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) != 0 && file.size() >= kHeaderBytes) {
    const absl::string_view body = absl::string_view(file).substr(kHeaderBytes);
    const uint64_t body_bytes = body.size();
    const uint32_t crc = store::Crc32c(body);
    std::memcpy(&file[kMagicBytes], &body_bytes, 8);
    std::memcpy(&file[kMagicBytes + 8], &crc, 4);
  }

  store::SimFileSystem fs(/*seed=*/1);
  FUZZ_CHECK(fs.CreateDir(kDir).ok(), "mkdir");
  {
    auto out = fs.Open(store::JoinPath(kDir, store::SnapshotFileName(kTerm, kIndex)),
                       store::OpenMode::kCreate);
    FUZZ_CHECK(out.ok(), "create");
    FUZZ_CHECK((*out)->Append(file).ok(), "write");
  }
  auto loaded = store::LoadSnapshotFile(&fs, kDir, kTerm, kIndex);
  if (!loaded.ok()) {
    FUZZ_CHECK(!loaded.status().message().empty(), "an error without a message");
    return 0;
  }
  FUZZ_CHECK(loaded->metadata.index == kIndex && loaded->metadata.term == kTerm,
             "loaded the snapshot of another index or term");

  // Save and load again: the same snapshot.
  FUZZ_CHECK(fs.Remove(store::JoinPath(kDir, store::SnapshotFileName(kTerm, kIndex))).ok(), "rm");
  const absl::Status saved =
      store::SaveSnapshotFile(&fs, kDir, loaded->metadata, loaded->data.view());
  FUZZ_CHECK(saved.ok(), "save: %s", std::string(saved.message()).c_str());
  auto again = store::LoadSnapshotFile(&fs, kDir, kTerm, kIndex);
  FUZZ_CHECK(again.ok(), "a saved snapshot does not load: %s",
             std::string(again.status().message()).c_str());
  FUZZ_CHECK(again->metadata.conf_state == loaded->metadata.conf_state, "configuration changed");
  FUZZ_CHECK(again->data == loaded->data, "data changed");
  return 0;
}
