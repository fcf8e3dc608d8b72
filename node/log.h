#ifndef KVSTORE_NODE_LOG_H_
#define KVSTORE_NODE_LOG_H_

// Structured logs: one JSON object per line and per event, with a level, a UTC timestamp, a
// message and fields, in the shape of etcd's zap logger (--logger=zap):
//
//   {"level":"info","ts":"2026-12-05T05:20:00.123Z","msg":"became leader","term":"3"}
//
// Lines at a level below the configured one are dropped. Thread-safe (one write per line).

#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvstore::node {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// etcd's --log-level names: debug, info, warn, error (also panic and fatal, as error).
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);

class Logger {
 public:
  using Field = std::pair<absl::string_view, std::string>;

  explicit Logger(LogLevel level = LogLevel::kInfo, std::FILE* out = stderr)
      : level_(level), out_(out) {}

  void Log(LogLevel level, absl::string_view message, std::initializer_list<Field> fields = {});
  void Debug(absl::string_view m, std::initializer_list<Field> f = {}) {
    Log(LogLevel::kDebug, m, f);
  }
  void Info(absl::string_view m, std::initializer_list<Field> f = {}) {
    Log(LogLevel::kInfo, m, f);
  }
  void Warn(absl::string_view m, std::initializer_list<Field> f = {}) {
    Log(LogLevel::kWarn, m, f);
  }
  void Error(absl::string_view m, std::initializer_list<Field> f = {}) {
    Log(LogLevel::kError, m, f);
  }

  // The JSON line of an event, without the newline (for tests).
  static std::string Format(LogLevel level, absl::string_view timestamp, absl::string_view message,
                            std::initializer_list<Field> fields);

 private:
  LogLevel level_;
  std::FILE* out_;
  std::mutex mutex_;
};

}  // namespace kvstore::node

#endif  // KVSTORE_NODE_LOG_H_
