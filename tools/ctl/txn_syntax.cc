#include "tools/ctl/txn_syntax.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kvstore::ctl {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(uint32_t code_point, std::string* out) {
  if (code_point < 0x80) {
    *out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    *out += static_cast<char>(0xc0 | (code_point >> 6));
    *out += static_cast<char>(0x80 | (code_point & 0x3f));
  } else if (code_point < 0x10000) {
    *out += static_cast<char>(0xe0 | (code_point >> 12));
    *out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (code_point & 0x3f));
  } else {
    *out += static_cast<char>(0xf0 | (code_point >> 18));
    *out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3f));
    *out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (code_point & 0x3f));
  }
}

// The escape after a backslash at text[*i] (Go's strconv.UnquoteChar); advances *i past it.
absl::Status Unescape(absl::string_view text, size_t* i, std::string* out) {
  const char c = text[(*i)++];
  switch (c) {
    case 'a':
      *out += '\a';
      return absl::OkStatus();
    case 'b':
      *out += '\b';
      return absl::OkStatus();
    case 'f':
      *out += '\f';
      return absl::OkStatus();
    case 'n':
      *out += '\n';
      return absl::OkStatus();
    case 'r':
      *out += '\r';
      return absl::OkStatus();
    case 't':
      *out += '\t';
      return absl::OkStatus();
    case 'v':
      *out += '\v';
      return absl::OkStatus();
    case '\\':
    case '"':
      *out += c;
      return absl::OkStatus();
    case 'x':
    case 'u':
    case 'U': {
      const size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
      if (*i + digits > text.size()) break;
      uint32_t value = 0;
      for (size_t k = 0; k < digits; ++k) {
        const int d = HexDigit(text[*i + k]);
        if (d < 0) return absl::InvalidArgumentError("bad hex escape");
        value = value * 16 + d;
      }
      *i += digits;
      if (c == 'x') {
        *out += static_cast<char>(value);
      } else {
        AppendUtf8(value, out);
      }
      return absl::OkStatus();
    }
    default:
      if (c >= '0' && c <= '7' && *i + 2 <= text.size()) {
        uint32_t value = c - '0';
        for (size_t k = 0; k < 2; ++k) {
          const char d = text[*i + k];
          if (d < '0' || d > '7') return absl::InvalidArgumentError("bad octal escape");
          value = value * 8 + (d - '0');
        }
        *i += 2;
        if (value > 255) return absl::InvalidArgumentError("octal escape above \\377");
        *out += static_cast<char>(value);
        return absl::OkStatus();
      }
  }
  return absl::InvalidArgumentError(absl::StrCat("bad escape \\", std::string(1, c)));
}

size_t SkipSpaces(absl::string_view text, size_t i) {
  while (i < text.size() && absl::ascii_isspace(static_cast<unsigned char>(text[i]))) ++i;
  return i;
}

}  // namespace

absl::StatusOr<std::string> UnquoteGo(absl::string_view text, size_t* consumed) {
  if (text.empty() || (text[0] != '"' && text[0] != '`')) {
    return absl::InvalidArgumentError("expected a quoted string");
  }
  const char quote = text[0];
  std::string out;
  size_t i = 1;
  while (i < text.size()) {
    const char c = text[i];
    if (c == quote) {
      *consumed = i + 1;
      return out;
    }
    if (c == '\\' && quote == '"') {
      ++i;
      if (i == text.size()) break;
      if (absl::Status s = Unescape(text, &i, &out); !s.ok()) return s;
      continue;
    }
    if (c == '\n' && quote == '"') break;
    out += c;
    ++i;
  }
  return absl::InvalidArgumentError("unterminated quoted string");
}

absl::StatusOr<std::vector<std::string>> Argify(absl::string_view line) {
  std::vector<std::string> args;
  size_t i = SkipSpaces(line, 0);
  while (i < line.size()) {
    if (line[i] == '"') {
      size_t consumed = 0;
      absl::StatusOr<std::string> arg = UnquoteGo(line.substr(i), &consumed);
      if (!arg.ok()) return arg.status();
      args.push_back(std::move(*arg));
      i += consumed;
    } else if (line[i] == '\'') {
      const size_t end = line.find('\'', i + 1);
      if (end == absl::string_view::npos) {
        return absl::InvalidArgumentError("unterminated single-quoted string");
      }
      args.emplace_back(line.substr(i + 1, end - i - 1));
      i = end + 1;
    } else {
      const size_t start = i;
      while (i < line.size() && !absl::ascii_isspace(static_cast<unsigned char>(line[i]))) ++i;
      args.emplace_back(line.substr(start, i - start));
    }
    i = SkipSpaces(line, i);
  }
  return args;
}

absl::StatusOr<mvcc::Compare> ParseCompare(absl::string_view line) {
  const absl::Status malformed =
      absl::InvalidArgumentError(absl::StrCat("malformed comparison: ", line));
  const size_t paren = line.find('(');
  if (paren == absl::string_view::npos) return malformed;
  const std::string target(absl::StripAsciiWhitespace(line.substr(0, paren)));
  absl::string_view rest = line.substr(paren + 1);

  size_t i = SkipSpaces(rest, 0);
  size_t consumed = 0;
  absl::StatusOr<std::string> key = UnquoteGo(rest.substr(i), &consumed);
  if (!key.ok()) return malformed;
  i = SkipSpaces(rest, i + consumed);
  if (i == rest.size() || rest[i] != ')') return malformed;
  i = SkipSpaces(rest, i + 1);
  const size_t op_start = i;
  while (i < rest.size() && !absl::ascii_isspace(static_cast<unsigned char>(rest[i]))) ++i;
  const std::string op(rest.substr(op_start, i - op_start));
  i = SkipSpaces(rest, i);
  absl::StatusOr<std::string> value = UnquoteGo(rest.substr(i), &consumed);
  if (!value.ok()) return malformed;

  mvcc::Compare compare;
  compare.key = std::move(*key);
  if (op == "=") {
    compare.result = mvcc::Compare::Result::kEqual;
  } else if (op == "!=") {
    compare.result = mvcc::Compare::Result::kNotEqual;
  } else if (op == ">") {
    compare.result = mvcc::Compare::Result::kGreater;
  } else if (op == "<") {
    compare.result = mvcc::Compare::Result::kLess;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed comparison: ", line, " (unknown operator ", op, ")"));
  }
  const absl::Status invalid =
      absl::InvalidArgumentError(absl::StrCat("invalid txn compare request: ", line));
  if (target == "ver" || target == "version" || target == "c" || target == "create" ||
      target == "m" || target == "mod") {
    if (!absl::SimpleAtoi(*value, &compare.number)) return invalid;
    compare.target = target[0] == 'v'   ? mvcc::Compare::Target::kVersion
                     : target[0] == 'c' ? mvcc::Compare::Target::kCreate
                                        : mvcc::Compare::Target::kMod;
  } else if (target == "val" || target == "value") {
    compare.target = mvcc::Compare::Target::kValue;
    compare.value = std::move(*value);
  } else if (target == "lease") {
    // Lease ids are printed in hex everywhere (lease grant, lease list), so they are read so.
    uint64_t id = 0;
    if (!absl::SimpleHexAtoi(*value, &id)) return invalid;
    compare.target = mvcc::Compare::Target::kLease;
    compare.number = static_cast<int64_t>(id);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed comparison: ", line, " (unknown target ", target, ")"));
  }
  return compare;
}

}  // namespace kvstore::ctl
