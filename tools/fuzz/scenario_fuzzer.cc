// Fuzzes scenario files (sim/scenario.proto, text format, through sim/runner.h's ParseScenario,
// which also validates). The input is the file's text. Running a scenario is not fuzzed here: the
// simulator's own fuzz campaign (`sim fuzz`) explores schedules.
//
// Properties: no crash; a scenario that parses and validates is written back by FormatScenario to
// text that parses and validates to the same scenario.

#include <cstdint>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "sim/runner.h"
#include "sim/scenario.pb.h"
#include "tools/fuzz/fuzz_util.h"

// Protobuf logs every invalid UTF-8 string it meets; at thousands of inputs a second that is
// most of the time spent.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstore::sim;
  if (size > (64 << 10)) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<pb::Scenario> scenario = ParseScenario(text, "fuzz.textproto");
  if (!scenario.ok()) {
    FUZZ_CHECK(!scenario.status().message().empty(), "an error without a message");
    return 0;
  }
  const std::string formatted = FormatScenario(*scenario);
  absl::StatusOr<pb::Scenario> again = ParseScenario(formatted, "formatted.textproto");
  FUZZ_CHECK(again.ok(), "FormatScenario wrote what ParseScenario refuses: %s",
             std::string(again.status().message()).c_str());
  FUZZ_CHECK(again->SerializeAsString() == scenario->SerializeAsString(),
             "scenario changed by a format/parse round trip");
  return 0;
}
