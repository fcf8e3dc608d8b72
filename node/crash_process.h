#ifndef KVSTORE_NODE_CRASH_PROCESS_H_
#define KVSTORE_NODE_CRASH_PROCESS_H_

// The crash tests' side of a crash_child process (node/crash_child.cc): fork and exec it with
// its stdout and stderr on pipes, read its lines as they come, SIGKILL it, reap it. Every wait
// has a deadline, and a child still running when its owner goes is killed and reaped, so a
// hung child fails its test instead of hanging it.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvstore::node::crash {

using Clock = std::chrono::steady_clock;

// A file of the test's runfiles by its workspace path ("node/kvnode"; a data dependency).
std::string RunfilePath(const std::string& workspace_path);
// The crash_child binary in the test's runfiles.
std::string CrashChildPath();

// A fresh, empty directory named `name` under TEST_TMPDIR.
std::string FreshTestDir(const std::string& name);
// Copies `dir` into TEST_UNDECLARED_OUTPUTS_DIR (bazel keeps it in the test's outputs.zip), so
// the files of a failed run can be inspected; returns where it went.
std::string KeepForInspection(const std::string& dir);
// Keeps `dir` for inspection when the test has failed by the end of the scope (ASSERTs return).
struct KeepOnFailure {
  std::string dir;
  ~KeepOnFailure();
};

struct SpawnOptions {
  std::vector<std::string> args;  // after the program name
  // RLIMIT_FSIZE of the child (0: inherited), with SIGXFSZ ignored: a write past the limit
  // fails with EFBIG instead of killing the child, like a full disk that refuses the write.
  uint64_t file_size_limit_bytes = 0;
};

// How a child ended.
struct ChildExit {
  bool signaled = false;
  int code = 0;  // the exit code, or the signal when signaled
  bool Exited(int exit_code) const { return !signaled && code == exit_code; }
  bool KilledBy(int signal) const { return signaled && code == signal; }
  std::string Describe() const;
};

// One line of the child's stdout, and when the parent read it.
struct OutputLine {
  std::string text;
  Clock::time_point read_at;
};

class ChildProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::string& program,
                                                             const SpawnOptions& options);
  // Kills and reaps a child still running.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Reads the child's output until `done()` holds (checked after every read), both pipes close,
  // or `deadline` passes; true if `done()` held.
  bool ReadUntil(Clock::time_point deadline, const std::function<bool()>& done);
  // Reads what the child has written so far without waiting, so that a long-running child never
  // blocks on a full pipe. Of stderr beyond 4 MiB, the newest 2 MiB are kept.
  void ReadAvailable();
  // SIGKILL.
  void Kill();
  // Reads everything left, then reaps the child. A child that has not ended by `deadline` is
  // killed and reaped, and the result is an error.
  absl::StatusOr<ChildExit> Wait(Clock::time_point deadline);

  // Complete stdout lines so far, without their newline.
  const std::vector<OutputLine>& lines() const { return lines_; }
  const std::string& stderr_text() const { return stderr_; }
  Clock::time_point started_at() const { return started_at_; }
  pid_t pid() const { return pid_; }

 private:
  ChildProcess(pid_t pid, int stdout_fd, int stderr_fd);
  // One poll of both pipes, for at most `timeout_ms`; false once both are closed.
  bool ReadSome(int timeout_ms);

  pid_t pid_;
  bool reaped_ = false;
  int stdout_fd_;  // -1 once closed
  int stderr_fd_;
  std::string partial_line_;
  std::vector<OutputLine> lines_;
  std::string stderr_;
  Clock::time_point started_at_;
};

// A child that ran to its end.
struct FinishedChild {
  ChildExit exit;
  std::vector<OutputLine> lines;
  std::string stderr_text;
};
// Runs crash_child with `options` to its end; one still running after `budget` is killed and the
// result is an error.
absl::StatusOr<FinishedChild> RunCrashChild(const SpawnOptions& options, Clock::duration budget);

}  // namespace kvstore::node::crash

#endif  // KVSTORE_NODE_CRASH_PROCESS_H_
