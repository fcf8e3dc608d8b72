#ifndef KVSTORE_CORE_MVCC_TESTING_BACKEND_CONTRACT_H_
#define KVSTORE_CORE_MVCC_TESTING_BACKEND_CONTRACT_H_

// The Backend contract (core/mvcc/backend.h) as a parameterised gtest suite that every
// implementation runs. A test binary links //core/mvcc/testing:backend_contract and names its
// backends:
//
//   INSTANTIATE_TEST_SUITE_P(Memory, BackendContractTest,
//                            ::testing::Values(BackendFactory{"memory", [] { ... }}),
//                            BackendFactoryName);
//
// The suite checks what holds for every backend within one process lifetime: reads see every
// write, byte order, separate buckets, Commit/Flush keep every write visible and never lose an
// outstanding one, Defragment keeps the data. What survives a crash differs per backend (the
// memory backend's Crash(), LMDB's reopen) and is tested beside each.

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/mvcc/backend.h"
#include "gtest/gtest.h"

namespace kvstore::mvcc {

struct BackendFactory {
  std::string name;  // the instantiation's suffix: letters, digits and '_'
  // A fresh, empty backend per test; nullptr (after an ADD_FAILURE) if it cannot be made.
  std::function<std::unique_ptr<Backend>()> make;
};

inline std::string BackendFactoryName(const ::testing::TestParamInfo<BackendFactory>& info) {
  return info.param.name;
}

inline void PrintTo(const BackendFactory& factory, std::ostream* out) { *out << factory.name; }

class BackendContractTest : public ::testing::TestWithParam<BackendFactory> {
 protected:
  void SetUp() override;

  // The keys of [start, end) in `bucket`, stopping after `stop_after` (0: all).
  std::vector<std::string> Keys(Bucket bucket, absl::string_view start, absl::string_view end,
                                size_t stop_after = 0);

  std::unique_ptr<Backend> backend_;
};

}  // namespace kvstore::mvcc

#endif  // KVSTORE_CORE_MVCC_TESTING_BACKEND_CONTRACT_H_
