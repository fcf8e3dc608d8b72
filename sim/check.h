#ifndef KVSTORE_SIM_CHECK_H_
#define KVSTORE_SIM_CHECK_H_

// SIM_CHECK(condition) << "context": a broken invariant of the simulator or its checkers is a
// crash, never an error value (bad input from outside, such as a malformed history file, is a
// Status). The same mechanism as the core's RAFT_CHECK.

#include "core/raft/check.h"

#define SIM_CHECK(condition) RAFT_CHECK(condition)

#endif  // KVSTORE_SIM_CHECK_H_
