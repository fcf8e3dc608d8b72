#include "node/http_testing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <random>

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

// Where ReserveLoopbackPort picks (see http_testing.h).
constexpr uint16_t kPortLow = 10000;
constexpr uint16_t kPortHigh = 20000;

// The low end of the kernel's ephemeral port range (32768 without /proc).
uint16_t EphemeralLow() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  if (range >> low && low > 0 && low < 65536) return static_cast<uint16_t>(low);
  return 32768;
}

// Holds the abstract Unix socket that reserves `port` among harnesses; -1 if another holds it.
int HoldPortLock(uint16_t port) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string name = absl::StrCat("kvstore-test-port-", port);
  std::memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] == 0: abstract
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Whether 127.0.0.1:port can be bound now (nobody listens on it or holds it).
bool CanBind(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// A loopback port nobody listens on now: the kernel's choice for port 0 (its ephemeral range).
uint16_t KernelPickedPort() {
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

}  // namespace

absl::StatusOr<uint16_t> ReserveLoopbackPort(int* lock) {
  *lock = -1;
  static std::mt19937 random(std::random_device{}());
  const uint16_t high = std::min(kPortHigh, EphemeralLow());
  if (high <= kPortLow) {
    // An unusual ephemeral range: no port is safe from the kernel; the old way.
    const uint16_t port = KernelPickedPort();
    if (port == 0) return absl::UnavailableError("no free port");
    return port;
  }
  std::uniform_int_distribution<int> pick(kPortLow, high - 1);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const uint16_t port = static_cast<uint16_t>(pick(random));
    const int held = HoldPortLock(port);
    if (held < 0) continue;  // another test process's (or this one's)
    if (!CanBind(port)) {
      close(held);
      continue;
    }
    *lock = held;
    return port;
  }
  return absl::UnavailableError(
      absl::StrCat("no free port in [", kPortLow, ", ", high, ") after 1000 picks"));
}

uint16_t FreeLoopbackPort() {
  int lock = -1;
  auto port = ReserveLoopbackPort(&lock);
  // The reservation is kept until the process exits (a test process makes a few hundred at most).
  return port.ok() ? *port : 0;
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
