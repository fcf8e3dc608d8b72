// Fuzzes history files (sim/history.h) and the linearizability checker that reads them
// (`sim check-history`). The input is the file's text.
//
// Properties: no crash; a history that parses is written back by FormatHistory to text that
// parses to the same history; the checker, under small budgets, answers (any verdict) within them
// for both models, never an error other than "the model cannot express this history".

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "sim/history.h"
#include "sim/linearizability.h"
#include "tools/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstore::sim;
  if (size > (64 << 10)) return 0;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<History> history = ParseHistory(text);
  if (!history.ok()) {
    FUZZ_CHECK(!history.status().message().empty(), "an error without a message");
    return 0;
  }
  const std::string formatted = FormatHistory(*history);
  absl::StatusOr<History> again = ParseHistory(formatted);
  FUZZ_CHECK(again.ok(), "FormatHistory wrote what ParseHistory refuses: %s",
             std::string(again.status().message()).c_str());
  FUZZ_CHECK(*again == *history, "history changed by a format/parse round trip");

  for (Model model : {Model::kKv, Model::kRegister}) {
    CheckOptions options;
    options.model = model;
    options.max_search_steps = 20'000;
    options.max_minimize_steps = 20'000;
    options.max_memo_bytes = 16 << 20;
    absl::StatusOr<CheckResult> result = CheckLinearizability(*history, options);
    if (model == Model::kKv) {
      FUZZ_CHECK(result.ok(), "the kv model refused a parsed history: %s",
                 std::string(result.status().message()).c_str());
    }
    if (result.ok()) {
      FUZZ_CHECK(result->search_steps <= options.max_search_steps + 1000, "search took %llu steps",
                 static_cast<unsigned long long>(result->search_steps));
      (void)result->Describe();
    }
  }
  return 0;
}
