#ifndef KVSTORE_TOOLS_TESTING_DATADRIVEN_H_
#define KVSTORE_TOOLS_TESTING_DATADRIVEN_H_

// Golden-file ("data-driven") tests in the style of cockroachdb/datadriven, as used by
// etcd-io/raft's testdata/*.txt. A transcript is a sequence of blocks:
//
//   # comments and blank lines are kept verbatim
//   command arg key=value key=v1,v2
//   ----
//   expected output, one or more non-blank lines
//   <blank line or end of file>
//
// RunTranscript executes each command through a callback and compares its output with the expected
// text, reporting a gtest failure that names the file and line. With REWRITE=1 in the environment
// (run as `REWRITE=1 bazel run //pkg:test`), it writes the actual output back into the source tree
// instead of comparing; a command written without `----` gets its output filled in.

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace kvstore::datadriven {

// `key=a,b` has values {a, b}; a bare word `key` (a positional argument) has none.
struct Argument {
  std::string key;
  std::vector<std::string> values;
};

struct Command {
  std::string file;
  int line = 0;  // 1-based line of the command in `file`
  std::string text;
  std::string name;  // the first word
  std::vector<Argument> args;

  // The argument named `key`, or nullptr.
  const Argument* Find(absl::string_view key) const;
  // Bare words after the name, in order.
  std::vector<std::string> Positional() const;
};

// Whether REWRITE=1 asks for transcripts to be regenerated.
bool RewriteRequested();

// Paths are relative to the workspace root ("testdata/raft/election.txt"). They resolve to the
// source tree under `bazel run` (BUILD_WORKSPACE_DIRECTORY), to the runfiles tree under
// `bazel test` (TEST_SRCDIR/TEST_WORKSPACE), else to the current directory.
std::string ResolvePath(absl::string_view workspace_relative_path);

// The files in `workspace_relative_dir` whose names end in `suffix`, sorted, workspace-relative.
std::vector<std::string> ListFiles(absl::string_view workspace_relative_dir,
                                   absl::string_view suffix);

// Runs every command of the transcript at `workspace_relative_path` through `run`, which returns
// the command's output (empty output is written as "ok"; output must not contain blank lines).
// Mismatches are gtest failures naming the file and line; with REWRITE=1 the file is rewritten
// with the actual output instead.
void RunTranscript(const std::string& workspace_relative_path,
                   const std::function<std::string(const Command&)>& run);

}  // namespace kvstore::datadriven

#endif  // KVSTORE_TOOLS_TESTING_DATADRIVEN_H_
