#include "core/base/encoding.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvstore {

void PutVarint(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

bool GetVarint(absl::string_view* in, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

void EncodeFixed64BigEndian(char* out, uint64_t value) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(value & 0xFF);
    value >>= 8;
  }
}

void PutFixed64BigEndian(std::string* out, uint64_t value) {
  char bytes[8];
  EncodeFixed64BigEndian(bytes, value);
  out->append(bytes, sizeof(bytes));
}

bool GetFixed64BigEndian(absl::string_view* in, uint64_t* value) {
  if (in->size() < 8) return false;
  uint64_t result = 0;
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  // One load and a byte swap: restarts decode every revision and dedup key this way.
  std::memcpy(&result, in->data(), sizeof(result));
  result = __builtin_bswap64(result);
#else
  for (int i = 0; i < 8; ++i) result = (result << 8) | static_cast<uint8_t>((*in)[i]);
#endif
  in->remove_prefix(8);
  *value = result;
  return true;
}

void PutLengthPrefixed(std::string* out, absl::string_view bytes) {
  PutVarint(out, bytes.size());
  out->append(bytes.data(), bytes.size());
}

bool GetLengthPrefixed(absl::string_view* in, absl::string_view* bytes) {
  uint64_t size = 0;
  if (!GetVarint(in, &size) || size > in->size()) return false;
  *bytes = in->substr(0, size);
  in->remove_prefix(size);
  return true;
}

uint64_t Fnv1a64(absl::string_view bytes, uint64_t seed) {
  uint64_t hash = seed;
  for (char c : bytes) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  out.reserve(text.size() + 2);
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
      default:
        if (c < 0x20) {
          absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace kvstore
