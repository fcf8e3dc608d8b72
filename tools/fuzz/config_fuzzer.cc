// Fuzzes kvnode's flags (node/config.h): the input is one argument or environment entry per line;
// lines starting with "ETCD_" are the environment, the others argv (after the program name).
//
// Properties: no crash; a configuration that parses either converts to runtime options or is
// refused with a message (ToRuntimeOptions); every refusal has a message naming what was wrong.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "node/config.h"
#include "tools/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstore::node;
  if (size > (16 << 10)) return 0;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args;
  std::vector<std::string> environment;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "ETCD_")) {
      environment.emplace_back(line);
    } else {
      args.emplace_back(line);
    }
  }
  absl::StatusOr<NodeConfig> config = ParseConfig(args, environment);
  if (!config.ok()) {
    FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
    return 0;
  }
  absl::StatusOr<RuntimeOptions> options = ToRuntimeOptions(*config);
  if (!options.ok()) {
    FUZZ_CHECK(!options.status().message().empty(), "an error without a message");
  }
  for (const std::string& arg : args) (void)ParseUrl(arg);
  return 0;
}
