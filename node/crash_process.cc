#include "node/crash_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvstore::node::crash {
namespace {

// Bytes read from a pipe per call.
constexpr size_t kReadChunkBytes = 64 << 10;
// How often Wait looks whether a child whose pipes closed has ended.
constexpr auto kReapPollInterval = std::chrono::milliseconds(1);

int MillisUntil(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
}

absl::Status ErrnoError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

std::string RunfilePath(const std::string& workspace_path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/",
                      workspace != nullptr ? workspace : "kvstore", "/", workspace_path);
}

std::string CrashChildPath() { return RunfilePath("node/crash_child"); }

std::string FreshTestDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  // A stale directory would mix two runs' data.
  if (std::system(absl::StrCat("rm -rf '", dir, "'").c_str()) != 0) {
    std::fprintf(stderr, "cannot remove %s\n", dir.c_str());
    std::abort();
  }
  return dir;
}

std::string KeepForInspection(const std::string& dir) {
  const char* outputs = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  if (outputs == nullptr) return dir;
  if (std::system(absl::StrCat("cp -a '", dir, "' '", outputs, "/'").c_str()) != 0) return dir;
  return absl::StrCat(outputs, dir.substr(dir.rfind('/')));
}

KeepOnFailure::~KeepOnFailure() {
  if (::testing::Test::HasFailure()) {
    std::printf("data directory kept in %s\n", KeepForInspection(dir).c_str());
  }
}

std::string ChildExit::Describe() const {
  if (signaled) return absl::StrCat("killed by signal ", code, " (", strsignal(code), ")");
  return absl::StrCat("exit code ", code);
}

ChildProcess::ChildProcess(pid_t pid, int stdout_fd, int stderr_fd)
    : pid_(pid), stdout_fd_(stdout_fd), stderr_fd_(stderr_fd), started_at_(Clock::now()) {}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const std::string& program,
                                                                  const SpawnOptions& options) {
  int out[2];
  int err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return ErrnoError("pipe2");
  }
  // Everything the forked child uses is built before fork: between fork and exec only
  // async-signal-safe calls are allowed.
  std::vector<std::string> args = {program};
  args.insert(args.end(), options.args.begin(), options.args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const rlimit limit = {options.file_size_limit_bytes, options.file_size_limit_bytes};

  const pid_t pid = fork();
  if (pid < 0) {
    const absl::Status error = ErrnoError("fork");
    for (int fd : {out[0], out[1], err[0], err[1]}) close(fd);
    return error;
  }
  if (pid == 0) {
    // dup2 clears O_CLOEXEC on the copies, so exactly these two pipe ends survive exec.
    if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0) _exit(127);
    if (options.file_size_limit_bytes != 0) {
      // An ignored signal stays ignored across exec.
      if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR || setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(127);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, out[0], err[0]));
}

ChildProcess::~ChildProcess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
  if (stderr_fd_ >= 0) close(stderr_fd_);
}

bool ChildProcess::ReadSome(int timeout_ms) {
  pollfd fds[2];
  int count = 0;
  if (stdout_fd_ >= 0) fds[count++] = pollfd{stdout_fd_, POLLIN, 0};
  if (stderr_fd_ >= 0) fds[count++] = pollfd{stderr_fd_, POLLIN, 0};
  if (count == 0) return false;
  if (poll(fds, count, timeout_ms) <= 0) return true;
  char buffer[kReadChunkBytes];
  for (int i = 0; i < count; ++i) {
    if (fds[i].revents == 0) continue;
    const ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    const bool is_stdout = fds[i].fd == stdout_fd_;
    if (n <= 0) {
      close(fds[i].fd);
      (is_stdout ? stdout_fd_ : stderr_fd_) = -1;
      continue;
    }
    if (!is_stdout) {
      stderr_.append(buffer, static_cast<size_t>(n));
      continue;
    }
    partial_line_.append(buffer, static_cast<size_t>(n));
    const Clock::time_point now = Clock::now();
    size_t start = 0;
    for (size_t end; (end = partial_line_.find('\n', start)) != std::string::npos;
         start = end + 1) {
      lines_.push_back(OutputLine{partial_line_.substr(start, end - start), now});
    }
    partial_line_.erase(0, start);
  }
  return stdout_fd_ >= 0 || stderr_fd_ >= 0;
}

bool ChildProcess::ReadUntil(Clock::time_point deadline, const std::function<bool()>& done) {
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    if (!ReadSome(MillisUntil(deadline))) return done();
  }
  return true;
}

void ChildProcess::ReadAvailable() {
  // Bounded: a child writing without pause cannot keep the caller here.
  for (int i = 0; i < 256; ++i) {
    pollfd fds[2];
    int count = 0;
    if (stdout_fd_ >= 0) fds[count++] = pollfd{stdout_fd_, POLLIN, 0};
    if (stderr_fd_ >= 0) fds[count++] = pollfd{stderr_fd_, POLLIN, 0};
    if (count == 0 || poll(fds, count, 0) <= 0) break;
    if (!ReadSome(0)) break;
  }
  constexpr size_t kMaxKeptStderrBytes = 4 << 20;
  if (stderr_.size() > kMaxKeptStderrBytes) {
    stderr_.erase(0, stderr_.size() - kMaxKeptStderrBytes / 2);
  }
}

void ChildProcess::Kill() {
  if (!reaped_) kill(pid_, SIGKILL);
}

absl::StatusOr<ChildExit> ChildProcess::Wait(Clock::time_point deadline) {
  ReadUntil(deadline, [] { return false; });
  while (!reaped_) {
    int status = 0;
    const pid_t got = waitpid(pid_, &status, WNOHANG);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoError("waitpid");
    if (got == pid_) {
      reaped_ = true;
      ChildExit exit;
      exit.signaled = WIFSIGNALED(status);
      exit.code = exit.signaled ? WTERMSIG(status) : WEXITSTATUS(status);
      return exit;
    }
    if (Clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
      return absl::DeadlineExceededError("the child did not end in time and was killed");
    }
    std::this_thread::sleep_for(kReapPollInterval);
  }
  return absl::FailedPreconditionError("the child was already reaped");
}

absl::StatusOr<FinishedChild> RunCrashChild(const SpawnOptions& options, Clock::duration budget) {
  auto child = ChildProcess::Spawn(CrashChildPath(), options);
  if (!child.ok()) return child.status();
  auto exit = (*child)->Wait((*child)->started_at() + budget);
  if (!exit.ok()) {
    return absl::Status(exit.status().code(), absl::StrCat(exit.status().message(), "; stderr:\n",
                                                           (*child)->stderr_text()));
  }
  return FinishedChild{*exit, (*child)->lines(), (*child)->stderr_text()};
}

}  // namespace kvstore::node::crash
