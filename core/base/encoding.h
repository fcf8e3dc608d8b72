#ifndef KVSTORE_CORE_BASE_ENCODING_H_
#define KVSTORE_CORE_BASE_ENCODING_H_

// Small, deterministic byte encodings for records the core writes (varints, fixed-width
// big-endian integers that sort like numbers, length-prefixed strings). Decoders consume from
// the front of a string_view and return false on truncated or malformed input.

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace kvstore {

void PutVarint(std::string* out, uint64_t value);
bool GetVarint(absl::string_view* in, uint64_t* value);

// Big-endian: byte order equals numeric order, so encoded revisions sort correctly.
void PutFixed64BigEndian(std::string* out, uint64_t value);
void EncodeFixed64BigEndian(char* out, uint64_t value);  // writes out[0..7]
bool GetFixed64BigEndian(absl::string_view* in, uint64_t* value);

void PutLengthPrefixed(std::string* out, absl::string_view bytes);
bool GetLengthPrefixed(absl::string_view* in, absl::string_view* bytes);

// FNV-1a, 64 bit: a stable hash (std::hash is not stable across platforms or runs).
uint64_t Fnv1a64(absl::string_view bytes, uint64_t seed = 0xcbf29ce484222325ull);

// `text` as a JSON string literal, quotes included (RFC 8259 §7: '"', '\\' and control
// characters escaped; other bytes, UTF-8 included, pass through). For the hand-written JSON of
// the HTTP endpoints and error bodies.
std::string JsonQuote(absl::string_view text);

}  // namespace kvstore

#endif  // KVSTORE_CORE_BASE_ENCODING_H_
