#ifndef KVSTORE_TOOLS_FUZZ_FUZZ_UTIL_H_
#define KVSTORE_TOOLS_FUZZ_FUZZ_UTIL_H_

// Helpers shared by the fuzz targets and the seed generator.
//
// A decoder under fuzzing may refuse any input (an error value is the right answer to garbage);
// what it must never do is crash, hang, allocate without bound, or accept something that breaks
// its own contract. FUZZ_CHECK states such a property: it aborts, so libFuzzer (and the corpus
// replay test) report the input.
//
// Several targets decode a directory rather than one buffer (WAL segments beside snapshot
// files). Their input is a file bundle:
//
//   bundle := file*
//   file   := name length (u8) | name | content length (u32 LE) | content
//
// A truncated last file keeps what is there; '/' in a name becomes '_'.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

#define FUZZ_CHECK(condition, ...)                                                              \
  do {                                                                                          \
    if (!(condition)) {                                                                         \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s at %s:%d: ", #condition, __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                                                        \
      std::fprintf(stderr, "\n");                                                               \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)

namespace kvstore::fuzz {

struct BundleFile {
  std::string name;
  std::string content;
};

// At most this many files are taken from one bundle (a bound on the work per input).
inline constexpr size_t kMaxBundleFiles = 16;

inline std::vector<BundleFile> ParseBundle(absl::string_view in) {
  std::vector<BundleFile> files;
  while (!in.empty() && files.size() < kMaxBundleFiles) {
    BundleFile file;
    const size_t name_bytes = static_cast<uint8_t>(in[0]);
    in.remove_prefix(1);
    file.name = std::string(in.substr(0, name_bytes));
    in.remove_prefix(std::min(name_bytes, in.size()));
    for (char& c : file.name) {
      if (c == '/' || c == '\0') c = '_';
    }
    if (file.name.empty() || file.name == "." || file.name == "..") file.name = "_";
    uint32_t content_bytes = 0;
    for (int i = 0; i < 4 && !in.empty(); ++i) {
      content_bytes |= uint32_t{static_cast<uint8_t>(in[0])} << (8 * i);
      in.remove_prefix(1);
    }
    file.content = std::string(in.substr(0, content_bytes));
    in.remove_prefix(std::min<size_t>(content_bytes, in.size()));
    files.push_back(std::move(file));
  }
  return files;
}

inline std::string EncodeBundle(const std::vector<BundleFile>& files) {
  std::string out;
  for (const BundleFile& file : files) {
    out.push_back(static_cast<char>(file.name.size()));
    out.append(file.name);
    const uint32_t size = static_cast<uint32_t>(file.content.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((size >> (8 * i)) & 0xff));
    out.append(file.content);
  }
  return out;
}

}  // namespace kvstore::fuzz

#endif  // KVSTORE_TOOLS_FUZZ_FUZZ_UTIL_H_
