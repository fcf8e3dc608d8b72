#include "net/etcd/go_quote.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace kvstore::net::etcd {
namespace {

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

size_t GoUtf8Length(absl::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  auto cont = [&](size_t i, unsigned char lo, unsigned char hi) {
    return i < s.size() && b(i) >= lo && b(i) <= hi;
  };
  if (c >= 0xc2 && c <= 0xdf) return cont(1, 0x80, 0xbf) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    return cont(1, lo, hi) && cont(2, 0x80, 0xbf) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2, 0x80, 0xbf) && cont(3, 0x80, 0xbf) ? 4 : 0;
  }
  return 0;
}

std::string GoQuote(absl::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = GoUtf8Length(s.substr(i));
    if (n == 0) {
      absl::StrAppend(&out, "\\x", std::string(1, kHex[c >> 4]), std::string(1, kHex[c & 15]));
      ++i;
      continue;
    }
    if (n > 1) {
      // Non-ASCII: printable but for the C1 controls and the soft hyphen.
      const uint32_t r = n == 2 ? ((c & 0x1f) << 6) | (s[i + 1] & 0x3f) : 0x100;
      if (r < 0xa0 || r == 0xad) {
        absl::StrAppend(&out, "\\u00", std::string(1, kHex[r >> 4]), std::string(1, kHex[r & 15]));
      } else {
        out.append(s.data() + i, n);
      }
      i += n;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\a':
        out += "\\a";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\v':
        out += "\\v";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          absl::StrAppend(&out, "\\x", std::string(1, kHex[c >> 4]), std::string(1, kHex[c & 15]));
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out += "\"";
  return out;
}

std::string GoQuoteChar(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  switch (c) {
    case '\'':
      return "'\\''";
    case '"':
      return "'\"'";
    case '\\':
      return "'\\\\'";
    case '\a':
      return "'\\a'";
    case '\b':
      return "'\\b'";
    case '\f':
      return "'\\f'";
    case '\n':
      return "'\\n'";
    case '\r':
      return "'\\r'";
    case '\t':
      return "'\\t'";
    case '\v':
      return "'\\v'";
    default:
      break;
  }
  if (u >= 0x20 && u < 0x7f) return absl::StrCat("'", std::string(1, c), "'");
  if (u < 0x20 || u == 0x7f) {
    return absl::StrCat("'\\x", std::string(1, kHex[u >> 4]), std::string(1, kHex[u & 15]), "'");
  }
  // Go quotes string(byte): the rune U+0080..U+00FF.
  if (u < 0xa0 || u == 0xad) {
    return absl::StrCat("'\\u00", std::string(1, kHex[u >> 4]), std::string(1, kHex[u & 15]), "'");
  }
  const char utf8[] = {static_cast<char>(0xc0 | (u >> 6)), static_cast<char>(0x80 | (u & 0x3f))};
  return absl::StrCat("'", absl::string_view(utf8, 2), "'");
}

}  // namespace kvstore::net::etcd
