#include "net/etcd/go_json.h"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "net/etcd/go_quote.h"

namespace kvstore::net::etcd {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::OneofDescriptor;
using google::protobuf::Reflection;

// Go's scanner refuses values nested deeper than this (encoding/json maxNestingDepth).
constexpr size_t kMaxNestingDepth = 10000;
// Messages nested deeper than this are refused before they recurse the stack away (jsonpb has
// no such limit; a txn nests a txn).
constexpr int kMaxMessageDepth = 1000;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Go's encoding/json scanner over one value. Returns its first syntax error ("" for none); `end`
// is where the value ended (npos when the text ran out first), `eof_error` what the scanner says
// when told the input ends there (Go's scanner.eof: "unexpected end of JSON input", or the error
// a space would cause, as "invalid character ' ' in numeric literal").
std::string GoScan(absl::string_view text, size_t* end, std::string* eof_error) {
  enum class St {
    kBeginValue,
    kBeginValueOrEmpty,
    kBeginStringOrEmpty,
    kBeginString,
    kEndValue,
    kInString,
    kInStringEsc,
    kInStringEscU,
    kNeg,
    k1,
    k0,
    kDot,
    kDot0,
    kE,
    kESign,
    kE0,
    kLiteral,
  };
  enum class Parse { kObjectKey, kObjectValue, kArrayValue };
  std::vector<Parse> stack;
  St st = St::kBeginValue;
  int hex_left = 0;
  absl::string_view literal, literal_name;  // the rest of true/false/null expected
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  auto error = [](char c, absl::string_view context) {
    return absl::StrCat("invalid character ", GoQuoteChar(c), " ", context);
  };
  *end = absl::string_view::npos;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    bool again = true;
    while (again) {
      again = false;
      switch (st) {
        case St::kBeginValueOrEmpty:
          if (IsSpace(c)) break;
          if (c == ']') {
            st = St::kEndValue;
            again = true;  // the ']' ends the array there
            break;
          }
          st = St::kBeginValue;
          again = true;
          break;
        case St::kBeginValue:
          if (IsSpace(c)) break;
          if (c == '{' || c == '[') {
            stack.push_back(c == '{' ? Parse::kObjectKey : Parse::kArrayValue);
            if (stack.size() > kMaxNestingDepth) return error(c, "exceeded max depth");
            st = c == '{' ? St::kBeginStringOrEmpty : St::kBeginValueOrEmpty;
          } else if (c == '"') {
            st = St::kInString;
          } else if (c == '-') {
            st = St::kNeg;
          } else if (c == '0') {
            st = St::k0;
          } else if (c >= '1' && c <= '9') {
            st = St::k1;
          } else if (c == 't' || c == 'f' || c == 'n') {
            literal_name = c == 't' ? "true" : c == 'f' ? "false" : "null";
            literal = literal_name.substr(1);
            st = St::kLiteral;
          } else {
            return error(c, "looking for beginning of value");
          }
          break;
        case St::kBeginStringOrEmpty:
          if (IsSpace(c)) break;
          if (c == '}') {
            stack.back() = Parse::kObjectValue;
            st = St::kEndValue;
            again = true;
            break;
          }
          st = St::kBeginString;
          again = true;
          break;
        case St::kBeginString:
          if (IsSpace(c)) break;
          if (c != '"') return error(c, "looking for beginning of object key string");
          st = St::kInString;
          break;
        case St::kEndValue: {
          if (stack.empty()) {  // the value ended before this byte
            *end = i;
            return "";
          }
          if (IsSpace(c)) break;
          Parse& top = stack.back();
          if (top == Parse::kObjectKey) {
            if (c != ':') return error(c, "after object key");
            top = Parse::kObjectValue;
            st = St::kBeginValue;
          } else if (top == Parse::kObjectValue) {
            if (c == ',') {
              top = Parse::kObjectKey;
              st = St::kBeginString;
            } else if (c == '}') {
              stack.pop_back();
              if (stack.empty()) {
                *end = i + 1;
                return "";
              }
            } else {
              return error(c, "after object key:value pair");
            }
          } else {
            if (c == ',') {
              st = St::kBeginValue;
            } else if (c == ']') {
              stack.pop_back();
              if (stack.empty()) {
                *end = i + 1;
                return "";
              }
            } else {
              return error(c, "after array element");
            }
          }
          break;
        }
        case St::kInString:
          if (c == '"') {
            st = St::kEndValue;
          } else if (c == '\\') {
            st = St::kInStringEsc;
          } else if (static_cast<unsigned char>(c) < 0x20) {
            return error(c, "in string literal");
          }
          break;
        case St::kInStringEsc:
          if (c == 'u') {
            st = St::kInStringEscU;
            hex_left = 4;
          } else if (absl::string_view("bfnrt\\/\"").find(c) != absl::string_view::npos) {
            st = St::kInString;
          } else {
            return error(c, "in string escape code");
          }
          break;
        case St::kInStringEscU:
          if (!is_digit(c) && !((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return error(c, "in \\u hexadecimal character escape");
          }
          if (--hex_left == 0) st = St::kInString;
          break;
        case St::kNeg:
          if (c == '0') {
            st = St::k0;
          } else if (c >= '1' && c <= '9') {
            st = St::k1;
          } else {
            return error(c, "in numeric literal");
          }
          break;
        case St::k1:
          if (is_digit(c)) break;
          st = St::k0;
          again = true;
          break;
        case St::k0:
          if (c == '.') {
            st = St::kDot;
          } else if (c == 'e' || c == 'E') {
            st = St::kE;
          } else {
            st = St::kEndValue;
            again = true;
          }
          break;
        case St::kDot:
          if (!is_digit(c)) return error(c, "after decimal point in numeric literal");
          st = St::kDot0;
          break;
        case St::kDot0:
          if (is_digit(c)) break;
          if (c == 'e' || c == 'E') {
            st = St::kE;
          } else {
            st = St::kEndValue;
            again = true;
          }
          break;
        case St::kE:
          if (c == '+' || c == '-') {
            st = St::kESign;
            break;
          }
          st = St::kESign;
          again = true;
          break;
        case St::kESign:
          if (!is_digit(c)) return error(c, "in exponent of numeric literal");
          st = St::kE0;
          break;
        case St::kE0:
          if (is_digit(c)) break;
          st = St::kEndValue;
          again = true;
          break;
        case St::kLiteral:
          if (c != literal[0]) {
            return error(c, absl::StrCat("in literal ", literal_name, " (expecting ",
                                         GoQuoteChar(literal[0]), ")"));
          }
          literal.remove_prefix(1);
          if (literal.empty()) st = St::kEndValue;
          break;
      }
    }
  }
  // The text ran out: a top-level number or literal ends there.
  if (stack.empty() &&
      (st == St::kEndValue || st == St::k1 || st == St::k0 || st == St::kDot0 || st == St::kE0)) {
    *end = text.size();
    return "";
  }
  if (eof_error != nullptr) {
    switch (st) {
      case St::kInStringEsc:
        *eof_error = error(' ', "in string escape code");
        break;
      case St::kInStringEscU:
        *eof_error = error(' ', "in \\u hexadecimal character escape");
        break;
      case St::kNeg:
        *eof_error = error(' ', "in numeric literal");
        break;
      case St::kDot:
        *eof_error = error(' ', "after decimal point in numeric literal");
        break;
      case St::kE:
      case St::kESign:
        *eof_error = error(' ', "in exponent of numeric literal");
        break;
      case St::kLiteral:
        *eof_error = error(' ', absl::StrCat("in literal ", literal_name, " (expecting ",
                                             GoQuoteChar(literal[0]), ")"));
        break;
      default:
        *eof_error = "unexpected end of JSON input";
        break;
    }
  }
  return "";
}

// Go's checkValid, as json.Unmarshal runs it first: `text` must be one value and white space.
std::string GoCheckValid(absl::string_view text) {
  size_t end;
  std::string eof_error;
  std::string error = GoScan(text, &end, &eof_error);
  if (!error.empty()) return error;
  if (end == absl::string_view::npos) return eof_error;
  for (size_t i = end; i < text.size(); ++i) {
    if (!IsSpace(text[i])) {
      return absl::StrCat("invalid character ", GoQuoteChar(text[i]), " after top-level value");
    }
  }
  return "";
}

absl::string_view Trim(absl::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// What Go's UnmarshalTypeError calls a (syntactically valid, trimmed) value.
enum class Kind { kObject, kArray, kString, kBool, kNull, kNumber };
Kind KindOf(absl::string_view value) {
  switch (value.empty() ? 'n' : value[0]) {
    case '{':
      return Kind::kObject;
    case '[':
      return Kind::kArray;
    case '"':
      return Kind::kString;
    case 't':
    case 'f':
      return Kind::kBool;
    case 'n':
      return Kind::kNull;
    default:
      return Kind::kNumber;
  }
}
const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kObject:
      return "object";
    case Kind::kArray:
      return "array";
    case Kind::kString:
      return "string";
    case Kind::kBool:
      return "bool";
    case Kind::kNull:
      return "null";
    case Kind::kNumber:
      return "number";
  }
  return "";
}

std::string CannotUnmarshal(absl::string_view what, absl::string_view go_type) {
  return absl::StrCat("json: cannot unmarshal ", what, " into Go value of type ", go_type);
}

// The end of the valid value starting at `i` (no white space before it).
size_t SkipValue(absl::string_view s, size_t i) {
  const char c = s[i];
  if (c == '"') {
    for (++i; s[i] != '"'; ++i) {
      if (s[i] == '\\') ++i;
    }
    return i + 1;
  }
  if (c == '{' || c == '[') {
    int depth = 0;
    for (; i < s.size(); ++i) {
      const char d = s[i];
      if (d == '"') {
        i = SkipValue(s, i) - 1;
      } else if (d == '{' || d == '[') {
        ++depth;
      } else if ((d == '}' || d == ']') && --depth == 0) {
        return i + 1;
      }
    }
    return s.size();
  }
  while (i < s.size() && !IsSpace(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']') ++i;
  return i;
}

size_t SkipSpace(absl::string_view s, size_t i) {
  while (i < s.size() && IsSpace(s[i])) ++i;
  return i;
}

// The elements of a valid array, each trimmed.
std::vector<absl::string_view> ArrayElements(absl::string_view array) {
  std::vector<absl::string_view> out;
  size_t i = SkipSpace(array, 1);
  while (array[i] != ']') {
    const size_t end = SkipValue(array, i);
    out.push_back(array.substr(i, end - i));
    i = SkipSpace(array, end);
    if (array[i] == ',') i = SkipSpace(array, i + 1);
  }
  return out;
}

void AppendUtf8(uint32_t r, std::string* out) {
  if (r < 0x80) {
    out->push_back(static_cast<char>(r));
  } else if (r < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (r >> 6)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3f)));
  } else if (r < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (r >> 12)));
    out->push_back(static_cast<char>(0x80 | ((r >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (r >> 18)));
    out->push_back(static_cast<char>(0x80 | ((r >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((r >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3f)));
  }
}

constexpr uint32_t kReplacement = 0xfffd;

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// Go's getu4: the \uXXXX at `s`, or -1.
int32_t GetU4(absl::string_view s) {
  if (s.size() < 6 || s[0] != '\\' || s[1] != 'u') return -1;
  int32_t r = 0;
  for (size_t i = 2; i < 6; ++i) {
    const char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return -1;
    r = r * 16 + Hex(c);
  }
  return r;
}

// Go's unquote (encoding/json) of a valid string literal: escapes decoded, a lone surrogate and
// every byte of bad UTF-8 as U+FFFD.
std::string GoUnquote(absl::string_view quoted) {
  const absl::string_view s = quoted.substr(1, quoted.size() - 2);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '\\') {
      const char e = s[i + 1];
      if (e != 'u') {
        switch (e) {
          case 'b':
            out.push_back('\b');
            break;
          case 'f':
            out.push_back('\f');
            break;
          case 'n':
            out.push_back('\n');
            break;
          case 'r':
            out.push_back('\r');
            break;
          case 't':
            out.push_back('\t');
            break;
          default:  // \\ \/ \"
            out.push_back(e);
            break;
        }
        i += 2;
        continue;
      }
      int32_t r = GetU4(s.substr(i));
      i += 6;
      if (r >= 0xd800 && r < 0xe000) {
        const int32_t r2 = GetU4(s.substr(i));
        if (r < 0xdc00 && r2 >= 0xdc00 && r2 < 0xe000) {
          i += 6;
          AppendUtf8(0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00), &out);
          continue;
        }
        r = kReplacement;
      }
      AppendUtf8(static_cast<uint32_t>(r), &out);
      continue;
    }
    const size_t n = GoUtf8Length(s.substr(i));
    if (n == 0) {
      AppendUtf8(kReplacement, &out);
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

// Go's base64.StdEncoding.Decode (line feeds and carriage returns skipped), its error text
// ("illegal base64 data at input byte N") on a bad input.
bool GoBase64Decode(absl::string_view src, std::string* out, std::string* error) {
  auto value = [](unsigned char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  auto corrupt = [error](size_t at) {
    *error = absl::StrCat("illegal base64 data at input byte ", at);
    return false;
  };
  size_t si = 0;
  while (si < src.size()) {
    int dbuf[4] = {0, 0, 0, 0};
    int dlen = 4;
    bool trailing = false;
    size_t trailing_at = 0;
    for (int j = 0; j < 4; ++j) {
      if (si == src.size()) {
        if (j == 0) return true;
        return corrupt(si - j);
      }
      const unsigned char in = static_cast<unsigned char>(src[si++]);
      const int v = value(in);
      if (v >= 0) {
        dbuf[j] = v;
        continue;
      }
      if (in == '\n' || in == '\r') {
        --j;
        continue;
      }
      if (in != '=') return corrupt(si - 1);
      // Padding: the end.
      if (j == 0 || j == 1) return corrupt(si - 1);
      if (j == 2) {
        while (si < src.size() && (src[si] == '\n' || src[si] == '\r')) ++si;
        if (si == src.size()) return corrupt(src.size());
        if (src[si] != '=') return corrupt(si - 1);
        ++si;
      }
      while (si < src.size() && (src[si] == '\n' || src[si] == '\r')) ++si;
      if (si < src.size()) {
        trailing = true;
        trailing_at = si;
      }
      dlen = j;
      break;
    }
    const uint32_t val = (dbuf[0] << 18) | (dbuf[1] << 12) | (dbuf[2] << 6) | dbuf[3];
    const char bytes[3] = {static_cast<char>(val >> 16), static_cast<char>(val >> 8),
                           static_cast<char>(val)};
    out->append(bytes, dlen - 1);
    if (trailing) return corrupt(trailing_at);
    if (dlen < 4) return true;
  }
  return true;
}

// Go's strconv.ParseInt / ParseUint (base 10) of a JSON number, in [min, max].
bool ParseGoInt(absl::string_view s, int64_t min, int64_t max, int64_t* out) {
  bool negative = false;
  if (!s.empty() && s[0] == '-') {
    negative = true;
    s.remove_prefix(1);
  }
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (v > (UINT64_MAX - (c - '0')) / 10) return false;
    v = v * 10 + (c - '0');
  }
  if (negative) {
    if (v > static_cast<uint64_t>(INT64_MAX) + 1) return false;
    *out = v == static_cast<uint64_t>(INT64_MAX) + 1 ? INT64_MIN : -static_cast<int64_t>(v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return *out >= min && *out <= max;
}
bool ParseGoUint(absl::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (v > (UINT64_MAX - (c - '0')) / 10) return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return v <= max;
}

// A Go name of a proto type: its package, then its names joined by '_' (gogo's
// "etcdserverpb.RangeRequest_SortOrder").
std::string GoTypeName(const std::string& full_name, const std::string& package) {
  std::string rest = full_name.substr(package.size() + 1);
  for (char& c : rest) {
    if (c == '.') c = '_';
  }
  return absl::StrCat(package, ".", rest);
}

// Go's CamelCase of a proto name, as protoc-gen-go names a oneof's interface.
std::string GoCamelCase(const std::string& name) {
  std::string out;
  bool upper = true;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out.push_back(upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
    upper = false;
  }
  return out;
}

// One scalar as jsonpb's unmarshalValue reads it (encoding/json underneath).
struct Scalar {
  bool set = false;  // false: null, the field left as it is
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  bool b = false;
  std::string s;
};

class Unmarshaler {
 public:
  std::string error;
  // Set when the value holds null for an element of a repeated message: jsonpb leaves a nil
  // pointer in the slice, which etcd's gateway panics on when it marshals the request.
  bool nil_element = false;

  bool Message(absl::string_view value, google::protobuf::Message* m, int depth) {
    if (depth > kMaxMessageDepth) {
      return Fail(absl::StrCat("request messages nested over ", kMaxMessageDepth, " deep"));
    }
    const Kind kind = KindOf(value);
    if (kind == Kind::kNull) return true;
    if (kind != Kind::kObject) {
      return Fail(CannotUnmarshal(KindName(kind), "map[string]json.RawMessage"));
    }
    std::map<std::string, absl::string_view> fields;  // Go's map: the last of a key wins
    size_t i = SkipSpace(value, 1);
    while (value[i] != '}') {
      const size_t key_end = SkipValue(value, i);
      std::string key = GoUnquote(value.substr(i, key_end - i));
      i = SkipSpace(value, SkipSpace(value, key_end) + 1);  // past the ':'
      const size_t end = SkipValue(value, i);
      fields[std::move(key)] = value.substr(i, end - i);
      i = SkipSpace(value, end);
      if (value[i] == ',') i = SkipSpace(value, i + 1);
    }
    // jsonpb accepts a field by its proto name and its JSON name (the JSON name wins).
    auto consume = [&fields](const std::string& orig, const std::string& camel,
                             absl::string_view* raw) {
      auto o = fields.find(orig);
      auto c = fields.find(camel);
      if (o == fields.end() && c == fields.end()) return false;
      *raw = c != fields.end() ? c->second : o->second;
      if (o != fields.end()) fields.erase(o);
      if (c != fields.end() && camel != orig) fields.erase(camel);
      return true;
    };
    const Descriptor* d = m->GetDescriptor();
    // The Go struct's fields in order: a oneof is one field (an interface) where its first
    // member is declared, and takes only its own name (a value there does not unmarshal).
    for (int f = 0; f < d->field_count(); ++f) {
      const FieldDescriptor* field = d->field(f);
      absl::string_view raw;
      if (const OneofDescriptor* oneof = field->containing_oneof(); oneof != nullptr) {
        if (oneof->field(0) != field || !consume(oneof->name(), oneof->name(), &raw)) continue;
        const Kind k = KindOf(raw);
        if (k == Kind::kNull) continue;
        return Fail(CannotUnmarshal(
            KindName(k), GoTypeName(absl::StrCat(d->full_name(), "_", GoCamelCase(oneof->name())),
                                    d->file()->package())
                             .insert(d->file()->package().size() + 1, "is")));
      }
      if (!consume(field->name(), field->json_name(), &raw)) continue;
      if (!Field(raw, m, field, depth)) return false;
    }
    for (int o = 0; o < d->oneof_decl_count() && !fields.empty(); ++o) {
      const OneofDescriptor* oneof = d->oneof_decl(o);
      for (int f = 0; f < oneof->field_count(); ++f) {
        const FieldDescriptor* field = oneof->field(f);
        absl::string_view raw;
        if (!consume(field->name(), field->json_name(), &raw)) continue;
        // jsonpb sets the oneof's wrapper even for null: a scalar member is then set to its
        // zero (and sent so), a message or bytes member to nil (not sent).
        if (KindOf(raw) == Kind::kNull && field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE &&
            field->type() != FieldDescriptor::TYPE_BYTES) {
          Set(m, field, Scalar{true});
          continue;
        }
        if (!Field(raw, m, field, depth)) return false;
      }
    }
    return true;
  }

 private:
  bool Fail(std::string text) {
    error = std::move(text);
    return false;
  }

  bool Field(absl::string_view raw, google::protobuf::Message* m, const FieldDescriptor* field,
             int depth) {
    const Reflection* r = m->GetReflection();
    const bool is_message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if (field->is_repeated()) {
      const Kind kind = KindOf(raw);
      if (kind == Kind::kNull) return true;
      if (kind == Kind::kString && field->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
        // jsonpb reads an enum's name before it looks at the field's shape.
        Scalar name;
        if (!ReadScalar(raw, field, &name)) return false;
        return Fail(absl::StrCat(
            "invalid target \"slice\" for enum ",
            GoTypeName(field->enum_type()->full_name(), field->enum_type()->file()->package())));
      }
      if (kind != Kind::kArray) return Fail(CannotUnmarshal(KindName(kind), "[]json.RawMessage"));
      for (absl::string_view element : ArrayElements(raw)) {
        if (is_message) {
          if (KindOf(element) == Kind::kNull) nil_element = true;
          if (!Message(element, r->AddMessage(m, field), depth + 1)) return false;
          continue;
        }
        Scalar value;
        if (!ReadScalar(element, field, &value)) return false;
        value.set = true;  // a null element is the zero value
        Add(m, field, value);
      }
      return true;
    }
    if (is_message) {
      if (KindOf(raw) == Kind::kNull) return true;
      return Message(raw, r->MutableMessage(m, field), depth + 1);
    }
    Scalar value;
    if (!ReadScalar(raw, field, &value)) return false;
    if (value.set) Set(m, field, value);
    return true;
  }

  bool ReadScalar(absl::string_view raw, const FieldDescriptor* field, Scalar* out) {
    Kind kind = KindOf(raw);
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_ENUM: {
        const EnumDescriptor* e = field->enum_type();
        const std::string go_type = GoTypeName(e->full_name(), e->file()->package());
        if (kind == Kind::kString) {
          // By name, the bytes between the quotes as they are.
          const absl::string_view name = raw.substr(1, raw.size() - 2);
          const auto* v = e->FindValueByName(std::string(name));
          if (v == nullptr) {
            return Fail(absl::StrCat("unknown value ", GoQuote(name), " for enum ", go_type));
          }
          out->set = true;
          out->i = v->number();
          return true;
        }
        if (kind == Kind::kNull) return true;
        if (kind != Kind::kNumber) return Fail(CannotUnmarshal(KindName(kind), go_type));
        if (!ParseGoInt(raw, INT32_MIN, INT32_MAX, &out->i)) {
          return Fail(CannotUnmarshal(absl::StrCat("number ", raw), go_type));
        }
        out->set = true;
        return true;
      }
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        const auto type = field->cpp_type();
        const char* go_type = type == FieldDescriptor::CPPTYPE_INT32    ? "int32"
                              : type == FieldDescriptor::CPPTYPE_INT64  ? "int64"
                              : type == FieldDescriptor::CPPTYPE_UINT32 ? "uint32"
                              : type == FieldDescriptor::CPPTYPE_UINT64 ? "uint64"
                              : type == FieldDescriptor::CPPTYPE_FLOAT  ? "float32"
                                                                        : "float64";
        const bool is_float =
            type == FieldDescriptor::CPPTYPE_FLOAT || type == FieldDescriptor::CPPTYPE_DOUBLE;
        if (is_float && (raw == "\"NaN\"" || raw == "\"Infinity\"" || raw == "\"-Infinity\"")) {
          out->set = true;
          out->d = raw[1] == 'N'   ? std::numeric_limits<double>::quiet_NaN()
                   : raw[1] == '-' ? -std::numeric_limits<double>::infinity()
                                   : std::numeric_limits<double>::infinity();
          return true;
        }
        // A number may come as a string: jsonpb drops the quotes and reads what is inside.
        if (kind == Kind::kString) {
          raw = raw.substr(1, raw.size() - 2);
          if (std::string invalid = GoCheckValid(raw); !invalid.empty()) return Fail(invalid);
          raw = Trim(raw);
          kind = KindOf(raw);
        }
        if (kind == Kind::kNull) return true;
        if (kind != Kind::kNumber) return Fail(CannotUnmarshal(KindName(kind), go_type));
        bool ok = false;
        if (is_float) {
          const std::string text(raw);
          char* end = nullptr;
          errno = 0;
          out->d = std::strtod(text.c_str(), &end);
          ok = errno != ERANGE || out->d == 0;
          if (type == FieldDescriptor::CPPTYPE_FLOAT && std::abs(out->d) > 3.4028234663852886e38) {
            ok = false;
          }
        } else if (type == FieldDescriptor::CPPTYPE_INT32) {
          ok = ParseGoInt(raw, INT32_MIN, INT32_MAX, &out->i);
        } else if (type == FieldDescriptor::CPPTYPE_INT64) {
          ok = ParseGoInt(raw, INT64_MIN, INT64_MAX, &out->i);
        } else {
          ok = ParseGoUint(raw, type == FieldDescriptor::CPPTYPE_UINT32 ? UINT32_MAX : UINT64_MAX,
                           &out->u);
        }
        if (!ok) return Fail(CannotUnmarshal(absl::StrCat("number ", raw), go_type));
        out->set = true;
        return true;
      }
      case FieldDescriptor::CPPTYPE_BOOL:
        if (kind == Kind::kNull) return true;
        if (kind != Kind::kBool) return Fail(CannotUnmarshal(KindName(kind), "bool"));
        out->set = true;
        out->b = raw[0] == 't';
        return true;
      case FieldDescriptor::CPPTYPE_STRING:
        if (kind == Kind::kNull) return true;
        if (field->type() != FieldDescriptor::TYPE_BYTES) {
          if (kind != Kind::kString) return Fail(CannotUnmarshal(KindName(kind), "string"));
          out->set = true;
          out->s = GoUnquote(raw);
          return true;
        }
        // []byte: a base64 string, or an array of byte values.
        out->set = true;
        if (kind == Kind::kString) {
          return GoBase64Decode(GoUnquote(raw), &out->s, &error);
        }
        if (kind != Kind::kArray) return Fail(CannotUnmarshal(KindName(kind), "[]uint8"));
        for (absl::string_view element : ArrayElements(raw)) {
          const Kind k = KindOf(element);
          uint64_t byte = 0;
          if (k == Kind::kNumber) {
            if (!ParseGoUint(element, 255, &byte)) {
              return Fail(CannotUnmarshal(absl::StrCat("number ", element), "uint8"));
            }
          } else if (k != Kind::kNull) {
            return Fail(CannotUnmarshal(KindName(k), "uint8"));
          }
          out->s.push_back(static_cast<char>(byte));
        }
        return true;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    return Fail("unsupported field type");
  }

  static void Set(google::protobuf::Message* m, const FieldDescriptor* f, const Scalar& v) {
    const Reflection* r = m->GetReflection();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(m, f, static_cast<int32_t>(v.i));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->SetInt64(m, f, v.i);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r->SetUInt32(m, f, static_cast<uint32_t>(v.u));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        r->SetUInt64(m, f, v.u);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        r->SetFloat(m, f, static_cast<float>(v.d));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        r->SetDouble(m, f, v.d);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        r->SetBool(m, f, v.b);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r->SetEnumValue(m, f, static_cast<int>(v.i));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        r->SetString(m, f, v.s);
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
  }

  static void Add(google::protobuf::Message* m, const FieldDescriptor* f, const Scalar& v) {
    const Reflection* r = m->GetReflection();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r->AddInt32(m, f, static_cast<int32_t>(v.i));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->AddInt64(m, f, v.i);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r->AddUInt32(m, f, static_cast<uint32_t>(v.u));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        r->AddUInt64(m, f, v.u);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        r->AddFloat(m, f, static_cast<float>(v.d));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        r->AddDouble(m, f, v.d);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        r->AddBool(m, f, v.b);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r->AddEnumValue(m, f, static_cast<int>(v.i));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        r->AddString(m, f, v.s);
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
  }
};

}  // namespace

std::string GoSyntaxError(absl::string_view text) {
  size_t end;
  return GoScan(text, &end, nullptr);
}

GoJsonResult GoUnmarshalJsonpb(absl::string_view value, google::protobuf::Message* message,
                               std::string* error) {
  // The value is scanned again: the reading below trusts that it is one valid value.
  value = Trim(value);
  size_t end;
  std::string invalid = GoScan(value, &end, nullptr);
  if (invalid.empty() && end != value.size()) invalid = "unexpected EOF";
  if (!invalid.empty()) {
    *error = std::move(invalid);
    return GoJsonResult::kRefused;
  }
  Unmarshaler u;
  const bool ok = u.Message(value, message, 0);
  *error = u.error;
  if (!ok) return GoJsonResult::kRefused;
  return u.nil_element ? GoJsonResult::kPanics : GoJsonResult::kOk;
}

GoJsonResult GoDecodeRequest(absl::string_view body, google::protobuf::Message* message,
                             std::string* error) {
  error->clear();
  body = Trim(body);
  if (body.empty()) return GoJsonResult::kOk;  // io.EOF: grpc-gateway reads an empty request
  size_t end;
  *error = GoScan(body, &end, nullptr);
  if (!error->empty()) return GoJsonResult::kRefused;
  if (end == absl::string_view::npos) {
    *error = "unexpected EOF";
    return GoJsonResult::kRefused;
  }
  return GoUnmarshalJsonpb(body.substr(0, end), message, error);
}

}  // namespace kvstore::net::etcd
