#include "node/log.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvstore::node {
namespace {

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// A JSON string literal of `text` (quotes, backslashes and control characters escaped).
void AppendJsonString(std::string* out, absl::string_view text) {
  out->push_back('"');
  for (char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn") return LogLevel::kWarn;
  if (lower == "error" || lower == "panic" || lower == "fatal") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level \"", name, "\" (want debug, info, warn or error)"));
}

std::string Logger::Format(LogLevel level, absl::string_view timestamp, absl::string_view message,
                           std::initializer_list<Field> fields) {
  std::string line =
      absl::StrCat("{\"level\":\"", LevelName(level), "\",\"ts\":\"", timestamp, "\",\"msg\":");
  AppendJsonString(&line, message);
  for (const Field& field : fields) {
    line.push_back(',');
    AppendJsonString(&line, field.first);
    line.push_back(':');
    AppendJsonString(&line, field.second);
  }
  line.push_back('}');
  return line;
}

void Logger::Log(LogLevel level, absl::string_view message, std::initializer_list<Field> fields) {
  if (level < level_) return;
  const std::string timestamp =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line = Format(level, timestamp, message, fields);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(mutex_);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace kvstore::node
