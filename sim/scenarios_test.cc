// Runs every scenario under testdata/scenarios/ (one test each): its expectations and the
// standing checkers must pass. A failure prints the step transcript and the replay command.

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "sim/runner.h"

namespace kvstore::sim {
namespace {

std::vector<std::string> ScenarioFiles() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  std::vector<std::string> files;
  if (srcdir == nullptr || workspace == nullptr) return files;
  const std::filesystem::path dir =
      std::filesystem::path(srcdir) / workspace / "testdata" / "scenarios";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().extension() == ".textproto") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class ScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ScenarioTest, Passes) {
  auto scenario = LoadScenario(GetParam());
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  const RunResult result = RunScenario(*scenario);
  EXPECT_TRUE(result.passed) << "replay: sim run " << GetParam() << " --verbose\n"
                             << absl::StrJoin(result.transcript, "\n") << "\n"
                             << absl::StrJoin(result.failures, "\n");
}

INSTANTIATE_TEST_SUITE_P(Scenarios, ScenarioTest, ::testing::ValuesIn(ScenarioFiles()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return std::filesystem::path(info.param).stem().string();
                         });

TEST(ScenarioFilesTest, SuiteIsNotEmpty) { EXPECT_GE(ScenarioFiles().size(), 10u); }

}  // namespace
}  // namespace kvstore::sim
