#include "core/base/probe.h"

namespace kvstore::probe {

const std::array<Info, kCount>& All() {
  static constexpr std::array<Info, kCount> kAll = {{
#define KVSTORE_PROBE_INFO(group, name, file, what) {#group "." #name, file, what},
      KVSTORE_CODE_PROBES(KVSTORE_PROBE_INFO)
#undef KVSTORE_PROBE_INFO
  }};
  return kAll;
}

const Info& InfoOf(Id id) { return All()[static_cast<size_t>(id)]; }

Counts Snapshot() {
  Counts counts{};
  for (size_t i = 0; i < kCount; ++i) counts[i] = internal::hits[i].load(std::memory_order_relaxed);
  return counts;
}

Counts Since(const Counts& before) {
  Counts counts = Snapshot();
  for (size_t i = 0; i < kCount; ++i) counts[i] -= before[i];
  return counts;
}

}  // namespace kvstore::probe
