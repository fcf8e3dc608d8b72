// Fuzzes the core's log codec (core/server/codec.h): the input is the payload of a normal Raft log
// entry, a serialized pb::InternalRequest, as Server::Impl parses it at apply; the conf-change
// context (pb::MemberChange) is parsed from the same bytes.
//
// Properties: no crash, no unbounded recursion (FromProto refuses txns deeper than kMaxTxnDepth,
// protobuf's parser its own nesting limit); what decodes re-encodes to a request that decodes to
// the same thing (ToProto(FromProto(x)) is a fixed point after one step).

#include <cstdint>
#include <string>
#include <type_traits>

#include "core/server/codec.h"
#include "core/server/requests.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "tools/fuzz/fuzz_util.h"

namespace {

using kvstore::server::FromProto;
using kvstore::server::ToProto;
namespace pb = kvstore::server::pb;

template <typename Proto, typename Decoded>
void CheckFixedPoint(const Decoded& decoded) {
  Proto once;
  ToProto(decoded, &once);
  const std::string first = once.SerializeAsString();
  Proto parsed;
  FUZZ_CHECK(parsed.ParseFromString(first), "re-encoded request does not parse");
  auto again = FromProto(parsed);
  if constexpr (!std::is_same_v<decltype(again), Decoded>) {
    FUZZ_CHECK(again.ok(), "re-encoded request does not decode: %s",
               std::string(again.status().message()).c_str());
    Proto twice;
    ToProto(*again, &twice);
    FUZZ_CHECK(twice.SerializeAsString() == first, "decode/encode is not a fixed point");
  } else {
    Proto twice;
    ToProto(again, &twice);
    FUZZ_CHECK(twice.SerializeAsString() == first, "decode/encode is not a fixed point");
  }
}

}  // namespace

// Protobuf logs every invalid UTF-8 string it meets; at thousands of inputs a second that is
// most of the time spent.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 20)) return 0;
  pb::MemberChange change;
  (void)change.ParseFromArray(data, static_cast<int>(size));

  pb::InternalRequest internal;
  if (!internal.ParseFromArray(data, static_cast<int>(size))) return 0;
  switch (internal.request_case()) {
    case pb::InternalRequest::kPut:
      CheckFixedPoint<pb::PutRequest>(FromProto(internal.put()));
      break;
    case pb::InternalRequest::kDeleteRange:
      CheckFixedPoint<pb::DeleteRangeRequest>(FromProto(internal.delete_range()));
      break;
    case pb::InternalRequest::kTxn: {
      auto txn = FromProto(internal.txn());
      if (txn.ok()) CheckFixedPoint<pb::TxnRequest>(*txn);
      break;
    }
    default:
      break;
  }
  // A range is never in the log, but the same decoder serves the client API's protobuf form.
  pb::RangeRequest range;
  if (range.ParseFromArray(data, static_cast<int>(size))) {
    auto decoded = FromProto(range);
    if (decoded.ok()) CheckFixedPoint<pb::RangeRequest>(*decoded);
  }
  return 0;
}
