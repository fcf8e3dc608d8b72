#include "node/http_testing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kvstore::node::testing {
namespace {

using Clock = std::chrono::steady_clock;

int RemainingMs(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

}  // namespace

uint16_t FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

absl::StatusOr<HttpAnswer> HttpRequest(uint16_t port, const std::string& method,
                                       const std::string& path, int timeout_ms) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 && errno != EINPROGRESS) {
    return absl::UnavailableError(absl::StrCat("connect to port ", port, ": ", strerror(errno)));
  }
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, RemainingMs(deadline)) != 1) {
    return absl::DeadlineExceededError(absl::StrCat("connect to port ", port, " timed out"));
  }
  int error = 0;
  socklen_t error_len = sizeof(error);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len);
  if (error != 0) {
    return absl::UnavailableError(absl::StrCat("connect to port ", port, ": ", strerror(error)));
  }
  const std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1:", port,
                                           "\r\nConnection: close\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
  }
  std::string raw;
  HttpAnswer answer;
  size_t header_end = std::string::npos;
  size_t content_length = std::string::npos;
  while (true) {
    if (header_end != std::string::npos && content_length != std::string::npos &&
        raw.size() >= header_end + 4 + content_length) {
      break;
    }
    pollfd in{fd, POLLIN, 0};
    if (poll(&in, 1, RemainingMs(deadline)) != 1) {
      return absl::DeadlineExceededError(
          absl::StrCat(method, " ", path, " on port ", port, ": no complete answer in time"));
    }
    char buffer[16384];
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
    if (n == 0) break;
    raw.append(buffer, n);
    if (header_end == std::string::npos &&
        (header_end = raw.find("\r\n\r\n")) != std::string::npos) {
      std::vector<std::string> lines = absl::StrSplit(raw.substr(0, header_end), "\r\n");
      std::vector<std::string> status = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
      if (status.size() < 2 || !absl::SimpleAtoi(status[1], &answer.status)) {
        return absl::DataLossError(absl::StrCat("bad status line \"", lines[0], "\""));
      }
      for (size_t i = 1; i < lines.size(); ++i) {
        const size_t colon = lines[i].find(':');
        if (colon == std::string::npos) continue;
        answer.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
            std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      }
      if (auto it = answer.headers.find("content-length"); it != answer.headers.end()) {
        size_t length = 0;
        if (absl::SimpleAtoi(it->second, &length)) content_length = length;
      }
    }
  }
  if (header_end == std::string::npos) {
    return absl::DataLossError(absl::StrCat("answer without headers: \"", raw, "\""));
  }
  answer.body = raw.substr(header_end + 4);
  if (content_length != std::string::npos && answer.body.size() != content_length) {
    return absl::DataLossError(
        absl::StrCat("body of ", answer.body.size(), " bytes, Content-Length ", content_length));
  }
  return answer;
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         const std::string& stdin_path, int timeout_ms) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const std::string input = stdin_path.empty() ? "/dev/null" : stdin_path;
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe");
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork");
  if (pid == 0) {
    setpgid(0, 0);  // its own group, so a helper it starts dies with it at the deadline
    const int in = open(input.c_str(), O_RDONLY);
    if (in < 0) _exit(126);
    dup2(in, 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  CommandResult result;
  bool exited = false;
  int status = 0;
  while (!exited && Clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, std::min(100, RemainingMs(deadline))) == 1) {
      char buffer[16384];
      const ssize_t n = read(out[0], buffer, sizeof(buffer));
      if (n > 0) result.output.append(buffer, n);
    }
    exited = waitpid(pid, &status, WNOHANG) == pid;
  }
  // What is left in the pipe, briefly (helpers of the command may hold it open).
  const Clock::time_point drain_until = Clock::now() + std::chrono::milliseconds(500);
  while (exited) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, RemainingMs(drain_until)) != 1) break;
    char buffer[16384];
    const ssize_t n = read(out[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    result.output.append(buffer, n);
  }
  kill(-pid, SIGKILL);
  if (!exited) waitpid(pid, &status, 0);
  close(out[0]);
  if (exited && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

absl::StatusOr<double> SampleValue(const std::string& exposition, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, series) || !absl::ConsumePrefix(&line, " ")) continue;
    double value = 0;
    if (line == "+Inf") return HUGE_VAL;
    if (!absl::SimpleAtod(line, &value)) {
      return absl::DataLossError(absl::StrCat(series, " has no number: \"", line, "\""));
    }
    return value;
  }
  return absl::NotFoundError(absl::StrCat("no sample ", series));
}

}  // namespace kvstore::node::testing
