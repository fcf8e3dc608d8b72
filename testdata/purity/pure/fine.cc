// Fixture for tools/purity_check_self_test: nothing here may be reported.
#include <cstdint>
#include <vector>

// A comment may mention time( and std::chrono without harm.
struct Timer {
  uint64_t elapsed_ticks = 0;
  void Tick() { ++elapsed_ticks; }
};
uint64_t runtime(const Timer& t) { return t.elapsed_ticks; }
