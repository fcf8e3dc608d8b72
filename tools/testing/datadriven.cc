#include "tools/testing/datadriven.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace kvstore::datadriven {
namespace {

constexpr absl::string_view kSeparator = "----";

const char* GetEnv(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? value : nullptr;
}

bool IsPassive(absl::string_view line) { return line.empty() || absl::StartsWith(line, "#"); }

Command ParseCommand(const std::string& file, int line, absl::string_view text) {
  Command command;
  command.file = file;
  command.line = line;
  command.text = std::string(text);
  std::vector<std::string> words = absl::StrSplit(text, ' ', absl::SkipWhitespace());
  command.name = words.front();
  for (size_t i = 1; i < words.size(); ++i) {
    Argument argument;
    const size_t equals = words[i].find('=');
    if (equals == std::string::npos) {
      argument.key = words[i];
    } else {
      argument.key = words[i].substr(0, equals);
      argument.values = absl::StrSplit(words[i].substr(equals + 1), ',');
    }
    command.args.push_back(std::move(argument));
  }
  return command;
}

// Output as it is written to a transcript: no trailing newline, "ok" for nothing.
std::string Normalize(absl::string_view output) {
  while (absl::ConsumeSuffix(&output, "\n")) {
  }
  return output.empty() ? "ok" : std::string(output);
}

}  // namespace

const Argument* Command::Find(absl::string_view key) const {
  for (const Argument& argument : args) {
    if (argument.key == key) return &argument;
  }
  return nullptr;
}

std::vector<std::string> Command::Positional() const {
  std::vector<std::string> words;
  for (const Argument& argument : args) {
    if (argument.values.empty()) words.push_back(argument.key);
  }
  return words;
}

bool RewriteRequested() {
  const char* rewrite = GetEnv("REWRITE");
  return rewrite != nullptr && std::string(rewrite) != "0";
}

std::string ResolvePath(absl::string_view workspace_relative_path) {
  if (const char* source_tree = GetEnv("BUILD_WORKSPACE_DIRECTORY")) {
    return absl::StrCat(source_tree, "/", workspace_relative_path);
  }
  const char* srcdir = GetEnv("TEST_SRCDIR");
  const char* workspace = GetEnv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    return absl::StrCat(srcdir, "/", workspace, "/", workspace_relative_path);
  }
  return std::string(workspace_relative_path);
}

std::vector<std::string> ListFiles(absl::string_view workspace_relative_dir,
                                   absl::string_view suffix) {
  std::vector<std::string> paths;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(ResolvePath(workspace_relative_dir), error)) {
    const std::string name = entry.path().filename().string();
    if (absl::EndsWith(name, suffix)) {
      paths.push_back(absl::StrCat(workspace_relative_dir, "/", name));
    }
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

void RunTranscript(const std::string& path, const std::function<std::string(const Command&)>& run) {
  const std::string file = ResolvePath(path);
  std::ifstream in(file);
  ASSERT_TRUE(in.good()) << "cannot read " << file;
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string original = buffer.str();
  std::vector<std::string> lines = absl::StrSplit(original, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();  // the final newline

  const bool rewrite = RewriteRequested();
  std::string rewritten;
  size_t i = 0;
  while (i < lines.size()) {
    if (IsPassive(lines[i])) {
      absl::StrAppend(&rewritten, lines[i++], "\n");
      continue;
    }
    const Command command = ParseCommand(path, static_cast<int>(i) + 1, lines[i]);
    ++i;
    const bool has_separator = i < lines.size() && lines[i] == kSeparator;
    std::vector<std::string> expected;
    if (has_separator) {
      for (++i; i < lines.size() && !lines[i].empty(); ++i) expected.push_back(lines[i]);
    }
    if (i < lines.size() && lines[i].empty()) ++i;  // the block's terminating blank line

    const std::string actual = Normalize(run(command));
    EXPECT_FALSE(absl::StrContains(actual, "\n\n"))
        << path << ":" << command.line << ": output of `" << command.text
        << "` contains a blank line, which would end the block:\n"
        << actual;
    if (!rewrite) {
      if (!has_separator) {
        ADD_FAILURE() << path << ":" << command.line << ": `" << command.text
                      << "` has no `----` line; run with REWRITE=1 to fill in its output";
      } else if (absl::StrJoin(expected, "\n") != actual) {
        ADD_FAILURE() << path << ":" << command.line << ": output of `" << command.text
                      << "` differs\n--- expected\n"
                      << absl::StrJoin(expected, "\n") << "\n--- actual\n"
                      << actual << "\n---";
      }
    }
    absl::StrAppend(&rewritten, command.text, "\n", kSeparator, "\n", actual, "\n");
    if (i < lines.size()) rewritten += "\n";
  }

  if (rewrite && rewritten != original) {
    std::ofstream out(file, std::ios::trunc);
    out << rewritten;
    ASSERT_TRUE(out.good()) << "cannot write " << file;
  }
}

}  // namespace kvstore::datadriven
