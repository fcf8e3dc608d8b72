#ifndef KVSTORE_STORE_CRC32C_H_
#define KVSTORE_STORE_CRC32C_H_

// CRC-32C (Castagnoli), the checksum of WAL records and snapshot files, as etcd's WAL uses it.
// Computed with the SSE4.2 crc32 instruction when the CPU has it (checked once at run time),
// else with slicing-by-8 tables. Both give the same values (crc32c_test checks them against
// RFC 3720's vectors).

#include <cstdint>

#include "absl/strings/string_view.h"

namespace kvstore::store {

// Extends `crc` (0 to start) over `data`.
uint32_t Crc32c(absl::string_view data, uint32_t crc = 0);

// The portable implementation, for tests that compare both paths.
uint32_t Crc32cPortable(absl::string_view data, uint32_t crc = 0);
// Whether Crc32c uses the CPU's instruction.
bool Crc32cAccelerated();

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_CRC32C_H_
