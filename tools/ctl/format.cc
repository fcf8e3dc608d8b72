#include "tools/ctl/format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kvstore::ctl {
namespace {

constexpr int64_t kNanosPerMicro = 1000;
constexpr int64_t kNanosPerMilli = 1000 * kNanosPerMicro;
constexpr int64_t kNanosPerSecond = 1000 * kNanosPerMilli;
constexpr int64_t kSecondsPerMinute = 60;
constexpr int64_t kSecondsPerHour = 60 * kSecondsPerMinute;

// `value` / 10^digits with its fraction, trailing zeros trimmed (Go's fmtFrac and fmtInt).
std::string Decimal(uint64_t value, int digits) {
  uint64_t scale = 1;
  for (int i = 0; i < digits; ++i) scale *= 10;
  std::string out = absl::StrCat(value / scale);
  std::string fraction = absl::StrFormat("%0*d", digits, value % scale);
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  if (!fraction.empty()) absl::StrAppend(&out, ".", fraction);
  return out;
}

}  // namespace

std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::string> titles;
  std::vector<size_t> widths;
  for (const std::string& h : header) {
    titles.push_back(absl::AsciiStrToUpper(h));
    widths.push_back(titles.back().size());
  }
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string rule = "+";
  for (size_t w : widths) absl::StrAppend(&rule, std::string(w + 2, '-'), "+");
  rule += "\n";

  std::string out = rule + "|";
  for (size_t i = 0; i < titles.size(); ++i) {
    // tablewriter centres with the odd space on the right.
    const size_t gap = widths[i] - titles[i].size();
    absl::StrAppend(&out, " ", std::string(gap / 2, ' '), titles[i],
                    std::string(gap - gap / 2, ' '), " |");
  }
  absl::StrAppend(&out, "\n", rule);
  for (const auto& row : rows) {
    out += "|";
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      absl::StrAppend(&out, " ", std::string(widths[i] - cell.size(), ' '), cell, " |");
    }
    out += "\n";
  }
  if (!rows.empty()) out += rule;
  return out;
}

std::string GoDuration(absl::Duration duration) {
  const int64_t nanos = absl::ToInt64Nanoseconds(duration);
  if (nanos == 0) return "0s";
  const std::string sign = nanos < 0 ? "-" : "";
  const uint64_t u = nanos < 0 ? -static_cast<uint64_t>(nanos) : nanos;
  if (u < static_cast<uint64_t>(kNanosPerSecond)) {
    if (u < static_cast<uint64_t>(kNanosPerMicro)) return absl::StrCat(sign, u, "ns");
    if (u < static_cast<uint64_t>(kNanosPerMilli)) return absl::StrCat(sign, Decimal(u, 3), "µs");
    return absl::StrCat(sign, Decimal(u, 6), "ms");
  }
  const uint64_t seconds = u / kNanosPerSecond;
  std::string out = sign;
  const uint64_t hours = seconds / kSecondsPerHour;
  const uint64_t minutes = seconds / kSecondsPerMinute % 60;
  if (hours > 0) absl::StrAppend(&out, hours, "h");
  if (hours > 0 || minutes > 0) absl::StrAppend(&out, minutes, "m");
  const uint64_t in_minute = u % (kSecondsPerMinute * kNanosPerSecond);
  absl::StrAppend(&out, Decimal(in_minute, 9), "s");
  return out;
}

std::string HumanizeBytes(uint64_t bytes) {
  static constexpr const char* kSizes[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  constexpr double kBase = 1000;
  if (bytes < 10) return absl::StrCat(bytes, " B");
  const double exponent = std::floor(std::log(static_cast<double>(bytes)) / std::log(kBase));
  const double value =
      std::floor(static_cast<double>(bytes) / std::pow(kBase, exponent) * 10 + 0.5) / 10;
  const char* suffix = kSizes[static_cast<int>(exponent)];
  return value < 10 ? absl::StrFormat("%.1f %s", value, suffix)
                    : absl::StrFormat("%.0f %s", value, suffix);
}

std::string GoStringList(const std::vector<std::string>& items) {
  return absl::StrCat("[", absl::StrJoin(items, " "), "]");
}

std::string HexBytes(absl::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) absl::StrAppendFormat(&out, "\\x%02x", c);
  return out;
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonArray(const std::vector<std::string>& items) {
  return absl::StrCat("[", absl::StrJoin(items, ","), "]");
}

void JsonObject::Name(absl::string_view name) {
  if (!body_.empty()) body_ += ",";
  absl::StrAppend(&body_, JsonString(name), ":");
}

JsonObject& JsonObject::Int(absl::string_view name, int64_t value) {
  Name(name);
  absl::StrAppend(&body_, value);
  return *this;
}

JsonObject& JsonObject::Uint(absl::string_view name, uint64_t value) {
  Name(name);
  absl::StrAppend(&body_, value);
  return *this;
}

JsonObject& JsonObject::Bool(absl::string_view name, bool value) {
  Name(name);
  body_ += value ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::String(absl::string_view name, absl::string_view value) {
  Name(name);
  body_ += JsonString(value);
  return *this;
}

JsonObject& JsonObject::Bytes(absl::string_view name, absl::string_view value) {
  Name(name);
  body_ += JsonString(absl::Base64Escape(value));
  return *this;
}

JsonObject& JsonObject::Raw(absl::string_view name, absl::string_view json) {
  Name(name);
  absl::StrAppend(&body_, json);
  return *this;
}

}  // namespace kvstore::ctl
