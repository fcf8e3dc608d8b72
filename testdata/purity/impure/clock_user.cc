// Fixture for tools/purity_check_self_test: every line below must be reported.
#include <chrono>
#include <thread>
#include "absl/time/clock.h"

long Now() { return std::chrono::steady_clock::now().time_since_epoch().count(); }
int Roll() { return rand(); }
